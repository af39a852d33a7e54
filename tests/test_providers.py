"""The OpenAI Videos adapter over real HTTP, and the parsing rules providers share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from reelwatch import exceptions, simulator
from reelwatch.models import RemoteStatus, Variant
from reelwatch.providers import base
from reelwatch.providers import openai as openai_provider
from reelwatch.providers.openai import OpenAIVideos

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "2500", "retry-after": "9"}, 2.5),
        ({"retry-after": format_datetime(NOW + timedelta(seconds=30), usegmt=True)}, 30.0),
        ({"retry-after": format_datetime(NOW - timedelta(seconds=30), usegmt=True)}, 0.0),
        ({"retry-after": "tomorrow-ish"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After as seconds, as an HTTP date, and retry-after-ms (which wins)."""
    assert base.retry_after_s(headers, NOW) == expected


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("queued", RemoteStatus.QUEUED),
        ("in_progress", RemoteStatus.IN_PROGRESS),
        ("processing", RemoteStatus.IN_PROGRESS),
        ("completed", RemoteStatus.COMPLETED),
        ("succeeded", RemoteStatus.COMPLETED),
        ("SUCCEEDED", RemoteStatus.UNKNOWN),
        ("failed", RemoteStatus.FAILED),
        ("expired", RemoteStatus.FAILED),
        ("starting", RemoteStatus.UNKNOWN),
        ("unknown", RemoteStatus.UNKNOWN),
        ("", RemoteStatus.UNKNOWN),
    ],
)
def test_gateway_status_words(word: str, status: RemoteStatus) -> None:
    """The adapter's exact words (and gateways') map onto the four states; anything else,
    a different case included, is UNKNOWN (a person sees it), not a guess or a crash."""
    assert base.status_of(openai_provider.STATUSES, word) is status


def test_failed_word_without_error_gets_a_code() -> None:
    """`expired` with no error object still reads as a failure with a code."""
    video = openai_provider._remote({"id": "video_1", "status": "expired"})
    assert video.error is not None and video.error.code == "expired"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 0), (45, 45), (45.9, 45), ("12", 12), (150, 100), (-3, 0), ("x", 0), (float("nan"), 0)],
)
def test_progress_is_an_integer_percent(raw: object, expected: int) -> None:
    """Whatever the provider sends becomes an int in 0..100."""
    assert base.progress(raw) == expected


@pytest.fixture
def adapter() -> object:
    config = simulator.SimConfig(api_key="sk-a", queue_s=(0, 0), render_s=(1, 1))
    with simulator.running(config) as sim:
        yield sim, OpenAIVideos(api_key="sk-a", base_url=sim.base_url, timeout_s=2)


async def test_adapter_maps_http_errors(
    adapter: tuple[simulator.RunningSimulator, OpenAIVideos],
) -> None:
    """404, 429 (with its wait), 5xx, dropped connections and 4xx become provider errors."""
    sim, provider = adapter
    try:
        with pytest.raises(exceptions.ProviderNotFound):
            await provider.retrieve(base.Ref("video_" + "0" * 48))
        video = await provider.create(
            base.CreateRequest("x", "sora-2", {"seconds": 4, "size": "720x1280"})
        )
        sim.sim.inject("retrieve", "rate_limit", retry_after=3)
        with pytest.raises(exceptions.ProviderRateLimited) as limited:
            await provider.retrieve(base.Ref(video.video_id))
        assert limited.value.retry_after_s == 3
        sim.sim.inject("retrieve", "server_error", status=502)
        with pytest.raises(exceptions.ProviderUnavailable):
            await provider.retrieve(base.Ref(video.video_id))
        # A status check on a kept-alive connection that drops is sent again once on a fresh
        # one (aiohttp does this for GETs: the server may have closed an idle connection).
        sim.sim.inject("retrieve", "drop")
        assert (await provider.retrieve(base.Ref(video.video_id))).video_id == video.video_id
        sim.sim.inject("retrieve", "drop", count=2)
        with pytest.raises(exceptions.ProviderUnavailable):
            await provider.retrieve(base.Ref(video.video_id))
        with pytest.raises(exceptions.ProviderRejected) as rejected:
            await provider.create(
                base.CreateRequest("x", "sora-2", {"seconds": 5, "size": "720x1280"})
            )
        assert rejected.value.http_status == 400
    finally:
        await provider.aclose()


async def test_adapter_lists_recent_and_streams_content(
    adapter: tuple[simulator.RunningSimulator, OpenAIVideos],
) -> None:
    """`recent` walks the list newest first; `download` streams the body with its type."""
    sim, provider = adapter
    try:
        made = [
            await provider.create(
                base.CreateRequest(f"p{i}", "sora-2", {"seconds": 4, "size": "720x1280"})
            )
            for i in range(3)
        ]
        since = min(v.created_at for v in made if v.created_at) - timedelta(seconds=1)
        seen = [v.video_id async for v in provider.recent(since=since)]
        assert set(seen) == {v.video_id for v in made}
        sim.sim.clock.advance(2)
        async with provider.download(base.Ref(made[0].video_id), Variant.THUMBNAIL) as download:
            assert download.content_type == "image/webp"
            body = b"".join([c async for c in download.chunks()])
        assert download.content_length == len(body)
    finally:
        await provider.aclose()


async def test_adapter_download_passes_the_callers_own_errors_through(
    adapter: tuple[simulator.RunningSimulator, OpenAIVideos],
) -> None:
    """An error raised while the caller handles the body (its storage timing out, say) is the
    caller's, not reported as a broken download; a missing asset is a 404 as before."""
    sim, provider = adapter
    try:
        video = await provider.create(
            base.CreateRequest("own", "sora-2", {"seconds": 4, "size": "720x1280"})
        )
        sim.sim.clock.advance(2)
        with pytest.raises(TimeoutError):
            async with provider.download(base.Ref(video.video_id), Variant.VIDEO):
                raise TimeoutError("the disk, not the provider")
        with pytest.raises(exceptions.ProviderNotFound):
            async with provider.download(base.Ref("video_" + "0" * 48), Variant.VIDEO):
                pass
    finally:
        await provider.aclose()


async def test_adapter_remixes_and_deletes(
    adapter: tuple[simulator.RunningSimulator, OpenAIVideos],
) -> None:
    """Remix makes a new queued job from a completed one; delete makes it 404."""
    sim, provider = adapter
    try:
        source = await provider.create(
            base.CreateRequest("source", "sora-2", {"seconds": 4, "size": "720x1280"})
        )
        with pytest.raises(exceptions.ProviderRejected):
            await provider.remix(source.video_id, "too early")
        sim.sim.clock.advance(2)
        remix = await provider.remix(source.video_id, "now in winter")
        assert remix.video_id != source.video_id
        assert remix.status in (RemoteStatus.QUEUED, RemoteStatus.IN_PROGRESS)
        assert remix.prompt == "now in winter"
        await provider.delete(source.video_id)
        with pytest.raises(exceptions.ProviderNotFound):
            await provider.retrieve(base.Ref(source.video_id))
    finally:
        await provider.aclose()

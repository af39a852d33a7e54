"""Downloading assets: readiness, streaming with checksums, variants, expiry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import openai
import pytest

from reelwatch.simulator import RunningSimulator, expected_sha256


def _completed(client: openai.OpenAI, rs: RunningSimulator, prompt: str = "a beach") -> str:
    video = client.videos.create(prompt=prompt)
    rs.sim.clock.advance(12)
    return video.id


def test_content_before_completion_is_404(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """Queued and rendering jobs have no content yet: 404 'Video is not ready yet'."""
    video = client.videos.create(prompt="slow")
    with pytest.raises(openai.NotFoundError, match="Video is not ready yet"):
        client.videos.download_content(video.id)
    rs.sim.clock.advance(5)
    with pytest.raises(openai.NotFoundError, match="Video is not ready yet"):
        client.videos.download_content(video.id)


def test_streaming_download_matches_the_checksum(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """A streamed download has the advertised length, type and sha256."""
    video_id = _completed(client, rs)
    digest = hashlib.sha256()
    with client.videos.with_streaming_response.download_content(video_id) as response:
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["content-length"] == str(256 * 1024)
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == expected_sha256(video_id, "video", 256 * 1024)
    assert digest.hexdigest() == rs.sim.expected_sha256(video_id)
    assert rs.sim.stats()["videos"][video_id]["content_downloads"] == 1


async def test_async_stream_to_file(
    aclient: openai.AsyncOpenAI, rs: RunningSimulator, tmp_path: object
) -> None:
    """The async client streams a large (`bytes=`) video to disk intact."""
    video = await aclient.videos.create(prompt="big [sim:queue=0,render=0,bytes=3000000]")
    target = f"{tmp_path}/out.mp4"
    async with aclient.videos.with_streaming_response.download_content(video.id) as response:
        await response.stream_to_file(target)
    with open(target, "rb") as saved:  # noqa: ASYNC230 - a small local file in a test
        data = saved.read()
    assert len(data) == 3_000_000
    assert hashlib.sha256(data).hexdigest() == rs.sim.expected_sha256(video.id)


@pytest.mark.parametrize(
    ("variant", "content_type"),
    [("video", "video/mp4"), ("thumbnail", "image/webp"), ("spritesheet", "image/jpeg")],
)
def test_variants_have_their_content_types(
    client: openai.OpenAI, rs: RunningSimulator, variant: str, content_type: str
) -> None:
    """Each variant has its media type and its own deterministic bytes."""
    video_id = _completed(client, rs)
    response = client.videos.with_raw_response.download_content(video_id, variant=variant)  # type: ignore[arg-type]
    assert response.headers["content-type"] == content_type
    data = response.content
    assert hashlib.sha256(data).hexdigest() == rs.sim.expected_sha256(video_id, variant)


def test_unknown_variant_is_400(
    http: httpx.Client, client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """An unknown variant is refused with 400 naming `variant`."""
    video_id = _completed(client, rs)
    response = http.get(f"/v1/videos/{video_id}/content", params={"variant": "poster"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "variant"


def test_expired_content_is_404(
    client: openai.OpenAI, rs: RunningSimulator, configure: Callable[..., None]
) -> None:
    """After expires_at the content is gone with an 'expired' message; the job still shows."""
    configure(expires_after_s=60)
    video_id = _completed(client, rs)
    assert client.videos.download_content(video_id).read()
    rs.sim.clock.advance(61)
    with pytest.raises(openai.NotFoundError, match="expired"):
        client.videos.download_content(video_id)
    assert client.videos.retrieve(video_id).status == "completed"


def test_failed_deleted_and_unknown_have_no_content(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """Failed, deleted and never-created videos answer 404."""
    failed = client.videos.create(prompt="[sim:fail=internal_error]")
    deleted = client.videos.create(prompt="soon deleted")
    rs.sim.clock.advance(12)
    client.videos.delete(deleted.id)
    for video_id in (failed.id, deleted.id, "video_123"):
        with pytest.raises(openai.NotFoundError):
            client.videos.download_content(video_id)

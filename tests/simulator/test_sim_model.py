"""Unit tests of the simulator's pure parts: job scripts and states, content, config, faults."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelwatch.simulator import SimClock, SimConfig, content, expected_sha256, faults, jobs


def _job(prompt: str = "a cat", *, queue_s: float = 2.0, render_s: float = 10.0) -> jobs.Job:
    script = jobs.script_for(
        prompt, queue_s=queue_s, render_s=render_s, video_bytes=1000, expires_after_s=3600.0
    )
    return jobs.Job(
        id=jobs.new_video_id(),
        seq=0,
        created_at=1000.0,
        prompt=prompt,
        model="sora-2",
        seconds="4",
        size="720x1280",
        script=script,
    )


def test_video_ids_look_real() -> None:
    """Ids are `video_` and 48 lowercase hex digits, and unique."""
    ids = {jobs.new_video_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"video_[0-9a-f]{48}", i) for i in ids)


def test_directives_are_found_anywhere_and_merged() -> None:
    """Directive blocks anywhere in the prompt are merged, flags need no value."""
    found = jobs.parse_directives("x [sim:queue=1, render=2] y [sim:stuck,fail=boom] z")
    assert found == {"queue": "1", "render": "2", "stuck": None, "fail": "boom"}


@pytest.mark.parametrize(
    "prompt",
    ["[sim:colour=red]", "[sim:queue]", "[sim:queue=soon]", "[sim:render=-1]", "[sim:stuck=100]",
     "[sim:bytes=1.5]", "[sim:fail=two words]", "[sim:queue=inf]"],
)  # fmt: skip
def test_bad_directives_are_refused(prompt: str) -> None:
    """Unknown keys, missing or malformed values raise DirectiveError."""
    with pytest.raises(jobs.DirectiveError):
        jobs.script_for(prompt, queue_s=1, render_s=1, video_bytes=1, expires_after_s=1)


def test_directives_override_drawn_durations() -> None:
    """`queue`, `render`, `bytes` and `vanish_after` replace the defaults."""
    script = jobs.script_for(
        "[sim:queue=0,render=3.5,bytes=77,vanish_after=9]",
        queue_s=1,
        render_s=1,
        video_bytes=5,
        expires_after_s=60,
    )
    assert (script.queue_s, script.render_s, script.video_bytes) == (0, 3.5, 77)
    assert script.vanish_after_s == 9
    assert script.finish_after_s == 3.5


def test_state_walks_queued_in_progress_completed() -> None:
    """Queued until queue_s, then in_progress with rising progress, then completed."""
    job = _job()
    assert jobs.state_at(job, 1000.0) == jobs.State(status="queued", progress=0)
    assert jobs.state_at(job, 1001.9).status == jobs.Status.QUEUED
    assert jobs.state_at(job, 1002.0) == jobs.State(status="in_progress", progress=0)
    assert jobs.state_at(job, 1007.0).progress == 49
    assert jobs.state_at(job, 1011.99).progress == 98
    done = jobs.state_at(job, 1012.0)
    assert done == jobs.State(
        status="completed", progress=100, completed_at=1012, expires_at=1012 + 3600
    )


def test_failed_job_reports_its_code_and_moderation_message() -> None:
    """`fail=moderation_blocked` ends failed with the real moderation message."""
    job = _job("[sim:fail=moderation_blocked]")
    assert jobs.state_at(job, 1011.0).status == jobs.Status.IN_PROGRESS
    state = jobs.state_at(job, 1012.0)
    assert state.status == jobs.Status.FAILED
    assert (state.error_code, state.error_message) == (
        "moderation_blocked",
        jobs.MODERATION_MESSAGE,
    )
    assert state.expires_at is None
    body = jobs.video_object(job, state)
    assert body["error"] == {"code": "moderation_blocked", "message": jobs.MODERATION_MESSAGE}


def test_stuck_job_never_finishes() -> None:
    """A stuck job stays in progress forever with its progress frozen."""
    job = _job("[sim:stuck=70]")
    assert job.finish_at is None
    assert jobs.state_at(job, 1005.0).progress == 29
    assert jobs.state_at(job, 10**9) == jobs.State(status="in_progress", progress=70)


def test_unknown_status_replaces_in_progress_only() -> None:
    """`unknown_status` is reported while rendering; queued and completed stay standard."""
    job = _job("[sim:unknown_status=processing]")
    assert jobs.state_at(job, 1000.0).status == "queued"
    assert jobs.state_at(job, 1005.0).status == "processing"
    assert jobs.state_at(job, 1012.0).status == "completed"


def test_vanished_job_is_marked() -> None:
    """After `vanish_after` seconds the state says the job is gone."""
    job = _job("[sim:vanish_after=5]")
    assert not jobs.state_at(job, 1004.9).vanished
    assert jobs.state_at(job, 1005.0).vanished


def test_video_object_has_all_thirteen_fields() -> None:
    """The resource carries every field of the spec, nullable ones as None."""
    job = _job()
    body = jobs.video_object(job, jobs.state_at(job, 1000.5))
    assert set(body) == {
        "id", "object", "model", "status", "progress", "created_at", "completed_at",
        "expires_at", "prompt", "size", "seconds", "remixed_from_video_id", "error",
    }  # fmt: skip
    assert (body["created_at"], body["seconds"], body["object"]) == (1000, "4", "video")


@given(
    queue_s=st.floats(0, 100),
    render_s=st.floats(0, 100),
    times=st.lists(st.floats(-10, 300), min_size=2, max_size=20),
)
def test_state_only_moves_forward(queue_s: float, render_s: float, times: list[float]) -> None:
    """Over increasing time, status never goes back and progress never drops (until terminal)."""
    job = _job(queue_s=queue_s, render_s=render_s)
    rank = {"queued": 0, "in_progress": 1, "completed": 2}
    previous = jobs.state_at(job, 1000.0 + min(times))
    for t in sorted(times):
        state = jobs.state_at(job, 1000.0 + t)
        assert rank[state.status] >= rank[previous.status]
        assert state.progress >= previous.progress
        assert 0 <= state.progress <= 100
        assert (state.progress == 100) == (state.status == "completed")
        previous = state


def test_content_is_deterministic_and_sized() -> None:
    """Chunks add up to the size, start with a real magic header and hash as advertised."""
    data = b"".join(content.chunks("video_1", content.Variant.VIDEO, 200_000))
    assert len(data) == 200_000
    assert data[4:8] == b"ftyp"
    assert max(len(c) for c in content.chunks("video_1", content.Variant.VIDEO, 200_000)) == 65536
    assert hashlib.sha256(data).hexdigest() == expected_sha256("video_1", "video", 200_000)
    other = expected_sha256("video_2", "video", 200_000)
    assert other != expected_sha256("video_1", "video", 200_000)


def test_content_chunks_differ_so_reordering_shows() -> None:
    """Each 64 KiB chunk is stamped with its index."""
    _, second, third, *_ = content.chunks("video_1", content.Variant.VIDEO, 300_000)
    assert second != third
    assert (second[:8], third[:8]) == ((1).to_bytes(8, "big"), (2).to_bytes(8, "big"))


@pytest.mark.parametrize(
    ("variant", "magic"),
    [("thumbnail", b"RIFF"), ("spritesheet", b"\xff\xd8\xff")],
)
def test_image_variants_have_fixed_small_sizes(variant: str, magic: bytes) -> None:
    """Thumbnail and spritesheet are a few KiB whatever the video size."""
    size = content.size_of(content.Variant(variant), 10**9)
    assert 1024 <= size <= 32 * 1024
    data = b"".join(content.chunks("video_1", content.Variant(variant), size))
    assert data.startswith(magic)


def test_tiny_assets_are_cut_inside_the_header() -> None:
    """A size smaller than the header still yields exactly that many bytes."""
    assert b"".join(content.chunks("v", content.Variant.VIDEO, 5)) == b"\x00\x00\x00\x20f"
    assert b"".join(content.chunks("v", content.Variant.VIDEO, 0)) == b""


@pytest.mark.parametrize(
    "kwargs",
    [{"queue_s": (3.0, 1.0)}, {"render_s": (-1.0, 1.0)}, {"video_bytes": -1},
     {"webhook_max_attempts": 0}, {"webhook_secret": "whsec_"}, {"webhook_secret": "whsec_a"}],
)  # fmt: skip
def test_config_refuses_nonsense(kwargs: dict[str, object]) -> None:
    """Impossible ranges, negative sizes and broken secrets raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SimConfig(**kwargs)  # type: ignore[arg-type]


def test_clock_advances_and_notifies() -> None:
    """The clock adds its offset to wall time, refuses to go back and tells subscribers."""
    calls: list[float] = []
    clock = SimClock(wall=lambda: 100.0)
    unsubscribe = clock.subscribe(lambda: calls.append(clock.now()))
    assert clock.advance(5) == 105.0
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    unsubscribe()
    clock.advance(1)
    assert calls == [105.0]
    clock.reset()
    assert clock.now() == 100.0


def test_fault_book_counts_and_filters() -> None:
    """Faults match by route or '*', and by video id; each use consumes one count."""
    book = faults.FaultBook()
    book.add(faults.fault("retrieve", "server_error", count=2, video_id="video_a"))
    book.add(faults.fault("*", "latency", count=1, seconds=0.5))
    assert book.take("retrieve", "video_b") == (0.5, None)
    delay, first = book.take("retrieve", "video_a")
    assert delay == 0
    assert first is not None
    assert first.kind is faults.Kind.SERVER_ERROR
    assert book.take("retrieve", "video_a")[1] is not None
    assert book.take("retrieve", "video_a") == (0.0, None)
    assert book.pending() == []


def test_unlimited_fault_lasts_until_reset() -> None:
    """count=-1 keeps applying until the book is reset."""
    book = faults.FaultBook()
    book.add(faults.fault("list", "rate_limit", count=-1))
    assert all(book.take("list", None)[1] is not None for _ in range(10))
    book.reset()
    assert book.take("list", None) == (0.0, None)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("nowhere", "drop"), {}), (("create", "explode"), {}), (("create", "drop", 0), {}),
     (("retrieve", "create_then_fail"), {}), (("create", "server_error"), {"status": 404}),
     (("create", "drop"), {"seconds": 1})],
)  # fmt: skip
def test_bad_faults_are_refused(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    """Unknown routes, kinds, counts, statuses and parameters raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        faults.fault(*args, **kwargs)  # type: ignore[arg-type]

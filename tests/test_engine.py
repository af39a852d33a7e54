"""The worker against the simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from reelwatch import assembly, engine, presenter, service
from reelwatch.models import Generation, Status, Variant
from tests.conftest import World, image_file, step

pytestmark = pytest.mark.asyncio


async def cycle(svc: service.Service) -> dict[str, object]:
    assert svc.engine is not None
    return (await svc.engine.cycle()).to_json()


async def test_submit_then_worker_moves_it_to_completed_with_files(
    svc: service.Service, world: World
) -> None:
    """queued -> in_progress -> downloading -> completed, each asset stored and checksummed."""
    g = await svc.submit(service.SubmitRequest("a paper boat"))
    assert g.status is Status.QUEUED and g.video_id and g.submitted_at is not None
    while g.status is Status.QUEUED:  # the 2 s queue
        g = await step(svc, world, g.id)
    assert g.status is Status.IN_PROGRESS and g.started_at is not None
    world.advance(11)  # past the 10 s render
    summary = await cycle(svc)
    assert summary["results"] == {"success": 1, "failed": 0, "timedOut": 0, "errors": 0}
    g = await svc.get(g.id)
    assert g.status is Status.COMPLETED and g.progress == 100
    assert set(g.assets) == {Variant.VIDEO, Variant.THUMBNAIL, Variant.SPRITESHEET}
    for variant, asset in g.assets.items():
        data = svc.storage.path(asset.key).read_bytes()
        assert len(data) == asset.bytes
        assert hashlib.sha256(data).hexdigest() == asset.sha256
        assert asset.sha256 == world.sim.sim.expected_sha256(g.video_id, variant.value)
    assert g.assets[Variant.VIDEO].content_type == "video/mp4"
    kinds = [e.kind for e in await svc.history(g.id)]
    assert kinds[0] == "created" and kinds[1] == "submitted" and kinds[-1] == "completed"


async def submit(svc: service.Service, prompt: str, **kwargs: object) -> Generation:
    return await svc.submit(service.SubmitRequest(prompt, **kwargs))  # type: ignore[arg-type]


async def run_until_terminal(
    svc: service.Service, world: World, gid: str, steps: int = 30
) -> Generation:
    g = await svc.get(gid)
    for _ in range(steps):
        if g.terminal:
            return g
        g = await step(svc, world, gid)
    raise AssertionError(f"{gid} still {g.status} after {steps} steps")


async def test_unchanged_looks_are_folded_into_the_next_event_not_one_each(
    svc: service.Service, world: World
) -> None:
    """A render whose answer does not change leaves no event per look: the looks are counted
    on the generation, and the next change carries how many and when; the timeline folds them
    into one line."""
    g = await submit(svc, "[sim:queue=0,render=60,progress=none] silent render")
    for _ in range(12):
        g = await step(svc, world, g.id)
        if g.quiet_polls >= 3:
            break
    assert g.status is Status.IN_PROGRESS and g.quiet_polls >= 3
    assert g.quiet_since is not None and g.updated_at is not None
    quiet, last_look = g.quiet_polls, g.updated_at
    events = await svc.history(g.id)
    assert "poll" not in [e.kind for e in events]
    folded = presenter.timeline(events, g)[-1]
    assert folded["kind"] == "quiet" and folded["polls"] == quiet
    assert presenter.quiet_words(folded) == f"polled {quiet} times, no change"
    g = await run_until_terminal(svc, world, g.id)
    assert g.status is Status.COMPLETED and g.quiet_polls == 0
    events = await svc.history(g.id)
    carried = [e for e in events if e.data.get("quiet_polls")]
    assert carried[0].data["quiet_polls"] >= quiet
    assert carried[0].data["quiet_to"] >= last_look.isoformat()
    assert "poll" not in [e.kind for e in events]
    assert [e for e in presenter.timeline(events, g) if e["kind"] == "quiet"]


async def test_rate_limit_window_is_honoured_and_pauses_the_worker(world: World) -> None:
    """A 429 with Retry-After reschedules no earlier than it and pauses every call until then."""
    serial = world.with_settings(concurrency=1)  # one call at a time: nothing else in flight
    async with assembly.open_service(
        serial.settings, clock=serial.clock, need_provider=True
    ) as svc:
        a = await submit(svc, "first")
        b = await submit(svc, "second")
        assert a.next_poll_at and b.next_poll_at
        world.advance_to(max(a.next_poll_at, b.next_poll_at))
        world.sim.sim.inject("retrieve", "rate_limit", retry_after=7)
        before = world.sim.sim.stats()["requests"].get("retrieve", 0)
        now = world.clock.now()
        await cycle(svc)
        after = world.sim.sim.stats()["requests"].get("retrieve", 0)
        assert after - before == 1  # the second call was never sent: the worker paused itself
        # Both are due at the same instant, so either may have been asked first.
        kinds = {g.id: (await svc.history(g.id))[-1].kind for g in (a, b)}
        [hit] = [gid for gid, kind in kinds.items() if kind == "rate_limited"]
        first = await svc.get(hit)
        assert first.status is Status.QUEUED and first.next_poll_at is not None
        assert first.next_poll_at >= now + timedelta(seconds=7)
        # The paused worker claims nothing more: the other one is left alone, unleased.
        assert sorted(kinds.values()) == ["rate_limited", "submitted"]
        world.advance(3)
        await cycle(svc)  # still inside the window: nothing is due, nothing is sent
        assert world.sim.sim.stats()["requests"].get("retrieve", 0) == after
        world.advance(7)  # past Retry-After and its jitter (at most 1 s per pause)
        await cycle(svc)
        assert world.sim.sim.stats()["requests"].get("retrieve", 0) == after + 2


async def test_retry_after_ms_header_is_honoured(svc: service.Service, world: World) -> None:
    """`retry-after-ms` is read as milliseconds."""
    g = await submit(svc, "ms")
    world.advance_to(g.next_poll_at)
    world.sim.sim.inject("retrieve", "rate_limit", retry_after_ms=4500)
    now = world.clock.now()
    await cycle(svc)
    g = await svc.get(g.id)
    assert g.next_poll_at is not None
    assert now + timedelta(seconds=4.49) <= g.next_poll_at <= now + timedelta(seconds=5.6)


async def test_server_errors_are_retried_with_backoff_never_failed(
    svc: service.Service, world: World
) -> None:
    """5xx answers keep the generation where it is, back off, and it completes afterwards."""
    g = await submit(svc, "flaky")
    world.sim.sim.inject("retrieve", "server_error", count=3, status=503)
    for expected_failures in (1, 2, 3):
        g = await step(svc, world, g.id)
        assert g.status is Status.QUEUED and g.failures == expected_failures
    kinds = [e.kind for e in await svc.history(g.id)]
    assert kinds.count("retry_scheduled") == 3
    g = await run_until_terminal(svc, world, g.id)
    assert g.status is Status.COMPLETED and g.failures == 0


async def test_truncated_download_is_repaired_without_a_new_generation(
    svc: service.Service, world: World
) -> None:
    """A body cut short is retried on its own; no second create, no half-written file left."""
    g = await submit(svc, "truncate me [sim:queue=0,render=1]")
    world.sim.sim.inject("content", "truncate", count=1)
    while g.status in (Status.QUEUED, Status.IN_PROGRESS):
        g = await step(svc, world, g.id)
    assert g.status is Status.DOWNLOADING
    assert (await svc.history(g.id))[-1].kind == "download_failed"
    g = await run_until_terminal(svc, world, g.id)
    assert g.status is Status.COMPLETED
    video = g.assets[Variant.VIDEO]
    assert video.sha256 == world.sim.sim.expected_sha256(g.video_id, "video")
    assert world.sim.sim.stats()["creates"] == 1
    leftovers = [p.name for p in svc.storage.root.rglob("*.part")]
    assert leftovers == []


async def test_stuck_job_times_out(tmp_path: Path, world: World) -> None:
    """A job that never finishes is failed as `timeout` after REELWATCH_TIMEOUT_MINUTES."""
    quick = world.with_settings(timeout_minutes=0.25)  # 15 s
    async with assembly.open_service(quick.settings, clock=quick.clock, need_provider=True) as svc:
        g = await submit(svc, "[sim:stuck] forever")
        summaries = []
        for _ in range(20):
            g = await svc.get(g.id)
            if g.terminal:
                break
            quick.advance_to(g.next_poll_at)
            summaries.append(await cycle(svc))
        assert g.status is Status.FAILED and g.error is not None and g.error.code == "timeout"
        assert g.timed_out
        assert summaries[-1]["results"]["timedOut"] == 1  # type: ignore[index]
        assert quick.clock.now() >= g.watch_started_at + timedelta(seconds=15)


async def test_vanished_job_is_failed_not_found(svc: service.Service, world: World) -> None:
    """A 404 on retrieve means the job is gone: failed with code not_found."""
    g = await submit(svc, "[sim:vanish_after=1] now you see me")
    g = await run_until_terminal(svc, world, g.id)
    assert g.status is Status.FAILED and g.error is not None and g.error.code == "not_found"


async def test_remote_failure_keeps_the_providers_code_and_message(
    svc: service.Service, world: World
) -> None:
    """A provider-side failure is recorded with its code and message."""
    g = await submit(svc, "[sim:fail=moderation_blocked] nope")
    g = await run_until_terminal(svc, world, g.id)
    assert g.error is not None and g.error.code == "moderation_blocked"
    assert "moderation" in g.error.message
    assert g.step.startswith("Failed: ")


async def test_unknown_remote_status_keeps_polling_and_is_recorded(
    svc: service.Service, world: World
) -> None:
    """A status word nobody knows is an event, not a crash and not a silent spin."""
    g = await submit(svc, "[sim:unknown_status=mystery,queue=0,render=30] odd gateway")
    for _ in range(3):
        g = await step(svc, world, g.id)
    assert g.status in (Status.QUEUED, Status.IN_PROGRESS)
    unknown = [e for e in await svc.history(g.id) if e.kind == "unknown_status"]
    assert len(unknown) >= 2 and unknown[0].data["remote_status"] == "mystery"
    assert g.next_poll_at is not None and g.next_poll_at > world.clock.now()


async def test_lost_create_answer_is_reconciled_not_resubmitted(
    svc: service.Service, world: World
) -> None:
    """The job was created but the answer lost: the worker finds it in the list, pays once."""
    world.sim.sim.inject("create", "create_then_fail")
    g = await submit(svc, "was I created?")
    assert g.status is Status.PENDING and g.submit_ambiguous and g.video_id is None
    assert world.sim.sim.stats()["creates"] == 1
    g = await step(svc, world, g.id)  # after reconcile_delay_s: the job may be done by then
    assert g.status is not Status.PENDING and g.video_id is not None
    assert world.sim.sim.stats()["creates"] == 1
    kinds = [e.kind for e in await svc.history(g.id)]
    assert "submit_ambiguous" in kinds and "reconciled" in kinds
    g = await run_until_terminal(svc, world, g.id)
    assert g.status is Status.COMPLETED


async def test_a_burst_of_lost_creates_is_reconciled_from_one_walk_of_the_list(
    svc: service.Service, world: World
) -> None:
    """Three creates lost together cost one walk of the list, and each finds its own job: the
    two that came while the walk ran did not wait for it (holding a worker slot) but were told
    to look again, and then used it. A create lost after that walk gets a walk of its own."""
    world.sim.sim.inject("create", "create_then_fail", count=3)
    lost = [await submit(svc, f"lost together {i}") for i in range(3)]
    assert all(g.submit_ambiguous for g in lost)
    assert svc.engine is not None
    lists = world.sim.sim.stats()["requests"].get("list", 0)
    world.advance(svc.engine.policy.reconcile_delay_s + 1)
    await svc.engine.cycle()  # the three reconciles run side by side
    assert svc.engine.listing.walks == 1
    after_one = [await svc.get(g.id) for g in lost]
    assert sum(g.video_id is not None for g in after_one) == 1
    for g in after_one:
        if g.video_id is None:
            kinds = [e.kind for e in await svc.history(g.id)]
            assert kinds[-1] == "waiting" and g.submit_ambiguous
    world.advance(engine.LISTING_AGAIN_S)
    await svc.engine.cycle()
    assert world.sim.sim.stats()["requests"].get("list", 0) == lists + 1
    assert svc.engine.listing.walks == 1
    found = [await svc.get(g.id) for g in lost]
    assert all(g.video_id is not None for g in found)
    assert len({g.video_id for g in found}) == 3
    assert world.sim.sim.stats()["creates"] == 3
    world.sim.sim.inject("create", "create_then_fail")
    late = await submit(svc, "lost later")
    world.advance(svc.engine.policy.reconcile_delay_s + 1)
    await svc.engine.cycle()
    assert svc.engine.listing.walks == 2
    assert (await svc.get(late.id)).video_id is not None
    assert world.sim.sim.stats()["creates"] == 4


async def test_create_that_never_happened_is_submitted_again_after_checking(
    svc: service.Service, world: World
) -> None:
    """A create that failed before creating anything is resubmitted once the list shows none."""
    world.sim.sim.inject("create", "server_error", status=502)
    g = await submit(svc, "try again")
    assert g.status is Status.PENDING and g.submit_ambiguous
    g = await step(svc, world, g.id)
    assert g.status is Status.QUEUED and g.video_id is not None
    assert world.sim.sim.stats()["jobs"] == 1
    reconciled = [e for e in await svc.history(g.id) if e.kind == "reconciled"]
    assert reconciled[0].data["found"] is None


async def test_one_bad_generation_never_stops_the_others(
    svc: service.Service, world: World
) -> None:
    """Connection drops for one video leave the rest of the batch progressing."""
    good = [await submit(svc, f"good {i} [sim:queue=0,render=1]") for i in range(3)]
    bad = await submit(svc, "bad [sim:queue=0,render=1]")
    world.sim.sim.inject("retrieve", "drop", count=-1, video_id=bad.video_id)
    world.advance_to(max(g.next_poll_at for g in [*good, bad] if g.next_poll_at))
    summary = await cycle(svc)
    assert summary["processed"] == 4
    for g in good:
        assert (await svc.get(g.id)).status is Status.COMPLETED
    b = await svc.get(bad.id)
    assert b.status is bad.status and b.failures == 1


async def test_input_reference_is_sent_and_kept(
    svc: service.Service, world: World, tmp_path: Path
) -> None:
    """The reference image goes to the provider and a copy is kept for retries."""
    image = image_file(tmp_path / "first.png")
    g = await submit(svc, "from a frame", input_reference=image)
    assert g.input_reference is not None
    assert svc.storage.path(g.input_reference).read_bytes() == image.read_bytes()
    assert g.video_id is not None
    job = world.sim.sim.job(g.video_id)
    assert job is not None and job.reference is not None
    size = image.stat().st_size
    assert job.reference.byte_count == size and job.reference.content_type == "image/png"


async def test_status_checks_run_concurrently_not_one_by_one(
    svc: service.Service, world: World
) -> None:
    """Due generations are asked about concurrently: the provider sees many calls in flight."""
    gs = [await submit(svc, f"parallel {i}") for i in range(12)]
    world.advance_to(max(g.next_poll_at for g in gs if g.next_poll_at))
    world.sim.sim.inject("retrieve", "latency", count=-1, seconds=0.3)
    summary = await cycle(svc)
    assert summary["processed"] == 12
    assert world.sim.sim.stats()["max_inflight"] >= 8


async def test_download_progress_is_recorded_for_live_views(
    svc: service.Service, world: World
) -> None:
    """A download reports bytes so far as events, and the step says "Downloading N of M MB"."""
    assert svc.engine is not None
    svc.engine.progress_every_s = 0.0  # report after every chunk instead of every second
    g = await submit(svc, "[sim:queue=0,render=1,bytes=3000000] big one")
    while g.status is not Status.COMPLETED:
        g = await step(svc, world, g.id)
    progress = [e for e in await svc.history(g.id) if e.kind == "download_progress"]
    video = [e.data["bytes"] for e in progress if e.data["variant"] == "video"]
    assert len(video) >= 3 and video == sorted(set(video))  # up to 1 MiB per piece
    assert all(e.data["total"] == 3_000_000 for e in progress if e.data["variant"] == "video")
    assert all(e.status is Status.DOWNLOADING for e in progress)
    halfway = dataclasses.replace(
        g, status=Status.DOWNLOADING, download_bytes=1_200_000, download_total=3_000_000
    )
    assert halfway.step == "Downloading 1.2 of 3.0 MB"


async def test_retention_deletes_old_files_once_and_keeps_the_record(world: World) -> None:
    """With REELWATCH_RETENTION_DAYS, a completed generation's files are deleted after that
    many days (not before): the row stops pointing at them and an `assets_deleted` event
    says what went; a second pass finds nothing to do."""
    kept = world.with_settings(retention_days=1)
    async with assembly.open_service(kept.settings, clock=world.clock, need_provider=True) as svc:
        assert svc.engine is not None
        g = await submit(svc, "[sim:queue=0,render=1] keep me a day")
        g = await run_until_terminal(svc, kept, g.id)
        assert g.status is Status.COMPLETED and len(g.assets) == 3
        keys = [a.key for a in g.assets.values()]
        world.advance(86_000)
        assert await svc.engine.retain() == 0
        assert all([await svc.storage.exists(key) for key in keys])
        world.advance(500)
        assert await svc.engine.retain() == 1
        assert not any([await svc.storage.exists(key) for key in keys])
        after = await svc.get(g.id)
        assert after.status is Status.COMPLETED and after.assets == {}
        last = (await svc.history(g.id))[-1]
        assert last.kind == "assets_deleted" and last.actor == "retention"
        assert last.data["variants"] == ["spritesheet", "thumbnail", "video"]
        assert last.data["bytes"] == sum(a.bytes for a in g.assets.values())
        assert await svc.engine.retain() == 0
        assert presenter.files_words(after, 1, await svc.history(g.id)).startswith(
            "deleted after 1 day ("
        )

"""The worker survives its database, shares 429 pauses and the budget, and sets bad rows aside.

In-process, against the simulator over real HTTP and real SQLite and PostgreSQL databases.
The same behaviours are exercised against real processes in tests/chaos/.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from reelwatch import (
    assembly,
    breaker,
    exceptions,
    lifecycle,
    metrics,
    schedule,
    service,
    settings,
    simulator,
)
from reelwatch.models import Generation, NewEvent, Status
from reelwatch.web import create_app
from tests.conftest import World, make_settings, step


async def submit(svc: service.Service, prompt: str) -> Any:
    return await svc.submit(service.SubmitRequest(prompt))


async def wait_for(predicate: Any, *, within_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(within_s):
            while not await predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


# --- a supervised worker --------------------------------------------------------------------


@pytest.mark.postgres
async def test_the_worker_survives_its_database_sessions_being_terminated(
    world: World, db_url: str
) -> None:
    """pg_terminate_backend on every session, again and again: the loop goes on, work finishes."""
    if not db_url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    fast = world.with_settings(poll_min_seconds=0.05, poll_max_seconds=0.2)
    database = sa.engine.make_url(db_url).database
    async with assembly.open_service(fast.settings, need_provider=True) as svc:
        assert svc.engine is not None
        svc.engine.metrics = collected = metrics.Metrics(tables=False)
        ids = [(await submit(svc, f"t{i} [sim:queue=0.2,render=3]")).id for i in range(4)]
        stop = asyncio.Event()
        worker = asyncio.create_task(svc.engine.run(stop))

        def errors_seen() -> float:
            value = collected.registry.get_sample_value("reelwatch_database_errors_total")
            return value or 0.0

        def terminate() -> None:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )

        try:
            # An idle pooled session that was terminated is replaced silently (pre-ping), so
            # only a kill that lands mid-query is an error the loop sees: keep killing, fast,
            # while the jobs render, until the worker has met at least one.
            rounds = 0
            while rounds < 6 or (errors_seen() < 1 and rounds < 80):
                await asyncio.to_thread(terminate)
                await asyncio.sleep(0.05 if rounds >= 6 else 0.4)
                assert not worker.done(), worker
                rounds += 1
            ids.append((await submit(svc, "after the storm [sim:queue=0,render=0.5]")).id)

            async def finished() -> bool:
                done = [(await svc.get(i)).status for i in ids]
                return done == [Status.COMPLETED] * len(ids)

            await wait_for(finished, within_s=30, what="every generation completed")
        finally:
            stop.set()
            await worker
    assert errors_seen() >= 1, f"no database error met in {rounds} rounds of terminations"


async def test_the_loop_retries_a_database_error_instead_of_dying(world: World) -> None:
    """A claim that fails on the database is logged, backed off and tried again; health says so."""
    async with assembly.open_service(world.settings, need_provider=True) as svc:
        assert svc.engine is not None
        engine = svc.engine
        real = svc.store.claim_for
        failures = 0

        async def failing(*args: Any, **kwargs: Any) -> Any:
            nonlocal failures
            if failures < 3:
                failures += 1
                raise sa.exc.OperationalError("SELECT", {}, Exception("database or disk is full"))
            return await real(*args, **kwargs)

        svc.store.claim_for = failing  # type: ignore[method-assign]
        stop = asyncio.Event()
        worker = asyncio.create_task(engine.run(stop))
        seen: list[str | None] = []

        async def recovered() -> bool:
            seen.append(engine.health.db_error)
            return failures == 3 and engine.health.db_error is None

        await wait_for(recovered, within_s=10, what="the loop to recover")
        stop.set()
        await worker
        assert "database or disk is full" in [s for s in seen if s]
        assert engine.health.running is False  # stopped cleanly


@pytest.fixture
def own_sqlite(tmp_path: Path, sim: simulator.RunningSimulator) -> settings.Settings:
    """Settings on a database of this test's own (it breaks the schema on purpose)."""
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'own.db'}", sim.base_url)


async def test_a_missing_schema_ends_the_worker_with_that_error(
    own_sqlite: settings.Settings,
) -> None:
    """An error no retry can fix (the table is gone) is raised, not retried forever."""
    async with assembly.open_service(own_sqlite, need_provider=True) as svc:
        assert svc.engine is not None
        async with svc.store._engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE provider_state"))
        with pytest.raises(exceptions.DatabaseUnavailable, match="provider_state"):
            await asyncio.wait_for(svc.engine.run(asyncio.Event()), 10)
        assert svc.engine.health.running is False


async def test_readyz_says_when_the_worker_is_not_running(own_sqlite: settings.Settings) -> None:
    """/readyz is 503 "worker not running" once serve's worker has died, with the reason."""
    app = create_app(own_sqlite)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_for(ready, within_s=5, what="ready")
            svc: service.Service = app.state.service
            async with svc.store._engine.begin() as conn:
                await conn.execute(sa.text("DROP TABLE provider_state"))

            async def not_ready() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await wait_for(not_ready, within_s=10, what="not ready")
            answer = (await client.get("/readyz")).json()
            assert answer["status"] == "unavailable"
            assert answer["reason"].startswith("worker not running: ")
            assert "provider_state" in answer["reason"]  # why it stopped


# --- leases, creates, the shared pause and budget -----------------------------------------


def test_a_lease_shorter_than_two_request_timeouts_is_refused(tmp_path: Path) -> None:
    """The lease must outlive any call made under it; the error names both variables."""
    with pytest.raises(exceptions.ConfigError, match="REELWATCH_LEASE_SECONDS"):
        settings.load(data_dir=tmp_path, lease_seconds=8, request_timeout_seconds=20)
    assert settings.load(data_dir=tmp_path, lease_seconds=40, request_timeout_seconds=20)


async def test_a_flagged_create_is_not_reconciled_before_it_could_show_up(
    svc: service.Service, world: World
) -> None:
    """A pending row flagged mid-create waits `request timeout + 10 s` before any list request."""
    g = await submit(svc, "in flight elsewhere")
    now = world.clock.now()
    pending = await svc.store.create(
        Generation(
            id="gen_flagged",
            provider=g.provider,
            video_id=None,
            status=Status.PENDING,
            progress=0,
            model=g.model,
            seconds=g.seconds,
            size=g.size,
            prompt="flagged",
            created_at=now,
            watch_started_at=now,
            next_poll_at=now,
        ),
        NewEvent("created"),
        owner="submitter",
        now=now,
        lease_s=10,
    )
    assert svc.engine is not None
    flagged = await svc.store.mark_submitting(pending, now=now, reconcile_after_s=15)
    assert flagged.generation.next_poll_at == now + timedelta(seconds=15)
    world.advance(11)  # the submitter's lease is gone, the create may still be running
    lists_before = world.sim.sim.stats()["requests"].get("list", 0)
    await svc.engine.cycle()
    assert (await svc.get("gen_flagged")).status is Status.PENDING
    assert world.sim.sim.stats()["requests"].get("list", 0) == lists_before
    world.advance(5)
    await svc.engine.cycle()
    assert world.sim.sim.stats()["requests"].get("list", 0) == lists_before + 1


async def test_a_429_on_a_download_honours_retry_after_for_every_worker(world: World) -> None:
    """The download is not retried inside the window, and another worker sends nothing either."""
    async with (
        assembly.open_service(world.settings, clock=world.clock, need_provider=True) as one,
        assembly.open_service(world.settings, clock=world.clock, need_provider=True) as two,
    ):
        assert one.engine is not None and two.engine is not None
        g = await submit(one, "[sim:queue=0,render=1] limited download")
        others = [(await submit(one, f"bystander {i}")).id for i in range(3)]
        world.advance(2)
        world.sim.sim.inject("content", "rate_limit", retry_after=30)
        now = world.clock.now()
        g = await step(one, world, g.id)
        assert g.status is Status.DOWNLOADING and g.error is not None
        assert g.error.code == "rate_limited"
        assert g.next_poll_at is not None and g.next_poll_at >= now + timedelta(seconds=30)
        sent = sum(world.sim.sim.stats()["requests"].values())
        world.advance(20)  # the bystanders are due, but the provider asked for 30 s
        await asyncio.gather(one.engine.cycle(), two.engine.cycle())
        assert sum(world.sim.sim.stats()["requests"].values()) == sent
        world.advance(12)
        await two.engine.cycle()
        for gid in [g.id, *others]:
            assert (await one.get(gid)).attempts >= 1
        assert (await one.get(g.id)).status is Status.COMPLETED


async def test_the_request_budget_is_shared_by_all_workers(world: World) -> None:
    """Two workers with a budget of 60/min claim ten between them at once, not twenty."""
    tight = world.with_settings(requests_per_minute=60)
    async with (
        assembly.open_service(tight.settings, clock=tight.clock, need_provider=True) as one,
        assembly.open_service(tight.settings, clock=tight.clock, need_provider=True) as two,
    ):
        gs = [await submit(one, f"shared budget {i}") for i in range(24)]
        tight.advance_to(max(g.next_poll_at for g in gs if g.next_poll_at))
        assert one.engine is not None and two.engine is not None
        first, second = await asyncio.gather(one.engine.cycle(), two.engine.cycle())
        assert first.processed + second.processed == 10


# --- poison pills, the janitor, the breaker, disk full -----------------------------------


async def test_a_generation_claimed_too_often_without_a_step_is_quarantined(
    world: World,
) -> None:
    """Claims that end in crashes are counted; after five it is set aside, not polled; a reset
    clears that, and so does the one real attempt made every ten minutes when it answers."""
    patient = world.with_settings(timeout_minutes=120)
    async with assembly.open_service(
        patient.settings, clock=world.clock, need_provider=True
    ) as svc:
        assert svc.engine is not None
        g = await submit(svc, "[sim:queue=0,render=6000] poison")

        async def crash_six_times() -> None:
            for _ in range(6):  # six workers took it and died without writing anything
                world.advance_to((await svc.get(g.id)).next_poll_at)
                await svc.store.claim_due(
                    owner="doomed", now=world.clock.now(), limit=1, lease_s=30
                )
                world.advance(31)

        await crash_six_times()
        polls = world.sim.sim.stats()["requests"].get("retrieve", 0)
        await svc.engine.cycle()
        after = await svc.get(g.id)
        assert after.attention is not None and after.attention.startswith("poison_pill")
        assert after.next_poll_at is not None
        assert after.next_poll_at >= world.clock.now() + timedelta(minutes=9)
        assert world.sim.sim.stats()["requests"].get("retrieve", 0) == polls  # no call
        assert svc.view(after)["attention"] == after.attention
        reset = await svc.reset(g.id)  # by hand
        assert reset.attention is None and reset.claims == 0

        await crash_six_times()
        await svc.engine.cycle()
        again = await svc.get(g.id)
        assert again.attention is not None
        # Ten minutes on, one real attempt: the provider answers, which lifts the quarantine.
        polls = world.sim.sim.stats()["requests"].get("retrieve", 0)
        world.advance_to(again.next_poll_at)
        await svc.engine.cycle()
        tried = await svc.get(g.id)
        assert world.sim.sim.stats()["requests"].get("retrieve", 0) == polls + 1
        assert tried.attention is None and tried.claims == 0


async def test_a_step_written_clears_the_claim_count(svc: service.Service, world: World) -> None:
    """A worker killed once is not a poison pill: the next written step resets the count."""
    g = await submit(svc, "one crash")
    world.advance_to(g.next_poll_at)
    await svc.store.claim_due(owner="killed", now=world.clock.now(), limit=1, lease_s=30)
    world.advance(31)
    before = g.attempts
    g = await step(svc, world, g.id)
    assert g.claims == 0 and g.attention is None and g.attempts == before + 1


async def test_the_janitor_removes_only_orphaned_temp_files(
    svc: service.Service, world: World
) -> None:
    """Temp files untouched for long are removed at the first cycle; fresh ones stay."""
    root = svc.storage.root
    (root / "gen_a").mkdir(parents=True)
    old = root / "gen_a" / ".video.mp4.abc123.part"
    fresh = root / "gen_a" / ".video.mp4.def456.part"
    kept = root / "gen_a" / "video.mp4"
    for path in (old, fresh, kept):
        path.write_bytes(b"x" * 10)
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(kept, (long_ago, long_ago))
    assert svc.engine is not None
    await svc.engine.cycle()
    assert not old.exists() and fresh.exists() and kept.exists()


def test_the_breaker_opens_after_failures_probes_once_and_closes() -> None:
    """Closed -> open after 5 failures -> one probe after the cooldown -> closed on success."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    b = breaker.Breaker(threshold=5, cooldown_s=5, max_cooldown_s=60)
    assert [b.failed(now) for _ in range(5)] == [False] * 4 + [True]
    assert b.allowance(now) == 0 and b.wait_s(now) == 5
    later = now + timedelta(seconds=5)
    assert b.allowance(later) == 1
    b.started(later)
    assert b.allowance(later) == 0  # only one probe at a time
    assert b.failed(later)  # the probe failed: open again, for twice as long
    assert b.wait_s(later) == 10
    again = later + timedelta(seconds=10)
    b.started(again)
    b.succeeded()
    assert b.state(again) is breaker.State.CLOSED and b.allowance(again) is None


async def test_a_failing_provider_opens_the_circuit_and_gets_probes_only(world: World) -> None:
    """After five 503s in a row the worker sends one probe per cooldown, then resumes."""
    serial = world.with_settings(concurrency=1)
    async with assembly.open_service(
        serial.settings, clock=serial.clock, need_provider=True
    ) as svc:
        gs = [await submit(svc, f"down {i}") for i in range(8)]
        serial.advance_to(max(g.next_poll_at for g in gs if g.next_poll_at))
        world.sim.sim.inject("retrieve", "server_error", count=-1, status=503)
        assert svc.engine is not None
        await svc.engine.cycle()
        assert world.sim.sim.stats()["requests"].get("retrieve", 0) == 5
        await svc.engine.cycle()  # open: nothing goes
        assert world.sim.sim.stats()["requests"].get("retrieve", 0) == 5
        world.sim.sim.reset_faults()
        serial.advance(5)
        await svc.engine.cycle()  # the probe, which succeeds, and then the rest
        assert svc.engine.breaker.state(serial.clock.now()) is breaker.State.CLOSED
        for g in gs:
            assert (await svc.get(g.id)).status is not Status.FAILED


async def test_disk_full_keeps_the_generation_downloading_and_recovers(
    world: World, tmp_path: Path
) -> None:
    """No space for the video: temp removed, `disk_full` shown and counted; frees -> completes."""
    small = tmp_path / "small"
    small.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]
    if os.geteuid() != 0 or subprocess.run(mount, check=False).returncode != 0:  # noqa: ASYNC221
        if os.environ.get("CI"):
            pytest.fail("mounting a tmpfs is needed for the disk-full test in CI")
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        full = world.with_settings(storage_url_raw=f"file://{small}")
        async with assembly.open_service(
            full.settings, clock=full.clock, need_provider=True
        ) as svc:
            assert svc.engine is not None
            svc.engine.metrics = collected = metrics.Metrics(tables=False)
            filler = small / "filler"
            filler.write_bytes(b"\0" * (1024 * 1024))
            g = await submit(svc, "[sim:queue=0,render=1,bytes=1500000] too big")
            world.advance(2)
            g = await step(svc, full, g.id)
            assert g.status is Status.DOWNLOADING and g.error is not None
            assert g.error.code == "disk_full"
            assert collected.registry.get_sample_value("reelwatch_disk_full_total") == 1
            assert not list(small.rglob("*.part"))
            filler.unlink()
            g = await step(svc, full, g.id)
            assert g.status is Status.COMPLETED and g.error is None
    finally:
        subprocess.run(["umount", str(small)], check=False)  # noqa: ASYNC221


async def test_a_download_whose_lease_is_taken_stops_and_stores_nothing(
    svc: service.Service, world: World
) -> None:
    """An admin cancel voids the lease mid-download: the download aborts, no file, no write."""
    g = await submit(svc, "[sim:queue=0,render=1,bytes=300000000] long download")
    world.advance_to(g.next_poll_at)  # rendered by then: the poll goes on into the download
    assert svc.engine is not None
    svc.engine.progress_every_s = 0.01
    [claim] = await svc.store.claim_due(owner="w", now=world.clock.now(), limit=1, lease_s=60)
    advancing = asyncio.create_task(svc.engine.advance(claim))

    async def downloading() -> bool:
        return (await svc.get(g.id)).download_bytes > 0

    await wait_for(downloading, within_s=20, what="the download to start")
    await svc.cancel(g.id)
    with pytest.raises(exceptions.LeaseLost):
        await advancing
    after = await svc.get(g.id)
    assert after.status is Status.CANCELLED and not after.assets
    # The small extras may have finished first (whole files); the video never lands, no temp.
    assert not list(svc.storage.root.rglob("video*")) and not list(svc.storage.root.rglob("*.part"))


async def test_a_submit_honours_a_pause_another_worker_recorded(
    svc: service.Service, world: World
) -> None:
    """The API's and the CLI's submit read the shared pause: no create inside the window."""
    now = world.clock.now()
    assert svc.engine is not None
    await svc.store.pause(svc.engine.endpoint.key, until=now + timedelta(seconds=30), now=now)
    g = await submit(svc, "while paused")
    assert g.status is Status.PENDING and g.video_id is None
    assert g.next_poll_at is not None and g.next_poll_at >= now + timedelta(seconds=30)
    assert world.sim.sim.stats()["creates"] == 0
    world.advance(31)
    assert svc.engine is not None
    await svc.engine.cycle()
    assert (await svc.get(g.id)).video_id is not None
    assert world.sim.sim.stats()["creates"] == 1


async def test_provider_text_too_long_or_with_nul_is_stored_not_an_outage(
    svc: service.Service, world: World
) -> None:
    """A 60-character status word and a NUL in an error message fit the columns (PostgreSQL)."""
    word = "rendering_" + "x" * 50
    g = await submit(svc, f"[sim:queue=0,render=30,unknown_status={word}] odd words")
    g = await step(svc, world, g.id)
    assert g.remote_status == word[:50] and g.status is Status.QUEUED
    assert svc.engine is not None and svc.engine.health.db_error is None


def test_a_huge_retry_after_is_read_as_an_hour() -> None:
    """A Retry-After of years (or beyond what a date can hold) waits an hour, never crashes."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    g = Generation(
        id="gen_x",
        provider="openai",
        video_id="video_x",
        status=Status.QUEUED,
        progress=0,
        model="sora-2",
        seconds=4,
        size="720x1280",
        prompt="p",
        created_at=now,
        watch_started_at=now,
    )
    for huge in (31_536_000.0, 1e12):
        d = lifecycle.decide(g, lifecycle.RateLimited(huge), now, schedule.Policy(), 0.5)
        assert d.generation.next_poll_at is not None
        wait = (d.generation.next_poll_at - now).total_seconds()
        assert lifecycle.MAX_RETRY_AFTER_S <= wait <= lifecycle.MAX_RETRY_AFTER_S + 1


async def test_a_server_without_a_worker_reports_no_worker_up(
    own_sqlite: settings.Settings,
) -> None:
    """`serve --no-worker` exposes no `reelwatch_worker_up` (which would read as a dead worker)."""
    for run_worker, expected in ((False, False), (True, True)):
        app = create_app(own_sqlite, run_worker=run_worker)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                text = (await c.get("/metrics")).text
        assert ("reelwatch_worker_up" in text) is expected

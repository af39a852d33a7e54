"""Reliability scenarios 1-6 (../shared/reliability-scenarios.md) against real worker processes.

Several `reelwatch worker` processes share one fresh PostgreSQL database; the simulator runs as
its own process; faults come from the simulator's scripted faults, signals, and the TCP fault
proxy. Each scenario prints its figure (`harness.report`) and asserts the expected outcome.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles

import psycopg
import pytest

from tests.chaos import harness
from tests.chaos.harness import FaultProxy, Proc, Sim

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

# A short lease keeps the recovery scenarios short; it must be >= 2 x the request timeout.
LEASE_S = 6.0
REQUEST_TIMEOUT_S = 3.0
SWEEP_S = 1.0  # the longest an idle worker goes without looking for due rows (engine)


def _lease_env(db_url: str, sim: Sim | None, data_dir: Path, **extra: str) -> dict[str, str]:
    return harness.env_for(
        db_url=db_url,
        sim=sim,
        data_dir=data_dir,
        REELWATCH_LEASE_SECONDS=str(LEASE_S),
        REELWATCH_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT_S),
        REELWATCH_DOWNLOAD_VARIANTS="video",
        **extra,
    )


def _via(env: dict[str, str], **changes: str) -> dict[str, str]:
    """The same environment with some variables changed (a worker behind a proxy)."""
    return {**env, **changes}


def _sim_via(proxy: FaultProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}/v1"


@contextmanager
def _workers(envs: list[dict[str, str]]) -> Iterator[list[Proc]]:
    """Start one worker per environment, wait until each runs; stop them all afterwards."""
    procs = [harness.start_worker(env) for env in envs]
    try:
        for proc in procs:
            harness.wait_worker_started(proc, timeout=30)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()


def _wait_all_terminal(db_url: str, ids: list[str], *, timeout: float, procs: list[Proc]) -> float:
    def done() -> bool:
        found = harness.rows(db_url, "id = ANY(%s)", ids)
        return len(found) == len(ids) and all(
            r["status"] in ("completed", "failed", "cancelled") for r in found
        )

    try:
        return harness.wait_until(done, timeout=timeout, interval=0.2, what="every job terminal")
    except AssertionError as exc:
        counts = harness.statuses(db_url)
        tails = "\n".join(f"--- {p!r}\n{p.tail(15)}" for p in procs)
        raise AssertionError(f"{exc}; statuses {counts}\n{tails}") from None


def _ms(values: list[float], q: int) -> float:
    """The q-th percentile (1-99) of seconds, in milliseconds."""
    if len(values) < 2:
        return values[0] * 1000 if values else 0.0
    return quantiles(values, n=100, method="inclusive")[q - 1] * 1000


# --- 1. claim race ------------------------------------------------------------------------------

# One claimer process: opens the store, then claims once per "go" line it reads, answering with
# what it got and how long the claim took. Eight of these race for the same due row.
CLAIMER = """
import asyncio, json, sys, time
from datetime import UTC, datetime
from reelwatch.store import Store

async def main(url, owner):
    store = await Store.open(url, upgrade=False)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        started = time.perf_counter()
        claims = await store.claim_due(
            owner=owner, now=datetime.now(UTC), limit=1, lease_s=30
        )
        took = time.perf_counter() - started
        got = [[c.generation.id, c.token, c.lease_expires_at.isoformat()] for c in claims]
        print(json.dumps({"got": got, "s": took}), flush=True)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _seed(db_url: str, count: int, *, prompt: str = "race") -> list[str]:
    """Insert `count` queued generations, due now and unleased (the store's own verbs)."""
    from reelwatch.models import Generation, NewEvent, Status
    from reelwatch.store import Store

    store = await Store.open(db_url)
    try:
        now = datetime.now(UTC)
        ids = []
        for i in range(count):
            g = Generation(
                id=f"gen_{prompt}_{i}",
                provider="openai",
                video_id=f"video_{prompt}_{i}",
                status=Status.QUEUED,
                progress=0,
                model="sora-2",
                seconds=4,
                size="720x1280",
                prompt=f"{prompt} {i}",
                created_at=now,
                watch_started_at=now,
                next_poll_at=now - timedelta(seconds=1),
            )
            claim = await store.create(g, NewEvent("created", {}), owner="seed", now=now, lease_s=1)
            await store.release([claim])
            ids.append(g.id)
        return ids
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 600))
def test_1_claim_race_has_exactly_one_holder_per_round(pg: str) -> None:
    """Eight processes claim the same due row at once, round after round: one holder each time."""
    rounds = harness.scale(100, 1000)
    (generation_id,) = asyncio.run(_seed(pg, 1))
    env = harness.env_for(db_url=pg, sim=None, data_dir=Path("/nonexistent"))
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, pg, f"claimer-{i}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    latencies: list[float] = []
    duplicates = empty = 0
    try:
        for c in claimers:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        with psycopg.connect(pg, autocommit=True) as admin:
            for n in range(rounds):
                # Free the row again: half the rounds with no lease at all, half with an
                # expired one (the two ways a row becomes claimable).
                admin.execute(
                    "UPDATE generations SET lease_owner = %s, lease_token = %s,"
                    " lease_expires_at = %s WHERE id = %s",
                    ("old", "stale", datetime.now(UTC) - timedelta(seconds=1), generation_id)
                    if n % 2
                    else (None, None, None, generation_id),
                )
                for c in claimers:
                    assert c.stdin is not None
                    c.stdin.write("go\n")
                    c.stdin.flush()
                answers = []
                for c in claimers:
                    assert c.stdout is not None
                    answers.append(json.loads(c.stdout.readline()))
                holders = [a for a in answers if a["got"]]
                latencies.extend(a["s"] for a in answers)
                duplicates += len(holders) > 1
                empty += not holders
    finally:
        for c in claimers:
            if c.stdin is not None:
                c.stdin.close()
            c.wait(timeout=10)
            if c.stdout is not None:
                c.stdout.close()
    harness.report(
        1,
        "claim race",
        rounds=rounds,
        processes=8,
        duplicate_claims=duplicates,
        rounds_without_holder=empty,
        claim_p50_ms=_ms(latencies, 50),
        claim_p99_ms=_ms(latencies, 99),
    )
    assert duplicates == 0
    assert empty == 0


# --- 2. no loss, no duplicates under load -------------------------------------------------------

LOAD = [(64, 4)] if not harness.LONG else [(n, c) for n in (1, 64, 1000) for c in (1, 4, 16)]


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 900))
@pytest.mark.parametrize(("jobs", "workers"), LOAD, ids=[f"{n}x{c}" for n, c in LOAD])
def test_2_every_job_completes_exactly_once_under_load(
    pg: str, sim: Sim, data_dir: Path, jobs: int, workers: int
) -> None:
    """N jobs across C workers: every job completed, once, with its files and their sha256."""
    # A budget that never binds: the figure is the workers' throughput, not the request budget
    # (shared by every worker, 1,200 a minute by default).
    env = harness.env_for(
        db_url=pg, sim=sim, data_dir=data_dir, REELWATCH_REQUESTS_PER_MINUTE="1000000"
    )
    with _workers([env] * workers) as procs:
        started = time.monotonic()
        ids = harness.submit(env, [f"load {i} [sim:queue=0.2,render=1]" for i in range(jobs)])
        _wait_all_terminal(pg, ids, timeout=harness.scale(60, 600), procs=procs)
        elapsed = time.monotonic() - started
        alive = sum(p.alive() for p in procs)
    counts = harness.statuses(pg)
    completions = harness.event_counts(pg, "completed")
    stats = sim.stats()
    variants = 3  # video, thumbnail, spritesheet
    downloads = {v: d["content_downloads"] for v, d in stats["videos"].items()}
    extra_downloads = sum(max(0, n - variants) for n in downloads.values())
    lost = jobs - counts.get("completed", 0)
    duplicated = sum(n - 1 for n in completions.values() if n > 1)
    problems = harness.file_problems(pg, data_dir)
    harness.report(
        2,
        f"no loss, no duplicates ({jobs} jobs x {workers} workers)",
        lost=lost,
        duplicated_completions=duplicated,
        extra_downloads=extra_downloads,
        duplicate_creates=stats["duplicate_creates"],
        jobs_per_s=jobs / elapsed,
        seconds=elapsed,
    )
    assert counts == {"completed": jobs}
    assert sorted(completions) == sorted(ids)
    assert set(completions.values()) == {1}
    assert problems == []
    assert stats["creates"] == jobs and stats["duplicate_creates"] == 0
    assert extra_downloads == 0, downloads
    assert alive == workers


# --- 3. kill -9 mid-poll ------------------------------------------------------------------------


@pytest.mark.slow
def test_3_kill9_mid_poll_is_recovered_after_the_lease(pg: str, sim: Sim, data_dir: Path) -> None:
    """A worker SIGKILLed while its poll is in flight: another reclaims within the lease."""
    env = _lease_env(pg, sim, data_dir)
    (generation_id,) = harness.submit(env, ["kill me [sim:queue=0,render=3]"])
    (row,) = harness.rows(pg)
    sim.inject("retrieve", "latency", seconds=10, video_id=row["video_id"])
    with _workers([env]) as (a,):
        owner_a = harness.worker_owner(a)

        def a_polls() -> bool:
            (r,) = harness.rows(pg)
            retrieves = sim.stats()["videos"].get(r["video_id"], {}).get("retrieves", 0)
            return r["lease_owner"] == owner_a and retrieves >= 1

        harness.wait_until(a_polls, timeout=15, what="worker A to hold the lease mid-poll")
        (held,) = harness.rows(pg)
        killed_at = datetime.now(UTC)
        a.kill9()
    # B starts after the kill (it takes ~2 s, well inside the rest of A's lease).
    with _workers([env]) as (b,):
        assert harness.worker_owner(b) != owner_a

        def taken_over() -> bool:
            return bool(
                harness.sql(
                    pg,
                    "SELECT 1 FROM events WHERE generation_id = %s AND at > %s",
                    generation_id,
                    killed_at,
                )
            )

        harness.wait_until(taken_over, timeout=LEASE_S + 10, what="a write after the kill")
        first_write = harness.sql(
            pg,
            "SELECT min(at) FROM events WHERE generation_id = %s AND at > %s",
            generation_id,
            killed_at,
        )[0][0]
        _wait_all_terminal(pg, [generation_id], timeout=20, procs=[b])
    (after,) = harness.rows(pg)
    recovery_s = (first_write - killed_at).total_seconds()
    left_of_lease_s = (held["lease_expires_at"] - killed_at).total_seconds()
    harness.report(
        3,
        "kill -9 mid-poll",
        recovery_s=recovery_s,
        lease_left_at_kill_s=left_of_lease_s,
        bound_s=LEASE_S + SWEEP_S + 1,
        attempts_before=held["attempts"],
        attempts_after=after["attempts"],
    )
    assert recovery_s <= LEASE_S + SWEEP_S + 1
    assert recovery_s >= left_of_lease_s - 0.5  # nobody took it while the lease held
    assert after["status"] == "completed"
    assert after["attempts"] > held["attempts"]
    assert harness.file_problems(pg, data_dir) == []


# --- 4. zombie writer fenced --------------------------------------------------------------------


@pytest.mark.slow
def test_4_stopped_worker_cannot_write_after_its_lease_was_taken(
    pg: str, sim: Sim, data_dir: Path
) -> None:
    """SIGSTOP A mid-download past its lease; B finishes; A resumes: 0 stale writes, no temp."""
    env = _lease_env(pg, sim, data_dir)
    size = 6_000_000
    with FaultProxy("127.0.0.1", sim.port) as slow:
        slow.set_rate(600_000)  # A's download would take ~10 s
        env_a = _via(env, OPENAI_BASE_URL=_sim_via(slow))
        with _workers([env_a]) as (a,):
            owner_a = harness.worker_owner(a)
            (generation_id,) = harness.submit(
                env, [f"zombie [sim:queue=0,render=0.5,bytes={size}]"]
            )

            def a_downloads() -> bool:
                (r,) = harness.rows(pg)
                return r["lease_owner"] == owner_a and r["download_bytes"] > 0

            harness.wait_until(a_downloads, timeout=20, what="worker A to be downloading")
            with _workers([env]) as (b,):  # B cannot claim it while A renews its lease
                harness.wait_until(a_downloads, timeout=1, what="A still downloading")
                a.sigstop()
                stopped_at = datetime.now(UTC)
                _wait_all_terminal(pg, [generation_id], timeout=LEASE_S + 20, procs=[b])
                (done,) = harness.rows(pg)
                events_before = harness.sql(
                    pg, "SELECT count(*), max(id) FROM events WHERE generation_id = %s",
                    generation_id,
                )[0]  # fmt: skip
                a.sigcont()
                resumed_at = datetime.now(UTC)
                harness.wait_until(
                    lambda: bool(harness.logged(a, "lease_lost")),
                    timeout=20,
                    what=f"worker A to log `lease lost`:\n{a.tail()}",
                )
                harness.wait_until(lambda: not harness.temp_files(data_dir), timeout=5,
                                   what="A's temp file to be removed")  # fmt: skip
                (after,) = harness.rows(pg)
                events_after = harness.sql(
                    pg, "SELECT count(*), max(id) FROM events WHERE generation_id = %s",
                    generation_id,
                )[0]  # fmt: skip
                a_alive = a.alive()
    stale = events_after[0] - events_before[0]
    changed = {k for k in ("status", "attempts", "assets", "lease_owner") if after[k] != done[k]}
    downloads = sim.stats()["videos"][done["video_id"]]["content_downloads"]
    harness.report(
        4,
        "zombie writer fenced",
        stale_writes_accepted=stale + len(changed),
        stopped_s=(resumed_at - stopped_at).total_seconds(),
        lease_lost_logged=len(harness.logged(a, "lease_lost")),
        temp_files_left=len(harness.temp_files(data_dir)),
        downloads=downloads,
    )
    assert stale == 0 and not changed, (events_before, events_after, changed)
    assert done["status"] == "completed"
    assert harness.event_counts(pg, "completed") == {generation_id: 1}
    assert harness.file_problems(pg, data_dir) == []
    assert downloads == 2  # A's, abandoned, and B's
    assert a_alive


# --- 5. lease renewal for long downloads --------------------------------------------------------

# The shortest lease settings allow (>= 5 s and >= 2 x the request timeout): the download has
# to outlast three of them.
RENEW_LEASE_S = float(harness.scale(5, 10))
RENEW_TIMEOUT_S = RENEW_LEASE_S / 2


def _renew_env(db_url: str, sim: Sim, data_dir: Path) -> dict[str, str]:
    return harness.env_for(
        db_url=db_url,
        sim=sim,
        data_dir=data_dir,
        REELWATCH_LEASE_SECONDS=str(RENEW_LEASE_S),
        REELWATCH_REQUEST_TIMEOUT_SECONDS=str(RENEW_TIMEOUT_S),
        REELWATCH_DOWNLOAD_VARIANTS="video",
    )


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 300))
def test_5a_a_download_longer_than_three_leases_is_renewed_not_reclaimed(
    pg: str, sim: Sim, data_dir: Path
) -> None:
    """A download lasting > 3 leases keeps its lease: no other worker takes it, 1 download."""
    rate = 500_000
    size = int(rate * (3 * RENEW_LEASE_S + 1.5))
    env = _renew_env(pg, sim, data_dir)
    with FaultProxy("127.0.0.1", sim.port) as slow:
        slow.set_rate(rate)
        env_a = _via(env, OPENAI_BASE_URL=_sim_via(slow))
        with _workers([env_a]) as (a,):
            owner_a = harness.worker_owner(a)
            (generation_id,) = harness.submit(env, [f"long [sim:queue=0,render=0.3,bytes={size}]"])

            def downloading() -> bool:
                (r,) = harness.rows(pg)
                return r["status"] == "downloading" and r["lease_owner"] == owner_a

            harness.wait_until(downloading, timeout=20, what="A to start the download")
            began = time.monotonic()
            owners: set[str | None] = set()
            expiries: set[datetime] = set()
            with _workers([env, env]) as others:
                while True:
                    (r,) = harness.rows(pg)
                    if r["status"] != "downloading":
                        break
                    owners.add(r["lease_owner"])
                    expiries.add(r["lease_expires_at"])
                    assert time.monotonic() - began < 20 * RENEW_LEASE_S, "download never ended"
                    time.sleep(0.1)
                lasted = time.monotonic() - began
                _wait_all_terminal(pg, [generation_id], timeout=10, procs=[a, *others])
    downloads = sim.stats()["videos"][r["video_id"]]["content_downloads"]
    false_reclaims = len(owners - {owner_a, None}) + (downloads - 1)
    harness.report(
        5,
        "lease renewal (renewals on)",
        download_s=lasted,
        leases=lasted / RENEW_LEASE_S,
        renewals_seen=len(expiries),
        false_reclaims=false_reclaims,
        downloads=downloads,
    )
    assert lasted > 3 * RENEW_LEASE_S
    assert false_reclaims == 0, owners
    assert harness.rows(pg)[0]["status"] == "completed"
    assert harness.event_counts(pg, "completed") == {generation_id: 1}
    assert harness.file_problems(pg, data_dir) == []


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 300))
def test_5b_a_download_whose_lease_cannot_be_renewed_is_aborted_and_taken_over(
    pg: str, sim: Sim, data_dir: Path
) -> None:
    """Renewals blocked (A's database cut): A aborts its download, B completes the job."""
    rate = 500_000
    size = int(rate * (3 * RENEW_LEASE_S + 1.5))
    env = _renew_env(pg, sim, data_dir)
    with ExitStack() as stack:
        slow = stack.enter_context(FaultProxy("127.0.0.1", sim.port))
        db = stack.enter_context(FaultProxy("127.0.0.1", 5432))
        slow.set_rate(rate)
        env_a = _via(
            env, OPENAI_BASE_URL=_sim_via(slow), REELWATCH_DATABASE_URL=harness.pg_via(db, pg)
        )
        (a,) = stack.enter_context(_workers([env_a]))
        owner_a = harness.worker_owner(a)
        (generation_id,) = harness.submit(env, [f"cut [sim:queue=0,render=0.3,bytes={size}]"])

        def downloading() -> bool:
            (r,) = harness.rows(pg)
            return r["lease_owner"] == owner_a and r["download_bytes"] > 0

        harness.wait_until(downloading, timeout=20, what="A to be downloading")
        (b,) = stack.enter_context(_workers([env]))
        harness.wait_until(downloading, timeout=5, what="A still downloading")
        db.down()
        cut_at = time.monotonic()
        (held,) = harness.rows(pg)
        expiry = held["lease_expires_at"]
        expiry_mono = cut_at + (expiry - held["db_now"]).total_seconds()

        def a_stopped() -> bool:
            return slow.open_downloads(min_bytes=100_000) == 0

        harness.wait_until(a_stopped, timeout=RENEW_LEASE_S + 10, what="A to abort its download")
        aborted_at = slow.last_close_at()
        _wait_all_terminal(pg, [generation_id], timeout=RENEW_LEASE_S + 20, procs=[a, b])
        db.up()
        harness.wait_until(lambda: not harness.temp_files(data_dir), timeout=10,
                           what="A's temp file removed")  # fmt: skip
        a_alive = a.alive()
    (after,) = harness.rows(pg)
    downloads = sim.stats()["videos"][after["video_id"]]["content_downloads"]
    abort_latency_s = aborted_at - expiry_mono
    harness.report(
        5,
        "lease renewal (renewals blocked)",
        abort_after_lease_expiry_s=abort_latency_s,
        lease_left_at_cut_s=expiry_mono - cut_at,
        downloads=downloads,
        taken_over=after["status"] == "completed",
    )
    assert abort_latency_s <= 2.0  # A stops within moments of losing its lease (or before)
    assert after["status"] == "completed"
    assert harness.event_counts(pg, "completed") == {generation_id: 1}
    assert harness.file_problems(pg, data_dir) == []
    assert downloads == 2
    assert a_alive, a.tail()


# --- 6. database connection loss and outage -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 300))
def test_6a_workers_survive_terminated_database_sessions(pg: str, sim: Sim, data_dir: Path) -> None:
    """pg_terminate_backend on every worker session, repeatedly: workers live, all jobs finish."""
    env = _lease_env(pg, sim, data_dir, REELWATCH_BACKOFF_MAX_SECONDS="1")
    jobs = harness.scale(12, 60)
    rounds = harness.scale(6, 30)
    render_s = rounds * 0.5  # the jobs render while the sessions are being killed
    with _workers([env] * 3) as procs:
        prompts = [f"terminated {i} [sim:queue=0,render={render_s}]" for i in range(jobs)]
        ids = harness.submit(env, prompts)
        terminated = []
        for _ in range(rounds):
            time.sleep(0.5)  # spread the terminations over the jobs' lifetime
            terminated.append(harness.terminate_backends(pg))
        waited = _wait_all_terminal(pg, ids, timeout=LEASE_S + 30, procs=procs)
        alive = [p.alive() for p in procs]
        db_errors = sum(len(harness.logged(p, "db_error")) for p in procs)
    counts = harness.statuses(pg)
    harness.report(
        6,
        "pg_terminate_backend",
        rounds=len(terminated),
        sessions_terminated=sum(terminated),
        workers_alive=f"{sum(alive)}/3",
        db_errors_logged=db_errors,
        finished_s_after_last_kill=waited,
        statuses=counts,
    )
    assert all(alive), "\n".join(p.tail() for p in procs)
    assert sum(terminated) > 0
    assert counts == {"completed": jobs}
    assert set(harness.event_counts(pg, "completed").values()) == {1}
    assert harness.file_problems(pg, data_dir) == []


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 300))
def test_6b_workers_ride_out_a_database_outage_and_resume(
    pg: str, sim: Sim, data_dir: Path
) -> None:
    """PostgreSQL unreachable for 20 s (60 s long): workers live, reconnect fast, jobs finish."""
    outage_s = float(harness.scale(20, 60))
    jobs = harness.scale(9, 30)
    env = _lease_env(pg, sim, data_dir)
    with ExitStack() as stack:
        proxies = [stack.enter_context(FaultProxy("127.0.0.1", 5432)) for _ in range(3)]
        envs = [_via(env, REELWATCH_DATABASE_URL=harness.pg_via(p, pg)) for p in proxies]
        procs = stack.enter_context(_workers(envs))
        harness.submit(env, [f"outage {i} [sim:queue=0,render=4]" for i in range(jobs)])
        harness.wait_until(
            lambda: harness.statuses(pg).get("in_progress", 0) > 0,
            timeout=10,
            what="jobs in progress",
        )
        for p in proxies:
            p.down()
        down_at = time.monotonic()
        time.sleep(outage_s)  # the outage itself: nothing to poll for, it is the fault
        alive_during = [p.alive() for p in procs]
        attempts = [sum(1 for t in p.refused if t >= down_at) for p in proxies]
        for p in proxies:
            p.up()
        up_at = time.monotonic()

        def reconnected(proxy: FaultProxy) -> bool:
            return any(t >= up_at for t, _ in proxy.connections)

        reconnect_s = [
            harness.wait_until(lambda p=p: reconnected(p), timeout=15, what="a reconnect")
            for p in proxies
        ]
        # Once everyone is back, no due row may sit under a lease that died long ago.
        stuck_seen = [0]

        def settled() -> bool:
            stuck = harness.sql(
                pg,
                "SELECT count(*) FROM generations WHERE status NOT IN"
                " ('completed', 'failed', 'cancelled') AND lease_expires_at < now() - %s"
                " AND next_poll_at < now() - %s",
                timedelta(seconds=SWEEP_S + 5),
                timedelta(seconds=SWEEP_S + 5),
            )[0][0]
            stuck_seen[0] = max(stuck_seen[0], int(stuck))
            return set(harness.statuses(pg)) <= {"completed", "failed", "cancelled"}

        harness.wait_until(settled, timeout=30, interval=0.25, what="every job terminal")
        stuck_max = stuck_seen[0]
        alive_after = [p.alive() for p in procs]
    per_minute = [n / (outage_s / 60) for n in attempts]
    counts = harness.statuses(pg)
    harness.report(
        6,
        f"database outage {outage_s:.0f} s",
        workers_alive=f"{sum(alive_after)}/3",
        reconnect_s_max=max(reconnect_s),
        attempts_per_worker_minute=[round(x) for x in per_minute],
        stuck_jobs=stuck_max,
        statuses=counts,
    )
    assert all(alive_during) and all(alive_after), "\n".join(p.tail() for p in procs)
    assert max(reconnect_s) <= 5.0
    assert all(n > 0 for n in attempts)  # they did try (and did not give up)
    assert max(per_minute) <= 600, per_minute  # but no tight loop: at most 10 a second
    assert stuck_max == 0
    assert counts == {"completed": jobs}
    assert harness.file_problems(pg, data_dir) == []

"""Scenario 25: a soak with scheduled chaos (../shared/reliability-scenarios.md).

Three workers and a `serve --no-worker` (the HTTP API jobs are submitted through) share one
PostgreSQL database; the simulator runs as a process. While jobs arrive at a steady rate a
worker is SIGKILLed (and restarted) on a schedule, every worker's database session is
terminated on another, 5 % of provider requests answer 5xx and 1 % 429, and now and then a
create is committed at the provider but answered with a 500. Afterwards every job must be
completed, once, with its file, and no video may have been created twice. Memory, file
descriptors and database connections are sampled throughout.

The duration is REELWATCH_SOAK_SECONDS (default 60 here; CI's long run uses 600 and the
documented soak 7200); the job count scales with it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import quantiles

import httpx
import pytest

from tests.chaos import harness
from tests.chaos.harness import Proc

# Read at import: tests/conftest.py scrubs REELWATCH_* from the environment around each test.
SOAK_S = float(os.environ.get("REELWATCH_SOAK_SECONDS", "60"))
WORKERS = 3
LEASE_S = 6.0
SUBMIT_SHARE = 0.8  # jobs arrive during the first 80 % of the soak, chaos lasts all of it
JOBS = max(20, round(SOAK_S * 0.75))
KILL_EVERY_S = min(300.0, max(12.0, SOAK_S / 4))
TERMINATE_EVERY_S = min(420.0, max(9.0, SOAK_S / 5))
AMBIGUOUS_CREATES = max(2, JOBS // 100)
ERROR_SHARE, RATE_LIMIT_SHARE = 0.05, 0.01
APP_NAME = "chaos-worker"  # the workers' application_name, so only their sessions are cut


@dataclass
class Series:
    """Samples of one process incarnation: (seconds since start, value)."""

    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    fds: list[tuple[float, float]] = field(default_factory=list)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of the points, per hour (None for fewer than 5 points)."""
    if len(points) < 5:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600


class FaultPacer:
    """Injects simulator faults in proportion to the requests made since the last tick.

    The simulator's faults hit the next N matching requests, so "5 % of requests" becomes
    "every second, fault 5 % of the requests the last second saw", carrying the fractions.
    """

    def __init__(self, sim: harness.Sim) -> None:
        self.sim = sim
        self.seen = self._total()
        self.carry = {"server_error": 0.0, "rate_limit": 0.0}
        self.injected = {"server_error": 0, "rate_limit": 0}

    def _total(self) -> int:
        return sum(self.sim.stats()["requests"].values())

    def tick(self) -> None:
        total = self._total()
        delta, self.seen = total - self.seen, total
        for kind, share in (("server_error", ERROR_SHARE), ("rate_limit", RATE_LIMIT_SHARE)):
            self.carry[kind] += delta * share
            count = math.floor(self.carry[kind])
            if count > 0:
                self.carry[kind] -= count
                params = {"retry_after": 1} if kind == "rate_limit" else {"status": 503}
                self.sim.inject("*", kind, count=count, **params)
                self.injected[kind] += count


@pytest.mark.chaos
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 240)
def test_25_soak_with_scheduled_chaos(pg: str, data_dir: Path) -> None:
    """Jobs keep arriving through kills, session kills, 5xx, 429 and lost creates: all done once."""
    with harness.simulator(queue_s=0.5, render_s=2.0) as sim:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=data_dir,
            REELWATCH_LEASE_SECONDS=str(LEASE_S),
            REELWATCH_REQUEST_TIMEOUT_SECONDS="3",
            REELWATCH_DOWNLOAD_VARIANTS="video",
        )
        worker_env = {**env, "REELWATCH_DATABASE_URL": f"{pg}?application_name={APP_NAME}"}
        serve, base = harness.start_serve(env, "--no-worker")
        workers: list[Proc] = [harness.start_worker(worker_env) for _ in range(WORKERS)]
        for w in workers:
            harness.wait_worker_started(w, timeout=30)
        series: dict[int, Series] = {}
        db_connections: list[tuple[float, int]] = []
        submitted: list[str] = []
        submit_errors: list[str] = []
        kills = terminated_rounds = terminated_sessions = 0
        pacer = FaultPacer(sim)
        started = time.monotonic()
        next_kill = KILL_EVERY_S
        next_terminate = TERMINATE_EVERY_S
        ambiguous_at = [
            SOAK_S * SUBMIT_SHARE * (i + 0.5) / AMBIGUOUS_CREATES for i in range(AMBIGUOUS_CREATES)
        ]
        next_sample = 0.0
        with httpx.Client(base_url=base, timeout=30) as client:
            while (now := time.monotonic() - started) < SOAK_S:
                due = min(JOBS, int(now / (SOAK_S * SUBMIT_SHARE) * JOBS) + 1)
                while len(submitted) + len(submit_errors) < due:
                    i = len(submitted) + len(submit_errors)
                    prompt = f"soak {i} [sim:queue=0.5,render={1 + i % 4}]"
                    answer = client.post("/api/generations", json={"prompt": prompt})
                    if answer.status_code == 201:
                        submitted.append(answer.json()["id"])
                    else:
                        submit_errors.append(f"{answer.status_code}: {answer.text[:200]}")
                if ambiguous_at and now >= ambiguous_at[0]:
                    ambiguous_at.pop(0)
                    sim.inject("create", "create_then_fail")
                if now >= next_kill:
                    next_kill += KILL_EVERY_S
                    victim = kills % WORKERS
                    workers[victim].kill9()
                    workers[victim] = harness.start_worker(worker_env)  # as a supervisor would
                    kills += 1
                if now >= next_terminate:
                    next_terminate += TERMINATE_EVERY_S
                    terminated_sessions += harness.terminate_backends(pg, application_name=APP_NAME)
                    terminated_rounds += 1
                if now >= next_sample:
                    next_sample += 1.0
                    pacer.tick()
                    for proc in [serve, *workers]:
                        if proc.alive():
                            s = series.setdefault(proc.pid, Series())
                            at = time.monotonic() - proc.started_at
                            s.rss_mb.append((at, proc.rss_mb()))
                            s.fds.append((at, float(proc.open_fds())))
                    db_connections.append((now, harness.backend_count(pg)))
                time.sleep(0.05)  # the schedule's tick; every action above is due-time driven
        sim.reset_faults()
        soak_end = time.monotonic()
        all_alive = all(w.alive() for w in workers) and serve.alive()
        try:
            harness.wait_until(
                lambda: set(harness.statuses(pg)) <= {"completed", "failed", "cancelled"},
                timeout=120,
                interval=0.5,
                what="every soak job terminal",
            )
        except AssertionError as exc:
            tails = "\n".join(f"--- {p!r}\n{p.tail(10)}" for p in workers)
            raise AssertionError(f"{exc}: {harness.statuses(pg)}\n{tails}") from None
        drained_s = time.monotonic() - soak_end
        for proc in [serve, *workers]:
            proc.terminate()
        stats = sim.stats()

    counts = harness.statuses(pg)
    completions = harness.event_counts(pg, "completed")
    lags = [
        float(r[0])
        for r in harness.sql(
            pg,
            "SELECT extract(epoch FROM completed_at - remote_completed_at) FROM generations"
            " WHERE completed_at IS NOT NULL AND remote_completed_at IS NOT NULL",
        )
    ]
    first_created, last_completed = harness.sql(
        pg, "SELECT min(created_at), max(completed_at) FROM generations"
    )[0]
    span_h = (last_completed - first_created).total_seconds() / 3600
    # Trends only of processes that lived through at least half the soak, after their first
    # third (start-up and warm-up growth is not a leak).
    lived = [s for s in series.values() if s.rss_mb and s.rss_mb[-1][0] >= SOAK_S / 2]
    rss_slopes = [slope_per_hour(s.rss_mb[len(s.rss_mb) // 3 :]) for s in lived]
    fd_slopes = [slope_per_hour(s.fds[len(s.fds) // 3 :]) for s in lived]
    known_rss = [x for x in rss_slopes if x is not None]
    known_fds = [x for x in fd_slopes if x is not None]
    conns = [n for _, n in db_connections]
    third = max(1, len(conns) // 3)
    harness.report(
        25,
        f"soak {SOAK_S:.0f} s",
        jobs=len(submitted),
        statuses=counts,
        jobs_per_h=round(len(submitted) / span_h) if span_h else None,
        p95_stored_after_remote_s=quantiles(lags, n=20)[18] if len(lags) > 1 else None,
        rss_slope_mb_per_h_max=round(max(known_rss), 1) if known_rss else None,
        fd_slope_per_h_max=round(max(known_fds), 1) if known_fds else None,
        db_connections_max=max(conns),
        duplicate_creates=stats["duplicate_creates"],
        creates=stats["creates"],
        duplicated_completions=sum(n - 1 for n in completions.values() if n > 1),
        kills=kills,
        session_kill_rounds=terminated_rounds,
        sessions_terminated=terminated_sessions,
        faults_5xx=pacer.injected["server_error"],
        faults_429=pacer.injected["rate_limit"],
        ambiguous_creates=AMBIGUOUS_CREATES,
        drained_s=drained_s,
    )
    assert not submit_errors, submit_errors[:5]
    assert all_alive
    assert counts == {"completed": len(submitted)}
    assert set(completions.values()) == {1}
    assert stats["duplicate_creates"] == 0
    assert stats["creates"] == len(submitted)
    assert harness.file_problems(pg, data_dir) == []
    assert kills >= 2 and terminated_rounds >= 2 and pacer.injected["server_error"] > 0
    # Connections do not leak across session kills and restarts: the last third of the soak
    # holds no more than the first two thirds did (plus a little slack for timing).
    assert max(conns[-third:]) <= max(conns[:-third]) + 3, conns
    if SOAK_S >= 600:  # long enough for a trend to mean something
        assert known_rss and max(known_rss) <= 60, rss_slopes

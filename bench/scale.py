"""Scenario `scale`: how many active generations reelwatch workers keep up with, beside a
yardstick measured in the same run.

`python -m bench scale` (one worker, SQLite): levels of 1k, 5k, 10k and 20k active generations
(200 and 500 with --quick), stopping after the first level whose p99 detection lag passes 3 s.
`python -m bench scale --workers 1,2,4` (PostgreSQL): levels of 10k, 20k and 40k, each with
1, 2 and 4 workers (500 active with 1 and 2 workers with --quick), every combination run.

Each run gets a fresh simulator process (50 ms per request) and a fresh database into which the
jobs are inserted as tracked (queued) generations, as `reelwatch track` would leave them. Each
job's queue time is counted from the workers' start, after the seeding (a job that finished
before the workers started would count its wait as lag), so the workers meet the lag
scenario's shape: each job queued 0-20 s from their start, then rendering 20-120 s. The
workers, each a `reelwatch worker` process, run until every generation is stored. Figures per
run: detection lag, status checks per second (peak over 5 s windows and average, all workers
together), each worker's CPU and its RSS growth per tracked generation (peak RSS minus the RSS
of a worker idle on an empty database).

The yardstick: before the workers start, the same simulator is polled for `YARDSTICK_S` by the
leanest client there is (an aiohttp loop, 256 requests in flight, answers read and dropped).
Its requests per second is what this simulator on this machine can answer at most; reelwatch's
checks per second are reported as a ratio to it, so runs on two machines can be compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench import common, lag
from bench.api import PG_ADMIN, PG_URL

LEVELS = (1_000, 5_000, 10_000, 20_000)
QUICK_LEVELS = (200, 500)
PG_LEVELS = (10_000, 20_000, 40_000)
PG_QUICK_LEVELS = (500,)
YARDSTICK_S = 10.0
YARDSTICK_IN_FLIGHT = 256
SEED_PER_S = 800  # jobs created per second while seeding, at the least (each run records it)


def workload(n: int, quick: bool) -> list[tuple[float, float]]:
    """Each job's queue and render seconds, counted from when the workers start (seeded: every
    run agrees): the lag scenario's shape."""
    rng = random.Random(20261126)
    queue_max, render = (2.0, (3.0, 8.0)) if quick else (20.0, (20.0, 120.0))
    return [(rng.uniform(0, queue_max), rng.uniform(*render)) for _ in range(n)]


async def _seed(db_url: str, ids: list[str], prompts: list[str], start: float) -> None:
    """Insert the simulator's jobs as tracked, queued generations, watched from `start`."""
    from reelwatch.models import Generation, Status
    from reelwatch.store import Store, _to_row, tables

    now = datetime.fromtimestamp(start, UTC)
    rows = []
    for video_id, prompt in zip(ids, prompts, strict=True):
        g = Generation(
            id=f"gen_{secrets.token_hex(12)}",
            provider="openai",
            video_id=video_id,
            status=Status.QUEUED,
            progress=0,
            model="sora-2",
            seconds=4,
            size="720x1280",
            prompt=prompt,
            created_at=now,
            watch_started_at=now,
            submitted_at=now,
            next_poll_at=now,
        )
        rows.append(_to_row(g))
    store = await Store.open(db_url)
    try:
        async with store._engine.begin() as conn:
            for start in range(0, len(rows), 5_000):
                await conn.execute(tables.generations.insert(), rows[start : start + 5_000])
    finally:
        await store.close()


async def _create(
    base_url: str, jobs: list[tuple[float, float]], start: float | None = None
) -> tuple[list[str], list[str]]:
    """Create the jobs at the simulator, 200 at a time; (their ids, their prompts). With
    `start` (a time.time()), each job's queue is counted from then, whenever it is created."""
    import aiohttp

    limit = asyncio.Semaphore(200)
    headers = {"Authorization": f"Bearer {lag.KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def one(i: int, queue_s: float, render_s: float) -> tuple[str, str]:
            async with limit:
                ahead = max(0.0, start - time.time()) if start is not None else 0.0
                prompt = f"bench {i} [sim:queue={ahead + queue_s:.2f},render={render_s:.2f}]"
                async with session.post(f"{base_url}/videos", json={"prompt": prompt}) as r:
                    r.raise_for_status()
                    video_id: str = (await r.json())["id"]
                    return video_id, prompt

        made = await asyncio.gather(*(one(i, q, r) for i, (q, r) in enumerate(jobs)))
        return [v for v, _ in made], [p for _, p in made]


async def _yardstick(base_url: str, ids: list[str], seconds: float) -> dict[str, Any]:
    """The leanest poller: `YARDSTICK_IN_FLIGHT` loops, each GETting the next job's status and
    dropping the answer. Answers per second over `seconds`, after a 1 s warm-up."""
    import aiohttp

    headers = {"Authorization": f"Bearer {lag.KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    counted = 0
    failed = 0
    measuring = False
    cycle = itertools.cycle(ids)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def loop() -> None:
            nonlocal counted, failed
            while True:
                async with session.get(f"{base_url}/videos/{next(cycle)}") as response:
                    await response.read()
                    if measuring:
                        if response.status == 200:
                            counted += 1
                        else:
                            failed += 1

        tasks = [asyncio.create_task(loop()) for _ in range(YARDSTICK_IN_FLIGHT)]
        await asyncio.sleep(1.0)
        measuring = True
        began = time.monotonic()
        await asyncio.sleep(seconds)
        measuring = False
        took = time.monotonic() - began
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "requests_per_s": round(counted / took, 1),
        "errors": failed,
        "in_flight": YARDSTICK_IN_FLIGHT,
        "seconds": round(took, 1),
    }


def _idle_rss(env: dict[str, str]) -> float:
    """RSS of a worker process idling on an empty database (the baseline per level)."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as folder:
        quiet = {**env, "REELWATCH_DATA_DIR": folder}
        quiet.pop("REELWATCH_DATABASE_URL", None)
        with subprocess.Popen(
            [sys.executable, "-m", "reelwatch", "worker"],
            env=quiet,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:
            time.sleep(4)
            rss = common.rss_mib(proc.pid)
            proc.terminate()
            proc.wait(timeout=30)
    return rss


@contextlib.contextmanager
def _database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database: a SQLite file in `folder`, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'reelwatch.db'}"
        return
    name = f"reelwatch_bench_scale_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield PG_URL.format(name=name)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _finished_rows(db_url: str) -> tuple[int, list[tuple[str, Any]], dict[str, int]]:
    """(active left, [(video id, completed_at)], {status: count}) read straight from the table."""
    active = (
        "SELECT count(*) FROM generations WHERE status NOT IN ('completed','failed','cancelled')"
    )
    done = "SELECT video_id, completed_at FROM generations WHERE status = 'completed'"
    states = "SELECT status, count(*) FROM generations GROUP BY status"
    if db_url.startswith("sqlite"):
        with contextlib.closing(
            sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=30)
        ) as c:
            return (
                c.execute(active).fetchone()[0],
                c.execute(done).fetchall(),
                dict(c.execute(states).fetchall()),
            )
    with psycopg.connect(db_url) as c:
        left = c.execute(active).fetchone()
        return (
            left[0] if left else 0,
            [(v, at) for v, at in c.execute(done).fetchall()],
            dict(c.execute(states).fetchall()),
        )


def _epoch(at: Any) -> float | None:
    if at is None:
        return None
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return float(at.timestamp())


def _wait_stored(db_url: str, timeout_s: float) -> dict[str, float | None]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left, _, _ = _finished_rows(db_url)
        if left == 0:
            break
        time.sleep(1.0)
    _, rows, _ = _finished_rows(db_url)
    return {vid: _epoch(at) for vid, at in rows}


def level(n: int, quick: bool, *, workers: int = 1, database: str = "sqlite") -> dict[str, Any]:
    jobs = workload(n, quick)
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as folder,
        _database(database, Path(folder)) as db_url,
        lag.simulator() as (base_url, sim_pid),
    ):
        data = Path(folder)
        env = {
            **os.environ,
            "REELWATCH_DATA_DIR": str(data),
            "REELWATCH_DATABASE_URL": db_url,
            "OPENAI_API_KEY": lag.KEY,
            "OPENAI_BASE_URL": base_url,
            "REELWATCH_LOG_FORMAT": "json",
            "REELWATCH_CONCURRENCY": "256",
            "REELWATCH_BATCH_SIZE": "1000",
            "REELWATCH_REQUESTS_PER_MINUTE": "600000",
        }
        idle = _idle_rss(env)
        # The yardstick polls jobs of its own that never finish while it runs.
        yard_ids, _ = asyncio.run(_create(base_url, [(600.0, 60.0)] * 500))
        yardstick = asyncio.run(_yardstick(base_url, yard_ids, 3.0 if quick else YARDSTICK_S))
        print(f"scale: yardstick {yardstick['requests_per_s']}/s", file=sys.stderr)
        # The workers start at `start`; every job leaves the queue its own queue time after it.
        seeding = time.time()
        start = seeding + n / SEED_PER_S + 5.0
        ids, prompts = asyncio.run(_create(base_url, jobs, start))
        asyncio.run(_seed(db_url, ids, prompts, start))
        seeded_s = time.time() - seeding
        time.sleep(max(0.0, start - time.time()))
        rates: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample_rate() -> None:
            while not stop.wait(5.0):
                with contextlib.suppress(httpx.HTTPError):
                    retrieves = lag.sim_stats(base_url)["requests"].get("retrieve", 0)
                    rates.append((time.monotonic(), int(retrieves)))

        sampler = threading.Thread(target=sample_rate, daemon=True)
        before = int(lag.sim_stats(base_url)["requests"].get("retrieve", 0))
        sim_cpu_before = common.cpu_seconds(sim_pid)
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            procs = []
            samplers = []
            for i in range(workers):
                log = stack.enter_context((data / f"worker-{i}.log").open("w"))
                proc = stack.enter_context(
                    subprocess.Popen(
                        [sys.executable, "-m", "reelwatch", "worker"],
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
                procs.append(proc)
                samplers.append(stack.enter_context(common.RssSampler(proc.pid, every_s=0.5)))
            sampler.start()
            try:
                stored = _wait_stored(db_url, 900.0)
                cpu = [common.cpu_seconds(p.pid) for p in procs]
            finally:
                stop.set()
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(timeout=60)
        wall = time.monotonic() - started
        finished = lag.finish_times(base_url)
        stats = lag.sim_stats(base_url)
        sim_cpu = common.cpu_seconds(sim_pid) - sim_cpu_before
        _, _, states = _finished_rows(db_url)
    lags = lag.lags({v: t for v, t in stored.items() if v in set(ids)}, finished)
    per_window = [(b - a) / (tb - ta) for (ta, a), (tb, b) in itertools.pairwise(rates) if tb > ta]
    retrieves = int(stats["requests"].get("retrieve", 0)) - before
    peak = round(max(per_window, default=0.0), 1)
    return {
        "database": database,
        "workers": workers,
        "active_generations": n,
        "stored": len(lags),
        "statuses": states,
        "lag_s": common.summary(lags),
        "status_checks": retrieves,
        "status_checks_per_s_peak": peak,
        "status_checks_per_s_mean": round(retrieves / wall, 1) if wall else None,
        "yardstick": yardstick,
        "ratio_to_yardstick": round(peak / yardstick["requests_per_s"], 2)
        if yardstick["requests_per_s"]
        else None,
        "requests_by_route": stats["requests"],
        "cpu_s": [round(c, 1) for c in cpu],
        "wall_s": round(wall, 1),
        "seeding_s": round(seeded_s, 1),
        # True when jobs could finish before the workers started (their wait counted as lag).
        "seeding_overran": seeded_s > n / SEED_PER_S + 5.0,
        "idle_rss_mib": round(idle, 1),
        "peak_rss_mib": [round(s.peak, 1) for s in samplers],
        "rss_per_generation_kib": round((max(s.peak for s in samplers) - idle) * 1024 / n, 2),
        "simulator_cpu_share": round(sim_cpu / wall, 3) if wall else None,
    }


def run(quick: bool) -> Path:
    """One worker on SQLite, levels until the p99 passes 3 s."""
    results = []
    for n in QUICK_LEVELS if quick else LEVELS:
        print(f"scale: {n} active generations", file=sys.stderr)
        figures = level(n, quick)
        results.append(figures)
        print(f"scale: {n}: {figures['lag_s']}", file=sys.stderr)
        p99 = figures["lag_s"]["p99"]
        if p99 is None or p99 > 3.0:
            break
    within = [r for r in results if r["lag_s"]["p99"] is not None and r["lag_s"]["p99"] <= 3.0]
    best = max(within, key=lambda r: r["active_generations"], default=None)
    targets = {
        "tracks_10k_with_p99_le_3s": bool(best and best["active_generations"] >= 10_000),
        "status_checks_per_s_ge_1000": max(
            (r["status_checks_per_s_peak"] for r in results), default=0
        )
        >= 1000,
        "ratio_to_yardstick_ge_0_5": max((r["ratio_to_yardstick"] or 0 for r in results), default=0)
        >= 0.5,
        "tracking_adds_le_50mb": all(
            (max(r["peak_rss_mib"]) - r["idle_rss_mib"]) <= 50 for r in results
        ),
    }
    return common.write("scale", {"levels": results, "targets": targets}, quick=quick)


def run_workers(quick: bool, workers: list[int], levels: list[int] | None = None) -> Path:
    """Each level with each worker count, on PostgreSQL; every combination is run."""
    results = []
    for n in levels or (PG_QUICK_LEVELS if quick else PG_LEVELS):
        for w in workers:
            print(f"scale: {n} active generations, {w} worker(s), PostgreSQL", file=sys.stderr)
            figures = level(n, quick, workers=w, database="postgresql")
            results.append(figures)
            print(
                f"scale: {n} x {w}: lag {figures['lag_s']}, peak"
                f" {figures['status_checks_per_s_peak']}/s, yardstick"
                f" {figures['yardstick']['requests_per_s']}/s",
                file=sys.stderr,
            )
            # Written after every run: a long run stopped midway keeps what it measured.
            path = common.write(
                "scale-workers", {"runs": results, "targets": _targets(results)}, quick=quick
            )
    if not quick:
        _plot(results)
    return path


def _targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    def run_of(n: int, w: int) -> dict[str, Any] | None:
        return next(
            (r for r in results if r["active_generations"] == n and r["workers"] == w), None
        )

    top = max((r["active_generations"] for r in results), default=0)
    one, two = run_of(top, 1), run_of(top, 2)
    speedup = (
        round(two["status_checks_per_s_peak"] / one["status_checks_per_s_peak"], 2)
        if one and two and one["status_checks_per_s_peak"]
        else None
    )
    at_20k = run_of(20_000, 2)
    at_10k = run_of(10_000, 1)
    return {
        "speedup_2_workers_at_top_level": speedup,
        "two_workers_ge_1_7x_one": speedup is not None and speedup >= 1.7,
        "p99_lag_20k_on_2_workers_le_3s": bool(at_20k and (at_20k["lag_s"]["p99"] or 99) <= 3),
        "one_worker_10k_p99_le_3s": bool(at_10k and (at_10k["lag_s"]["p99"] or 99) <= 3),
        "one_worker_ge_1000_checks_per_s": max(
            (r["status_checks_per_s_peak"] for r in results if r["workers"] == 1), default=0
        )
        >= 1000,
        "one_worker_ge_0_5_of_yardstick": max(
            (r["ratio_to_yardstick"] or 0 for r in results if r["workers"] == 1), default=0
        )
        >= 0.5,
    }


def _plot(results: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("scale: matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for n in sorted({r["active_generations"] for r in results}):
        runs = sorted(
            (r for r in results if r["active_generations"] == n), key=lambda r: r["workers"]
        )
        ax.plot(
            [r["workers"] for r in runs],
            [r["status_checks_per_s_peak"] for r in runs],
            marker="o",
            label=f"{n:,} active",
        )
    yard = [r["yardstick"]["requests_per_s"] for r in results]
    ax.axhline(
        sum(yard) / len(yard), color="grey", linestyle="--", label="yardstick (mean of the runs)"
    )
    ax.set_xlabel("workers (processes)")
    ax.set_ylabel("status checks per second (peak, 5 s windows)")
    ax.set_xticks(sorted({r["workers"] for r in results}))
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("reelwatch workers on PostgreSQL, 2-core machine")
    common.save_plot(fig, "scale-workers")

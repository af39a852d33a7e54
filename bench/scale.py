"""Scenario `scale`: how many active generations one reelwatch worker keeps up with.

Levels of 1k, 5k, 10k and 20k active generations (200 and 500 with --quick), stopping after
the first level whose p99 detection lag passes 3 s. Each level gets a fresh simulator process
(50 ms per request) and a fresh SQLite database into which the jobs are inserted as tracked
(queued) generations, as `reelwatch track` would leave them; then one `reelwatch worker`
process runs until every generation is stored. Figures per level: detection lag, status
checks per second (peak over 5 s windows and average), the worker's CPU, and its RSS growth
per tracked generation (peak RSS minus the RSS of the same worker idle on an empty database).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import common, lag

LEVELS = (1_000, 5_000, 10_000, 20_000)
QUICK_LEVELS = (200, 500)


async def _seed(db_url: str, base_url: str, prompts: list[str]) -> None:
    """Create the jobs at the simulator and insert them as tracked, queued generations."""
    from reelwatch.models import Generation, Status
    from reelwatch.store import Store, _to_row, tables

    ids = await lag.create_jobs(base_url, prompts)
    now = datetime.now(UTC)
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


def _idle_rss(env: dict[str, str]) -> float:
    """RSS of a worker process idling on an empty database (the baseline per level)."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as folder:
        quiet = {**env, "REELWATCH_DATA_DIR": folder}
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


def level(n: int, quick: bool) -> dict[str, Any]:
    prompts = lag.workload(n, quick)
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as folder,
        lag.simulator() as (base_url, sim_pid),
    ):
        data = Path(folder)
        env = {
            **os.environ,
            "REELWATCH_DATA_DIR": str(data),
            "OPENAI_API_KEY": lag.KEY,
            "OPENAI_BASE_URL": base_url,
            "REELWATCH_LOG_FORMAT": "json",
            "REELWATCH_CONCURRENCY": "256",
            "REELWATCH_BATCH_SIZE": "1000",
            "REELWATCH_REQUESTS_PER_MINUTE": "600000",
        }
        idle = _idle_rss(env)
        asyncio.run(_seed(f"sqlite:///{data / 'reelwatch.db'}", base_url, prompts))
        rates: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample_rate() -> None:
            while not stop.wait(5.0):
                with contextlib.suppress(httpx.HTTPError):
                    retrieves = lag.sim_stats(base_url)["requests"].get("retrieve", 0)
                    rates.append((time.monotonic(), int(retrieves)))

        sampler = threading.Thread(target=sample_rate, daemon=True)
        sim_cpu_before = common.cpu_seconds(sim_pid)
        started = time.monotonic()
        log = (data / "worker.log").open("w")
        with subprocess.Popen(
            [sys.executable, "-m", "reelwatch", "worker"], env=env, stdout=log, stderr=log
        ) as proc:
            sampler.start()
            try:
                with common.RssSampler(proc.pid, every_s=0.5) as rss:
                    stored = lag._wait_reelwatch(data / "reelwatch.db", n, 900.0)
                    cpu = common.cpu_seconds(proc.pid)
            finally:
                stop.set()
                proc.terminate()
                proc.wait(timeout=60)
                log.close()
        wall = time.monotonic() - started
        finished = lag.finish_times(base_url)
        stats = lag.sim_stats(base_url)
        sim_cpu = common.cpu_seconds(sim_pid) - sim_cpu_before
        with contextlib.closing(sqlite3.connect(data / "reelwatch.db")) as conn:
            states = dict(conn.execute("SELECT status, count(*) FROM generations GROUP BY status"))
    lags = lag.lags(stored, finished)
    per_window = [(b - a) / (tb - ta) for (ta, a), (tb, b) in itertools.pairwise(rates) if tb > ta]
    retrieves = int(stats["requests"].get("retrieve", 0))
    return {
        "active_generations": n,
        "stored": len(lags),
        "statuses": states,
        "lag_s": common.summary(lags),
        "status_checks": retrieves,
        "status_checks_per_s_peak": round(max(per_window, default=0.0), 1),
        "status_checks_per_s_mean": round(retrieves / wall, 1) if wall else None,
        "requests_by_route": stats["requests"],
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "idle_rss_mib": round(idle, 1),
        "peak_rss_mib": round(rss.peak, 1),
        "rss_per_generation_kib": round((rss.peak - idle) * 1024 / n, 2),
        "simulator_cpu_share": round(sim_cpu / wall, 3) if wall else None,
    }


def run(quick: bool) -> Path:
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
        "tracking_adds_le_50mb": all(
            (r["peak_rss_mib"] - r["idle_rss_mib"]) <= 50 for r in results
        ),
    }
    return common.write("scale", {"levels": results, "targets": targets}, quick=quick)

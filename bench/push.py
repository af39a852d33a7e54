"""Scenario `push`: how soon an event committed by one process reaches a live stream served by
another, on PostgreSQL (LISTEN/NOTIFY), and what the table poll alone would give.

`python -m bench.push [--events 300] [--clients 1,50]`: a fresh PostgreSQL database, `reelwatch
serve --no-worker` as its own process, and this process as both the writer (its own `Store`,
one generation created at a time, 20-80 ms apart) and the browsers (`--clients` SSE streams
read with httpx). Delivery time is from the writer's commit returning to the event's arrival on
each stream (one clock: same machine). The server's streams also read the table every 0.5 s
(`web/events.py` POLL_S), so without push the delivery time would spread over 0-0.5 s plus the
read: a p99 far below 0.5 s shows the push at work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench import common, lag
from bench.api import PG_ADMIN, PG_URL
from reelwatch.models import Generation, NewEvent, Status
from reelwatch.store import Store


async def _listening(url: str) -> None:
    """Until the server's LISTEN connection is up."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE query = 'LISTEN reelwatch_events' AND datname = current_database()"
    )
    async with asyncio.timeout(30):
        while True:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                row = await (await conn.execute(query)).fetchone()
            if row is not None and row[0] >= 1:
                return
            await asyncio.sleep(0.1)


async def _stream(origin: str, arrivals: dict[str, float], ready: asyncio.Event) -> None:
    """One browser: read `event: generation` messages, note when each generation's arrives."""
    async with (
        httpx.AsyncClient(base_url=origin, timeout=httpx.Timeout(10, read=60)) as client,
        client.stream("GET", "/api/events") as response,
    ):
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                arrivals.setdefault(event["generation_id"], time.perf_counter())


async def _measure(url: str, origin: str, events: int, clients: int) -> dict[str, Any]:
    store = await Store.open(url)
    arrivals = [dict[str, float]() for _ in range(clients)]
    ready = [asyncio.Event() for _ in range(clients)]
    readers = [asyncio.create_task(_stream(origin, arrivals[i], ready[i])) for i in range(clients)]
    try:
        for r in ready:
            await asyncio.wait_for(r.wait(), 30)
        await asyncio.sleep(1.0)  # every stream has read the table once and waits
        rng = random.Random(7)
        committed: dict[str, float] = {}
        for i in range(events):
            now = datetime.now(UTC)
            g = Generation(
                id=f"gen_{secrets.token_hex(12)}",
                provider="openai",
                video_id=None,
                status=Status.PENDING,
                progress=0,
                model="sora-2",
                seconds=4,
                size="720x1280",
                prompt=f"push {i}",
                created_at=now,
                watch_started_at=now,
                next_poll_at=now,
            )
            claim = await store.create(g, NewEvent("created"), owner="bench", now=now, lease_s=60)
            committed[g.id] = time.perf_counter()
            await store.release([claim])
            await asyncio.sleep(rng.uniform(0.02, 0.08))
        await asyncio.sleep(2.0)  # the last ones arrive
    finally:
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
        await store.close()
    delays_ms = [
        1000 * (got[gid] - at) for got in arrivals for gid, at in committed.items() if gid in got
    ]
    missing = sum(1 for got in arrivals for gid in committed if gid not in got)
    return {
        "clients": clients,
        "events": events,
        "deliveries": len(delays_ms),
        "missing": missing,
        "delivery_ms": common.summary(delays_ms),
    }


def run(events: int, client_counts: list[int], *, quick: bool = False) -> Path:
    name = f"reelwatch_bench_push_{os.getpid()}_{secrets.token_hex(3)}"
    port = lag.free_port()
    results = []
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = PG_URL.format(name=name)
            with tempfile.TemporaryDirectory(prefix="reelwatch-bench-push-") as folder:
                env = {
                    **os.environ,
                    "REELWATCH_DATABASE_URL": url,
                    "REELWATCH_DATA_DIR": folder,
                    "OPENAI_API_KEY": "sk-bench",
                    "REELWATCH_LOG_LEVEL": "WARNING",
                }
                env.pop("REELWATCH_API_TOKEN", None)
                server = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "reelwatch",
                        "serve",
                        "--no-worker",
                        "--port",
                        str(port),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                )
                try:
                    origin = f"http://127.0.0.1:{port}"
                    _wait_http(origin + "/healthz")
                    asyncio.run(_listening(url))
                    for clients in client_counts:
                        got = asyncio.run(_measure(url, origin, events, clients))
                        print(f"push: {got}", file=sys.stderr)
                        results.append(got)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    command = " ".join(["python -m bench.push", *sys.argv[1:]])
    return common.write("push", {"runs": results, "command": command}, quick=quick)


def _wait_http(address: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(address, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{address} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--clients", default="1,50", help="comma-separated stream counts")
    parser.add_argument("--quick", action="store_true", help="20 events, 1 and 5 streams (CI)")
    args = parser.parse_args()
    if args.quick:
        print(run(20, [1, 5], quick=True))
    else:
        print(run(args.events, [int(c) for c in args.clients.split(",")]))


if __name__ == "__main__":
    main()

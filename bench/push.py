"""Scenario `push`: how soon an event committed by one process reaches the live streams served
by another, on PostgreSQL (LISTEN/NOTIFY), from one stream up to a thousand.

`python -m bench.push [--events 300] [--clients 1,50,1000]`: a fresh PostgreSQL database,
`reelwatch serve --no-worker` as its own process, this process as the writer (its own `Store`,
one generation created at a time, 20-80 ms apart), and the browsers in their own processes
(`python -m bench.push client`, up to 250 streams each, a minimal aiohttp reader that only
notes when each generation's first event arrives). Delivery time is from the writer's commit
returning to the event's arrival on each stream; every process reads the same monotonic clock
(CLOCK_MONOTONIC: same machine). The server's CPU seconds over the writing are recorded, and
the readers' too, to show whether they kept up. The server's shared reader also looks at the
table every 0.5 s (`web/events.py` POLL_S), so without push the delivery would spread over
0-0.5 s plus the read: a p99 far below 0.5 s shows the push at work.
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


STREAMS_PER_PROCESS = 250


async def _clients(origin: str, streams: int) -> None:
    """A reader process: `streams` SSE streams; prints "ready" once all are open, then, when
    its stdin closes, the arrivals as JSON ({generation id: [monotonic time per stream]})."""
    import aiohttp

    arrivals: dict[str, list[float]] = {}
    opened = 0
    all_open = asyncio.Event()

    async def stream(session: aiohttp.ClientSession) -> None:
        nonlocal opened
        async with session.get(f"{origin}/api/events") as response:
            response.raise_for_status()
            opened += 1
            if opened == streams:
                all_open.set()
            seen: set[str] = set()
            async for line in response.content:
                if line.startswith(b"data:"):
                    gid = json.loads(line[5:])["generation_id"]
                    if gid not in seen:
                        seen.add(gid)
                        arrivals.setdefault(gid, []).append(time.monotonic())

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(stream(session)) for _ in range(streams)]
        await asyncio.wait_for(all_open.wait(), 120)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(arrivals), flush=True)


def _start_readers(origin: str, clients: int) -> list[subprocess.Popen[str]]:
    procs = []
    for first in range(0, clients, STREAMS_PER_PROCESS):
        count = min(STREAMS_PER_PROCESS, clients - first)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.push", "client", origin, str(count)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a reader process did not open its streams")
    return procs


async def _write(url: str, events: int) -> dict[str, float]:
    """Create `events` generations one at a time; the monotonic time each commit returned."""
    store = await Store.open(url)
    rng = random.Random(7)
    committed: dict[str, float] = {}
    try:
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
            committed[g.id] = time.monotonic()
            await store.release([claim])
            await asyncio.sleep(rng.uniform(0.02, 0.08))
    finally:
        await store.close()
    return committed


def _measure(url: str, origin: str, server_pid: int, events: int, clients: int) -> dict[str, Any]:
    readers = _start_readers(origin, clients)
    arrivals: dict[str, list[float]] = {}
    try:
        time.sleep(1.0)  # every stream has joined and waits
        server_cpu = common.cpu_seconds(server_pid)
        readers_cpu = sum(common.cpu_seconds(p.pid) for p in readers)
        began = time.monotonic()
        committed = asyncio.run(_write(url, events))
        time.sleep(2.0)  # the last ones arrive
        wall = time.monotonic() - began
        server_cpu = common.cpu_seconds(server_pid) - server_cpu
        readers_cpu = sum(common.cpu_seconds(p.pid) for p in readers) - readers_cpu
    finally:
        for proc in readers:
            out, _ = proc.communicate(timeout=120)
            for gid, times in json.loads(out.strip().splitlines()[-1] or "{}").items():
                arrivals.setdefault(gid, []).extend(times)
    delays_ms = [1000 * (t - at) for gid, at in committed.items() for t in arrivals.get(gid, [])]
    return {
        "clients": clients,
        "reader_processes": len(readers),
        "events": events,
        "deliveries": len(delays_ms),
        "missing": events * clients - len(delays_ms),
        "delivery_ms": common.summary(delays_ms),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_share": round(server_cpu / wall, 2),
        "readers_cpu_s": round(readers_cpu, 2),
        "wall_s": round(wall, 1),
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
                        got = _measure(url, origin, server.pid, events, clients)
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
    if sys.argv[1:2] == ["client"]:
        asyncio.run(_clients(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.push")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--clients", default="1,50,1000", help="comma-separated stream counts")
    parser.add_argument("--quick", action="store_true", help="20 events, 1 and 5 streams (CI)")
    args = parser.parse_args()
    if args.quick:
        print(run(20, [1, 5], quick=True))
    else:
        print(run(args.events, [int(c) for c in args.clients.split(",")]))


if __name__ == "__main__":
    main()

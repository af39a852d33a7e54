"""The simple monitors the `profiles` scenario holds reelwatch against, in one process.

Each contender creates its own jobs at the workload's arrival times and watches them:
- `fixed:N`: one task per job that asks for its status every N seconds from its creation, and
  downloads the video as soon as it sees it completed (a cron or a `while True: sleep(N)`);
- `seed`: the seed's design (bench/baseline.py): every 30 s, one pass over the active jobs in
  creation order, one request at a time, the video read into memory when completed.
Plain aiohttp, answers barely parsed: the contenders spend little CPU, so the simulator and
reelwatch keep the cores. Prints one JSON line: per contender, its video ids in workload order
and when each video was stored; the process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import aiohttp

KEY = "sk-bench"
SEED_INTERVAL_S = 30.0
SEED_TIMEOUT_S = 15 * 60
DONE = frozenset({"completed", "failed", "cancelled"})


async def _create(session: aiohttp.ClientSession, spec: dict[str, Any]) -> str:
    body = {"prompt": spec["prompt"], "model": spec["model"], "seconds": str(spec["seconds"])}
    for _ in range(5):
        try:
            async with session.post("/v1/videos", json=body) as response:
                if response.status == 200:
                    video_id: str = (await response.json())["id"]
                    return video_id
        except (TimeoutError, aiohttp.ClientError):
            pass
        await asyncio.sleep(1)
    raise RuntimeError("create failed five times")


async def _status(session: aiohttp.ClientSession, video_id: str) -> str | None:
    """The job's status; None when the answer was no 200 or the connection dropped (a
    keep-alive connection the server closed: the next poll tries again)."""
    try:
        async with session.get(f"/v1/videos/{video_id}") as response:
            if response.status != 200:
                return None
            status: str = (await response.json())["status"]
            return status
    except (TimeoutError, aiohttp.ClientError):
        return None


async def _download(session: aiohttp.ClientSession, video_id: str) -> float | None:
    for _ in range(5):
        try:
            async with session.get(f"/v1/videos/{video_id}/content") as response:
                if response.status == 200:
                    await response.read()
                    return time.time()
        except (TimeoutError, aiohttp.ClientError):
            pass
        await asyncio.sleep(0.1)
    return None


async def fixed(
    session: aiohttp.ClientSession, specs: list[dict[str, Any]], interval_s: float, t0: float
) -> tuple[list[str], dict[str, float | None]]:
    ids: list[str | None] = [None] * len(specs)
    stored: dict[str, float | None] = {}

    async def one(index: int, spec: dict[str, Any]) -> None:
        await asyncio.sleep(max(0.0, t0 + spec["at"] - time.time()))
        video_id = ids[index] = await _create(session, spec)
        stored[video_id] = None
        while True:
            await asyncio.sleep(interval_s)
            status = await _status(session, video_id)
            if status == "completed":
                stored[video_id] = await _download(session, video_id)
                return
            if status in DONE:
                return

    await asyncio.gather(*(one(i, spec) for i, spec in enumerate(specs)))
    return [i for i in ids if i is not None], stored


async def seed(
    session: aiohttp.ClientSession, specs: list[dict[str, Any]], t0: float
) -> tuple[list[str], dict[str, float | None]]:
    ids: list[str] = []
    created: dict[str, float] = {}
    stored: dict[str, float | None] = {}
    active: list[str] = []

    async def creator() -> None:
        for spec in specs:
            await asyncio.sleep(max(0.0, t0 + spec["at"] - time.time()))
            video_id = await _create(session, spec)
            ids.append(video_id)
            created[video_id] = time.time()
            stored[video_id] = None
            active.append(video_id)

    creating = asyncio.create_task(creator())
    while True:
        started = time.time()
        for video_id in list(active):  # oldest first, one at a time
            if time.time() - created[video_id] > SEED_TIMEOUT_S:
                active.remove(video_id)
                continue
            status = await _status(session, video_id)
            if status == "completed":
                stored[video_id] = await _download(session, video_id)
            if status in DONE:
                active.remove(video_id)
        if creating.done() and not active:
            break
        await asyncio.sleep(max(0.0, SEED_INTERVAL_S - (time.time() - started)))
    await creating
    return ids, stored


async def run(base_url: str, specs: list[dict[str, Any]], contenders: list[str]) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        base_url, connector=connector, headers=headers, timeout=timeout
    ) as session:
        t0 = time.time()
        runs: list[Any] = []
        for name in contenders:
            if name == "seed":
                runs.append(seed(session, specs, t0))
            else:
                runs.append(fixed(session, specs, float(name.removeprefix("fixed:")), t0))
        results = await asyncio.gather(*runs)
    return {
        name: {"ids": ids, "stored": stored}
        for name, (ids, stored) in zip(contenders, results, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True, help="the simulator's origin")
    parser.add_argument("--specs", type=Path, required=True)
    parser.add_argument("--contenders", required=True, help="e.g. fixed:1,fixed:5,seed")
    args = parser.parse_args()
    specs = json.loads(args.specs.read_text())
    results = asyncio.run(run(args.base_url, specs, args.contenders.split(",")))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"contenders": results, "cpu_s": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main()

"""Scenario `front`: a thousand apps written for Sora, each polling its own video every second
through reelwatch's `/v1/videos`, as `client.videos.poll` does.

`python -m bench.front [--clients 1000] [--quick]`: the simulator in its own process (fal
dialect, 50 ms per request), `reelwatch serve` (with its worker, SQLite) in its own, and the
apps in their own processes (`python -m bench.front client`, up to 250 apps each, aiohttp):
each app creates its video (`sora-2`, routed to fal; queue 0-20 s, render 20-60 s drawn from a
seeded generator), then GETs it every second until it is completed or failed. Figures: the
answer time of the polls (median, p99, max), the polls made, how many status requests the
provider saw per generation (the target: what reelwatch's own schedule makes, at most 6,
whatever the apps do), the server's CPU and peak memory, and how many videos completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import common, lag
from reelwatch.simulator import samples

KEY = "sk-bench-front"
APPS_PER_PROCESS = 250
POLL_EVERY_S = 1.0


async def _apps(origin: str, prompts: list[str]) -> None:
    """An app process: for each prompt, create then poll every second; prints JSON."""
    import aiohttp

    answers: list[float] = []
    ends: dict[str, str] = {}
    errors: dict[str, int] = {}  # what went wrong, counted: "create 429", "ServerDisconnectedError"

    def failed(why: str) -> None:
        errors[why] = errors.get(why, 0) + 1

    headers = {"authorization": f"Bearer {KEY}"}

    async def app(session: aiohttp.ClientSession, prompt: str) -> None:
        body = {"prompt": prompt, "model": "sora-2", "seconds": "4", "size": "1280x720"}
        async with session.post(f"{origin}/v1/videos", json=body, headers=headers) as response:
            if response.status != 200:
                failed(f"create {response.status}")
                return
            video = await response.json()
        while True:
            await asyncio.sleep(POLL_EVERY_S)
            started = time.monotonic()
            try:
                async with session.get(
                    f"{origin}/v1/videos/{video['id']}", headers=headers
                ) as response:
                    seen = await response.json()
                    ok = response.status == 200
            except aiohttp.ClientError as exc:
                failed(type(exc).__name__)
                continue
            answers.append(time.monotonic() - started)
            if not ok:
                failed(f"poll {response.status}")
                continue
            if seen["status"] in ("completed", "failed"):
                ends[video["id"]] = seen["status"]
                return

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(app(session, prompt) for prompt in prompts))
    print(json.dumps({"answers": answers, "ends": ends, "errors": errors}), flush=True)


def _workload(apps: int, quick: bool) -> list[str]:
    rng = random.Random(20261207)
    queue_max, render = (2.0, (3.0, 8.0)) if quick else (20.0, (20.0, 60.0))
    return [
        f"app {i} [sim:queue={rng.uniform(0, queue_max):.2f},render={rng.uniform(*render):.2f}]"
        for i in range(apps)
    ]


def run(apps: int, *, quick: bool) -> Path:
    prompts = _workload(apps, quick)
    port = lag.free_port()
    with (
        tempfile.TemporaryDirectory(prefix="bench-front-") as folder,
        lag.simulator(latency_s=0.05) as (sim_base, _sim_pid),
    ):
        origin_sim = sim_base.removesuffix("/v1")
        env = {
            **{k: v for k, v in os.environ.items() if k not in lag._PROVIDER_VARIABLES},
            "REELWATCH_DATA_DIR": folder,
            "REELWATCH_PROVIDER_CONFIG": json.dumps(
                {"fal": samples.client_config(origin_sim, lag.KEY)["fal"]}
            ),
            "REELWATCH_API_TOKEN": KEY,
            "REELWATCH_CLIENT_MAX_ACTIVE": str(apps * 2),
            "REELWATCH_CLIENT_CREATE_RATE": "",
            "REELWATCH_LOG_LEVEL": "WARNING",
            "REELWATCH_CONCURRENCY": "64",
            "REELWATCH_REQUESTS_PER_MINUTE": "600000",
        }
        origin = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "reelwatch", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            lag.wait_http(origin + "/healthz")
            cpu_before = common.cpu_seconds(server.pid)
            started = time.monotonic()
            with common.RssSampler(server.pid, every_s=0.5) as rss:
                procs = [
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.front", "client", origin],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for _ in range(0, apps, APPS_PER_PROCESS)
                ]
                for index, proc in enumerate(procs):
                    chunk = prompts[index * APPS_PER_PROCESS : (index + 1) * APPS_PER_PROCESS]
                    assert proc.stdin is not None
                    proc.stdin.write(json.dumps(chunk))
                    proc.stdin.close()
                outputs = []
                for proc in procs:
                    assert proc.stdout is not None
                    outputs.append(json.loads(proc.stdout.read()))
                    proc.wait(timeout=60)
            wall = time.monotonic() - started
            cpu = common.cpu_seconds(server.pid) - cpu_before
            stats = httpx.get(f"{origin_sim}/_sim/stats", timeout=10).json()
        finally:
            server.terminate()
            server.wait(timeout=30)
    answers = [a for out in outputs for a in out["answers"]]
    ends = {k: v for out in outputs for k, v in out["ends"].items()}
    requests = stats["requests"]
    data: dict[str, Any] = {
        "apps": apps,
        "completed": sum(1 for v in ends.values() if v == "completed"),
        "failed": sum(1 for v in ends.values() if v == "failed"),
        "errors": sum(n for out in outputs for n in out["errors"].values()),
        "error_kinds": {
            kind: sum(out["errors"].get(kind, 0) for out in outputs)
            for kind in sorted({k for out in outputs for k in out["errors"]})
        },
        "polls": len(answers),
        "poll_answer_s": common.summary(answers),
        "provider_status_requests": requests.get("fal.status", 0),
        "provider_status_requests_per_generation": requests.get("fal.status", 0) / apps,
        "provider_result_requests_per_generation": requests.get("fal.result", 0) / apps,
        "provider_creates": stats.get("creates"),
        "server_cpu_s": round(cpu, 1),
        "server_peak_rss_mib": round(rss.peak, 1),
        "wall_s": round(wall, 1),
        "command": " ".join(["python -m bench.front", *sys.argv[1:]]),
    }
    p99 = data["poll_answer_s"]["p99"]
    data["targets"] = {
        "provider_requests_le_6": data["provider_status_requests_per_generation"] <= 6,
        "all_completed": data["completed"] == apps and data["errors"] == 0,
        "poll_p99_recorded": p99 is not None,
    }
    print(
        f"front: {json.dumps({k: v for k, v in data.items() if k != 'command'})}", file=sys.stderr
    )
    return common.write("front", data, quick=quick)


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        prompts = json.loads(sys.stdin.read())
        asyncio.run(_apps(sys.argv[2], prompts))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.front")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 apps, 3-8 s renders (CI)")
    args = parser.parse_args()
    print(run(100 if args.quick else args.clients, quick=args.quick))


if __name__ == "__main__":
    main()

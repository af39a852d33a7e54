"""Scenario `lag`: how soon after the provider finishes is each video stored, and at what cost.

2,000 generations (100 with --quick), queue 0-20 s and render 20-120 s drawn from a seeded
generator and scripted into the prompts, 50 ms per simulated request. Contenders, one after the
other against a fresh simulator process each, on the same workload:
- reelwatch's worker, polling only;
- reelwatch with the simulator's webhooks on (`reelwatch serve`, polling as a safety net);
- the seed's design (bench/baseline.py): a 30 s sequential cron loop, base64 into the row;
- the SDK's helper (bench/sdkpoll.py): one `videos.poll` task per job.
Figures per contender: detection lag (provider completion -> stored) median and p99, status
requests per generation, CPU seconds and peak RSS of the contender's process, and the
simulator's CPU share.

`--provider replicate|fal|veo` runs the two reelwatch contenders against that dialect of the
simulator instead (the baseline and the SDK helper speak OpenAI only) and writes
bench/results/lag-<provider>.json; a status request is then a `GET /v1/predictions/{id}`
(Replicate), a `GET .../requests/{id}/status` (fal; its result GET, one per completed
generation, is counted apart as `result_requests`) or a `GET v1beta/models/{m}/operations/{id}`
(Veo on the Gemini API, which tells no progress at all).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import common

KEY = "sk-bench"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"bench-webhook-secret-0123456789").decode()
PROVIDERS = ("openai", "replicate", "fal", "veo")
# The simulator's route names (GET /_sim/stats) of a status check, and of fal's result GET.
STATUS_ROUTES = {
    "openai": "retrieve",
    "replicate": "replicate.get",
    "fal": "fal.status",
    "veo": "veo.get",  # the Gemini API's operation GET (the file GET is not a status check)
}
RESULT_ROUTES = {"fal": "fal.result"}
# Provider credentials a developer's shell may hold: the contenders get only the bench's own.
_PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_WEBHOOK_SECRET",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "REPLICATE_WEBHOOK_SECRET",
    "FAL_KEY",
    "REELWATCH_FAL_QUEUE_URL",
    "REELWATCH_FAL_JWKS_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "REELWATCH_VEO_WEBHOOK_SECRET",
    "REELWATCH_VEO_DYNAMIC_WEBHOOKS",
    "REELWATCH_VEO_JWKS_URL",
    "REELWATCH_PROVIDER",
    "REELWATCH_PROVIDER_CONFIG",
    "REELWATCH_PUBLIC_URL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(url)


@contextlib.contextmanager
def simulator(
    webhook_url: str | None = None,
    latency_s: float = 0.05,
    replicate_webhook_secret: str | None = None,
) -> Iterator[tuple[str, int]]:
    """A simulator process; yields (its /v1 base URL, its pid). `webhook_url` is where the
    OpenAI dialect posts its events; Replicate and fal post to the URL sent with each create."""
    port = free_port()
    command = [sys.executable, "-m", "bench.simproc", "--port", str(port)]
    command += ["--latency", str(latency_s)]
    if webhook_url:
        command += ["--webhook-url", webhook_url, "--webhook-secret", WEBHOOK_SECRET]
    if replicate_webhook_secret:
        command += ["--replicate-webhook-secret", replicate_webhook_secret]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            wait_http(f"http://127.0.0.1:{port}/_sim/health")
            yield f"http://127.0.0.1:{port}/v1", proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def workload(n: int, quick: bool) -> list[str]:
    """Prompts scripting each job's queue and render time (seeded, so every contender agrees)."""
    rng = random.Random(20261126)
    queue_max, render = (2.0, (3.0, 8.0)) if quick else (20.0, (20.0, 120.0))
    return [
        f"bench {i} [sim:queue={rng.uniform(0, queue_max):.2f},render={rng.uniform(*render):.2f}]"
        for i in range(n)
    ]


async def create_jobs(base_url: str, prompts: list[str]) -> list[str]:
    """Create the jobs directly (for the contenders that only monitor), 50 at a time."""
    limit = asyncio.Semaphore(50)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def one(prompt: str) -> str:
            async with limit:
                response = await client.post("/videos", json={"prompt": prompt})
                response.raise_for_status()
                video_id: str = response.json()["id"]
                return video_id

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def timeline(base_url: str) -> list[dict[str, Any]]:
    """Every job's id, creation, render start and scripted finish (GET /_sim/jobs)."""
    origin = base_url.removesuffix("/v1")
    jobs: list[dict[str, Any]] = httpx.get(f"{origin}/_sim/jobs", timeout=30).json()
    return jobs


def finish_times(base_url: str) -> dict[str, float]:
    return {
        job["id"]: job["finish_at"] for job in timeline(base_url) if job["finish_at"] is not None
    }


def sim_stats(base_url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(
        base_url.removesuffix("/v1") + "/_sim/stats", timeout=30
    ).json()
    return data


def lags(stored: dict[str, float | None], finished: dict[str, float]) -> list[float]:
    return [at - finished[vid] for vid, at in stored.items() if at is not None and vid in finished]


# --- contenders -------------------------------------------------------------------------------


def provider_config(provider: str, origin: str, *, webhooks: bool) -> dict[str, Any]:
    """How reelwatch reaches one dialect of the simulator at `origin` (with the webhook secret
    the simulator signs with, when webhooks are on; fal needs none)."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    from reelwatch.simulator import samples

    config = dict(samples.client_config(origin, KEY)[provider])
    if webhooks and provider == "veo":
        config["dynamic_webhooks"] = True  # an RS256 JWT per delivery, checked with its JWKS
    elif webhooks and provider != "fal":
        config["webhook_secret"] = WEBHOOK_SECRET
    return config


def reelwatch(
    prompts: list[str], *, webhooks: bool, timeout_s: float, provider: str = "openai"
) -> dict[str, Any]:
    """reelwatch's worker (or `serve` with webhooks) in its own process."""
    with tempfile.TemporaryDirectory(prefix="bench-reelwatch-") as folder:
        data = Path(folder)
        server_port = free_port()
        public_url = f"http://127.0.0.1:{server_port}" if webhooks else None
        openai_hook = (
            f"{public_url}/api/webhooks/openai" if webhooks and provider == "openai" else None
        )
        replicate_secret = WEBHOOK_SECRET if provider == "replicate" else None
        with simulator(openai_hook, replicate_webhook_secret=replicate_secret) as (
            base_url,
            sim_pid,
        ):
            config = provider_config(provider, base_url.removesuffix("/v1"), webhooks=webhooks)
            inherited = {k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES}
            env = {
                **inherited,
                "REELWATCH_DATA_DIR": str(data),
                "REELWATCH_PROVIDER": provider,
                "REELWATCH_PROVIDER_CONFIG": json.dumps({provider: config}),
                # Replicate and fal post to the URL sent with each create; OpenAI's simulator
                # was told its webhook URL above.
                **(
                    {"REELWATCH_PUBLIC_URL": public_url}
                    if public_url and openai_hook is None
                    else {}
                ),
                "REELWATCH_LOG_FORMAT": "json",
                "REELWATCH_CONCURRENCY": "64",
                # The simulator has no rate limit; the default budget (1,200 requests a
                # minute, a cautious guess at a real provider's) would be the only bottleneck.
                "REELWATCH_REQUESTS_PER_MINUTE": "600000",
            }
            command = ["serve", "--port", str(server_port)] if webhooks else ["worker"]
            log = (data / "worker.log").open("w")
            sim_cpu_before = common.cpu_seconds(sim_pid)
            started = time.monotonic()
            with subprocess.Popen(
                [sys.executable, "-m", "reelwatch", *command], env=env, stdout=log, stderr=log
            ) as proc:
                try:
                    if webhooks:
                        wait_http(f"http://127.0.0.1:{server_port}/healthz")
                    with common.RssSampler(proc.pid, every_s=0.5) as rss:
                        asyncio.run(_submit(env, prompts, provider, config))
                        stored = _wait_reelwatch(data / "reelwatch.db", len(prompts), timeout_s)
                        cpu = common.cpu_seconds(proc.pid)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                    log.close()
            wall = time.monotonic() - started
            finished = finish_times(base_url)
            stats = sim_stats(base_url)
            sim_cpu = common.cpu_seconds(sim_pid) - sim_cpu_before
    return _figures(
        stored, finished, stats, len(prompts), cpu, rss.peak, wall, sim_cpu, rss.samples,
        provider=provider,
    )  # fmt: skip


async def _submit(
    env: dict[str, str], prompts: list[str], provider: str, config: dict[str, Any]
) -> None:
    """Submit through reelwatch's own service (as `reelwatch submit` does), 50 at a time.

    The creates are sent from this process, so it needs the webhook URL (Replicate, fal) too."""
    from reelwatch import assembly, service, settings

    overrides: dict[str, Any] = {
        "data_dir": Path(env["REELWATCH_DATA_DIR"]),
        "default_provider": provider,
        "provider_config": {provider: config},
        "public_url": env.get("REELWATCH_PUBLIC_URL"),
    }
    limit = asyncio.Semaphore(50)
    async with assembly.open_service(settings.load(**overrides), need_provider=True) as svc:

        async def one(prompt: str) -> None:
            async with limit:
                await svc.submit(service.SubmitRequest(prompt, provider=provider), actor="bench")

        await asyncio.gather(*(one(p) for p in prompts))


def _wait_reelwatch(db: Path, n: int, timeout_s: float) -> dict[str, float | None]:
    deadline = time.monotonic() + timeout_s
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        while time.monotonic() < deadline:
            (left,) = conn.execute(
                "SELECT count(*) FROM generations WHERE status NOT IN"
                " ('completed', 'failed', 'cancelled')"
            ).fetchone()
            if left == 0:
                break
            time.sleep(0.5)
        rows = conn.execute(
            "SELECT video_id, completed_at FROM generations WHERE status = 'completed'"
        ).fetchall()
    return {vid: _epoch(at) for vid, at in rows}


def _epoch(stored: str | None) -> float | None:
    if stored is None:
        return None
    return datetime.fromisoformat(stored).replace(tzinfo=UTC).timestamp()


def _monitor(
    prompts: list[str], script: str, extra: list[str], folder: Path, timeout_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the jobs, run a monitoring contender script until it exits; (its output, figures
    shared by every contender: wall time, finish times, simulator stats and CPU, RSS)."""
    with simulator() as (base_url, sim_pid):
        ids_file = folder / "ids.json"
        ids_file.write_text(json.dumps(asyncio.run(create_jobs(base_url, prompts))))
        sim_cpu_before = common.cpu_seconds(sim_pid)
        started = time.monotonic()
        command = [sys.executable, "-m", script, "--base-url", base_url, "--ids", str(ids_file)]
        with (
            subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, text=True) as proc,
            common.RssSampler(proc.pid, every_s=0.5) as rss,
        ):
            out, _ = proc.communicate(timeout=timeout_s)
        run = {
            "wall_s": time.monotonic() - started,
            "finished": finish_times(base_url),
            "stats": sim_stats(base_url),
            "sim_cpu_s": common.cpu_seconds(sim_pid) - sim_cpu_before,
            "rss": rss.samples,
        }
    return json.loads(out.strip().splitlines()[-1]), run


def baseline(prompts: list[str], *, interval_s: float, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as folder:
        db = Path(folder) / "baseline.db"
        extra = ["--db", str(db), "--interval", str(interval_s)]
        own, run = _monitor(prompts, "bench.baseline", extra, Path(folder), timeout_s)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            stored = dict(conn.execute("SELECT video_id, stored_at FROM jobs").fetchall())
        db_bytes = db.stat().st_size
    figures = _from_run(stored, own, run, len(prompts))
    figures["database_bytes"] = db_bytes
    return figures


def sdk_poll(prompts: list[str], *, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as folder:
        extra = ["--out", str(Path(folder) / "videos")]
        own, run = _monitor(prompts, "bench.sdkpoll", extra, Path(folder), timeout_s)
    return _from_run(own["stored_at"], own, run, len(prompts))


def _from_run(
    stored: dict[str, float | None], own: dict[str, Any], run: dict[str, Any], n: int
) -> dict[str, Any]:
    return _figures(
        stored, run["finished"], run["stats"], n, own["cpu_s"], own["peak_rss_mib"],
        run["wall_s"], run["sim_cpu_s"], run["rss"],
    )  # fmt: skip


def _figures(
    stored: dict[str, float | None],
    finished: dict[str, float],
    stats: dict[str, Any],
    n: int,
    cpu_s: float,
    peak_rss_mib: float,
    wall_s: float,
    sim_cpu_s: float,
    rss_series: list[tuple[float, float]],
    *,
    provider: str = "openai",
) -> dict[str, Any]:
    lag = lags(stored, finished)
    retrieves = int(stats["requests"].get(STATUS_ROUTES[provider], 0))
    extra: dict[str, Any] = {}
    if provider in RESULT_ROUTES:
        results = int(stats["requests"].get(RESULT_ROUTES[provider], 0))
        extra = {
            "result_requests": results,
            "result_requests_per_generation": round(results / n, 2),
        }
    return {
        "generations": n,
        "stored": len(lag),
        "lag_s": common.summary(lag),
        "lags": [round(x, 3) for x in lag],
        "status_requests": retrieves,
        "status_requests_per_generation": round(retrieves / n, 2),
        **extra,
        "requests_by_route": stats["requests"],
        "cpu_s": round(cpu_s, 2),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "wall_s": round(wall_s, 1),
        "simulator_cpu_s": round(sim_cpu_s, 2),
        "simulator_cpu_share": round(sim_cpu_s / wall_s, 3) if wall_s else None,
        "rss_series": [(round(t, 1), round(m, 1)) for t, m in rss_series],
    }


# --- the scenario -------------------------------------------------------------------------------


def run(quick: bool, provider: str = "openai") -> Path:
    """Run the scenario against one provider's dialect; openai writes lag.json (with the
    baseline and the SDK helper), the others lag-<provider>.json (reelwatch only)."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    n = 100 if quick else 2000
    prompts = workload(n, quick)
    timeout_s = 120.0 if quick else 900.0
    contenders = {
        "reelwatch": lambda: reelwatch(
            prompts, webhooks=False, timeout_s=timeout_s, provider=provider
        ),
        "reelwatch_webhooks": lambda: reelwatch(
            prompts, webhooks=True, timeout_s=timeout_s, provider=provider
        ),
    }
    if provider == "openai":  # the seed's loop and the SDK helper speak OpenAI only
        contenders["baseline"] = lambda: baseline(
            prompts, interval_s=3.0 if quick else 30.0, timeout_s=timeout_s
        )
        contenders["sdk_poll"] = lambda: sdk_poll(prompts, timeout_s=timeout_s)
    results: dict[str, Any] = {}
    for name, contender in contenders.items():
        print(f"lag ({provider}): running {name}", file=sys.stderr)
        results[name] = contender()
        print(f"lag ({provider}): {name}: {results[name]['lag_s']}", file=sys.stderr)
    ours, hooks = results["reelwatch"], results["reelwatch_webhooks"]
    targets = {
        "polling_median_le_1s": (ours["lag_s"]["median"] or 1e9) <= 1.0,
        "polling_p99_le_3s": (ours["lag_s"]["p99"] or 1e9) <= 3.0,
        "polling_requests_le_6": ours["status_requests_per_generation"] <= 6,
        "webhooks_p99_le_0_5s": (hooks["lag_s"]["p99"] or 1e9) <= 0.5,
        "webhooks_requests_le_2": hooks["status_requests_per_generation"] <= 2,
    }
    if provider != "openai":
        return common.write(
            f"lag-{provider}",
            {"provider": provider, "contenders": results, "targets": targets},
            quick=quick,
        )
    base = results["baseline"]
    ratios = {
        "median_lag": _ratio(ours["lag_s"]["median"], base["lag_s"]["median"]),
        "p99_lag": _ratio(ours["lag_s"]["p99"], base["lag_s"]["p99"]),
        "requests_per_generation": _ratio(
            ours["status_requests_per_generation"], base["status_requests_per_generation"]
        ),
        "cpu_s": _ratio(ours["cpu_s"], base["cpu_s"]),
    }
    path = common.write(
        "lag",
        {"contenders": results, "targets": targets, "ratios_reelwatch_over_baseline": ratios},
        quick=quick,
    )
    if not quick:
        plot(results)
    return path


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, figures in results.items():
        values = sorted(figures["lags"])
        if values:
            ax.plot(values, [i / len(values) for i in range(1, len(values) + 1)], label=name)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("detection lag (s, provider completion to stored)")
    ax.set_ylabel("fraction of generations")
    ax.legend()
    ax.grid(True, alpha=0.3)
    common.save_plot(fig, "lag-cdf.png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(results)
    ax.bar(names, [results[n]["status_requests_per_generation"] for n in names])
    ax.set_ylabel("status requests per generation")
    common.save_plot(fig, "lag-requests.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, figures in results.items():
        series = figures["rss_series"]
        if series:
            ax.plot([t for t, _ in series], [m for _, m in series], label=name)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    common.save_plot(fig, "lag-rss.png")

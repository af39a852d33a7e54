"""Scenario `profiles`: detection lag against status requests, and ETA accuracy, per progress
profile of the simulator (linear, lumps, easeout, stall, none).

One run per profile, every contender at once against one simulator process (50 ms a request,
64 KiB videos), each creating its own copy of the same seeded workload at the same arrival
times: 2,000 generations (48 with --quick) spread evenly over 300 s (10 s), of six classes
(sora-2 and sora-2-pro, 4, 8 and 12 seconds), queued 0.5-5 s and rendering for a time drawn
around the class's mean (sora-2 30 s and sora-2-pro 60 s for 8 seconds of video, in proportion
for the others; a tenth of that with --quick) with a spread of 20 % (10 % for `none`), all
scripted into the prompts so every contender gets the same jobs. The first 100 generations of
each class (2 with --quick) are counted apart as warm-up: reelwatch's history is empty then.

Contenders:
- `reelwatch@W`: a `reelwatch worker` (SQLite, its own data folder) with
  `REELWATCH_POLL_LOOK_WORTH_SECONDS=W`, for each W in `WORTHS` (0.2 is the default), fed
  through reelwatch's own service at the arrival times;
- `fixed:N`: a task per job asking every N seconds (bench/pollers.py), for N in 1, 2, 5, 10, 30;
- `seed`: the seed's 30 s sequential loop (bench/pollers.py);
- `sdk_poll`: the official SDK's `create_and_poll` and `download_content` (bench/sdkpoll.py).

Lag is the time from the simulator's scripted completion to the contender's stored timestamp;
status requests are counted by the simulator per video. The ETA reelwatch shows (the service's
view, as the dashboard and the API show it) is sampled every second for the default contender;
at 25, 50 and 75 % of each render the sample nearest in time is compared with the true time
left, and so is the straight-line ETA from the same sample (the line through the first percent
reelwatch saw and the latest, `Generation.eta_seconds`: the ETA reelwatch showed before the
predictor, which needs two different percents). Errors are in percent of that generation's
render time; "paired" compares the two on the samples where both have an ETA.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import common, lag

PROFILES = ("linear", "lumps", "easeout", "stall", "none")
CLASSES = tuple((model, seconds) for model in ("sora-2", "sora-2-pro") for seconds in (4, 8, 12))
MEAN_8S = {"sora-2": 30.0, "sora-2-pro": 60.0}
WORTHS = (0.05, 0.2, 1.0)
DEFAULT_WORTH = 0.2
FIXED = (1, 2, 5, 10, 30)
FRACTIONS = (0.25, 0.5, 0.75)
# generations, arrival span (s), duration scale, warm-up generations per class
SIZES = {"full": (2000, 300.0, 1.0, 100), "quick": (48, 10.0, 0.1, 2)}


def workload(profile: str, quick: bool) -> list[dict[str, Any]]:
    """The generations of one profile's run, in arrival order (the same draws for every profile,
    so profiles differ only in how progress reads and, for `none`, the spread)."""
    from reelwatch.simulator.state import truncated_normal

    n, span, scale, _ = SIZES["quick" if quick else "full"]
    spread = 0.1 if profile == "none" else 0.2
    rng = random.Random(20261205)
    specs = []
    for i in range(n):
        model, seconds = CLASSES[rng.randrange(len(CLASSES))]
        queue = rng.uniform(0.5, 5.0) * scale
        render = truncated_normal(rng, MEAN_8S[model] * seconds / 8 * scale, spread)
        prompt = f"profiles {i} [sim:queue={queue:.2f},render={render:.2f},progress={profile}]"
        specs.append({"prompt": prompt, "model": model, "seconds": seconds, "at": i * span / n})
    return specs


def warm(specs: list[dict[str, Any]], quick: bool) -> list[bool]:
    """Whether each generation is among the first of its class (counted apart)."""
    limit = SIZES["quick" if quick else "full"][3]
    seen: dict[tuple[str, int], int] = {}
    flags = []
    for spec in specs:
        key = (spec["model"], spec["seconds"])
        seen[key] = seen.get(key, 0) + 1
        flags.append(seen[key] <= limit)
    return flags


# --- reelwatch ------------------------------------------------------------------------------


@contextlib.contextmanager
def _worker(origin: str, folder: Path, worth: float) -> Iterator[tuple[dict[str, str], int]]:
    config = lag.provider_config("openai", origin, webhooks=False)
    inherited = {k: v for k, v in os.environ.items() if k not in lag._PROVIDER_VARIABLES}
    env = {
        **inherited,
        "REELWATCH_DATA_DIR": str(folder),
        "REELWATCH_PROVIDER": "openai",
        "REELWATCH_PROVIDER_CONFIG": json.dumps({"openai": config}),
        "REELWATCH_LOG_FORMAT": "json",
        "REELWATCH_CONCURRENCY": "64",
        "REELWATCH_REQUESTS_PER_MINUTE": "600000",  # the simulator has no rate limit
        "REELWATCH_POLL_LOOK_WORTH_SECONDS": str(worth),
    }
    folder.mkdir(parents=True, exist_ok=True)
    with (
        (folder / "worker.log").open("w") as log,
        subprocess.Popen(
            [sys.executable, "-m", "reelwatch", "worker"], env=env, stdout=log, stderr=log
        ) as proc,
    ):
        try:
            yield env, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def _feed(
    env: dict[str, str], specs: list[dict[str, Any]], t0: float, sample: bool
) -> list[dict[str, Any]]:
    """Submit the workload through reelwatch's service at the arrival times; with `sample`,
    read the ETA the service shows for every rendering generation once a second until all
    are finished. Returns the samples."""
    import logging

    from reelwatch import assembly, logs, service, settings
    from reelwatch.models import Status

    logs.configure("json", level=logging.WARNING)

    overrides: dict[str, Any] = {
        "data_dir": Path(env["REELWATCH_DATA_DIR"]),
        "default_provider": "openai",
        "provider_config": json.loads(env["REELWATCH_PROVIDER_CONFIG"]),
    }
    samples: list[dict[str, Any]] = []
    async with assembly.open_service(settings.load(**overrides), need_provider=True) as svc:

        async def one(spec: dict[str, Any]) -> None:
            await asyncio.sleep(max(0.0, t0 + spec["at"] - time.time()))
            request = service.SubmitRequest(
                spec["prompt"], provider="openai", model=spec["model"],
                params={"seconds": spec["seconds"]},
            )  # fmt: skip
            await svc.submit(request, actor="bench")

        feeding = asyncio.gather(*(one(spec) for spec in specs))
        while sample:
            tick = time.time()
            page = await svc.page(statuses=[Status.IN_PROGRESS], limit=1000)
            at = time.time()
            now = svc.clock.now()
            for g in page.items:
                view = svc.view(g)
                samples.append(
                    {
                        "at": at,
                        "video_id": g.video_id,
                        "progress": g.progress,
                        "straight_s": g.eta_seconds(now),
                        "eta_s": view["eta_seconds"],
                        "eta_high_s": view["eta_high_seconds"],
                        "source": view["eta_source"],
                    }
                )
            if feeding.done():
                counts = await svc.counts()
                if not any(
                    counts.get(s, 0)
                    for s in (Status.PENDING, Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING)
                ):
                    break
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - tick)))
        await feeding
    return samples


def _stored(db: Path) -> tuple[list[str], dict[str, float | None]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT video_id, status, completed_at FROM generations ORDER BY created_at, rowid"
        ).fetchall()
    ids = [vid for vid, _, _ in rows if vid]
    return ids, {vid: lag._epoch(at) if status == "completed" else None for vid, status, at in rows}


def _wait_done(db: Path, n: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            (left,) = conn.execute(
                "SELECT count(*) FROM generations WHERE status NOT IN"
                " ('completed', 'failed', 'cancelled')"
            ).fetchone()
            (total,) = conn.execute("SELECT count(*) FROM generations").fetchone()
        if total >= n and left == 0:
            return
        time.sleep(1)


# --- one profile ------------------------------------------------------------------------------


def run_profile(profile: str, quick: bool) -> dict[str, Any]:
    specs = workload(profile, quick)
    flags = warm(specs, quick)
    timeout_s = 300.0 if quick else 1500.0
    with (
        tempfile.TemporaryDirectory(prefix="bench-profiles-") as scratch,
        lag.simulator() as (base_url, sim_pid),
    ):
        folder = Path(scratch)
        origin = base_url.removesuffix("/v1")
        specs_file = folder / "specs.json"
        specs_file.write_text(json.dumps(specs))
        sim_cpu_before = common.cpu_seconds(sim_pid)
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            workers = {
                w: stack.enter_context(_worker(origin, folder / f"reelwatch-{w}", w))
                for w in WORTHS
            }
            pollers = stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.pollers", "--base-url", origin, "--specs",
                     str(specs_file), "--contenders",
                     ",".join([*(f"fixed:{n}" for n in FIXED), "seed"])],
                    stdout=subprocess.PIPE, text=True,
                )
            )  # fmt: skip
            sdk = stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.sdkpoll", "--base-url", base_url, "--specs",
                     str(specs_file), "--out", str(folder / "sdk")],
                    stdout=subprocess.PIPE, text=True,
                )
            )  # fmt: skip

            async def feed_all() -> list[dict[str, Any]]:
                t0 = time.time()
                fed = await asyncio.gather(
                    *(_feed(env, specs, t0, w == DEFAULT_WORTH) for w, (env, _) in workers.items())
                )
                return [s for batch in fed for s in batch]

            samples = asyncio.run(feed_all())
            deadline = time.monotonic() + timeout_s
            for w in WORTHS:
                _wait_done(folder / f"reelwatch-{w}" / "reelwatch.db", len(specs), deadline)
            worker_cpu = {w: common.cpu_seconds(pid) for w, (_, pid) in workers.items()}
            pollers_out, _ = pollers.communicate(timeout=max(1.0, deadline - time.monotonic()))
            sdk_out, _ = sdk.communicate(timeout=max(1.0, deadline - time.monotonic()))
        wall = time.monotonic() - started
        timeline = {j["id"]: j for j in lag.timeline(base_url)}
        stats = lag.sim_stats(base_url)
        sim_cpu = common.cpu_seconds(sim_pid) - sim_cpu_before
        runs: dict[str, tuple[list[str], dict[str, float | None]]] = {}
        for w in WORTHS:
            runs[f"reelwatch@{w}"] = _stored(folder / f"reelwatch-{w}" / "reelwatch.db")
        polled = json.loads(pollers_out.strip().splitlines()[-1])
        for name, got in polled["contenders"].items():
            runs[name] = (got["ids"], got["stored"])
        sdk_got = json.loads(sdk_out.strip().splitlines()[-1])
        runs["sdk_poll"] = (sdk_got["ids"], sdk_got["stored_at"])
    per_video = stats["videos"]
    contenders: dict[str, Any] = {}
    for name, (ids, stored) in runs.items():
        contenders[name] = _figures(ids, stored, flags, timeline, per_video)
    for w in WORTHS:
        figures = contenders[f"reelwatch@{w}"]
        figures["cpu_s"] = round(worker_cpu[w], 2)
        checks = figures["status_requests"]
        figures["cpu_ms_per_status_check"] = (
            round(1000 * worker_cpu[w] / checks, 2) if checks else None
        )
    contenders["sdk_poll"]["cpu_s"] = round(sdk_got["cpu_s"], 2)
    ids = runs[f"reelwatch@{DEFAULT_WORTH}"][0]
    return {
        "profile": profile,
        "generations": len(specs),
        "warm_up_per_class": SIZES["quick" if quick else "full"][3],
        "contenders": contenders,
        "eta": eta_accuracy(samples, ids, flags, timeline),
        "wall_s": round(wall, 1),
        "simulator_cpu_s": round(sim_cpu, 2),
        "pollers_cpu_s": round(polled["cpu_s"], 2),
    }


def _figures(
    ids: list[str],
    stored: dict[str, float | None],
    flags: list[bool],
    timeline: dict[str, dict[str, Any]],
    per_video: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """Lag and status requests per generation, warm-up apart (ids are in workload order)."""
    parts: dict[str, dict[str, list[float]]] = {"after": {}, "warm_up": {}}
    for part in parts.values():
        part.update(lags=[], requests=[])
    for video_id, is_warm in zip(ids, flags, strict=False):
        part = parts["warm_up" if is_warm else "after"]
        part["requests"].append(per_video.get(video_id, {}).get("retrieves", 0))
        at, job = stored.get(video_id), timeline.get(video_id)
        if at is not None and job is not None and job["finish_at"] is not None:
            part["lags"].append(at - job["finish_at"])
    out: dict[str, Any] = {"created": len(ids), "stored": sum(1 for v in stored.values() if v)}
    for key, part in parts.items():
        n = len(part["requests"])
        out[key] = {
            "generations": n,
            "lag_s": common.summary(part["lags"]),
            "status_requests_per_generation": round(sum(part["requests"]) / n, 2) if n else None,
        }
    out["status_requests"] = sum(per_video.get(v, {}).get("retrieves", 0) for v in ids)
    return out


def eta_accuracy(
    samples: list[dict[str, Any]],
    ids: list[str],
    flags: list[bool],
    timeline: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Absolute ETA errors at 25/50/75 % of each render (after warm-up), in % of the render."""
    counted = {vid for vid, is_warm in zip(ids, flags, strict=False) if not is_warm}
    by_video: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        if s["video_id"] in counted:
            by_video.setdefault(s["video_id"], []).append(s)
    table: dict[str, Any] = {}
    for fraction in FRACTIONS:
        ours: list[float] = []
        naive: list[float] = []
        paired: list[tuple[float, float]] = []
        inside = 0
        considered = 0
        for vid, seen in by_video.items():
            job = timeline.get(vid)
            if not job or job["finish_at"] is None or job["fails"]:
                continue
            start, end = job["render_at"], job["finish_at"]
            render = end - start
            if render <= 0:
                continue
            target = start + fraction * render
            nearest = min(seen, key=lambda s: abs(s["at"] - target))
            if abs(nearest["at"] - target) > 1.0:
                continue
            considered += 1
            left = end - nearest["at"]
            mine, straight = nearest["eta_s"], nearest["straight_s"]
            if mine is not None:
                ours.append(100 * abs(mine - left) / render)
                high = nearest["eta_high_s"]
                if left <= (high if high is not None else mine) + 1.0:
                    inside += 1
            if straight is not None:
                naive.append(100 * abs(straight - left) / render)
            if mine is not None and straight is not None:
                paired.append(
                    (100 * abs(mine - left) / render, 100 * abs(straight - left) / render)
                )
        table[f"{int(fraction * 100)}%"] = {
            "generations": considered,
            "reelwatch": _error_summary(ours, considered),
            "straight_line": _error_summary(naive, considered),
            "paired": {
                "samples": len(paired),
                "reelwatch_median_abs_error_pct": _median([a for a, _ in paired]),
                "straight_line_median_abs_error_pct": _median([b for _, b in paired]),
            },
            "true_end_within_shown_range": round(inside / len(ours), 3) if ours else None,
        }
    return table


def _median(values: list[float]) -> float | None:
    found = common.percentile(sorted(values), 50)
    return None if found is None else round(found, 1)


def _error_summary(errors: list[float], considered: int) -> dict[str, Any]:
    ordered = sorted(errors)
    return {
        "with_an_eta": round(len(errors) / considered, 3) if considered else None,
        "median_abs_error_pct": round(common.percentile(ordered, 50), 1) if ordered else None,
        "p90_abs_error_pct": round(common.percentile(ordered, 90), 1) if ordered else None,
    }


# --- the scenario -------------------------------------------------------------------------------


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target of the prediction issue, per profile: met or not."""
    out: dict[str, Any] = {}
    for profile, data in result.items():
        c = data["contenders"]
        ours = c[f"reelwatch@{DEFAULT_WORTH}"]["after"]
        median, p99 = ours["lag_s"]["median"], ours["lag_s"]["p99"]
        requests = ours["status_requests_per_generation"]
        checks: dict[str, bool | None] = {}
        if profile == "none":
            checks["p99_le_3s"] = p99 is not None and p99 <= 3.0
            checks["requests_le_8"] = requests is not None and requests <= 8
        else:
            checks["median_le_0_5s"] = median is not None and median <= 0.5
            checks["p99_le_2s"] = p99 is not None and p99 <= 2.0
            checks["requests_le_5"] = requests is not None and requests <= 5
        checks["below_every_fixed_point"] = below_fixed(c)
        eta = data["eta"]["50%"]
        ours_err = eta["reelwatch"]["median_abs_error_pct"]
        paired = eta["paired"]
        checks["eta_50_error_le_10pct"] = ours_err is not None and ours_err <= 10
        if profile != "linear":
            # Judged where both show an ETA; None where the straight line never has one.
            mine, theirs = (
                paired["reelwatch_median_abs_error_pct"],
                paired["straight_line_median_abs_error_pct"],
            )
            checks["eta_50_better_than_straight_line"] = (
                None if paired["samples"] < 20 or mine is None or theirs is None else mine < theirs
            )
        out[profile] = checks
    return out


def below_fixed(contenders: dict[str, Any]) -> bool:
    """Whether reelwatch's curve (its budget settings, joined by straight lines in requests)
    has less p99 lag than every fixed interval at that interval's requests per generation."""
    curve = sorted(
        (f["after"]["status_requests_per_generation"], f["after"]["lag_s"]["p99"])
        for name, f in contenders.items()
        if name.startswith("reelwatch@") and f["after"]["lag_s"]["p99"] is not None
    )
    if not curve:
        return False
    for name, f in contenders.items():
        if not name.startswith("fixed:"):
            continue
        x, y = f["after"]["status_requests_per_generation"], f["after"]["lag_s"]["p99"]
        if y is None:
            continue
        ours = _interpolate(curve, x)
        if ours is None or ours >= y:
            return False
    return True


def _interpolate(curve: list[tuple[float, float]], x: float) -> float | None:
    """The curve's lag at x requests; beyond its cheapest point None (it says nothing there),
    beyond its dearest point its dearest lag (more requests never hurt)."""
    if x < curve[0][0]:
        return None
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return curve[-1][1]


def run(quick: bool, only: tuple[str, ...] = PROFILES) -> Path:
    result: dict[str, Any] = {}
    name = "profiles" if set(only) == set(PROFILES) else "profiles-" + "-".join(only)
    for profile in only:
        print(f"profiles: running {profile}", file=sys.stderr)
        result[profile] = run_profile(profile, quick)
        ours = result[profile]["contenders"][f"reelwatch@{DEFAULT_WORTH}"]["after"]
        print(f"profiles: {profile}: {ours}", file=sys.stderr)
        # Written after each profile, so an interrupted run keeps what it measured.
        data = {
            "profiles": result,
            "targets": targets(result),
            "complete": len(result) == len(only),
        }
        path = common.write(name, data, quick=quick)
    if not quick:
        plot(result)
    return path


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result), figsize=(4 * len(result), 3.8), squeeze=False)
    for ax, (profile, data) in zip(axes[0], result.items(), strict=True):
        c = data["contenders"]
        ours = sorted(
            (f["after"]["status_requests_per_generation"], f["after"]["lag_s"]["p99"], name)
            for name, f in c.items()
            if name.startswith("reelwatch@")
        )
        ax.plot([x for x, _, _ in ours], [y for _, y, _ in ours], "o-", label="reelwatch")
        for x, y, name in ours:
            ax.annotate(name.split("@")[1], (x, y), fontsize=7)
        for name, f in c.items():
            if name.startswith("reelwatch@"):
                continue
            x, y = f["after"]["status_requests_per_generation"], f["after"]["lag_s"]["p99"]
            marker = "s" if name.startswith("fixed:") else "^"
            ax.plot([x], [y], marker, color="grey" if marker == "s" else "tab:red")
            ax.annotate(name.replace("fixed:", "") + ("s" if marker == "s" else ""), (x, y),
                        fontsize=7)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(profile)
        ax.set_xlabel("status requests / generation")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("p99 detection lag (s)")
    common.save_plot(fig, "profiles-frontier.png")


def merge(names: tuple[str, ...]) -> Path:
    """Combine result files of separate runs (`profiles-stall-none`, ...) into `profiles.json`,
    the later file winning for a profile measured twice; each profile keeps the commit, time
    and command of the run that measured it. Then the targets and the plot are redone."""
    result: dict[str, Any] = {}
    sources = []
    for name in names:
        record = json.loads((common.RESULTS / f"{name}.json").read_text())
        sources.append(f"{record['command']} ({record['when']}, commit {record['commit']})")
        for profile, run in record["profiles"].items():
            result[profile] = {
                **run,
                "measured": {k: record[k] for k in ("command", "when", "commit", "machine")},
            }
    ordered = {p: result[p] for p in PROFILES if p in result}
    data = {
        "profiles": ordered,
        "targets": targets(ordered),
        "complete": len(ordered) == len(PROFILES),
        "merged_from": sources,
        "command": "python -m bench.profiles merge " + " ".join(names),
    }
    path = common.write("profiles", data, quick=False)
    plot(ordered)
    return path


if __name__ == "__main__":
    # python -m bench.profiles merge profiles-A profiles-B ...
    if sys.argv[1:2] != ["merge"] or len(sys.argv) < 4:
        sys.exit("usage: python -m bench.profiles merge RESULT RESULT [RESULT ...]")
    print(merge(tuple(sys.argv[2:])))

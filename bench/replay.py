"""A tool beside the scenarios: reelwatch's poll schedule and ETA replayed without processes.

The lifecycle's pure decisions (`lifecycle.decide`, the schedule and the predictor inside it)
are fed the simulator's pure job states (`simulator.jobs.state_at`) on a virtual clock, with a
fixed latency per request and the render history learnt as the store learns it
(`predict.learn` on each render's looks). The same workload as the `profiles` scenario; a run
of 2,000 generations takes seconds and is deterministic, so a change to the schedule can be
judged before the real benchmark (which runs the worker, HTTP and the database, and is the one
docs/benchmarks.md quotes).

    python -m bench.replay lumps none --worth 0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
from datetime import UTC, datetime
from typing import Any

from bench import common, profiles
from reelwatch import lifecycle, predict, schedule
from reelwatch.models import Generation, RemoteStatus, RemoteVideo, Status
from reelwatch.simulator import jobs

LATENCY_S = 0.05
HISTORY_TTL_S = 30.0  # as the engine's cache (engine.Histories)
_REMOTE = {
    "queued": RemoteStatus.QUEUED,
    "in_progress": RemoteStatus.IN_PROGRESS,
    "completed": RemoteStatus.COMPLETED,
    "failed": RemoteStatus.FAILED,
}


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _video(job: jobs.Job, t: float) -> RemoteVideo:
    state = jobs.state_at(job, t)
    completed = None if state.completed_at is None else _at(state.completed_at)
    return RemoteVideo(
        video_id=job.id,
        status=_REMOTE[state.status],
        raw_status=state.status,
        progress=state.progress,
        completed_at=completed,
    )


class Histories:
    """Finished runs per shape, read back as the engine does: a snapshot kept `HISTORY_TTL_S`."""

    def __init__(self) -> None:
        self.runs: dict[str, list[predict.Run]] = {}
        self.cached: dict[str, tuple[float, predict.History]] = {}

    def get(self, shape: str, t: float) -> predict.History | None:
        hit = self.cached.get(shape)
        if hit is None or t - hit[0] > HISTORY_TTL_S:
            runs = self.runs.get(shape, [])
            hit = (t, predict.History(runs[-predict.WINDOW :][::-1]))
            self.cached[shape] = hit
        return hit[1] if len(hit[1]) else None

    def add(self, shape: str, run: predict.Run) -> None:
        self.runs.setdefault(shape, []).append(run)


def replay(profile: str, worth: float, *, quick: bool = False) -> dict[str, Any]:
    specs = profiles.workload(profile, quick)
    flags = profiles.warm(specs, quick)
    policy = schedule.Policy(look_worth_s=worth)
    t0 = 1_800_000_000.0
    histories = Histories()
    scripts = [
        jobs.script_for(s["prompt"], queue_s=0, render_s=0, video_bytes=1, expires_after_s=1e9)
        for s in specs
    ]
    live: dict[int, Generation] = {}
    job_of: dict[int, jobs.Job] = {}
    looks: dict[int, list[predict.Look]] = {}
    requests = [0] * len(specs)
    lag: list[float | None] = [None] * len(specs)
    eta_errors: dict[float, list[tuple[int, float | None, float | None]]] = {
        f: [] for f in profiles.FRACTIONS
    }
    due: list[tuple[float, int, str]] = []
    for i, spec in enumerate(specs):
        heapq.heappush(due, (t0 + spec["at"], i, "create"))
        job = jobs.Job(
            id=f"video_{i}", seq=i, created_at=t0 + spec["at"], prompt=spec["prompt"],
            model=spec["model"], seconds=str(spec["seconds"]), size="720x1280", script=scripts[i],
        )  # fmt: skip
        job_of[i] = job
        render_at, finish = job.render_at, job.finish_at
        assert finish is not None
        for f in profiles.FRACTIONS:
            heapq.heappush(due, (render_at + f * (finish - render_at), i, f"eta:{f}"))
    while due:
        t, i, what = heapq.heappop(due)
        job = job_of[i]
        if what.startswith("eta:"):
            g = live.get(i)
            if g is None or not g.active:
                continue
            shape = predict.shape_of(g)
            guess = predict.estimate(g, _at(t), histories.get(shape, t))
            finish = job.finish_at
            assert finish is not None
            left = finish - t
            render = finish - job.render_at
            ours = None if guess.seconds is None else 100 * abs(guess.seconds - left) / render
            straight = g.eta_seconds(_at(t))
            naive = None if straight is None else 100 * abs(straight - left) / render
            eta_errors[float(what[4:])].append((i, ours, naive))
            continue
        now = t + LATENCY_S
        if what == "create":
            spec = specs[i]
            g = Generation(
                id=f"gen_{i}", provider="openai", video_id=None, status=Status.PENDING,
                progress=0, model=spec["model"], seconds=spec["seconds"], size="720x1280",
                prompt=spec["prompt"], created_at=_at(t), watch_started_at=_at(t),
                params={"seconds": spec["seconds"], "size": "720x1280"},
            )  # fmt: skip
            video = _video(job, t + LATENCY_S / 2)
            decision = lifecycle.decide(
                g, lifecycle.Submitted(video), _at(now), policy,
                history=histories.get(predict.shape_of(g), now),
            )  # fmt: skip
            g = decision.generation
            g = g if g.submitted_at else _with_submitted(g, now)
            looks[i] = [predict.Look(_at(now), g.status.value, g.progress)]
        else:
            g = live[i]
            requests[i] += 1
            video = _video(job, t + LATENCY_S / 2)
            shape = predict.shape_of(g)
            decision = lifecycle.decide(
                g, lifecycle.Polled(video), _at(now), policy, history=histories.get(shape, now)
            )
            before, g = g, decision.generation
            looks[i].append(predict.Look(_at(now), g.status.value, g.progress))
            if g.status is Status.DOWNLOADING:
                finish = job.finish_at
                assert finish is not None
                lag[i] = now + LATENCY_S - finish  # the download: one more request's time
                run = predict.learn(before.submitted_at, g.remote_completed_at, looks[i])
                if run is not None:
                    histories.add(shape, run)
                live[i] = g
                continue
            if not g.active:
                live[i] = g
                continue
        live[i] = g
        assert g.next_poll_at is not None
        heapq.heappush(due, (max(now, g.next_poll_at.timestamp()), i, "poll"))
    return _summary(flags, lag, requests, eta_errors)


def _with_submitted(g: Generation, now: float) -> Generation:
    return dataclasses.replace(g, submitted_at=_at(now))


def _summary(
    flags: list[bool],
    lag: list[float | None],
    requests: list[int],
    eta_errors: dict[float, list[tuple[int, float | None, float | None]]],
) -> dict[str, Any]:
    after = [i for i, warm in enumerate(flags) if not warm]
    lags = [x for i in after if (x := lag[i]) is not None]
    out: dict[str, Any] = {
        "lag_s": common.summary(lags),
        "status_requests_per_generation": round(sum(requests[i] for i in after) / len(after), 2),
    }
    kept = set(after)
    for f, rows in eta_errors.items():
        rows = [r for r in rows if r[0] in kept]
        ours = sorted(e for _, e, _ in rows if e is not None)
        naive = sorted(e for _, _, e in rows if e is not None)
        out[f"eta_{int(f * 100)}"] = {
            "n": len(rows),
            "ours_median": _round(common.percentile(ours, 50)),
            "ours_p90": _round(common.percentile(ours, 90)),
            "ours_with": round(len(ours) / len(rows), 2) if rows else None,
            "naive_median": _round(common.percentile(naive, 50)),
            "naive_with": round(len(naive) / len(rows), 2) if rows else None,
        }
    return out


def _round(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("profiles", nargs="*", default=list(profiles.PROFILES))
    parser.add_argument("--worth", type=float, action="append")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for profile in args.profiles:
        for worth in args.worth or [profiles.DEFAULT_WORTH]:
            result = replay(profile, worth, quick=args.quick)
            lag = result.pop("lag_s")
            print(
                f"{profile:8} worth={worth:<5} median={lag['median']:.2f} p99={lag['p99']:.2f}"
                f" max={lag['max']:.2f} req/gen={result.pop('status_requests_per_generation')}"
            )
            for key, value in result.items():
                print(f"    {key}: {value}")


if __name__ == "__main__":
    main()

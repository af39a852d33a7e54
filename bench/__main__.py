"""`python -m bench <scenario> [--quick]`: run a scenario, write bench/results/<scenario>.json.

`python -m bench lag --provider replicate|fal` runs the lag scenario's reelwatch contenders
against that provider's dialect of the simulator and writes bench/results/lag-<provider>.json
(the default, openai, is the full scenario and writes lag.json).

Every scenario starts the simulator and the contenders itself, on the same seeded workload,
in the same run. `--quick` shrinks the workload so CI can check the harness still works; only
full runs are quoted in docs/benchmarks.md.

`python -m bench profiles [--profile lumps ...]` runs the lag and ETA-accuracy scenario per
progress profile of the simulator (all five by default).

`python -m bench scale --workers 1,2,4 [--levels 10000,20000]` runs several workers on
PostgreSQL at each level (bench/results/scale-workers.json).

`python -m bench cli` times `reelwatch --help`, the read commands and `submit` as fresh
processes, and reads an idle worker's RSS (the start-up targets).

`python -m bench chaos [--soak-seconds N]` runs the reliability scenarios (tests/chaos) in
their long mode and prints their table; it is not part of `all` (it has its own CI step) and
exits non-zero when a scenario fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

SCENARIOS = ("lag", "profiles", "scale", "download", "api", "cli")
SEPARATE = ("chaos",)  # run only when named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=(*SCENARIOS, *SEPARATE, "all"))
    parser.add_argument("--quick", action="store_true", help="a small workload (CI)")
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="chaos only: how long the soak runs (default 600, 60 with --quick)",
    )
    parser.add_argument(
        "--provider",
        choices=("openai", "replicate", "fal", "veo"),
        default=None,
        help="lag only: the simulator dialect reelwatch monitors (default openai)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=("linear", "lumps", "easeout", "stall", "none"),
        help="profiles only: run this progress profile (repeatable; default all five)",
    )
    parser.add_argument(
        "--workers",
        default=None,
        help="scale only: comma-separated worker counts, on PostgreSQL (e.g. 1,2,4)",
    )
    parser.add_argument(
        "--levels",
        default=None,
        help="scale --workers only: comma-separated active generation counts",
    )
    args = parser.parse_args(argv)
    if (args.workers or args.levels) and args.scenario != "scale":
        parser.error("--workers and --levels apply to the scale scenario only")
    if args.levels and not args.workers:
        parser.error("--levels needs --workers")
    if args.profile and args.scenario != "profiles":
        parser.error("--profile applies to the profiles scenario only")
    if args.soak_seconds is not None and args.scenario != "chaos":
        parser.error("--soak-seconds applies to the chaos scenario only")
    if args.provider is not None and args.scenario != "lag":
        parser.error("--provider applies to the lag scenario only")
    if args.scenario == "chaos":
        from bench import chaos

        path = chaos.run(quick=args.quick, soak_seconds=args.soak_seconds)
        print(f"chaos: wrote {path}", file=sys.stderr)
        return 0 if json.loads(path.read_text())["passed"] else 1
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        if name == "profiles" and args.profile:
            path = module.run(quick=args.quick, only=tuple(args.profile))
        elif name == "scale" and args.workers:
            path = module.run_workers(
                quick=args.quick,
                workers=[int(w) for w in args.workers.split(",")],
                levels=[int(n) for n in args.levels.split(",")] if args.levels else None,
            )
        elif name == "lag" and args.provider is not None:
            path = module.run(quick=args.quick, provider=args.provider)
        else:
            path = module.run(quick=args.quick)
        print(f"{name}: wrote {path}", file=sys.stderr)
        print(json.dumps(json.loads(path.read_text()), indent=2)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())

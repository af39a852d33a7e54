"""`python -m bench <scenario> [--quick]`: run a scenario, write bench/results/<scenario>.json.

Every scenario starts the simulator and the contenders itself, on the same seeded workload,
in the same run. `--quick` shrinks the workload so CI can check the harness still works; only
full runs are quoted in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

SCENARIOS = ("lag", "scale", "download", "api")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=(*SCENARIOS, "all"))
    parser.add_argument("--quick", action="store_true", help="a small workload (CI)")
    args = parser.parse_args(argv)
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        path = module.run(quick=args.quick)
        print(f"{name}: wrote {path}", file=sys.stderr)
        print(json.dumps(json.loads(path.read_text()), indent=2)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())

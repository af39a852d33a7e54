"""`python -m bench.report`: the tables of docs/benchmarks.md, from bench/results/*.json.

The figures in the document are pasted from this output, never typed by hand.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import RESULTS


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def lag() -> str:
    data = _load("lag")
    if data is None:
        return "(no lag results)"
    rows = [
        "| contender | stored | median lag (s) | p90 (s) | p99 (s) | max (s) "
        "| status requests / generation | CPU (s) | peak RSS (MiB) | simulator CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in data["contenders"].items():
        lag_s = c["lag_s"]
        rows.append(
            f"| {name} | {c['stored']}/{c['generations']} | {_f(lag_s['median'])} | "
            f"{_f(lag_s['p90'])} | {_f(lag_s['p99'])} | {_f(lag_s['max'])} | "
            f"{_f(c['status_requests_per_generation'])} | {_f(c['cpu_s'], 1)} | "
            f"{_f(c['peak_rss_mib'], 1)} | {_f(c['simulator_cpu_share'], 3)} |"
        )
    ratios = data["ratios_reelwatch_over_baseline"]
    rows.append("")
    rows.append(
        "Ratios reelwatch (polling) / baseline: "
        + ", ".join(f"{k} {_f(v, 3)}" for k, v in ratios.items())
    )
    rows.append("")
    rows += [f"- target `{k}`: {'met' if v else 'not met'}" for k, v in data["targets"].items()]
    return "\n".join(rows) + f"\n\nMeasured {data['when']} with `{data['command']}`."


def scale() -> str:
    data = _load("scale")
    if data is None:
        return "(no scale results)"
    rows = [
        "| active generations | stored | median lag (s) | p99 lag (s) "
        "| status checks/s (peak 5 s) | mean checks/s | worker CPU (s) / wall (s) "
        "| idle RSS (MiB) | peak RSS (MiB) | RSS per generation (KiB) | simulator CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["levels"]:
        rows.append(
            f"| {r['active_generations']} | {r['stored']} | {_f(r['lag_s']['median'])} | "
            f"{_f(r['lag_s']['p99'])} | {_f(r['status_checks_per_s_peak'], 1)} | "
            f"{_f(r['status_checks_per_s_mean'], 1)} | "
            f"{_f(r['cpu_s'], 1)} / {_f(r['wall_s'], 1)} | "
            f"{_f(r['idle_rss_mib'], 1)} | {_f(r['peak_rss_mib'], 1)} | "
            f"{_f(r['rss_per_generation_kib'])} | {_f(r['simulator_cpu_share'], 3)} |"
        )
    rows.append("")
    rows += [f"- target `{k}`: {'met' if v else 'not met'}" for k, v in data["targets"].items()]
    return "\n".join(rows) + f"\n\nMeasured {data['when']} with `{data['command']}`."


def main() -> None:
    print("## lag\n")
    print(lag())
    print("\n## scale\n")
    print(scale())


if __name__ == "__main__":
    main()

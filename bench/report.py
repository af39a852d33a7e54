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


def _measured(data: dict[str, Any], extra: str = "") -> str:
    """The line under each table: when, which commit, which command."""
    return f"\n\nMeasured {data['when']} (commit {data['commit']}) with `{data['command']}`{extra}."


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
    return "\n".join(rows) + _measured(data)


def lag_providers() -> str:
    """The reelwatch contenders of `lag` side by side for each provider's dialect: lag.json
    (openai) and lag-<provider>.json."""
    files = {"openai": "lag", "replicate": "lag-replicate", "fal": "lag-fal", "veo": "lag-veo"}
    found = {name: data for name, file in files.items() if (data := _load(file)) is not None}
    if not found:
        return "(no lag results)"
    names = list(found)
    metrics: list[tuple[str, Any]] = [
        ("stored", lambda c: f"{c['stored']}/{c['generations']}"),
        ("median lag (s)", lambda c: _f(c["lag_s"]["median"])),
        ("p90 lag (s)", lambda c: _f(c["lag_s"]["p90"])),
        ("p99 lag (s)", lambda c: _f(c["lag_s"]["p99"])),
        ("max lag (s)", lambda c: _f(c["lag_s"]["max"])),
        ("status requests / generation", lambda c: _f(c["status_requests_per_generation"])),
        ("result requests / generation", lambda c: _f(c.get("result_requests_per_generation"))),
        ("CPU (s)", lambda c: _f(c["cpu_s"], 1)),
        ("peak RSS (MiB)", lambda c: _f(c["peak_rss_mib"], 1)),
        ("simulator CPU share", lambda c: _f(c["simulator_cpu_share"], 3)),
    ]
    rows = [
        "| contender | figure | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for contender in ("reelwatch", "reelwatch_webhooks"):
        for label, cell in metrics:
            values = [cell(found[name]["contenders"][contender]) for name in names]
            rows.append(f"| {contender} | {label} | " + " | ".join(values) + " |")
    rows.append("")
    for target in found[names[0]]["targets"]:
        verdicts = ", ".join(
            f"{name} {'met' if found[name]['targets'].get(target) else 'not met'}" for name in names
        )
        rows.append(f"- target `{target}`: {verdicts}")
    rows.append("")
    for name in names:
        data = found[name]
        rows.append(
            f"- {name}: measured {data['when']} (commit {data['commit']}) with `{data['command']}`"
        )
    return "\n".join(rows)


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
            f"{_f(_first(r['cpu_s']), 1)} / {_f(r['wall_s'], 1)} | "
            f"{_f(r['idle_rss_mib'], 1)} | {_f(_first(r['peak_rss_mib']), 1)} | "
            f"{_f(r['rss_per_generation_kib'])} | {_f(r['simulator_cpu_share'], 3)} |"
        )
    rows.append("")
    rows += [f"- target `{k}`: {'met' if v else 'not met'}" for k, v in data["targets"].items()]
    return "\n".join(rows) + _measured(data)


def _first(value: Any) -> Any:
    """One worker's figure: runs since the multi-worker harness record a list per worker."""
    return value[0] if isinstance(value, list) else value


def scale_workers() -> str:
    data = _load("scale-workers")
    if data is None:
        return "(no scale-workers results)"
    rows = [
        "| active | workers | stored | median lag (s) | p99 lag (s) | checks/s (peak 5 s) "
        "| mean checks/s | yardstick (req/s) | peak / yardstick | per worker / yardstick "
        "| CPU per worker (s) | wall (s) | peak RSS per worker (MiB) | idle RSS (MiB) "
        "| simulator CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        ratio = r["ratio_to_yardstick"]
        per_worker = None if ratio is None else ratio / r["workers"]
        rows.append(
            f"| {r['active_generations']:,} | {r['workers']} | {r['stored']:,} | "
            f"{_f(r['lag_s']['median'])} | {_f(r['lag_s']['p99'])} | "
            f"{_f(r['status_checks_per_s_peak'], 1)} | {_f(r['status_checks_per_s_mean'], 1)} | "
            f"{_f(r['yardstick']['requests_per_s'], 0)} | {_f(ratio)} | {_f(per_worker)} | "
            f"{' / '.join(_f(c, 1) for c in r['cpu_s'])} | {_f(r['wall_s'], 1)} | "
            f"{' / '.join(_f(m, 1) for m in r['peak_rss_mib'])} | {_f(r['idle_rss_mib'], 1)} | "
            f"{_f(r['simulator_cpu_share'], 3)} |"
        )
    rows.append("")
    rows += [
        f"- `{k}`: {v if not isinstance(v, bool) else ('met' if v else 'not met')}"
        for k, v in data["targets"].items()
    ]
    return "\n".join(rows) + _measured(data)


def download() -> str:
    data = _load("download")
    if data is None:
        return "(no download results)"
    labels = {
        "reelwatch_large": ("reelwatch", data["large_bytes"]),
        "curl_large": ("curl -o /dev/null", data["large_bytes"]),
        "curl_to_disk_large": ("curl -o FILE, then fsync", data["large_bytes"]),
        "reelwatch_small": ("reelwatch", data["small_bytes"]),
        "seed_small": ("seed: in memory + base64 + SQLite row", data["small_bytes"]),
        "curl_small": ("curl -o /dev/null", data["small_bytes"]),
    }
    rows = [
        f"| contender | size | seconds (median of {data['runs']}) | MiB/s | every run (MiB/s) "
        "| peak RSS growth (MiB) | own CPU share | simulator CPU share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in data["contenders"].items():
        label, size = labels.get(name, (name, c["bytes"]))
        every = ", ".join(f"{run['mib_per_s']:.0f}" for run in c["all"])
        growth = c.get("median_peak_growth_mib")
        rows.append(
            f"| {label} | {size // (1024 * 1024)} MiB | {_f(c['median_seconds'])} | "
            f"{_f(c['median_mib_per_s'], 0)} | {every} | {_f(growth, 1)} | "
            f"{_f(c['median_cpu_share'])} | {_f(c['median_simulator_cpu_share'])} |"
        )
    rows.append("")
    for name, target in data["targets"].items():
        detail = ", ".join(f"{k} {v}" for k, v in target.items() if k != "met")
        rows.append(f"- target `{name}`: {'met' if target['met'] else 'not met'} ({detail})")
    return "\n".join(rows) + _measured(data)


def api() -> str:
    data = _load("api")
    if data is None:
        return "(no api results)"
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    queries = {"first": "first page (50)", "deep": "deep page (row ~50,000)"}
    queries["failed"] = "`status=failed`"
    rows = [
        "| database | query | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) "
        "| requests/s (sequential) |",
        "|---|---|---|---|---|---|---|",
    ]
    for db, figures in data["databases"].items():
        for query, label in queries.items():
            q = figures["http"][query]
            rows.append(
                f"| {names.get(db, db)} | {label} | {_f(q['p50'])} | {_f(q['p90'])} | "
                f"{_f(q['p99'])} | {_f(q['max'])} | {_f(q['requests_per_s'], 1)} |"
            )
    rows.append("")
    limit = data["targets"]["p99_ms_max"]
    for db, met in data["targets"]["met"].items():
        verdict = "met" if met else "not met"
        rows.append(f"- target p99 <= {limit:.0f} ms on {names.get(db, db)}: {verdict}")
    return "\n".join(rows) + _measured(data, f", {data['rows']:,} rows")


TARGET_WORDS = {
    "median_le_0_5s": "median lag <= 0.5 s",
    "p99_le_2s": "p99 lag <= 2 s",
    "requests_le_5": "<= 5 status requests / generation",
    "p99_le_3s": "p99 lag <= 3 s",
    "requests_le_8": "<= 8 status requests / generation",
    "below_every_fixed_point": "reelwatch's curve below every fixed interval's point",
    "eta_50_error_le_10pct": "ETA at 50 %: median abs. error <= 10 % of the render",
    "eta_50_better_than_straight_line": "ETA at 50 %: better than the straight line (paired)",
}


def profiles() -> str:
    data = _load("profiles")
    if data is None:
        return "(no profiles results)"
    out: list[str] = []
    for profile, run in data["profiles"].items():
        out.append(f"### {profile}\n")
        out.append(
            "| contender | median lag (s) | p99 (s) | max (s) | status requests / generation "
            "| warm-up: median / p99 (s), requests | CPU ms / status check "
            "| CPU ms / generation |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for name, c in run["contenders"].items():
            after, warm = c["after"], c["warm_up"]
            cpu = c.get("cpu_s")
            per_generation = 1000 * cpu / c["created"] if cpu and c.get("created") else None
            out.append(
                f"| {name} | {_f(after['lag_s']['median'])} | {_f(after['lag_s']['p99'])} "
                f"| {_f(after['lag_s']['max'])} | {_f(after['status_requests_per_generation'])} "
                f"| {_f(warm['lag_s']['median'])} / {_f(warm['lag_s']['p99'])}, "
                f"{_f(warm['status_requests_per_generation'])} "
                f"| {_f(c.get('cpu_ms_per_status_check'))} | {_f(per_generation, 1)} |"
            )
        out.append("")
        out.append(
            "| ETA at | samples | reelwatch: median / p90 abs. error (% of render), has one "
            "| straight line: median / p90, has one | paired: reelwatch / straight line "
            "| true end within the range shown |"
        )
        out.append("|---|---|---|---|---|---|")
        for at, e in run["eta"].items():
            ours, line, paired = e["reelwatch"], e["straight_line"], e["paired"]
            out.append(
                f"| {at} | {e['generations']} "
                f"| {_f(ours['median_abs_error_pct'], 1)} / {_f(ours['p90_abs_error_pct'], 1)}, "
                f"{_f(ours['with_an_eta'])} "
                f"| {_f(line['median_abs_error_pct'], 1)} / {_f(line['p90_abs_error_pct'], 1)}, "
                f"{_f(line['with_an_eta'])} "
                f"| {_f(paired['reelwatch_median_abs_error_pct'], 1)} / "
                f"{_f(paired['straight_line_median_abs_error_pct'], 1)} "
                f"({paired['samples']}) | {_f(e['true_end_within_shown_range'])} |"
            )
        out.append("")
        for key, met in data["targets"][profile].items():
            verdict = "n/a (no paired samples)" if met is None else ("met" if met else "not met")
            out.append(f"- {TARGET_WORDS.get(key, key)}: {verdict}")
        out.append(
            f"\nWall {run['wall_s']} s; simulator CPU {run['simulator_cpu_s']} s; the simple "
            f"pollers' process {run['pollers_cpu_s']} s.\n"
        )
        if "measured" in run:  # a merged record: each profile says which run measured it
            out.append(_measured(run["measured"]).strip() + "\n")
    complete = "" if data.get("complete", True) else " (interrupted: the profiles above only)"
    return "\n".join(out) + _measured(data, complete)


LAG_CPU_MS_PER_CHECK = 6.0  # the `lag` scenario's figure in docs/benchmarks.md (the target)


def profiles_summary() -> str:
    """The rows of docs/benchmarks.md's summary table for the profiles scenario."""
    data = _load("profiles")
    if data is None:
        return "(no profiles results)"
    rows = []
    for profile, run in data["profiles"].items():
        ours = run["contenders"]["reelwatch@0.2"]
        after = ours["after"]
        met = data["targets"][profile]
        values = {
            "median_le_0_5s": f"{_f(after['lag_s']['median'])} s",
            "p99_le_2s": f"{_f(after['lag_s']['p99'])} s",
            "p99_le_3s": f"{_f(after['lag_s']['p99'])} s",
            "requests_le_5": _f(after["status_requests_per_generation"]),
            "requests_le_8": _f(after["status_requests_per_generation"]),
            "below_every_fixed_point": "see the plot",
        }
        eta = run["eta"]["50%"]
        values["eta_50_error_le_10pct"] = f"{_f(eta['reelwatch']['median_abs_error_pct'], 1)} %"
        paired = eta["paired"]
        values["eta_50_better_than_straight_line"] = (
            f"{_f(paired['reelwatch_median_abs_error_pct'], 1)} % vs "
            f"{_f(paired['straight_line_median_abs_error_pct'], 1)} % ({paired['samples']} paired)"
        )
        for key, verdict in met.items():
            word = "n/a" if verdict is None else ("yes" if verdict else "no")
            rows.append(f"| profiles, {profile} | {TARGET_WORDS[key]} | {values[key]} | {word} |")
    per_check = {
        profile: run["contenders"]["reelwatch@0.2"].get("cpu_ms_per_status_check")
        for profile, run in data["profiles"].items()
    }
    worst = max((v for v in per_check.values() if v is not None), default=None)
    shown = "/".join(_f(v) for v in per_check.values())
    word = "-" if worst is None else ("yes" if worst <= LAG_CPU_MS_PER_CHECK else "no")
    rows.append(
        f"| profiles | worker CPU per status check no worse than `lag`'s "
        f"{LAG_CPU_MS_PER_CHECK} ms | {shown} ms ({'/'.join(per_check)}) | {word} |"
    )
    return "\n".join(rows)


def front() -> str:
    """`python -m bench.front`: apps polling their videos through /v1/videos."""
    data = _load("front")
    if data is None:
        return "(no front results)"
    answer = data["poll_answer_s"]
    rows = [
        "| apps | completed | polls | poll answer median / p99 / max (ms) "
        "| provider status requests / generation | server CPU (s) / wall (s) "
        "| server peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
        f"| {data['apps']} | {data['completed']} | {data['polls']} "
        f"| {_f(answer['median'] * 1000, 1)} / {_f(answer['p99'] * 1000, 1)} "
        f"/ {_f(answer['max'] * 1000, 1)} "
        f"| {_f(data['provider_status_requests_per_generation'])} "
        f"| {data['server_cpu_s']} / {data['wall_s']} | {data['server_peak_rss_mib']} |",
    ]
    return "\n".join(rows) + _measured(data)


def main() -> None:
    tables = (
        ("lag", lag),
        ("profiles", profiles),
        ("profiles: summary rows", profiles_summary),
        ("lag per provider", lag_providers),
        ("scale", scale),
        ("scale, several workers", scale_workers),
        ("download", download),
        ("api", api),
        ("front", front),
    )
    for name, table in tables:
        print(f"## {name}\n")
        print(table())
        print()


if __name__ == "__main__":
    main()

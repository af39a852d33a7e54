"""Scenario `chaos`: the reliability scenarios of tests/chaos, in their long mode, as one table.

Runs `pytest tests/chaos -m chaos` in a subprocess with REELWATCH_CHAOS=long (more rounds,
jobs and time per scenario; `--quick` keeps the short mode the test suite runs) and the soak
lasting `--soak-seconds` (600 by default: CI's long run; the documented soak is 7200). Each
scenario appends its figures to a JSON-lines file (REELWATCH_CHAOS_RESULTS, see
tests/chaos/harness.py `report`); pytest's JUnit XML gives each test's outcome. Both land in
bench/results/chaos.json, and a markdown table "# | scenario | figures | outcome" is printed.

Not part of `python -m bench all`: it takes long, needs PostgreSQL, and has its own CI step.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench import common

ROOT = common.ROOT.parent
DEFAULT_SOAK_S = 600
QUICK_SOAK_S = 60


def run(quick: bool, soak_seconds: float | None = None) -> Path:
    soak_s = (
        soak_seconds if soak_seconds is not None else (QUICK_SOAK_S if quick else DEFAULT_SOAK_S)
    )
    with tempfile.TemporaryDirectory(prefix="reelwatch-chaos-") as folder:
        figures_path = Path(folder) / "figures.jsonl"
        junit_path = Path(folder) / "junit.xml"
        env = {
            **os.environ,
            "REELWATCH_CHAOS_RESULTS": str(figures_path),
            "REELWATCH_SOAK_SECONDS": str(soak_s),
        }
        env.pop("REELWATCH_CHAOS", None)
        if not quick:
            env["REELWATCH_CHAOS"] = "long"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/chaos",
            "-m",
            "chaos",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit_path}",
            "-q",
        ]
        started = time.monotonic()
        completed = subprocess.run(command, cwd=ROOT, env=env, check=False)
        duration_s = time.monotonic() - started
        figures = _figures(figures_path)
        tests = _outcomes(junit_path) if junit_path.exists() else []
    rows = _rows(tests, figures)
    counts = {o: sum(1 for t in tests if t["outcome"] == o) for o in _OUTCOMES}
    data: dict[str, Any] = {
        "mode": "short" if quick else "long",
        "soak_seconds": soak_s,
        "pytest": " ".join(["pytest", *command[3:-2]]),
        "pytest_exit_code": completed.returncode,
        "duration_s": round(duration_s, 1),
        "passed": completed.returncode == 0,
        "outcomes": counts,
        "scenarios": rows,
        "tests": tests,
    }
    path = common.write("chaos", data, quick=quick)
    print(table(rows))
    return path


_OUTCOMES = ("passed", "failed", "error", "skipped")


def _figures(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _outcomes(path: Path) -> list[dict[str, Any]]:
    """Each test case of the JUnit XML: its node id, outcome, time and first failure line."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 (our own file)
        module = case.get("classname", "").replace(".", "/")
        node = f"{module}.py::{case.get('name')}"
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (found.get("message") or "").strip().splitlines()[:1]
                message = message[0][:300] if message else None
                break
        cases.append(
            {
                "test": node,
                "outcome": outcome,
                "seconds": round(float(case.get("time", 0.0)), 1),
                "message": message,
            }
        )
    return cases


def _number(test: str) -> int | None:
    found = re.search(r"::test_(\d+)", test)
    return int(found.group(1)) if found else None


def _rows(tests: list[dict[str, Any]], figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario report; a test that failed before reporting gets a row of its own.

    The harness's own tests (no scenario number) are left out of the table.
    """
    outcome = {t["test"]: t for t in tests}
    rows = []
    reported = set()
    for record in figures:
        test = record.get("test", "")
        reported.add(test)
        result = outcome.get(test, {"outcome": "unknown", "message": None})
        rows.append(
            {
                "n": record["n"],
                "scenario": record["name"],
                "figures": record["figures"],
                "outcome": result["outcome"],
                "test": test,
                "message": result["message"],
            }
        )
    for t in tests:
        n = _number(t["test"])
        if n is None or t["test"] in reported:
            continue
        name = t["test"].split("::", 1)[1].removeprefix(f"test_{n}_").replace("_", " ")
        rows.append(
            {
                "n": n,
                "scenario": name,
                "figures": {},
                "outcome": t["outcome"],
                "test": t["test"],
                "message": t["message"],
            }
        )
    rows.sort(key=lambda r: (r["n"], r["test"]))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text.replace("|", "\\|")


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the scenarios: # | scenario | figures | outcome."""
    lines = ["| # | scenario | figures | outcome |", "|---|---|---|---|"]
    for row in rows:
        shown = ", ".join(f"{k}={_cell(v)}" for k, v in row["figures"].items())
        result = row["outcome"]
        if row["message"] and result != "passed":
            result += f": {_cell(row['message'])}"
        lines.append(f"| {row['n']} | {_cell(row['scenario'])} | {shown} | {result} |")
    return "\n".join(lines)

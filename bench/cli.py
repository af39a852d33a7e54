"""`python -m bench cli`: how long the `reelwatch` command takes to answer; an idle worker's RSS.

Each command is run N times as a fresh process (the installed `reelwatch` script, as a user runs
it) and timed wall-clock from start to exit: `--help`; the read commands `status ID`, `list`
and `history ID` on a database holding the generations submitted by this run; `submit` against
the simulator (in its own process, as in the lag scenario), which stores, migrates if needed and
sends the create. One run of each command before the timed ones warms the page cache and
creates the database (that first `submit`), so the figures are warm starts.

The idle worker: `reelwatch worker` on a fresh database with one provider configured (each of
the three in turn, pointed at the simulator), its RSS read after it has idled `IDLE_S` seconds.
Beside it, the RSS of a fresh interpreter after importing each piece alone says where a
worker's memory goes.

Targets (the start-up issue): `--help` and each read command answer with p90 <= 0.3 s; an idle
worker stays <= 60 MiB RSS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common, lag

TARGET_ANSWER_S = 0.3
TARGET_IDLE_RSS_MIB = 60.0
READS = ("help", "status", "list", "history")
# What a worker is made of, imported alone in a fresh interpreter (RSS after the import).
PIECES = (
    ("python", ""),
    ("cli (typer, rich)", "import reelwatch.cli"),
    ("settings (pydantic)", "import reelwatch.settings"),
    ("sqlalchemy + aiosqlite", "import sqlalchemy.ext.asyncio, aiosqlite"),
    ("structlog", "import structlog"),
    ("service (store, engine)", "import reelwatch.service"),
    ("worker without provider", "import reelwatch.assembly, uvloop"),
    ("alembic", "import alembic.command"),
    ("openai adapter", "import reelwatch.providers.openai"),
    ("replicate adapter", "import reelwatch.providers.replicate"),
    ("fal adapter", "import reelwatch.providers.fal"),
)


def _command() -> list[str]:
    """The `reelwatch` console script beside this interpreter (what users run), else -m."""
    script = Path(sys.executable).with_name("reelwatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "reelwatch"]


def _env(data: Path, origin: str, provider: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in lag._PROVIDER_VARIABLES}
    return {
        **inherited,
        "REELWATCH_DATA_DIR": str(data),
        "REELWATCH_PROVIDER": provider,
        "REELWATCH_PROVIDER_CONFIG": json.dumps(
            {provider: lag.provider_config(provider, origin, webhooks=False)}
        ),
        "REELWATCH_LOG_FORMAT": "json",
    }


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """One fresh process: its wall time in seconds and its stdout; a failure stops the run."""
    started = time.perf_counter()
    done = subprocess.run(
        [*_command(), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reelwatch {' '.join(args)} failed: {done.stderr.strip()}")
    return wall, done.stdout


def _timings(env: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    _, out = _run(["submit", "bench cli [sim:queue=60,render=60]", "--json"], env)
    generation_id = json.loads(out)["id"]
    commands = {
        "help": ["--help"],
        "status": ["status", generation_id],
        "list": ["list"],
        "history": ["history", generation_id],
        "submit": ["submit", "bench cli [sim:queue=60,render=60]"],
    }
    figures: dict[str, dict[str, Any]] = {}
    for name, args in commands.items():
        _run(args, env)  # warm-up, not counted
        walls = [_run(args, env)[0] for _ in range(runs)]
        figures[name] = {
            "args": args if name != "submit" else ["submit", "PROMPT"],
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in _stats(walls).items()},
        }
        print(f"cli: {name}: {figures[name]}", file=sys.stderr)
    return figures


def _stats(walls: list[float]) -> dict[str, float | int | None]:
    return {
        "runs": len(walls),
        "median_s": common.percentile(walls, 50),
        "p90_s": common.percentile(walls, 90),
        "max_s": max(walls),
    }


def _idle_worker(origin: str, provider: str, idle_s: float) -> dict[str, Any]:
    """`reelwatch worker` on a fresh database with `provider` configured: RSS after `idle_s`."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-worker-") as folder:
        env = _env(Path(folder), origin, provider)
        with subprocess.Popen(
            [*_command(), "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:
            try:
                with common.RssSampler(proc.pid, every_s=0.5) as rss:
                    time.sleep(idle_s)
                    after = common.rss_mib(proc.pid)
                if proc.poll() is not None:
                    raise RuntimeError(f"the {provider} worker exited early ({proc.returncode})")
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
    return {"rss_mib": round(after, 1), "peak_rss_mib": round(max(rss.peak, after), 1)}


def _import_rss() -> dict[str, float]:
    """RSS of a fresh interpreter after importing each piece alone (MiB)."""
    probe = (
        "{code}\n"
        "import pathlib\n"
        "line = [l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmRSS:')][0]\n"
        "print(int(line.split()[1]) / 1024)"
    )
    found = {}
    for name, code in PIECES:
        out = subprocess.run(
            [sys.executable, "-c", probe.format(code=code)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found[name] = round(float(out), 1)
    return found


def run(quick: bool) -> Path:
    runs = 3 if quick else 20
    idle_s = 3.0 if quick else 10.0
    started = time.perf_counter()
    with lag.simulator() as (base_url, _), tempfile.TemporaryDirectory(prefix="bench-cli-") as d:
        origin = base_url.removesuffix("/v1")
        commands = _timings(_env(Path(d), origin, "openai"), runs)
        workers = {p: _idle_worker(origin, p, idle_s) for p in lag.PROVIDERS}
    imports = _import_rss()
    met = {
        "help_and_reads_p90_le_0_3_s": all(
            commands[name]["p90_s"] <= TARGET_ANSWER_S for name in READS
        ),
        "idle_worker_le_60_mib": {
            p: figures["rss_mib"] <= TARGET_IDLE_RSS_MIB for p, figures in workers.items()
        },
    }
    data = {
        "runs_per_command": runs,
        "idle_seconds": idle_s,
        "method": (
            "each command a fresh process of the installed `reelwatch` script, timed wall-clock "
            "from start to exit (subprocess.run), after one untimed warm-up run; reads on a "
            "SQLite database holding this run's submits; submit against the simulator in its "
            "own process; the idle worker on a fresh database with one provider configured, "
            "RSS from /proc after idle_seconds; import_rss_mib: a fresh interpreter's RSS "
            "after importing each piece alone"
        ),
        "commands": commands,
        "idle_worker": workers,
        "import_rss_mib": imports,
        "targets": {
            "answer_p90_s_max": TARGET_ANSWER_S,
            "idle_worker_rss_mib_max": TARGET_IDLE_RSS_MIB,
            "met": met,
        },
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    return common.write("cli", data, quick=quick)

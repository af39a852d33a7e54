"""The deployment page and the systemd units cannot drift from the code.

`systemd-analyze verify` checks each unit (skipped without it locally; in CI, `CI` set, a
failure: `scripts/ensure-systemd-analyze` installs it); every variable, CLI flag, route and
figure the page and the units name is checked against what the code reads and does.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import AliasChoices

from reelwatch import cli, engine, providers, serving, settings, store
from reelwatch.web import cron, events, ops

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "deploying.md"
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENV_EXAMPLE = DEPLOY / "reelwatch.env.example"
# Where the units (and the page) say reelwatch is installed; the tests point it elsewhere.
INSTALLED = "/opt/reelwatch/venv/bin/reelwatch"
INSTANCE = "9101"  # the template's instance name in these tests (a metrics port)
# Variables read by libraries rather than by reelwatch's own settings.
LIBRARY_VARIABLES = {
    "AWS_REGION",  # obstore (the S3 storage): storage/s3.py
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "FORWARDED_ALLOW_IPS",  # uvicorn (checked below)
}


def deploy_texts() -> dict[str, str]:
    """The page and every file under deploy/, by name."""
    files = [PAGE, *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}


def known_variables() -> set[str]:
    """Every environment variable reelwatch reads: its settings, each provider's own settings
    (the `Config` of `<name>_catalogue`) and the CLI's `envvar=` options."""
    models = [settings.Settings]
    for name in providers.NAMES:
        models.append(importlib.import_module(f"reelwatch.providers.{name}_catalogue").Config)
    names = {
        str(choice)
        for model in models
        for field in model.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for choice in field.validation_alias.choices
    }
    for command in cli_commands().values():
        for param in command.params:
            if isinstance(param.envvar, str):
                names.add(param.envvar)
    return names


def cli_commands() -> dict[str, Any]:
    """The CLI's commands by name, as click sees them (typer carries its own click)."""
    commands: dict[str, Any] = typer.main.get_command(cli.app).commands  # type: ignore[attr-defined]
    return commands


def unit_exec_starts(text: str) -> list[str]:
    return [line.partition("=")[2] for line in text.splitlines() if line.startswith("ExecStart=")]


# --- systemd-analyze verify ----------------------------------------------------------------


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (scripts/ensure-systemd-analyze)")
        pytest.skip("no systemd-analyze (apt-get install systemd)")
    return found


def test_the_units_are_there() -> None:
    names = {unit.name for unit in UNITS}
    assert {"reelwatch-worker.service", "reelwatch-web.service"} <= names
    assert "reelwatch-worker@.service" in names


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` passes without a word about the unit. It checks that the
    ExecStart binary exists, so the installed path is pointed at a stand-in; a template is
    verified as the instance systemd would start."""
    analyze = systemd_analyze()
    text = unit.read_text(encoding="utf-8")
    assert all(cmd.startswith(f"{INSTALLED} ") for cmd in unit_exec_starts(text)), text
    stand_in = tmp_path / "bin" / "reelwatch"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    name = unit.name.replace("@.", f"@{INSTANCE}.")
    copy = tmp_path / name
    copy.write_text(text.replace(INSTALLED, str(stand_in)), encoding="utf-8")

    done = subprocess.run(
        [analyze, "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"},
        check=False,
    )

    about_unit = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if name in line or str(tmp_path) in line
    ]
    assert done.returncode == 0, done.stderr
    assert about_unit == [], "\n".join(about_unit)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_settings(unit: Path) -> None:
    """What the page promises of every unit: a dedicated user, the settings file, restarts on
    failure, the hardening, and a stop timeout that fits the worker's drain."""
    text = unit.read_text(encoding="utf-8")
    lines = set(text.splitlines())
    for line in (
        "User=reelwatch",
        "EnvironmentFile=/etc/reelwatch/reelwatch.env",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=reelwatch",
        "Environment=REELWATCH_DATA_DIR=/var/lib/reelwatch",
    ):
        assert line in lines, f"{unit.name}: no {line}"
    stop = re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M)
    assert stop is not None, unit.name
    grace = inspect.signature(engine.Engine.run).parameters["grace_s"].default
    graceful = serving.uvicorn_config(_app).timeout_graceful_shutdown or 0
    # The in-flight steps' grace, uvicorn's (serve), and room to hand the leases back.
    assert grace + graceful + 10 <= int(stop.group(1))


async def _app(scope: object, receive: object, send: object) -> None:
    """An ASGI app that is never called (uvicorn's Config only needs one)."""


# --- the CLI in the units and the page -----------------------------------------------------


def reelwatch_invocations() -> list[tuple[str, str, list[str]]]:
    """Every `reelwatch worker ...` / `reelwatch serve ...` in the page and deploy/ (ExecStart
    lines, examples, prose): (file, subcommand, its options as written)."""
    commands = cli_commands()
    found = []
    pattern = re.compile(r"(?:^|[\s/`])reelwatch (worker|serve)\b([^`#\n]*)")
    for name, text in deploy_texts().items():
        for match in pattern.finditer(text):
            command = commands[match.group(1)]
            tokens = match.group(2).replace("%i", INSTANCE).split()
            options: list[str] = []
            # Options as written, up to the first word that is neither an option nor its value.
            while tokens and tokens[0].startswith("-"):
                flag = tokens.pop(0)
                options.append(flag)
                param = next((p for p in command.params if flag in p.opts), None)
                needs_value = param is not None and param.param_type_name == "option"
                needs_value = needs_value and not getattr(param, "is_flag", False)
                if needs_value and tokens:
                    options.append(tokens.pop(0))
            found.append((name, match.group(1), options))
    return found


def test_the_page_and_units_use_real_cli_options() -> None:
    """Each invocation parses as the CLI would parse it (names, values, ranges)."""
    commands = cli_commands()
    invocations = reelwatch_invocations()
    used = {flag for _, _, options in invocations for flag in options if flag.startswith("-")}
    assert {"--no-worker", "--host", "--port", "--metrics-port", "--once"} <= used
    for name, subcommand, options in invocations:
        try:
            commands[subcommand].make_context(subcommand, list(options))
        except Exception as exc:  # typer's own copy of click's errors: a usage error
            pytest.fail(f"{name}: reelwatch {subcommand} {' '.join(options)}: {exc}")


@pytest.mark.parametrize("subcommand", ["worker", "serve"])
def test_the_installed_command_takes_the_flags(subcommand: str) -> None:
    """The console script users run lists every flag the units pass."""
    flags = {
        flag
        for unit in UNITS
        for cmd in unit_exec_starts(unit.read_text(encoding="utf-8"))
        for flag in shlex.split(cmd)[2:]
        if shlex.split(cmd)[1] == subcommand and flag.startswith("--")
    }
    script = Path(sys.executable).with_name("reelwatch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reelwatch"]
    done = subprocess.run(
        [*command, subcommand, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for flag in flags:
        assert flag in done.stdout, f"reelwatch {subcommand} --help does not list {flag}"


# --- variables ---------------------------------------------------------------------------


def test_every_reelwatch_variable_named_exists() -> None:
    known = known_variables()
    unknown = {
        f"{name}: {variable}"
        for name, text in deploy_texts().items()
        for variable in re.findall(r"\bREELWATCH_[A-Z0-9_]*[A-Z0-9]\b", text)
        if variable not in known
    }
    assert not unknown, sorted(unknown)


def test_every_variable_of_the_example_file_is_read() -> None:
    """Each NAME= of the example (set or commented out) is read by reelwatch or the library
    named in LIBRARY_VARIABLES, and the file is in systemd's syntax (no `export`)."""
    known = known_variables() | LIBRARY_VARIABLES
    assigned = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M)
    assert "REELWATCH_DATABASE_URL" in assigned
    assert sorted(set(assigned) - known) == []
    assert "export " not in ENV_EXAMPLE.read_text(encoding="utf-8")


def test_uvicorn_reads_forwarded_allow_ips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page tells API servers behind a proxy elsewhere to set FORWARDED_ALLOW_IPS."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.5")
    config = serving.uvicorn_config(_app)
    assert config.proxy_headers
    assert config.forwarded_allow_ips == "10.0.0.5"


# --- routes and figures --------------------------------------------------------------------


def test_the_routes_named_exist() -> None:
    routes = {
        getattr(route, "path", None)
        for router in (cron.router, events.router, ops.router)
        for route in router.routes
    }
    named = set(
        re.findall(
            r"(/api/[a-z/-]*[a-z]|/healthz|/readyz|/metrics)\b", PAGE.read_text(encoding="utf-8")
        )
    )
    assert {"/api/events", "/api/cron/poll-sora-status", "/healthz", "/readyz"} <= named
    assert named <= routes


def test_the_connection_figures_are_the_code_s() -> None:
    """The page's table: the store's pool 10 + 10, the group-commit writer 1 (+1), one LISTEN;
    23 in all. (Building an engine connects to nothing.)"""
    url = "postgresql+psycopg://reelwatch@db.invalid/reelwatch"
    async_engine = store._create_engine(url)
    sync_engine = store._create_sync_engine(url)
    try:
        pooled = async_engine.sync_engine.pool
        writer = sync_engine.pool
        sizes = (pooled.size(), pooled._max_overflow, writer.size(), writer._max_overflow)
    finally:
        async_engine.sync_engine.dispose()
        sync_engine.dispose()
    assert sizes == (10, 10, 1, 1)
    page = PAGE.read_text(encoding="utf-8")
    assert "`pool_size=10, max_overflow=10`" in page
    assert f"**{sizes[0] + sizes[1] + sizes[2] + sizes[3] + 1}**" in page  # + LISTEN

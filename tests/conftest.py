"""Shared fixtures: real SQLite and PostgreSQL databases, the simulator over real HTTP, a clock."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import psycopg
import pytest
from sqlalchemy.engine import make_url

from reelwatch import assembly, clock, service, settings, simulator
from reelwatch.models import Generation
from reelwatch.settings import Settings

# Properties are about values, not speed: on a busy 2-core machine one example of a pure
# function can pass Hypothesis's default 200 ms deadline and fail the run as "flaky".
hypothesis.settings.register_profile("reelwatch", deadline=None)
hypothesis.settings.load_profile("reelwatch")

PG_ADMIN_URL = os.environ.get(
    "REELWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# An S3-compatible server .ci/run started (moto's server mode); without one, the first test
# that needs it starts its own.
S3_ENDPOINT = os.environ.get("REELWATCH_TEST_S3_ENDPOINT")
S3_BUCKET = "reelwatch-test"
SCRUBBED_PREFIXES = ("REELWATCH_", "OPENAI_", "REPLICATE_", "FAL_", "AWS_", "GOOGLE_", "GEMINI_")
SCRUBBED_NAMES = ("CRON_SECRET",)


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test reads the developer's environment or a stray `.env`."""
    for name in list(os.environ):
        scrubbed = name.startswith(SCRUBBED_PREFIXES) or name in SCRUBBED_NAMES
        if scrubbed and name != "REELWATCH_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    return None


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database named `prefix_<random>`, dropped WITH (FORCE) afterwards.

    Without a server the test is skipped locally; in CI (`CI` set) it fails instead.
    """
    problem = _pg_reachable()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {problem}")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (CI never skips these tests)."""
    with fresh_pg_database("reelwatch_test") as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode, over HTTP) with the test bucket."""
    if S3_ENDPOINT:
        _make_bucket(S3_ENDPOINT)
        yield S3_ENDPOINT
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _make_bucket(endpoint)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def _make_bucket(endpoint: str) -> None:
    httpx.put(f"{endpoint}/{S3_BUCKET}", timeout=5).raise_for_status()


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://bucket/prefix` of a fresh prefix, the AWS variables pointing at the server."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return f"s3://{S3_BUCKET}/t-{secrets.token_hex(4)}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a SQLite file and on a real PostgreSQL (tables emptied per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reelwatch.db'}"
        return
    url: str = request.getfixturevalue("pg_server")
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        present = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        ).fetchall()
        if present:
            conn.execute("TRUNCATE " + ", ".join(row[0] for row in present))


@pytest.fixture
def sim() -> Iterator[simulator.RunningSimulator]:
    """The OpenAI-compatible simulator on a free loopback port."""
    config = simulator.SimConfig(api_key="sk-test", queue_s=(2.0, 2.0), render_s=(10.0, 10.0))
    with simulator.running(config) as running:
        yield running


@dataclass
class World:
    """A test's reelwatch: settings, a hand-driven clock kept in step with the simulator's."""

    settings: Settings
    clock: clock.FakeClock
    sim: simulator.RunningSimulator

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sim.sim.clock.advance(seconds)

    def advance_to(self, when: datetime | None) -> None:
        """Move both clocks forward to `when` (if it is in the future)."""
        assert when is not None
        gap = (when - self.clock.now()).total_seconds()
        if gap > 0:
            self.advance(gap)

    def with_settings(self, **changes: Any) -> World:
        return World(with_changes(self.settings, **changes), self.clock, self.sim)


OPENAI_SHORTHANDS = {
    "openai_api_key": "api_key",
    "openai_base_url": "base_url",
    "openai_webhook_secret": "webhook_secret",
}


def image_file(path: Path, size: tuple[int, int] = (720, 1280), kind: str = "PNG") -> Path:
    """A real image (Pillow) of the given size and format; the default is sora-2's frame."""
    from PIL import Image

    Image.new("RGB", size, (40, 90, 160)).save(path, format=kind)
    return path


def provider_changes(settings_: Settings | None, changes: dict[str, Any]) -> dict[str, Any]:
    """`openai_api_key=...` and the like (the tests' shorthand) as `provider_config` entries."""
    picked = {OPENAI_SHORTHANDS[k]: changes.pop(k) for k in list(changes) if k in OPENAI_SHORTHANDS}
    if not picked:
        return changes
    # The settings' own entries, then the shorthands, then an explicit `provider_config`.
    config = {k: dict(v) for k, v in (settings_.provider_config if settings_ else {}).items()}
    config.setdefault("openai", {}).update(picked)
    for name, given in changes.get("provider_config", {}).items():
        config.setdefault(name, {}).update(given)
    return {**changes, "provider_config": config}


def with_changes(settings_: Settings, **changes: Any) -> Settings:
    return settings_.model_copy(update=provider_changes(settings_, changes))


def make_settings(tmp_path: Path, db: str, base_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url_raw": db,
        "openai_api_key": "sk-test",
        "openai_base_url": base_url,
        "poll_min_seconds": 1.0,
        "poll_max_seconds": 30.0,
        "backoff_base_seconds": 1.0,
        "request_timeout_seconds": 5.0,
    }
    values.update(extra)
    return settings.load(**provider_changes(None, values))


@pytest.fixture
def world(tmp_path: Path, db_url: str, sim: simulator.RunningSimulator) -> World:
    start = datetime.fromtimestamp(sim.sim.clock.now(), UTC)
    return World(make_settings(tmp_path, db_url, sim.base_url), clock.FakeClock(start), sim)


@pytest.fixture
async def svc(world: World) -> AsyncIterator[service.Service]:
    async with assembly.open_service(world.settings, clock=world.clock, need_provider=True) as s:
        yield s


async def step(svc: service.Service, world: World, generation_id: str) -> Generation:
    """Advance the clocks to the generation's next poll, run one worker cycle, return it."""
    g = await svc.get(generation_id)
    world.advance_to(g.next_poll_at)
    assert svc.engine is not None
    await svc.engine.cycle()
    return await svc.get(generation_id)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every figure the chaos scenarios reported (tests/chaos), together at the end of the run."""
    lines = [
        str(value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for key, value in getattr(report, "user_properties", ())
        if key == "chaos_figure"
    ]
    if lines:
        terminalreporter.section("chaos figures")
        for line in lines:
            terminalreporter.write_line(line)

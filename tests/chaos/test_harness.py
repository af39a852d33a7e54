"""The chaos harness itself: the fault proxy forwards, cuts, goes down and up; processes report."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import conftest
from tests.chaos import harness

pytestmark = pytest.mark.chaos

BODY = bytes(range(256)) * 400  # 100 KiB


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def origin() -> Iterator[int]:
    """A plain HTTP server (standard library) answering every GET with 100 KiB."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(origin: int) -> Iterator[harness.FaultProxy]:
    """A fault proxy in front of the origin."""
    with harness.FaultProxy("127.0.0.1", origin) as running:
        yield running


def test_proxy_forwards_both_ways_and_records_connections(proxy: harness.FaultProxy) -> None:
    """Bytes pass unchanged through the proxy; each upstream connect is recorded."""
    answer = httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=5)
    assert answer.content == BODY
    assert len(proxy.connections) == 1


def test_proxy_cuts_each_new_connection_after_n_bytes(proxy: harness.FaultProxy) -> None:
    """cut_after(n) delivers n bytes downstream, then the connection breaks; None lifts it."""
    proxy.cut_after(2000)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=5)
    proxy.cut_after(None)
    assert httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=5).content == BODY


def test_proxy_latency_delays_each_direction(proxy: harness.FaultProxy) -> None:
    """set_latency(s) delays the request and each chunk of the answer by s."""
    proxy.set_latency(0.1)
    started = time.monotonic()
    httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=5)
    assert time.monotonic() - started >= 0.2


def test_proxy_rate_paces_downstream(proxy: harness.FaultProxy) -> None:
    """set_rate(b) makes 100 KiB at 200 KiB/s take about half a second."""
    proxy.set_rate(200 * 1024)
    started = time.monotonic()
    assert httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=5).content == BODY
    assert 0.4 <= time.monotonic() - started < 3


def test_proxy_hang_accepts_and_never_answers(proxy: harness.FaultProxy) -> None:
    """hang(True): the connection opens but nothing comes back (the client times out)."""
    proxy.hang(True)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=0.5)
    proxy.hang(False)
    assert httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=5).content == BODY


def test_proxy_down_cuts_open_postgres_sessions_and_refuses_until_up() -> None:
    """down() breaks an open PostgreSQL session and refuses new ones; up() lets them in."""
    if (problem := conftest._pg_reachable()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")  # locally only
    with harness.FaultProxy("127.0.0.1", 5432) as proxy:
        url = harness.pg_via(proxy, harness.PG_ADMIN_URL)
        assert harness.sql(url, "SELECT 1") == [(1,)]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT 1")
            proxy.down()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            harness.sql(url, "SELECT 1")
        assert len(proxy.refused) >= 1
        proxy.up()
        assert harness.sql(url, "SELECT 2") == [(2,)]


def test_simulator_process_answers_and_dies_by_kill9(sim: harness.Sim) -> None:
    """The simulator runs as a process with its controls; kill9 ends it at once."""
    sim.inject("retrieve", "server_error", count=2)
    assert sim.stats()["faults"][0]["remaining"] == 2
    sim.reset_faults()
    assert sim.stats()["faults"] == []
    assert sim.proc.alive() and sim.proc.rss_mb() > 10 and sim.proc.open_fds() > 3
    sim.proc.kill9()
    assert not sim.proc.alive() and sim.proc.returncode() == -9


def test_wait_until_returns_the_wait_or_fails_naming_what() -> None:
    """wait_until returns how long it waited, and names what it waited for on timeout."""
    deadline = time.monotonic() + 0.2
    waited = harness.wait_until(lambda: time.monotonic() >= deadline, timeout=2)
    assert 0.15 <= waited < 1.5
    with pytest.raises(AssertionError, match="the impossible"):
        harness.wait_until(lambda: False, timeout=0.1, what="the impossible")


def test_report_appends_json_to_the_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """report() prints one CHAOS line and appends a JSON record when a results file is set."""
    results = tmp_path / "results.jsonl"
    monkeypatch.setattr(harness, "RESULTS_FILE", str(results))
    harness.report(99, "self test", duplicates=0, p99_ms=1.23456)
    assert "CHAOS #99 self test: duplicates=0, p99_ms=1.23" in capsys.readouterr().out
    record = json.loads(results.read_text())
    assert record == {
        "n": 99,
        "name": "self test",
        "figures": {"duplicates": 0, "p99_ms": 1.23456},
        "mode": harness.MODE,
        "test": "tests/chaos/test_harness.py::test_report_appends_json_to_the_results_file",
    }
    harness.REPORTS.remove("CHAOS #99 self test: duplicates=0, p99_ms=1.23")

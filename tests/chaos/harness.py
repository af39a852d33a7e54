"""The chaos harness: real processes, a real PostgreSQL, a TCP fault proxy, one report line each.

Everything runs on 127.0.0.1: `reelwatch simulate`, `reelwatch worker` and `reelwatch serve` are
started as `[sys.executable, "-m", "reelwatch", ...]` with an explicit environment (never the
developer's REELWATCH_*/OPENAI_* variables). Scenarios in tests/chaos/ are written against these
names and signatures: add to them freely, change them only with every scenario.

Two things here are read from the environment once, at import: `REELWATCH_CHAOS` (the mode)
and `REELWATCH_CHAOS_RESULTS` (where `report` appends). They must be read before the test
session starts, because tests/conftest.py scrubs every REELWATCH_* variable around each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import structlog
from sqlalchemy.engine import make_url

from tests import conftest

if TYPE_CHECKING:
    from reelwatch.settings import Settings

LONG: bool = os.environ.get("REELWATCH_CHAOS") == "long"
MODE = "long" if LONG else "short"
RESULTS_FILE: str | None = os.environ.get("REELWATCH_CHAOS_RESULTS") or None
PG_ADMIN_URL = os.environ.get(
    "REELWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Every report of this session, for the terminal summary (tests/chaos/conftest.py).
REPORTS: list[str] = []


def scale(short: int, long: int) -> int:
    """Pick a size by mode: `short` normally, `long` under REELWATCH_CHAOS=long."""
    return long if LONG else short


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> float:
    """Poll `predicate` until it is true; return the seconds waited, or fail after `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what or predicate!r} ({timeout} s)")
        time.sleep(interval)


def report(number: int, name: str, **figures: object) -> None:
    """Print "CHAOS #n name: k=v, ..." and append it as JSON to REELWATCH_CHAOS_RESULTS.

    The JSON record is {"n", "name", "figures", "mode", "test"} (test: the pytest node id).
    """
    shown = ", ".join(f"{k}={_show(v)}" for k, v in figures.items())
    line = f"CHAOS #{number} {name}: {shown}"
    REPORTS.append(line)
    print(line, flush=True)
    if RESULTS_FILE:
        # pytest names the running test in PYTEST_CURRENT_TEST ("path::name (call)").
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        record = {"n": number, "name": name, "figures": figures, "mode": MODE, "test": test}
        with open(RESULTS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


# --- PostgreSQL -------------------------------------------------------------------------------


def pg_database() -> AbstractContextManager[str]:
    """A fresh PostgreSQL database; dropped WITH (FORCE) afterwards. Fails in CI if PG is down."""
    return conftest.fresh_pg_database("reelwatch_chaos")


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement (autocommit) with psycopg; the rows it returned, if any."""
    with psycopg.connect(_plain(url), autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(query, params or None)
        return list(cursor.fetchall()) if cursor.description is not None else []


def _plain(url: str) -> str:
    """A libpq URL (no SQLAlchemy driver suffix such as `+psycopg`)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def pg_via(proxy: FaultProxy, url: str) -> str:
    """The same database URL, but connecting through the proxy's port."""
    parsed = make_url(url)
    return parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def terminate_backends(url: str, *, application_name: str | None = None) -> int:
    """`pg_terminate_backend` every session on the URL's database but our own; how many."""
    database = make_url(url).database
    query = (
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    params: tuple[Any, ...] = (database,)
    if application_name is not None:
        query += " AND application_name = %s"
        params = (database, application_name)
    rows = sql(PG_ADMIN_URL, query, *params)
    return int(rows[0][0]) if rows else 0


def backend_count(url: str) -> int:
    """Sessions open on the URL's database (ours excluded)."""
    rows = sql(
        PG_ADMIN_URL,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        make_url(url).database,
    )
    return int(rows[0][0])


# --- processes --------------------------------------------------------------------------------

# Processes started and not yet reaped, so a failing test leaves no worker behind (conftest
# kills them). A strong set: a process the test let go of must still be stopped and waited
# for, or its Popen is collected while running (a ResourceWarning, an error under pytest).
_LIVE: set[Proc] = set()
# Where processes' output files go (conftest points it at pytest's temp dir, which pytest
# prunes); None: the system temp dir.
_OUTPUT_ROOT: list[Path] = []


def keep_output_under(root: Path) -> None:
    """Write every later process's stdout/stderr files under `root`."""
    _OUTPUT_ROOT[:] = [root]


# Children get SIGKILL when the test process dies (util-linux `setpriv --pdeathsig`, which
# execs the command in place, so the pid stays the child's): a killed or timed-out pytest must
# not leave workers behind that retry a dropped database forever. Where setpriv is missing the
# conftest teardown is the only cleanup.
_SETPRIV = shutil.which("setpriv")


class Proc:
    """One child process; its stdout and stderr go to files in a temp dir.

    It is killed if the thread that started it ends (Linux's parent-death signal follows the
    thread): start processes from the test's own thread.
    """

    def __init__(self, argv: list[str], env: dict[str, str], *, name: str = "proc") -> None:
        self.argv = argv
        self.name = name
        root = _OUTPUT_ROOT[0] if _OUTPUT_ROOT else None
        self._dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        self._out_path = self._dir / "stdout"
        self._err_path = self._dir / "stderr"
        command = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else argv
        with open(self._out_path, "wb") as out, open(self._err_path, "wb") as err:
            self._popen = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self._dir
            )
        self.pid = self._popen.pid
        self.started_at = time.monotonic()
        _LIVE.add(self)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *_: object) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} rc={self.returncode()}>"

    def _signal(self, sig: signal.Signals) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL, and reap it (so `alive()` is False at once)."""
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=10)

    def sigstop(self) -> None:
        self._signal(signal.SIGSTOP)

    def sigcont(self) -> None:
        self._signal(signal.SIGCONT)

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM (and SIGCONT, in case it is stopped), wait; SIGKILL after `timeout`."""
        if self._popen.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return int(self._popen.wait())

    def alive(self) -> bool:
        return self._popen.poll() is None

    def returncode(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float) -> int:
        """Wait for it to exit on its own; its exit code (TimeoutExpired after `timeout`)."""
        return int(self._popen.wait(timeout=timeout))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def output(self) -> str:
        """Everything it printed so far: stdout, then stderr."""
        out = self._out_path.read_text(errors="replace")
        err = self._err_path.read_text(errors="replace")
        return out + err

    def stdout(self) -> str:
        return self._out_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        """The last lines of its output, for assertion messages."""
        return "\n".join(self.output().splitlines()[-lines:])

    def log_lines(self) -> list[dict[str, Any]]:
        """Its JSON log lines (REELWATCH_LOG_FORMAT=json), parsed; other lines skipped."""
        records = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records


def kill_leftovers() -> None:
    """Stop every process this harness started that is still running (end of each test)."""
    for proc in list(_LIVE):
        if proc.alive():
            proc.terminate(timeout=5)
    _LIVE.clear()


def _reelwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "reelwatch", *args]


def env_for(*, db_url: str, sim: Sim | None, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a reelwatch process: nothing of the developer's but PATH/HOME/LANG."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        REELWATCH_DATABASE_URL=db_url,
        REELWATCH_DATA_DIR=str(data_dir),
        REELWATCH_LOG_FORMAT="json",
        REELWATCH_POLL_MIN_SECONDS="0.2",
        REELWATCH_POLL_MAX_SECONDS="2",
        REELWATCH_BACKOFF_BASE_SECONDS="0.2",
        REELWATCH_BACKOFF_MAX_SECONDS="2",
        REELWATCH_REQUEST_TIMEOUT_SECONDS="5",
        REELWATCH_LEASE_SECONDS="10",
        PYTHONUNBUFFERED="1",
    )
    if sim is not None:
        env.update(OPENAI_API_KEY=sim.api_key, OPENAI_BASE_URL=sim.base_url)
        # Some workers reach the simulator through a fault proxy (another URL): all of them
        # serve one endpoint.
        env.update(REELWATCH_OPENAI_ENDPOINT=sim.base_url)
    env.update(extra)
    return env


def start_worker(env: dict[str, str], *args: str) -> Proc:
    """`reelwatch worker [args]` (not waited for: it logs `worker started` when it runs)."""
    return Proc(_reelwatch("worker", *args), env, name="worker")


def wait_worker_started(proc: Proc, *, timeout: float = 20) -> float:
    """Wait until a worker logged `worker started`; seconds waited."""

    def started() -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc!r} exited before starting:\n{proc.tail()}")
        return "worker_start" in proc.output()

    return wait_until(started, timeout=timeout, what=f"{proc!r} to start")


def start_serve(env: dict[str, str], *args: str) -> tuple[Proc, str]:
    """`reelwatch serve --port P [args]`, waited for until /healthz answers; (proc, base url)."""
    port = free_port()
    proc = Proc(
        _reelwatch("serve", "--host", "127.0.0.1", "--port", str(port), *args), env, name="serve"
    )
    base = f"http://127.0.0.1:{port}"
    _wait_http(proc, f"{base}/healthz")
    return proc, base


def _wait_http(proc: Proc, url: str, *, timeout: float = 30) -> None:
    def answers() -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc!r} exited while starting:\n{proc.tail()}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=timeout, interval=0.1, what=url)


# --- the simulator ----------------------------------------------------------------------------


@dataclass
class Sim:
    """A `reelwatch simulate` subprocess and its controls."""

    base_url: str
    root: str
    proc: Proc
    api_key: str = "sk-chaos"
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def port(self) -> int:
        """Its TCP port (a FaultProxy in front of it targets 127.0.0.1 and this)."""
        return int(self.root.rsplit(":", 1)[1])

    def inject(
        self, route: str, kind: str, *, count: int = 1, video_id: str | None = None, **params: Any
    ) -> None:
        body: dict[str, Any] = {"route": route, "kind": kind, "count": count, **params}
        if video_id is not None:
            body["video_id"] = video_id
        self._client.post(f"{self.root}/_sim/faults", json=body).raise_for_status()

    def reset_faults(self) -> None:
        self._client.post(f"{self.root}/_sim/reset-faults").raise_for_status()

    def stats(self) -> dict[str, Any]:
        answer = self._client.get(f"{self.root}/_sim/stats")
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data


@contextmanager
def simulator(
    *,
    queue_s: float = 0.2,
    render_s: float = 1.0,
    api_key: str = "sk-chaos",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    seed: int = 0,
) -> Iterator[Sim]:
    """`reelwatch simulate` on a free port, up and answering; stopped afterwards."""
    port = free_port()
    args = [
        "simulate",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--queue-seconds",
        str(queue_s),
        "--render-seconds",
        str(render_s),
        "--api-key",
        api_key,
        "--seed",
        str(seed),
    ]
    if webhook_url is not None:
        args += ["--webhook-url", webhook_url]
    if webhook_secret is not None:
        args += ["--webhook-secret", webhook_secret]
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = Proc(_reelwatch(*args), env, name="simulate")
    root = f"http://127.0.0.1:{port}"
    sim = Sim(base_url=f"{root}/v1", root=root, proc=proc, api_key=api_key)
    try:
        _wait_http(proc, f"{root}/_sim/health")
        yield sim
    finally:
        sim._client.close()
        proc.terminate(timeout=3)  # it waits for requests held by latency faults otherwise


# --- the fault proxy --------------------------------------------------------------------------


@dataclass
class Flow:
    """One connection forwarded by a FaultProxy."""

    opened_at: float
    bytes_down: int = 0
    closed_at: float | None = None


class FaultProxy:
    """A TCP proxy to one target that can delay, cut, refuse or hang connections.

    Hand-written because toxiproxy cannot be installed here and no maintained Python package
    does this; it is asyncio streams in a thread of its own, so the test thread steers it with
    plain method calls. Faults apply per direction and per connection:

    - `set_latency(s)`: every chunk waits `s` before it is forwarded, both ways;
    - `set_rate(bytes_per_s)`: downstream (target -> client) is paced to this rate;
    - `cut_after(n)`: each new connection is cut after n bytes downstream;
    - `down()`: new connections are accepted and reset at once (counted in `refused`), open
      ones are cut; `up()` ends that;
    - `hang(True)`: new connections are accepted and never forwarded.
    A cut is an abort (RST), like a dead peer or a killed proxy, not a polite FIN.
    """

    CHUNK = 16 * 1024

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections: list[tuple[float, str]] = []  # upstream connects (monotonic, target)
        self.refused: list[float] = []  # client connections reset while down (monotonic)
        self.flows: list[Flow] = []  # every forwarded connection, open or closed
        self._latency_s = 0.0
        self._rate: float | None = None
        self._cut_after: int | None = None
        self._down = False
        self._hang = False
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._abort_all()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _call(self, fn: Callable[[], None]) -> None:
        async def run() -> None:
            fn()

        self._run(run())

    # -- controls (thread-safe: each runs on the proxy's loop) --

    def set_latency(self, seconds: float) -> None:
        self._call(lambda: setattr(self, "_latency_s", seconds))

    def set_rate(self, bytes_per_s: float | None) -> None:
        self._call(lambda: setattr(self, "_rate", bytes_per_s))

    def cut_after(self, nbytes: int | None) -> None:
        self._call(lambda: setattr(self, "_cut_after", nbytes))

    def down(self) -> None:
        def go_down() -> None:
            self._down = True
            self._abort_all()

        self._call(go_down)

    def up(self) -> None:
        self._call(lambda: setattr(self, "_down", False))

    def hang(self, on: bool) -> None:
        self._call(lambda: setattr(self, "_hang", on))

    def cut_all(self) -> None:
        self._call(self._abort_all)

    @property
    def open_connections(self) -> int:
        return sum(1 for f in self.flows if f.closed_at is None)

    def open_downloads(self, *, min_bytes: int) -> int:
        """Open connections that have carried at least `min_bytes` downstream (a download)."""
        return sum(1 for f in self.flows if f.closed_at is None and f.bytes_down >= min_bytes)

    def last_close_at(self, *, min_bytes: int = 0) -> float:
        """When (monotonic) the last connection that carried `min_bytes` downstream closed."""
        closed = [
            f.closed_at for f in self.flows if f.closed_at is not None and f.bytes_down >= min_bytes
        ]
        if not closed:
            raise AssertionError("no such connection has closed")
        return max(closed)

    # -- the proxy itself --

    def _abort_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self.refused.append(time.monotonic())
            _reset(writer)
            return
        if self._hang:
            self._open.add(writer)
            with contextlib.suppress(ConnectionError):
                while await reader.read(self.CHUNK):
                    pass
            self._open.discard(writer)
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(writer)
            return
        self.connections.append((time.monotonic(), f"{self.target_host}:{self.target_port}"))
        flow = Flow(opened_at=time.monotonic())
        self.flows.append(flow)
        pair = (writer, up_writer)
        self._open.update(pair)

        def cut() -> None:
            if flow.closed_at is None:
                flow.closed_at = time.monotonic()
            for w in pair:
                self._open.discard(w)
                w.transport.abort()

        try:
            await asyncio.gather(
                self._pump(reader, up_writer, None, cut),
                self._pump(up_reader, writer, [self._cut_after], cut, flow),
            )
        finally:
            cut()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        budget: list[int | None] | None,
        cut: Callable[[], None],
        flow: Flow | None = None,
    ) -> None:
        """Copy one direction; `budget` (downstream only) counts bytes left before the cut.

        An end of file is passed on (half-close); anything else (a cut, a reset, a fault)
        ends both directions at once.
        """
        try:
            while chunk := await reader.read(self.CHUNK):
                if self._latency_s > 0:
                    await asyncio.sleep(self._latency_s)
                if budget is not None and budget[0] is not None:
                    if len(chunk) >= budget[0]:
                        chunk = chunk[: budget[0]]
                        if flow is not None:
                            flow.bytes_down += len(chunk)
                        writer.write(chunk)
                        await writer.drain()
                        cut()
                        return
                    budget[0] -= len(chunk)
                if flow is not None:
                    flow.bytes_down += len(chunk)
                writer.write(chunk)
                await writer.drain()
                if budget is not None and self._rate:
                    await asyncio.sleep(len(chunk) / self._rate)
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            cut()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a client connection with RST (SO_LINGER 0), as a refusing peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- reelwatch's own state, read the way an operator would -------------------------------------


def settings_for(env: dict[str, str]) -> Settings:
    """The Settings a reelwatch process started with `env` reads (for in-test submissions)."""
    from reelwatch import settings

    named: dict[str, Any] = {
        k: v for k, v in env.items() if k.startswith("REELWATCH_") and "_OPENAI_" not in k
    }
    fields = {"OPENAI_API_KEY": "api_key", "OPENAI_BASE_URL": "base_url"}
    fields["REELWATCH_OPENAI_ENDPOINT"] = "endpoint_name"
    fields["OPENAI_WEBHOOK_SECRET"] = "webhook_secret"
    openai = {field: env[name] for name, field in fields.items() if name in env}
    return settings.load(**named, provider_config={"openai": openai})


def submit(env: dict[str, str], prompts: list[str], *, at_once: int = 16) -> list[str]:
    """Submit generations from this process (stored, then created at the simulator); their ids.

    Submission is the CLI's own path (`service.submit`); it runs here rather than through one
    `reelwatch submit` process per job because starting Python costs a second a job.
    """
    from reelwatch import assembly, service

    async def main() -> list[str]:
        async with assembly.open_service(settings_for(env), need_provider=True) as svc:
            ids: list[str] = []
            for start in range(0, len(prompts), at_once):
                batch = prompts[start : start + at_once]
                made = await asyncio.gather(
                    *(svc.submit(service.SubmitRequest(p), actor="chaos") for p in batch)
                )
                ids.extend(g.id for g in made)
            return ids

    # The engine logs every step at info level; this process is not the one under test.
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        return asyncio.run(main())
    finally:
        structlog.configure(**saved)


def rows(db_url: str, where: str = "TRUE", *params: Any) -> list[dict[str, Any]]:
    """Generations as dicts (id, status, attempts, lease, assets, ...) straight from the table.

    `where` is SQL written by the test (with %s placeholders for `params`), never input.
    """
    columns = (
        "id, status, attempts, video_id, lease_owner, lease_token, lease_expires_at,"
        " assets, error_code, download_bytes, next_poll_at, now() AS db_now"
    )
    query = f"SELECT {columns} FROM generations WHERE {where} ORDER BY created_at"  # noqa: S608
    names = [
        "id", "status", "attempts", "video_id", "lease_owner", "lease_token",
        "lease_expires_at", "assets", "error_code", "download_bytes", "next_poll_at", "db_now",
    ]  # fmt: skip
    return [dict(zip(names, r, strict=True)) for r in sql(db_url, query, *params)]


def statuses(db_url: str) -> dict[str, int]:
    """How many generations are in each status."""
    return {
        str(s): int(n)
        for s, n in sql(db_url, "SELECT status, count(*) FROM generations GROUP BY status")
    }


def event_counts(db_url: str, kind: str) -> dict[str, int]:
    """Events of one kind per generation (every generation listed, 0 included)."""
    found = sql(
        db_url,
        "SELECT g.id, count(e.id) FROM generations g"
        " LEFT JOIN events e ON e.generation_id = g.id AND e.kind = %s GROUP BY g.id",
        kind,
    )
    return {str(i): int(n) for i, n in found}


def file_problems(db_url: str, data_dir: Path) -> list[str]:
    """Stored assets whose file is missing or whose sha256 differs from the recorded one."""
    import hashlib

    problems = []
    for row in rows(db_url, "status = 'completed'"):
        if not row["assets"]:
            problems.append(f"{row['id']}: completed without assets")
        for variant, asset in (row["assets"] or {}).items():
            path = data_dir / "videos" / asset["key"]
            if not path.is_file():
                problems.append(f"{row['id']} {variant}: {path} missing")
                continue
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
            if digest.hexdigest() != asset["sha256"]:
                problems.append(f"{row['id']} {variant}: sha256 differs")
    return problems


def temp_files(data_dir: Path) -> list[Path]:
    """Download temp files (`.NAME.RANDOM.part`) under the storage root."""
    return sorted((data_dir / "videos").rglob(".*.part"))


def worker_owner(proc: Proc, *, timeout: float = 20) -> str:
    """The lease owner name a worker uses (from its `worker started` log line)."""
    wait_worker_started(proc, timeout=timeout)
    for record in proc.log_lines():
        if record.get("action") == "worker_start":
            return str(record["owner"])
    raise AssertionError(f"{proc!r} logged no owner:\n{proc.tail()}")


def logged(proc: Proc, action: str) -> list[dict[str, Any]]:
    """The JSON log records of one action (e.g. "lease_lost", "db_error")."""
    return [r for r in proc.log_lines() if r.get("action") == action]

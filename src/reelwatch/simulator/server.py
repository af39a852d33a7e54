"""Running the simulator over real HTTP: in a background thread for tests, or blocking for the CLI.

`running()` binds a free loopback port, runs uvicorn in a thread with its own event loop, waits
until the server answers, and on exit stops it and joins the thread, leaving no socket behind.
`serve_in_thread()` does the same for any ASGI app (tests use it for webhook receivers).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from reelwatch.simulator.config import DEFAULT_CONFIG, SimConfig
from reelwatch.simulator.state import Simulator

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator serving HTTP in the background."""

    base_url: str
    """What an OpenAI client takes as `base_url`, e.g. `http://127.0.0.1:41234/v1`."""
    sim: Simulator
    """The simulator itself, to advance its clock, inject faults and read stats in-process."""

    @property
    def origin(self) -> str:
        """Scheme, host and port without `/v1` (the `/_sim/...` controls live there)."""
        return self.base_url.removesuffix("/v1")


def create_app(config: SimConfig = DEFAULT_CONFIG) -> Starlette:
    """The ASGI app of a new simulator with this config."""
    return Simulator(config).app


@contextlib.contextmanager
def running(
    config: SimConfig = DEFAULT_CONFIG, *, host: str = "127.0.0.1"
) -> Iterator[RunningSimulator]:
    """Serve a new simulator on a free port of `host` for the duration of the block."""
    sim = Simulator(config)
    with serve_in_thread(sim.app, host=host, name="reelwatch-simulator") as origin:
        yield RunningSimulator(base_url=origin + "/v1", sim=sim)


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, name: str = "asgi-server"
) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its origin (`http://host:port`)."""
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    # log_config=None: leave the host process's logging alone (uvicorn would reconfigure it).
    server = uvicorn.Server(_uvicorn_config(app, log_config=None))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}:{bound_port}", daemon=True
    )
    try:
        thread.start()
        origin = f"http://{_url_host(host)}:{bound_port}"
        _wait_until_answering(server, thread, sock)
        yield origin
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=STOP_TIMEOUT_S)
        sock.close()


def serve(config: SimConfig = DEFAULT_CONFIG, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve a simulator until interrupted (Ctrl+C), after printing its base URL."""
    sock = _bind(host, port)
    server = uvicorn.Server(_uvicorn_config(Simulator(config).app))
    print(f"reelwatch simulator: http://{_url_host(host)}:{sock.getsockname()[1]}/v1", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _uvicorn_config(app: ASGIApp, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "ws": "none",
        "timeout_graceful_shutdown": 2,
    }
    return uvicorn.Config(app, **(options | overrides))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _wait_until_answering(
    server: uvicorn.Server, thread: threading.Thread, sock: socket.socket
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server thread stopped during startup (see its log)")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start in time")
        time.sleep(0.005)
    host, port = sock.getsockname()[:2]
    connection = http.client.HTTPConnection(host, port, timeout=STARTUP_TIMEOUT_S)
    try:
        connection.request("GET", "/_sim/health")
        connection.getresponse().read()
    finally:
        connection.close()

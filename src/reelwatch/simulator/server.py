"""Running the simulator over real HTTP: in a background thread for tests, or blocking for the CLI.

`running()` binds a free loopback port, runs uvicorn in a thread with its own event loop, waits
until the server answers, and on exit stops it and joins the thread, leaving no socket behind.
`serve_in_thread()` does the same for any ASGI app (tests use it for webhook receivers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp

from reelwatch import serving
from reelwatch.simulator.config import DEFAULT_CONFIG, SimConfig
from reelwatch.simulator.state import Simulator


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
    with serving.in_thread(app, host=host, port=port, name=name, probe="/_sim/health") as origin:
        yield origin


def serve(config: SimConfig = DEFAULT_CONFIG, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve a simulator until interrupted (Ctrl+C), after printing its base URL."""
    sock = serving.bind(host, port)
    print(
        f"reelwatch simulator: http://{serving.url_host(host)}:{sock.getsockname()[1]}/v1",
        flush=True,
    )
    serving.serve(Simulator(config).app, sock)

"""Running the simulator over real HTTP: in a background thread for tests, or blocking for the CLI.

One process, one origin, a prefix per dialect: OpenAI at `{origin}/v1`, Replicate at
`{origin}/replicate` (the SDK's `base_url`), the fal queue at `{origin}/fal/` (what
`fal_client.client.QUEUE_URL_FORMAT` must be), fal's JWKS at
`{origin}/fal-rest/.well-known/jwks.json`, Google Veo's Gemini API at `{origin}/gemini/` (its
JWKS at `{origin}/gemini/.well-known/jwks.json`), Vertex AI at `{origin}/vertex/` and Cloud
Storage at `{origin}/gcs`.

`running()` binds a free loopback port, runs uvicorn in a thread with its own event loop, waits
until the server answers, and on exit stops it and joins the thread, leaving no socket behind.
`serve_in_thread()` does the same for any ASGI app (tests use it for webhook receivers).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp

from reelwatch import serving
from reelwatch.simulator import fal, replicate, veo
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

    @property
    def replicate_base_url(self) -> str:
        """What `replicate.Client` takes as `base_url`, e.g. `http://127.0.0.1:41234/replicate`."""
        return self.origin + replicate.PREFIX

    @property
    def fal_queue_url(self) -> str:
        """What `fal_client.client.QUEUE_URL_FORMAT` must be, e.g. `http://127.0.0.1:41234/fal/`."""
        return self.origin + fal.PREFIX + "/"

    @property
    def fal_jwks_url(self) -> str:
        """Where fal's webhook verification keys are served (no auth)."""
        return self.origin + fal.JWKS_PATH

    @property
    def veo_gemini_url(self) -> str:
        """What `genai.Client` takes as `HttpOptions.base_url` in Gemini API mode (with
        `api_version="v1beta"`), e.g. `http://127.0.0.1:41234/gemini/`."""
        return self.origin + veo.GEMINI_PREFIX + "/"

    @property
    def veo_vertex_url(self) -> str:
        """What `genai.Client(vertexai=True, ...)` takes as `HttpOptions.base_url` (its default
        `v1beta1`), e.g. `http://127.0.0.1:41234/vertex/`."""
        return self.origin + veo.VERTEX_PREFIX + "/"

    @property
    def veo_jwks_url(self) -> str:
        """Where the keys of dynamic Gemini webhooks (RS256 JWTs) are served (no auth)."""
        return self.origin + veo.JWKS_PATH

    @property
    def veo_storage_url(self) -> str:
        """Cloud Storage's JSON API (standing for https://storage.googleapis.com)."""
        return self.origin + veo.GCS_PREFIX


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
        sim.origin = origin
        yield RunningSimulator(base_url=origin + "/v1", sim=sim)


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, name: str = "asgi-server"
) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its origin (`http://host:port`)."""
    with serving.in_thread(app, host=host, port=port, name=name, probe="/_sim/health") as origin:
        yield origin


def serve(
    config: SimConfig = DEFAULT_CONFIG,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve a simulator until interrupted (Ctrl+C), after printing one base URL per dialect.

    The first line is the OpenAI base URL (`reelwatch simulator: http://host:port/v1`); then
    Replicate's `base_url`, fal's queue URL, Veo's Gemini API and Vertex base URLs and Cloud
    Storage's URL, each as the last word of its line. `sock`: a
    socket already bound (`serving.bind`), so the caller can report a busy port in its words.
    """
    if sock is None:
        sock = serving.bind(host, port)
    host = sock.getsockname()[0]
    origin = f"http://{serving.url_host(host)}:{sock.getsockname()[1]}"
    print(f"reelwatch simulator: {origin}/v1", flush=True)
    print(f"reelwatch simulator (replicate base_url): {origin}{replicate.PREFIX}", flush=True)
    print(
        f"reelwatch simulator (fal queue, JWKS at {origin}{fal.JWKS_PATH}): {origin}{fal.PREFIX}/",
        flush=True,
    )
    print(
        f"reelwatch simulator (veo gemini base_url, JWKS at {origin}{veo.JWKS_PATH}): "
        f"{origin}{veo.GEMINI_PREFIX}/",
        flush=True,
    )
    print(f"reelwatch simulator (veo vertex base_url): {origin}{veo.VERTEX_PREFIX}/", flush=True)
    print(f"reelwatch simulator (veo cloud storage): {origin}{veo.GCS_PREFIX}", flush=True)
    sim = Simulator(config)
    sim.origin = origin
    serving.serve(sim.app, sock)

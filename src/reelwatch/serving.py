"""Serving an ASGI app with uvicorn: blocking (the CLI) or in a background thread (tests, demo).

Sockets are bound here, with `IPPROTO_TCP` given explicitly: asyncio only sets TCP_NODELAY on
accepted sockets whose protocol says TCP, and without it every answer waits ~40 ms for a
delayed ACK.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
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


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def uvicorn_config(app: ASGIApp, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "ws": "none",
        "timeout_graceful_shutdown": 2,
    }
    return uvicorn.Config(app, **(options | overrides))


def serve(app: ASGIApp, sock: socket.socket, **overrides: Any) -> None:
    """Serve until interrupted (uvicorn handles SIGINT/SIGTERM and shuts the app down)."""
    server = uvicorn.Server(uvicorn_config(app, **overrides))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "asgi-server",
    probe: str = "/",
) -> Iterator[str]:
    """Serve `app` in a background thread for the block; yields its origin (`http://host:port`)."""
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    # log_config=None: leave the host process's logging alone (uvicorn would reconfigure it).
    server = uvicorn.Server(uvicorn_config(app, log_config=None))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}:{bound_port}", daemon=True
    )
    try:
        thread.start()
        _wait_until_answering(server, thread, sock, probe)
        yield f"http://{url_host(host)}:{bound_port}"
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=STOP_TIMEOUT_S)
        sock.close()


def _wait_until_answering(
    server: uvicorn.Server, thread: threading.Thread, sock: socket.socket, probe: str
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
        connection.request("GET", probe)
        connection.getresponse().read()
    finally:
        connection.close()

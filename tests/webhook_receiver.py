"""A webhook endpoint for tests: records what arrives, answers planned statuses (then 200)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    """One request the webhook receiver got."""

    body: bytes
    headers: dict[str, str]


class Receiver:
    """A webhook endpoint that records what arrives and answers planned statuses (then 200)."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._planned: list[int] = []
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self._received.append(Received(body, dict(request.headers)))
            status = self._planned.pop(0) if self._planned else 200
        return Response(status_code=status)

    def reset(self) -> None:
        """Forget what arrived and what was planned."""
        with self._lock:
            self._received.clear()
            self._planned.clear()

    def plan(self, *statuses: int) -> None:
        """Answer the next requests with these statuses."""
        with self._lock:
            self._planned.extend(statuses)

    def received(self) -> list[Received]:
        """Everything that arrived so far."""
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        """Wait (bounded) until at least `count` requests arrived; return them all."""
        eventually(lambda: len(self.received()) >= count, timeout_s)
        return self.received()


def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)

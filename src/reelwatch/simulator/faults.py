"""Injected faults: what the next matching requests suffer instead of a normal answer.

A `FaultBook` holds the faults a test asked for (`sim.inject("retrieve", "rate_limit", count=2)`);
each request takes the faults that match its route (and video id) and consumes one use of each.
This module also holds the answers faults produce: a 429 or 5xx in the API's error envelope, a
response cut in half, or a connection closed without any response. Each dialect answers 429s and
5xx in its own shape (`Answers`); the OpenAI ones live here, Replicate's, fal's and Veo's in their
modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

RAW_SEND = "reelwatch.simulator.raw_send"
"""Scope key under which the app keeps the server's own `send` (to reach the connection)."""

OPENAI_ROUTES = frozenset({"create", "retrieve", "list", "content", "delete", "remix"})
REPLICATE_ROUTES = frozenset(
    {"replicate.create", "replicate.get", "replicate.list", "replicate.cancel", "replicate.files"}
)
FAL_ROUTES = frozenset({"fal.submit", "fal.status", "fal.result", "fal.cancel", "fal.files"})
VEO_ROUTES = frozenset(
    {
        "veo.create",
        "veo.get",
        "veo.fetch",
        "veo.vertex_get",
        "veo.files",
        "veo.media",
        "veo.gcs",
        "veo.webhooks",
    }
)
ROUTES = OPENAI_ROUTES | REPLICATE_ROUTES | FAL_ROUTES | VEO_ROUTES | {"*"}
CREATE_ROUTES = frozenset({"create", "replicate.create", "fal.submit", "veo.create"})
"""Routes that create a job (the only ones `create_then_fail` applies to)."""


class Kind(StrEnum):
    """What an injected fault does to a request."""

    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    LATENCY = "latency"
    TRUNCATE = "truncate"
    CREATE_THEN_FAIL = "create_then_fail"
    DROP = "drop"
    ERROR = "error"  # any other 4xx/5xx (`status`), in the dialect's error shape


_PARAMS: dict[Kind, frozenset[str]] = {
    Kind.RATE_LIMIT: frozenset({"retry_after", "retry_after_ms"}),
    Kind.SERVER_ERROR: frozenset({"status", "should_retry"}),
    Kind.LATENCY: frozenset({"seconds"}),
    Kind.TRUNCATE: frozenset(),
    Kind.CREATE_THEN_FAIL: frozenset({"status", "should_retry"}),
    Kind.DROP: frozenset(),
    Kind.ERROR: frozenset({"status"}),
}


@dataclass(slots=True)
class Fault:
    """One injected fault and how many more requests it applies to (-1: until reset)."""

    route: str
    kind: Kind
    remaining: int
    video_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, route: str, video_id: str | None) -> bool:
        """Whether a request to `route` about `video_id` is subject to this fault."""
        if self.route not in (route, "*"):
            return False
        return self.video_id is None or self.video_id == video_id


def fault(route: str, kind: str, count: int = 1, **params: Any) -> Fault:
    """Validate a fault request; raises ValueError with a message meant for the test author."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; expected one of {sorted(ROUTES)}")
    try:
        kind_ = Kind(kind)
    except ValueError:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {list(Kind)}") from None
    if count == 0 or count < -1:
        raise ValueError("count must be positive, or -1 for 'until reset'")
    video_id = params.pop("video_id", None)
    unknown = set(params) - _PARAMS[kind_]
    if unknown:
        raise ValueError(f"fault {kind_} takes no parameter {sorted(unknown)}")
    if kind_ is Kind.CREATE_THEN_FAIL and route not in CREATE_ROUTES:
        raise ValueError(
            f"create_then_fail only applies to the create routes {sorted(CREATE_ROUTES)}"
        )
    status = params.get("status")
    if kind_ is Kind.ERROR:
        if not (isinstance(status, int) and 400 <= status <= 599 and status != 429):
            raise ValueError("error needs a status: an HTTP 4xx or 5xx code other than 429")
    elif status is not None and not (isinstance(status, int) and 500 <= status <= 599):
        raise ValueError("status must be an HTTP 5xx code")
    seconds = params.get("seconds", 1.0)
    if kind_ is Kind.LATENCY and not (isinstance(seconds, int | float) and seconds >= 0):
        raise ValueError("latency needs seconds >= 0")
    return Fault(route=route, kind=kind_, remaining=count, video_id=video_id, params=params)


class FaultBook:
    """The faults waiting to happen, shared between the test thread and the server's loop."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, item: Fault) -> None:
        """Queue a fault behind those already waiting."""
        with self._lock:
            self._faults.append(item)

    def reset(self) -> None:
        """Forget every waiting fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        """The waiting faults, as plain data (for stats)."""
        with self._lock:
            return [
                {
                    "route": item.route,
                    "kind": str(item.kind),
                    "remaining": item.remaining,
                    "video_id": item.video_id,
                    "params": dict(item.params),
                }
                for item in self._faults
            ]

    def take(self, route: str, video_id: str | None) -> tuple[float, Fault | None]:
        """Consume what applies to one request: total injected latency and the first other fault."""
        if not self._faults:
            return 0.0, None
        delay = 0.0
        chosen: Fault | None = None
        with self._lock:
            for item in list(self._faults):
                if not item.matches(route, video_id):
                    continue
                if item.kind is Kind.LATENCY:
                    delay += float(item.params.get("seconds", 1.0))
                elif chosen is None:
                    chosen = item
                else:
                    continue
                if item.remaining > 0:
                    item.remaining -= 1
                    if item.remaining == 0:
                        self._faults.remove(item)
        return delay, chosen


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> Any:
    """The API's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def rate_limited(item: Fault, headers: dict[str, str]) -> Response:
    """A 429 with `retry-after` (or `retry-after-ms`) and `x-ratelimit-*` headers."""
    headers = dict(headers)
    if "retry_after_ms" in item.params:
        headers["retry-after-ms"] = str(item.params["retry_after_ms"])
        reset_s = float(item.params["retry_after_ms"]) / 1000
    else:
        retry_after = item.params.get("retry_after", 1)
        headers["retry-after"] = str(retry_after)
        reset_s = float(retry_after)
    headers["x-ratelimit-limit-requests"] = "25"
    headers["x-ratelimit-remaining-requests"] = "0"
    headers["x-ratelimit-reset-requests"] = f"{reset_s:g}s"
    body = error_body(
        "Rate limit reached for requests. Please try again later.",
        "requests",
        code="rate_limit_exceeded",
    )
    return JSONResponse(body, status_code=429, headers=headers)


def server_error(item: Fault, headers: dict[str, str]) -> Response:
    """A 5xx in the error envelope, optionally telling the client whether to retry."""
    headers = dict(headers)
    should_retry = item.params.get("should_retry")
    if should_retry is not None:
        headers["x-should-retry"] = "true" if should_retry else "false"
    status = int(item.params.get("status", 500))
    if status < 500:
        body = error_body("The request could not be served.", "invalid_request_error")
    else:
        body = error_body("The server had an error while processing your request.", "server_error")
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class Answers:
    """How one dialect answers a `rate_limit` and a `server_error` fault."""

    rate_limited: Callable[[Fault, dict[str, str]], Response]
    server_error: Callable[[Fault, dict[str, str]], Response]


OPENAI_ANSWERS = Answers(rate_limited=rate_limited, server_error=server_error)


def retry_after_s(item: Fault) -> float | None:
    """The delay a rate_limit fault announces in seconds (`retry_after`, else `retry_after_ms`)."""
    if "retry_after" in item.params:
        return float(item.params["retry_after"])
    if "retry_after_ms" in item.params:
        return float(item.params["retry_after_ms"]) / 1000
    return None


async def abort_connection(scope: Scope, receive: Receive) -> None:
    """Close the client's connection now, flushing what was sent, and wait until it is gone."""
    raw_send = scope.get(RAW_SEND)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("this server does not let the simulator drop connections")
    transport.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            while (await receive())["type"] != "http.disconnect":
                pass


class Dropped(Response):
    """No response at all: the connection is closed as soon as the request arrives."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await abort_connection(scope, receive)


class Truncated(Response):
    """The wrapped response with its real `content-length`, cut off after half of its body."""

    def __init__(self, inner: Response) -> None:
        super().__init__(status_code=inner.status_code)
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = int(self.inner.headers.get("content-length", "0"))
        room = length // 2

        async def capped(message: Message) -> None:
            nonlocal room
            if message["type"] != "http.response.body":
                await send(message)
                return
            if room <= 0:
                return
            body = bytes(message.get("body", b""))[:room]
            room -= len(body)
            await send({"type": "http.response.body", "body": body, "more_body": True})

        await self.inner(scope, receive, capped)
        await abort_connection(scope, receive)

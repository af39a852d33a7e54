"""Live events: server-sent events tailed from the events table, resumable with Last-Event-ID.

The table is the truth, so this works with any number of server processes. In one process,
one reader (`Hub`) tails the table for every stream: it reads the new rows once per wake-up,
encodes each once and keeps the latest `KEPT` in memory, where each stream takes the ones after
its own last id at its own pace. A stream that starts, or falls, further behind than that reads
the table itself until it has caught up (a slow client never makes a buffer grow). A wake-up
shortens the wait: in-process when this process wrote the event, and on PostgreSQL through
LISTEN/NOTIFY when another process did; the table is still looked at every `POLL_S` as the
safety net. The shared reader is what lets a thousand streams follow one table: each reading
it on every wake-up costs a thousand queries per event (docs/benchmarks.md, "push").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from reelwatch import presenter, service
from reelwatch.models import Event
from reelwatch.web import access
from reelwatch.web.errors import ApiError

log = structlog.get_logger("reelwatch.web")

router = APIRouter(dependencies=[Depends(access.require_user)])

POLL_S = 0.5
GAP_WAIT_S = 2.0
KEEPALIVE_S = 15
BATCH = 200
KEPT = 4096  # encoded events held for the streams of one process
MAX_EVENT_ID = 2**63 - 1  # events.id is a BIGINT: a larger id cannot be bound to a query


def _encode(event: Event) -> bytes:
    """One SSE message, encoded once for every stream that sends it."""
    data = json.dumps(presenter.event_json(event), separators=(",", ":"))
    return ServerSentEvent(data=data, id=str(event.id), event="generation").encode()


class _Gaps:
    """Ids come from a sequence and, on PostgreSQL, transactions commit out of order: a
    missing id may still appear. A reader waits a little for it; after GAP_WAIT_S it was rolled
    back (sequences never reuse a value) and the reader moves past it."""

    def __init__(self) -> None:
        self.since: float | None = None

    def in_order(self, events: list[Event], last: int) -> Iterator[Event]:
        """The events a reader at `last` may pass on now, in id order."""
        for event in events:
            if event.id != last + 1:
                self.since = self.since or time.monotonic()
                if time.monotonic() - self.since < GAP_WAIT_S:
                    return
            self.since = None
            last = event.id
            yield event

    @property
    def waiting(self) -> bool:
        return self.since is not None


class Hub:
    """One tail of the events table per process, shared by its streams.

    Started by the first stream and stopped with the last, so an idle server reads nothing.
    `ids`/`messages` hold the encoded events after `floor`, every one of them: a stream whose
    last id is at least `floor` finds all it is owed here."""

    def __init__(self, svc: service.Service, wake: asyncio.Event) -> None:
        self._svc = svc
        self._wake = wake
        self.streams = 0
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self.ids: deque[int] = deque()
        self.messages: deque[bytes] = deque()
        self.floor = MAX_EVENT_ID  # nothing is held until the reader has started
        self.last = MAX_EVENT_ID
        self.changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def joined(self) -> AsyncIterator[None]:
        async with self._starting:
            if self._task is None:
                self.ids.clear()
                self.messages.clear()
                self.last = self.floor = await self._svc.last_event_id()
                self._task = asyncio.create_task(self._tail(), name="reelwatch-events")
            self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1
            if self.streams == 0:
                await self.close()

    async def close(self) -> None:
        task, self._task = self._task, None
        self.floor = self.last = MAX_EVENT_ID
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def after(self, last: int) -> tuple[int, bytes]:
        """The held events after `last` (a stream at `floor` or later) as one chunk, and the
        id of the newest: one write per stream, however many events it is behind."""
        start = bisect.bisect_right(self.ids, last)
        if start == len(self.ids):
            return last, b""
        chunk = b"".join(itertools.islice(self.messages, start, None))
        return self.ids[-1], chunk

    async def _tail(self) -> None:
        gaps = _Gaps()
        failures = 0
        while True:
            # Cleared before the read: a wake-up that comes while reading is not lost.
            self._wake.clear()
            try:
                events = await self._svc.events_after(self.last, limit=BATCH)
            except Exception:  # the database is away: streams wait, the reader retries
                failures += 1
                log.warning("events_read_failed", exc_info=True, failures=failures)
                await asyncio.sleep(min(30.0, POLL_S * 2**failures))
                continue
            failures = 0
            passed = list(gaps.in_order(events, self.last))
            for event in passed:
                if len(self.ids) == KEPT:
                    self.floor = self.ids.popleft()
                    self.messages.popleft()
                self.ids.append(event.id)
                self.messages.append(_encode(event))
                self.last = event.id
            if passed:
                changed, self.changed = self.changed, asyncio.Event()
                changed.set()
            if len(events) == BATCH and len(passed) == BATCH:
                continue
            wait = min(POLL_S, GAP_WAIT_S / 4) if gaps.waiting else POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)


async def _tail(request: Request, hub: Hub, after: int) -> AsyncIterator[bytes]:
    """One stream's events. No look at the connection here: when the client goes,
    EventSourceResponse cancels this generator, and leaving the hub follows."""
    svc: service.Service = request.app.state.service
    last = after
    gaps = _Gaps()
    async with hub.joined():
        while True:
            changed = hub.changed  # taken before looking: a change while looking is not lost
            if last >= hub.floor:
                last, chunk = hub.after(last)
                if chunk:
                    yield chunk
                    continue
                await changed.wait()
                continue
            # Behind what the hub holds: read the table, as the hub itself does.
            events = await svc.events_after(last, limit=BATCH)
            passed = list(gaps.in_order(events, last))
            if passed:
                yield b"".join(_encode(event) for event in passed)
                last = passed[-1].id
            if len(events) == BATCH and len(passed) == BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_S)


@router.get("/api/events")
async def events(
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Start after this event id.")
    ] = None,
) -> EventSourceResponse:
    """`event: generation` messages whose data is one audit-log entry as JSON.

    Resume with the `Last-Event-ID` header (browsers send it on reconnect) or `?after=N`;
    with neither, only events from now on are sent. A comment is sent every 15 s to keep
    proxies from closing an idle stream.
    """
    svc: service.Service = request.app.state.service
    start = after
    if last_event_id is not None and last_event_id.strip():
        start = _event_id(last_event_id.strip())
    if start is None:
        start = await svc.last_event_id()
    return EventSourceResponse(
        _tail(request, request.app.state.event_hub, start),
        ping=KEEPALIVE_S,
        headers={"Cache-Control": "no-store"},
    )


def _event_id(text: str) -> int:
    """A Last-Event-ID this server could have sent: ASCII digits, within the column's range.

    (str.isdigit() alone also accepts "²", which int() refuses.)"""
    if text.isascii() and text.isdigit() and int(text) <= MAX_EVENT_ID:
        return int(text)
    raise ApiError(
        400, "invalid_request", f"Last-Event-ID: must be an event id from 0 to {MAX_EVENT_ID}"
    )

"""Live events: server-sent events tailed from the events table, resumable with Last-Event-ID.

The table is the truth, so this works with any number of server processes: each client's
stream reads the rows after the last id it sent, at its own pace (a slow client never makes a
buffer grow; it just reads later rows later). A wake-up shortens the wait: in-process when this
process wrote the event, and on PostgreSQL through LISTEN/NOTIFY when another process did; the
table is still looked at every `POLL_S` as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from reelwatch import presenter, service
from reelwatch.web import access
from reelwatch.web.errors import ApiError

router = APIRouter(dependencies=[Depends(access.require_user)])

POLL_S = 0.5
GAP_WAIT_S = 2.0
KEEPALIVE_S = 15
BATCH = 200
MAX_EVENT_ID = 2**63 - 1  # events.id is a BIGINT: a larger id cannot be bound to a query


async def _tail(
    request: Request, svc: service.Service, after: int
) -> AsyncIterator[ServerSentEvent]:
    wake: asyncio.Event = request.app.state.events_written
    last = after
    gap_since: float | None = None
    while not await request.is_disconnected():
        # Cleared before the read: a wake-up that comes while reading is not lost.
        wake.clear()
        events = await svc.events_after(last, limit=BATCH)
        for event in events:
            if event.id != last + 1:
                # On PostgreSQL ids come from a sequence and transactions commit out of order:
                # a missing id may still appear. Wait a little for it; after GAP_WAIT_S it was
                # rolled back (sequences never reuse a value) and the stream moves past it.
                gap_since = gap_since or time.monotonic()
                if time.monotonic() - gap_since < GAP_WAIT_S:
                    break
            gap_since = None
            data = json.dumps(presenter.event_json(event), separators=(",", ":"))
            yield ServerSentEvent(data=data, id=str(event.id), event="generation")
            last = event.id
        else:
            if len(events) == BATCH:
                continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), POLL_S)


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
        _tail(request, svc, start), ping=KEEPALIVE_S, headers={"Cache-Control": "no-store"}
    )


def _event_id(text: str) -> int:
    """A Last-Event-ID this server could have sent: ASCII digits, within the column's range.

    (str.isdigit() alone also accepts "²", which int() refuses.)"""
    if text.isascii() and text.isdigit() and int(text) <= MAX_EVENT_ID:
        return int(text)
    raise ApiError(
        400, "invalid_request", f"Last-Event-ID: must be an event id from 0 to {MAX_EVENT_ID}"
    )

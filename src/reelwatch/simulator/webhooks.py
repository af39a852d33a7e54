"""Webhook deliveries of the simulated APIs, one loop for every dialect.

The `Outbox` keeps a heap of keys by the simulated time they fall due; a background task sleeps
until the earliest one (or until the clock jumps), asks the simulator to turn the key into a
`Delivery` (a fixed body, plus how to address and sign each attempt), then POSTs it. Failed
attempts are retried with exponential backoff under the same id. The OpenAI dialect announces
`video.completed` / `video.failed` events signed per Standard Webhooks; Replicate POSTs the
Prediction (Standard Webhooks too, with its own secret) and fal its queue envelope signed with
Ed25519 (see `replicate.py`, `fal.py`). Tests can tamper with the next delivery, of any dialect or
of one: send it twice, date it outside the tolerance, or sign it with the wrong key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from reelwatch.simulator import config

_log = logging.getLogger(__name__)
USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"


BAD_SECRET = "whsec_" + base64.b64encode(b"not the secret you are looking for").decode()
"""What a tampered Standard Webhooks delivery is signed with instead of the real secret."""


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(config.secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def standard_headers(
    secret: str, webhook_id: str, timestamp: int, body: bytes, *, bad_signature: bool = False
) -> dict[str, str]:
    """Standard Webhooks headers for one attempt (signed with `BAD_SECRET` if tampered)."""
    key = BAD_SECRET if bad_signature else secret
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }


@dataclass(frozen=True, slots=True)
class Event:
    """A terminal transition worth announcing."""

    type: str
    video_id: str
    created_at: int


Target = Callable[[int, bool], "tuple[str, dict[str, str]] | None"]
"""Where one attempt goes and its headers, given its unix timestamp and whether to mis-sign it;
None stops the delivery (e.g. the OpenAI webhook was unconfigured meanwhile)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One announcement: a body fixed for all its attempts, and how to address and sign each."""

    dialect: str
    type: str
    video_id: str
    event_id: str
    webhook_id: str
    body: bytes
    target: Target


def openai_delivery(event: Event, settings: Callable[[], config.SimConfig]) -> Delivery:
    """An OpenAI `video.*` event, to the configured URL with the configured secret."""
    event_id = "evt_" + secrets.token_hex(24)
    webhook_id = "wh_" + secrets.token_hex(24)
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "created_at": event.created_at,
            "type": event.type,
            "data": {"id": event.video_id},
        },
        separators=(",", ":"),
    ).encode()

    def target(timestamp: int, bad_signature: bool) -> tuple[str, dict[str, str]] | None:
        current = settings()
        url, secret = current.webhook_url, current.webhook_secret
        if not url or not secret:
            return None
        headers = standard_headers(secret, webhook_id, timestamp, body, bad_signature=bad_signature)
        headers["user-agent"] = USER_AGENT
        return url, headers

    return Delivery(
        dialect="openai",
        type=event.type,
        video_id=event.video_id,
        event_id=event_id,
        webhook_id=webhook_id,
        body=body,
        target=target,
    )


@dataclass(frozen=True, slots=True)
class Tamper:
    """How to spoil the next delivery, to rehearse what a receiver must reject or dedupe."""

    duplicate: bool = False
    timestamp_offset_s: float = 0.0
    bad_signature: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST of one delivery, as recorded in stats."""

    webhook_id: str
    event_id: str
    type: str
    video_id: str
    attempt: int
    timestamp: int
    status_code: int | None
    error: str | None
    dialect: str = "openai"

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted it (2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300


Resolve = Callable[[str], Delivery | None]


class Outbox:
    """Schedules, signs, sends and retries webhook deliveries on the simulated clock."""

    def __init__(
        self, clock: config.SimClock, resolve: Resolve, settings: Callable[[], config.SimConfig]
    ) -> None:
        self._clock = clock
        self._resolve = resolve
        self._settings = settings
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, int, str]] = []
        self._order = itertools.count()
        self._generation = 0
        self._tamper: dict[str | None, Tamper] = {}
        self._attempts: list[Attempt] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, key: str, at: float) -> None:
        """Resolve `key` (a video id, or a dialect's event key) once the clock reaches `at`.

        Keys due at the same moment are resolved in the order they were scheduled.
        """
        with self._lock:
            heapq.heappush(self._due, (at, self._generation, next(self._order), key))
            earliest = self._due[0][3] == key
        if earliest:
            self.wake()

    def tamper_next(self, tamper: Tamper, dialect: str | None = None) -> None:
        """Spoil the next delivery that starts (all its attempts), of `dialect` or of any."""
        with self._lock:
            self._tamper[dialect] = tamper

    def attempts(self) -> list[Attempt]:
        """Every attempt so far, oldest first."""
        with self._lock:
            return list(self._attempts)

    def reset(self) -> None:
        """Forget scheduled events, records and tampering; stop retrying older deliveries."""
        with self._lock:
            self._generation += 1
            self._due.clear()
            self._attempts.clear()
            self._tamper.clear()
        self.wake()

    def wake(self) -> None:
        """Make the delivery loop look at the clock again (safe from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(wake.set)

    async def run(self, client: httpx.AsyncClient) -> None:
        """Deliver events as they fall due, until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        unsubscribe = self._clock.subscribe(self.wake)
        try:
            while True:
                wake.clear()
                for delivery, generation in self._pop_due(self._clock.now()):
                    task = asyncio.create_task(
                        self._deliver(client, delivery, generation),
                        name=f"webhook {delivery.type} {delivery.video_id}",
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._delay(self._clock.now())):
                        await wake.wait()
        finally:
            unsubscribe()
            self._loop = self._wake = None
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("webhook delivery crashed", exc_info=task.exception())

    def _pop_due(self, now: float) -> list[tuple[Delivery, int]]:
        due: list[tuple[str, int]] = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                _, generation, _, key = heapq.heappop(self._due)
                due.append((key, generation))
        deliveries = []
        for key, generation in due:
            delivery = self._resolve(key)
            if delivery is not None:
                deliveries.append((delivery, generation))
        return deliveries

    def _delay(self, now: float) -> float | None:
        with self._lock:
            if not self._due:
                return None
            return max(self._due[0][0] - now, 0.0)

    async def _deliver(
        self, client: httpx.AsyncClient, delivery: Delivery, generation: int
    ) -> None:
        with self._lock:
            tamper = self._tamper.pop(delivery.dialect, None) or self._tamper.pop(None, None)
        tamper = tamper or Tamper()
        for _copy in range(2 if tamper.duplicate else 1):
            settings = self._settings()
            for attempt in range(1, settings.webhook_max_attempts + 1):
                if generation != self._generation:
                    return
                record = await self._post(
                    client, delivery, settings.webhook_timeout_s, attempt, tamper
                )
                if record is None:
                    return
                with self._lock:
                    if generation != self._generation:
                        return
                    self._attempts.append(record)
                if record.ok:
                    break
                if attempt < settings.webhook_max_attempts:
                    await asyncio.sleep(settings.webhook_retry_base_s * 2 ** (attempt - 1))

    async def _post(
        self,
        client: httpx.AsyncClient,
        delivery: Delivery,
        timeout_s: float,
        attempt: int,
        tamper: Tamper,
    ) -> Attempt | None:
        timestamp = int(self._clock.wall() + tamper.timestamp_offset_s)
        addressed = delivery.target(timestamp, tamper.bad_signature)
        if addressed is None:
            return None
        url, headers = addressed
        status_code: int | None = None
        error: str | None = None
        try:
            response = await client.post(
                url, content=delivery.body, headers=headers, timeout=timeout_s
            )
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Attempt(
            webhook_id=delivery.webhook_id,
            event_id=delivery.event_id,
            type=delivery.type,
            video_id=delivery.video_id,
            attempt=attempt,
            timestamp=timestamp,
            status_code=status_code,
            error=error,
            dialect=delivery.dialect,
        )

"""Webhook deliveries of the simulated API: `video.completed` and `video.failed` events.

The `Outbox` keeps a heap of jobs by the simulated time they finish; a background task sleeps
until the earliest one (or until the clock jumps), then POSTs a Standard Webhooks event signed
like OpenAI's. Failed attempts are retried with exponential backoff under the same `webhook-id`.
Tests can tamper with the next delivery: send it twice, date it outside the tolerance, or sign it
with the wrong key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
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


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(config.secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass(frozen=True, slots=True)
class Event:
    """A terminal transition worth announcing."""

    type: str
    video_id: str
    created_at: int


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

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted it (2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300


Resolve = Callable[[str], Event | None]


class Outbox:
    """Schedules, signs, sends and retries webhook deliveries on the simulated clock."""

    def __init__(
        self, clock: config.SimClock, resolve: Resolve, settings: Callable[[], config.SimConfig]
    ) -> None:
        self._clock = clock
        self._resolve = resolve
        self._settings = settings
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, str]] = []
        self._generation = 0
        self._tamper: Tamper | None = None
        self._attempts: list[Attempt] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, video_id: str, at: float) -> None:
        """Announce `video_id` once the simulated clock reaches `at`."""
        with self._lock:
            heapq.heappush(self._due, (at, self._generation, video_id))
            earliest = self._due[0][2] == video_id
        if earliest:
            self.wake()

    def tamper_next(self, tamper: Tamper) -> None:
        """Spoil the next delivery that starts (all its attempts)."""
        with self._lock:
            self._tamper = tamper

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
            self._tamper = None
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
                for event, generation in self._pop_due(self._clock.now()):
                    task = asyncio.create_task(
                        self._deliver(client, event, generation),
                        name=f"webhook {event.type} {event.video_id}",
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

    def _pop_due(self, now: float) -> list[tuple[Event, int]]:
        due: list[tuple[str, int]] = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                _, generation, video_id = heapq.heappop(self._due)
                due.append((video_id, generation))
        events = []
        for video_id, generation in due:
            event = self._resolve(video_id)
            if event is not None:
                events.append((event, generation))
        return events

    def _delay(self, now: float) -> float | None:
        with self._lock:
            if not self._due:
                return None
            return max(self._due[0][0] - now, 0.0)

    async def _deliver(self, client: httpx.AsyncClient, event: Event, generation: int) -> None:
        with self._lock:
            tamper, self._tamper = self._tamper or Tamper(), None
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
        for _copy in range(2 if tamper.duplicate else 1):
            settings = self._settings()
            for attempt in range(1, settings.webhook_max_attempts + 1):
                url, secret = settings.webhook_url, settings.webhook_secret
                if generation != self._generation or not url or not secret:
                    return
                record = await self._post(
                    client,
                    url,
                    secret,
                    settings.webhook_timeout_s,
                    event,
                    event_id,
                    webhook_id,
                    body,
                    attempt,
                    tamper,
                )
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
        url: str,
        secret: str,
        timeout_s: float,
        event: Event,
        event_id: str,
        webhook_id: str,
        body: bytes,
        attempt: int,
        tamper: Tamper,
    ) -> Attempt:
        timestamp = int(self._clock.wall() + tamper.timestamp_offset_s)
        if tamper.bad_signature:
            secret = "whsec_" + base64.b64encode(b"not the secret you are looking for").decode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            response = await client.post(url, content=body, headers=headers, timeout=timeout_s)
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Attempt(
            webhook_id=webhook_id,
            event_id=event_id,
            type=event.type,
            video_id=event.video_id,
            attempt=attempt,
            timestamp=timestamp,
            status_code=status_code,
            error=error,
        )

"""Webhooks to your apps: `video.completed` / `video.failed` for each /v1/videos video.

The store writes one outbox row per event and URL in the same transaction as the change it
announces (`store._announce`), so nothing is announced that did not happen and nothing that
happened goes unannounced. A sender (in every worker, and in each cron cycle) claims due rows
by pushing their next attempt a minute ahead, POSTs each signed per Standard Webhooks
(`standardwebhooks`, the library the receiving side verifies with) in the Videos API's
payload, and records the attempt: delivered, or tried again with backoff and jitter (a
`Retry-After` is honoured) for up to 72 hours. A sender that dies mid-attempt leaves the row
due again, so a delivery can arrive twice (at least once; receivers dedupe on `webhook-id`)
but is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import datetime, timedelta

import httpx
import standardwebhooks
import structlog

import reelwatch
from reelwatch import clock
from reelwatch.models import Outbound
from reelwatch.providers import base
from reelwatch.store import Store

log = structlog.get_logger("reelwatch.outbox")

BATCH = 32  # deliveries claimed (and sent concurrently) at a time
LEASE_S = 60.0  # a claimed attempt is retried after this if its sender vanished
GIVE_UP_AFTER = timedelta(hours=72)
MAX_DELAY_S = 3600.0
IDLE_S = 1.0  # how often an idle sender looks for due deliveries
USER_AGENT = f"reelwatch/{reelwatch.__version__} (webhooks)"


class Sender:
    """Sends the outbox's due deliveries; `run` until stopped, or `run_once` (cron)."""

    def __init__(
        self,
        store: Store,
        *,
        secret: str,
        the_clock: clock.Clock,
        timeout_s: float,
        retry_base_s: float,
    ) -> None:
        self._store = store
        self._signer = standardwebhooks.Webhook(secret)
        self._clock = the_clock
        self._retry_base_s = retry_base_s
        # No redirects: a 3xx is a failed delivery (as the Videos API's own webhooks count it).
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), follow_redirects=False
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except Exception as exc:  # a database hiccup: the rows stay due; try again
                log.warning(f"webhook sender: {exc}", action="webhook_out_error")
                sent = 0
            if sent == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_S)

    async def run_once(self) -> int:
        """Send what is due now; how many attempts were made."""
        due = await self._store.due_webhooks(now=self._clock.now(), limit=BATCH, lease_s=LEASE_S)
        await asyncio.gather(*(self._send(outbound) for outbound in due))
        return len(due)

    async def _send(self, outbound: Outbound) -> None:
        now = self._clock.now()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": outbound.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(outbound.webhook_id, now, outbound.body),
        }
        wait: float | None = None
        try:
            response = await self._http.post(
                outbound.url, content=outbound.body.encode(), headers=headers
            )
            delivered = 200 <= response.status_code < 300
            detail = f"HTTP {response.status_code}"
            if response.status_code in (429, 503):
                wait = base.retry_after_s(dict(response.headers), now)
        except httpx.HTTPError as exc:
            delivered, detail = False, f"{type(exc).__name__}: {exc}"[:200]
        done_at = self._clock.now()
        next_at = None if delivered else self._next_attempt(outbound, done_at, wait)
        await self._store.webhook_attempted(
            outbound, now=done_at, delivered=delivered, detail=detail, next_at=next_at
        )
        log.info(
            f"webhook {outbound.event_type} to {outbound.url}: {detail}",
            action="webhook_out",
            generation=outbound.generation_id,
            attempt=outbound.attempts,
            delivered=delivered,
        )

    def _next_attempt(
        self, outbound: Outbound, now: datetime, retry_after_s: float | None
    ) -> datetime | None:
        """Backoff with jitter (`retry_base_s` doubling up to an hour, or the receiver's
        Retry-After if longer); None once 72 hours have passed: given up."""
        if now - outbound.created_at >= GIVE_UP_AFTER:
            return None
        delay = min(MAX_DELAY_S, self._retry_base_s * 2 ** (outbound.attempts - 1))
        delay *= random.uniform(0.5, 1.0)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_DELAY_S))
        return now + timedelta(seconds=delay)

    async def aclose(self) -> None:
        await self._http.aclose()

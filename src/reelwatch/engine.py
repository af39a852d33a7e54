"""The worker: claim due generations, ask the provider concurrently, apply what follows.

One path for everything: `advance` takes one claimed generation one step (submit, reconcile,
poll or download) and is used by the continuous worker, by `worker --once` and the cron route
(`cycle`), and by `submit` itself. One generation's failure never stops the others; no lease is
held while sleeping; a 429 pauses this worker's calls to the provider until Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from reelwatch import clock, downloads, exceptions, lifecycle, schedule, storage

if TYPE_CHECKING:
    from reelwatch import metrics
from reelwatch.models import ErrorInfo, Generation, RemoteStatus, RemoteVideo, Status, Variant
from reelwatch.providers.base import CreateRequest, Provider
from reelwatch.settings import Settings
from reelwatch.store import Claim, Store

log = structlog.get_logger("reelwatch.engine")

LOOK_AGAIN_S = 1.0  # the longest an idle worker goes without looking for due rows


@dataclasses.dataclass(slots=True)
class Summary:
    """What one cycle did, in the seed's cron summary shape (see `to_json`)."""

    processed: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    errors: int = 0
    duration_s: float = 0.0

    def count(self, before: Status, after: Generation) -> None:
        if after.status is before:
            return
        if after.status is Status.COMPLETED:
            self.completed += 1
        elif after.timed_out:
            self.timed_out += 1
        elif after.status is Status.FAILED:
            self.failed += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "success": True,
            "message": (
                f"Processed {self.processed} generation(s): {self.completed} completed, "
                f"{self.failed} failed, {self.timed_out} timed out, {self.errors} errors"
            ),
            "processed": self.processed,
            "results": {
                "success": self.completed,
                "failed": self.failed,
                "timedOut": self.timed_out,
                "errors": self.errors,
            },
            "duration": round(self.duration_s, 3),
        }


class Budget:
    """A token bucket of provider requests per minute, refilled from the clock.

    The worker claims no more generations than the bucket holds, so it never has to wait for a
    token while holding a lease.
    """

    def __init__(self, per_minute: int, clock: clock.Clock) -> None:
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, per_minute / 6.0)  # at most ten seconds' worth at once
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock.now()

    def available(self) -> int:
        now = self._clock.now()
        elapsed = max(0.0, (now - self._at).total_seconds())
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._at = now
        return max(0, int(self._tokens))

    def spend(self, n: int = 1) -> None:
        self._tokens -= n

    def wait_s(self) -> float:
        """Seconds until at least one token is there again (0 if one is there now)."""
        self.available()
        return max(0.0, (1.0 - self._tokens) / self._rate)


def policy_from(settings: Settings) -> schedule.Policy:
    return schedule.Policy(
        timeout_s=settings.timeout_seconds,
        poll_min_s=settings.poll_min_seconds,
        poll_max_s=settings.poll_max_seconds,
        webhook_poll_s=settings.webhook_poll_seconds if settings.webhooks_enabled else None,
        backoff_base_s=settings.backoff_base_seconds,
        backoff_max_s=settings.backoff_max_seconds,
        # A create that timed out may still be running at the provider: give it time to show
        # up in the list before deciding it never happened.
        reconcile_delay_s=settings.request_timeout_seconds + 10.0,
    )


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        provider: Provider,
        storage: storage.LocalStorage,
        settings: Settings,
        clock: clock.Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.policy = policy_from(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.variants = [Variant(v) for v in settings.variants]
        self._rng = rng or random.Random()
        self._budget = Budget(settings.requests_per_minute, clock)
        self.metrics: metrics.Metrics | None = None
        self.progress_every_s = min(1.0, settings.lease_seconds / 3)  # download progress reports
        self._paused_until: datetime | None = None
        self._wake = asyncio.Event()

    # --- one cycle (worker --once, cron) ----------------------------------------------------

    async def cycle(self) -> Summary:
        """Claim what is due now, take each one step concurrently, and report.

        Claims come in waves of at most `concurrency`, each claimed only when it can start at
        once, so no lease ages while its generation waits for a free slot; up to
        `batch_size` generations per cycle.
        """
        started = time.perf_counter()
        summary = Summary()
        while summary.processed < self.settings.batch_size:
            room = min(self.settings.concurrency, self.settings.batch_size - summary.processed)
            claims = await self._claim(room)
            if not claims:
                break
            summary.processed += len(claims)
            async with asyncio.TaskGroup() as group:
                for claim in claims:
                    group.create_task(
                        self._guarded(claim, summary), name=f"advance-{claim.generation.id}"
                    )
            if len(claims) < room:
                break
        summary.duration_s = time.perf_counter() - started
        return summary

    # --- the continuous worker --------------------------------------------------------------

    def wake(self) -> None:
        """Look for due work now (a webhook or a new submission arrived)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, grace_s: float = 10.0) -> None:
        """Work until `stop` is set; then stop claiming, let in-flight work finish, release.

        Claims as many due generations as there are free slots (and request budget), then
        waits for the first of: a slot freeing, a wake-up, the next due time, or `stop`.
        """
        inflight: set[asyncio.Task[None]] = set()
        freed = asyncio.Event()
        summary = Summary()

        def done(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            freed.set()

        log.info("worker started", action="worker_start", owner=self.owner)
        while not stop.is_set():
            freed.clear()
            self._wake.clear()
            free = self.settings.concurrency - len(inflight)
            wanted = min(free, self.settings.batch_size)
            claims = await self._claim(wanted) if wanted > 0 else []
            for claim in claims:
                task = asyncio.create_task(
                    self._guarded(claim, summary), name=f"advance-{claim.generation.id}"
                )
                inflight.add(task)
                task.add_done_callback(done)
            if wanted == 0:
                await _first(stop, freed)  # every slot busy
            elif claims and len(claims) == wanted:
                await asyncio.sleep(0)  # there may be more due right now
            elif (budget_wait := self._budget.wait_s()) > 0:
                await _first(stop, within_s=budget_wait)  # out of requests for now
            else:
                await _first(stop, self._wake, freed, within_s=await self._idle_s())
        log.info("worker stopping", action="worker_stop", inflight=len(inflight))
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _idle_s(self) -> float:
        """How long the worker may sleep: until the next due row, and never long.

        Other processes (a CLI submit, the API, another worker's release) add due rows without
        telling this one, so the table is looked at again within `LOOK_AGAIN_S` at most; that
        is one indexed query, cheap next to any poll.
        """
        cap = min(self.settings.poll_max_seconds, LOOK_AGAIN_S)
        now = self.clock.now()
        if self._paused_until is not None and self._paused_until > now:
            return min(cap, (self._paused_until - now).total_seconds())
        due = await self.store.next_due_at()
        if due is None:
            return cap
        return max(0.0, min(cap, (due - now).total_seconds()))

    async def _claim(self, limit: int) -> list[Claim]:
        now = self.clock.now()
        if self._paused_until is not None and self._paused_until > now:
            return []
        limit = min(limit, self._budget.available())
        return await self.store.claim_due(
            owner=self.owner, now=now, limit=limit, lease_s=self.settings.lease_seconds
        )

    async def _guarded(self, claim: Claim, summary: Summary) -> None:
        """Advance one generation; whatever goes wrong stays with it."""
        try:
            after = await self.advance(claim)
            summary.count(claim.generation.status, after)
        except exceptions.LeaseLost:
            log.info("lease lost", action="lease_lost", generation=claim.generation.id)
        except asyncio.CancelledError:
            await asyncio.shield(self.store.release([claim]))
            raise
        except Exception as exc:
            summary.errors += 1
            log.exception("advance failed", action="advance_error", generation=claim.generation.id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            obs: lifecycle.Observation = lifecycle.Transient(reason)
            if claim.generation.status is Status.PENDING:
                obs = lifecycle.SubmitLost(reason)  # a create may have gone out: reconcile first
            with contextlib.suppress(Exception):
                await self._apply(claim, obs)

    # --- one step of one generation ---------------------------------------------------------

    async def advance(self, claim: Claim) -> Generation:
        """Take a claimed generation one step and release it; returns the stored result."""
        while True:
            observation = await self._observe(claim)
            expected = _follow_on(observation)
            claim = await self._apply(claim, observation, release=expected is None)
            if expected is None or claim.generation.status is not expected:
                break
        return claim.generation

    async def _apply(
        self, claim: Claim, observation: lifecycle.Observation, *, release: bool = True
    ) -> Claim:
        now = self.clock.now()
        decision = lifecycle.decide(
            claim.generation, observation, now, self.policy, self._rng.random()
        )
        claim, event = await self.store.apply(claim, decision, now=now, release=release)
        if self.metrics is not None:
            self.metrics.record(observation, decision)
        g = claim.generation
        log.info(
            f"{event.kind}: {g.step}",
            action=event.kind,
            generation=g.id,
            video_id=g.video_id,
            status=g.status.value,
            outcome=type(observation).__name__,
            latency_ms=event.data.get("latency_ms"),
        )
        if isinstance(observation, lifecycle.RateLimited) and not observation.local:
            self._paused_until = g.next_poll_at
        return claim

    async def _observe(self, claim: Claim) -> lifecycle.Observation:
        g = claim.generation
        now = self.clock.now()
        if self._paused_until is not None and self._paused_until > now:
            wait = (self._paused_until - now).total_seconds()
            return lifecycle.RateLimited(wait, "this worker is paused after a 429", local=True)
        match g.status:
            case Status.PENDING if g.submit_ambiguous:
                return await self._call(self._reconcile(g), phase="reconcile")
            case Status.PENDING:
                await self.store.mark_submitting(claim, now=now)
                return await self._call(self._submit(g), phase="submit")
            case Status.DOWNLOADING:
                return await self._download(claim)
            case _:
                return await self._call(self._poll(g))

    async def _call(
        self, work: Awaitable[lifecycle.Observation], *, phase: str = "poll"
    ) -> lifecycle.Observation:
        """Run one provider call and turn its failure modes into observations.

        `phase` is "submit", "reconcile" or "poll": a 404 means a vanished job only for a poll,
        and an unanswered create is ambiguous (it may exist) rather than merely transient.
        """
        self._budget.spend()
        started = time.perf_counter()
        try:
            return await work
        except exceptions.ProviderRateLimited as exc:
            return lifecycle.RateLimited(exc.retry_after_s, exc.message)
        except exceptions.ProviderNotFound as exc:
            if phase == "submit":
                return lifecycle.SubmitRejected(ErrorInfo("not_found", exc.message), 404)
            if phase == "reconcile":
                return lifecycle.Transient(f"listing videos: HTTP 404: {exc.message}")
            return lifecycle.Vanished(exc.message, time.perf_counter() - started)
        except exceptions.ProviderRejected as exc:
            if phase == "submit":
                error = ErrorInfo(exc.error_code, exc.message)
                return lifecycle.SubmitRejected(error, exc.http_status)
            return lifecycle.Transient(f"HTTP {exc.http_status}: {exc.message}")
        except exceptions.ProviderUnavailable as exc:
            if phase == "submit":
                return lifecycle.SubmitLost(exc.message)
            return lifecycle.Transient(exc.message, time.perf_counter() - started)

    async def _submit(self, g: Generation) -> lifecycle.Observation:
        started = time.perf_counter()
        reference = self.storage.path(g.input_reference) if g.input_reference else None
        request = CreateRequest(g.prompt, g.model, g.seconds, g.size, reference)
        video = await self.provider.create(request)
        return lifecycle.Submitted(video, time.perf_counter() - started)

    async def _poll(self, g: Generation) -> lifecycle.Observation:
        assert g.video_id is not None
        started = time.perf_counter()
        video = await self.provider.retrieve(g.video_id)
        return lifecycle.Polled(video, time.perf_counter() - started)

    async def _reconcile(self, g: Generation) -> lifecycle.Observation:
        """Find a create whose answer was lost in the provider's list before resubmitting."""
        since = g.watch_started_at - timedelta(minutes=5)
        candidates: list[RemoteVideo] = []
        async for video in self.provider.recent(since=since):
            if _same_request(g, video):
                candidates.append(video)
        taken = await self.store.video_ids(self.provider.name, [v.video_id for v in candidates])
        free = [v for v in candidates if v.video_id not in taken]
        free.sort(key=lambda v: v.created_at or since)
        return lifecycle.Reconciled(free[0] if free else None)

    async def _download(self, claim: Claim) -> lifecycle.Observation:
        started = time.perf_counter()
        self._budget.spend(len(self.variants))

        async def report(variant: Variant, done: int, total: int | None) -> None:
            await self.store.download_progress(
                claim,
                variant=variant.value,
                done=done,
                total=total,
                now=self.clock.now(),
                lease_s=self.settings.lease_seconds,
            )

        try:
            result = await downloads.fetch(
                self.provider,
                self.storage,
                claim.generation,
                self.variants,
                progress=report,
                progress_every_s=self.progress_every_s,
            )
        except downloads.DownloadError as exc:
            return lifecycle.DownloadFailed(exc.message, exc.stored)
        return lifecycle.Downloaded(result.assets, time.perf_counter() - started)


def _same_request(g: Generation, video: RemoteVideo) -> bool:
    return (
        video.prompt == g.prompt
        and (video.model is None or video.model == g.model)
        and (video.size is None or video.size == g.size)
        and (video.seconds is None or video.seconds == str(g.seconds))
    )


def _follow_on(observation: lifecycle.Observation) -> Status | None:
    """The status in which the same step goes on, holding the lease: the download right after
    a completion is seen, the submission right after reconciling found nothing."""
    match observation:
        case lifecycle.Polled(video=video) | lifecycle.Submitted(video=video):
            return Status.DOWNLOADING if video.status is RemoteStatus.COMPLETED else None
        case lifecycle.Reconciled(video=None):
            return Status.PENDING
    return None


async def _first(*events: asyncio.Event, within_s: float | None = None) -> None:
    """Wait until any of the events is set, or the timeout passes."""
    waiters = [asyncio.create_task(e.wait(), name="wait-event") for e in events]
    try:
        await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

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
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from reelwatch import breaker, clock, downloads, exceptions, lifecycle, predict, schedule, storage

if TYPE_CHECKING:
    from reelwatch import metrics
from reelwatch.models import ErrorInfo, Generation, RemoteStatus, RemoteVideo, Status, Variant
from reelwatch.providers.base import CreateRequest, Provider, Ref, Upload
from reelwatch.settings import Settings
from reelwatch.store import Claim, Store, database_error

log = structlog.get_logger("reelwatch.engine")
HISTORY_TTL_S = 30.0  # how stale a worker's copy of a shape's render history may be
HISTORY_SHAPES = 1000  # shapes whose history a worker keeps at once

LOOK_AGAIN_S = 1.0  # the longest an idle worker goes without looking for due rows
RECONNECT_BASE_S = 0.25  # the loop's backoff after a database error: full jitter, capped
RECONNECT_MAX_S = 2.0
SWEEP_EVERY_S = 60.0  # how often the janitor looks for orphaned temp files
T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class Summary:
    """What one cycle did, in the seed's cron summary shape (see `to_json`)."""

    processed: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    errors: int = 0
    duration_s: float = 0.0

    def count(self, before: Generation, after: Generation) -> None:
        if after.failures > before.failures:
            self.errors += 1  # a call that failed (unreachable, 5xx, refused key): retried later
        if after.status is before.status:
            return
        if after.status is Status.COMPLETED:
            self.completed += 1
        elif after.timed_out:
            self.timed_out += 1
        elif after.status is Status.FAILED:
            self.failed += 1

    def add(self, other: Summary) -> None:
        """Fold another engine's cycle into this one (one summary for several providers)."""
        self.processed += other.processed
        self.completed += other.completed
        self.failed += other.failed
        self.timed_out += other.timed_out
        self.errors += other.errors
        self.duration_s += other.duration_s

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


@dataclasses.dataclass(slots=True)
class Health:
    """What `/readyz` and the supervisor need to know about a running loop."""

    running: bool = False
    last_loop_at: float | None = None  # monotonic time of the last step that reached the DB
    db_error: str | None = None  # the last database error, until a step succeeds again
    db_error_since: float | None = None
    stopped_because: str | None = None  # why the loop last ended with an error

    def trouble(self, *, stalled_after_s: float) -> str | None:
        """Why this worker is not ready, in words; None when it is."""
        if not self.running:
            why = f": {self.stopped_because}" if self.stopped_because else ""
            return f"worker not running{why}"
        if self.db_error is not None:
            return f"worker cannot reach the database: {self.db_error}"
        if self.last_loop_at is not None and time.monotonic() - self.last_loop_at > stalled_after_s:
            return f"worker stalled: no step for over {stalled_after_s:g}s"
        return None


RESTART_MAX_S = 30.0


async def supervised(engine: Engine, stop: asyncio.Event) -> None:
    """Run the worker until `stop`; if it ever dies (it survives database errors itself, so
    this is a bug or a schema of another version), log it in one line and start it again,
    backing off (what `serve` runs; a standalone worker exits instead, and its supervisor,
    systemd or the like, restarts it)."""
    delay = 1.0
    while not stop.is_set():
        try:
            await engine.run(stop)
        except Exception as exc:
            reason = exc.message if isinstance(exc, exceptions.ReelwatchError) else repr(exc)
            engine.health.stopped_because = reason
            log.error(f"worker stopped: {reason}; restarting in {delay:g}s", action="worker_died")
            await _first(stop, within_s=delay)
            delay = min(RESTART_MAX_S, delay * 2)
        else:
            return


class Histories:
    """The render history of each shape, read from the store at most every `HISTORY_TTL_S`
    (every worker writes the history; each process reads it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._read: dict[str, tuple[float, predict.History]] = {}

    async def get(self, g: Generation) -> predict.History:
        shape = predict.shape_of(g)
        moment = time.monotonic()
        cached = self._read.get(shape)
        if cached is not None and moment - cached[0] < HISTORY_TTL_S:
            return cached[1]
        history = predict.History(await self._store.renders(shape))
        if len(self._read) >= HISTORY_SHAPES:
            self._read.clear()
        self._read[shape] = (moment, history)
        return history

    def last(self, g: Generation) -> predict.History | None:
        """The history of the generation's shape as last read, without reading."""
        cached = self._read.get(predict.shape_of(g))
        return None if cached is None else cached[1]


# How far before a create was sent its job may be dated by the provider's clock.
RECONCILE_SKEW = timedelta(minutes=2)
LISTING_AGAIN_S = 2.0  # a reconcile that found a walk of the list under way looks again


class Listing:
    """One walk of the provider's recent jobs, shared by every lost create it can answer.

    A burst of timed-out creates (a provider slowing under load) used to walk the list once
    per create, each walk going back minutes and costing pages of requests and parsing: the
    load then made more creates time out. A walk taken at moment T shows every job created
    before T, so it answers any create that should be visible by T. One walk at a time: a
    reconcile that arrives while one runs is told to ask again shortly (None) rather than
    wait for it, so it does not hold a worker slot that status checks need (waiting did: a
    burst of reconciles stalled every poll behind one slow walk)."""

    def __init__(self, provider: Provider, clock: clock.Clock) -> None:
        self._provider = provider
        self._clock = clock
        self._turn = asyncio.Lock()
        self._taken_at: datetime | None = None
        self._since: datetime | None = None
        self._videos: list[RemoteVideo] = []
        self.walks = 0

    async def since(self, since: datetime, *, visible_by: datetime) -> list[RemoteVideo] | None:
        """The jobs created after `since`, from a walk taken no earlier than `visible_by`; None
        while another walk is under way (ask again once it is done)."""
        fresh = self._taken_at is not None and self._taken_at >= visible_by
        if not (fresh and self._since is not None and self._since <= since):
            if self._turn.locked():
                return None
            async with self._turn:
                taken_at = self._clock.now()
                videos = [v async for v in self._provider.recent(since=since)]
                self._taken_at, self._since, self._videos = taken_at, since, videos
                self.walks += 1
        return [v for v in self._videos if v.created_at is None or v.created_at >= since]


def policy_from(settings: Settings, *, webhooks: bool = False) -> schedule.Policy:
    """The schedule for one provider: with its webhooks on, polls are only a safety net."""
    return schedule.Policy(
        timeout_s=settings.timeout_seconds,
        poll_min_s=settings.poll_min_seconds,
        poll_max_s=settings.poll_max_seconds,
        webhook_poll_s=settings.webhook_poll_seconds if webhooks else None,
        backoff_base_s=settings.backoff_base_seconds,
        backoff_max_s=settings.backoff_max_seconds,
        # A create that timed out may still be running at the provider: give it time to show
        # up in the list before deciding it never happened.
        reconcile_delay_s=settings.request_timeout_seconds + 10.0,
        look_worth_s=settings.poll_look_worth_seconds,
    )


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        provider: Provider,
        storage: storage.Storage,
        settings: Settings,
        clock: clock.Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.policy = policy_from(settings, webhooks=provider.webhooks_enabled)
        self.name = provider.catalogue.name
        self.endpoint = provider.endpoint
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        offered = provider.catalogue.capabilities.variants
        self.variants = [Variant(v) for v in settings.variants if Variant(v) in offered]
        self._rng = rng or random.Random()
        self.metrics: metrics.Metrics | None = None
        self.health = Health()
        self.breaker = breaker.Breaker()
        self.progress_every_s = min(1.0, settings.lease_seconds / 3)  # download progress reports
        self._paused_until: datetime | None = None  # this worker's copy of the shared pause
        self._budget_wait_s = 0.0  # how long the shared budget said to wait, at the last claim
        self._swept_at: float | None = None
        self._wake = asyncio.Event()
        self.histories = Histories(store)
        self.listing = Listing(provider, clock)

    # --- one cycle (worker --once, cron) ----------------------------------------------------

    async def cycle(self) -> Summary:
        """Claim what is due now, take each one step concurrently, and report.

        Claims come in waves of at most `concurrency`, each claimed only when it can start at
        once, so no lease ages while its generation waits for a free slot; up to
        `batch_size` generations per cycle.
        """
        started = time.perf_counter()
        summary = Summary()
        await self._sweep()
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
        Supervised from inside: a database error in any step of the loop is logged in one
        line and retried after a short jittered backoff, however long the outage; only an
        error no retry can fix (a missing schema) ends the loop, with that error.
        """
        inflight: set[asyncio.Task[None]] = set()
        freed = asyncio.Event()
        summary = Summary()
        errors_in_a_row = 0

        def done(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            freed.set()

        log.info("worker started", action="worker_start", owner=self.owner)
        self._up(True)
        try:
            while not stop.is_set():
                try:
                    await self._loop_step(stop, freed, inflight, done, summary)
                except Exception as exc:
                    fatal = database_error(exc)
                    if fatal is None:
                        raise
                    if fatal.fatal:
                        raise exceptions.DatabaseUnavailable(
                            f"the database cannot be used (is its schema this version's?): "
                            f"{fatal.reason}"
                        ) from exc
                    errors_in_a_row += 1
                    delay = self._reconnect_s(errors_in_a_row)
                    self._db_failed(fatal.reason)
                    log.warning(
                        f"database error, retrying in {delay:.1f}s: {fatal.reason}",
                        action="db_error",
                        retry_in_s=round(delay, 2),
                        errors_in_a_row=errors_in_a_row,
                    )
                    await _first(stop, within_s=delay)
                else:
                    if errors_in_a_row:
                        log.info("database reachable again", action="db_recovered")
                    errors_in_a_row = 0
        finally:
            log.info("worker stopping", action="worker_stop", inflight=len(inflight))
            if inflight:
                _, pending = await asyncio.wait(inflight, timeout=grace_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            self._up(False)

    async def _loop_step(
        self,
        stop: asyncio.Event,
        freed: asyncio.Event,
        inflight: set[asyncio.Task[None]],
        done: Any,
        summary: Summary,
    ) -> None:
        freed.clear()
        self._wake.clear()
        await self._sweep()
        free = self.settings.concurrency - len(inflight)
        wanted = min(free, self.settings.batch_size)
        claims = await self._claim(wanted) if wanted > 0 else []
        self._db_ok()
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
        elif self._budget_wait_s > 0:
            await _first(stop, within_s=min(self._budget_wait_s, LOOK_AGAIN_S * 10))
        elif self.breaker.allowance(self.clock.now()) == 0:
            # The circuit is open, or its probe is out: nothing to claim until it answers.
            await _first(stop, self._wake, freed, within_s=LOOK_AGAIN_S)
        else:
            await _first(stop, self._wake, freed, within_s=await self._idle_s())

    def _reconnect_s(self, errors_in_a_row: int) -> float:
        ceiling = min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2.0 ** min(errors_in_a_row - 1, 10))
        return max(0.05, self._rng.random() * ceiling)

    def _up(self, running: bool) -> None:
        self.health.running = running
        if self.metrics is not None:
            self.metrics.worker_up.set(1 if running else 0)

    def _db_ok(self) -> None:
        self.health.last_loop_at = time.monotonic()
        self.health.db_error = None
        self.health.db_error_since = None

    def _db_failed(self, reason: str) -> None:
        if self.health.db_error_since is None:
            self.health.db_error_since = time.monotonic()
        self.health.db_error = reason
        if self.metrics is not None:
            self.metrics.database_errors.inc()

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
        if (wait := self.breaker.wait_s(now)) > 0:
            return min(cap, wait)
        due = await self.store.next_due_at(self.endpoint)
        if due is None:
            return cap
        return max(0.0, min(cap, (due - now).total_seconds()))

    async def _claim(self, limit: int) -> list[Claim]:
        """Claim due rows of this provider, as many as the shared pause, the shared request
        budget and this worker's circuit breaker allow."""
        now = self.clock.now()
        self._budget_wait_s = 0.0
        if self._paused_until is not None and self._paused_until > now:
            return []
        allowed = self.breaker.allowance(now)
        if allowed is not None:
            limit = min(limit, allowed)
        if limit <= 0:
            return []
        claims, gate = await self.store.claim_for(
            self.endpoint,
            owner=self.owner,
            now=now,
            limit=limit,
            lease_s=self.settings.lease_seconds,
            per_minute=self.settings.requests_per_minute,
        )
        self._budget_wait_s = gate.budget_wait_s
        if gate.paused_until is not None and gate.paused_until > now:
            self._paused_until = gate.paused_until  # another worker met a 429
        return claims

    async def _sweep(self) -> None:
        """Remove temp files orphaned by a process that died mid-download, and files past
        their retention (at most a minute apart); a temp file untouched for twice the longest
        silence a live download allows."""
        if self._swept_at is not None and time.monotonic() - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = time.monotonic()
        await self.retain()
        quiet_s = 2 * max(self.settings.lease_seconds, self.settings.request_timeout_seconds)
        try:
            removed = await self.storage.sweep(older_than_s=quiet_s, now_s=time.time())
        except OSError as exc:
            log.warning(f"temp file sweep failed: {exc}", action="sweep_error")
            return
        if removed:
            log.info(f"removed {removed} orphaned temp file(s)", action="sweep", removed=removed)
            if self.metrics is not None:
                self.metrics.temp_removed.inc(removed)

    async def retain(self, *, batch: int = 100) -> int:
        """Delete the stored files of this provider's generations completed more than
        REELWATCH_RETENTION_DAYS ago, each with an `assets_deleted` event; how many.

        The files go first, then the row stops pointing at them: a crash in between leaves a
        row whose files are gone, which the next pass finishes (deleting is idempotent), never
        a file no row knows. Several workers may race on one: the second finds nothing left."""
        days = self.settings.retention_days
        if days is None:
            return 0
        now = self.clock.now()
        deleted = 0
        try:
            due = await self.store.stored_before(
                self.provider.catalogue.name, now - timedelta(days=days), limit=batch
            )
            for g in due:
                for asset in g.assets.values():
                    await self.storage.delete(asset.key)
                with contextlib.suppress(exceptions.NotAllowed, exceptions.NotFound):
                    await self.store.act(
                        g.id,
                        lambda current: lifecycle.assets_deleted(current, retention_days=days),
                        now=now,
                    )
                    deleted += 1
        except (OSError, exceptions.ReelwatchError) as exc:
            log.warning(f"retention pass failed: {exc}", action="retention_error")
        if deleted:
            log.info(f"deleted the files of {deleted} generation(s)", action="retention")
        return deleted

    async def _guarded(self, claim: Claim, summary: Summary) -> None:
        """Advance one generation; whatever goes wrong stays with it."""
        current = [claim]  # where `advance` has got to, so a failure is written on top of it
        try:
            after = await self.advance(claim, prepaid=1, current=current)
            summary.count(claim.generation, after)
        except exceptions.LeaseLost:
            log.info("lease lost", action="lease_lost", generation=claim.generation.id)
        except asyncio.CancelledError:
            await asyncio.shield(self.store.release([claim]))
            raise
        except Exception as exc:
            summary.errors += 1
            trouble = database_error(exc)
            if trouble is not None:
                self._db_failed(trouble.reason)
                log.warning(
                    f"database error on {claim.generation.id}: {trouble.reason}",
                    action="db_error",
                    generation=claim.generation.id,
                )
                await self._release_when_back(current[-1])
                return
            log.exception("advance failed", action="advance_error", generation=claim.generation.id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await self._apply(current[-1], lifecycle.Crashed(reason))

    async def _release_when_back(self, claim: Claim) -> None:
        """Give the lease back as soon as the database answers again, so the generation moves
        on within seconds of an outage rather than when its lease runs out. Whether the failed
        write committed is unknown; the token makes this harmless either way (a committed
        release left no token to match)."""
        deadline = time.monotonic() + self.settings.lease_seconds
        tries = 0
        while time.monotonic() < deadline:
            try:
                await self.store.release([claim])
                return
            except Exception as exc:
                if database_error(exc) is None:
                    raise
                tries += 1
                await asyncio.sleep(self._reconnect_s(tries))

    # --- one step of one generation ---------------------------------------------------------

    async def advance(
        self, claim: Claim, *, prepaid: int = 0, current: list[Claim] | None = None
    ) -> Generation:
        """Take a claimed generation one step and release it; returns the stored result.

        `prepaid` is how many provider requests the claim already took from the shared budget
        (a claim takes one); any beyond are taken as they are made. `current`, if given, is
        kept pointing at the claim as last written (a step may write more than once).
        """
        paid = _Paid(prepaid)
        current = current if current is not None else [claim]
        if claim.generation.claims > lifecycle.POISON_CLAIMS:
            claim = await self._apply(claim, lifecycle.Quarantined(claim.generation.claims - 1))
            log.warning(
                f"{claim.generation.id} quarantined: claimed too often without a step",
                action="quarantined",
                generation=claim.generation.id,
            )
            return claim.generation
        while True:
            claim, observation = await self._observe(claim, paid)
            current.append(claim)
            expected = _follow_on(observation)
            claim = await self._apply(claim, observation, release=expected is None)
            current.append(claim)
            if expected is None or claim.generation.status is not expected:
                break
        return claim.generation

    async def _apply(
        self, claim: Claim, observation: lifecycle.Observation, *, release: bool = True
    ) -> Claim:
        now = self.clock.now()
        history = None
        if isinstance(observation, lifecycle.Polled | lifecycle.Submitted | lifecycle.Reconciled):
            history = await self.histories.get(claim.generation)
        decision = lifecycle.decide(
            claim.generation, observation, now, self.policy, self._rng.random(), history
        )
        claim, _ = await self.store.apply(claim, decision, now=now, release=release)
        if self.metrics is not None:
            self.metrics.record(observation, decision)
        g, event = claim.generation, decision.event
        log.info(
            f"{event.kind}: {g.step}",
            action=event.kind,
            generation=g.id,
            video_id=g.video_id,
            status=g.status.value,
            outcome=type(observation).__name__,
            latency_ms=event.data.get("latency_ms"),
        )
        match observation:
            case (
                lifecycle.RateLimited(local=False) | lifecycle.DownloadFailed(code="rate_limited")
            ) if g.next_poll_at is not None:
                await self._pause(g.next_poll_at, now)
        return claim

    async def _pause(self, until: datetime, now: datetime) -> None:
        """A 429: this worker stops at once, and every other worker of the provider at its
        next claim (the pause is a row they all read)."""
        if self._paused_until is None or self._paused_until < until:
            self._paused_until = until
        await self.store.pause(self.endpoint.key, until=until, now=now)

    async def _observe(self, claim: Claim, paid: _Paid) -> tuple[Claim, lifecycle.Observation]:
        g = claim.generation
        now = self.clock.now()
        if self._paused_until is not None and self._paused_until > now:
            wait = (self._paused_until - now).total_seconds()
            return claim, lifecycle.RateLimited(wait, "paused after a 429", local=True)
        if self.breaker.state(now) is breaker.State.OPEN:
            until = self.breaker.reopens_at
            return claim, lifecycle.Wait(until, "the provider keeps failing (circuit open)")
        if paid.requests == 0:
            # Not claimed through the shared gate just now (a submit, an admin's "now", a
            # follow-on step): read the provider's pause before sending anything.
            gate = await self.store.gate(self.endpoint.key)
            if gate.paused_until is not None and gate.paused_until > now:
                self._paused_until = max(self._paused_until or now, gate.paused_until)
                wait = (gate.paused_until - now).total_seconds()
                return claim, lifecycle.RateLimited(wait, "paused after a 429", local=True)
        match g.status:
            case Status.PENDING if g.submit_ambiguous:
                sent = g.submit_started_at
                ready = sent + timedelta(seconds=self.policy.reconcile_delay_s) if sent else now
                if ready > now:
                    # A create sent moments ago may still be running or about to show up in
                    # the list: looking now could find nothing and pay again.
                    return claim, lifecycle.Wait(ready, "a create is in flight")
                return claim, await self._call(claim, paid, self._reconcile(g), "reconcile")
            case Status.PENDING:
                if (
                    claim.lease_expires_at - now
                ).total_seconds() < self.settings.request_timeout_seconds:
                    # Not enough lease left to see a create through (this process stalled):
                    # sending now could race a worker that takes the row over.
                    raise exceptions.LeaseLost("too little lease left to send a create")
                claim = await self.store.mark_submitting(
                    claim, now=now, reconcile_after_s=self.policy.reconcile_delay_s
                )
                submit = self._submit(claim.generation)
                return claim, await self._call(claim, paid, submit, "submit")
            case Status.DOWNLOADING if g.expires_at is not None and now >= g.expires_at:
                # Nothing left to fetch: no request for a copy that is gone.
                expired = lifecycle.DownloadFailed("the provider's copy has expired")
                return claim, expired
            case Status.DOWNLOADING:
                return claim, await self._download(claim, paid)
            case _:
                return claim, await self._call(claim, paid, self._poll(g))

    async def _call(
        self,
        claim: Claim,
        paid: _Paid,
        work: Awaitable[lifecycle.Observation],
        phase: str = "poll",
    ) -> lifecycle.Observation:
        """Run one provider call and turn its failure modes into observations.

        `phase` is "submit", "reconcile" or "poll": a 404 means a vanished job only for a poll,
        and an unanswered create is ambiguous (it may exist) rather than merely transient.
        The lease is renewed while the call runs (a create or a list can be slow), and the
        circuit breaker is told how it went.
        """
        await self._spend(paid, 1)
        self.breaker.started(self.clock.now())
        started = time.perf_counter()
        try:
            observation = await self._holding(claim, work)
        except exceptions.ProviderUnreachable as exc:
            self._breaker_failed()
            latency = time.perf_counter() - started
            return lifecycle.Transient(exc.message, latency, nothing_created=phase == "submit")
        except exceptions.ProviderUnavailable as exc:
            self._breaker_failed()
            if phase == "submit":
                return lifecycle.SubmitLost(exc.message)
            return lifecycle.Transient(exc.message, time.perf_counter() - started)
        except exceptions.ProviderError as exc:
            self._breaker_ok()
            return _refusal(exc, phase, time.perf_counter() - started)
        self._breaker_ok()
        return observation

    def _breaker_ok(self) -> None:
        self.breaker.succeeded()
        if self.metrics is not None:
            self.metrics.circuit_open.labels(self.name).set(0)

    def _breaker_failed(self) -> None:
        if self.breaker.failed(self.clock.now()):
            log.warning(
                f"{self.name} keeps failing: circuit open for {self.breaker.open_for_s:g}s",
                action="circuit_open",
                provider=self.name,
            )
            if self.metrics is not None:
                self.metrics.circuit_open.labels(self.name).set(1)

    async def _spend(self, paid: _Paid, requests: int) -> None:
        """Take requests from the shared budget, beyond what the claim already took."""
        covered = min(paid.requests, requests)
        paid.requests -= covered
        if requests > covered:
            await self.store.spend(self.endpoint.key, requests - covered)

    async def _holding(self, claim: Claim, work: Awaitable[T]) -> T:
        """Await `work` while renewing the claim's lease every third of the lease time.

        A renewal that fails on a database error is tried again at the next tick; one that
        finds the lease gone stops renewing (the write at the end will be refused).
        """
        every_s = self.settings.lease_seconds / 3

        async def renew() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await self.store.extend(
                        claim, now=self.clock.now(), lease_s=self.settings.lease_seconds
                    )
                except exceptions.LeaseLost:
                    log.warning("lease lost during a call", generation=claim.generation.id)
                    return
                except Exception as exc:
                    if database_error(exc) is None:
                        log.exception("lease renewal failed", generation=claim.generation.id)
                        return
                    log.warning("lease renewal failed", generation=claim.generation.id)

        renewer = asyncio.create_task(renew(), name=f"renew-{claim.generation.id}")
        try:
            return await work
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _submit(self, g: Generation) -> lifecycle.Observation:
        started = time.perf_counter()
        reference = None
        if g.input_reference:
            name = g.input_reference.rsplit("/", 1)[-1]
            reference = Upload(name, await self.storage.read(g.input_reference))
        request = CreateRequest(g.prompt, g.model, g.params, reference)
        video = await self.provider.create(request)
        return lifecycle.Submitted(video, time.perf_counter() - started)

    async def _poll(self, g: Generation) -> lifecycle.Observation:
        assert g.video_id is not None
        started = time.perf_counter()
        video = await self.provider.retrieve(Ref(g.video_id, g.remote))
        return lifecycle.Polled(video, time.perf_counter() - started)

    async def _reconcile(self, g: Generation) -> lifecycle.Observation:
        """Find a create whose answer was lost in the provider's list before resubmitting.

        A provider without a list cannot say whether it took the job: resubmitting could pay
        twice, so a person decides (`create_unknown`)."""
        if not self.provider.catalogue.capabilities.can_list:
            return lifecycle.CreateUnknown()
        sent = g.submit_started_at or g.watch_started_at
        since = sent - RECONCILE_SKEW
        visible_by = min(sent + timedelta(seconds=self.policy.reconcile_delay_s), self.clock.now())
        listed = await self.listing.since(since, visible_by=visible_by)
        if listed is None:
            again = self.clock.now() + timedelta(seconds=LISTING_AGAIN_S)
            return lifecycle.Wait(again, "another lost create is being looked for in the list")
        candidates = [video for video in listed if _same_request(g, video)]
        taken = await self.store.video_ids(self.name, [v.video_id for v in candidates])
        free = [v for v in candidates if v.video_id not in taken]
        free.sort(key=lambda v: v.created_at or since)
        return lifecycle.Reconciled(free[0] if free else None)

    async def _download(self, claim: Claim, paid: _Paid) -> lifecycle.Observation:
        started = time.perf_counter()
        await self._spend(paid, len(self.variants))
        held = claim

        async def report(variant: Variant, done: int, total: int | None) -> None:
            # Progress renews the lease. If the database is unreachable the download goes on
            # while the lease lasts, and stops (without storing anything) once it is nearly
            # gone, because another worker may then take the generation over.
            nonlocal held
            now = self.clock.now()
            try:
                held = await self.store.download_progress(
                    held,
                    variant=variant.value,
                    done=done,
                    total=total,
                    now=now,
                    lease_s=self.settings.lease_seconds,
                )
            except exceptions.LeaseLost:
                raise
            except Exception as exc:
                trouble = database_error(exc)
                if trouble is None:
                    raise
                margin = timedelta(seconds=min(5.0, self.settings.lease_seconds / 4))
                if now >= held.lease_expires_at - margin:
                    raise exceptions.LeaseLost(
                        f"lease about to expire and cannot be renewed: {trouble.reason}"
                    ) from exc

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
            # Not told to the circuit breaker: a cut or slow file is that file's trouble (it
            # has its own backoff), and must not stop the status checks of everything else.
            return lifecycle.DownloadFailed(
                exc.message, exc.stored, code=exc.code, retry_after_s=exc.retry_after_s
            )
        return lifecycle.Downloaded(result.assets, time.perf_counter() - started)


@dataclasses.dataclass(slots=True)
class _Paid:
    """Provider requests one step has already taken from the shared budget, not yet made."""

    requests: int


def _refusal(exc: exceptions.ProviderError, phase: str, latency_s: float) -> lifecycle.Observation:
    """A provider's answer that refuses the call (429, 404, other 4xx) as an observation."""
    match exc:
        case exceptions.ProviderRateLimited():
            return lifecycle.RateLimited(
                exc.retry_after_s, exc.message, nothing_created=phase == "submit"
            )
        case exceptions.ProviderNotFound():
            if phase == "submit":
                return lifecycle.SubmitRejected(ErrorInfo("not_found", exc.message), 404)
            if phase == "reconcile":
                return lifecycle.Transient(f"listing videos: HTTP 404: {exc.message}")
            return lifecycle.Vanished(exc.message, latency_s)
        case exceptions.ProviderRejected():
            if phase == "submit":
                return lifecycle.SubmitRejected(
                    ErrorInfo(exc.error_code, exc.message), exc.http_status
                )
            status = f"HTTP {exc.http_status}" if exc.http_status else exc.error_code
            return lifecycle.Transient(f"{status}: {exc.message}")
    return lifecycle.Transient(exc.message, latency_s)


def _same_request(g: Generation, video: RemoteVideo) -> bool:
    """Whether a listed job is this generation's: the prompt, and every input both name (the
    adapter reads a listed job's inputs into the same form it validated them into)."""
    if video.prompt != g.prompt:
        return False
    # A list may name the model without the version the request pinned (`owner/name:version`).
    if video.model is not None and video.model not in (g.model, g.model.partition(":")[0]):
        return False
    shared = set(video.params) & set(g.params)
    return all(video.params[name] == g.params[name] for name in shared)


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

"""Scenario 12: random interleavings of store verbs agree with a plain dict model.

A Hypothesis `RuleBasedStateMachine` drives the real `Store` (SQLite file and PostgreSQL):
creates, claims by several owners (due batch and by id), lease renewals, time travel past
leases, worker writes decided by `lifecycle.decide`, webhooks (also the same id twice at
once), admin reset/retry/cancel and killed workers. The model predicts every answer; after each
step the rows, leases, events and webhook deliveries must be exactly what it predicts.

The store is async and Hypothesis's state machine is not, so each machine keeps one
`asyncio.Runner` for its lifetime and runs every store call on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reelwatch import exceptions, lifecycle, schedule
from reelwatch.models import (
    ACTIVE,
    TERMINAL,
    Asset,
    Endpoint,
    ErrorInfo,
    EventKind,
    Generation,
    NewEvent,
    RemoteStatus,
    RemoteVideo,
    Status,
    Variant,
)
from reelwatch.store import Claim, Gate, Store, migrate, tables, urls

ENDPOINT = Endpoint("openai", "http://127.0.0.1:9/v1")

T = TypeVar("T")

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE_S = 30.0
WORKERS = ("w1", "w2", "w3")
MAX_GENERATIONS = 6
POLICY = schedule.Policy(
    timeout_s=300.0,
    poll_min_s=1.0,
    poll_max_s=30.0,
    backoff_base_s=1.0,
    backoff_max_s=60.0,
    queued_poll_s=5.0,
    reconcile_delay_s=10.0,
)
# Steps of time travel: below, exactly at and past a lease's end, and past the render timeout.
ADVANCES_S = (0.5, 7.0, LEASE_S, LEASE_S + 0.001, 61.0, POLICY.timeout_s + 1.0)
PER_MINUTE = 60.0  # the shared request budget: one a second, ten at most at once
MAX_EXAMPLES = 30
STEPS = 100

# The observations a worker meets in each status.
FITTING = {
    Status.PENDING: ["submitted", "rejected", "lost", "reconciled", "transient"],
    Status.QUEUED: ["polled", "polled", "vanished", "rate_limited", "transient"],
    Status.IN_PROGRESS: ["polled", "polled", "vanished", "rate_limited"],
    Status.DOWNLOADING: ["downloaded", "download_failed", "polled"],
}
SUBMITTING = frozenset({Status.PENDING})
RENDERING = frozenset({Status.QUEUED, Status.IN_PROGRESS})
DOWNLOADING = frozenset({Status.DOWNLOADING})
FOLLOW_ON = frozenset({Status.DOWNLOADING})
rands = st.floats(0.0, 1.0, exclude_max=True)


@dataclasses.dataclass(frozen=True)
class Lease:
    owner: str
    token: str
    expires_at: datetime


@dataclasses.dataclass
class Row:
    """What the model says one stored generation is."""

    generation: Generation
    lease: Lease | None


@dataclasses.dataclass
class ProviderState:
    """The provider's shared row: a 429 pause and the token bucket of the request budget."""

    paused_until: datetime | None
    tokens: float
    tokens_at: datetime


@dataclasses.dataclass(frozen=True)
class Expected:
    """An event the model expects the step to have appended."""

    generation_id: str
    kind: str
    status: Status
    webhook_id: str | None = None


class StoreMachine(RuleBasedStateMachine):
    """The real store on one side, dicts on the other; every step must agree."""

    url: ClassVar[str]
    totals: ClassVar[dict[str, int]]

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.store = self.run(Store.open(self.url, upgrade=False))
        self.sync = sa.create_engine(urls(self.url)[1])
        with self.sync.begin() as conn:
            # A fresh database for each example (migrated once by the test).
            for table in reversed(tables.metadata.sorted_tables):
                conn.execute(table.delete())
        self.now = T0
        self.rows: dict[str, Row] = {}
        self.held: dict[str, dict[str, Claim]] = {w: {} for w in WORKERS}
        self.webhooks: dict[str, str] = {}  # webhook id -> the result it got the first time
        self.webhook_applied: dict[str, int] = {}
        self.expected: list[Expected] = []
        self.provider: ProviderState | None = None
        self.last_event_id = self.run(self.store.last_event_id())
        self.counter = 0
        self.previous: dict[str, Generation] = {}
        self.admin_moved: set[str] = set()  # rows an admin reset/retry changed in this step
        self.totals["examples"] += 1

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return self.runner.run(wrapped())

    def teardown(self) -> None:
        self.run(self.store.close())
        self.sync.dispose()
        self.runner.close()

    # --- helpers ----------------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter:04d}"

    def step(self, name: str) -> None:
        self.totals["steps"] += 1
        downloading = [r for r in self.rows.values() if r.generation.status is Status.DOWNLOADING]
        self.totals["steps_with_a_download"] += bool(downloading)
        self.totals[name] = self.totals.get(name, 0) + 1
        self.admin_moved = set()

    def claimable(self, row: Row) -> bool:
        """Active and not leased (a lease ending exactly now still holds: `expires < now`)."""
        free = row.lease is None or row.lease.expires_at < self.now
        return row.generation.status in ACTIVE and free

    def holds(self, claim: Claim) -> bool:
        row = self.rows[claim.generation.id]
        return row.lease is not None and row.lease.token == claim.token

    def take(self, owner: str, claims: list[Claim], *, counted: bool = True) -> None:
        for claim in claims:
            gid = claim.generation.id
            row = self.rows[gid]
            if counted:  # every claim counts (poison pills); a written step clears the count
                row.generation = dataclasses.replace(
                    row.generation, claims=row.generation.claims + 1
                )
            assert claim.generation == row.generation, "a claim returned a stale row"
            self.rows[gid].lease = Lease(owner, claim.token, claim.lease_expires_at)
            self.held[owner][gid] = claim

    def due(self) -> list[str]:
        """The ids a due claim takes, in order: active, free, due; most overdue, then oldest."""
        due = [
            r.generation
            for r in self.rows.values()
            if self.claimable(r)
            and r.generation.next_poll_at is not None
            and r.generation.next_poll_at <= self.now
        ]
        due.sort(key=lambda g: (g.next_poll_at, g.created_at))
        return [g.id for g in due]

    def held_claims(self) -> list[tuple[str, str]]:
        return sorted((w, gid) for w, claims in self.held.items() for gid in claims)

    def video(self, gid: str, status: RemoteStatus, progress: int, video_id: str) -> RemoteVideo:
        error = (
            ErrorInfo("moderation_blocked", "blocked") if status is RemoteStatus.FAILED else None
        )
        finished = status is RemoteStatus.COMPLETED
        return RemoteVideo(
            video_id=video_id,
            status=status,
            raw_status="rendering_weird" if status is RemoteStatus.UNKNOWN else status.value,
            progress=progress,
            error=error,
            completed_at=self.now if finished else None,
            expires_at=self.now + timedelta(hours=1) if finished else None,
        )

    def observation(self, data: st.DataObject, g: Generation) -> lifecycle.Observation:
        """Something a worker could learn about `g` (mostly what fits its status)."""
        # Completion weighted up: the download rules need rows that got that far.
        statuses = st.sampled_from([*RemoteStatus, RemoteStatus.COMPLETED, RemoteStatus.COMPLETED])
        progress = st.integers(0, 100)
        kind = data.draw(
            # Out of place now and then (recorded as ignored).
            st.sampled_from([*FITTING.get(g.status, []), "polled", "downloaded", "crashed"]),
            label="observation",
        )
        match kind:
            case "submitted":
                v = self.video(g.id, data.draw(statuses), data.draw(progress), self.fresh("vid"))
                return lifecycle.Submitted(v, latency_s=0.1)
            case "rejected":
                return lifecycle.SubmitRejected(ErrorInfo("invalid_request", "no"), 400)
            case "lost":
                return lifecycle.SubmitLost("timeout")
            case "reconciled":
                found = data.draw(st.booleans(), label="found")
                v = self.video(g.id, RemoteStatus.QUEUED, 0, self.fresh("vid")) if found else None
                return lifecycle.Reconciled(v)
            case "polled":
                vid = g.video_id or "vid_unknown"
                return lifecycle.Polled(
                    self.video(g.id, data.draw(statuses), data.draw(progress), vid)
                )
            case "vanished":
                return lifecycle.Vanished("gone")
            case "rate_limited":
                retry_after = data.draw(
                    st.sampled_from([None, 0.0, 7.0, 600.0]), label="retry_after"
                )
                return lifecycle.RateLimited(
                    retry_after, local=data.draw(st.booleans(), label="local")
                )
            case "transient":
                return lifecycle.Transient("503")
            case "crashed":
                if data.draw(st.booleans(), label="quarantine"):
                    return lifecycle.Quarantined(g.claims)
                return lifecycle.Crashed("worker bug")
            case "downloaded":
                asset = Asset(Variant.VIDEO, f"{g.id}/video.mp4", 1024, "ab" * 32, "video/mp4")
                return lifecycle.Downloaded({Variant.VIDEO: asset}, duration_s=0.5)
        return lifecycle.DownloadFailed("truncated")

    # --- rules ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.rows) < MAX_GENERATIONS)
    @rule(owner=st.sampled_from(WORKERS), tracked=st.booleans())
    def create(self, owner: str, tracked: bool) -> None:
        """Submit (pending, no video yet) or track (a known video id): leased to the creator."""
        self.step("create")
        gid = self.fresh("gen")
        g = Generation(
            id=gid,
            provider="openai",
            endpoint=ENDPOINT.base_url,
            video_id=self.fresh("vid") if tracked else None,
            status=Status.QUEUED if tracked else Status.PENDING,
            progress=0,
            model="sora-2",
            seconds=4,
            size="1280x720",
            prompt=f"a paper boat {gid}",
            # Unique, so "most overdue first, oldest first" is one order the model can predict.
            created_at=self.now + timedelta(microseconds=self.counter),
            watch_started_at=self.now,
            submitted_at=self.now if tracked else None,
            next_poll_at=self.now,
        )
        g = dataclasses.replace(g, updated_at=g.created_at)  # what the row will say
        claim = self.run(
            self.store.create(g, NewEvent("created"), owner=owner, now=self.now, lease_s=LEASE_S)
        )
        self.rows[gid] = Row(g, None)
        self.take(owner, [claim], counted=False)  # the creator's lease is not a claim
        self.expected.append(Expected(gid, "created", g.status))

    @rule(owner=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim_due(self, owner: str, limit: int) -> None:
        """A due batch: exactly the rows the model says are due and free, in its order."""
        self.step("claim_due")
        claims = self.run(
            self.store.claim_due(owner=owner, now=self.now, limit=limit, lease_s=LEASE_S)
        )
        assert [c.generation.id for c in claims] == self.due()[:limit]
        self.take(owner, claims)

    @rule(seconds=st.sampled_from([0.0, 7.0, 600.0]))
    def pause(self, seconds: float) -> None:
        """A 429's Retry-After pauses the provider for every worker; never shortened."""
        self.step("pause")
        until = self.now + timedelta(seconds=seconds)
        self.run(self.store.pause(ENDPOINT.key, until=until, now=self.now))
        if self.provider is None:
            self.provider = ProviderState(None, 1e9, self.now)  # a full bucket, capped at claim
        if self.provider.paused_until is None or self.provider.paused_until < until:
            self.provider.paused_until = until

    @rule(owner=st.sampled_from(WORKERS), limit=st.integers(1, 4), extra=st.integers(0, 3))
    def claim_for_provider(self, owner: str, limit: int, extra: int) -> None:
        """The worker's claim: nothing inside a pause; never more than the shared budget.

        `extra` requests (a download's thumbnail and spritesheet) are then spent from it.
        """
        self.step("claim_for")
        rate, capacity = PER_MINUTE / 60.0, max(1.0, PER_MINUTE / 6.0)
        claims, gate = self.run(
            self.store.claim_for(
                ENDPOINT,
                owner=owner,
                now=self.now,
                limit=limit,
                lease_s=LEASE_S,
                per_minute=PER_MINUTE,
            )
        )
        if self.provider is None:
            self.provider = ProviderState(None, capacity, self.now)
        p = self.provider
        if p.paused_until is not None and p.paused_until > self.now:
            assert (claims, gate) == ([], Gate(paused_until=p.paused_until))
            self.totals["claims_refused_in_pause"] += 1
            return
        elapsed = max(0.0, (self.now - p.tokens_at).total_seconds())
        tokens = min(capacity, p.tokens + elapsed * rate)
        room = min(limit, int(tokens))
        assert [c.generation.id for c in claims] == self.due()[: max(0, room)]
        p.tokens, p.tokens_at = tokens - len(claims), self.now
        wait = 0.0 if p.tokens >= 1.0 else (1.0 - p.tokens) / rate
        assert gate == Gate(budget_wait_s=wait)
        self.take(owner, claims)
        if extra:
            self.run(self.store.spend(ENDPOINT.key, extra))
            p.tokens -= extra

    @precondition(lambda self: self.rows)
    @rule(owner=st.sampled_from(WORKERS), data=st.data())
    def claim_by_id(self, owner: str, data: st.DataObject) -> None:
        """Claim one row whatever its due time: only when active and not validly leased."""
        self.step("claim_by_id")
        gid = data.draw(st.sampled_from(sorted(self.rows)), label="generation")
        claim = self.run(self.store.claim(gid, owner=owner, now=self.now, lease_s=LEASE_S))
        assert (claim is not None) == self.claimable(self.rows[gid])
        if claim is not None:
            self.take(owner, [claim])

    @precondition(lambda self: self.held_claims())
    @rule(data=st.data(), lease_s=st.sampled_from([LEASE_S, 2 * LEASE_S]))
    def renew(self, data: st.DataObject, lease_s: float) -> None:
        """`extend` moves a held lease out; a lost lease raises LeaseLost and changes nothing."""
        self.step("renew")
        owner, gid = data.draw(st.sampled_from(self.held_claims()), label="claim")
        claim = self.held[owner][gid]
        if not self.holds(claim):
            with pytest.raises(exceptions.LeaseLost):
                self.run(self.store.extend(claim, now=self.now, lease_s=lease_s))
            self.totals["lease_lost"] += 1
            return
        renewed = self.run(self.store.extend(claim, now=self.now, lease_s=lease_s))
        assert renewed.lease_expires_at == self.now + timedelta(seconds=lease_s)
        self.rows[gid].lease = Lease(owner, claim.token, renewed.lease_expires_at)
        self.held[owner][gid] = renewed

    @precondition(lambda self: self.held_claims())
    @rule(data=st.data())
    def mark_submitting(self, data: st.DataObject) -> None:
        """Before a create is sent the row says so (reconcile, never pay twice) under its lease."""
        self.step("mark_submitting")
        owner, gid = data.draw(st.sampled_from(self.held_claims()), label="claim")
        claim = self.held[owner][gid]
        call = self.store.mark_submitting(claim, now=self.now, reconcile_after_s=15.0)
        if not self.holds(claim):
            with pytest.raises(exceptions.LeaseLost):
                self.run(call)
            self.totals["lease_lost"] += 1
            return
        marked = self.run(call)
        due = self.now + timedelta(seconds=15.0)
        row = self.rows[gid]
        row.generation = dataclasses.replace(
            row.generation,
            submit_ambiguous=True,
            submit_started_at=self.now,
            next_poll_at=due,
            updated_at=self.now,
            submissions=row.generation.submissions + 1,  # each create sent is counted (paid)
        )
        assert marked.generation.next_poll_at == due and marked.generation.submit_ambiguous
        self.held[owner][gid] = marked

    @rule(seconds=st.sampled_from(ADVANCES_S))
    def advance(self, seconds: float) -> None:
        """Time travel: the store takes `now`, so the model's clock simply moves forward."""
        self.step("advance")
        self.now += timedelta(seconds=seconds)

    def write(
        self, data: st.DataObject, release: bool, rand: float, statuses: frozenset[Status]
    ) -> None:
        """Decide on a held claim as a worker would and apply it: LeaseLost and nothing
        written if the lease is gone, else exactly the decision and its one event.

        Like `Engine.advance`, a completion seen goes straight on to the download under the
        same lease (one more observation, one more write).
        """
        held = [
            (w, gid)
            for w, gid in self.held_claims()
            if self.held[w][gid].generation.status in statuses
        ]
        owner, gid = data.draw(st.sampled_from(held), label="claim")
        while True:
            claim = self.held[owner][gid]
            before = claim.generation.status
            observation = self.observation(data, claim.generation)
            decision = lifecycle.decide(claim.generation, observation, self.now, POLICY, rand)
            follow_on = decision.generation.status in FOLLOW_ON - {before}
            if not self.apply(owner, claim, decision, release=release and not follow_on):
                return
            if not follow_on:
                return
            self.totals["follow_on_downloads"] += 1

    def apply(
        self, owner: str, claim: Claim, decision: lifecycle.Decision, *, release: bool
    ) -> bool:
        """One worker write; whether it was accepted (the model says which it must be)."""
        gid = claim.generation.id
        if not self.holds(claim):
            with pytest.raises(exceptions.LeaseLost):
                self.run(self.store.apply(claim, decision, now=self.now, release=release))
            self.totals["lease_lost"] += 1
            return False
        new_claim, event = self.run(
            self.store.apply(claim, decision, now=self.now, release=release)
        )
        row = self.rows[gid]
        before = claim.generation
        written = dataclasses.replace(decision.generation, updated_at=self.now)
        quiet = decision.event.kind == EventKind.POLL  # folded: counted on the row, no event
        row.generation = dataclasses.replace(
            written,
            quiet_polls=before.quiet_polls + 1 if quiet else 0,
            quiet_since=(before.quiet_since or self.now) if quiet else None,
        )
        if release:
            row.lease = None
        assert new_claim.generation == row.generation
        self.held[owner][gid] = new_claim
        if quiet:
            assert event is None
            return True
        assert event is not None
        assert event.kind == decision.event.kind and event.status is row.generation.status
        if before.quiet_polls:
            assert event.data["quiet_polls"] == before.quiet_polls
        self.expected.append(Expected(gid, decision.event.kind, row.generation.status))
        return True

    def holding(self, statuses: frozenset[Status]) -> bool:
        return any(self.held[w][gid].generation.status in statuses for w, gid in self.held_claims())

    @precondition(lambda self: self.holding(SUBMITTING))
    @rule(data=st.data(), release=st.booleans(), rand=rands)
    def submit_answer(self, data: st.DataObject, release: bool, rand: float) -> None:
        """A create's answer (accepted, refused, lost, reconciled) on a pending claim."""
        self.step("submit_answer")
        self.write(data, release, rand, SUBMITTING)

    @precondition(lambda self: self.holding(RENDERING))
    @rule(data=st.data(), release=st.booleans(), rand=rands)
    def poll_answer(self, data: st.DataObject, release: bool, rand: float) -> None:
        """A poll result (progress, completed, failed, 404, 429, 5xx) on a rendering claim."""
        self.step("poll_answer")
        self.write(data, release, rand, RENDERING)

    @precondition(lambda self: self.holding(DOWNLOADING))
    @rule(data=st.data(), release=st.booleans(), rand=rands)
    def download_answer(self, data: st.DataObject, release: bool, rand: float) -> None:
        """A download's end (stored, broken) on a downloading claim."""
        self.step("download_answer")
        self.write(data, release, rand, DOWNLOADING)

    @precondition(lambda self: self.held_claims())
    @rule(data=st.data(), release=st.booleans(), rand=rands)
    def stale_answer(self, data: st.DataObject, release: bool, rand: float) -> None:
        """Any held claim, whatever it holds now (lost leases, late answers, crashes)."""
        self.step("stale_answer")
        self.write(data, release, rand, frozenset(Status))

    def webhook_target(self, data: st.DataObject) -> tuple[str, str]:
        """A webhook id (new, or one already delivered) and a video id (tracked or not)."""
        known = sorted(r.generation.video_id for r in self.rows.values() if r.generation.video_id)
        video_id = data.draw(st.sampled_from([*known, "vid_nobody"]), label="video_id")
        seen = sorted(self.webhooks)
        if seen and data.draw(st.booleans(), label="redeliver"):
            return data.draw(st.sampled_from(seen), label="webhook_id"), video_id
        return self.fresh("wh"), video_id

    def predict_webhook(self, webhook_id: str, video_id: str, event_type: str) -> str:
        """What the model says one delivery does; updates the model."""
        if webhook_id in self.webhooks:
            return "duplicate"
        rows = [r for r in self.rows.values() if r.generation.video_id == video_id]
        if not rows:
            self.webhooks[webhook_id] = "unknown_video"
            return "unknown_video"
        row = rows[0]
        observation = lifecycle.WebhookReceived(event_type, webhook_id)
        decision = lifecycle.decide(row.generation, observation, self.now, POLICY)
        if row.generation.status is not Status.DOWNLOADING:
            row.lease = None  # a worker polling the old state must look again
        row.generation = dataclasses.replace(decision.generation, updated_at=self.now)
        self.webhooks[webhook_id] = "applied"
        self.webhook_applied[webhook_id] = self.webhook_applied.get(webhook_id, 0) + 1
        self.expected.append(
            Expected(row.generation.id, decision.event.kind, row.generation.status, webhook_id)
        )
        return "applied"

    def deliver(self, webhook_id: str, video_id: str, event_type: str) -> Awaitable[str]:
        now = self.now

        def decide(g: Generation) -> lifecycle.Decision:
            observation = lifecycle.WebhookReceived(event_type, webhook_id)
            return lifecycle.decide(g, observation, now, POLICY)

        return self.store.record_webhook(
            webhook_id,
            provider="openai",
            video_id=video_id,
            event_type=event_type,
            decide=decide,
            now=now,
        )

    @precondition(lambda self: self.rows)
    @rule(data=st.data(), event_type=st.sampled_from(["video.completed", "video.failed"]))
    def webhook(self, data: st.DataObject, event_type: str) -> None:
        """One delivery: applied once per webhook id, then `duplicate`."""
        self.step("webhook")
        webhook_id, video_id = self.webhook_target(data)
        result = self.run(self.deliver(webhook_id, video_id, event_type))
        assert result == self.predict_webhook(webhook_id, video_id, event_type)
        self.totals["webhook_duplicates"] += result == "duplicate"

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def webhook_twice_at_once(self, data: st.DataObject) -> None:
        """The same delivery twice concurrently: one applies (or records), the other is a dup."""
        self.step("webhook_twice_at_once")
        webhook_id, video_id = self.webhook_target(data)

        async def both() -> list[str]:
            first = self.deliver(webhook_id, video_id, "video.completed")
            second = self.deliver(webhook_id, video_id, "video.completed")
            return list(await asyncio.gather(first, second))

        results = self.run(both())
        first = self.predict_webhook(webhook_id, video_id, "video.completed")
        assert sorted(results) == sorted([first, "duplicate"])
        self.totals["webhook_duplicates"] += results.count("duplicate")

    @precondition(lambda self: self.rows)
    @rule(data=st.data(), action=st.sampled_from(["reset", "retry", "cancel"]))
    def admin(self, data: st.DataObject, action: str) -> None:
        """reset/retry/cancel through `store.act`: voids any lease, or is refused unchanged."""
        self.step("admin")
        gid = data.draw(st.sampled_from(sorted(self.rows)), label="generation")
        observation: lifecycle.Reset | lifecycle.Retry | lifecycle.Cancel = {
            "reset": lifecycle.Reset("admin"),
            "retry": lifecycle.Retry("admin"),
            "cancel": lifecycle.Cancel("admin"),
        }[action]
        now = self.now
        row = self.rows[gid]
        submitting = (
            row.generation.status is Status.PENDING
            and row.lease is not None
            and row.lease.expires_at >= now  # held up to and including its expiry instant
        )
        try:
            expected = (
                None if submitting else lifecycle.decide(row.generation, observation, now, POLICY)
            )
        except exceptions.NotAllowed:
            expected = None
        act = self.store.act(gid, lambda g: lifecycle.decide(g, observation, now, POLICY), now=now)
        if expected is None:
            with pytest.raises(exceptions.NotAllowed):
                self.run(act)
            self.totals["admin_refused"] += 1
            return
        stored, event = self.run(act)
        row.generation = dataclasses.replace(expected.generation, updated_at=now)
        row.lease = None
        assert stored == row.generation and event.kind == expected.event.kind
        self.expected.append(Expected(gid, expected.event.kind, row.generation.status))
        if action in ("reset", "retry"):
            self.admin_moved.add(gid)

    @rule(owner=st.sampled_from(WORKERS), clean=st.booleans())
    def stop_worker(self, owner: str, clean: bool) -> None:
        """kill -9 forgets the claims without releasing them; a clean stop gives back the
        leases it still holds (lost ones are left alone), uncounting those claims."""
        self.step("stop_worker" if clean else "kill_worker")
        claims = list(self.held[owner].values())
        self.held[owner] = {}
        if not clean:
            return
        self.run(self.store.release(claims))
        for claim in claims:
            if self.holds(claim):
                row = self.rows[claim.generation.id]
                row.lease = None
                # A claim given back unused is not counted against the row (poison pills).
                claims_now = max(0, row.generation.claims - 1)
                row.generation = dataclasses.replace(row.generation, claims=claims_now)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def rows_agree_with_the_model(self) -> None:
        """Every column of every row, lease included, is what the model says."""
        stored = {g.id: g for g in self.run(self.store.page(limit=100)).items}
        assert stored == {gid: r.generation for gid, r in self.rows.items()}
        lease_columns = sa.select(
            tables.generations.c.id,
            tables.generations.c.lease_owner,
            tables.generations.c.lease_token,
            tables.generations.c.lease_expires_at,
        )
        with self.sync.connect() as conn:
            leases = {r.id: r for r in conn.execute(lease_columns)}
        for gid, row in self.rows.items():
            db = leases[gid]
            got = None if db.lease_token is None else Lease(*db[1:])
            assert got == row.lease, gid

    @invariant()
    def at_most_one_valid_lease_per_generation(self) -> None:
        """Of all the claims workers hold, at most one per row still matches and is unexpired."""
        for gid, row in self.rows.items():
            valid = [
                owner
                for owner, claims in self.held.items()
                if gid in claims
                and row.lease is not None
                and claims[gid].token == row.lease.token
                and claims[gid].lease_expires_at >= self.now
            ]
            assert len(valid) <= 1, (gid, valid)
            assert not valid or row.lease is None or valid[0] == row.lease.owner

    @invariant()
    def each_write_appended_exactly_one_event(self) -> None:
        """The events since the last step are exactly the ones the applied decisions made."""
        new = self.run(self.store.events_after(self.last_event_id))
        ids = [e.id for e in new]
        assert ids == sorted(set(ids)) and all(i > self.last_event_id for i in ids)
        got = [Expected(e.generation_id, e.kind, e.status, e.data.get("webhook_id")) for e in new]
        assert got == self.expected
        if new:
            self.last_event_id = ids[-1]
        self.expected = []

    @invariant()
    def webhooks_are_recorded_and_applied_once(self) -> None:
        """One delivery row per webhook id, with the result of its first delivery."""
        query = sa.select(
            tables.webhook_deliveries.c.webhook_id, tables.webhook_deliveries.c.result
        )
        with self.sync.connect() as conn:
            recorded = dict(conn.execute(query).all())
        assert recorded == self.webhooks
        assert all(n == 1 for n in self.webhook_applied.values())

    @invariant()
    def provider_state_agrees(self) -> None:
        """The shared pause and budget are what the model's claims and 429s left."""
        with self.sync.connect() as conn:
            rows = conn.execute(sa.select(tables.provider_state)).all()
        got = [ProviderState(r.paused_until, r.tokens, r.tokens_at) for r in rows]
        assert got == ([] if self.provider is None else [self.provider])

    @invariant()
    def terminal_is_absorbing_and_attempts_never_decrease(self) -> None:
        """Only an admin reset/retry leaves failed or cancelled, or lowers `attempts`."""
        for gid, row in self.rows.items():
            before = self.previous.get(gid)
            g = row.generation
            if before is not None and gid not in self.admin_moved:
                if before.status in TERMINAL:
                    assert g.status is before.status, (gid, before.status, g.status)
                assert g.attempts >= before.attempts, (gid, before.attempts, g.attempts)
            if before is not None and before.status is Status.COMPLETED:
                assert g.status is Status.COMPLETED
        self.previous = {gid: r.generation for gid, r in self.rows.items()}


def _machine(url: str) -> type[StoreMachine]:
    totals: dict[str, int] = {"examples": 0, "steps": 0, "lease_lost": 0}
    totals["steps_with_a_download"] = totals["follow_on_downloads"] = 0
    totals |= {"admin_refused": 0, "webhook_duplicates": 0, "claims_refused_in_pause": 0}
    return type("StoreMachine", (StoreMachine,), {"url": url, "totals": totals})


@pytest.fixture
def migrated(db_url: str) -> str:
    """The test database, migrated to head once (each example then only empties it)."""
    migrate.upgrade(urls(db_url)[1])
    return db_url


@pytest.mark.slow
def test_store_agrees_with_a_dict_model(migrated: str, request: pytest.FixtureRequest) -> None:
    """Random interleavings of every store verb keep the rows, leases and events as modelled."""
    machine = _machine(migrated)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    totals = machine.totals
    backend = request.node.callspec.params["db_url"]
    print(
        f"\nstore model ({backend}): max_examples={MAX_EXAMPLES}, "
        f"stateful_step_count={STEPS}, " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items()))
    )
    assert totals["steps"] > 0

"""The one state machine: (generation, observation, now) -> decision. No I/O here.

Everything that changes a generation's status (the worker, the cron route, webhooks, admin
actions) turns what it learned into an observation and asks `decide` what follows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from reelwatch import exceptions, predict, schedule
from reelwatch.models import (
    RENDERING,
    Asset,
    ErrorInfo,
    EventKind,
    Generation,
    NewEvent,
    RemoteStatus,
    RemoteVideo,
    Status,
    Variant,
)

UNKNOWN_STATUS = "unknown_status"  # the attention reason's prefix for unknown words
OPTIONAL_TRIES = 5  # download attempts before a stored video completes without its extras
QUARANTINE_S = 600.0  # a quarantined generation (poison pill) is tried again this rarely
POISON_CLAIMS = 5  # claims without a step written before a generation is quarantined
MAX_RETRY_AFTER_S = 3600.0  # a longer Retry-After is read as an hour (a year would stop all)

# --- observations -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Submitted:
    """The provider accepted a create and answered with its video."""

    video: RemoteVideo
    latency_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitRejected:
    """The provider refused a create for good (a 4xx other than 429)."""

    error: ErrorInfo
    http_status: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitLost:
    """A create's answer was lost (timeout, 5xx, dropped connection): it may or may not exist."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class CreateUnknown:
    """A create's answer was lost and the provider cannot list its jobs: whether it took (and
    bills) the job cannot be known here. Never resubmitted automatically; a person decides."""


@dataclasses.dataclass(frozen=True, slots=True)
class Reconciled:
    """The provider's list was searched for an ambiguous create; `video` is the match or None."""

    video: RemoteVideo | None


@dataclasses.dataclass(frozen=True, slots=True)
class Polled:
    """A status check answered."""

    video: RemoteVideo
    latency_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Vanished:
    """The provider answered 404: the job is gone."""

    message: str
    latency_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimited:
    """429, or this worker is paused after one: wait at least `retry_after_s`."""

    retry_after_s: float | None
    message: str = "rate limited"
    local: bool = False  # True when no request was sent (the worker's own pause)
    nothing_created: bool = False  # a create refused: a pending one is no longer ambiguous


@dataclasses.dataclass(frozen=True, slots=True)
class Transient:
    """5xx, timeout or connection error: try again later, never fail for it."""

    reason: str
    latency_s: float = 0.0
    nothing_created: bool = False  # a create that never left (connection refused, DNS)


@dataclasses.dataclass(frozen=True, slots=True)
class Downloaded:
    """Every wanted asset is stored."""

    assets: Mapping[Variant, Asset]
    duration_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class DownloadFailed:
    """A download broke (truncated, 5xx, connection, disk full, 429): retry the download,
    never the render. `code` says which kind (`disk_full`, `rate_limited`, `download_failed`);
    a 429's Retry-After is honoured."""

    reason: str
    assets: Mapping[Variant, Asset] = dataclasses.field(default_factory=dict)
    code: str = "download_failed"
    retry_after_s: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Crashed:
    """reelwatch itself failed on this step (a bug, a local fault): try again later.

    Unlike every other observation it does not clear the generation's claim count, so a
    generation that keeps breaking its workers is noticed (see `Quarantined`).
    """

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantined:
    """Claimed too many times without a step written (workers crash on it): set it aside for a
    person, and look only rarely."""

    claims: int


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to ask yet (a create sent moments ago may still show up): look again at `until`."""

    until: datetime
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookReceived:
    """A signed webhook said the job finished: look now."""

    event_type: str
    webhook_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    """Admin: forget what we saw and poll from scratch (free)."""

    actor: str


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Admin: resubmit a failed generation (paid); the estimate is recorded with it."""

    actor: str
    cost_usd: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel:
    """Admin: stop working on it; `remote` says what became of the provider's copy (a cancel
    requested, one that failed, or None where the provider cannot cancel)."""

    actor: str
    remote: str | None = None


Observation = (
    Submitted
    | SubmitRejected
    | SubmitLost
    | CreateUnknown
    | Reconciled
    | Polled
    | Vanished
    | RateLimited
    | Transient
    | Downloaded
    | DownloadFailed
    | Crashed
    | Quarantined
    | Wait
    | WebhookReceived
    | Reset
    | Retry
    | Cancel
)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The generation as it should be stored next, and the event that says why."""

    generation: Generation
    event: NewEvent


# --- the rules ----------------------------------------------------------------------------


def decide(
    generation: Generation,
    observation: Observation,
    now: datetime,
    policy: schedule.Policy,
    rand: float = 0.5,
    history: predict.History | None = None,
) -> Decision:
    """What follows from one observation; `rand` in [0, 1) drives backoff jitter; `history`
    (finished renders of the generation's shape) is what the next look is planned from.

    Any step written clears the claim count (the row did not kill its worker), except a crash
    of reelwatch itself; an answer from the provider also lifts a quarantine.
    """
    decision = _decide(generation, observation, now, policy, rand, history)
    new = decision.generation
    if isinstance(observation, Crashed | Quarantined):
        return decision
    answered = isinstance(
        observation, Submitted | Polled | Reconciled | Downloaded | Vanished | SubmitRejected
    ) and not _unknown_answer(observation)
    if new.claims or (answered and new.attention is not None):
        new = dataclasses.replace(new, claims=0, attention=None if answered else new.attention)
        return Decision(new, decision.event)
    return decision


def _unknown_answer(observation: Observation) -> bool:
    """An answer in a status word the adapter does not know (it sets attention, not lifts it)."""
    match observation:
        case (
            Submitted(video=video) | Polled(video=video) | Reconciled(video=RemoteVideo() as video)
        ):
            return video.status is RemoteStatus.UNKNOWN
    return False


def _decide(
    generation: Generation,
    observation: Observation,
    now: datetime,
    policy: schedule.Policy,
    rand: float,
    history: predict.History | None = None,
) -> Decision:
    g = generation
    match observation:
        case Reset() | Retry() | Cancel():
            return _admin(g, observation, now, policy)
    if not g.active:
        # A late answer about a generation someone already finished or cancelled: record only.
        return _ignored(g, observation, now)
    match observation:
        case WebhookReceived(event_type=kind, webhook_id=webhook_id):
            data: dict[str, Any] = {"type": kind, "webhook_id": webhook_id}
            return Decision(
                dataclasses.replace(g, next_poll_at=now), NewEvent(EventKind.WEBHOOK, data)
            )
        case Quarantined(claims=claims):
            reason = (
                f"poison_pill: claimed {claims} times without a step written (workers may "
                "be crashing on it); tried once every 10 minutes until it answers or is reset"
            )
            # One claim short of the limit: the next claim (in 10 minutes) makes one real
            # attempt; if that one dies too, the claim after it quarantines it again.
            new = dataclasses.replace(
                g,
                attention=reason,
                claims=POISON_CLAIMS - 1,
                next_poll_at=now + timedelta(seconds=QUARANTINE_S),
            )
            return Decision(
                new, NewEvent(EventKind.QUARANTINED, {"claims": claims, "reason": reason})
            )
        case Wait(until=until, reason=reason):
            new = dataclasses.replace(g, next_poll_at=max(until, now))
            return Decision(
                new, NewEvent(EventKind.WAITING, {"until": until.isoformat(), "reason": reason})
            )
        case Crashed(reason=reason) if g.status is Status.PENDING:
            # A create may have gone out before the crash: reconcile before paying again.
            return _decide(g, SubmitLost(reason), now, policy, rand)
        case Crashed(reason=reason):
            return _decide(g, Transient(reason), now, policy, rand)
        case Submitted() | SubmitRejected() | SubmitLost() | Reconciled() | CreateUnknown() if (
            g.status is not Status.PENDING
        ):
            # A create answer for a generation that already has its video: never adopt a second
            # one nor fail the first for it; the event keeps the stray video id for the record.
            return _ignored(g, observation, now)
        case Downloaded() | DownloadFailed() if g.status is not Status.DOWNLOADING:
            return _ignored(g, observation, now)
        case Polled() if g.video_id is None:
            return _ignored(g, observation, now)  # an answer about a video we never asked for
        case Polled(video=video, latency_s=latency) if g.status is Status.DOWNLOADING:
            return _polled_while_downloading(g, video, now, latency)
        case Submitted(video=video, latency_s=latency):
            return _accepted(g, video, now, policy, EventKind.SUBMITTED, latency, history)
        case CreateUnknown():
            sent = g.submit_started_at or g.watch_started_at
            error = ErrorInfo(
                "create_unknown",
                f"The create sent at {sent:%Y-%m-%d %H:%M:%S} UTC was not answered and the "
                "provider cannot list its jobs: it may be rendering, and billed. Check the "
                "provider's dashboard before retrying (a retry pays again).",
            )
            data = {"prompt": g.prompt, "sent_at": sent.isoformat(), "attempts": g.attempts}
            return _fail(dataclasses.replace(g, submit_ambiguous=False), error, now, data)
        case Reconciled(video=None):
            new = dataclasses.replace(g, submit_ambiguous=False, failures=0, next_poll_at=now)
            return Decision(new, NewEvent(EventKind.RECONCILED, {"found": None}))
        case Reconciled(video=RemoteVideo() as video):
            return _accepted(g, video, now, policy, EventKind.RECONCILED, 0.0, history)
        case SubmitRejected(error=error, http_status=http_status):
            return _fail(g, error, now, {"http_status": http_status})
        case SubmitLost(reason=reason):
            failures = g.failures + 1
            delay = max(policy.reconcile_delay_s, schedule.backoff_s(failures, policy, rand))
            new = dataclasses.replace(
                g,
                submit_ambiguous=True,
                failures=failures,
                next_poll_at=now + timedelta(seconds=delay),
            )
            return Decision(
                new, NewEvent(EventKind.SUBMIT_AMBIGUOUS, {"reason": reason, "delay_s": delay})
            )
        case Polled(video=video, latency_s=latency):
            return _polled(g, video, now, policy, rand, latency, history)
        case Vanished(message=message, latency_s=latency):
            error = ErrorInfo("not_found", f"The provider no longer knows this video: {message}")
            return _fail(g, error, now, {"latency_ms": _ms(latency)})
        case RateLimited(
            retry_after_s=retry_after, message=message, local=local, nothing_created=unsent
        ):
            failures = g.failures + 1
            if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
                # No earlier than Retry-After; a little jitter after it spreads the herd.
                retry_after = min(retry_after, MAX_RETRY_AFTER_S)
                delay = retry_after + rand * min(1.0, retry_after / 10.0)
            else:
                delay = schedule.backoff_s(failures, policy, rand)
            new = dataclasses.replace(
                g,
                attempts=g.attempts + (0 if local else 1),
                failures=failures,
                next_poll_at=now + timedelta(seconds=delay),
                submit_ambiguous=_still_ambiguous(g, unsent),
            )
            data = {
                "retry_after_s": retry_after,
                "delay_s": delay,
                "local": local,
                "message": message,
            }
            return Decision(new, NewEvent(EventKind.RATE_LIMITED, data))
        case Transient(reason=reason, latency_s=latency, nothing_created=unsent):
            failures = g.failures + 1
            delay = schedule.backoff_s(failures, policy, rand)
            new = dataclasses.replace(
                g,
                attempts=g.attempts + 1,
                failures=failures,
                next_poll_at=now + timedelta(seconds=delay),
                submit_ambiguous=_still_ambiguous(g, unsent),
            )
            data = {"reason": reason, "delay_s": delay, "latency_ms": _ms(latency)}
            return Decision(new, NewEvent(EventKind.RETRY_SCHEDULED, data))
        case Downloaded(assets=assets, duration_s=duration):
            return _downloaded(g, assets, now, duration)
        case DownloadFailed(reason=reason, assets=partial, code=code, retry_after_s=wait):
            assets = {**g.assets, **partial}
            gone = code == "asset_expired"  # the provider said so: no later try can succeed
            expired = gone or (g.expires_at is not None and now >= g.expires_at)
            if Variant.VIDEO in assets and (expired or g.failures + 1 >= OPTIONAL_TRIES):
                # The video is safe; a thumbnail or spritesheet that keeps failing is not worth
                # failing (or re-paying for) the generation: complete without it, and say so.
                done = _downloaded(g, assets, now, 0.0)
                data = {**done.event.data, "missing": reason}
                return Decision(done.generation, NewEvent(EventKind.COMPLETED, data))
            if expired:
                error = ErrorInfo(
                    "asset_expired",
                    f"The provider's copy expired before it could be downloaded: {reason}",
                )
                return _fail(dataclasses.replace(g, assets=assets), error, now, {})
            failures = g.failures + 1
            delay = schedule.backoff_s(failures, policy, rand)
            if wait is not None and math.isfinite(wait) and wait >= 0:
                wait = min(wait, MAX_RETRY_AFTER_S)
                delay = max(delay, wait + rand * min(1.0, wait / 10.0))  # never inside the window
            next_at = now + timedelta(seconds=delay)
            if g.expires_at is not None:
                # A last try just before the copy expires; inside that last second, the next
                # look is at expiry itself, which fails it (rather than retrying in a hot loop).
                last_try = g.expires_at - timedelta(seconds=1)
                next_at = min(next_at, last_try if last_try > now else g.expires_at)
            new = dataclasses.replace(
                g,
                assets=assets,
                failures=failures,
                next_poll_at=next_at,
                # Shown while it is still downloading: the last try's trouble, in words.
                error=ErrorInfo(code, reason),
            )
            data = {"reason": reason, "code": code, "delay_s": delay, "retry_after_s": wait}
            return Decision(new, NewEvent(EventKind.DOWNLOAD_FAILED, data))
    raise AssertionError(f"unhandled observation {observation!r}")  # pragma: no cover


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _due(g: Generation, now: datetime) -> datetime:
    """The poll time to keep for an active generation this decision does not reschedule."""
    return g.next_poll_at if g.next_poll_at is not None and g.next_poll_at >= now else now


def _ignored(g: Generation, observation: Observation, now: datetime) -> Decision:
    """Record an observation that changes nothing (late, duplicate or out of place)."""
    data: dict[str, Any] = {"observation": type(observation).__name__, "status": g.status.value}
    match observation:
        case (
            Submitted(video=video) | Polled(video=video) | Reconciled(video=RemoteVideo() as video)
        ):
            data |= {"video_id": video.video_id, "remote_status": video.raw_status}
        case WebhookReceived(event_type=kind, webhook_id=webhook_id):
            data |= {"type": kind, "webhook_id": webhook_id}
    new = dataclasses.replace(g, next_poll_at=_due(g, now)) if g.active else g
    return Decision(new, NewEvent(EventKind.IGNORED, data))


def _timed_out(g: Generation, now: datetime, policy: schedule.Policy) -> bool:
    return g.status in RENDERING and now >= schedule.deadline(g, policy)


def _still_ambiguous(g: Generation, nothing_created: bool) -> bool:
    """A create flagged before it was sent stops being ambiguous once the provider refused it
    (429) or it never left: nothing exists to reconcile, so it is simply sent again."""
    return g.submit_ambiguous and not (nothing_created and g.status is Status.PENDING)


def _fail(g: Generation, error: ErrorInfo, now: datetime, data: dict[str, Any]) -> Decision:
    new = dataclasses.replace(
        g, status=Status.FAILED, error=error, next_poll_at=None, updated_at=now
    )
    return Decision(
        new,
        NewEvent(
            EventKind.FAILED,
            {"from": g.status.value, "code": error.code, "message": error.message, **data},
        ),
    )


def _timeout(g: Generation, now: datetime, policy: schedule.Policy) -> Decision:
    minutes = policy.timeout_s / 60.0
    error = ErrorInfo("timeout", f"Not finished after {minutes:g} minutes")
    return _fail(g, error, now, {})


def _accepted(
    g: Generation,
    video: RemoteVideo,
    now: datetime,
    policy: schedule.Policy,
    kind: EventKind,
    latency: float,
    history: predict.History | None = None,
) -> Decision:
    """The provider has the job (a create answered, or a lost create was found in its list)."""
    base = dataclasses.replace(
        g,
        video_id=video.video_id,
        submitted_at=now,
        submit_ambiguous=False,
        failures=0,
        status=Status.QUEUED,
        watch_started_at=now,  # the timeout counts from the provider's acceptance
    )
    follow = _polled(base, video, now, policy, 0.0, latency, history)
    data = {
        "video_id": video.video_id,
        "latency_ms": _ms(latency),
        "remote_status": video.raw_status,
    }
    if follow.generation.status is Status.FAILED:
        # Already failed (or past the deadline) when found: the event must say so, with the code.
        failed = {**follow.event.data, **data, "from": g.status.value, "via": kind}
        return Decision(follow.generation, NewEvent(EventKind.FAILED, failed))
    return Decision(follow.generation, NewEvent(kind, data))


def _polled_while_downloading(
    g: Generation, video: RemoteVideo, now: datetime, latency: float
) -> Decision:
    """A status answer while the files are being fetched: the download decides, not the poll."""
    new = dataclasses.replace(
        g,
        attempts=g.attempts + 1,
        remote_status=video.raw_status,
        expires_at=video.expires_at or g.expires_at,
        next_poll_at=_due(g, now),
    )
    data = {"remote_status": video.raw_status, "latency_ms": _ms(latency), "progress": g.progress}
    return Decision(new, NewEvent(EventKind.POLL, data))


def _polled(
    g: Generation,
    video: RemoteVideo,
    now: datetime,
    policy: schedule.Policy,
    rand: float,
    latency: float,
    history: predict.History | None = None,
) -> Decision:
    base = dataclasses.replace(
        g,
        attempts=g.attempts + 1,
        remote_status=video.raw_status,
        remote={**g.remote, **video.remote},
        step_detail=video.detail,
    )
    data: dict[str, Any] = {"remote_status": video.raw_status, "latency_ms": _ms(latency)}
    match video.status:
        case RemoteStatus.COMPLETED:
            new = dataclasses.replace(
                base,
                status=Status.DOWNLOADING,
                progress=100,
                failures=0,
                remote_completed_at=video.completed_at or now,
                expires_at=video.expires_at,
                download_bytes=0,
                download_total=None,
                last_progress_at=now if g.progress != 100 else g.last_progress_at,
                next_poll_at=now,
            )
            return Decision(
                new,
                NewEvent(EventKind.STATUS, {**data, "from": g.status.value, "to": "downloading"}),
            )
        case RemoteStatus.FAILED:
            word = video.raw_status or "failed"
            error = video.error or ErrorInfo(word, f"The provider reported {word}")
            return _fail(base, error, now, data)
        case RemoteStatus.UNKNOWN:
            # A word the adapter does not know: a person must see it (not a silent timeout
            # later); the job may still end well, so it is polled on, backing off.
            failures = g.failures + 1
            delay = schedule.clamp(
                schedule.backoff_s(failures, policy, rand), policy.poll_min_s, policy.backoff_max_s
            )
            reason = f"{UNKNOWN_STATUS}: the provider reported {video.raw_status[:60]!r}"
            new = dataclasses.replace(
                base,
                failures=failures,
                attention=reason,
                remote={**g.remote, **video.remote},
                next_poll_at=now + timedelta(seconds=delay),
            )
            return Decision(new, NewEvent(EventKind.UNKNOWN_STATUS, {**data, "delay_s": delay}))
    status = Status.IN_PROGRESS if video.status is RemoteStatus.IN_PROGRESS else Status.QUEUED
    if g.status is Status.IN_PROGRESS and status is Status.QUEUED:
        status = Status.IN_PROGRESS  # never walk backwards in front of users
    progress = max(g.progress, min(100, max(0, video.progress)))
    changed = progress != g.progress
    looked = g.updated_at or g.submitted_at or g.watch_started_at  # the look before this one
    starts = g.started_at is None and status is Status.IN_PROGRESS
    new = dataclasses.replace(
        base,
        status=status,
        progress=progress,
        failures=0,
        started_at=now if starts else g.started_at,
        started_after=looked if starts else g.started_after,
        started_progress=g.started_progress if g.started_at else progress,
        last_progress_at=now if changed else g.last_progress_at,
        progress_after=looked if changed else g.progress_after,
    )
    if (g.attention or "").startswith(UNKNOWN_STATUS):
        # Back to words we know after a stretch of unknown ones: that stretch is not held
        # against the job, so its timeout starts again from here.
        new = dataclasses.replace(new, watch_started_at=now)
    if _timed_out(new, now, policy):
        return _timeout(new, now, policy)
    first_look = g.started_at is None and status is Status.IN_PROGRESS
    previous = (g.updated_at or g.submitted_at or g.watch_started_at) if first_look else None
    new = dataclasses.replace(
        new,
        next_poll_at=schedule.next_poll_at(new, now, policy, previous, history),
        updated_at=now,
    )
    if status is not g.status:
        return Decision(
            new, NewEvent(EventKind.STATUS, {**data, "from": g.status.value, "to": status.value})
        )
    return Decision(
        new,
        NewEvent(EventKind.PROGRESS if changed else EventKind.POLL, {**data, "progress": progress}),
    )


def _downloaded(
    g: Generation, assets: Mapping[Variant, Asset], now: datetime, duration: float
) -> Decision:
    merged = {**g.assets, **assets}
    new = dataclasses.replace(
        g,
        status=Status.COMPLETED,
        completed_at=now,
        assets=merged,
        failures=0,
        next_poll_at=None,
        error=None,
    )
    lag = (now - g.remote_completed_at).total_seconds() if g.remote_completed_at else None
    data = {
        "bytes": sum(a.bytes for a in merged.values()),
        "duration_ms": _ms(duration),
        "detection_lag_s": lag,
        "variants": sorted(v.value for v in merged),
    }
    return Decision(new, NewEvent(EventKind.COMPLETED, data))


def _admin(
    g: Generation, observation: Reset | Retry | Cancel, now: datetime, policy: schedule.Policy
) -> Decision:
    match observation:
        case Cancel(actor=actor, remote=remote):
            if not g.active:
                raise exceptions.NotAllowed(f"cannot cancel a {g.status.value} generation")
            new = dataclasses.replace(g, status=Status.CANCELLED, next_poll_at=None)
            said = {"from": g.status.value, "remote_cancel": remote}
            return Decision(new, NewEvent(EventKind.CANCELLED, said, actor=actor))
        case Reset(actor=actor):
            # With a video id there is something to poll. Without one, "reset" would mean a new
            # (paid) create, which only a costed Retry may do; a pending one is left to the
            # worker, which submits or reconciles it anyway.
            if g.status is Status.COMPLETED:
                raise exceptions.NotAllowed(
                    "it is complete and stored; there is nothing to poll again"
                )
            if g.video_id is None and g.status is not Status.PENDING:
                raise exceptions.NotAllowed(
                    "the provider never accepted this generation, so there is nothing to poll; "
                    "use retry to resubmit it"
                )
            new = dataclasses.replace(
                g,
                status=Status.QUEUED if g.video_id else Status.PENDING,
                progress=0,
                error=None,
                attempts=0,
                failures=0,
                started_at=None,
                remote_completed_at=None,
                completed_at=None,
                last_progress_at=None,
                remote_status=None,
                step_detail=None,
                watch_started_at=now,
                next_poll_at=now,
                attention=None,
            )
            data: dict[str, Any] = {"from": g.status.value, "previous_error": _error_json(g.error)}
            return Decision(new, NewEvent(EventKind.RESET, data, actor=actor))
        case Retry(actor=actor, cost_usd=cost):
            if g.status is not Status.FAILED:
                raise exceptions.NotAllowed(
                    f"only failed generations can be retried; this one is {g.status.value}"
                )
            new = dataclasses.replace(
                g,
                status=Status.PENDING,
                video_id=None,
                progress=0,
                error=None,
                attempts=0,
                failures=0,
                submitted_at=None,
                started_at=None,
                remote_completed_at=None,
                completed_at=None,
                expires_at=None,
                last_progress_at=None,
                remote_status=None,
                submit_ambiguous=False,
                assets={},
                remote={},
                step_detail=None,
                watch_started_at=now,
                next_poll_at=now,
                attention=None,
            )
            data = {
                "previous_video_id": g.video_id,
                "previous_error": _error_json(g.error),
                "estimated_cost_usd": cost,
            }
            return Decision(new, NewEvent(EventKind.RETRY, data, actor=actor))
    raise AssertionError("unreachable")  # pragma: no cover


def _error_json(error: ErrorInfo | None) -> dict[str, str] | None:
    return None if error is None else {"code": error.code, "message": error.message}


def assets_deleted(g: Generation, *, retention_days: float) -> Decision:
    """A completed generation's stored files were deleted for their age: the row keeps its
    status and checksums in the event, and no longer points at any file."""
    if g.status is not Status.COMPLETED or not g.assets:
        raise exceptions.NotAllowed(f"{g.id} has no stored files to delete")
    data = {
        "variants": sorted(v.value for v in g.assets),
        "bytes": sum(a.bytes for a in g.assets.values()),
        "retention_days": retention_days,
    }
    return Decision(
        dataclasses.replace(g, assets={}),
        NewEvent(EventKind.ASSETS_DELETED, data, actor="retention"),
    )

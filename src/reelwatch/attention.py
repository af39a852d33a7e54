"""What needs a person's attention, and the figures behind the charts. Pure functions of `now`."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from reelwatch import predict, schedule
from reelwatch.models import Generation, Status

NEAR_EXPIRY = timedelta(minutes=10)
STUCK_INTERVALS = 4  # polls without a progress change before a render looks stuck
STUCK_FLOOR_S = 120.0


def stuck_after_s(policy: schedule.Policy) -> float:
    """How long without a progress change makes an active render look stuck (always well
    before the hard timeout, so there is time to act)."""
    return min(max(STUCK_FLOOR_S, STUCK_INTERVALS * policy.poll_max_s), policy.timeout_s / 2)


def suspected_stuck(
    g: Generation,
    now: datetime,
    policy: schedule.Policy,
    history: predict.History | None = None,
) -> bool:
    """Rendering well past every render of its shape (with a history to judge by); without
    one, no progress change for several expected poll intervals, not yet timed out.

    Queued jobs count once they have waited half the timeout: a queue is slow, not stuck, until
    then.
    """
    judged = predict.stuck(g, now, history)
    if judged is not None:
        return judged
    if g.status is Status.IN_PROGRESS:
        since = g.last_progress_at or g.started_at or g.watch_started_at
        return (now - since).total_seconds() >= stuck_after_s(policy)
    if g.status is Status.QUEUED:
        return (now - g.watch_started_at).total_seconds() >= policy.timeout_s / 2
    return False


def download_trouble(g: Generation, now: datetime) -> str | None:
    """Why a download needs a look: failing, or the provider's copy about to expire."""
    if g.status is not Status.DOWNLOADING:
        return None
    if g.expires_at is not None and g.expires_at - now <= NEAR_EXPIRY:
        minutes = max(0, int((g.expires_at - now).total_seconds() // 60))
        return f"the provider's copy expires in {minutes} min"
    if g.failures > 0:
        return f"{g.failures} failed download attempt(s)"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Attention:
    quarantined: list[Generation]  # set aside: workers kept failing on them
    stuck: list[Generation]
    timed_out: list[Generation]
    failed_by_code: list[tuple[str, int]]
    failed: list[Generation]
    downloads: list[tuple[Generation, str]]

    @property
    def empty(self) -> bool:
        return not (
            self.quarantined or self.stuck or self.timed_out or self.failed or self.downloads
        )


def attention(
    active: Iterable[Generation],
    failed: Sequence[Generation],
    now: datetime,
    policy: schedule.Policy,
) -> Attention:
    active = list(active)
    downloads = [(g, why) for g in active if (why := download_trouble(g, now)) is not None]
    timed_out = [g for g in failed if g.timed_out]
    codes = Counter(g.error.code if g.error else "unknown" for g in failed)
    return Attention(
        quarantined=[g for g in active if g.attention is not None],
        stuck=[g for g in active if suspected_stuck(g, now, policy)],
        timed_out=timed_out,
        failed_by_code=codes.most_common(),
        failed=[g for g in failed if not g.timed_out],
        downloads=downloads,
    )


# --- chart figures --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HourBar:
    start: datetime
    completed: int
    failed: int
    cancelled: int
    active: int

    @property
    def total(self) -> int:
        return self.completed + self.failed + self.cancelled + self.active


def per_hour(items: Iterable[Generation], now: datetime, hours: int = 24) -> list[HourBar]:
    """Generations created in each of the last `hours` hours, by outcome."""
    top = now.replace(minute=0, second=0, microsecond=0)
    starts = [top - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    counts: dict[datetime, Counter[str]] = {s: Counter() for s in starts}
    for g in items:
        bucket = g.created_at.replace(minute=0, second=0, microsecond=0)
        if bucket in counts:
            key = g.status.value if g.terminal else "active"
            counts[bucket][key] += 1
    return [
        HourBar(s, c["completed"], c["failed"], c["cancelled"], c["active"])
        for s, c in counts.items()
    ]


def durations(items: Iterable[Generation]) -> dict[str, list[float]]:
    """Seconds spent queued, rendering, and from the provider's completion to stored.

    Never below zero: a provider's completion time in whole seconds (a unix `completed_at`)
    can fall a fraction before the moment reelwatch first saw the render running."""
    queue: list[float] = []
    render: list[float] = []
    lag: list[float] = []
    for g in items:
        if g.submitted_at and g.started_at:
            queue.append(max(0.0, (g.started_at - g.submitted_at).total_seconds()))
        if g.started_at and g.remote_completed_at:
            render.append(max(0.0, (g.remote_completed_at - g.started_at).total_seconds()))
        if g.status is Status.COMPLETED and g.remote_completed_at and g.completed_at:
            lag.append(max(0.0, (g.completed_at - g.remote_completed_at).total_seconds()))
    return {"queue": queue, "render": render, "lag": lag}


def histogram(values: Sequence[float], bins: int = 10) -> list[tuple[float, float, int]]:
    """(low, high, count) per bin over the values' range; empty for no values."""
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / width))] += 1
    return [(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]

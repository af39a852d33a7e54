"""When to look again: adaptive poll intervals and backoff with full jitter. Pure functions."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from reelwatch import predict
from reelwatch.models import Generation

FINISH_SLACK_S = 0.25  # the last look lands this long after the predicted end
OVERDUE_MAX_S = 15.0  # past every render of its shape, a job is looked at about 4 times a minute
INFORM = 0.5  # a loosely known end is looked at again this far of the way to its likely time
LOOSE = 0.25  # loosely known: the 10 %-90 % range is wider than this share of the likely time
QUEUE_WORTH = 5.0  # a look at a queue is worth less: it only pins when the render starts


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The knobs of the lifecycle, from settings; times in seconds."""

    timeout_s: float = 900.0
    poll_min_s: float = 1.0
    poll_max_s: float = 60.0
    webhook_poll_s: float | None = None  # set when webhooks are configured: polling is a safety net
    backoff_base_s: float = 1.0
    backoff_max_s: float = 120.0
    queued_poll_s: float = 10.0
    second_look_s: float = 6.0  # after the first in-progress look, to measure the rate
    reconcile_delay_s: float = 30.0  # wait this long after a lost create before listing
    look_worth_s: float = 0.2  # seconds of detection lag one status request is worth


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def backoff_s(failures: int, policy: Policy, rand: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**(failures-1))].

    `rand` is a number in [0, 1) supplied by the caller, so this stays pure and testable.
    A floor of a tenth of the base (never above the ceiling) keeps a retry from landing in the
    same instant.
    """
    exponent = max(0, failures - 1)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * (2.0 ** min(exponent, 32)))
    floor = min(policy.backoff_base_s / 10.0, ceiling)
    return max(floor, clamp(rand, 0.0, 1.0) * ceiling)


def poll_interval_s(
    generation: Generation,
    now: datetime,
    policy: Policy,
    previous_look: datetime | None = None,
    history: predict.History | None = None,
) -> float:
    """How long until the next status check of a generation that is still rendering.

    A render whose own percent moves is aimed at the end its rate predicts (below). Otherwise,
    with a forecast from the history of its shape (`predict`): past every render of the shape,
    looks thin out; for shapes that show no progress, the next look is where the chance of
    finding the end, times the wait, pays for a request (`Remaining.look_after`). Otherwise:

    While queued (or before the progress has moved between two looks) the interval doubles
    with the time waited, from `queued_poll_s`: nothing is gained by watching a queue closely.
    Once a rate is known, the next look is aimed a safety margin before the predicted end (the
    margin shrinks as the estimate firms up over a longer span) while that margin is more than
    `poll_min_s`, and the last one just after it. Never faster than `poll_min_s` nor slower
    than `poll_max_s`; with webhooks configured, polling is only a safety net.
    """
    if policy.webhook_poll_s is not None:
        return policy.webhook_poll_s
    eta = generation.eta_seconds(now)
    forecast = predict.forecast(generation, now, history)
    if forecast.remaining is None and eta is not None and eta > 0:
        return _aimed(generation, eta, policy)  # its own progress rate says when it ends
    if forecast.remaining is not None:
        if forecast.overdue_s > 0:
            if eta is not None and eta > 0:
                # Past every render the history holds, but its own percent still moves and
                # says when it ends: early in a run the history holds only the short renders
                # (the long ones have not finished yet), so a long one is "past" them all.
                return _aimed(generation, eta, policy)
            # Past what history allows and no rate of its own says otherwise: stuck or slow,
            # looks thin out (a webhook still wakes it at once).
            ceiling = min(policy.poll_max_s, OVERDUE_MAX_S)
            return clamp(forecast.overdue_s / 3, policy.poll_min_s, ceiling)
        worth = policy.look_worth_s * (QUEUE_WORTH if forecast.source == "queue" else 1.0)
        wait = forecast.remaining.look_after(worth)
        if forecast.signal and forecast.source != "queue":
            # Its percent will say more: while the end is still loosely known, look again
            # half-way to its likely time (one look that narrows the rest beats many blind).
            likely = forecast.remaining.quantile(0.5)
            spread = forecast.remaining.quantile(0.9) - forecast.remaining.quantile(0.1)
            if spread > LOOSE * likely:
                wait = min(wait, INFORM * likely)
        return clamp(wait, policy.poll_min_s, policy.poll_max_s)
    if eta is not None:
        return _aimed(generation, eta, policy)
    waited = (now - generation.watch_started_at).total_seconds()
    interval = max(policy.queued_poll_s, waited)
    if previous_look is not None and generation.progress > 0:
        # First look at a render: it began after the previous look (which saw it queued), so
        # the rate is at least progress / (now - previous look); the end is no later than that.
        since = max(0.0, (now - previous_look).total_seconds())
        latest_end = (99 - generation.progress) * since / generation.progress
        # A second look soon gives a real rate; it costs one request and saves a blind wait.
        interval = min(interval, latest_end + FINISH_SLACK_S, policy.second_look_s)
    return clamp(interval, policy.poll_min_s, policy.poll_max_s)


def _aimed(generation: Generation, eta: float, policy: Policy) -> float:
    gained = max(1, generation.progress - generation.started_progress)
    margin = max(0.5, 2.0 * eta / gained)  # integer percents: the rate is good to 1/gained
    # A look a margin before the end refines a loose estimate; once the estimate is good to
    # about a second it would learn nothing, so the next look is the last one.
    if margin > policy.poll_min_s and eta - margin >= policy.poll_min_s:
        return clamp(eta - margin, policy.poll_min_s, policy.poll_max_s)
    return clamp(eta + FINISH_SLACK_S, policy.poll_min_s, policy.poll_max_s)


def next_poll_at(
    generation: Generation,
    now: datetime,
    policy: Policy,
    previous_look: datetime | None = None,
    history: predict.History | None = None,
) -> datetime:
    interval = poll_interval_s(generation, now, policy, previous_look, history)
    return now + timedelta(seconds=interval)


def deadline(generation: Generation, policy: Policy) -> datetime:
    """When a generation still rendering is failed as timed out."""
    return generation.watch_started_at + timedelta(seconds=policy.timeout_s)

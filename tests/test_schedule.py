"""When to look again: backoff with full jitter and adaptive poll intervals (pure functions)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelwatch import predict, schedule
from reelwatch.models import Generation, Status

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = schedule.Policy(
    timeout_s=900.0,
    poll_min_s=1.0,
    poll_max_s=30.0,
    backoff_base_s=1.0,
    backoff_max_s=120.0,
    queued_poll_s=5.0,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def generation(**fields: Any) -> Generation:
    """A generation watched since T0; keyword arguments override any field."""
    values: dict[str, Any] = {
        "id": "gen_1",
        "provider": "openai",
        "video_id": "video_1",
        "status": Status.QUEUED,
        "progress": 0,
        "model": "sora-2",
        "seconds": 8,
        "size": "1280x720",
        "prompt": "a lighthouse at dusk",
        "created_at": T0,
        "watch_started_at": T0,
        "next_poll_at": T0,
    }
    values.update(fields)
    return Generation(**values)


def rendering(
    progress: int, started_s: float = 0.0, started_progress: int = 0, seen_s: float | None = None
) -> Generation:
    """In progress: first seen at `started_s` with `started_progress`, now `progress` (seen
    at `seen_s`, when the progress last changed)."""
    return generation(
        status=Status.IN_PROGRESS,
        progress=progress,
        started_at=at(started_s),
        started_progress=started_progress,
        last_progress_at=at(seen_s if seen_s is not None else started_s),
    )


BIG = schedule.Policy(poll_min_s=0.5, poll_max_s=600.0, queued_poll_s=5.0)


policies = st.builds(
    schedule.Policy,
    poll_min_s=st.floats(0.1, 10.0),
    poll_max_s=st.floats(10.0, 300.0),
    backoff_base_s=st.floats(0.01, 30.0),
    backoff_max_s=st.floats(0.001, 3600.0),
    queued_poll_s=st.floats(0.0, 60.0),
)
rands = st.floats(0.0, 1.0, exclude_max=True)


# --- clamp ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(-1.0, 0.0), (0.0, 0.0), (5.0, 5.0), (10.0, 10.0), (11.0, 10.0)]
)
def test_clamp_keeps_values_within_bounds(value: float, expected: float) -> None:
    """clamp returns the value bounded to [low, high]."""
    assert schedule.clamp(value, 0.0, 10.0) == expected


# --- backoff --------------------------------------------------------------------------------


def test_backoff_first_failure_ceiling_is_the_base() -> None:
    """After one failure the delay is at most the base."""
    assert schedule.backoff_s(1, POLICY, 0.999) == pytest.approx(0.999 * POLICY.backoff_base_s)


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5, 6, 7])
def test_backoff_ceiling_doubles_per_failure(failures: int) -> None:
    """The jitter range is base * 2**(failures-1) wide."""
    ceiling = POLICY.backoff_base_s * 2 ** (failures - 1)
    assert schedule.backoff_s(failures, POLICY, 0.5) == pytest.approx(0.5 * ceiling)


def test_backoff_ceiling_is_capped_at_the_max() -> None:
    """However many failures, the delay never exceeds backoff_max_s."""
    assert schedule.backoff_s(50, POLICY, 0.999) == pytest.approx(0.999 * POLICY.backoff_max_s)


def test_backoff_has_a_floor_of_a_tenth_of_the_base() -> None:
    """A zero draw still waits a tenth of the base, so a retry never lands in the same instant."""
    assert schedule.backoff_s(3, POLICY, 0.0) == pytest.approx(POLICY.backoff_base_s / 10)


def test_backoff_floor_never_exceeds_the_ceiling() -> None:
    """With backoff_max_s below a tenth of the base the max still wins."""
    policy = schedule.Policy(backoff_base_s=10.0, backoff_max_s=0.5)
    assert schedule.backoff_s(1, policy, 0.0) == pytest.approx(0.5)


@pytest.mark.parametrize("failures", [0, -3])
def test_backoff_without_failures_uses_the_first_step(failures: int) -> None:
    """Zero or negative failure counts back off like the first failure."""
    assert schedule.backoff_s(failures, POLICY, 0.5) == schedule.backoff_s(1, POLICY, 0.5)


def test_backoff_with_huge_failure_counts_does_not_overflow() -> None:
    """A very long failure streak stays at the max instead of overflowing."""
    assert schedule.backoff_s(10**9, POLICY, 0.5) == pytest.approx(0.5 * POLICY.backoff_max_s)


@pytest.mark.parametrize("rand", [-0.5, 1.5])
def test_backoff_clamps_an_out_of_range_draw(rand: float) -> None:
    """A draw outside [0, 1] cannot push the delay outside the jitter range."""
    delay = schedule.backoff_s(4, POLICY, rand)
    assert POLICY.backoff_base_s / 10 <= delay <= 8 * POLICY.backoff_base_s


@settings(max_examples=300)
@given(failures=st.integers(-5, 200), policy=policies, rand=rands)
def test_backoff_is_always_within_floor_and_ceiling(
    failures: int, policy: schedule.Policy, rand: float
) -> None:
    """Backoff lies in [min(base/10, ceiling), ceiling] with ceiling = min(max, base*2**(n-1))."""
    exponent = max(0, failures - 1)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2.0 ** min(exponent, 32))
    delay = schedule.backoff_s(failures, policy, rand)
    assert min(policy.backoff_base_s / 10, ceiling) <= delay <= ceiling


@settings(max_examples=200)
@given(failures=st.integers(1, 40), policy=policies, a=rands, b=rands)
def test_backoff_grows_with_the_draw(
    failures: int, policy: schedule.Policy, a: float, b: float
) -> None:
    """A larger jitter draw never gives a shorter delay."""
    low, high = sorted((a, b))
    assert schedule.backoff_s(failures, policy, low) <= schedule.backoff_s(failures, policy, high)


@settings(max_examples=200)
@given(failures=st.integers(1, 40), policy=policies, rand=rands)
def test_backoff_never_shrinks_with_more_failures(
    failures: int, policy: schedule.Policy, rand: float
) -> None:
    """For the same draw, one more failure never gives a shorter delay."""
    before = schedule.backoff_s(failures, policy, rand)
    assert schedule.backoff_s(failures + 1, policy, rand) >= before


# --- poll interval --------------------------------------------------------------------------


def test_queued_polls_at_the_slow_queued_interval() -> None:
    """A freshly queued generation is polled every queued_poll_s."""
    assert schedule.poll_interval_s(generation(), at(1), POLICY) == POLICY.queued_poll_s


def test_queued_interval_doubles_with_the_wait() -> None:
    """The longer it has been queued, the slower it is polled (as long as it has waited)."""
    assert schedule.poll_interval_s(generation(), at(20), POLICY) == pytest.approx(20.0)


def test_queued_interval_is_capped_at_poll_max() -> None:
    """A long wait never polls slower than poll_max_s."""
    assert schedule.poll_interval_s(generation(), at(3600), POLICY) == POLICY.poll_max_s


def test_queued_interval_respects_poll_min() -> None:
    """A queued interval below poll_min_s is raised to poll_min_s."""
    policy = schedule.Policy(poll_min_s=10.0, queued_poll_s=2.0)
    assert schedule.poll_interval_s(generation(), at(1), policy) == 10.0


def test_pending_polls_like_queued() -> None:
    """A pending generation gets the slow queued interval."""
    pending = generation(status=Status.PENDING, video_id=None)
    assert schedule.poll_interval_s(pending, at(1), POLICY) == POLICY.queued_poll_s


def test_one_look_at_a_render_gives_no_rate_so_it_polls_like_queued() -> None:
    """A single in-progress observation has no rate yet: the queued interval applies."""
    g = rendering(30, started_s=4, started_progress=30, seen_s=4)
    assert schedule.poll_interval_s(g, at(4), POLICY) == POLICY.queued_poll_s


def test_without_started_at_there_is_no_rate() -> None:
    """Without a first in-progress look there is nothing to measure a rate from."""
    g = generation(status=Status.IN_PROGRESS, progress=50)
    assert schedule.poll_interval_s(g, at(5), POLICY) == POLICY.queued_poll_s


def test_two_looks_aim_a_margin_before_the_predicted_end() -> None:
    """10% -> 30% over 20 s is 1 %/s: the end (99%) is 68.5 s away; aim ~7 s before it."""
    g = rendering(30, started_s=0, started_progress=10, seen_s=20)
    eta = 68.5
    margin = 2.0 * eta / 20
    interval = schedule.poll_interval_s(g, at(20), BIG)
    assert interval == pytest.approx(eta - margin)


def test_near_the_end_the_last_look_lands_just_after_it() -> None:
    """When the end is closer than the margin, poll just after the predicted end."""
    g = rendering(98, started_s=0, started_progress=0, seen_s=98)
    eta = 0.5
    assert schedule.poll_interval_s(g, at(98), BIG) == pytest.approx(eta + schedule.FINISH_SLACK_S)


def test_a_firm_estimate_goes_straight_to_the_last_look() -> None:
    """10% -> 90% over 80 s: 8.5 s left, good to 2 * 8.5 / 80 = 0.2 s (under poll_min_s): no
    look before the end, the next is the last."""
    g = rendering(90, started_s=0, started_progress=10, seen_s=80)
    eta = 8.5
    interval = schedule.poll_interval_s(g, at(80), BIG)
    assert interval == pytest.approx(eta + schedule.FINISH_SLACK_S)


def test_the_interval_is_clamped_to_poll_max_early_on() -> None:
    """A far-away end still polls at least every poll_max_s."""
    g = rendering(2, started_s=0, started_progress=1, seen_s=10)
    assert schedule.poll_interval_s(g, at(10), POLICY) == POLICY.poll_max_s


def test_eta_counts_from_the_latest_observation() -> None:
    """Time passing since the last look shortens the remaining estimate one for one."""
    g = rendering(50, started_s=0, started_progress=0, seen_s=50)
    assert g.eta_seconds(at(50)) == pytest.approx(48.5)
    assert g.eta_seconds(at(60)) == pytest.approx(38.5)
    assert g.eta_seconds(at(200)) == 0.0


def test_webhook_configured_polls_only_as_a_safety_net() -> None:
    """With webhook_poll_s set every rendering generation polls at that slow interval."""
    policy = schedule.Policy(webhook_poll_s=300.0)
    for g in (generation(), rendering(99), rendering(0)):
        assert schedule.poll_interval_s(g, at(100), policy) == 300.0


@settings(max_examples=300)
@given(
    status=st.sampled_from([Status.PENDING, Status.QUEUED, Status.IN_PROGRESS]),
    progress=st.integers(0, 100),
    started_s=st.floats(0, 3600) | st.none(),
    now_s=st.floats(-60, 7200),
    policy=policies,
)
def test_poll_interval_is_within_poll_bounds(
    status: Status,
    progress: int,
    started_s: float | None,
    now_s: float,
    policy: schedule.Policy,
) -> None:
    """Without webhooks the interval always lies in [poll_min_s, poll_max_s]."""
    started = None if started_s is None else at(started_s)
    g = generation(
        status=status, progress=progress, started_at=started, last_progress_at=at(now_s / 2)
    )
    interval = schedule.poll_interval_s(g, at(now_s), policy)
    assert policy.poll_min_s <= interval <= policy.poll_max_s


def test_next_poll_at_is_now_plus_the_interval() -> None:
    """next_poll_at adds the poll interval to now."""
    g = rendering(50)
    now = at(20)
    expected = now + timedelta(seconds=schedule.poll_interval_s(g, now, POLICY))
    assert schedule.next_poll_at(g, now, POLICY) == expected


def test_deadline_is_watch_start_plus_timeout() -> None:
    """The timeout counts from watch_started_at."""
    g = generation(watch_started_at=at(100))
    assert schedule.deadline(g, POLICY) == at(100 + POLICY.timeout_s)


def test_first_look_at_a_render_looks_again_soon_to_measure_the_rate() -> None:
    """At the first in-progress look there is no rate: a second look comes after second_look_s."""
    g = rendering(30, started_s=20, started_progress=30, seen_s=20)
    interval = schedule.poll_interval_s(g, at(20), POLICY, previous_look=at(10))
    assert interval == pytest.approx(POLICY.second_look_s)


def test_first_look_never_waits_past_the_latest_possible_end() -> None:
    """Seen queued at 10 s and at 90% at 20 s: it ends within 1.1 s, so look by then."""
    g = rendering(90, started_s=20, started_progress=90, seen_s=20)
    interval = schedule.poll_interval_s(g, at(20), POLICY, previous_look=at(10))
    assert interval == pytest.approx(9 * 10 / 90 + schedule.FINISH_SLACK_S)


# --- with a history of the shape --------------------------------------------------------------


def _lumpy_history() -> predict.History:
    """Renders of 40-80 s whose percent jumped at uneven points (seen at three looks each)."""
    rng = random.Random(7)
    runs = []
    for _ in range(100):
        marks = tuple(sorted((rng.uniform(0.1, 0.9), 0) for _ in range(3)))
        runs.append(predict.Run(2.0, rng.uniform(40.0, 80.0), tuple(
            (f, 10 + 30 * i) for i, (f, _) in enumerate(marks)
        )))  # fmt: skip
    return predict.History(runs)


def test_with_history_a_moving_percent_is_planned_from_the_forecast_not_the_rate() -> None:
    """With a history of its (lumpy) shape, a render whose percent moves is looked at where
    the forecast says (Keller's rule, or half-way to the likely end while that is loosely
    known), not where the straight line through its two percents ends."""
    history = _lumpy_history()
    g = dataclasses.replace(
        rendering(40, started_s=5, started_progress=10, seen_s=10), started_after=at(0)
    )
    now = at(10)
    forecast = predict.forecast(g, now, history)
    assert forecast.remaining is not None and forecast.signal
    remaining = forecast.remaining
    likely = remaining.quantile(0.5)
    assert remaining.quantile(0.9) - remaining.quantile(0.1) > schedule.LOOSE * likely
    expected = min(remaining.look_after(BIG.look_worth_s), schedule.INFORM * likely)
    interval = schedule.poll_interval_s(g, now, BIG, history=history)
    assert interval == pytest.approx(max(BIG.poll_min_s, expected))
    assert interval != pytest.approx(schedule.poll_interval_s(g, now, BIG), abs=0.5)


def test_a_firmly_known_end_with_history_gets_no_extra_look() -> None:
    """Renders of 60-61 s that show no progress: one look where the end is, none half-way."""
    history = predict.History([predict.Run(2.0, 60.0 + i / 100) for i in range(100)])
    g = generation(status=Status.IN_PROGRESS, started_at=at(10), started_after=at(10))
    interval = schedule.poll_interval_s(g, at(20), BIG, history=history)
    assert 50.0 <= interval <= 51.5


def _short_history() -> predict.History:
    """Renders of 20-50 s (early in a run of mixed lengths, only the short ones have ended),
    whose percent moved in a straight line."""
    rng = random.Random(3)
    runs = [
        predict.Run(1.0, rng.uniform(20.0, 50.0), ((0.25, 25), (0.5, 50), (0.75, 75)))
        for _ in range(100)
    ]
    return predict.History(runs)


def test_past_every_run_but_its_own_percent_says_it_ends_soon_gets_the_aimed_look() -> None:
    """A render 55 s long, past every run of the history, at 97 % and moving: looked at when
    its own rate says it ends (about 1.7 s), not thinned like a stuck one (up to 15 s)."""
    history = _short_history()
    g = dataclasses.replace(
        rendering(97, started_s=4, started_progress=1, seen_s=57.7), started_after=at(0)
    )
    now = at(57.7)
    assert predict.forecast(g, now, history).overdue_s > 0
    eta = g.eta_seconds(now)
    assert eta is not None and 0 < eta < 3
    interval = schedule.poll_interval_s(g, now, BIG, history=history)
    assert interval <= eta + schedule.FINISH_SLACK_S


def test_past_every_run_and_its_percent_stopped_is_thinned() -> None:
    """The same render whose percent stopped at 40 % long ago: its own rate's end has passed,
    so looks thin out (stuck or slow)."""
    history = _short_history()
    g = dataclasses.replace(
        rendering(40, started_s=4, started_progress=1, seen_s=20), started_after=at(0)
    )
    now = at(90)
    forecast = predict.forecast(g, now, history)
    assert forecast.overdue_s > 0
    eta = g.eta_seconds(now)
    assert eta is None or eta <= 0
    interval = schedule.poll_interval_s(g, now, BIG, history=history)
    expected = min(BIG.poll_max_s, schedule.OVERDUE_MAX_S)
    assert interval == pytest.approx(max(BIG.poll_min_s, min(expected, forecast.overdue_s / 3)))

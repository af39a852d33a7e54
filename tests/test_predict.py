"""The predictor (reelwatch.predict): pure, so checked on numbers and with Hypothesis properties.

The schedule-level checks at the end drive `Remaining.look_after` the way a worker would, on
renders drawn from a seeded generator, and count looks and lag: the shape of the benchmark's
targets without any I/O or waiting.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelwatch import predict
from reelwatch.models import Generation, Status
from reelwatch.predict import History, Remaining, Run

samples = st.lists(st.floats(0.0, 500.0), min_size=1, max_size=60).map(sorted)


def linear_run(render_s: float, looks: int = 5) -> Run:
    """A render whose percent rose in a straight line, seen at `looks` evenly spaced looks."""
    marks = tuple((i / looks, int(99 * i / looks)) for i in range(1, looks))
    return Run(queue_s=2.0, render_s=render_s, marks=marks)


def test_a_run_reached_a_percent_between_the_marks_around_it() -> None:
    run = Run(queue_s=None, render_s=10.0, marks=((0.2, 20), (0.6, 60)))
    assert run.fraction_at(10) == pytest.approx(0.1)
    assert run.fraction_at(40) == pytest.approx(0.4)
    assert run.fraction_at(60) == pytest.approx(0.6)
    assert run.fraction_at(61) is None


def test_too_little_history_says_nothing() -> None:
    history = History([linear_run(30.0)] * (predict.MIN_RUNS - 1))
    assert predict.rendering(history, elapsed_s=10.0) is predict.NOTHING
    assert predict.queued(history, waited_s=1.0) is predict.NOTHING


@settings(max_examples=300, deadline=None)
@given(values=samples, offset=st.floats(-50.0, 600.0), blur=st.floats(0.0, 20.0))
def test_the_time_left_is_a_distribution(values: list[float], offset: float, blur: float) -> None:
    remaining = Remaining(values, offset=offset, blur=blur)
    points = [0.0, 0.5, 1.0, 5.0, 50.0, 1000.0]
    cdfs = [remaining.cdf(t) for t in points]
    assert all(0.0 <= c <= 1.0 for c in cdfs)
    assert cdfs == sorted(cdfs)
    if not remaining.overdue:
        assert remaining.cdf(remaining.latest) == pytest.approx(1.0)
        for q in (0.1, 0.5, 0.9):
            assert remaining.cdf(remaining.quantile(q)) >= q - 1e-9


@settings(max_examples=300, deadline=None)
@given(values=samples, offset=st.floats(-50.0, 400.0), worth=st.floats(0.05, 10.0))
def test_a_look_is_never_after_the_latest_end_and_later_when_looks_cost_more(
    values: list[float], offset: float, worth: float
) -> None:
    remaining = Remaining(values, offset=offset)
    wait = remaining.look_after(worth)
    assert 0.0 <= wait <= max(0.0, remaining.latest) + 1e-9
    assert remaining.look_after(worth * 2) >= wait - 0.02


def test_a_look_lands_where_keller_puts_it() -> None:
    # Uniform end over [27, 33] s, one look worth 0.5 s of lag: d * (d - 27) / 6 = 1.
    remaining = Remaining([27.0 + 6.0 * i / 1000 for i in range(1001)])
    expected = (27.0 + (27.0**2 + 24.0) ** 0.5) / 2
    assert remaining.look_after(0.5) == pytest.approx(expected, abs=0.05)


def test_straight_line_progress_is_read_through_the_history() -> None:
    rng = random.Random(1)
    history = History([linear_run(rng.uniform(20.0, 60.0)) for _ in range(100)])
    # This render takes 45 s and showed 40 % at 18 s; it has run 20 s.
    forecast = predict.rendering(history, elapsed_s=20.0, percent=40, reached_s=18.0 * 40 / 39.6)
    assert forecast.source == "progress"
    assert forecast.remaining is not None
    assert forecast.remaining.quantile(0.5) == pytest.approx(25.0, rel=0.1)


def easeout_run(render_s: float, looks: tuple[float, ...]) -> Run:
    """A render whose percent rose fast, then slow (the simulator's `easeout`), seen at `looks`
    (fractions of the render)."""
    return Run(2.0, render_s, tuple((f, int(99 * (1 - (1 - f) ** 2))) for f in looks))


def test_two_percents_read_through_the_shapes_curve_not_a_straight_line() -> None:
    rng = random.Random(4)
    looks = [tuple(sorted(rng.uniform(0.02, 0.98) for _ in range(4))) for _ in range(100)]
    history = History([easeout_run(rng.uniform(40.0, 80.0), f) for f in looks])
    # A 60 s render first seen at 10 % done (19 %), again at 50 % done (74 %), now at 32 s.
    start = 0.0
    anchor_s, reached_s = 6.0, 30.0
    forecast = predict.rendering(
        history,
        elapsed_s=32.0,
        start_blur_s=4.0,
        percent=74,
        reached_s=reached_s,
        anchor_percent=19,
        anchor_s=anchor_s - start,
    )
    assert forecast.source == "progress" and forecast.remaining is not None
    assert forecast.remaining.quantile(0.5) == pytest.approx(60.0 - 32.0, abs=3.0)
    # The straight line through the same two looks says about 9 s: 19 s too early.
    straight = 30.0 + (99 - 74) * (reached_s - anchor_s) / (74 - 19) - 32.0
    assert straight < 28.0 - 15.0


def test_a_percent_standing_still_past_its_time_falls_back_on_the_durations() -> None:
    history = History([linear_run(60.0 + i / 10) for i in range(50)])
    # 40 % was reached at 10 s (as if it took 25 s in all); at 50 s it still shows 40 %.
    forecast = predict.rendering(history, elapsed_s=50.0, percent=40, reached_s=10.0)
    assert forecast.source == "history" and forecast.overdue_s == 0.0
    assert forecast.remaining is not None
    assert 10.0 <= forecast.remaining.quantile(0.5) <= 15.0


def test_a_run_is_learnt_with_each_percent_at_the_look_that_showed_it() -> None:
    from datetime import timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    at = [t0 + timedelta(seconds=s) for s in (1, 3, 8, 13, 14)]
    looks = [
        predict.Look(at[0], "queued", 0),
        predict.Look(at[1], "in_progress", 10),  # the render began between 1 s and 3 s
        predict.Look(at[2], "in_progress", 40),
        predict.Look(at[3], "in_progress", 40),
        predict.Look(at[4], "downloading", 100),
    ]
    run = predict.learn(t0, t0 + timedelta(seconds=13), looks)
    assert run is not None
    assert run.queue_s == 2.0 and run.render_s == pytest.approx(13.5 - 2.0)
    assert [percent for _, percent in run.marks] == [10, 40]
    assert [f for f, _ in run.marks] == pytest.approx([1.0 / 11.5, 6.0 / 11.5])


def test_looks_folded_by_the_store_still_bound_the_windows() -> None:
    """The store keeps no event for a look that changed nothing; the next event names the
    last such look (`after`), and the run learnt is the one all the looks would give."""
    from datetime import timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    every = [
        predict.Look(t0 + timedelta(seconds=1), "queued", 0),
        predict.Look(t0 + timedelta(seconds=2), "queued", 0),
        predict.Look(t0 + timedelta(seconds=3), "in_progress", 10),
        predict.Look(t0 + timedelta(seconds=8), "in_progress", 10),
        predict.Look(t0 + timedelta(seconds=12), "in_progress", 10),
        predict.Look(t0 + timedelta(seconds=14), "downloading", 100),
    ]
    kept = [
        every[0],
        dataclasses.replace(every[2], after=every[1].at),
        dataclasses.replace(every[5], after=every[4].at),
    ]
    completed = t0 + timedelta(seconds=13)
    assert predict.learn(t0, completed, kept) == predict.learn(t0, completed, every)
    run = predict.learn(t0, completed, kept)
    assert run is not None and run.queue_s == 2.5


def test_progress_that_says_nothing_falls_back_on_the_durations() -> None:
    rng = random.Random(2)
    # Percents unrelated to the fraction done (jumps anywhere), render times tight.
    runs = [Run(1.0, rng.uniform(29.0, 31.0), ((rng.uniform(0.05, 0.95), 50),)) for _ in range(100)]
    forecast = predict.rendering(History(runs), elapsed_s=10.0, percent=50, reached_s=9.0)
    assert forecast.source == "history"
    assert forecast.remaining is not None
    assert 19.0 <= forecast.remaining.quantile(0.5) <= 21.0


def test_past_every_run_of_its_shape_a_render_is_overdue() -> None:
    history = History([linear_run(30.0 + i / 10) for i in range(50)])
    forecast = predict.rendering(history, elapsed_s=60.0)
    assert forecast.overdue_s == pytest.approx(60.0 - 34.9, abs=0.01)
    assert predict.rendering(history, elapsed_s=20.0).overdue_s == 0.0


def chase(remaining_for: object, truth: float, worth: float) -> tuple[int, float]:
    """Look when `look_after` says until the end is seen: (looks, lag)."""
    assert callable(remaining_for)
    now, looks = 0.0, 0
    while True:
        remaining: Remaining = remaining_for(now)
        wait = max(0.25, remaining.look_after(worth)) if not remaining.overdue else 1.0
        now += wait
        looks += 1
        if now >= truth:
            return looks, now - truth


def test_no_progress_and_a_tight_spread_is_caught_within_seconds_for_few_looks() -> None:
    # The benchmark's no-progress target: spread (sd) 10 %, p99 lag <= 3 s, <= 8 looks.
    rng = random.Random(3)
    history = History([Run(1.0, rng.gauss(30.0, 3.0)) for _ in range(200)])
    results = [
        chase(lambda now: Remaining(history.render, offset=now), rng.gauss(30.0, 3.0), 0.2)
        for _ in range(1000)
    ]
    lags = sorted(lag for _, lag in results)
    assert lags[int(0.99 * len(lags))] <= 3.0
    assert statistics.mean(looks for looks, _ in results) <= 8.0


def test_a_render_never_seen_rendering_teaches_nothing() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    looks = [
        predict.Look(t0 + timedelta(seconds=5), "queued", 0),
        predict.Look(t0 + timedelta(seconds=9), "downloading", 100),
    ]
    assert predict.learn(t0, t0 + timedelta(seconds=8), looks) is None
    looks.insert(1, predict.Look(t0 + timedelta(seconds=7), "in_progress", 0))
    run = predict.learn(t0, None, looks)
    assert run is not None
    assert (run.queue_s, run.render_s, run.marks) == (6.0, 2.0, ())


def test_the_shape_names_provider_model_length_size_and_the_inputs_that_change_the_render() -> None:
    sora = _rendering_generation(provider="openai", model="sora-2", seconds=8, size="1280x720")
    assert predict.shape_of(sora) == "openai sora-2 8 1280x720"
    veo = _rendering_generation(
        provider="fal",
        model="fal-ai/veo3",
        seconds=None,
        size=None,
        params={"resolution": "720p", "seed": 3},
    )
    shape = predict.shape_of(veo)
    assert shape == "fal fal-ai/veo3   resolution=720p"


def _rendering_generation(**changes: object) -> Generation:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "id": "gen_1",
        "provider": "openai",
        "video_id": "video_1",
        "status": Status.IN_PROGRESS,
        "progress": 0,
        "model": "sora-2",
        "seconds": 8,
        "size": "1280x720",
        "prompt": "a kite",
        "created_at": t0,
        "watch_started_at": t0,
        "submitted_at": t0,
        "started_at": t0,
        "started_after": t0,
    }
    values.update(changes)
    return Generation(**values)  # type: ignore[arg-type]


def test_the_eta_people_see_is_a_range_when_unsure_and_says_where_it_comes_from() -> None:
    from datetime import timedelta

    g = _rendering_generation()
    wide = History([Run(1.0, 60.0 + i) for i in range(60)])  # 1:00-1:59
    guess = predict.estimate(g, g.created_at + timedelta(seconds=10), wide)
    assert guess.source == "history"
    assert guess.seconds is not None and 75.0 <= guess.seconds <= 85.0
    assert guess.text is not None
    assert guess.text.startswith("about 1:") and ", at most 1:" in guess.text
    assert "usually 1:05-1:53 for this model" in guess.text
    tight = History([Run(1.0, 60.0 + i / 20) for i in range(60)])
    assert predict.estimate(g, g.created_at + timedelta(seconds=10), tight).text == (
        "about 0:51 (usually 1:00-1:03 for this model)"
    )
    late = predict.estimate(g, g.created_at + timedelta(seconds=200), tight)
    assert late.overdue and late.seconds is None
    assert late.text == "longer rendering than any like it so far"
    # Without history: the straight-line rate, a point; without a rate either: nothing.
    assert predict.estimate(g, g.created_at, None).text is None
    moving = _rendering_generation(
        progress=50, last_progress_at=g.created_at + timedelta(seconds=5)
    )
    assert predict.estimate(moving, g.created_at + timedelta(seconds=5), None).source == "rate"


def test_a_render_past_the_end_its_rate_pointed_to_is_overdue_never_eta_0_00() -> None:
    """Without history: 50 % after 5 s points to the end at about 10 s; at 30 s the ETA says
    overdue, not "about 0:00"."""
    from datetime import timedelta

    g = _rendering_generation()
    moving = _rendering_generation(
        progress=50, last_progress_at=g.created_at + timedelta(seconds=5)
    )
    late = predict.estimate(moving, g.created_at + timedelta(seconds=30), None)
    assert late.overdue and late.seconds is None and late.source == "rate"
    assert late.text == "overdue: past the end its progress pointed to"
    for at in range(60):
        text = predict.estimate(moving, g.created_at + timedelta(seconds=at), None).text
        assert text is None or "0:00" not in text


def test_stuck_means_well_past_every_render_of_its_shape() -> None:
    from datetime import timedelta

    g = _rendering_generation()
    history = History([Run(1.0, 30.0 + i / 10) for i in range(50)])  # up to 34.9 s
    assert predict.stuck(g, g.created_at + timedelta(seconds=90), history) is False
    assert predict.stuck(g, g.created_at + timedelta(seconds=96), history) is True
    assert predict.stuck(g, g.created_at + timedelta(seconds=96), None) is None

"""Progress profiles, realistic render times and load-dependent queue waits of the simulator.

One progress function (`jobs.progress_at`) serves every dialect: the OpenAI `progress` field,
Replicate's tqdm lines and fal's `Generating video: N%` lines all read it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator

import openai
import pytest
from replicate.prediction import Prediction

from reelwatch.simulator import RunningSimulator, SimClock, SimConfig, Simulator, jobs
from reelwatch.simulator import fal as sim_fal
from reelwatch.simulator import replicate as sim_replicate

PROFILES = ("linear", "lumps", "easeout", "stall", "none")
CREATED = 1_700_000_000.0
"""A realistic unix time: float rounding there is what the simulator lives with."""
QUEUE_S = 2.0
RENDER_S = 10.0
RENDER_AT = CREATED + QUEUE_S
FINISH_AT = RENDER_AT + RENDER_S
JOBS_PER_PROFILE = 25


def _job(
    prompt: str,
    *,
    dialect: str = "openai",
    extra: dict[str, object] | None = None,
    progress: str = "linear",
) -> jobs.Job:
    script = jobs.script_for(
        prompt,
        queue_s=QUEUE_S,
        render_s=RENDER_S,
        video_bytes=1000,
        expires_after_s=3600.0,
        progress=progress,
    )
    return jobs.Job(
        id=jobs.new_job_id(dialect),
        seq=0,
        created_at=CREATED,
        prompt=prompt,
        model="sora-2",
        seconds="4",
        size="720x1280",
        script=script,
        dialect=dialect,
        extra=extra or {},
    )


def _grid(start: float, stop: float, step: float) -> Iterator[float]:
    count = math.ceil((stop - start) / step)
    return (start + i * step for i in range(count + 1))


def _rendering_grid(step: float = 0.01) -> list[float]:
    """Times strictly inside the render, from its first instant to just before its end."""
    return [t for t in _grid(RENDER_AT, FINISH_AT, step) if t < FINISH_AT]


def _fraction(at: float) -> float:
    return (at - RENDER_AT) / RENDER_S


# -- the shape of each profile ------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_is_monotone_bounded_and_ends_at_100(profile: str) -> None:
    """0 in the queue, non-decreasing and <= 99 while rendering, 100 once completed."""
    for _ in range(JOBS_PER_PROFILE):
        job = _job(f"[sim:progress={profile}]")
        assert job.script.progress == profile
        previous = 0
        for at in _grid(CREATED - 1, FINISH_AT + 1, 0.01):
            state = jobs.state_at(job, at)
            if at < RENDER_AT:
                assert (state.status, state.progress) == ("queued", 0)
            elif at < FINISH_AT:
                assert state.status == "in_progress"
                assert 0 <= state.progress <= 99
                assert state.progress == jobs.progress_at(job, at)
            else:
                assert (state.status, state.progress) == ("completed", 100)
            assert state.progress >= previous
            previous = state.progress


def test_lumps_jump_two_to_four_times_and_never_overstate() -> None:
    """`lumps` holds still between 2-4 jumps, never above the true fraction done."""
    for _ in range(50):
        job = _job("[sim:progress=lumps]")
        readings = [(at, jobs.progress_at(job, at)) for at in _rendering_grid(0.001)]
        jumps = sum(1 for (_, a), (_, b) in itertools.pairwise(readings) if b != a)
        assert 2 <= jumps <= 4
        assert readings[0][1] == 0
        for at, progress in readings:
            assert progress <= 99 * _fraction(at) + 1e-9


def test_lumps_are_fixed_per_job() -> None:
    """The same job (same id) always reads the same; another job jumps elsewhere."""
    job = _job("[sim:progress=lumps]")
    again = jobs.progress_marks(job)
    assert jobs.progress_marks(job) == again
    others = {jobs.progress_marks(_job("[sim:progress=lumps]")) for _ in range(10)}
    assert len(others) > 1


def test_easeout_runs_ahead_of_linear_at_mid_render() -> None:
    """`easeout` is fast then slow: well above the straight line halfway through."""
    eased = _job("[sim:progress=easeout]")
    straight = _job("[sim:progress=linear]")
    middle = RENDER_AT + RENDER_S / 2
    assert jobs.progress_at(eased, middle) == 74
    assert jobs.progress_at(straight, middle) == 49
    for at in _rendering_grid(0.1)[1:]:
        assert jobs.progress_at(eased, at) >= jobs.progress_at(straight, at)


def test_stall_holds_flat_for_a_stretch_then_rejoins_the_line() -> None:
    """`stall`: on the straight line, flat for 20-40 % of the render, then back on the line."""
    step = 0.001
    for _ in range(JOBS_PER_PROFILE):
        job = _job("[sim:progress=stall]")
        grid = _rendering_grid(step)
        readings = [jobs.progress_at(job, at) for at in grid]
        line = [int(99 * _fraction(at)) for at in grid]
        # The longest flat run is the stall.
        best_start, best_len, start = 0, 0, 0
        for i in range(1, len(readings) + 1):
            if i == len(readings) or readings[i] != readings[start]:
                if i - start > best_len:
                    best_start, best_len = start, i - start
                start = i
        stall_s = best_len * step
        assert 0.2 * RENDER_S - 2 * step <= stall_s <= 0.4 * RENDER_S + 2 * step
        stall_from = _fraction(grid[best_start])
        assert 0.3 - 0.011 <= stall_from <= 0.6
        end = best_start + best_len
        assert readings[:best_start] == line[:best_start]
        assert readings[end:] == line[end:]
        assert readings[end] - readings[end - 1] >= 19  # the jump back to the line


def test_none_reports_nothing_until_it_completes() -> None:
    """`none` is 0 throughout the render (as Veo), then 100; a stuck one stays at 0."""
    job = _job("[sim:progress=none]")
    assert {jobs.progress_at(job, at) for at in _rendering_grid(0.01)} == {0}
    assert jobs.state_at(job, FINISH_AT).progress == 100
    stuck = _job("[sim:progress=none,stuck=70]")
    assert jobs.state_at(stuck, CREATED + 10**6) == jobs.State(status="in_progress", progress=0)


@pytest.mark.parametrize("profile", ["linear", "lumps", "easeout", "stall"])
def test_stuck_freezes_at_its_value_whatever_the_profile(profile: str) -> None:
    """A stuck job climbs as its profile goes, then freezes at its stuck value forever."""
    for _ in range(10):
        job = _job(f"[sim:progress={profile},stuck=70]")
        previous = 0
        for at in _grid(RENDER_AT, RENDER_AT + 3 * RENDER_S, 0.01):
            progress = jobs.progress_at(job, at)
            assert previous <= progress <= 70
            previous = progress
        assert jobs.state_at(job, CREATED + 10**9) == jobs.State(status="in_progress", progress=70)
        assert jobs.progress_marks(job)[-1][1] == 70


def test_linear_is_the_default_and_unchanged() -> None:
    """Without a directive the configured profile applies; `linear` is int(99 x fraction)."""
    job = _job("a cat")
    assert job.script.progress == "linear"
    assert jobs.progress_at(job, RENDER_AT + 5) == 49
    assert jobs.progress_at(job, RENDER_AT + 9.99) == 98
    assert _job("a cat", progress="easeout").script.progress == "easeout"
    assert _job("[sim:progress=none]", progress="easeout").script.progress == "none"


@pytest.mark.parametrize(
    "prompt", ["[sim:progress=bumpy]", "[sim:progress=]", "[sim:progress=LUMPS]"]
)
def test_unknown_profiles_are_refused(prompt: str) -> None:
    """An unknown profile is a DirectiveError naming the allowed ones."""
    with pytest.raises(jobs.DirectiveError, match="linear, lumps, easeout, stall, none"):
        _job(prompt)


def test_a_profile_needs_a_value() -> None:
    """`progress` is no flag."""
    with pytest.raises(jobs.DirectiveError, match="'progress' needs a value"):
        _job("[sim:progress]")


@pytest.mark.parametrize(
    "changes",
    [
        {"progress": "bumpy"},
        {"render_spread": -0.1},
        {"render_spread": math.inf},
        {"render_spread": math.nan},
        {"queue_per_active_s": -1.0},
        {"queue_per_active_s": math.nan},
        {"model_render_s": {"sora-2": -1.0}},
    ],
)
def test_bad_config_is_refused(changes: dict[str, object]) -> None:
    """Unknown profiles, negative or non-finite spreads and per-job queue seconds: ValueError."""
    with pytest.raises(ValueError, match=r"progress|render_spread|queue_per_active_s|model_"):
        SimConfig(**changes)  # type: ignore[arg-type]


def test_config_names_the_allowed_profiles() -> None:
    """The config error lists the profiles."""
    with pytest.raises(ValueError, match="linear, lumps, easeout, stall, none"):
        SimConfig(progress="bumpy")


# -- the logs of Replicate and fal read the same function ---------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_replicate_tqdm_lines_read_progress_at(profile: str) -> None:
    """The SDK's `Progress.parse` of the logs reads `progress_at` (up to the thinning)."""
    for _ in range(10):
        job = _job(f"[sim:progress={profile}]", dialect="replicate")
        exact = dict(jobs.progress_marks(job))
        assert len(exact) <= 21
        for at in _rendering_grid(0.05):
            logs = sim_replicate.logs_at(job, at)
            assert logs.startswith("Using seed: ")
            parsed = Prediction.Progress.parse(logs)
            truth = jobs.progress_at(job, at)
            if profile == "none":
                assert parsed is None
                assert truth == 0
                continue
            shown = 0 if parsed is None else round(parsed.percentage * 100)
            if parsed is not None:
                assert parsed.total in (25, 50, 100)
            assert shown <= truth < shown + jobs.MARK_STEP
            if profile == "lumps":
                assert shown == truth
        for when, percent in exact.items():
            parsed = Prediction.Progress.parse(sim_replicate.logs_at(job, when))
            assert parsed is not None
            assert round(parsed.percentage * 100) == percent == jobs.progress_at(job, when)
        done = Prediction.Progress.parse(sim_replicate.logs_at(job, FINISH_AT))
        assert done is not None
        assert done.percentage == 1.0


@pytest.mark.parametrize("profile", PROFILES)
def test_fal_log_lines_read_progress_at(profile: str) -> None:
    """The last `Generating video: N%` line reads `progress_at` (up to the thinning)."""
    for _ in range(10):
        job = _job(f"[sim:progress={profile}]", dialect="fal")
        for at in _rendering_grid(0.05):
            messages = [line["message"] for line in sim_fal.logs_at(job, at)]
            assert messages[0].startswith("Loading model weights")
            percents = [
                int(m.removeprefix("Generating video: ").removesuffix("%"))
                for m in messages
                if m.startswith("Generating video: ")
            ]
            assert percents == sorted(set(percents))
            truth = jobs.progress_at(job, at)
            if profile == "none":
                assert (percents, truth) == ([], 0)
                continue
            shown = percents[-1] if percents else 0
            assert shown <= truth < shown + jobs.MARK_STEP
            if profile in ("lumps", "stall"):
                assert len(percents) <= 21
        done = [line["message"] for line in sim_fal.logs_at(job, FINISH_AT)]
        assert done[-2:] == ["Generating video: 100%", "Uploaded output.mp4"]


def test_stall_logs_show_the_held_value_during_the_stall() -> None:
    """While a `stall` job is flat, its last log line is exactly the held value."""
    for _ in range(10):
        job = _job("[sim:progress=stall]", dialect="fal")
        grid = _rendering_grid(0.01)
        readings = [jobs.progress_at(job, at) for at in grid]
        held = max(set(readings), key=readings.count)
        for at, truth in zip(grid, readings, strict=True):
            if truth == held:
                last = sim_fal.logs_at(job, at)[-1]["message"]
                assert last == f"Generating video: {held}%"


@pytest.mark.parametrize("profile", PROFILES)
def test_replicate_logs_webhooks_fire_when_progress_lines_appear(profile: str) -> None:
    """`logs` webhook moments are the render start and the progress lines' moments, throttled."""
    extra = {"webhook": "http://hooks.invalid/r", "webhook_events_filter": ["logs"], "input": {}}
    job = _job(f"[sim:progress={profile}]", dialect="replicate", extra=extra)
    moments = [at for event, at in sim_replicate.webhook_moments(job) if event == "logs"]
    marks = [when for when, _ in jobs.progress_marks(job)]
    assert moments[0] == RENDER_AT
    assert set(moments) <= {RENDER_AT, *marks}
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert all(gap >= sim_replicate.LOGS_THROTTLE_S for gap in gaps)
    if profile == "none":
        assert moments == [RENDER_AT]
    for at in moments[1:]:
        parsed = Prediction.Progress.parse(sim_replicate.logs_at(job, at))
        assert parsed is not None
        assert round(parsed.percentage * 100) == jobs.progress_at(job, at)


# -- render times and queue waits ---------------------------------------------------------------


def _frozen_clock() -> SimClock:
    return SimClock(wall=lambda: CREATED)


@pytest.mark.parametrize(
    ("model", "seconds", "mean"),
    [("sora-2", "12", 45.0), ("sora-2-pro", "8", 60.0), ("sora-2-2025-10-06", "4", 15.0)],
)
def test_render_spread_draws_around_the_model_mean(model: str, seconds: str, mean: float) -> None:
    """2,000 draws: mean within 3 % of model mean x seconds / 8, relative sd within 20 %."""
    sim = Simulator(SimConfig(render_spread=0.1, seed=7), clock=_frozen_clock())
    draws = [
        sim.create(prompt="x", model=model, seconds=seconds).script.render_s for _ in range(2000)
    ]
    sample_mean = statistics.fmean(draws)
    assert abs(sample_mean - mean) <= 0.03 * mean
    assert abs(statistics.stdev(draws) / sample_mean - 0.1) <= 0.2 * 0.1


def test_render_spread_defaults_and_directives() -> None:
    """Other models use the middle of `render_s`; Replicate and fal the default seconds (4);
    a `render=` directive still wins; draws never fall below 0.2 x the mean."""
    config = SimConfig(render_s=(4.0, 12.0), render_spread=0.0, model_render_s={"acme/v": 20.0})
    sim = Simulator(config, clock=_frozen_clock())
    assert sim.create(prompt="x", model="sora-2-pro", seconds="8").script.render_s == 8.0
    assert sim.create(prompt="x", dialect="replicate", model="acme/v").script.render_s == 10.0
    assert sim.create(prompt="x", dialect="fal", model="owner/app").script.render_s == 4.0
    assert sim.create(prompt="[sim:render=3]", model="sora-2").script.render_s == 3.0
    wide = Simulator(SimConfig(render_spread=3.0), clock=_frozen_clock())
    draws = [wide.create(prompt="x", seconds="8").script.render_s for _ in range(500)]
    assert min(draws) >= 0.2 * 30.0
    assert len(set(draws)) == 500


def test_without_render_spread_the_uniform_draw_stays() -> None:
    """The default: uniform over `render_s`, the same draws as before for a seed."""
    sim = Simulator(SimConfig(render_s=(4.0, 10.0), seed=3), clock=_frozen_clock())
    draws = [sim.create(prompt="x", model="sora-2-pro").script.render_s for _ in range(200)]
    assert all(4.0 <= d <= 10.0 for d in draws)
    again = Simulator(SimConfig(render_s=(4.0, 10.0), seed=3), clock=_frozen_clock())
    assert [again.create(prompt="x").script.render_s for _ in range(200)] == draws


def test_queue_waits_grow_with_active_jobs_of_the_same_dialect() -> None:
    """With queue_per_active_s=1 a job waits one more second per job still queued or rendering."""
    clock = _frozen_clock()
    config = SimConfig(queue_s=(2.0, 2.0), render_s=(10.0, 10.0), queue_per_active_s=1.0)
    sim = Simulator(config, clock=clock)
    assert sim.create(prompt="first").script.queue_s == 2.0  # it counts itself from now on
    busy = [sim.create(prompt="[sim:queue=100,render=100]") for _ in range(5)]
    assert all(job.script.queue_s == 100 for job in busy)  # a directive is exact
    assert sim.create(prompt="x").script.queue_s >= 2.0 + 6
    assert sim.create(prompt="x", dialect="fal").script.queue_s == 2.0
    clock.advance(50)  # `first` (2 + 10 s) and the 8 s-queue job have ended
    assert sim.create(prompt="x").script.queue_s == 2.0 + 5
    sim.cancel(busy[0].id)
    sim.delete(busy[1].id)
    assert sim.create(prompt="x").script.queue_s == 2.0 + 3 + 1  # the one just before counts
    sim.delete(busy[1].id)  # again: nothing more to forget
    clock.advance(300)
    assert sim.create(prompt="x").script.queue_s == 2.0
    stuck = [sim.create(prompt="[sim:queue=0,stuck]") for _ in range(3)]
    clock.advance(10**6)
    assert sim.create(prompt="x").script.queue_s == 2.0 + len(stuck)


def test_queue_waits_ignore_load_by_default() -> None:
    """queue_per_active_s=0 (the default): the drawn queue time, however busy."""
    sim = Simulator(SimConfig(queue_s=(2.0, 2.0)), clock=_frozen_clock())
    for _ in range(20):
        assert sim.create(prompt="x").script.queue_s == 2.0


def test_reset_forgets_the_load() -> None:
    """After a reset no earlier job counts."""
    config = SimConfig(queue_s=(1.0, 1.0), queue_per_active_s=0.5)
    sim = Simulator(config, clock=_frozen_clock())
    for _ in range(4):
        sim.create(prompt="[sim:stuck]")
    assert sim.create(prompt="x").script.queue_s == 1.0 + 0.5 * 4
    sim.reset()
    assert sim.create(prompt="x").script.queue_s == 1.0


# -- over real HTTP -----------------------------------------------------------------------------


def test_lumpy_progress_over_http_moves_in_jumps(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """A `lumps` job's retrieved progress stays put, then jumps, 2-4 times, as the clock moves."""
    video = client.videos.create(prompt="a slow reveal [sim:progress=lumps,queue=0,render=10]")
    job = rs.sim.job(video.id)
    assert job is not None
    levels = {percent for _, percent in jobs.progress_marks(job)}
    assert 2 <= len(levels) <= 4
    seen: list[int] = []
    for _ in range(99):
        retrieved = client.videos.retrieve(video.id)
        if retrieved.status == "completed":
            break
        assert retrieved.status == "in_progress"
        seen.append(retrieved.progress)
        rs.sim.clock.advance(0.1)
    assert seen == sorted(seen)
    assert set(seen) <= {0} | levels
    assert set(seen) - {0} == levels
    rises = sum(1 for a, b in itertools.pairwise(seen) if b > a)
    assert 2 <= rises <= 4
    rs.sim.clock.advance(1)
    done = client.videos.retrieve(video.id)
    assert (done.status, done.progress) == ("completed", 100)


def test_default_profile_is_configurable_over_http(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """`SimConfig.progress` applies to jobs without a directive: `none` reads 0 while rendering."""
    rs.sim.reset(SimConfig(queue_s=(0.0, 0.0), render_s=(10.0, 10.0), progress="none"))
    video = client.videos.create(prompt="no progress reported")
    rs.sim.clock.advance(9)
    retrieved = client.videos.retrieve(video.id)
    assert (retrieved.status, retrieved.progress) == ("in_progress", 0)
    with pytest.raises(openai.BadRequestError, match="linear, lumps"):
        client.videos.create(prompt="[sim:progress=wobbly]")

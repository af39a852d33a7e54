"""Scenario 11: properties of the retry policy (backoff, Retry-After, what is never retried).

Each test runs a Hypothesis property inside it and prints how many examples ran, so a run's
output says how much was checked (`pytest -s` shows it).
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reelwatch import lifecycle, schedule
from reelwatch.models import ACTIVE, ErrorInfo, Generation, RemoteStatus, RemoteVideo, Status
from reelwatch.providers import base

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EXAMPLES = 500
RENDERING_STATUSES = [Status.QUEUED, Status.IN_PROGRESS]
NON_RETRYABLE_HTTP = [400, 401, 403, 404, 422]

rands = st.floats(0.0, 1.0, exclude_max=True)
policies = st.builds(
    schedule.Policy,
    timeout_s=st.floats(60.0, 7200.0),
    poll_min_s=st.floats(0.1, 10.0),
    poll_max_s=st.floats(10.0, 300.0),
    backoff_base_s=st.floats(0.001, 600.0),
    backoff_max_s=st.floats(0.001, 3600.0),
    queued_poll_s=st.floats(0.0, 60.0),
)
# Any time from the start to far past any deadline: neither rule may depend on it.
offsets_s = st.floats(0.0, 100_000.0)
error_codes = st.sampled_from(["moderation_blocked", "invalid_request", "quota", "internal"])


def report(name: str, runs: int) -> None:
    """Print how many examples a property ran (the scenario's figure)."""
    print(f"\nscenario 11, {name}: examples={runs}, failures=0")
    assert runs > 0


@st.composite
def generations(draw: st.DrawFn, statuses: list[Status] | None = None) -> Generation:
    """An active generation in a drawn status, with the fields that status implies."""
    status = draw(st.sampled_from(statuses or sorted(ACTIVE)))
    submitted = status is not Status.PENDING
    return Generation(
        id="gen_1",
        provider="openai",
        video_id="video_1" if submitted else None,
        status=status,
        progress=draw(st.integers(0, 100)) if status is not Status.QUEUED else 0,
        model="sora-2",
        seconds=8,
        size="1280x720",
        prompt="a lighthouse at dusk",
        created_at=T0,
        watch_started_at=T0,
        submitted_at=T0 if submitted else None,
        started_at=T0 if status in (Status.IN_PROGRESS, Status.DOWNLOADING) else None,
        attempts=draw(st.integers(0, 50)),
        failures=draw(st.integers(0, 40)),
        next_poll_at=T0,
        expires_at=T0 + timedelta(days=1000) if status is Status.DOWNLOADING else None,
    )


def scheduled_call(g: Generation) -> bool:
    """Would a worker ever call the provider about `g` again? Only active rows are claimed."""
    return g.active and g.next_poll_at is not None


def bounds(failures: int, policy: schedule.Policy) -> tuple[float, float]:
    """The documented window of a backoff: [floor, min(cap, base * 2**(failures - 1))]."""
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2.0 ** (failures - 1))
    return min(policy.backoff_base_s / 10.0, ceiling), ceiling


def delay_s(decision: lifecycle.Decision, now: datetime) -> float:
    assert decision.generation.next_poll_at is not None
    return (decision.generation.next_poll_at - now).total_seconds()


# --- backoff --------------------------------------------------------------------------------


def test_backoff_stays_within_floor_and_capped_exponential_ceiling() -> None:
    """backoff_s(n) is in [floor, min(cap, base * 2**(n-1))] for every n, base, cap and rand."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        failures=st.integers(1, 500),
        base_s=st.floats(0.001, 600.0),
        cap_s=st.floats(0.001, 3600.0),
        rand=rands,
    )
    def prop(failures: int, base_s: float, cap_s: float, rand: float) -> None:
        nonlocal runs
        runs += 1
        policy = schedule.Policy(backoff_base_s=base_s, backoff_max_s=cap_s)
        floor, ceiling = bounds(failures, policy)
        delay = schedule.backoff_s(failures, policy, rand)
        assert 0.0 < floor <= delay <= ceiling

    prop()
    report("backoff bounds", runs)


def test_backoff_is_full_jitter_monotonic_in_rand_and_attempts() -> None:
    """More jitter never waits less, and the ceiling never shrinks as failures grow."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        failures=st.integers(1, 100),
        more=st.integers(0, 100),
        policy=policies,
        rands=st.tuples(rands, rands).map(sorted),
    )
    def prop(failures: int, more: int, policy: schedule.Policy, rands: list[float]) -> None:
        nonlocal runs
        runs += 1
        low, high = rands
        assert schedule.backoff_s(failures, policy, low) <= schedule.backoff_s(
            failures, policy, high
        )
        assert bounds(failures, policy)[1] <= bounds(failures + more, policy)[1]
        # Full jitter: the top of the window is reached, not just its middle.
        top = schedule.backoff_s(failures, policy, math.nextafter(1.0, 0.0))
        assert math.isclose(top, bounds(failures, policy)[1], rel_tol=1e-9)

    prop()
    report("backoff jitter", runs)


# --- Retry-After ----------------------------------------------------------------------------


def test_rate_limited_never_polls_before_retry_after() -> None:
    """A 429's next poll is at or after now + Retry-After, and at most a second past it."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        g=generations(),
        retry_after_s=st.floats(0.0, 1_000_000.0),
        offset_s=offsets_s,
        policy=policies,
        rand=rands,
        local=st.booleans(),
    )
    def prop(
        g: Generation,
        retry_after_s: float,
        offset_s: float,
        policy: schedule.Policy,
        rand: float,
        local: bool,
    ) -> None:
        nonlocal runs
        runs += 1
        now = T0 + timedelta(seconds=offset_s)
        observation = lifecycle.RateLimited(retry_after_s, local=local)
        d = lifecycle.decide(g, observation, now, policy, rand)
        new = d.generation
        assert new.next_poll_at is not None
        capped = min(retry_after_s, lifecycle.MAX_RETRY_AFTER_S)  # a longer one reads as 1 h
        assert new.next_poll_at >= now + timedelta(seconds=capped)
        assert new.next_poll_at <= now + timedelta(seconds=capped + 1.0, microseconds=1)
        assert new.status is g.status and new.error == g.error
        assert new.attempts == g.attempts + (0 if local else 1)

    prop()
    report("Retry-After lower bound", runs)


def test_unusable_retry_after_falls_back_to_backoff() -> None:
    """A 429 without a usable Retry-After (none, NaN, inf, negative) backs off in bounds."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        g=generations(),
        retry_after_s=st.sampled_from([None, math.nan, math.inf, -math.inf, -1.0, -0.001]),
        policy=policies,
        rand=rands,
    )
    def prop(
        g: Generation, retry_after_s: float | None, policy: schedule.Policy, rand: float
    ) -> None:
        nonlocal runs
        runs += 1
        d = lifecycle.decide(g, lifecycle.RateLimited(retry_after_s), T0, policy, rand)
        floor, ceiling = bounds(g.failures + 1, policy)
        assert floor - 1e-6 <= delay_s(d, T0) <= ceiling + 1e-6
        assert d.generation.status is g.status

    prop()
    report("unusable Retry-After", runs)


def test_retry_after_header_is_a_lower_bound_end_to_end() -> None:
    """Header (seconds, milliseconds or HTTP date) -> decide: the next poll is not before it."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        g=generations(RENDERING_STATUSES),
        form=st.sampled_from(["seconds", "ms", "date"]),
        wait_s=st.integers(0, 86_400),
        micros=st.integers(0, 999_999),
        rand=rands,
    )
    def prop(g: Generation, form: str, wait_s: int, micros: int, rand: float) -> None:
        nonlocal runs
        runs += 1
        now = T0 + timedelta(microseconds=micros)
        stated = now + timedelta(seconds=wait_s)
        headers = {
            "seconds": {"Retry-After": str(wait_s)},
            "ms": {"retry-after-ms": str(wait_s * 1000)},
            # An HTTP date has whole seconds: the provider means "not before this second".
            "date": {"Retry-After": email.utils.format_datetime(stated, usegmt=True)},
        }[form]
        if form == "date":
            stated = stated.replace(microsecond=0)
        retry_after = base.retry_after_s(headers, now)
        assert retry_after is not None
        d = lifecycle.decide(g, lifecycle.RateLimited(retry_after), now, schedule.Policy(), rand)
        assert d.generation.next_poll_at is not None
        longest = now + timedelta(seconds=lifecycle.MAX_RETRY_AFTER_S)
        assert d.generation.next_poll_at >= min(stated, longest)

    prop()
    report("Retry-After header", runs)


# --- what is never retried ------------------------------------------------------------------

# Everything a worker could learn later: none of it may bring a failed generation back.
later = st.one_of(
    st.builds(lifecycle.Transient, st.just("503")),
    st.builds(lifecycle.RateLimited, st.one_of(st.none(), st.floats(0.0, 600.0))),
    st.builds(lifecycle.Vanished, st.just("gone")),
    st.builds(
        lifecycle.Polled,
        st.builds(
            RemoteVideo,
            video_id=st.just("video_1"),
            status=st.sampled_from(list(RemoteStatus)),
            raw_status=st.just("in_progress"),
            progress=st.integers(0, 100),
        ),
    ),
    st.builds(lifecycle.WebhookReceived, st.just("video.completed"), st.just("wh_1")),
    st.builds(lifecycle.SubmitLost, st.just("timeout")),
    st.builds(lifecycle.DownloadFailed, st.just("truncated")),
)


def assert_final(d: lifecycle.Decision, code: str, after: list[Any], policy: Any) -> None:
    """Failed with `code`, nothing scheduled, and nothing learned later changes that."""
    g = d.generation
    assert g.status is Status.FAILED and g.error is not None and g.error.code == code
    assert not scheduled_call(g)
    now = T0
    for observation in after:
        now += timedelta(seconds=1)
        g = lifecycle.decide(g, observation, now, policy).generation
        assert g.status is Status.FAILED and not scheduled_call(g)


def test_rejected_create_is_never_sent_again() -> None:
    """A 4xx refusal of a create (400/401/403/404/422) fails for good: no call is scheduled."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        g=generations([Status.PENDING]),
        http_status=st.sampled_from(NON_RETRYABLE_HTTP),
        code=error_codes,
        after=st.lists(later, max_size=8),
        policy=policies,
    )
    def prop(
        g: Generation, http_status: int, code: str, after: list[Any], policy: schedule.Policy
    ) -> None:
        nonlocal runs
        runs += 1
        observation = lifecycle.SubmitRejected(ErrorInfo(code, "refused"), http_status)
        assert_final(lifecycle.decide(g, observation, T0, policy), code, after, policy)

    prop()
    report("4xx create", runs)


def test_vanished_video_is_never_polled_again() -> None:
    """A 404 on a status check fails as not_found: no call is scheduled."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(g=generations(RENDERING_STATUSES), after=st.lists(later, max_size=8), policy=policies)
    def prop(g: Generation, after: list[Any], policy: schedule.Policy) -> None:
        nonlocal runs
        runs += 1
        d = lifecycle.decide(g, lifecycle.Vanished("gone"), T0, policy)
        assert_final(d, "not_found", after, policy)

    prop()
    report("404 poll", runs)


def test_remote_failure_with_an_error_code_is_never_polled_again() -> None:
    """A remote `failed` with an error code fails with that code: no call is scheduled."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        g=generations(RENDERING_STATUSES),
        code=error_codes,
        progress=st.integers(0, 100),
        after=st.lists(later, max_size=8),
        policy=policies,
    )
    def prop(
        g: Generation, code: str, progress: int, after: list[Any], policy: schedule.Policy
    ) -> None:
        nonlocal runs
        runs += 1
        video = RemoteVideo(
            "video_1", RemoteStatus.FAILED, "failed", progress, ErrorInfo(code, "no")
        )
        d = lifecycle.decide(g, lifecycle.Polled(video), T0, policy)
        assert_final(d, code, after, policy)

    prop()
    report("remote failed", runs)


# --- transient errors -----------------------------------------------------------------------


def test_transient_errors_never_fail_a_generation() -> None:
    """Any run of 5xx/timeouts (and 429s), at any time, keeps the generation active."""
    runs = 0

    @settings(max_examples=EXAMPLES)
    @given(
        g=generations(),
        steps=st.lists(
            st.tuples(
                st.one_of(
                    st.builds(lifecycle.Transient, st.just("HTTP 503")),
                    st.builds(
                        lifecycle.RateLimited,
                        st.one_of(st.none(), st.floats(0.0, 600.0)),
                        local=st.booleans(),
                    ),
                ),
                offsets_s,
                rands,
            ),
            min_size=1,
            max_size=30,
        ),
        policy=policies,
    )
    def prop(
        g: Generation,
        steps: list[tuple[lifecycle.Observation, float, float]],
        policy: schedule.Policy,
    ) -> None:
        nonlocal runs
        runs += 1
        current = g
        for observation, offset_s, rand in steps:
            now = T0 + timedelta(seconds=offset_s)
            new = lifecycle.decide(current, observation, now, policy, rand).generation
            assert new.status is g.status and new.error == g.error
            assert scheduled_call(new)
            assert new.next_poll_at is not None and new.next_poll_at >= now
            assert new.attempts >= current.attempts
            if isinstance(observation, lifecycle.Transient):
                floor, ceiling = bounds(current.failures + 1, policy)
                waited_s = (new.next_poll_at - now).total_seconds()
                assert floor - 1e-6 <= waited_s <= ceiling + 1e-6
            current = new

    prop()
    report("transient never fails", runs)

"""The one state machine: each rule of `lifecycle.decide`, then properties of random histories."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelwatch import exceptions, lifecycle, predict, schedule
from reelwatch.models import (
    ACTIVE,
    TERMINAL,
    Asset,
    ErrorInfo,
    Generation,
    RemoteStatus,
    RemoteVideo,
    Status,
    Variant,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = schedule.Policy(
    timeout_s=900.0,
    poll_min_s=1.0,
    poll_max_s=30.0,
    backoff_base_s=1.0,
    backoff_max_s=120.0,
    queued_poll_s=5.0,
)
DEADLINE_S = POLICY.timeout_s
VIDEO_ASSET = Asset(Variant.VIDEO, "gen_1/video.mp4", 2048, "ab" * 32, "video/mp4")
THUMBNAIL_ASSET = Asset(Variant.THUMBNAIL, "gen_1/thumbnail.webp", 64, "cd" * 32, "image/webp")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def generation(status: Status = Status.PENDING, **fields: Any) -> Generation:
    """A generation watched since T0 in `status`, with the fields that status implies."""
    values: dict[str, Any] = {
        "id": "gen_1",
        "provider": "openai",
        "video_id": None if status is Status.PENDING else "video_1",
        "status": status,
        "progress": 0,
        "model": "sora-2",
        "seconds": 8,
        "size": "1280x720",
        "prompt": "a lighthouse at dusk",
        "created_at": T0,
        "watch_started_at": T0,
        "submitted_at": None if status is Status.PENDING else T0,
        "next_poll_at": None if status in TERMINAL else T0,
    }
    if status is Status.IN_PROGRESS:
        values |= {"progress": 30, "started_at": T0, "last_progress_at": T0}
    if status in (Status.DOWNLOADING, Status.COMPLETED):
        values |= {"progress": 100, "remote_completed_at": T0, "expires_at": at(3600)}
    if status is Status.COMPLETED:
        values |= {"completed_at": T0, "assets": {Variant.VIDEO: VIDEO_ASSET}}
    if status is Status.FAILED:
        values |= {"error": ErrorInfo("boom", "it broke")}
    values.update(fields)
    return Generation(**values)


def video(
    status: RemoteStatus = RemoteStatus.QUEUED, progress: int = 0, **fields: Any
) -> RemoteVideo:
    """What the provider says about video_1 (raw_status defaults to the normalised word)."""
    values: dict[str, Any] = {"video_id": "video_1", "raw_status": status.value}
    values.update(fields)
    return RemoteVideo(status=status, progress=progress, **values)


def decide(
    g: Generation, observation: lifecycle.Observation, now: float = 10.0, rand: float = 0.5
) -> lifecycle.Decision:
    """`lifecycle.decide` at `now` seconds after T0 with the test policy."""
    return lifecycle.decide(g, observation, at(now), POLICY, rand)


def delay_s(decision: lifecycle.Decision, now: float) -> float:
    assert decision.generation.next_poll_at is not None
    return (decision.generation.next_poll_at - at(now)).total_seconds()


# --- remote failure and disappearance -------------------------------------------------------


def test_remote_failure_keeps_the_providers_code_and_message() -> None:
    """A remote `failed` fails the generation with the provider's own code and message."""
    error = ErrorInfo("moderation_blocked", "Your request was blocked by moderation.")
    d = decide(
        generation(Status.IN_PROGRESS), lifecycle.Polled(video(RemoteStatus.FAILED, error=error))
    )
    assert d.generation.status is Status.FAILED
    assert d.generation.error == error
    assert d.generation.next_poll_at is None
    assert d.event.kind == "failed"
    assert d.event.data["code"] == "moderation_blocked"
    assert d.event.data["message"] == error.message


def test_remote_failure_without_error_object_still_gets_a_code() -> None:
    """A remote `failed` without an error object is failed with the raw status as its code."""
    d = decide(generation(Status.QUEUED), lifecycle.Polled(video(RemoteStatus.FAILED)))
    assert d.generation.status is Status.FAILED
    assert d.generation.error is not None
    assert d.generation.error.code == "failed"
    assert d.generation.error.message


def test_remote_failure_with_empty_raw_status_still_gets_a_code() -> None:
    """A remote failure whose raw status word is empty gets the code `failed`."""
    d = decide(
        generation(Status.QUEUED), lifecycle.Polled(video(RemoteStatus.FAILED, raw_status=""))
    )
    assert d.generation.error is not None
    assert d.generation.error.code == "failed"


def test_vanished_video_fails_with_not_found() -> None:
    """A 404 on retrieve fails the generation with code `not_found`."""
    d = decide(generation(Status.IN_PROGRESS), lifecycle.Vanished("No video found"))
    assert d.generation.status is Status.FAILED
    assert d.generation.error is not None
    assert d.generation.error.code == "not_found"
    assert "No video found" in d.generation.error.message
    assert d.event.kind == "failed"


# --- rate limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999999])
def test_rate_limited_waits_at_least_retry_after(rand: float) -> None:
    """A 429 schedules the next poll no earlier than now + Retry-After, whatever the draw."""
    d = decide(generation(Status.QUEUED), lifecycle.RateLimited(30.0), now=10, rand=rand)
    assert d.generation.next_poll_at is not None
    assert d.generation.next_poll_at >= at(40)


def test_rate_limited_jitter_after_retry_after_is_at_most_a_second() -> None:
    """The jitter added after Retry-After spreads the herd by at most a second."""
    d = decide(generation(Status.QUEUED), lifecycle.RateLimited(30.0), rand=0.999999)
    assert 30.0 <= delay_s(d, 10) <= 31.0


def test_rate_limited_counts_the_attempt() -> None:
    """A 429 from the provider counts as an attempt."""
    d = decide(generation(Status.QUEUED, attempts=3), lifecycle.RateLimited(5.0))
    assert d.generation.attempts == 4


def test_local_rate_limit_pause_does_not_count_an_attempt() -> None:
    """The worker's own pause after a 429 (no request sent) is not an attempt."""
    d = decide(generation(Status.QUEUED, attempts=3), lifecycle.RateLimited(5.0, local=True))
    assert d.generation.attempts == 3
    assert d.generation.next_poll_at is not None
    assert d.generation.next_poll_at >= at(15)


def test_rate_limited_grows_the_failures_counter() -> None:
    """A 429 counts as a failure for the backoff."""
    d = decide(generation(Status.QUEUED, failures=2), lifecycle.RateLimited(5.0))
    assert d.generation.failures == 3


def test_rate_limited_without_retry_after_backs_off() -> None:
    """A 429 without Retry-After waits the exponential backoff instead."""
    d = decide(generation(Status.QUEUED, failures=2), lifecycle.RateLimited(None), rand=0.7)
    assert delay_s(d, 10) == pytest.approx(schedule.backoff_s(3, POLICY, 0.7), abs=1e-6)
    assert d.event.kind == "rate_limited"


@pytest.mark.parametrize("retry_after", [-1.0, math.inf, math.nan])
def test_rate_limited_with_unusable_retry_after_backs_off(retry_after: float) -> None:
    """A negative or non-finite Retry-After is treated as missing: backoff."""
    d = decide(generation(Status.QUEUED), lifecycle.RateLimited(retry_after), rand=0.7)
    assert delay_s(d, 10) == pytest.approx(schedule.backoff_s(1, POLICY, 0.7), abs=1e-6)


def test_rate_limited_after_the_deadline_does_not_fail() -> None:
    """A 429 is no answer about the render, so it never times a generation out."""
    d = decide(generation(Status.QUEUED), lifecycle.RateLimited(5.0), now=DEADLINE_S + 60)
    assert d.generation.status is Status.QUEUED


# --- transient errors -----------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(ACTIVE))
def test_transient_error_keeps_the_status(status: Status) -> None:
    """A 5xx, timeout or dropped connection leaves the status as it was, never failed."""
    d = decide(generation(status), lifecycle.Transient("HTTP 503"))
    assert d.generation.status is status
    assert d.event.kind == "retry_scheduled"


@pytest.mark.parametrize("failures", [0, 1, 2, 3, 5, 8, 12])
@pytest.mark.parametrize("rand", [0.0, 0.3, 0.999999])
def test_transient_backoff_is_full_jitter_within_bounds(failures: int, rand: float) -> None:
    """The retry delay lies in [base/10, min(max, base * 2**(failures-1))] for the new count."""
    d = decide(
        generation(Status.QUEUED, failures=failures), lifecycle.Transient("timeout"), rand=rand
    )
    ceiling = min(POLICY.backoff_max_s, POLICY.backoff_base_s * 2 ** (d.generation.failures - 1))
    assert POLICY.backoff_base_s / 10 - 1e-6 <= delay_s(d, 10) <= ceiling + 1e-6


def test_transient_grows_the_failures_counter() -> None:
    """Each transient error adds one to the failures counter."""
    d = decide(generation(Status.QUEUED, failures=4), lifecycle.Transient("connection reset"))
    assert d.generation.failures == 5


def test_transient_counts_an_attempt() -> None:
    """A request that failed transiently still counts as an attempt."""
    d = decide(generation(Status.QUEUED, attempts=2), lifecycle.Transient("HTTP 502"))
    assert d.generation.attempts == 3


def test_good_answer_resets_the_failures_counter() -> None:
    """An answer from the provider resets the failures counter to zero."""
    d = decide(generation(Status.QUEUED, failures=4), lifecycle.Polled(video(RemoteStatus.QUEUED)))
    assert d.generation.failures == 0


def test_transient_after_the_deadline_does_not_fail() -> None:
    """Only an answer showing the render unfinished times it out, never a transient error."""
    d = decide(
        generation(Status.IN_PROGRESS), lifecycle.Transient("HTTP 500"), now=DEADLINE_S + 600
    )
    assert d.generation.status is Status.IN_PROGRESS
    assert d.generation.error is None


# --- timeout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "remote",
    [video(RemoteStatus.QUEUED), video(RemoteStatus.IN_PROGRESS, 90)],
    ids=["queued", "in_progress"],
)
@pytest.mark.parametrize("late_s", [0.0, 1.0, 3600.0])
def test_unfinished_answer_at_or_after_the_deadline_times_out(
    remote: RemoteVideo, late_s: float
) -> None:
    """An unfinished answer at or after watch_started_at + timeout fails with code `timeout`."""
    d = decide(generation(Status.IN_PROGRESS), lifecycle.Polled(remote), now=DEADLINE_S + late_s)
    assert d.generation.status is Status.FAILED
    assert d.generation.timed_out
    assert d.event.kind == "failed"
    assert d.event.data["code"] == "timeout"


@pytest.mark.parametrize(
    "remote",
    [
        video(RemoteStatus.QUEUED),
        video(RemoteStatus.IN_PROGRESS, 90),
        video(RemoteStatus.UNKNOWN, 50, raw_status="paused"),
    ],
    ids=["queued", "in_progress", "unknown"],
)
def test_unfinished_answer_before_the_deadline_keeps_polling(remote: RemoteVideo) -> None:
    """An unfinished answer a moment before the deadline is not failed."""
    d = decide(generation(Status.IN_PROGRESS), lifecycle.Polled(remote), now=DEADLINE_S - 0.001)
    assert d.generation.status is Status.IN_PROGRESS
    assert d.generation.next_poll_at is not None


def test_timeout_counts_from_watch_started_at() -> None:
    """The deadline is measured from watch_started_at, not from created_at."""
    g = generation(Status.QUEUED, watch_started_at=at(500))
    d = decide(g, lifecycle.Polled(video(RemoteStatus.QUEUED)), now=DEADLINE_S + 100)
    assert d.generation.status is Status.QUEUED


def test_completed_answer_after_the_deadline_is_downloaded_not_timed_out() -> None:
    """A render that finished is downloaded even when the answer comes after the deadline."""
    d = decide(
        generation(Status.IN_PROGRESS),
        lifecycle.Polled(video(RemoteStatus.COMPLETED, 100)),
        now=DEADLINE_S + 60,
    )
    assert d.generation.status is Status.DOWNLOADING


# --- unknown remote status ------------------------------------------------------------------


@pytest.mark.parametrize("failures", [0, 3, 20])
@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999999])
def test_unknown_remote_status_keeps_polling_with_backoff(failures: int, rand: float) -> None:
    """An unknown status leaves the status as is and polls again, backing off, within
    [poll_min, backoff_max]; the generation is set aside for a person with the raw word."""
    g = generation(Status.IN_PROGRESS, failures=failures)
    d = decide(g, lifecycle.Polled(video(RemoteStatus.UNKNOWN, 30, raw_status="paused")), rand=rand)
    assert d.generation.status is Status.IN_PROGRESS
    assert POLICY.poll_min_s - 1e-6 <= delay_s(d, 10) <= POLICY.backoff_max_s + 1e-6
    assert d.generation.attention is not None and "'paused'" in d.generation.attention


@pytest.mark.parametrize("late_s", [0.0, 3600.0, 7 * 24 * 3600.0])
def test_an_unknown_status_is_never_spun_to_a_timeout(late_s: float) -> None:
    """Past the deadline, a word nobody knows is still shown to a person, not timed out."""
    remote = video(RemoteStatus.UNKNOWN, 50, raw_status="paused")
    d = decide(generation(Status.IN_PROGRESS), lifecycle.Polled(remote), now=DEADLINE_S + late_s)
    assert d.generation.status is Status.IN_PROGRESS
    assert d.event.kind == "unknown_status"
    assert d.generation.attention == "unknown_status: the provider reported 'paused'"


def test_a_known_status_after_an_unknown_one_lifts_the_attention() -> None:
    """Once the provider answers in a word the adapter knows, the generation is normal again."""
    odd = decide(generation(Status.IN_PROGRESS), lifecycle.Polled(video(RemoteStatus.UNKNOWN, 50)))
    again = decide(odd.generation, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 60)), now=20)
    assert odd.generation.attention is not None
    assert again.generation.attention is None


def test_a_known_status_after_a_long_unknown_stretch_is_not_timed_out_at_once() -> None:
    """The time spent in words nobody knew is not held against the job: its timeout starts
    again when the provider speaks plainly; a stretch of known words is still timed out."""
    odd = decide(generation(Status.IN_PROGRESS), lifecycle.Polled(video(RemoteStatus.UNKNOWN, 50)))
    late = DEADLINE_S + 3600.0
    again = decide(odd.generation, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 60)), now=late)
    assert again.generation.status is Status.IN_PROGRESS and again.generation.attention is None
    still = decide(
        again.generation, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 60)), now=late
    )
    assert still.generation.status is Status.IN_PROGRESS
    past = decide(
        again.generation,
        lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 60)),
        now=late + DEADLINE_S + 1,
    )
    assert past.generation.status is Status.FAILED and past.generation.error is not None
    assert past.generation.error.code == "timeout"


def test_a_429_or_an_unsent_create_is_no_longer_ambiguous() -> None:
    """A create refused with 429, or one that never left, created nothing: send it again."""
    g = generation(Status.PENDING, video_id=None, submit_ambiguous=True)
    for observation in (
        lifecycle.RateLimited(2.0, nothing_created=True),
        lifecycle.Transient("ConnectError", nothing_created=True),
    ):
        d = decide(g, observation)
        assert d.generation.status is Status.PENDING and not d.generation.submit_ambiguous
    for observation in (lifecycle.RateLimited(2.0), lifecycle.Transient("ReadTimeout")):
        assert decide(g, observation).generation.submit_ambiguous  # a list call: still unknown


def test_a_lost_create_the_provider_cannot_list_fails_as_create_unknown() -> None:
    """No list to look in: never resubmitted (that could pay twice); a person decides."""
    g = generation(Status.PENDING, video_id=None, submit_ambiguous=True)
    d = decide(g, lifecycle.CreateUnknown())
    assert d.generation.status is Status.FAILED
    assert d.generation.error is not None and d.generation.error.code == "create_unknown"
    assert d.event.data["prompt"] == g.prompt


def test_unknown_remote_status_is_recorded_with_the_raw_word() -> None:
    """An unknown status records an `unknown_status` event carrying the provider's word."""
    remote = video(RemoteStatus.UNKNOWN, 30, raw_status="throttled_by_gremlins")
    d = decide(generation(Status.QUEUED), lifecycle.Polled(remote))
    assert d.event.kind == "unknown_status"
    assert d.event.data["remote_status"] == "throttled_by_gremlins"
    assert d.generation.remote_status == "throttled_by_gremlins"


# --- completion and download ----------------------------------------------------------------


def test_completed_answer_starts_downloading_at_once() -> None:
    """A remote `completed` moves to downloading at 100% with expiry, completion time, due now."""
    remote = video(RemoteStatus.COMPLETED, 100, completed_at=at(5), expires_at=at(3600))
    d = decide(generation(Status.IN_PROGRESS), lifecycle.Polled(remote), now=10)
    g = d.generation
    assert g.status is Status.DOWNLOADING
    assert g.progress == 100
    assert g.expires_at == at(3600)
    assert g.remote_completed_at == at(5)
    assert g.next_poll_at == at(10)
    assert d.event.kind == "status"
    assert d.event.data["to"] == "downloading"


def test_completed_answer_without_completion_time_uses_now() -> None:
    """Without the provider's completion time, remote_completed_at is now."""
    d = decide(generation(Status.QUEUED), lifecycle.Polled(video(RemoteStatus.COMPLETED, 100)))
    assert d.generation.remote_completed_at == at(10)


def test_downloaded_completes_with_the_assets() -> None:
    """Once every asset is stored the generation is completed with its assets and time."""
    g = generation(Status.DOWNLOADING, failures=2)
    d = decide(g, lifecycle.Downloaded({Variant.VIDEO: VIDEO_ASSET}), now=20)
    assert d.generation.status is Status.COMPLETED
    assert d.generation.assets == {Variant.VIDEO: VIDEO_ASSET}
    assert d.generation.completed_at == at(20)
    assert d.generation.next_poll_at is None
    assert d.event.kind == "completed"
    assert d.event.data["bytes"] == VIDEO_ASSET.bytes


def test_download_failure_retries_the_download_with_backoff() -> None:
    """A broken download stays downloading and retries after the backoff."""
    g = generation(Status.DOWNLOADING, failures=1)
    d = decide(g, lifecycle.DownloadFailed("truncated"), rand=0.6)
    assert d.generation.status is Status.DOWNLOADING
    assert d.generation.failures == 2
    assert delay_s(d, 10) == pytest.approx(schedule.backoff_s(2, POLICY, 0.6), abs=1e-6)
    assert d.event.kind == "download_failed"


def test_download_failure_never_resubmits() -> None:
    """A broken download keeps the video id and never goes back to pending."""
    g = generation(Status.DOWNLOADING)
    d = decide(g, lifecycle.DownloadFailed("connection reset"))
    assert d.generation.video_id == "video_1"
    assert d.generation.status is not Status.PENDING
    assert d.generation.submitted_at == g.submitted_at


def test_download_failure_keeps_the_assets_already_stored() -> None:
    """Assets that were stored before the download broke are kept."""
    g = generation(Status.DOWNLOADING)
    d = decide(g, lifecycle.DownloadFailed("HTTP 500", {Variant.THUMBNAIL: THUMBNAIL_ASSET}))
    assert d.generation.assets == {Variant.THUMBNAIL: THUMBNAIL_ASSET}


def test_download_retry_is_scheduled_before_the_remote_copy_expires() -> None:
    """A long backoff is cut short so the last retry happens before expires_at."""
    g = generation(Status.DOWNLOADING, failures=10, expires_at=at(40))
    d = decide(g, lifecycle.DownloadFailed("HTTP 503"), now=10, rand=0.99)
    assert d.generation.next_poll_at == at(39)


@pytest.mark.parametrize("late_s", [0.0, 1.0, 86400.0])
def test_download_failure_after_expiry_fails_as_asset_expired(late_s: float) -> None:
    """A download that breaks at or after expires_at fails with code `asset_expired`."""
    g = generation(Status.DOWNLOADING, expires_at=at(3600))
    d = decide(g, lifecycle.DownloadFailed("HTTP 404"), now=3600 + late_s)
    assert d.generation.status is Status.FAILED
    assert d.generation.error is not None
    assert d.generation.error.code == "asset_expired"


def test_download_failure_without_expiry_keeps_retrying() -> None:
    """Without a known expiry a broken download is retried, however late."""
    g = generation(Status.DOWNLOADING, expires_at=None)
    d = decide(g, lifecycle.DownloadFailed("HTTP 500"), now=10**6)
    assert d.generation.status is Status.DOWNLOADING


def test_status_answer_while_downloading_leaves_the_download_alone() -> None:
    """A poll answer during the download changes neither status, progress nor schedule."""
    g = generation(Status.DOWNLOADING, next_poll_at=at(20))
    d = decide(g, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 40)), now=10)
    assert d.generation.status is Status.DOWNLOADING
    assert d.generation.progress == 100
    assert d.generation.next_poll_at == at(20)


def test_status_answer_while_downloading_refreshes_the_expiry() -> None:
    """A completed answer during the download records the provider's newer expiry."""
    g = generation(Status.DOWNLOADING, expires_at=at(3600))
    d = decide(g, lifecycle.Polled(video(RemoteStatus.COMPLETED, 100, expires_at=at(7200))))
    assert d.generation.expires_at == at(7200)


# --- submitting -----------------------------------------------------------------------------


def test_submitted_is_queued_with_its_video_id() -> None:
    """An accepted create is queued with the provider's video id and the submit time."""
    g = generation(Status.PENDING, failures=2)
    d = decide(g, lifecycle.Submitted(video(RemoteStatus.QUEUED), latency_s=0.25), now=10)
    assert d.generation.status is Status.QUEUED
    assert d.generation.video_id == "video_1"
    assert d.generation.submitted_at == at(10)
    assert d.generation.failures == 0
    assert d.generation.next_poll_at is not None
    assert d.generation.next_poll_at > at(10)
    assert d.event.kind == "submitted"
    assert d.event.data["video_id"] == "video_1"
    assert d.event.data["latency_ms"] == 250


def test_submitted_already_rendering_is_in_progress() -> None:
    """A create answered as in_progress goes straight to in_progress."""
    d = decide(generation(), lifecycle.Submitted(video(RemoteStatus.IN_PROGRESS, 5)))
    assert d.generation.status is Status.IN_PROGRESS
    assert d.generation.progress == 5


def test_submit_rejected_fails_with_the_providers_code() -> None:
    """A create refused for good fails with the provider's code."""
    error = ErrorInfo("invalid_request_error", "size is not supported")
    d = decide(generation(), lifecycle.SubmitRejected(error, 400))
    assert d.generation.status is Status.FAILED
    assert d.generation.error == error
    assert d.event.kind == "failed"
    assert d.event.data["http_status"] == 400


def test_lost_submit_is_pending_ambiguous_with_backoff() -> None:
    """A lost create stays pending and ambiguous; the list is checked only after the create
    could have shown up there (reconcile_delay_s), or after the backoff if that is longer."""
    d = decide(generation(), lifecycle.SubmitLost("read timeout"), rand=0.4)
    assert d.generation.status is Status.PENDING
    assert d.generation.submit_ambiguous
    assert d.generation.failures == 1
    expected = max(POLICY.reconcile_delay_s, schedule.backoff_s(1, POLICY, 0.4))
    assert delay_s(d, 10) == pytest.approx(expected, abs=1e-6)
    assert d.event.kind == "submit_ambiguous"


def test_reconciled_without_a_match_is_submitted_again_now() -> None:
    """No match in the provider's list: pending, no longer ambiguous, due now."""
    g = generation(submit_ambiguous=True, failures=3, next_poll_at=at(60))
    d = decide(g, lifecycle.Reconciled(None), now=10)
    assert d.generation.status is Status.PENDING
    assert not d.generation.submit_ambiguous
    assert d.generation.next_poll_at == at(10)
    assert d.event.kind == "reconciled"


def test_reconciled_with_a_match_adopts_its_video_id() -> None:
    """A match in the provider's list is adopted instead of paying for a new create."""
    g = generation(submit_ambiguous=True)
    d = decide(g, lifecycle.Reconciled(video(RemoteStatus.IN_PROGRESS, 20, video_id="video_9")))
    assert d.generation.video_id == "video_9"
    assert d.generation.status is Status.IN_PROGRESS
    assert not d.generation.submit_ambiguous
    assert d.event.kind == "reconciled"


def test_reconciled_match_that_already_failed_records_a_failed_event() -> None:
    """A found video that already failed records a `failed` event with the provider's code."""
    error = ErrorInfo("moderation_blocked", "blocked")
    remote = video(RemoteStatus.FAILED, error=error, video_id="video_9")
    d = decide(generation(submit_ambiguous=True), lifecycle.Reconciled(remote))
    assert d.generation.status is Status.FAILED
    assert d.generation.video_id == "video_9"
    assert d.event.kind == "failed"
    assert d.event.data["code"] == "moderation_blocked"
    assert d.event.data["from"] == "pending"


@pytest.mark.parametrize("status", [Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING])
@pytest.mark.parametrize(
    "observation",
    [
        lifecycle.Submitted(video(video_id="video_2")),
        lifecycle.SubmitRejected(ErrorInfo("invalid_request_error", "no"), 400),
        lifecycle.SubmitLost("timeout"),
        lifecycle.Reconciled(video(video_id="video_2")),
        lifecycle.Reconciled(None),
    ],
    ids=["submitted", "rejected", "lost", "reconciled_video", "reconciled_none"],
)
def test_create_answer_after_the_video_is_known_is_ignored(
    status: Status, observation: lifecycle.Observation
) -> None:
    """A late create answer never replaces the known video, fails it or walks it backwards."""
    g = generation(status, next_poll_at=at(20))
    d = decide(g, observation, now=10)
    assert d.generation == g
    assert d.event.kind == "ignored"


def test_stray_video_from_a_late_create_answer_is_recorded() -> None:
    """The ignored event keeps the stray video's id, so a second paid video is never lost."""
    d = decide(generation(Status.QUEUED), lifecycle.Submitted(video(video_id="video_2")))
    assert d.event.data["video_id"] == "video_2"


@pytest.mark.parametrize("status", [Status.PENDING, Status.QUEUED, Status.IN_PROGRESS])
@pytest.mark.parametrize(
    "observation",
    [lifecycle.Downloaded({Variant.VIDEO: VIDEO_ASSET}), lifecycle.DownloadFailed("HTTP 500")],
    ids=["downloaded", "download_failed"],
)
def test_download_answer_outside_downloading_is_ignored(
    status: Status, observation: lifecycle.Observation
) -> None:
    """A download result for a generation that is not downloading changes nothing."""
    g = generation(status, next_poll_at=at(20))
    d = decide(g, observation, now=10)
    assert d.generation == g
    assert d.event.kind == "ignored"


def test_status_answer_without_a_video_id_is_ignored() -> None:
    """A poll answer for a generation that has no video yet changes nothing."""
    g = generation(Status.PENDING, next_poll_at=at(20))
    d = decide(g, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 50)), now=10)
    assert d.generation == g
    assert d.event.kind == "ignored"


def test_ignored_observation_keeps_an_active_generation_due() -> None:
    """An ignored observation about an overdue active generation leaves it due now, not stuck."""
    g = generation(Status.QUEUED, next_poll_at=None)
    d = decide(g, lifecycle.SubmitLost("timeout"), now=10)
    assert d.generation.next_poll_at == at(10)


# --- progress -------------------------------------------------------------------------------


def test_lower_remote_progress_never_lowers_progress() -> None:
    """Progress is monotonic: a lower remote figure is not shown."""
    g = generation(Status.IN_PROGRESS, progress=60)
    d = decide(g, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 40)))
    assert d.generation.progress == 60


@pytest.mark.parametrize(("remote", "shown"), [(-5, 0), (150, 100)])
def test_remote_progress_is_clamped_to_percent(remote: int, shown: int) -> None:
    """A remote progress outside 0..100 is clamped."""
    g = generation(Status.QUEUED)
    d = decide(g, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, remote)))
    assert d.generation.progress == shown


def test_in_progress_never_goes_back_to_queued() -> None:
    """A generation seen rendering stays in_progress when the provider says queued again."""
    g = generation(Status.IN_PROGRESS, progress=30)
    d = decide(g, lifecycle.Polled(video(RemoteStatus.QUEUED, 0)))
    assert d.generation.status is Status.IN_PROGRESS


@pytest.mark.parametrize(
    ("g", "remote"),
    [
        (generation(Status.QUEUED), video(RemoteStatus.QUEUED, 0)),
        (
            generation(Status.IN_PROGRESS, progress=30, last_progress_at=at(2)),
            video(RemoteStatus.IN_PROGRESS, 30),
        ),
        (
            generation(Status.IN_PROGRESS, progress=30, last_progress_at=at(2)),
            video(RemoteStatus.IN_PROGRESS, 10),
        ),
    ],
    ids=["queued_at_zero", "same_progress", "lower_progress"],
)
def test_last_progress_at_is_kept_when_progress_does_not_change(
    g: Generation, remote: RemoteVideo
) -> None:
    """last_progress_at changes only when progress changes."""
    d = decide(g, lifecycle.Polled(remote))
    assert d.generation.last_progress_at == g.last_progress_at


def test_last_progress_at_moves_with_progress() -> None:
    """When progress changes last_progress_at becomes now."""
    g = generation(Status.IN_PROGRESS, progress=30, last_progress_at=at(2))
    d = decide(g, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 35)), now=10)
    assert d.generation.last_progress_at == at(10)


def test_started_at_is_set_at_the_first_in_progress() -> None:
    """started_at is the time the generation was first seen rendering."""
    d = decide(
        generation(Status.QUEUED), lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 5)), now=10
    )
    assert d.generation.started_at == at(10)


def test_started_at_is_kept_on_later_answers() -> None:
    """Later answers never move started_at."""
    g = generation(Status.IN_PROGRESS, started_at=at(3))
    d = decide(g, lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 50)), now=10)
    assert d.generation.started_at == at(3)


def test_started_at_stays_empty_while_queued() -> None:
    """A queued answer does not set started_at."""
    d = decide(generation(Status.QUEUED), lifecycle.Polled(video(RemoteStatus.QUEUED)))
    assert d.generation.started_at is None


@pytest.mark.parametrize(
    ("g", "remote", "kind"),
    [
        (generation(Status.QUEUED), video(RemoteStatus.IN_PROGRESS, 5), "status"),
        (generation(Status.IN_PROGRESS), video(RemoteStatus.IN_PROGRESS, 45), "progress"),
        (generation(Status.IN_PROGRESS), video(RemoteStatus.IN_PROGRESS, 30), "poll"),
    ],
    ids=["status", "progress", "poll"],
)
def test_poll_event_says_what_changed(g: Generation, remote: RemoteVideo, kind: str) -> None:
    """A poll records `status` on a status change, `progress` on progress, else `poll`."""
    assert decide(g, lifecycle.Polled(remote)).event.kind == kind


def test_rendering_poll_is_scheduled_by_the_adaptive_interval() -> None:
    """A normal answer schedules the next poll with schedule.next_poll_at."""
    d = decide(
        generation(Status.IN_PROGRESS), lifecycle.Polled(video(RemoteStatus.IN_PROGRESS, 50))
    )
    assert d.generation.next_poll_at == schedule.next_poll_at(d.generation, at(10), POLICY)


# --- terminal generations and webhooks ------------------------------------------------------

LATE_OBSERVATIONS: list[lifecycle.Observation] = [
    lifecycle.Submitted(video()),
    lifecycle.SubmitRejected(ErrorInfo("invalid_request_error", "no")),
    lifecycle.SubmitLost("timeout"),
    lifecycle.Reconciled(None),
    lifecycle.Reconciled(video()),
    lifecycle.Polled(video(RemoteStatus.COMPLETED, 100)),
    lifecycle.Polled(video(RemoteStatus.FAILED)),
    lifecycle.Vanished("gone"),
    lifecycle.RateLimited(5.0),
    lifecycle.Transient("HTTP 500"),
    lifecycle.Downloaded({Variant.VIDEO: VIDEO_ASSET}),
    lifecycle.DownloadFailed("HTTP 500"),
    lifecycle.WebhookReceived("video.completed", "wh_1"),
]


@pytest.mark.parametrize("status", sorted(TERMINAL))
@pytest.mark.parametrize("observation", LATE_OBSERVATIONS, ids=lambda o: type(o).__name__)
def test_observation_about_a_terminal_generation_is_only_recorded(
    status: Status, observation: lifecycle.Observation
) -> None:
    """A late observation about a finished generation changes nothing and records `ignored`."""
    g = generation(status)
    d = decide(g, observation)
    assert d.generation == g
    assert d.event.kind == "ignored"
    assert d.event.data["observation"] == type(observation).__name__


@pytest.mark.parametrize("status", sorted(ACTIVE))
def test_webhook_makes_an_active_generation_due_now(status: Status) -> None:
    """A webhook about an active generation makes it due at once."""
    g = generation(status, next_poll_at=at(300))
    d = decide(g, lifecycle.WebhookReceived("video.completed", "wh_1"), now=10)
    assert d.generation.next_poll_at == at(10)
    assert d.generation.status is status
    assert d.event.kind == "webhook"
    assert d.event.data["webhook_id"] == "wh_1"


# --- admin actions --------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(ACTIVE))
def test_cancel_stops_an_active_generation(status: Status) -> None:
    """Cancelling an active generation makes it cancelled and never polled again."""
    d = decide(generation(status), lifecycle.Cancel("alice"))
    assert d.generation.status is Status.CANCELLED
    assert d.generation.next_poll_at is None
    assert d.event.kind == "cancelled"


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_cancel_is_not_allowed_once_finished(status: Status) -> None:
    """Only an active generation can be cancelled."""
    with pytest.raises(exceptions.NotAllowed):
        decide(generation(status), lifecycle.Cancel("alice"))


def test_retry_puts_a_failed_generation_back_to_submitting() -> None:
    """Retrying a failed generation makes it pending without a video, due now, clock restarted."""
    g = generation(Status.FAILED, progress=40, failures=3, assets={Variant.VIDEO: VIDEO_ASSET})
    d = decide(g, lifecycle.Retry("alice"), now=5000)
    new = d.generation
    assert new.status is Status.PENDING
    assert new.video_id is None
    assert new.progress == 0
    assert new.error is None
    assert new.failures == 0
    assert not new.submit_ambiguous
    assert new.assets == {}
    assert new.watch_started_at == at(5000)
    assert new.next_poll_at == at(5000)


def test_retry_event_has_the_previous_video_and_the_estimated_cost() -> None:
    """The retry event keeps the previous video id and the estimated cost of the new one."""
    d = decide(generation(Status.FAILED), lifecycle.Retry("alice", cost_usd=0.80))
    assert d.event.kind == "retry"
    assert d.event.data["previous_video_id"] == "video_1"
    assert d.event.data["estimated_cost_usd"] == pytest.approx(0.80)
    assert d.event.data["previous_error"] == {"code": "boom", "message": "it broke"}


@pytest.mark.parametrize("status", sorted(set(Status) - {Status.FAILED}))
def test_retry_is_only_allowed_for_failed_generations(status: Status) -> None:
    """Retrying anything but a failed generation is refused."""
    with pytest.raises(exceptions.NotAllowed):
        decide(generation(status), lifecycle.Retry("alice"))


def test_reset_of_a_completed_generation_is_refused() -> None:
    """A stored video has nothing to poll (and the provider's copy may be gone): refused."""
    with pytest.raises(exceptions.NotAllowed, match="complete"):
        decide(generation(Status.COMPLETED), lifecycle.Reset("alice"))


@pytest.mark.parametrize("status", sorted(set(Status) - {Status.PENDING, Status.COMPLETED}))
def test_reset_with_a_video_id_polls_it_again_from_queued(status: Status) -> None:
    """Reset forgets what was seen and polls the known video from scratch, due now."""
    g = generation(status, attempts=7, failures=2)
    d = decide(g, lifecycle.Reset("alice"), now=2000)
    new = d.generation
    assert new.status is Status.QUEUED
    assert new.video_id == "video_1"
    assert new.progress == 0
    assert new.error is None
    assert new.attempts == 0
    assert new.failures == 0
    assert new.started_at is None
    assert new.next_poll_at == at(2000)
    assert d.event.kind == "reset"


def test_reset_without_a_video_id_is_refused() -> None:
    """Reset of a failed generation the provider never accepted is refused: that is a paid retry."""
    with pytest.raises(exceptions.NotAllowed, match="use retry"):
        decide(generation(Status.FAILED, video_id=None), lifecycle.Reset("alice"))


def test_reset_keeps_an_ambiguous_submit_ambiguous() -> None:
    """Reset of an ambiguous create keeps it ambiguous, so it is reconciled before any resubmit."""
    d = decide(generation(Status.PENDING, submit_ambiguous=True), lifecycle.Reset("alice"))
    assert d.generation.status is Status.PENDING
    assert d.generation.submit_ambiguous


def test_reset_restarts_the_timeout() -> None:
    """After a reset the deadline counts from the reset, so a timed-out video gets a new window."""
    timed_out = generation(Status.FAILED, error=ErrorInfo("timeout", "Not finished"))
    reset = decide(timed_out, lifecycle.Reset("alice"), now=2000).generation
    assert reset.watch_started_at == at(2000)
    d = decide(reset, lifecycle.Polled(video(RemoteStatus.QUEUED)), now=2000 + DEADLINE_S - 1)
    assert d.generation.status is Status.QUEUED


def test_reset_event_keeps_the_previous_error() -> None:
    """The reset event records the error that was cleared."""
    d = decide(generation(Status.FAILED), lifecycle.Reset("alice"))
    assert d.event.data["previous_error"] == {"code": "boom", "message": "it broke"}
    assert d.event.data["from"] == "failed"


@pytest.mark.parametrize(
    ("g", "observation"),
    [
        (generation(Status.QUEUED), lifecycle.Cancel("alice")),
        (generation(Status.FAILED), lifecycle.Retry("alice")),
        (generation(Status.FAILED), lifecycle.Reset("alice")),
    ],
    ids=["cancel", "retry", "reset"],
)
def test_admin_event_carries_the_actor(g: Generation, observation: lifecycle.Observation) -> None:
    """Every admin action's event names who did it."""
    assert decide(g, observation).event.actor == "alice"


# --- properties over random histories -------------------------------------------------------

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset(
        {Status.PENDING, Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING, Status.FAILED}
    ),
    Status.QUEUED: frozenset(
        {Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING, Status.FAILED}
    ),
    Status.IN_PROGRESS: frozenset({Status.IN_PROGRESS, Status.DOWNLOADING, Status.FAILED}),
    Status.DOWNLOADING: frozenset({Status.DOWNLOADING, Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset({Status.COMPLETED}),
    Status.FAILED: frozenset({Status.FAILED}),
    Status.CANCELLED: frozenset({Status.CANCELLED}),
}

times = st.none() | st.integers(0, 8000).map(at)
errors = st.builds(
    ErrorInfo, code=st.sampled_from(["moderation_blocked", "internal_error"]), message=st.just("x")
)
# Weighted towards the happy path, so histories reach downloading and completed, not only failed.
remote_statuses = st.sampled_from(
    [RemoteStatus.QUEUED]
    + [RemoteStatus.IN_PROGRESS] * 4
    + [RemoteStatus.COMPLETED] * 2
    + [RemoteStatus.UNKNOWN, RemoteStatus.FAILED]
)
remote_videos = st.builds(
    RemoteVideo,
    video_id=st.sampled_from(["video_1", "video_2"]),
    status=remote_statuses,
    raw_status=st.sampled_from(["queued", "in_progress", "completed", "failed", "paused", ""]),
    progress=st.integers(-10, 120),
    error=st.none() | errors,
    completed_at=times,
    expires_at=times,
)
retry_afters = st.none() | st.floats(-5, 3600, allow_nan=False) | st.just(math.inf)
polled = st.builds(lifecycle.Polled, video=remote_videos, latency_s=st.floats(0, 5))
download_failed = st.builds(
    lifecycle.DownloadFailed,
    reason=st.just("truncated"),
    assets=st.sampled_from([{}, {Variant.THUMBNAIL: THUMBNAIL_ASSET}]),
)
rare: st.SearchStrategy[lifecycle.Observation] = st.one_of(
    st.builds(lifecycle.SubmitRejected, error=errors, http_status=st.sampled_from([400, None])),
    st.builds(lifecycle.Vanished, message=st.just("gone")),
    st.sampled_from(
        [lifecycle.Reset("admin"), lifecycle.Retry("admin"), lifecycle.Cancel("admin")]
    ),
)
observations: st.SearchStrategy[lifecycle.Observation] = st.one_of(
    st.builds(lifecycle.Submitted, video=remote_videos, latency_s=st.floats(0, 5)),
    st.builds(lifecycle.SubmitLost, reason=st.just("timeout")),
    st.builds(lifecycle.Reconciled, video=st.none() | remote_videos),
    polled,
    polled,
    polled,
    st.builds(lifecycle.RateLimited, retry_after_s=retry_afters, local=st.booleans()),
    st.builds(lifecycle.Transient, reason=st.just("HTTP 503")),
    st.builds(lifecycle.Downloaded, assets=st.just({Variant.VIDEO: VIDEO_ASSET})),
    download_failed,
    download_failed,
    st.builds(
        lifecycle.WebhookReceived, event_type=st.just("video.completed"), webhook_id=st.just("wh")
    ),
    rare,
)
policies = st.sampled_from([POLICY, schedule.Policy(timeout_s=1800.0, webhook_poll_s=300.0)])
histories = st.lists(
    st.tuples(observations, st.floats(0, 60, allow_nan=False), st.floats(0, 1, exclude_max=True)),
    max_size=30,
)
ADMIN_RESTART = (lifecycle.Reset, lifecycle.Retry)


@dataclass(frozen=True)
class Step:
    before: Generation
    observation: lifecycle.Observation
    now: datetime
    rand: float
    policy: schedule.Policy
    decision: lifecycle.Decision

    @property
    def after(self) -> Generation:
        return self.decision.generation


def walk(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> Iterator[Step]:
    """Apply a history to a fresh generation with time moving forward; refused admin skipped."""
    g = generation()
    now = T0
    for observation, gap_s, rand in history:
        now += timedelta(seconds=gap_s)
        try:
            decision = lifecycle.decide(g, observation, now, policy, rand)
        except exceptions.NotAllowed:
            assert isinstance(observation, lifecycle.Cancel | lifecycle.Retry | lifecycle.Reset)
            continue
        yield Step(g, observation, now, rand, policy, decision)
        g = decision.generation


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_status_only_moves_along_allowed_edges(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """Statuses move forward only; terminal stays terminal except by admin Reset or Retry."""
    for step in walk(history, policy):
        if isinstance(step.observation, ADMIN_RESTART):
            continue
        if isinstance(step.observation, lifecycle.Cancel):
            assert step.before.active and step.after.status is Status.CANCELLED
            continue
        assert step.after.status in ALLOWED[step.before.status], step


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_progress_never_decreases(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """Progress never goes down except by admin Reset or Retry, and stays within 0..100."""
    for step in walk(history, policy):
        assert 0 <= step.after.progress <= 100
        if not isinstance(step.observation, ADMIN_RESTART):
            assert step.after.progress >= step.before.progress, step


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_active_results_are_scheduled_and_terminal_ones_are_not(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """Active results are due no earlier than now (Retry-After for a 429); terminal never."""
    for step in walk(history, policy):
        after = step.after
        if after.terminal:
            assert after.next_poll_at is None, step
            continue
        assert after.next_poll_at is not None, step
        assert after.next_poll_at >= step.now, step
        match step.observation:
            case lifecycle.RateLimited(retry_after_s=float() as wait) if (
                step.before.active and math.isfinite(wait) and wait >= 0
            ):
                assert after.next_poll_at >= step.now + timedelta(seconds=wait), step


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_transient_trouble_never_fails_a_generation(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """Transient, RateLimited and DownloadFailed never fail it, bar a download past expires_at."""
    for step in walk(history, policy):
        observation = step.observation
        if not isinstance(
            observation, lifecycle.Transient | lifecycle.RateLimited | lifecycle.DownloadFailed
        ):
            continue
        if step.before.status is Status.FAILED or step.after.status is not Status.FAILED:
            continue
        assert isinstance(observation, lifecycle.DownloadFailed), step
        assert step.before.expires_at is not None and step.now >= step.before.expires_at, step


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_every_decision_records_an_event(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """Every decision carries an event with a non-empty kind."""
    for step in walk(history, policy):
        assert isinstance(step.decision.event.kind, str) and step.decision.event.kind


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_decide_is_deterministic(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """The same generation, observation, time, policy and draw give the same decision."""
    for step in walk(history, policy):
        again = lifecycle.decide(step.before, step.observation, step.now, step.policy, step.rand)
        assert again == step.decision


@settings(max_examples=200)
@given(history=histories, policy=policies)
def test_known_video_is_never_replaced_nor_lost(
    history: list[tuple[lifecycle.Observation, float, float]], policy: schedule.Policy
) -> None:
    """Past pending a generation always has a video id, changed only by an admin Retry."""
    for step in walk(history, policy):
        if step.after.status in (Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING):
            assert step.after.video_id is not None, step
        if step.before.video_id is not None and not isinstance(step.observation, lifecycle.Retry):
            assert step.after.video_id == step.before.video_id, step


# --- the schedule with a history of the generation's shape (reelwatch.predict) --------------

HISTORY = predict.History([predict.Run(2.0, 30.0 + i / 10) for i in range(50)])  # 30-34.9 s


def test_with_history_the_next_look_is_the_one_the_forecast_pays_for() -> None:
    g = generation(Status.QUEUED, updated_at=at(2))
    d = lifecycle.decide(
        g,
        lifecycle.Polled(video(status=RemoteStatus.IN_PROGRESS, progress=0)),
        at(4),
        POLICY,
        history=HISTORY,
    )
    new = d.generation
    # The render began between the look at 2 s and this one at 4 s.
    assert (new.started_after, new.started_at) == (at(2), at(4))
    forecast = predict.forecast(new, at(4), HISTORY)
    assert forecast.source == "history" and forecast.remaining is not None
    wait = forecast.remaining.look_after(POLICY.look_worth_s)
    assert new.next_poll_at == at(4 + wait)
    assert 25.0 < wait < 31.0  # nothing to see before the shortest render of its shape


def test_a_render_past_every_one_of_its_shape_is_looked_at_a_few_times_a_minute() -> None:
    """A stuck render (percent frozen) is polled ever more rarely, never under a second
    apart, never over 15 s; over 15 minutes that is tens of looks, not 900."""
    g = generation(Status.IN_PROGRESS, progress=50, started_at=T0, last_progress_at=at(10))
    now, looks, gaps = at(0), 0, []
    while not g.terminal:
        polled = video(status=RemoteStatus.IN_PROGRESS, progress=50)
        d = lifecycle.decide(g, lifecycle.Polled(polled), now, POLICY, history=HISTORY)
        g = dataclasses.replace(d.generation, updated_at=now)
        if g.next_poll_at is None:
            break
        gaps.append((g.next_poll_at - now).total_seconds())
        now, looks = g.next_poll_at, looks + 1
    assert g.timed_out
    assert looks <= 90
    overdue = gaps[5:]  # the first looks are aimed at the end of the longest render
    assert max(overdue) == schedule.OVERDUE_MAX_S == overdue[-1]
    assert min(overdue) >= POLICY.poll_min_s

"""Domain types: a generation, its status, its assets and its events. No I/O here."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any


class Status(enum.StrEnum):
    """Where a generation is; the values are the stored strings."""

    PENDING = "pending"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({Status.PENDING, Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING})
TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
# Still rendering (or not yet accepted): the timeout applies to these, not to downloads.
RENDERING = frozenset({Status.PENDING, Status.QUEUED, Status.IN_PROGRESS})


class RemoteStatus(enum.StrEnum):
    """A provider's status, normalised; UNKNOWN keeps the raw word in `RemoteVideo.raw_status`."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Variant(enum.StrEnum):
    """The downloadable assets of a finished video."""

    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a generation lives: the provider and the base URL its API was reached at.

    Never the key: a generation can be moved between credentials of the same endpoint, but a
    worker configured for another base URL must not poll it (it would see 404 and fail it).
    """

    provider: str
    base_url: str

    @property
    def key(self) -> str:
        """One string naming the endpoint (the shared pause and budget are kept per key)."""
        return f"{self.provider} {self.base_url}"


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class RemoteVideo:
    """What a provider said about one video, in provider-neutral terms."""

    video_id: str
    status: RemoteStatus
    raw_status: str
    progress: int
    error: ErrorInfo | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    model: str | None = None
    prompt: str | None = None
    size: str | None = None
    seconds: str | None = None
    # The adapter's handle beyond video_id, kept with the generation (an app id, an operation
    # name; once finished, output URLs). Merged into `Generation.remote` on every answer.
    remote: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The job's inputs as the adapter validates them (for matching a lost create in a list).
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The provider's words for the step, where it has no percent: "3 ahead in the queue", the
    # last log line.
    detail: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Asset:
    """One stored file: where it is (a storage key) and what it is."""

    variant: Variant
    key: str
    bytes: int
    sha256: str
    content_type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }

    @classmethod
    def from_json(cls, variant: str, data: Mapping[str, Any]) -> Asset:
        return cls(
            variant=Variant(variant),
            key=str(data["key"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            content_type=str(data["content_type"]),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Generation:
    """One video generation as reelwatch knows it (the row, minus lease bookkeeping)."""

    id: str
    provider: str
    video_id: str | None
    status: Status
    progress: int
    model: str
    seconds: int | None
    size: str | None
    prompt: str
    created_at: datetime
    watch_started_at: datetime
    input_reference: str | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    remote_completed_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    error: ErrorInfo | None = None
    attempts: int = 0
    failures: int = 0
    next_poll_at: datetime | None = None
    last_progress_at: datetime | None = None
    remote_status: str | None = None
    submit_ambiguous: bool = False
    assets: Mapping[Variant, Asset] = dataclasses.field(default_factory=dict)
    updated_at: datetime | None = None
    download_bytes: int = 0
    download_total: int | None = None
    started_progress: int = 0  # the progress seen at `started_at`: the anchor of the rate
    claims: int = 0  # times claimed since the last step was written (poison-pill detection)
    attention: str | None = None  # why a person should look at it (quarantined), if anything
    submit_started_at: datetime | None = None  # when the last create was sent
    endpoint: str | None = None  # the base URL it was submitted to (None: before 0.6)
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # provider inputs
    remote: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # adapter's handle
    step_detail: str | None = None  # the provider's words for the step (queue, log line)
    # The look before `started_at` and the one before `last_progress_at`: the render began,
    # and the current percent was reached, somewhere in between.
    started_after: datetime | None = None
    progress_after: datetime | None = None
    # Looks that changed nothing since the last event, folded instead of one event each: how
    # many, and the first of them (the last is `updated_at`). The next event carries them.
    quiet_polls: int = 0
    quiet_since: datetime | None = None
    # Creates sent for it, retries included (each one is paid); `attempts` counts every
    # request to the provider for the current run, status checks included.
    submissions: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def timed_out(self) -> bool:
        return (
            self.status is Status.FAILED and self.error is not None and self.error.code == "timeout"
        )

    def eta_seconds(self, now: datetime) -> float | None:
        """Seconds until the render should end, or None until two looks show progress moving.

        The rate comes from two observations, the first in-progress one (`started_at`,
        `started_progress`) and the latest change (`last_progress_at`, `progress`), so the
        time spent queued does not distort it. Integer percents are read as the middle of
        their step, and the end is where the provider reports 99 (the last integer before the
        jump to completed).
        """
        if self.status is not Status.IN_PROGRESS or self.started_at is None:
            return None
        if self.last_progress_at is None:
            return None
        gained = self.progress - self.started_progress
        span = (self.last_progress_at - self.started_at).total_seconds()
        if gained <= 0 or span <= 0:
            return None
        rate = gained / span  # percent per second
        end = self.last_progress_at.timestamp() + max(0.0, 99 - self.progress - 0.5) / rate
        return max(0.0, end - now.timestamp())

    @property
    def step(self) -> str:
        """The current step in words, for people."""
        match self.status:
            case Status.PENDING:
                if self.submit_ambiguous:
                    return "Checking whether the provider accepted it"
                return "Submitting to the provider"
            case Status.QUEUED:
                if self.step_detail:
                    return f"Queued at the provider: {self.step_detail}"
                return "Queued at the provider"
            case Status.IN_PROGRESS:
                if self.progress == 0 and self.step_detail:
                    return f"Rendering: {self.step_detail}"
                return f"Rendering {self.progress}%"
            case Status.DOWNLOADING:
                if self.download_total:
                    done, total = _mb(self.download_bytes), _mb(self.download_total)
                    return f"Downloading {done} of {total} MB"
                return "Downloading"
            case Status.COMPLETED:
                return "Ready"
            case Status.FAILED:
                reason = self.error.message if self.error else "unknown error"
                return f"Failed: {reason}"
            case Status.CANCELLED:
                return "Cancelled"


def _mb(size: int) -> str:
    megabytes = size / 1_000_000
    return f"{megabytes:.1f}" if megabytes < 10 else f"{megabytes:.0f}"


class EventKind(enum.StrEnum):
    """What an event says happened; the values are stored, and the dashboard's script reads
    them from the page (one list for both)."""

    CREATED = "created"
    TRACKED = "tracked"
    SUBMITTED = "submitted"
    RECONCILED = "reconciled"
    SUBMIT_AMBIGUOUS = "submit_ambiguous"
    STATUS = "status"
    PROGRESS = "progress"
    POLL = "poll"
    UNKNOWN_STATUS = "unknown_status"
    RATE_LIMITED = "rate_limited"
    RETRY_SCHEDULED = "retry_scheduled"
    WAITING = "waiting"
    WEBHOOK = "webhook"
    IGNORED = "ignored"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    COMPLETED = "completed"
    DOWNLOAD_FAILED = "download_failed"
    DOWNLOAD_PROGRESS = "download_progress"
    CANCELLED = "cancelled"
    RESET = "reset"
    RETRY = "retry"
    ASSETS_DELETED = "assets_deleted"
    NOTIFIED = "notified"  # a webhook to a client was delivered (REELWATCH_WEBHOOK_URL)
    NOTIFY_FAILED = "notify_failed"  # an attempt failed; the next try, or given up


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One entry of a generation's audit log, as stored."""

    id: int
    generation_id: str
    at: datetime
    kind: str
    status: Status
    progress: int
    actor: str | None
    data: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended (the store assigns id, generation and status)."""

    kind: EventKind
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    actor: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FrontVideo:
    """A video handed out by the compatible front (`/v1/videos`, see front.py): its own id, the
    generation doing the work, and what the client asked for in that API's words."""

    id: str
    generation_id: str
    client: str  # who asked: a digest of the client's key ("local" without keys)
    model: str
    seconds: str
    size: str
    created_at: datetime
    remixed_from: str | None = None
    deleted_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outbound:
    """One webhook reelwatch sends a client (an event to one URL), as claimed for an attempt."""

    id: int
    webhook_id: str
    url: str
    generation_id: str
    event_type: str
    body: str
    created_at: datetime
    attempts: int  # including the one claimed

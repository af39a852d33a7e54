"""What every provider adapter offers, and the small parsing rules they share."""

from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from reelwatch.models import ErrorInfo, RemoteStatus, RemoteVideo, Variant


@dataclasses.dataclass(frozen=True, slots=True)
class CreateRequest:
    prompt: str
    model: str
    seconds: int
    size: str
    input_reference: Path | None = None


class Download(Protocol):
    """An open download: headers known, body not yet read."""

    content_type: str
    content_length: int | None

    def chunks(self) -> AsyncIterator[bytes]: ...


class Provider(Protocol):
    """An asynchronous video API: submit, look, list, fetch. Errors are `exceptions.Provider*`."""

    name: str

    async def create(self, request: CreateRequest) -> RemoteVideo: ...

    async def retrieve(self, video_id: str) -> RemoteVideo: ...

    def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        """Videos created at or after `since`, newest first (for reconciling lost creates)."""
        ...

    async def remix(self, video_id: str, prompt: str) -> RemoteVideo:
        """A new job from a completed video and a new prompt."""
        ...

    async def delete(self, video_id: str) -> None:
        """Delete a finished video and its assets at the provider."""
        ...

    def download(
        self, video_id: str, variant: Variant
    ) -> AbstractAsyncContextManager[Download]: ...

    async def aclose(self) -> None: ...


# Gateways that serve the OpenAI shape for other models use their own words for the same states.
STATUS_WORDS: Mapping[str, RemoteStatus] = {
    "queued": RemoteStatus.QUEUED,
    "pending": RemoteStatus.QUEUED,
    "submitted": RemoteStatus.QUEUED,
    "waiting": RemoteStatus.QUEUED,
    "in_progress": RemoteStatus.IN_PROGRESS,
    "processing": RemoteStatus.IN_PROGRESS,
    "running": RemoteStatus.IN_PROGRESS,
    "generating": RemoteStatus.IN_PROGRESS,
    "completed": RemoteStatus.COMPLETED,
    "succeeded": RemoteStatus.COMPLETED,
    "success": RemoteStatus.COMPLETED,
    "failed": RemoteStatus.FAILED,
    "failure": RemoteStatus.FAILED,
    "error": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.FAILED,
    "canceled": RemoteStatus.FAILED,
    "expired": RemoteStatus.FAILED,
}


def normalise_status(raw: str | None) -> RemoteStatus:
    return STATUS_WORDS.get((raw or "").strip().lower(), RemoteStatus.UNKNOWN)


def remote_error(raw_status: str, error: ErrorInfo | None) -> ErrorInfo | None:
    """A failed status without an error object still gets a code and a message."""
    if normalise_status(raw_status) is not RemoteStatus.FAILED or error is not None:
        return error
    word = raw_status.strip().lower() or "failed"
    return ErrorInfo(word, f"The provider reported the video as {word}")


def timestamp(value: object) -> datetime | None:
    """Unix seconds (int, float or numeric string) to an aware datetime; None if absent."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(float(str(value)), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def progress(value: object) -> int:
    """An integer percent in 0..100 from whatever the provider sent (int, float, None)."""
    try:
        number = float(str(value)) if value is not None else 0.0
    except ValueError:
        return 0
    if number != number:  # NaN
        return 0
    return max(0, min(100, int(number)))


def retry_after_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())

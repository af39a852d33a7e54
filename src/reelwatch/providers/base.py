"""What every provider adapter offers, and the small parsing rules they share."""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import math
import mimetypes
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from reelwatch import exceptions
from reelwatch.models import Endpoint, ErrorInfo, RemoteStatus, RemoteVideo, Variant

__all__ = ["Endpoint"]  # re-exported: adapters name it from here


class ProgressKind(enum.StrEnum):
    """What a provider tells about a running job, besides its status."""

    PERCENT = "percent"  # a number 0..100 (OpenAI, Runway)
    QUEUE_POSITION = "queue_position"  # how many jobs are ahead while queued (fal)
    LOG_LINES = "log_lines"  # free text; a percent may be read from it (Replicate, fal)
    NONE = "none"  # only the status (Veo)


class AssetDelivery(enum.StrEnum):
    """How a finished video is fetched."""

    CONTENT_BY_ID = "content_by_id"  # an authenticated GET by job id (OpenAI shape)
    OUTPUT_URLS = "output_urls"  # public URLs in the result that expire (Replicate, fal)
    # A file the result names, fetched with the API's credentials, or bytes inline in the
    # result (Veo: the Gemini API's Files API, Vertex's inline video or the user's bucket).
    PROVIDER_FILES = "provider_files"


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do; the engine, the CLI and the dashboard read it, never the name."""

    progress: tuple[ProgressKind, ...]
    can_list: bool  # a lost create can be found in the provider's list of recent jobs
    can_cancel: bool  # a running job can be stopped at the provider
    assets: AssetDelivery
    webhooks: str | None  # the signature scheme of its webhooks, None if it sends none
    variants: tuple[Variant, ...]  # the assets a finished job has (the video always first)
    asset_lifetime: str  # for people: how long the provider keeps the file
    # Takes an uploaded first-frame file; others take image URLs as params (their own names).
    input_reference: bool = False
    # Who runs the model, for words like "Queued at Google" (None: "the provider").
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "progress": [kind.value for kind in self.progress],
            "can_list": self.can_list,
            "can_cancel": self.can_cancel,
            "assets": self.assets.value,
            "webhooks": self.webhooks,
            "variants": [v.value for v in self.variants],
            "asset_lifetime": self.asset_lifetime,
            "input_reference": self.input_reference,
            "host": self.host,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """A request as the adapter accepted it: its own parameters, and what people are shown."""

    params: Mapping[str, Any]
    seconds: int | None = None
    size: str | None = None  # a resolution (720x1280) or an aspect ratio (16:9)


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    """A file sent with a create (the input reference): its name, and its bytes (small: at
    most 20 MiB, checked when it was submitted)."""

    name: str
    data: bytes

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"


@dataclasses.dataclass(frozen=True, slots=True)
class CreateRequest:
    prompt: str
    model: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_reference: Upload | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """A remote job as stored: the provider's id and whatever else the adapter needs to reach
    it again (fal: the app id; Replicate, fal: the output URLs of a finished job)."""

    video_id: str
    remote: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified delivery: which job it is about and whether it says the job has ended."""

    webhook_id: str
    video_id: str
    event_type: str
    terminal: bool


class WebhookRejected(exceptions.ReelwatchError):
    """A delivery whose signature or timestamp does not hold."""


class WebhookMalformed(WebhookRejected):
    """A signed delivery whose body is not an event of the provider's shape."""


class WebhookVerifier(Protocol):
    """Checks one provider's deliveries; built from its configuration alone (a server without
    the provider's API key can still take its webhooks for the workers)."""

    async def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        """Check a delivery's signature and read it; raises WebhookRejected (or
        WebhookMalformed for a signed body of the wrong shape)."""
        ...

    async def aclose(self) -> None: ...


class Download(Protocol):
    """An open download: headers known, body not yet read."""

    content_type: str
    content_length: int | None

    def chunks(self) -> AsyncIterator[bytes]: ...


class Catalogue(Protocol):
    """What a provider offers and what it costs; no I/O, usable without credentials."""

    name: str
    capabilities: Capabilities
    models: tuple[str, ...]
    default_model: str

    def validate(self, model: str, params: Mapping[str, Any]) -> Inputs:
        """The request as the API will take it; raises InvalidInput naming the field."""
        ...

    def estimate_cost(
        self, model: str, params: Mapping[str, Any], prices: Mapping[str, float]
    ) -> float | None:
        """Estimated USD price of one run; `prices` (USD per generated second, per model) are
        the user's overrides of the built-in table. None when the price is unknown."""
        ...

    def ref(self, job: str) -> Ref:
        """A job created elsewhere, named as its provider's users name it (`track`); raises
        InvalidInput when it cannot be one."""
        ...


class Provider(Protocol):
    """An asynchronous video API: submit, look, list, fetch. Errors are `exceptions.Provider*`."""

    catalogue: Catalogue
    endpoint: Endpoint
    webhooks_enabled: bool  # deliveries are set up (a secret, or a URL sent with each create)

    async def create(self, request: CreateRequest) -> RemoteVideo: ...

    async def retrieve(self, ref: Ref) -> RemoteVideo: ...

    def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        """Jobs created at or after `since`, newest first (for reconciling lost creates);
        only called when `capabilities.can_list`."""
        ...

    async def cancel(self, ref: Ref) -> None:
        """Stop a running job at the provider; only called when `capabilities.can_cancel`."""
        ...

    def download(self, ref: Ref, variant: Variant) -> AbstractAsyncContextManager[Download]: ...

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Check a delivery's signature and read it; raises WebhookRejected."""
        ...

    async def aclose(self) -> None: ...


MAX_ID_CHARS = 200
# Ids are ASCII tokens (`msg_...`, `video_...`, UUIDs); anything else (NUL, which PostgreSQL
# refuses, control characters, spaces) cannot be one and must not reach the store or a log.
_ID = re.compile(r"[\x21-\x7e]+")


def plausible_id(value: object) -> bool:
    """An id a row can hold: a string of 1..200 printable ASCII characters."""
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS and bool(_ID.fullmatch(value))


def require_id(value: object, field: str) -> str:
    """`value` if it is a plausible id, else WebhookMalformed naming the field."""
    if not plausible_id(value):
        raise WebhookMalformed(f"{field}: must be 1 to {MAX_ID_CHARS} printable ASCII characters")
    assert isinstance(value, str)
    return value


def status_of(words: Mapping[str, RemoteStatus], raw: str | None) -> RemoteStatus:
    """An API's exact status word to the neutral status; any other word is UNKNOWN."""
    return words.get(raw or "", RemoteStatus.UNKNOWN)


def failed_without_error(raw_status: str) -> ErrorInfo:
    """A failed status without an error object still gets a code and a message."""
    word = raw_status.strip().lower() or "failed"
    return ErrorInfo(word, f"The provider reported the video as {word}")


def price(
    table: Mapping[str, float], prices: Mapping[str, float], model: str, seconds: float | None
) -> float | None:
    """USD per second from the user's prices, else the built-in table, times the seconds."""
    per_second = prices.get(model, table.get(model))
    if per_second is None or seconds is None:
        return None
    return round(per_second * seconds, 2)


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


_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
MAX_PARAM_CHARS = 2000
MAX_PARAM_INT = 10**9  # fits the database's 32-bit integers


def plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs of a model reached through an aggregator (any model's own names): plain names and
    plain values, the prompt given as the prompt. Raises InvalidInput naming the input."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if not _PARAM_NAME.fullmatch(key):
            raise exceptions.InvalidInput(f"params: {key!r} is not an input name")
        if key == "prompt":
            raise exceptions.InvalidInput("params: give the prompt as the prompt, not a param")
        if not isinstance(value, str | int | float | bool):
            raise exceptions.InvalidInput(f"params: {key} must be a string or a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise exceptions.InvalidInput(f"params: {key} must be a finite number")
        if isinstance(value, int) and abs(value) > MAX_PARAM_INT:
            raise exceptions.InvalidInput(f"params: {key} must be at most {MAX_PARAM_INT:,}")
        if isinstance(value, str) and (len(value) > MAX_PARAM_CHARS or "\x00" in value):
            raise exceptions.InvalidInput(f"params: {key} is too long or has NUL characters")
        clean[key] = value
    return clean


def unavailable(exc: Exception) -> exceptions.ProviderUnavailable:
    """An httpx transport failure, saying whether the request can have reached the provider
    (a connection that was never made sent nothing; a create that failed so was not done)."""
    import httpx  # here: only adapters, which have imported it already, call this

    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return exceptions.ProviderUnreachable(message)
    return exceptions.ProviderUnavailable(message)

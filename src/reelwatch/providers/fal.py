"""fal's queue API (Veo, Kling, Hailuo, Seedance, Wan, Luma ... as fal apps), through the
official `fal-client` (../shared/providers.md section 2).

The SDK's `AsyncClient` gives the HTTP client (its auth header, user agent and transport) and
its `AppId` rules for URLs. Its request helpers are not used for the calls themselves, for two
reasons the SDK offers no option against: they retry every call up to 10 times (a submit can
be sent twice after a timeout, and a 429 would be hidden from the engine, which pauses every
worker of the endpoint for it), and its status parser raises on any word it does not know
(`FAILED` has been seen), where reelwatch must show that word to a person. So each call here
is one request, read with the same rules as the SDK's `_parse_status`.

The queue host is not a constructor option in the SDK (it is read from FAL_QUEUE_RUN_HOST at
import); the adapter builds its URLs from its own base URL instead, which defaults to the same
host. A URL in an answer is followed only when it is on that host: the key goes nowhere else.
"""

from __future__ import annotations

import asyncio
import base64 as b64
import binascii
import hashlib
import json
import os
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fal_client.client import AppId, AsyncClient
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelwatch import clock, exceptions
from reelwatch.models import ErrorInfo, RemoteStatus, RemoteVideo, Variant
from reelwatch.providers import base, output_urls
from reelwatch.settings import Settings

NAME = "fal"
DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
WEBHOOK_TOLERANCE_S = 300
JWKS_TTL_S = 24 * 3600.0  # fal: cache the keys up to a day
JWKS_REFRESH_MIN_S = 30.0  # an unverifiable delivery refreshes the keys at most this often

# The queue's exact words (the SDK's `_parse_status`); anything else is UNKNOWN.
STATUSES: Mapping[str, RemoteStatus] = {
    "IN_QUEUE": RemoteStatus.QUEUED,
    "IN_PROGRESS": RemoteStatus.IN_PROGRESS,
    "COMPLETED": RemoteStatus.COMPLETED,  # or FAILED, when it carries an error
}
# USD per generated second, as listed on fal's model pages in 2026-11 (estimates; override
# with REELWATCH_PRICES).
PRICES: Mapping[str, float] = {
    "fal-ai/veo3": 0.75,
    "fal-ai/veo3/fast": 0.40,
    "fal-ai/kling-video/v2.1/master/text-to-video": 0.28,
    "fal-ai/minimax/hailuo-02/standard/text-to-video": 0.045,
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": 0.12,
    "fal-ai/wan/v2.2-a14b/text-to-video": 0.08,
    "fal-ai/luma-dream-machine/ray-2": 0.10,
}
MODELS = tuple(PRICES)
_APP = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*){1,5}", re.IGNORECASE)
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
_PERCENT = re.compile(r"(\d{1,3})\s*%")
MODERATION_TYPES = frozenset({"content_policy_violation", "moderation", "nsfw"})


class Catalogue:
    """Any fal app, by its endpoint id (`owner/app[/path]`); prices for known ones."""

    name = NAME
    models = MODELS
    default_model = "fal-ai/veo3/fast"
    capabilities = base.Capabilities(
        progress=(base.ProgressKind.QUEUE_POSITION, base.ProgressKind.LOG_LINES),
        can_list=False,  # not in the queue API: a lost submit goes to a person
        can_cancel=True,
        assets=base.AssetDelivery.OUTPUT_URLS,
        webhooks="ed25519-jwks",
        variants=(Variant.VIDEO,),
        asset_lifetime="result 1 hour (6 minutes if 10 KB or more); media per account setting",
    )

    def validate(self, model: str, params: Mapping[str, Any]) -> base.Inputs:
        if _app_id(model) is None:
            raise exceptions.InvalidInput(
                f"model: {model!r} is not a fal endpoint id like {MODELS[0]}"
            )
        clean = base.plain_params(params)
        return base.Inputs(clean, seconds=_seconds(clean.get("duration")), size=_size(clean))

    def estimate_cost(
        self, model: str, params: Mapping[str, Any], prices: Mapping[str, float]
    ) -> float | None:
        return base.price(PRICES, prices, model, _seconds(params.get("duration")))

    def ref(self, job: str) -> base.Ref:
        """`owner/app[/path]/REQUEST_ID`: the request id alone does not say which queue."""
        endpoint, _, request_id = job.strip().rpartition("/")
        app = _app_id(endpoint)
        if app is None or not _REQUEST_ID.fullmatch(request_id):
            raise exceptions.InvalidInput(
                f"video_id: give a fal request as its endpoint id and request id, like "
                f"{MODELS[0]}/764cabcf-b745-4b3e-ae38-1200304cf45b"
            )
        return base.Ref(request_id, {"app": _app(app)})


CATALOGUE = Catalogue()


def _seconds(value: object) -> int | None:
    """fal apps write durations as 8, "8" or "8s"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := re.fullmatch(r"(\d{1,4})s?", value.strip())):
        return int(match.group(1))
    return None


def _size(params: Mapping[str, Any]) -> str | None:
    value = params.get("aspect_ratio", params.get("resolution"))
    return None if value is None else str(value)[:20]


class Config(BaseSettings):
    """The key (FAL_KEY, as the SDK reads it) and where the queue and the keys live."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    key: str | None = Field(None, validation_alias=AliasChoices("FAL_KEY"))
    # The SDK's own variable is a host (https only); a full URL (any scheme) wins over it.
    base_url: str = Field(
        default_factory=lambda: f"https://{os.environ.get('FAL_QUEUE_RUN_HOST', 'queue.fal.run')}/",
        validation_alias=AliasChoices("REELWATCH_FAL_QUEUE_URL"),
    )
    jwks_url: str = Field(DEFAULT_JWKS_URL, validation_alias=AliasChoices("REELWATCH_FAL_JWKS_URL"))

    # The endpoint's name when one API is reached through several URLs (a proxy on some
    # hosts): workers agree on it instead of the base URL. Default: the base URL.
    endpoint_name: str | None = Field(None, validation_alias=AliasChoices("REELWATCH_FAL_ENDPOINT"))

    @field_validator("base_url", "jwks_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("base_url")
    @classmethod
    def _slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def missing(self) -> str | None:
        return None if self.key else "FAL_KEY"

    @property
    def webhooks_enabled(self) -> bool:
        return True  # nothing to configure here; they are sent when REELWATCH_PUBLIC_URL is set


def build(config: Config, settings: Settings, the_clock: clock.Clock) -> Fal:
    assert config.key is not None
    return Fal(
        key=config.key,
        base_url=config.base_url,
        timeout_s=settings.request_timeout_seconds,
        clock=the_clock,
        webhook_url=settings.webhook_url(NAME),
    )


def verifier(config: Config, settings: Settings) -> base.WebhookVerifier | None:
    """ED25519 signatures against fal's published keys; on when this server is reachable."""
    if settings.public_url is None:
        return None
    return JwksVerifier(config.jwks_url, timeout_s=settings.request_timeout_seconds)


class Fal:
    """A `Provider` for fal's queue API."""

    catalogue = CATALOGUE

    def __init__(
        self,
        *,
        key: str,
        base_url: str,
        timeout_s: float = 20.0,
        clock: clock.Clock | None = None,
        webhook_url: str | None = None,
    ) -> None:
        self._clock = clock or _system
        self.endpoint = base.Endpoint(NAME, base_url)
        self.webhooks_enabled = webhook_url is not None
        self._base = base_url
        self._origin = output_urls.origin(base_url)
        self._webhook_url = webhook_url
        self._timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._sdk = AsyncClient(key=key, default_timeout=timeout_s)
        self._files = output_urls.Fetcher(timeout_s=timeout_s, trusted=base_url)
        self._http: httpx.AsyncClient | None = None

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = await self._sdk._client
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self._files.aclose()

    async def create(self, request: base.CreateRequest) -> RemoteVideo:
        app = AppId.from_endpoint_id(request.model)
        url = self._base + request.model
        if self._webhook_url is not None:
            url += "?" + urllib.parse.urlencode({"fal_webhook": self._webhook_url})
        body = {**request.params, "prompt": request.prompt}
        data = await self._call("POST", url, json=body)
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise exceptions.ProviderUnavailable(f"no request_id in the answer: {data!r:.200}")
        remote = {"app": _app(app)}
        position = data.get("queue_position")
        return RemoteVideo(
            video_id=request_id,
            status=RemoteStatus.QUEUED,
            raw_status="IN_QUEUE",
            progress=0,
            model=request.model,
            prompt=request.prompt,
            params=dict(request.params),
            remote=remote,
            detail=_queue_words(position),
        )

    async def retrieve(self, ref: base.Ref) -> RemoteVideo:
        requests = self._requests_url(ref)
        data = await self._call("GET", requests + "/status", params={"logs": "1"})
        raw = str(data.get("status") or "")
        status = base.status_of(STATUSES, raw)
        logs = _log_lines(data.get("logs"))
        match status:
            case RemoteStatus.QUEUED:
                return self._video(
                    ref, status, raw, detail=_queue_words(data.get("queue_position"))
                )
            case RemoteStatus.IN_PROGRESS:
                percent = _percent(logs)
                detail = logs[-1][:200] if logs and percent is None else None
                return self._video(ref, status, raw, progress=min(99, percent or 0), detail=detail)
            case RemoteStatus.COMPLETED if data.get("error"):
                error = _error_info(str(data.get("error_type") or ""), str(data["error"]))
                return self._video(ref, RemoteStatus.FAILED, raw, error=error)
            case RemoteStatus.COMPLETED:
                return await self._result(ref, requests, raw)
        return self._video(ref, RemoteStatus.UNKNOWN, raw)

    async def _result(self, ref: base.Ref, requests: str, raw: str) -> RemoteVideo:
        """The completed request's output: the video URL, or the model's error."""
        try:
            result = await self._call("GET", requests)
        except exceptions.ProviderNotFound:
            error = ErrorInfo("asset_expired", "fal no longer keeps this request's result")
            return self._video(ref, RemoteStatus.FAILED, raw, error=error)
        except exceptions.ProviderRejected as exc:
            if exc.http_status != 422 and exc.error_code.startswith("http_"):
                raise  # 401, 403, 400 without fal's error type: not the job's fault, try again
            return self._video(ref, RemoteStatus.FAILED, raw, error=_rejected(exc))
        url = _video_url(result)
        now = self._clock.now()
        if url is None:
            error = ErrorInfo("no_output", "the result holds no video URL")
            return self._video(ref, RemoteStatus.FAILED, raw, error=error)
        remote = {**ref.remote, "output_url": url}
        return self._video(ref, RemoteStatus.COMPLETED, raw, progress=100, remote=remote, at=now)

    def _video(
        self,
        ref: base.Ref,
        status: RemoteStatus,
        raw: str,
        *,
        progress: int = 0,
        detail: str | None = None,
        error: ErrorInfo | None = None,
        remote: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> RemoteVideo:
        return RemoteVideo(
            video_id=ref.video_id,
            status=status,
            raw_status=raw,
            progress=progress,
            error=error,
            completed_at=at,
            remote=dict(remote or {}),
            detail=detail,
        )

    def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        raise exceptions.NotAllowed("fal's queue API cannot list requests")

    async def cancel(self, ref: base.Ref) -> None:
        try:
            await self._call("PUT", self._requests_url(ref) + "/cancel")
        except exceptions.ProviderRejected as exc:
            if exc.http_status == 400:
                return  # ALREADY_COMPLETED: nothing left to stop
            raise

    @asynccontextmanager
    async def download(self, ref: base.Ref, variant: Variant) -> AsyncIterator[base.Download]:
        url = ref.remote.get("output_url")
        if variant is not Variant.VIDEO or not isinstance(url, str):
            raise exceptions.AssetGone(f"no {variant.value} among the outputs")
        async with self._files.open(url, self._clock.now()) as download:
            yield download

    def _requests_url(self, ref: base.Ref) -> str:
        """`{base}{owner}/{alias}/requests/{id}` (the SDK's `get_handle` rule)."""
        app = ref.remote.get("app")
        if not isinstance(app, str) or not _APP.fullmatch(app):
            raise exceptions.ProviderNotFound("this request has no fal app id")
        if not _REQUEST_ID.fullmatch(ref.video_id):
            raise exceptions.ProviderNotFound(f"{ref.video_id[:40]!r} cannot be a request id")
        return f"{self._base}{app}/requests/{ref.video_id}"

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if output_urls.origin(url) != self._origin:
            raise exceptions.ProviderRejected(
                "refused a URL off the queue's host",
                error_code="redirect_refused",
                http_status=None,
            )
        client = await self._client()
        try:
            response = await client.request(method, url, timeout=self._timeout, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise base.unavailable(exc) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise _status_error(response, data, self._clock.now())
        if not isinstance(data, dict):
            raise exceptions.ProviderUnavailable(f"unreadable answer: {response.text[:200]!r}")
        return data


_system = clock.SystemClock()


def _app_id(endpoint: str) -> AppId | None:
    """The SDK's reading of an endpoint id, or None when it is not one (the SDK raises
    IndexError on `workflows/x`: a namespace needs owner and app after it)."""
    if not _APP.fullmatch(endpoint):
        return None
    try:
        return AppId.from_endpoint_id(endpoint)
    except (IndexError, ValueError):
        return None


def _app(app: AppId) -> str:
    prefix = f"{app.namespace}/" if app.namespace else ""
    return f"{prefix}{app.owner}/{app.alias}"


def _queue_words(position: object) -> str | None:
    if isinstance(position, int) and not isinstance(position, bool) and position >= 0:
        return "next in the queue" if position == 0 else f"{position} ahead in the queue"
    return None


def _log_lines(logs: object) -> list[str]:
    if not isinstance(logs, list):
        return []
    lines = []
    for item in logs:
        message = item.get("message") if isinstance(item, dict) else None
        if isinstance(message, str) and message.strip():
            lines.append(message.strip())
    return lines


def _percent(lines: list[str]) -> int | None:
    """The latest percent a log line states ("Generating video: 40%"), if any."""
    for line in reversed(lines):
        if match := _PERCENT.search(line):
            return min(100, int(match.group(1)))
    return None


def _video_url(result: Mapping[str, Any]) -> str | None:
    video = result.get("video")
    if isinstance(video, dict) and isinstance(video.get("url"), str):
        return str(video["url"])
    videos = result.get("videos")
    if isinstance(videos, list) and videos and isinstance(videos[0], dict):
        url = videos[0].get("url")
        return url if isinstance(url, str) else None
    return None


def _error_info(kind: str, message: str) -> ErrorInfo:
    code = "moderation" if kind in MODERATION_TYPES else (kind or "failed")
    return ErrorInfo(code[:100], message)


def _rejected(exc: exceptions.ProviderRejected) -> ErrorInfo:
    return ErrorInfo(exc.error_code, exc.message)


def _status_error(
    response: httpx.Response, data: object, now: datetime
) -> exceptions.ProviderError:
    status = response.status_code
    detail, kind = _detail(data)
    kind = kind or response.headers.get("x-fal-error-type") or ""
    message = detail or f"HTTP {status}"
    if status == 404:
        return exceptions.ProviderNotFound(message)
    if status == 429:
        wait = base.retry_after_s(dict(response.headers), now)
        return exceptions.ProviderRateLimited(message, retry_after_s=wait)
    if status >= 500 or status in (408, 409):
        return exceptions.ProviderUnavailable(f"HTTP {status}: {message}")
    code = "moderation" if kind in MODERATION_TYPES else (kind or f"http_{status}")
    return exceptions.ProviderRejected(message, error_code=code, http_status=status)


def _detail(data: object) -> tuple[str | None, str | None]:
    """fal's errors: `{"detail": str, "error_type"}` or `{"detail": [{"msg", "type"}, ...]}`."""
    if not isinstance(data, dict):
        return None, None
    detail = data.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        return str(first.get("msg") or "request refused"), _text(first.get("type"))
    if isinstance(detail, str):
        return detail, _text(data.get("error_type"))
    return None, _text(data.get("error_type"))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class JwksVerifier:
    """fal's webhooks: ED25519 over `{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(body)}`,
    checked against the keys fal publishes (fetched, cached a day, fetched again when no cached
    key verifies a delivery, at most every 30 s). Written here: no library verifies fal's
    scheme (the SDK has no helper), `cryptography` does the signature itself."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._url = url
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._keys: list[Ed25519PublicKey] = []
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> base.WebhookEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id = lowered.get("x-fal-webhook-request-id", "")
        user_id = lowered.get("x-fal-webhook-user-id", "")
        stamp = lowered.get("x-fal-webhook-timestamp", "")
        signature_hex = lowered.get("x-fal-webhook-signature", "")
        if not (request_id and user_id and stamp and signature_hex):
            raise base.WebhookRejected("missing X-Fal-Webhook-* headers")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise base.WebhookRejected("X-Fal-Webhook-Timestamp is not a unix time")
        if abs(now.timestamp() - int(stamp)) > WEBHOOK_TOLERANCE_S:
            raise base.WebhookRejected("X-Fal-Webhook-Timestamp is outside the 300 s tolerance")
        try:
            signature = binascii.unhexlify(signature_hex)
        except (binascii.Error, ValueError):
            raise base.WebhookRejected("X-Fal-Webhook-Signature is not hex") from None
        digest = hashlib.sha256(body).hexdigest()
        message = f"{request_id}\n{user_id}\n{stamp}\n{digest}".encode()
        if not await self._verified(message, signature):
            raise base.WebhookRejected("no published key verifies X-Fal-Webhook-Signature")
        job_id, status = _webhook_body(body)
        if job_id != request_id:
            raise base.WebhookMalformed("request_id: differs from X-Fal-Webhook-Request-Id")
        return base.WebhookEvent(request_id, job_id, f"fal.{status}"[:60], terminal=True)

    async def _verified(self, message: bytes, signature: bytes) -> bool:
        await self._refresh(JWKS_TTL_S)
        if _any_verifies(self._keys, message, signature):
            return True
        # The keys may have rotated. Whatever arrives (forged deliveries too), that is one
        # fetch per JWKS_REFRESH_MIN_S, failed attempts included.
        if await self._refresh(JWKS_REFRESH_MIN_S):
            return _any_verifies(self._keys, message, signature)
        if not self._keys:
            raise exceptions.ProviderUnavailable("fal's keys could not be fetched yet")
        return False

    async def _refresh(self, older_than_s: float) -> bool:
        """Fetch the keys unless an attempt was made in the last `older_than_s` (checked under
        the lock, so concurrent deliveries share one fetch); whether keys were read."""
        async with self._lock:
            if self._tried_at is not None and time.monotonic() - self._tried_at < older_than_s:
                return False
            self._tried_at = time.monotonic()
            try:
                response = await self._client.get(self._url)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if not self._keys:
                    raise exceptions.ProviderUnavailable(f"fal's keys: {exc}") from exc
                return False  # keep the keys we have
            self._keys = _keys_of(document)
            return True

    async def aclose(self) -> None:
        await self._client.aclose()


def _any_verifies(keys: list[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _keys_of(document: object) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS (`kty: OKP`, `crv: Ed25519`, `x` base64url)."""
    keys = []
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP":
            continue
        if entry.get("crv") != "Ed25519" or not isinstance(entry.get("x"), str):
            continue
        raw = entry["x"]
        try:
            material = b64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(material))
        except (ValueError, binascii.Error):
            continue
    return keys


def _webhook_body(body: bytes) -> tuple[str, str]:
    try:
        event: Any = json.loads(body)
        request_id = event["request_id"]
        status = str(event.get("status") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise base.WebhookMalformed("body: not a fal webhook") from None
    return base.require_id(request_id, "request_id"), status.lower() or "unknown"

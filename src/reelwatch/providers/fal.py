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

What it offers, its configuration and its webhook verifier are in `fal_catalogue`, which
imports no SDK; its `build` imports this module.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from fal_client.client import AppId, AsyncClient

from reelwatch import clock, exceptions
from reelwatch.models import ErrorInfo, RemoteStatus, RemoteVideo, Variant
from reelwatch.providers import base, fal_catalogue, output_urls

# The queue's exact words (the SDK's `_parse_status`); anything else is UNKNOWN.
STATUSES: Mapping[str, RemoteStatus] = {
    "IN_QUEUE": RemoteStatus.QUEUED,
    "IN_PROGRESS": RemoteStatus.IN_PROGRESS,
    "COMPLETED": RemoteStatus.COMPLETED,  # or FAILED, when it carries an error
}
_PERCENT = re.compile(r"(\d{1,3})\s*%")
MODERATION_TYPES = frozenset({"content_policy_violation", "moderation", "nsfw"})


class Fal:
    """A `Provider` for fal's queue API."""

    catalogue = fal_catalogue.CATALOGUE

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
        self.endpoint = base.Endpoint(fal_catalogue.NAME, base_url)
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
        if not isinstance(request_id, str) or not fal_catalogue.REQUEST_ID.fullmatch(request_id):
            raise exceptions.ProviderUnavailable(f"no request_id in the answer: {data!r:.200}")
        remote = {"app": fal_catalogue.app_name(app)}
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
        if not isinstance(app, str) or not fal_catalogue.APP.fullmatch(app):
            raise exceptions.ProviderNotFound("this request has no fal app id")
        if not fal_catalogue.REQUEST_ID.fullmatch(ref.video_id):
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

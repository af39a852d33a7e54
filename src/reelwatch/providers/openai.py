"""The OpenAI Videos API shape (`/v1/videos`), spoken through the official `openai` SDK.

The SDK is configured with `max_retries=0` and a short timeout: the engine owns retries,
backoff and rate limits, and a create must never be retried blindly (the API takes no
idempotency key, so a retried create can pay for a second render).

Two calls do not go through the SDK, because they are where the volume is and the SDK's
per-request cost was measured to dominate (docs/benchmarks.md): the status check
(`GET /videos/{id}`, ~2 ms of CPU per call through the SDK's httpx2 stack, ~0.2 ms as a plain
aiohttp GET, so one worker goes from ~200 to over 1,000 checks a second) and the content
download (the SDK streams in 64 KiB pieces; with aiohttp's 1 MiB reads a 1 GiB file went from
316 to 523 MiB/s). Both are single GETs whose answers are read with the same rules as the
SDK's (`_remote`, `_status_error`).

No call leaves the configured API's origin: a redirect elsewhere (which would carry the key,
or re-POST a prompt) is refused as `redirect_refused`, in the SDK's client (a request hook)
and in the plain GETs (redirects handled here) alike.

What it offers, its configuration and its webhook verifier are in `openai_catalogue`, which
imports no SDK; its `build` imports this module.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
import warnings
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx2
import openai
import yarl

from reelwatch import clock, exceptions
from reelwatch.models import ErrorInfo, RemoteStatus, RemoteVideo, Variant
from reelwatch.providers import base, openai_catalogue

_system = clock.SystemClock()
_READ_BUFFER = 1 << 20  # bytes aiohttp may buffer per response, and the largest piece read
_BINARY = {"Accept": "application/binary"}  # what the SDK asks for on /content
MAX_REDIRECTS = 5  # within the API's own origin; a redirect anywhere else is refused


# The API's own words, plus those gateways serving the same shape for other models use.
STATUSES: Mapping[str, RemoteStatus] = {
    "queued": RemoteStatus.QUEUED,
    "pending": RemoteStatus.QUEUED,
    "in_progress": RemoteStatus.IN_PROGRESS,
    "processing": RemoteStatus.IN_PROGRESS,
    "completed": RemoteStatus.COMPLETED,
    "succeeded": RemoteStatus.COMPLETED,
    "failed": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.FAILED,
    "canceled": RemoteStatus.FAILED,
    "expired": RemoteStatus.FAILED,
}


class _Download:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.content_type = response.headers.get("content-type", "application/octet-stream")
        length = response.headers.get("content-length")
        self.content_length = int(length) if length and length.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            # Pieces of whatever size has arrived, up to the buffer: storage takes any size.
            async for chunk in self._response.content.iter_chunked(_READ_BUFFER):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise exceptions.ProviderUnavailable(f"download broke: {_why(exc)}") from exc


class OpenAIVideos:
    """A `Provider` for OpenAI's Videos API or any gateway serving the same shape."""

    catalogue = openai_catalogue.CATALOGUE
    name = openai_catalogue.NAME

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout_s: float = 20.0,
        clock: clock.Clock | None = None,
        webhooks: bool = False,
    ) -> None:
        self._clock = clock or _system
        self.endpoint = base.Endpoint(openai_catalogue.NAME, base_url.rstrip("/"))
        self.webhooks_enabled = webhooks
        # Every videos.* method is marked deprecated since OpenAI shut Sora down (2026-09-24);
        # gateways serve the same shape, so that one warning is expected and silenced.
        warnings.filterwarnings(
            "ignore", message="The Sora API is scheduled", category=DeprecationWarning
        )
        timeout = httpx2.Timeout(timeout_s, connect=min(5.0, timeout_s))
        origin = _origin(yarl.URL(base_url))

        async def same_origin(request: httpx2.Request) -> None:
            # Called before every request the client sends, redirects included: a create must
            # never be re-POSTed (prompt, key and all) to a host the settings do not name.
            if _origin(yarl.URL(str(request.url))) != origin:
                raise _redirect_refused(str(request.url))

        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            # The SDK's own defaults (connection limits, proxies from the environment,
            # redirects followed), plus the origin check and a lower redirect limit.
            http_client=openai.DefaultAsyncHttpxClient(
                timeout=timeout,
                max_redirects=MAX_REDIRECTS,
                event_hooks={"request": [same_origin], "response": []},
            ),
        )
        self._base_url = str(self._client.base_url).rstrip("/")
        self._origin = origin
        headers = {k: v for k, v in self._client.default_headers.items() if isinstance(v, str)}
        headers.pop("Content-Type", None)
        self._headers = {**headers, "Authorization": f"Bearer {api_key}"}
        connect = min(5.0, timeout_s)
        self._call_timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect)
        # A download has no total limit (a big file takes long); only silence is an error.
        self._stream_timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=timeout_s)
        self._proxy = _env_proxy(self._base_url)  # read once; a bad one is a clear error now
        # One aiohttp session per event loop (made on first use: aiohttp needs a running loop,
        # and tests may use the provider from more than one).
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()

    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._sessions[loop] = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=0),  # the engine bounds concurrency
                read_bufsize=_READ_BUFFER,
                # Not `trust_env`: it reads ~/.netrc in a thread on every request (measured at
                # a fifth of the worker's CPU). The proxy the environment names is read once
                # (`self._proxy`) and passed with each request.
            )
        return session

    async def aclose(self) -> None:
        """Close the SDK client and this loop's session (another loop's closes with it)."""
        await self._client.close()
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()

    async def create(self, request: base.CreateRequest) -> RemoteVideo:
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "model": request.model,
            "seconds": str(request.params.get("seconds", 4)),
            "size": str(request.params.get("size", "720x1280")),
        }
        if (upload := request.input_reference) is not None:
            kwargs["input_reference"] = (upload.name, upload.data, upload.content_type)
        try:
            video = await self._client.videos.create(**kwargs)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc
        return _remote(video.to_dict())

    async def _get(
        self,
        url: str,
        *,
        timeouts: aiohttp.ClientTimeout,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """A GET that never leaves the API's origin (scheme, host and port).

        aiohttp would follow a redirect to any host; here one within the origin is followed
        (at most `MAX_REDIRECTS`) and any other is refused before a byte is sent there.
        """
        target = yarl.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._http().get(
                target,
                params=params,
                headers=headers,
                proxy=self._proxy,
                timeout=timeouts,
                allow_redirects=False,
            )
            if not 300 <= response.status < 400:
                return response
            location = response.headers.get("Location")
            response.release()
            if not location:
                raise exceptions.ProviderRejected(
                    f"HTTP {response.status} without a Location",
                    error_code="redirect_refused",
                    http_status=response.status,
                )
            try:
                target = response.url.join(yarl.URL(location))
            except ValueError:
                raise _redirect_refused(location, response.status) from None
            if _origin(target) != self._origin:
                raise _redirect_refused(str(target), response.status)
            params = None  # the Location carries its own query
        raise exceptions.ProviderRejected(
            f"more than {MAX_REDIRECTS} redirects from {url}",
            error_code="redirect_refused",
            http_status=None,
        )

    async def retrieve(self, ref: base.Ref) -> RemoteVideo:
        url = f"{self._base_url}/videos/{quote(ref.video_id, safe='')}"
        try:
            async with await self._get(url, timeouts=self._call_timeout) as response:
                body = await response.read()
                if response.status >= 400:
                    raise self._status_error(response.status, body, response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unavailable(exc) from exc
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not data.get("id"):
            raise exceptions.ProviderUnavailable(f"unreadable answer: {body[:200]!r}")
        return _remote(data)

    async def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        try:
            async for video in self._client.videos.list(order="desc", limit=100):
                remote = _remote(video.to_dict())
                if remote.created_at is not None and remote.created_at < since:
                    return
                yield remote
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc

    async def remix(self, video_id: str, prompt: str) -> RemoteVideo:
        try:
            video = await self._client.videos.remix(video_id, prompt=prompt)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc
        return _remote(video.to_dict())

    async def delete(self, video_id: str) -> None:
        try:
            await self._client.videos.delete(video_id)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc

    async def cancel(self, ref: base.Ref) -> None:
        raise exceptions.NotAllowed("the Videos API cannot stop a running video")

    @asynccontextmanager
    async def download(self, ref: base.Ref, variant: Variant) -> AsyncIterator[_Download]:
        url = f"{self._base_url}/videos/{quote(ref.video_id, safe='')}/content"
        params = {"variant": variant.value}
        try:
            response = await self._get(
                url, params=params, headers=_BINARY, timeouts=self._stream_timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise exceptions.ProviderUnavailable(f"download broke: {_why(exc)}") from exc
        # Only the request's own failures are mapped here; what the caller raises while it
        # reads passes through as it is (reading errors are mapped in `_Download.chunks`).
        async with response:
            if response.status >= 400:
                try:
                    body = await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    body = b""
                raise self._status_error(response.status, body, response.headers)
            yield _Download(response)

    def _status_error(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> exceptions.ProviderError:
        message, code = _error_body(body)
        return _status_error(status, message or f"HTTP {status}", code, headers, self._clock.now())


def _remote(video: Mapping[str, Any]) -> RemoteVideo:
    """A provider-neutral view of a video object (loose: gateways add words and fields)."""
    raw_status = str(video.get("status") or "")
    error_obj = video.get("error")
    error = None
    if isinstance(error_obj, Mapping):
        code = str(error_obj.get("code") or "failed")
        error = ErrorInfo(code, str(error_obj.get("message") or code))
    elif isinstance(error_obj, str) and error_obj:
        error = ErrorInfo("failed", error_obj)
    seconds = video.get("seconds")
    status = base.status_of(STATUSES, raw_status)
    failed = status is RemoteStatus.FAILED
    return RemoteVideo(
        video_id=str(video["id"]),
        status=status,
        raw_status=raw_status,
        progress=base.progress(video.get("progress")),
        error=base.failed_without_error(raw_status) if failed and error is None else error,
        created_at=base.timestamp(video.get("created_at")),
        completed_at=base.timestamp(video.get("completed_at")),
        expires_at=base.timestamp(video.get("expires_at")),
        model=_text(video.get("model")),
        prompt=_text(video.get("prompt")),
        size=_text(video.get("size")),
        seconds=None if seconds is None else str(seconds),
        params=_params(seconds, video.get("size")),
    )


def _params(seconds: object, size: object) -> dict[str, Any]:
    """A listed video's inputs in the form `Catalogue.validate` gives them."""
    params: dict[str, Any] = {}
    if (whole := openai_catalogue.whole(seconds)) is not None:
        params["seconds"] = whole
    if isinstance(size, str):
        params["size"] = size
    return params


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for `url`, as the SDK's httpx2 client uses."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and urllib.parse.urlsplit(proxy).scheme not in ("http", "https"):
        raise exceptions.ConfigError(f"proxy {proxy!r}: only http(s) proxies are supported")
    return proxy


def _origin(url: yarl.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one if none is written), as browsers compare them."""
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def _redirect_refused(target: str, status: int | None = None) -> exceptions.ProviderRejected:
    return exceptions.ProviderRejected(
        f"refused a redirect away from the API's origin, to {target[:200]}",
        error_code="redirect_refused",
        http_status=status,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _unavailable(exc: BaseException) -> exceptions.ProviderUnavailable:
    """A transport failure; a connection never made (refused, unknown host, TLS) sent nothing."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exceptions.ProviderUnreachable(_why(exc))
    return exceptions.ProviderUnavailable(_why(exc))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_body(body: bytes) -> tuple[str | None, str | None]:
    """The message and code of an OpenAI-shaped error body (`{"error": {...}}`), if any."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body[:200].decode("utf-8", "replace").strip()
        return text or None, None
    inner = data.get("error", data) if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        return None, None
    message, code = inner.get("message"), inner.get("code")
    return (str(message) if message else None), (str(code) if code else None)


def _status_error(
    status: int, message: str, code: str | None, headers: Mapping[str, str], now: datetime
) -> exceptions.ProviderError:
    """An HTTP error status to reelwatch's provider errors (the engine makes observations)."""
    if status == 404:
        return exceptions.ProviderNotFound(message)
    if status == 429:
        wait = base.retry_after_s(headers, now)
        return exceptions.ProviderRateLimited(message, retry_after_s=wait)
    if status >= 500 or status in (408, 409):
        return exceptions.ProviderUnavailable(f"HTTP {status}: {message}")
    return exceptions.ProviderRejected(
        message, error_code=code or f"http_{status}", http_status=status
    )


def _translate(exc: openai.APIError, now: datetime) -> exceptions.ProviderError:
    """SDK exceptions to reelwatch's provider errors (the engine turns those into observations)."""
    message = _message(exc)
    if isinstance(exc.__cause__, httpx2.TooManyRedirects):
        return exceptions.ProviderRejected(
            f"more than {MAX_REDIRECTS} redirects", error_code="redirect_refused", http_status=None
        )
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        why = f"{type(exc).__name__}: {message}"
        cause = exc.__cause__
        if isinstance(cause, httpx2.ConnectError | httpx2.ConnectTimeout):
            # Refused, unknown host, TLS handshake: no request was sent.
            return exceptions.ProviderUnreachable(f"{why} ({type(cause).__name__}: {cause})")
        return exceptions.ProviderUnavailable(why)
    if isinstance(exc, openai.APIStatusError):
        code = getattr(exc, "code", None)
        headers = dict(exc.response.headers)
        return _status_error(exc.status_code, message, code and str(code), headers, now)
    return exceptions.ProviderUnavailable(f"{type(exc).__name__}: {message}")


def _message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc.message)

"""The OpenAI Videos API shape (`/v1/videos`), spoken through the official `openai` SDK.

The SDK is configured with `max_retries=0` and a short timeout: the engine owns retries,
backoff and rate limits, and a create must never be retried blindly (the API takes no
idempotency key, so a retried create can pay for a second render).
"""

from __future__ import annotations

import mimetypes
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from reelwatch import clock, exceptions
from reelwatch.models import ErrorInfo, RemoteVideo, Variant
from reelwatch.providers import base

if TYPE_CHECKING:
    from openai._response import AsyncStreamedBinaryAPIResponse

NAME = "openai"
_system = clock.SystemClock()


class _Download:
    def __init__(self, response: AsyncStreamedBinaryAPIResponse) -> None:
        self._response = response
        self.content_type = response.headers.get("content-type", "application/octet-stream")
        length = response.headers.get("content-length")
        self.content_length = int(length) if length and length.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            # No chunk size: re-slicing the transport's pieces into fixed sizes costs a copy
            # of every byte, and storage takes pieces of any size.
            async for chunk in self._response.iter_bytes():
                yield chunk
        except (httpx2.HTTPError, openai.APIError) as exc:
            raise exceptions.ProviderUnavailable(f"download broke: {exc}") from exc


class OpenAIVideos:
    """A `Provider` for OpenAI's Videos API or any gateway serving the same shape."""

    name = NAME

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout_s: float = 20.0,
        clock: clock.Clock | None = None,
    ) -> None:
        self._clock = clock or _system
        # Every videos.* method is marked deprecated since OpenAI shut Sora down (2026-09-24);
        # gateways serve the same shape, so that one warning is expected and silenced.
        warnings.filterwarnings(
            "ignore", message="The Sora API is scheduled", category=DeprecationWarning
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=httpx2.Timeout(timeout_s, connect=min(5.0, timeout_s)),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def create(self, request: base.CreateRequest) -> RemoteVideo:
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "model": request.model,
            "seconds": str(request.seconds),
            "size": request.size,
        }
        if request.input_reference is not None:
            path = request.input_reference
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            kwargs["input_reference"] = (path.name, path.read_bytes(), mime)
        try:
            video = await self._client.videos.create(**kwargs)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc
        return _remote(video)

    async def retrieve(self, video_id: str) -> RemoteVideo:
        try:
            video = await self._client.videos.retrieve(video_id)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc
        return _remote(video)

    async def recent(self, *, since: datetime) -> AsyncIterator[RemoteVideo]:
        try:
            async for video in self._client.videos.list(order="desc", limit=100):
                remote = _remote(video)
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
        return _remote(video)

    async def delete(self, video_id: str) -> None:
        try:
            await self._client.videos.delete(video_id)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc

    @asynccontextmanager
    async def download(self, video_id: str, variant: Variant) -> AsyncIterator[_Download]:
        streaming = self._client.videos.with_streaming_response
        try:
            async with streaming.download_content(video_id, variant=variant.value) as response:
                yield _Download(response)
        except openai.APIError as exc:
            raise _translate(exc, self._clock.now()) from exc
        except httpx2.HTTPError as exc:
            raise exceptions.ProviderUnavailable(f"download broke: {exc}") from exc


def _remote(video: Any) -> RemoteVideo:
    """A provider-neutral view of an SDK `Video` (loose: gateways add words and fields)."""
    raw_status = str(getattr(video, "status", "") or "")
    error_obj = getattr(video, "error", None)
    error = None
    if error_obj is not None:
        code = str(getattr(error_obj, "code", None) or "failed")
        error = ErrorInfo(code, str(getattr(error_obj, "message", None) or code))
    seconds = getattr(video, "seconds", None)
    return RemoteVideo(
        video_id=str(video.id),
        status=base.normalise_status(raw_status),
        raw_status=raw_status,
        progress=base.progress(getattr(video, "progress", None)),
        error=base.remote_error(raw_status, error),
        created_at=base.timestamp(getattr(video, "created_at", None)),
        completed_at=base.timestamp(getattr(video, "completed_at", None)),
        expires_at=base.timestamp(getattr(video, "expires_at", None)),
        model=getattr(video, "model", None),
        prompt=getattr(video, "prompt", None),
        size=getattr(video, "size", None),
        seconds=None if seconds is None else str(seconds),
    )


def _translate(exc: openai.APIError, now: datetime) -> exceptions.ProviderError:
    """SDK exceptions to reelwatch's provider errors (the engine turns those into observations)."""
    message = _message(exc)
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return exceptions.ProviderUnavailable(f"{type(exc).__name__}: {message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 404:
            return exceptions.ProviderNotFound(message)
        if status == 429:
            headers = dict(exc.response.headers)
            wait = base.retry_after_s(headers, now)
            return exceptions.ProviderRateLimited(message, retry_after_s=wait)
        if status >= 500 or status in (408, 409):
            return exceptions.ProviderUnavailable(f"HTTP {status}: {message}")
        code = str(getattr(exc, "code", None) or f"http_{status}")
        return exceptions.ProviderRejected(message, error_code=code, http_status=status)
    return exceptions.ProviderUnavailable(f"{type(exc).__name__}: {message}")


def _message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc.message)

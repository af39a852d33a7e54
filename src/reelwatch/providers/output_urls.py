"""Downloads from the output URLs aggregators hand out (Replicate's delivery host, fal's CDN).

Those URLs are public and expire: nothing is sent with them (above all not the API key, which
belongs to the API's host, not the CDN's), redirects are followed a few times (CDNs use them),
and an answer that says the file is gone (403, 404, 410) is `ProviderNotFound`, which the
engine reads as "this copy cannot be fetched any more".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx

from reelwatch import exceptions
from reelwatch.providers import base

CHUNK = 1 << 20
MAX_REDIRECTS = 5
GONE = (403, 404, 410)


class _Download:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.content_type = response.headers.get("content-type", "application/octet-stream")
        length = response.headers.get("content-length")
        self.content_length = int(length) if length and length.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes(CHUNK):
                yield chunk
        except httpx.HTTPError as exc:
            raise exceptions.ProviderUnavailable(f"download broke: {type(exc).__name__}") from exc


class Fetcher:
    """One connection pool for a provider's output URLs."""

    def __init__(self, *, timeout_s: float) -> None:
        # A download has no total limit (a big file takes long); only silence is an error.
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
        )

    @asynccontextmanager
    async def open(self, url: str, now: datetime) -> AsyncIterator[base.Download]:
        if not url.startswith(("https://", "http://")):
            raise exceptions.ProviderRejected(
                f"output URL {url[:80]!r} is not http(s)",
                error_code="bad_output_url",
                http_status=None,
            )
        request = self._client.build_request("GET", url)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TooManyRedirects as exc:
            raise exceptions.ProviderUnavailable(f"more than {MAX_REDIRECTS} redirects") from exc
        except httpx.HTTPError as exc:
            raise exceptions.ProviderUnavailable(f"download failed: {type(exc).__name__}") from exc
        try:
            if response.status_code in GONE:
                raise exceptions.ProviderNotFound(
                    f"the output file answers {response.status_code}: it has expired or was removed"
                )
            if response.status_code == 429:
                wait = base.retry_after_s(dict(response.headers), now)
                raise exceptions.ProviderRateLimited("download rate limited", retry_after_s=wait)
            if response.status_code >= 400:
                raise exceptions.ProviderUnavailable(f"download: HTTP {response.status_code}")
            yield _Download(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

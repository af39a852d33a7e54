"""Downloads from the output URLs aggregators hand out (Replicate's delivery host, fal's CDN).

Those URLs are public and expire: nothing is sent with them (above all not the API key, which
belongs to the API's host, not the CDN's), redirects are followed a few times (CDNs use them),
and an answer that says the file is gone (403, 404, 410) is `AssetGone`.

An output URL is chosen by whoever wrote the model, not by the provider, so it is not trusted
like the API: unless it is on the API's own origin, it must be https and its host must resolve
to public addresses only, on every redirect (no cloud metadata service, no loopback or private
network). Written by hand because httpx has no such policy; the check runs before each
connection, so a host that changes its DNS answer in between (rebinding) is not covered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx

from reelwatch import exceptions
from reelwatch.providers import base

CHUNK = 1 << 20
MAX_REDIRECTS = 5
GONE = (403, 404, 410)


class ResponseDownload:
    """A download read from an httpx response (streamed, 1 MiB pieces)."""

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


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the default port made explicit)."""
    parsed = httpx.URL(url)
    return (
        parsed.scheme,
        parsed.host.lower(),
        parsed.port or {"http": 80, "https": 443}.get(parsed.scheme),
    )


def _refused(url: str, why: str) -> exceptions.ProviderRejected:
    return exceptions.ProviderRejected(
        f"output URL {url[:80]!r} refused: {why}", error_code="bad_output_url", http_status=None
    )


class Fetcher:
    """One connection pool for a provider's output URLs; `trusted` is the API's base URL."""

    def __init__(self, *, timeout_s: float, trusted: str) -> None:
        # A download has no total limit (a big file takes long); only silence is an error.
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._trusted = origin(trusted)

    async def check(self, url: str) -> None:
        """Raise ProviderRejected unless `url` may be fetched (see the module docstring)."""
        try:
            scheme, host, port = origin(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise _refused(url, "not a URL") from exc
        if (scheme, host, port) == self._trusted:
            return
        if scheme != "https":
            raise _refused(url, "only https is fetched off the API's own host")
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise exceptions.ProviderUnavailable(f"output URL host {host!r}: {exc}") from exc
        for *_, address in found:
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
            if not ip.is_global:
                raise _refused(url, f"{host} resolves to a non-public address ({ip})")

    @asynccontextmanager
    async def open(self, url: str, now: datetime) -> AsyncIterator[base.Download]:
        response = await self._follow(url)
        try:
            if response.status_code in GONE:
                raise exceptions.AssetGone(
                    f"the output file answers {response.status_code}: it has expired or was removed"
                )
            if response.status_code == 429:
                wait = base.retry_after_s(dict(response.headers), now)
                raise exceptions.ProviderRateLimited("download rate limited", retry_after_s=wait)
            if response.status_code >= 400:
                raise exceptions.ProviderUnavailable(f"download: HTTP {response.status_code}")
            yield ResponseDownload(response)
        finally:
            await response.aclose()

    async def _follow(self, url: str) -> httpx.Response:
        """GET `url`, following redirects by hand so each hop is checked before it is sent."""
        for _ in range(MAX_REDIRECTS + 1):
            await self.check(url)
            try:
                response = await self._client.send(
                    self._client.build_request("GET", url), stream=True
                )
            except httpx.HTTPError as exc:
                raise exceptions.ProviderUnavailable(
                    f"download failed: {type(exc).__name__}"
                ) from exc
            if not response.is_redirect or response.next_request is None:
                return response
            url = str(response.next_request.url)
            await response.aclose()
        raise exceptions.ProviderUnavailable(f"more than {MAX_REDIRECTS} redirects")

    async def aclose(self) -> None:
        await self._client.aclose()

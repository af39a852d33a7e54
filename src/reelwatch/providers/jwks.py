"""A provider's published webhook keys (a JWKS document), fetched and cached the careful way.

fal and the Gemini API sign webhooks with keys they publish at a URL. The cache fetches them
on first use, keeps them a day, and fetches again when no cached key verifies a delivery (the
keys may have rotated), at most every 30 s, under a lock: whatever arrives (forged deliveries
too), that is one fetch per 30 s. Written here because the libraries that fetch a JWKS
(PyJWT's `PyJWKClient`) fetch again for every unknown `kid`, blocking, with no such floor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from reelwatch import exceptions

TTL_S = 24 * 3600.0  # keep the keys up to a day
REFRESH_MIN_S = 30.0  # an unverifiable delivery refreshes the keys at most this often

K = TypeVar("K")


class KeyCache(Generic[K]):
    """The keys of one JWKS URL, read by `parse` (which skips entries it cannot use)."""

    def __init__(
        self, url: str, *, timeout_s: float, parse: Callable[[object], list[K]], owner: str
    ) -> None:
        # httpx is imported where it is used: reading a provider's configuration (every read
        # command does) needs no HTTP client.
        import httpx

        self._url = url
        self._parse = parse
        self._owner = owner
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._keys: list[K] = []
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    async def keys(self, now: float) -> list[K]:
        """The cached keys, fetched first when none were fetched in the last day (`now`: the
        caller's clock, in seconds)."""
        await self._refresh(TTL_S, now)
        return self._keys

    async def refreshed(self, now: float) -> list[K] | None:
        """The keys fetched again (None when a fetch was tried in the last 30 s or failed, and
        the cached keys stand); ProviderUnavailable when there are no keys at all yet."""
        if await self._refresh(REFRESH_MIN_S, now):
            return self._keys
        if not self._keys:
            raise exceptions.ProviderUnavailable(f"{self._owner}'s keys could not be fetched yet")
        return None

    async def _refresh(self, older_than_s: float, now: float) -> bool:
        """Fetch the keys unless an attempt was made in the last `older_than_s` (checked under
        the lock, so concurrent deliveries share one fetch); whether keys were read."""
        import httpx  # see __init__

        async with self._lock:
            if self._tried_at is not None and abs(now - self._tried_at) < older_than_s:
                return False
            self._tried_at = now
            try:
                response = await self._client.get(self._url)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if not self._keys:
                    raise exceptions.ProviderUnavailable(f"{self._owner}'s keys: {exc}") from exc
                return False  # keep the keys we have
            self._keys = self._parse(document)
            return True

    async def aclose(self) -> None:
        await self._client.aclose()

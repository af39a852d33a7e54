"""Fetch a finished video's assets into storage, streamed, checksummed, resumable per asset."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from reelwatch import exceptions, storage
from reelwatch.models import Asset, Generation, Variant
from reelwatch.providers.base import Provider

EXTENSIONS = {"video/mp4": ".mp4", "image/webp": ".webp", "image/jpeg": ".jpg", "image/png": ".png"}
DEFAULT_TYPES = {Variant.VIDEO: "video/mp4", Variant.THUMBNAIL: "image/webp"}

Keepalive = Callable[[], Awaitable[None]]


class DownloadError(exceptions.ReelwatchError):
    """A download failed; the assets stored before it are kept."""

    def __init__(self, message: str, stored: Mapping[Variant, Asset]) -> None:
        super().__init__(message)
        self.stored = dict(stored)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    assets: dict[Variant, Asset]
    skipped: list[Variant]  # optional variants the provider does not serve (404)


async def fetch(
    provider: Provider,
    store: storage.LocalStorage,
    generation: Generation,
    variants: Sequence[Variant],
    *,
    keepalive: Keepalive | None = None,
    keepalive_every_s: float = 10.0,
) -> Result:
    """Download every wanted variant not already stored; raise DownloadError on a failure.

    The video is required; a thumbnail or spritesheet the provider answers 404 for is skipped.
    """
    assert generation.video_id is not None
    stored: dict[Variant, Asset] = {}
    skipped: list[Variant] = []
    for variant in variants:
        have = generation.assets.get(variant)
        if have is not None and store.exists(have.key):
            continue
        try:
            stored[variant] = await _one(
                provider, store, generation, variant, keepalive, keepalive_every_s
            )
        except exceptions.ProviderNotFound as exc:
            if variant is Variant.VIDEO:
                raise DownloadError(f"video: {exc}", stored) from exc
            skipped.append(variant)
        except (exceptions.ProviderError, storage.Truncated, OSError) as exc:
            raise DownloadError(f"{variant.value}: {exc}", stored) from exc
    return Result(stored, skipped)


async def _one(
    provider: Provider,
    store: storage.LocalStorage,
    generation: Generation,
    variant: Variant,
    keepalive: Keepalive | None,
    keepalive_every_s: float,
) -> Asset:
    assert generation.video_id is not None
    async with provider.download(generation.video_id, variant) as download:
        content_type = download.content_type.split(";")[0].strip() or DEFAULT_TYPES.get(
            variant, "application/octet-stream"
        )
        key = f"{generation.id}/{variant.value}{EXTENSIONS.get(content_type, '.bin')}"
        chunks = _with_keepalive(download.chunks(), keepalive, keepalive_every_s)
        result = await store.put_stream(key, chunks, expected_bytes=download.content_length)
    return Asset(variant, result.key, result.bytes, result.sha256, content_type)


async def _with_keepalive(
    chunks: AsyncIterator[bytes], keepalive: Keepalive | None, every_s: float
) -> AsyncIterator[bytes]:
    """Pass chunks through, renewing the lease now and then so a long download keeps it."""
    last = time.monotonic()
    async for chunk in chunks:
        yield chunk
        if keepalive is not None and time.monotonic() - last >= every_s:
            await keepalive()
            last = time.monotonic()

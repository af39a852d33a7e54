"""Fetch a finished video's assets into storage, streamed, checksummed, resumable per asset."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from reelwatch import exceptions, storage
from reelwatch.models import Asset, Generation, Variant
from reelwatch.providers.base import Provider, Ref

EXTENSIONS = {"video/mp4": ".mp4", "image/webp": ".webp", "image/jpeg": ".jpg", "image/png": ".png"}
DEFAULT_TYPES = {Variant.VIDEO: "video/mp4", Variant.THUMBNAIL: "image/webp"}

# Told now and then how far a download has got: (variant, bytes so far, announced total). The
# engine records it (the dashboard shows "Downloading 12 of 30 MB") and renews its lease with it.
Progress = Callable[[Variant, int, int | None], Awaitable[None]]


class DownloadError(exceptions.ReelwatchError):
    """A download failed; the assets stored before it are kept.

    `code` is `disk_full` (no space left for the file), `rate_limited` (a 429, with its
    `retry_after_s`), `asset_expired` (the provider answers that the video is gone) or
    `download_failed` (anything else: truncated, 5xx, connection).
    """

    def __init__(
        self,
        message: str,
        stored: Mapping[Variant, Asset],
        *,
        code: str = "download_failed",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.stored = dict(stored)
        self.code = code
        self.retry_after_s = retry_after_s


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    assets: dict[Variant, Asset]
    skipped: list[Variant]  # optional variants the provider does not serve (404)


async def fetch(
    provider: Provider,
    store: storage.Storage,
    generation: Generation,
    variants: Sequence[Variant],
    *,
    progress: Progress | None = None,
    progress_every_s: float = 1.0,
) -> Result:
    """Download every wanted variant not already stored; raise DownloadError on a failure.

    The video is required; a thumbnail or spritesheet the provider answers 404 for is skipped.
    """
    assert generation.video_id is not None
    wanted = [
        v
        for v in variants
        if (have := generation.assets.get(v)) is None or not await store.exists(have.key)
    ]

    async def attempt(variant: Variant) -> Asset | BaseException:
        try:
            return await _one(provider, store, generation, variant, progress, progress_every_s)
        except (exceptions.ProviderError, storage.Truncated, OSError) as exc:
            return exc

    # The assets are fetched side by side: each is a separate request to the provider. A task
    # group, so that anything else (a lost lease) stops the siblings too.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(attempt(v), name=f"download-{v.value}") for v in wanted]
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None  # the caller handles one error, as raised
    outcomes = [task.result() for task in tasks]
    stored: dict[Variant, Asset] = {}
    skipped: list[Variant] = []
    failure: tuple[Variant, BaseException] | None = None
    wait: float | None = None
    for variant, outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, Asset):
            stored[variant] = outcome
            continue
        if isinstance(outcome, exceptions.ProviderRateLimited):
            wait = max(wait or 0.0, outcome.retry_after_s or 0.0)
        if isinstance(outcome, exceptions.ProviderNotFound) and variant is not Variant.VIDEO:
            skipped.append(variant)
        elif failure is None or variant is Variant.VIDEO:
            failure = (variant, outcome)
    if failure is not None:
        variant, exc = failure
        raise DownloadError(
            f"{variant.value}: {exc}",
            stored,
            code=_code(exc, rate_limited=wait is not None),
            retry_after_s=wait,
        ) from exc
    return Result(stored, skipped)


def _code(exc: BaseException, *, rate_limited: bool) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if isinstance(exc, exceptions.AssetGone):
        return "asset_expired"  # the provider says the finished file is gone: no retry helps
    return "rate_limited" if rate_limited else "download_failed"


async def _one(
    provider: Provider,
    store: storage.Storage,
    generation: Generation,
    variant: Variant,
    progress: Progress | None,
    progress_every_s: float,
) -> Asset:
    assert generation.video_id is not None
    async with provider.download(Ref(generation.video_id, generation.remote), variant) as download:
        content_type = download.content_type.split(";")[0].strip() or DEFAULT_TYPES.get(
            variant, "application/octet-stream"
        )
        key = f"{generation.id}/{variant.value}{EXTENSIONS.get(content_type, '.bin')}"
        chunks = _reporting(
            download.chunks(), variant, download.content_length, progress, progress_every_s
        )
        result = await store.put_stream(
            key, chunks, expected_bytes=download.content_length, content_type=content_type
        )
    return Asset(variant, result.key, result.bytes, result.sha256, content_type)


async def _reporting(
    chunks: AsyncIterator[bytes],
    variant: Variant,
    total: int | None,
    progress: Progress | None,
    every_s: float,
) -> AsyncIterator[bytes]:
    """Pass chunks through, reporting progress at most every `every_s` seconds."""
    last = time.monotonic()
    done = 0
    async for chunk in chunks:
        yield chunk
        done += len(chunk)
        if progress is not None and time.monotonic() - last >= every_s:
            await progress(variant, done, total)
            last = time.monotonic()

"""Assets in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, GCS interoperability),
through obstore.

Why obstore: it is the Rust `object_store` crate (maintained by the Apache Arrow project)
with async Python bindings: one dependency with no botocore, streamed multipart uploads fed
from an async iterator, ranged reads, HEAD and presigned URLs, and the usual AWS_* variables
read by default. aiobotocore does the same through botocore's much heavier import and a
hand-written multipart loop. Measured against each other (`python -m bench.storage`,
docs/benchmarks.md "storage"): obstore uploads with half the CPU and 40 % of the memory and
answers a HEAD with a quarter of the CPU; aiobotocore reads streams with half the CPU.

An upload is atomic: a body of at least one part goes up as a multipart upload, completed only
after the last byte was hashed and counted; a smaller one is a single PUT sent whole. Either
way nothing is at the key before the body is complete, and a body that ends short raises
before completion. An aborted multipart upload can leave parts behind, invisible but billed:
set the bucket's lifecycle rule for incomplete multipart uploads (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from reelwatch import exceptions
from reelwatch.storage import (
    Redirect,
    Served,
    ServeMode,
    StorageUnavailable,
    Stored,
    Streamed,
    Truncated,
    check_key,
)

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

PART_BYTES = 8 * 1024 * 1024  # S3's parts are at least 5 MiB (but the last)
READ_CHUNK = 256 * 1024
CLOSE_GRACE_S = 0.05


class S3Storage:
    """Objects under `prefix` in `bucket`; endpoint, region and credentials come from the
    environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        serve: ServeMode = "redirect",
        link_seconds: float = 300.0,
        config: S3Config | None = None,
        retry: RetryConfig | None = None,
    ) -> None:
        endpoint = (config or {}).get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or ""
        client: ClientConfig = {"allow_http": endpoint.startswith("http://")}
        self._store = S3Store(
            bucket,
            prefix=prefix or None,
            config=config or None,
            client_options=client,
            retry_config=retry,  # None: obstore's (5xx and broken connections, with backoff)
        )
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.serve_mode = serve
        self.link_seconds = link_seconds

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_bytes: int | None = None,
        content_type: str | None = None,
    ) -> Stored:
        digest = hashlib.sha256()
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                yield chunk
            if expected_bytes is not None and size != expected_bytes:
                # Raised inside the upload, before it completes: nothing is published.
                raise Truncated(f"got {size} of {expected_bytes} bytes")

        attributes = {"Content-Type": content_type} if content_type else None
        try:
            await obstore.put_async(
                self._store,
                check_key(key),
                counted(),
                attributes=attributes,
                chunk_size=PART_BYTES,
                max_concurrency=4,
            )
        except BaseError as exc:
            raise StorageUnavailable(f"{self.url}: {exc}") from exc
        return Stored(key, size, digest.hexdigest())

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self._store, check_key(key))
        except (NotFoundError, FileNotFoundError, exceptions.NotFound):
            return False
        except BaseError as exc:
            raise StorageUnavailable(f"{self.url}: {exc}") from exc
        return True

    async def read(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self._store, check_key(key))
            return bytes(await result.bytes_async())
        except (NotFoundError, FileNotFoundError):
            raise exceptions.NotFound(f"no stored asset {key!r}") from None
        except BaseError as exc:
            raise StorageUnavailable(f"{self.url}: {exc}") from exc

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, check_key(key))
        except (NotFoundError, FileNotFoundError):
            return
        except BaseError as exc:
            raise StorageUnavailable(f"{self.url}: {exc}") from exc

    def locate(self, key: str) -> str:
        return f"{self.url}/{check_key(key)}"

    async def serve(self, key: str, *, filename: str) -> Served:
        try:
            meta = await obstore.head_async(self._store, check_key(key))
            if self.serve_mode == "redirect":
                link = timedelta(seconds=self.link_seconds)
                return Redirect(await obstore.sign_async(self._store, "GET", key, link))
        except (NotFoundError, FileNotFoundError):
            raise exceptions.NotFound(f"no stored asset {key!r}") from None
        except BaseError as exc:
            raise StorageUnavailable(f"{self.url}: {exc}") from exc

        async def read(start: int, end: int) -> AsyncIterator[bytes]:
            if end <= start:
                return
            options: Any = {"range": (start, end)}
            result = await obstore.get_async(self._store, key, options=options)
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)

        return Streamed(int(meta["size"]), read)

    async def sweep(self, *, older_than_s: float, now_s: float) -> int:
        # Nothing half-written is ever visible in a bucket; leftover parts of aborted uploads
        # are the bucket lifecycle rule's (obstore cannot list multipart uploads).
        return 0

    async def close(self) -> None:
        # obstore's runtime threads hand each result back to the event loop a moment after the
        # await returns; a process that exits in that moment aborts (SIGABRT, exit 134: seen on
        # 3 of 20 runs of a script doing HEADs, and on 2 of 3 benchmark processes). Closing
        # gives them that moment, so a command or worker that stops exits cleanly.
        await asyncio.sleep(CLOSE_GRACE_S)

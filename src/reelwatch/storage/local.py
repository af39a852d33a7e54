"""Assets as files under one root folder.

A file is streamed to a temporary name in its final folder, hashed while it is written, fsynced
and renamed into place, so a reader never sees half a video and a crash leaves no torn file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterable
from pathlib import Path

from reelwatch import exceptions
from reelwatch.storage import LocalFile, Served, Stored, Truncated, check_key


class LocalStorage:
    """Assets as files under one root folder; keys are relative POSIX paths."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        """The file of a key, refusing anything that would leave the root (traversal, links)."""
        candidate = (self.root / check_key(key)).resolve()
        if not candidate.is_relative_to(self.root) or candidate == self.root:
            raise exceptions.NotFound(f"no stored asset {key!r}")
        return candidate

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_bytes: int | None = None,
        content_type: str | None = None,
    ) -> Stored:
        """Write a stream to `key` atomically; raise Truncated if it is shorter than announced.
        (The content type is the caller's to record; a file has none.)"""
        final = self.path(key)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with temp.open("wb") as handle:
                async for chunk in chunks:
                    # Chunks are small (256 KiB) and land in the page cache, so the write does
                    # not stall the loop; the expensive fsync runs in a thread below.
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                if expected_bytes is not None and size != expected_bytes:
                    raise Truncated(f"got {size} of {expected_bytes} bytes")
                handle.flush()
                await asyncio.to_thread(os.fsync, handle.fileno())
            await asyncio.to_thread(os.replace, temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Stored(key, size, digest.hexdigest())

    async def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except exceptions.NotFound:
            return False

    async def read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise exceptions.NotFound(f"no stored asset {key!r}") from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    def locate(self, key: str) -> str:
        return str(self.path(key))

    async def serve(self, key: str, *, filename: str) -> Served:
        path = self.path(key)
        if not path.is_file():
            raise exceptions.NotFound(f"no stored asset {key!r}")
        return LocalFile(path)

    async def sweep(self, *, older_than_s: float, now_s: float) -> int:
        return await asyncio.to_thread(self.sweep_temp, older_than_s=older_than_s, now_s=now_s)

    def sweep_temp(self, *, older_than_s: float, now_s: float) -> int:
        """Remove temporary files (`.NAME.RANDOM.part`) not written to for `older_than_s`.

        A download in progress writes its temp file continuously, so one left untouched that
        long belongs to a process that died mid-download (kill -9, power loss). Returns how
        many were removed. Blocking.
        """
        removed = 0
        if not self.root.is_dir():
            return 0
        for temp in self.root.rglob(".*.part"):
            try:
                if now_s - temp.lstat().st_mtime >= older_than_s and not temp.is_symlink():
                    temp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished or removed by its owner meanwhile
        return removed

    async def close(self) -> None:
        return None

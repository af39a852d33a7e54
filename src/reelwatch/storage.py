"""Where assets live: local files (S3-compatible storage can follow behind the same verbs).

A file is streamed to a temporary name in its final folder, hashed while it is written, fsynced
and renamed into place, so a reader never sees half a video and a crash leaves no torn file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import secrets
from collections.abc import AsyncIterable
from pathlib import Path

from reelwatch import exceptions


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    key: str
    bytes: int
    sha256: str


class Truncated(exceptions.ReelwatchError):
    """The body ended before its announced length."""


class LocalStorage:
    """Assets as files under one root folder; keys are relative POSIX paths."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file of a key, refusing anything that would leave the root (traversal, links)."""
        candidate = (self.root / key).resolve()
        if not candidate.is_relative_to(self.root) or candidate == self.root:
            raise exceptions.NotFound(f"no stored asset {key!r}")
        return candidate

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, expected_bytes: int | None = None
    ) -> Stored:
        """Write a stream to `key` atomically; raise Truncated if it is shorter than announced."""
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

    def sweep_temp(self, *, older_than_s: float, now_s: float) -> int:
        """Remove temporary files (`.NAME.RANDOM.part`) not written to for `older_than_s`.

        A download in progress writes its temp file continuously, so one left untouched that
        long belongs to a process that died mid-download (kill -9, power loss). Returns how
        many were removed. Blocking: call it in a thread.
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

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except exceptions.NotFound:
            return False

"""Where assets live, behind one interface: `from_url("file:///path")` or `from_url("s3://bucket/prefix")`.

Every backend streams a body in with its sha256 computed on the way, keeps nothing whole in
memory, and publishes atomically: nothing is visible at the final key until the whole body is
there (a temp file renamed into place; an S3 multipart upload completed). Nothing outside this
package knows which backend is in use: callers put, check, read and delete by key, ask where a
key lives in words (`locate`), and ask how to hand it to a browser (`serve`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlparse

from reelwatch import exceptions

ServeMode = Literal["redirect", "proxy"]


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    key: str
    bytes: int
    sha256: str


class Truncated(exceptions.ReelwatchError):
    """The body ended before its announced length."""


class StorageUnavailable(OSError):
    """The storage service failed a request (a bucket's 5xx, refused credentials, a broken
    connection). An OSError, as a local disk's failures are: callers handle both alike."""


@dataclasses.dataclass(frozen=True, slots=True)
class LocalFile:
    """Serve this file (Range requests are the web server's)."""

    path: Path


@dataclasses.dataclass(frozen=True, slots=True)
class Redirect:
    """Send the browser here: a short-lived presigned URL."""

    url: str


@dataclasses.dataclass(frozen=True, slots=True)
class Streamed:
    """Stream the object through this server: `read(start, end)` yields bytes start..end-1."""

    size: int
    read: Callable[[int, int], AsyncIterator[bytes]]


Served = LocalFile | Redirect | Streamed


class Storage(Protocol):
    """What every backend does; keys are relative POSIX paths (`gen_x/video.mp4`)."""

    url: str  # where it is, for people and logs (no credentials)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_bytes: int | None = None,
        content_type: str | None = None,
    ) -> Stored:
        """Store a stream at `key` atomically; Truncated if shorter than announced."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether a whole object is at `key` (without reading it)."""
        ...

    async def read(self, key: str) -> bytes:
        """A small object whole (a reference image); NotFound if absent."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key`; nothing if it is not there."""
        ...

    def locate(self, key: str) -> str:
        """Where `key` is, in words people can use (a path, or an s3:// URL)."""
        ...

    async def serve(self, key: str, *, filename: str) -> Served:
        """How to hand `key` to a browser; NotFound if it is not stored."""
        ...

    async def sweep(self, *, older_than_s: float, now_s: float) -> int:
        """Remove what writers that died left behind; how many were removed."""
        ...

    async def close(self) -> None: ...


def from_url(url: str, *, serve: ServeMode = "redirect", link_seconds: float = 300.0) -> Storage:
    """The storage a URL names: `file:///abs/path`, or `s3://bucket[/prefix]` for any
    S3-compatible service (endpoint, region and credentials from the usual AWS_* variables:
    AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...). `serve` says
    how S3 content reaches a browser: a presigned URL valid `link_seconds` (`redirect`), or
    streamed through reelwatch with Range support (`proxy`)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise exceptions.ConfigError(f"storage URL {url!r}: file URLs name a local path")
        from reelwatch.storage.local import LocalStorage

        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise exceptions.ConfigError(f"storage URL {url!r}: s3://bucket[/prefix]")
        # Imported here: obstore is loaded only where S3 is configured.
        from reelwatch.storage.s3 import S3Storage

        return S3Storage(
            parsed.netloc, parsed.path.strip("/"), serve=serve, link_seconds=link_seconds
        )
    raise exceptions.ConfigError(f"storage URL {url!r}: use file:///path or s3://bucket/prefix")


def check_key(key: str) -> str:
    """A key as every backend takes it: relative, no `..`, no empty or dot segments."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise exceptions.NotFound(f"no stored asset {key!r}")
    return key

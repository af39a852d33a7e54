"""The storage contract, run against both backends: local files, and a real S3-compatible
server (moto's server mode over HTTP) through obstore. Streamed writes with the sha256 taken on
the way, atomic publication, existence without reading, ranged reads, links, deletes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from reelwatch import exceptions, storage
from reelwatch.storage.local import LocalStorage

MIB = 1024 * 1024


async def chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise ConnectionError("peer went away")
        yield part


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> storage.Storage:
    if request.param == "file":
        return storage.from_url((tmp_path / "videos").as_uri())
    url: str = request.getfixturevalue("s3_url")
    return storage.from_url(url, serve="proxy")


async def whole(store: storage.Storage, key: str) -> bytes:
    return await store.read(key)


async def test_put_stream_stores_atomically_with_sha256(backend: storage.Storage) -> None:
    """The object appears whole, with the byte count and sha256 of what was streamed."""
    stored = await backend.put_stream("g/video.mp4", chunks(b"abc", b"def"), expected_bytes=6)
    assert stored.bytes == 6 and stored.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert await whole(backend, "g/video.mp4") == b"abcdef"
    assert await backend.exists("g/video.mp4") and not await backend.exists("g/other.mp4")


async def test_a_body_of_many_parts_is_streamed_and_checksummed(backend: storage.Storage) -> None:
    """Larger than one multipart part (8 MiB): every byte arrives, in order."""
    parts = [bytes([i]) * MIB for i in range(19)]
    stored = await backend.put_stream(
        "g/big.mp4", chunks(*parts), expected_bytes=19 * MIB, content_type="video/mp4"
    )
    data = await whole(backend, "g/big.mp4")
    assert stored.bytes == len(data) == 19 * MIB
    assert (
        stored.sha256
        == hashlib.sha256(data).hexdigest()
        == hashlib.sha256(b"".join(parts)).hexdigest()
    )


@pytest.mark.parametrize("parts", [1, 10], ids=["one-put", "multipart"])
async def test_a_broken_stream_publishes_nothing_and_keeps_the_old_one(
    backend: storage.Storage, parts: int
) -> None:
    """A failure mid-stream (a single PUT's worth or past the first part) leaves the object
    that was there untouched."""
    await backend.put_stream("g/video.mp4", chunks(b"old"))
    body = [b"n" * MIB] * parts + [b"tail"]
    with pytest.raises(ConnectionError):
        await backend.put_stream("g/video.mp4", chunks(*body, fail_after=parts))
    assert await whole(backend, "g/video.mp4") == b"old"
    with pytest.raises(ConnectionError):
        await backend.put_stream("g/new.mp4", chunks(*body, fail_after=parts))
    assert not await backend.exists("g/new.mp4")


@pytest.mark.parametrize("size", [3, 9 * MIB], ids=["small", "multipart"])
async def test_a_short_body_is_truncated_and_not_kept(backend: storage.Storage, size: int) -> None:
    """Fewer bytes than announced raises Truncated and publishes nothing."""
    with pytest.raises(storage.Truncated):
        await backend.put_stream("g/video.mp4", chunks(b"x" * size), expected_bytes=size + 1)
    assert not await backend.exists("g/video.mp4")


async def test_serve_reads_any_range_or_links_to_the_object(
    backend: storage.Storage, tmp_path: Path
) -> None:
    """What `serve` hands out gives back the stored bytes: a file, or a ranged stream."""
    body = bytes(range(256)) * 4096  # 1 MiB
    await backend.put_stream("g/video.mp4", chunks(body), content_type="video/mp4")
    served = await backend.serve("g/video.mp4", filename="video.mp4")
    match served:
        case storage.LocalFile(path=path):
            assert path.read_bytes() == body
        case storage.Streamed(size=size, read=read):
            assert size == len(body)
            assert b"".join([c async for c in read(10, 70_000)]) == body[10:70_000]
            assert b"".join([c async for c in read(0, size)]) == body
        case _:
            pytest.fail(f"unexpected {served!r}")
    with pytest.raises(exceptions.NotFound):
        await backend.serve("g/missing.mp4", filename="missing.mp4")


async def test_a_presigned_link_serves_the_object_with_its_type(s3_url: str) -> None:
    """`redirect` (the S3 default): a short-lived URL the browser fetches from the bucket."""
    store = storage.from_url(s3_url, link_seconds=60)
    await store.put_stream("g/thumb.webp", chunks(b"RIFF....WEBP"), content_type="image/webp")
    served = await store.serve("g/thumb.webp", filename="thumb.webp")
    assert isinstance(served, storage.Redirect)
    async with httpx.AsyncClient() as client:
        answer = await client.get(served.url)
    assert answer.status_code == 200 and answer.content == b"RIFF....WEBP"
    assert answer.headers["content-type"] == "image/webp"
    assert "X-Amz-Expires=60" in served.url


async def test_delete_removes_and_tolerates_absence(backend: storage.Storage) -> None:
    await backend.put_stream("g/video.mp4", chunks(b"abc"))
    await backend.delete("g/video.mp4")
    assert not await backend.exists("g/video.mp4")
    await backend.delete("g/video.mp4")
    with pytest.raises(exceptions.NotFound):
        await backend.read("g/video.mp4")


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "", ".", "a//b"])
async def test_keys_cannot_leave_the_root(backend: storage.Storage, key: str) -> None:
    """Traversal attempts are NotFound on every backend, for every verb."""
    with pytest.raises(exceptions.NotFound):
        await backend.read(key)
    with pytest.raises(exceptions.NotFound):
        await backend.put_stream(key, chunks(b"x"))
    assert not await backend.exists(key)


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    """A symlink inside the root that points outside it is NotFound."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(exceptions.NotFound):
        LocalStorage(root).path("link")


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "s3://", "file://otherhost/x", "videos", "gs://bucket"]
)
def test_an_unknown_storage_url_is_a_config_error(url: str) -> None:
    with pytest.raises(exceptions.ConfigError):
        storage.from_url(url)


def test_where_a_key_is_reads_as_a_path_or_an_s3_url(tmp_path: Path, s3_url: str) -> None:
    assert storage.from_url(tmp_path.as_uri()).locate("g/v.mp4") == str(tmp_path / "g/v.mp4")
    assert storage.from_url(s3_url).locate("g/v.mp4") == f"{s3_url}/g/v.mp4"


async def test_an_unreachable_bucket_is_storage_unavailable_an_oserror() -> None:
    """Every verb against a bucket nobody answers for raises StorageUnavailable, an OSError
    (as a failing disk's errors are), naming the bucket; never a library's own exception."""
    from reelwatch.storage.s3 import S3Storage

    store = S3Storage(
        "nowhere",
        "p",
        config={
            "endpoint": "http://127.0.0.1:9",  # discard: nothing listens
            "access_key_id": "k",
            "secret_access_key": "s",
            "region": "us-east-1",
        },
        retry={"max_retries": 0},
    )
    verbs = {
        "put_stream": lambda: store.put_stream("g/v.mp4", chunks(b"abc")),
        "exists": lambda: store.exists("g/v.mp4"),
        "read": lambda: store.read("g/v.mp4"),
        "delete": lambda: store.delete("g/v.mp4"),
        "serve": lambda: store.serve("g/v.mp4", filename="v.mp4"),
    }
    for name, call in verbs.items():
        with pytest.raises(storage.StorageUnavailable, match="s3://nowhere/p") as caught:
            await call()
        assert isinstance(caught.value, OSError), name


EXIT_SCRIPT = """
import asyncio, sys
from reelwatch import storage

async def main() -> None:
    store = storage.from_url(sys.argv[1])
    for _ in range(20):
        await store.exists("nothing/here.mp4")
    await store.close()

asyncio.run(main())
"""


def test_a_process_that_used_the_bucket_exits_cleanly(s3_url: str) -> None:
    """obstore hands results back from its own threads: a process exiting right after its
    last call could abort (exit 134, about one run in seven before `close` waited for them)."""
    import subprocess
    import sys

    codes = [
        subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, s3_url], capture_output=True, timeout=60
        ).returncode
        for _ in range(15)
    ]
    assert codes == [0] * 15

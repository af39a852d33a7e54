"""Local storage: atomic streamed writes with checksums; nothing outside the root is served."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reelwatch import exceptions, storage


async def chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise ConnectionError("peer went away")
        yield part


async def test_put_stream_writes_atomically_with_sha256(tmp_path: Path) -> None:
    """The file appears whole, with the byte count and sha256 of what was streamed."""
    store = storage.LocalStorage(tmp_path)
    stored = await store.put_stream("g/video.mp4", chunks(b"abc", b"def"), expected_bytes=6)
    assert stored.bytes == 6 and stored.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert (tmp_path / "g" / "video.mp4").read_bytes() == b"abcdef"
    assert list(tmp_path.rglob("*.part")) == []


async def test_a_broken_stream_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    """A failure mid-stream leaves the previous file untouched and no temporary file."""
    store = storage.LocalStorage(tmp_path)
    await store.put_stream("g/video.mp4", chunks(b"old"))
    with pytest.raises(ConnectionError):
        await store.put_stream("g/video.mp4", chunks(b"new", b"er", fail_after=1))
    assert (tmp_path / "g" / "video.mp4").read_bytes() == b"old"
    assert list(tmp_path.rglob("*.part")) == []


async def test_a_short_body_is_truncated_and_not_kept(tmp_path: Path) -> None:
    """Fewer bytes than announced raises Truncated and stores nothing."""
    store = storage.LocalStorage(tmp_path)
    with pytest.raises(storage.Truncated):
        await store.put_stream("g/video.mp4", chunks(b"abc"), expected_bytes=10)
    assert not (tmp_path / "g" / "video.mp4").exists()
    assert list(tmp_path.rglob("*.part")) == []


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "", "."])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    """Traversal attempts are NotFound."""
    store = storage.LocalStorage(tmp_path / "root")
    with pytest.raises(exceptions.NotFound):
        store.path(key)


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    """A symlink inside the root that points outside it is NotFound."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(exceptions.NotFound):
        storage.LocalStorage(root).path("link")

"""Downloadable assets of a simulated video, made up on the fly and never held whole.

Every byte is a function of (video id, variant, position): the body is sha256(id:variant)
repeated, each 64 KiB chunk stamped with its index (so a client that reorders or repeats chunks
gets a different checksum), and the first bytes are a plausible MP4/WebP/JPEG header. A client
can therefore check a download against `expected_sha256` without the simulator storing anything.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Iterator
from enum import StrEnum
from pathlib import Path


class Variant(StrEnum):
    """The `variant` query values of the content endpoint."""

    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"


CONTENT_TYPES = {
    Variant.VIDEO: "video/mp4",
    Variant.THUMBNAIL: "image/webp",
    Variant.SPRITESHEET: "image/jpeg",
}
THUMBNAIL_BYTES = 6 * 1024
SPRITESHEET_BYTES = 24 * 1024
CHUNK_BYTES = 64 * 1024
_DIGEST_BYTES = 32
_STAMP_BYTES = 8

_MP4_HEADER = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
_JPEG_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def size_of(variant: Variant, video_bytes: int) -> int:
    """Byte length of an asset; only the video's size depends on the job."""
    if variant is Variant.VIDEO:
        return video_bytes
    if variant is Variant.THUMBNAIL:
        return THUMBNAIL_BYTES
    return SPRITESHEET_BYTES


def _header(variant: Variant, size: int) -> bytes:
    if variant is Variant.VIDEO:
        return _MP4_HEADER
    if variant is Variant.THUMBNAIL:
        riff_size = max(size - 8, 0).to_bytes(4, "little")
        return b"RIFF" + riff_size + b"WEBPVP8 "
    return _JPEG_HEADER


def chunks(video_id: str, variant: Variant, size: int) -> Iterator[bytes]:
    """The asset's bytes in order, `CHUNK_BYTES` at a time (the last chunk may be shorter)."""
    digest = hashlib.sha256(f"{video_id}:{variant}".encode()).digest()
    pattern = digest * (CHUNK_BYTES // _DIGEST_BYTES)
    header = _header(variant, size)
    for index, start in enumerate(range(0, size, CHUNK_BYTES)):
        length = min(CHUNK_BYTES, size - start)
        chunk = index.to_bytes(_STAMP_BYTES, "big") + pattern[_STAMP_BYTES:length]
        if index == 0:
            chunk = header + chunk[len(header) :]
        yield chunk[:length]


async def stream(video_id: str, variant: Variant, size: int) -> AsyncIterator[bytes]:
    """`chunks` as an async iterator, for a streaming response that needs no thread."""
    for chunk in chunks(video_id, variant, size):
        yield chunk


def expected_sha256(video_id: str, variant: str, size: int) -> str:
    """Hex sha256 of the asset a client should have downloaded."""
    digest = hashlib.sha256()
    for chunk in chunks(video_id, Variant(variant), size):
        digest.update(chunk)
    return digest.hexdigest()


# Real, tiny media files (2 s of ffmpeg's testsrc2 as H.264 MP4, a WebP frame, a JPEG sprite
# sheet) for `SimConfig(sample_media=True)`: the demo and the browser tests play them.
MEDIA = Path(__file__).with_name("media")
SAMPLE_FILES = {
    Variant.VIDEO: "sample.mp4",
    Variant.THUMBNAIL: "thumb.webp",
    Variant.SPRITESHEET: "sprite.jpg",
}


@functools.cache
def sample(variant: Variant) -> bytes:
    """The bundled sample file of a variant (at most a few tens of KiB, read once)."""
    return (MEDIA / SAMPLE_FILES[variant]).read_bytes()


async def stream_bytes(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), CHUNK_BYTES):
        yield body[start : start + CHUNK_BYTES]


def video_body(
    job_id: str, video_bytes: int, *, sample_media: bool
) -> tuple[int, AsyncIterator[bytes]]:
    """A finished job's video as the dialects serve it: its length and its bytes (the sample
    file with `sample_media`, else the scripted bytes `expected_sha256` describes)."""
    if sample_media:
        data = sample(Variant.VIDEO)
        return len(data), stream_bytes(data)
    size = size_of(Variant.VIDEO, video_bytes)
    return size, stream(job_id, Variant.VIDEO, size)

"""One download in its own process, so the RSS it reports is the download's alone.

    python -m bench.fetchone --how reelwatch --base-url URL --video-id ID --size N --dir DIR
    python -m bench.fetchone --how seed      --base-url URL --video-id ID --size N --dir DIR

`reelwatch`: `reelwatch.downloads.fetch` with `OpenAIVideos` and `LocalStorage(DIR)`, as the
engine calls it (streamed, hashed while written, fsynced, renamed); a pass-through around the
provider notes when the last body byte was consumed, so the fsync and rename can be told apart.
`seed`: the seed's design (as bench/baseline.py does it): `httpx.get(...).content` into memory,
`base64.b64encode`, then the text into a SQLite row, committed.

Everything is imported and set up before the baseline RSS is read; a thread then samples RSS
every 50 ms until the download has returned. The peak is the larger of the sampled maximum and
`ru_maxrss` when the latter rose during the download (it catches a spike between two samples).
The checksum is checked against `reelwatch.simulator.expected_sha256` afterwards, outside the
timed and sampled window. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import resource
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import common
from reelwatch import downloads, simulator, storage
from reelwatch.models import Generation, Status, Variant
from reelwatch.providers.base import Ref
from reelwatch.providers.openai import OpenAIVideos

KEY = "sk-bench"
SAMPLE_EVERY_S = 0.05


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _generation(video_id: str) -> Generation:
    now = datetime.now(UTC)
    return Generation(
        id="gen_bench",
        provider="openai",
        video_id=video_id,
        status=Status.DOWNLOADING,
        progress=100,
        model="sora-2",
        seconds=4,
        size="720x1280",
        prompt="bench download",
        created_at=now,
        watch_started_at=now,
    )


class _Timed:
    """A pass-through around the provider that notes when the last body byte was handed over.

    Everything after that moment (flush, fsync, rename) is the cost of storing durably, which
    `curl -o /dev/null` does not pay; it is reported apart. One async-generator hop per 256 KiB
    chunk is all it adds.
    """

    def __init__(self, provider: OpenAIVideos) -> None:
        self._provider = provider
        self.catalogue = provider.catalogue
        self.endpoint = provider.endpoint
        self.last_byte_at: float | None = None

    @contextlib.asynccontextmanager
    async def download(self, ref: Ref, variant: Variant) -> AsyncIterator[Any]:
        async with self._provider.download(ref, variant) as download:
            yield _TimedDownload(download, self)

    async def aclose(self) -> None:
        await self._provider.aclose()


class _TimedDownload:
    def __init__(self, download: Any, owner: _Timed) -> None:
        self._download = download
        self._owner = owner
        self.content_type = download.content_type
        self.content_length = download.content_length

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._download.chunks():
            yield chunk
        self._owner.last_byte_at = time.perf_counter()


def reelwatch_download(base_url: str, video_id: str, folder: Path) -> tuple[Any, Any]:
    """Set up everything, then return (the download, a check returning (bytes, sha256))."""
    provider = _Timed(OpenAIVideos(api_key=KEY, base_url=base_url, timeout_s=60.0))
    store = storage.from_url(folder.resolve().as_uri())
    generation = _generation(video_id)
    loop = asyncio.new_event_loop()
    done: dict[str, Any] = {}

    def download() -> None:
        done["result"] = loop.run_until_complete(
            downloads.fetch(provider, store, generation, [Variant.VIDEO])
        )

    def check() -> tuple[int, str, float | None]:
        loop.run_until_complete(provider.aclose())
        loop.close()
        asset = done["result"].assets[Variant.VIDEO]
        on_disk = store.path(asset.key).stat().st_size
        if on_disk != asset.bytes:
            raise RuntimeError(f"stored {on_disk} bytes, reported {asset.bytes}")
        return asset.bytes, asset.sha256, provider.last_byte_at

    return download, check


def seed_download(base_url: str, video_id: str, folder: Path) -> tuple[Any, Any]:
    db = sqlite3.connect(folder / "seed.db")
    db.execute("CREATE TABLE jobs (video_id TEXT PRIMARY KEY, stored_at REAL, video_b64 TEXT)")
    db.commit()
    url = f"{base_url}/videos/{video_id}/content"
    headers = {"Authorization": f"Bearer {KEY}"}

    def download() -> None:
        body = httpx.get(url, headers=headers, timeout=60).content  # all in memory
        encoded = base64.b64encode(body).decode()
        db.execute(
            "INSERT INTO jobs (video_id, stored_at, video_b64) VALUES (?, ?, ?)",
            (video_id, time.time(), encoded),
        )
        db.commit()

    def check() -> tuple[int, str, float | None]:
        """Read the row back (outside the measured window): its decoded size and sha256."""
        (encoded,) = db.execute(
            "SELECT video_b64 FROM jobs WHERE video_id = ?", (video_id,)
        ).fetchone()
        body = base64.b64decode(encoded)
        db.close()
        return len(body), hashlib.sha256(body).hexdigest(), None

    return download, check


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = argparse.ArgumentParser()
    parser.add_argument("--how", choices=("reelwatch", "seed"), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--video-id", required=True)
    parser.add_argument("--size", type=int, required=True, help="expected bytes")
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    make = reelwatch_download if args.how == "reelwatch" else seed_download
    download, check = make(args.base_url, args.video_id, args.dir)

    maxrss_before = _maxrss_mib()
    rss_before = common.rss_mib()
    cpu_before = common.cpu_seconds()
    with common.RssSampler(None, every_s=SAMPLE_EVERY_S) as sampler:
        started = time.perf_counter()
        download()
        seconds = time.perf_counter() - started
    cpu_s = common.cpu_seconds() - cpu_before
    maxrss_after = _maxrss_mib()
    size, sha256, last_byte_at = check()
    to_last_byte = None if last_byte_at is None else last_byte_at - started

    peak = sampler.peak
    if maxrss_after > maxrss_before:  # the high-water mark rose during the download
        peak = max(peak, maxrss_after)
    expected = simulator.expected_sha256(args.video_id, "video", args.size)
    print(
        json.dumps(
            {
                "how": args.how,
                "bytes": size,
                "sha256": sha256,
                "sha256_ok": sha256 == expected and size == args.size,
                "seconds": seconds,
                "mib_per_s": size / 1024 / 1024 / seconds,
                # reelwatch only: until the last body byte was hashed and written (page cache),
                # and what followed it (flush, fsync, rename).
                "seconds_to_last_byte": to_last_byte,
                "seconds_after_last_byte": None if to_last_byte is None else seconds - to_last_byte,
                "mib_per_s_to_last_byte": None
                if to_last_byte is None
                else size / 1024 / 1024 / to_last_byte,
                "rss_before_mib": rss_before,
                "peak_rss_mib": peak,
                "peak_growth_mib": peak - rss_before,
                "sampled_peak_mib": sampler.peak,
                "maxrss_before_mib": maxrss_before,
                "maxrss_after_mib": maxrss_after,
                "cpu_s": cpu_s,
                "rss_series": [(round(t, 3), round(m, 1)) for t, m in sampler.samples],
            }
        )
    )


if __name__ == "__main__":
    main()

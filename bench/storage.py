"""Scenario `storage`: which S3 client library reelwatch's S3 storage should use, measured.

`python -m bench.storage [--quick] [--clients reelwatch,obstore,aiobotocore]`: one
S3-compatible server (moto's server mode, started here as its own process unless
REELWATCH_TEST_S3_ENDPOINT names one; one uncounted run first, as moto loads its multipart
code on first use), and each client in its own process, so import cost and RSS are its own;
the order is rotated over three repetitions and medians reported:
- `reelwatch`: the product's own path, `storage.from_url("s3://...")` configured from the
  AWS_* variables (obstore underneath): `put_stream` (sha256 on the way, 8 MiB parts, 4 in
  flight), `serve` in proxy mode then its ranged streamed read, `exists` (HEAD), and `serve`
  in redirect mode (HEAD, then the presigned URL) for the link;
- `obstore`: obstore called directly with the same part size and concurrency, sha256 on the
  way too: what reelwatch's wrapper costs over the library;
- `aiobotocore`: a hand-written streamed multipart upload (create_multipart_upload, upload_part
  of 8 MiB parts with at most 4 in flight as the product's, complete; abort on failure) with
  sha256 on the way, `get_object` read with `iter_chunks`, `head_object`,
  `generate_presigned_url`; botocore's defaults otherwise (its CRC32 request checksums
  included). Skipped, with a message, when aiobotocore is not installed: it is in the `bench`
  extras, not in `dev`.

Each client uploads one object of 64 MiB (16 MiB with --quick) made 1 MiB at a time by an
async generator (never whole in memory; 1 MiB is what the product's downloads hand over), reads
it back streamed four times (256 KiB chunks, the product's; four reads give the server's CPU,
counted in 10 ms ticks, enough bytes), then times 200 HEADs of a small object and 200
presigned links (median and p99). Figures per client: MiB/s up and down; the client process's
CPU seconds per GiB moved (getrusage of that process, all its threads, obstore's Rust runtime
included), and for the upload the same less what making and hashing the body costs alone
(measured in the same process); its peak RSS growth over the RSS just before each transfer
(sampled every 20 ms); the library's import time and RSS in a bare interpreter; the installed
versions and the installed size of each library with what it pulls in.

The server's CPU seconds in each phase are read from /proc/<pid>/stat, so client cost and
server cost are told apart. moto is a Python server and the bottleneck of the uploads here
(several times the client's CPU per GiB, most of a core while it works), so upload MiB/s
compare clients under moto's ceiling, not what they would reach against a real S3; the client
CPU per GiB and the memory are the client's own figures. Over plain HTTP both libraries sign
the payload (a sha256 of every part for SigV4); over HTTPS botocore sends UNSIGNED-PAYLOAD for
parts, while obstore still hashes them unless `unsigned_payload` is set.

ABORT_AT_EXIT: a process that exits right after its last obstore call dies of SIGABRT at times
(exit 134; about a quarter of bare runs on this machine, Python 3.11): a tokio thread of
obstore is still inside asyncio's call_soon_threadsafe (pyo3-async-runtimes handing back a
result) when the interpreter finalizes, and CPython before 3.14 ends such a thread with
pthread_exit, which aborts when it unwinds through Rust frames. A worker prints its JSON
before it exits, so its figures stand; how many of each client's runs ended so is recorded.
(`reelwatch`'s runs no longer do: `S3Storage.close` now gives those threads 50 ms.)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from bench import common

MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK = 1 * MIB  # what reelwatch's downloads hand to put_stream (providers/output_urls.CHUNK)
PART = 8 * MIB  # reelwatch.storage.s3.PART_BYTES
IN_FLIGHT = 4  # reelwatch.storage.s3: max_concurrency
READ_CHUNK = 256 * 1024  # reelwatch.storage.s3.READ_CHUNK
RUNS = 3
HEADS = 200
READS = 4  # the object is read back this many times: enough bytes for the server's CPU ticks
BUCKET = "reelwatch-bench"
REGION = "us-east-1"
CLIENTS = ("reelwatch", "obstore", "aiobotocore")
VERSIONS = ("obstore", "aiobotocore", "botocore", "aiohttp", "moto", "boto3")
# What reelwatch needs of an S3 client, and whether each library has it as one call (checked
# against the installed versions' APIs; the docstring of reelwatch/storage/s3.py has the uses).
FEATURES = {
    "streamed multipart upload from an async iterator": {
        "obstore": "yes: put_async(async iterable, chunk_size, max_concurrency)",
        "aiobotocore": "no: create/upload_part/complete/abort by hand (bench/storage.py)",
    },
    "presigned GET URL": {
        "obstore": "yes: sign_async",
        "aiobotocore": "yes: generate_presigned_url (a coroutine)",
    },
    "HEAD (exists, size)": {"obstore": "yes: head_async", "aiobotocore": "yes: head_object"},
    "delete": {"obstore": "yes: delete_async", "aiobotocore": "yes: delete_object"},
    "ranged streamed GET": {
        "obstore": "yes: get_async(options={'range': ...}).stream()",
        "aiobotocore": "yes: get_object(Range=...)['Body'].iter_chunks()",
    },
    "list and abort leftover multipart uploads (a sweep)": {
        "obstore": "no (a bucket lifecycle rule does it)",
        "aiobotocore": "yes: list_multipart_uploads, abort_multipart_upload",
    },
    "configured from the AWS_* variables": {
        "obstore": "yes (S3Store reads them)",
        "aiobotocore": "yes (botocore's chain, AWS_ENDPOINT_URL included)",
    },
}


# --- the body ---------------------------------------------------------------------------------


def _block() -> bytes:
    """1 MiB of seeded random bytes (incompressible; the same in every process)."""
    import random

    return random.Random(7).randbytes(CHUNK)


def _chunks(size: int, block: bytes) -> Iterator[bytes]:
    """The body, 1 MiB at a time, each chunk a fresh bytes object with its index in front."""
    for i in range(0, size, CHUNK):
        yield (i // CHUNK).to_bytes(8, "big") + block[8 : min(CHUNK, size - i)]


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(size, _block()):
        digest.update(chunk)
    return digest.hexdigest()


async def body(size: int, block: bytes) -> AsyncIterator[bytes]:
    """The body as an async generator, as the product's download hands it over."""
    for chunk in _chunks(size, block):
        yield chunk
        await asyncio.sleep(0)


# --- the clients, each run in its own process (`--worker NAME`) ------------------------------


class Client:
    """One library's way to do what reelwatch's storage does."""

    async def start(self, prefix: str) -> None: ...

    async def put(self, key: str, chunks: AsyncIterator[bytes], size: int) -> str:
        """Store the stream at `key`; its sha256 hex, computed on the way."""
        raise NotImplementedError

    async def get(self, key: str) -> int:
        """Read `key` streamed; how many bytes came."""
        raise NotImplementedError

    async def head(self, key: str) -> None: ...

    async def sign(self, key: str) -> str:
        raise NotImplementedError

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


class Reelwatch(Client):
    """reelwatch's own S3 storage, from its URL and the AWS_* variables."""

    async def start(self, prefix: str) -> None:
        from reelwatch import storage

        self.proxy = storage.from_url(f"s3://{BUCKET}/{prefix}", serve="proxy")
        self.redirect = storage.from_url(f"s3://{BUCKET}/{prefix}", serve="redirect")

    async def put(self, key: str, chunks: AsyncIterator[bytes], size: int) -> str:
        stored = await self.proxy.put_stream(
            key, chunks, expected_bytes=size, content_type="video/mp4"
        )
        return stored.sha256

    async def get(self, key: str) -> int:
        from reelwatch.storage import Streamed

        served = await self.proxy.serve(key, filename="video.mp4")
        assert isinstance(served, Streamed)
        got = 0
        async for chunk in served.read(0, served.size):
            got += len(chunk)
        return got

    async def head(self, key: str) -> None:
        if not await self.proxy.exists(key):
            raise RuntimeError(f"{key} not found")

    async def sign(self, key: str) -> str:
        # The product's redirect: a HEAD (is it there?) then the presigned URL.
        from reelwatch.storage import Redirect

        served = await self.redirect.serve(key, filename="video.mp4")
        assert isinstance(served, Redirect)
        return served.url

    async def delete(self, key: str) -> None:
        await self.proxy.delete(key)

    async def close(self) -> None:
        await self.proxy.close()
        await self.redirect.close()


class Obstore(Client):
    """obstore called directly, with reelwatch's part size and concurrency."""

    async def start(self, prefix: str) -> None:
        from obstore.store import S3Store

        self.store = S3Store(BUCKET, prefix=prefix, client_options={"allow_http": True})

    async def put(self, key: str, chunks: AsyncIterator[bytes], size: int) -> str:
        import obstore

        digest = hashlib.sha256()

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                digest.update(chunk)
                yield chunk

        await obstore.put_async(
            self.store,
            key,
            hashed(),
            attributes={"Content-Type": "video/mp4"},
            chunk_size=PART,
            max_concurrency=IN_FLIGHT,
        )
        return digest.hexdigest()

    async def get(self, key: str) -> int:
        import obstore

        result = await obstore.get_async(self.store, key)
        got = 0
        async for chunk in result.stream(min_chunk_size=READ_CHUNK):
            got += len(chunk)
        return got

    async def head(self, key: str) -> None:
        import obstore

        await obstore.head_async(self.store, key)

    async def sign(self, key: str) -> str:
        from datetime import timedelta

        import obstore

        return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=300))

    async def delete(self, key: str) -> None:
        import obstore

        await obstore.delete_async(self.store, key)


class Aiobotocore(Client):
    """aiobotocore with a hand-written streamed multipart upload."""

    async def start(self, prefix: str) -> None:
        from aiobotocore.session import get_session

        self.prefix = prefix
        self._context = get_session().create_client(
            "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=REGION
        )
        self.s3 = await self._context.__aenter__()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    async def put(self, key: str, chunks: AsyncIterator[bytes], size: int) -> str:
        digest = hashlib.sha256()
        target = {"Bucket": BUCKET, "Key": self._key(key)}
        upload = await self.s3.create_multipart_upload(**target, ContentType="video/mp4")
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        pending: set[asyncio.Task[None]] = set()

        async def send(number: int, data: bytes) -> None:
            sent = await self.s3.upload_part(
                **target, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": sent["ETag"]})

        async def launch(number: int, data: bytes) -> None:
            while len(pending) >= IN_FLIGHT:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending.difference_update(done)
                for task in done:
                    task.result()
            pending.add(asyncio.create_task(send(number, data)))

        try:
            held: list[bytes] = []  # the chunks of the next part, joined once (one copy)
            held_bytes = 0
            number = 0
            async for chunk in chunks:
                digest.update(chunk)
                held.append(chunk)
                held_bytes += len(chunk)
                if held_bytes >= PART:
                    data = b"".join(held)
                    number += 1
                    await launch(number, data[:PART])  # the whole of `data`: no copy
                    held, held_bytes = ([data[PART:]], held_bytes - PART)
            if held_bytes or number == 0:
                number += 1
                await launch(number, b"".join(held))
            del held
            await asyncio.gather(*pending)
            parts.sort(key=lambda part: part["PartNumber"])
            await self.s3.complete_multipart_upload(
                **target, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            for task in pending:
                task.cancel()
            await self.s3.abort_multipart_upload(**target, UploadId=upload_id)
            raise
        return digest.hexdigest()

    async def get(self, key: str) -> int:
        response = await self.s3.get_object(Bucket=BUCKET, Key=self._key(key))
        got = 0
        async with response["Body"] as stream:
            async for chunk in stream.iter_chunks(READ_CHUNK):
                got += len(chunk)
        return got

    async def head(self, key: str) -> None:
        await self.s3.head_object(Bucket=BUCKET, Key=self._key(key))

    async def sign(self, key: str) -> str:
        url: str = await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": self._key(key)}, ExpiresIn=300
        )
        return url

    async def delete(self, key: str) -> None:
        await self.s3.delete_object(Bucket=BUCKET, Key=self._key(key))

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


def _import(name: str) -> type[Client]:
    """Import the library a client uses (the figure this times) and return the client."""
    if name == "reelwatch":
        import reelwatch.storage.s3  # noqa: F401  (obstore, and reelwatch's storage)

        return Reelwatch
    if name == "obstore":
        import obstore.store  # noqa: F401

        return Obstore
    import aiobotocore.session  # noqa: F401  (botocore, aiohttp)

    return Aiobotocore


def _server_cpu(pid: int | None) -> float | None:
    return common.cpu_seconds(pid) if pid else None


def _minus(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


async def _measure(
    client: Client, size: int, heads: int, server_pid: int | None, expected: str
) -> dict[str, Any]:
    block = _block()
    prefix = f"bench-{secrets.token_hex(4)}"
    out: dict[str, Any] = {}
    started = time.perf_counter()
    await client.start(prefix)
    # A small object first: the connection is up and warm before anything is timed.
    await client.put("small.json", body(1024, block), 1024)
    await client.head("small.json")
    out["client_ready_s"] = time.perf_counter() - started
    out["rss_ready_mib"] = common.rss_mib()

    # What every client pays for the body itself: making it and hashing it, with no transfer.
    cpu_before = common.cpu_seconds()
    digest = hashlib.sha256()
    async for chunk in body(size, block):
        digest.update(chunk)
    out["body_and_sha256_cpu_s_per_gib"] = (common.cpu_seconds() - cpu_before) * GIB / size

    for phase in ("upload", "download"):
        rss_before = common.rss_mib()
        cpu_before, server_before = common.cpu_seconds(), _server_cpu(server_pid)
        with common.RssSampler(every_s=0.02) as sampler:
            began = time.perf_counter()
            if phase == "upload":
                moved = size
                sha = await client.put("video.mp4", body(size, block), size)
                if sha != expected:
                    raise RuntimeError(f"upload hashed {sha}, the body is {expected}")
            else:
                moved = size * READS
                for _ in range(READS):
                    got = await client.get("video.mp4")
                    if got != size:
                        raise RuntimeError(f"read {got} of {size} bytes")
            seconds = time.perf_counter() - began
        cpu = common.cpu_seconds() - cpu_before
        server = _minus(_server_cpu(server_pid), server_before)
        out[phase] = {
            "bytes": moved,
            "seconds": seconds,
            "mib_per_s": moved / MIB / seconds,
            "cpu_s": cpu,
            "cpu_s_per_gib": cpu * GIB / moved,
            "peak_rss_growth_mib": max(sampler.peak, common.rss_mib()) - rss_before,
            "server_cpu_s": server,
            "server_cpu_s_per_gib": None if server is None else server * GIB / moved,
            "server_cpu_share": None if server is None else server / seconds,
        }
    out["upload"]["cpu_s_per_gib_less_body"] = (
        out["upload"]["cpu_s_per_gib"] - out["body_and_sha256_cpu_s_per_gib"]
    )

    for phase, call in (("head", client.head), ("link", client.sign)):
        for _ in range(5):  # warm-up, not counted
            await call("small.json")
        times_ms = []
        cpu_before, server_before = common.cpu_seconds(), _server_cpu(server_pid)
        for _ in range(heads):
            began = time.perf_counter()
            await call("small.json")
            times_ms.append(1000 * (time.perf_counter() - began))
        cpu = common.cpu_seconds() - cpu_before
        server = _minus(_server_cpu(server_pid), server_before)
        out[phase] = {
            "ms": common.summary(times_ms),
            "cpu_ms_per_call": 1000 * cpu / heads,
            "server_cpu_ms_per_call": None if server is None else 1000 * server / heads,
        }

    await client.delete("video.mp4")
    await client.delete("small.json")
    await client.close()
    # ru_maxrss: the process's peak over its life, in KiB on Linux; the transfers set it.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_mib"] = peak
    out["peak_rss_growth_mib"] = peak - out["rss_ready_mib"]
    return out


def worker(name: str, size: int, heads: int, server_pid: int | None, expected: str) -> None:
    """One client in this fresh process: its figures as one JSON line on stdout."""
    figures = asyncio.run(_measure(_import(name)(), size, heads, server_pid, expected))
    figures["client"] = name
    print(json.dumps(figures), flush=True)


IMPORTS = {
    "reelwatch": "import reelwatch.storage.s3",
    "obstore": "import obstore, obstore.store",
    "aiobotocore": "import aiobotocore.session",
}
_IMPORT_PROBE = """
import json, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
before = rss()
began = time.perf_counter()
exec(sys.argv[1])
seconds = time.perf_counter() - began
print(json.dumps({'import_s': seconds, 'rss_before_import_mib': before,
                  'rss_after_import_mib': rss(), 'import_rss_mib': rss() - before}))
"""


def import_cost(name: str) -> dict[str, float]:
    """The library's import alone, in a bare interpreter: seconds, RSS before and after."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, IMPORTS[name]],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


# --- the scenario -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _make_bucket(endpoint: str) -> None:
    import httpx

    response = httpx.put(f"{endpoint}/{BUCKET}", timeout=5)
    if response.status_code not in (200, 409):  # 409: it is there already (a shared server)
        response.raise_for_status()


def start_moto() -> tuple[str, subprocess.Popen[bytes]]:
    import httpx

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            _make_bucket(endpoint)
            return endpoint, server
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"moto did not answer at {endpoint}") from None
            time.sleep(0.2)


def run_one(
    name: str, endpoint: str, size: int, heads: int, server_pid: int | None, expected: str
) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        env.pop(variable, None)
    command = [
        sys.executable, "-m", "bench.storage", "--worker", name, "--size", str(size),
        "--heads", str(heads), "--expected", expected,
        "--server-pid", str(server_pid or 0),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    lines = done.stdout.strip().splitlines()
    # SIGABRT after the figures were printed is obstore's (see ABORT_AT_EXIT): counted, not fatal.
    aborted_after = done.returncode == -signal.SIGABRT and bool(lines)
    if done.returncode != 0 and not aborted_after:
        raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    figures["aborted_at_exit"] = aborted_after
    return figures


def _get(run: dict[str, Any], path: str) -> Any:
    value: Any = run
    for part in path.split("."):
        value = value[part]
    return value


MEDIANS = (
    "upload.mib_per_s",
    "upload.cpu_s_per_gib",
    "upload.cpu_s_per_gib_less_body",
    "upload.peak_rss_growth_mib",
    "upload.server_cpu_s_per_gib",
    "upload.server_cpu_share",
    "download.mib_per_s",
    "download.cpu_s_per_gib",
    "body_and_sha256_cpu_s_per_gib",
    "download.peak_rss_growth_mib",
    "download.server_cpu_s_per_gib",
    "download.server_cpu_share",
    "head.ms.median",
    "head.ms.p99",
    "head.cpu_ms_per_call",
    "head.server_cpu_ms_per_call",
    "link.ms.median",
    "link.ms.p99",
    "link.cpu_ms_per_call",
    "peak_rss_growth_mib",
    "import_s",
    "rss_after_import_mib",
    "import_rss_mib",
    "client_ready_s",
    "rss_ready_mib",
)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs, each figure on its own, and the runs themselves."""
    medians: dict[str, Any] = {}
    for path in MEDIANS:
        values = [_get(run, path) for run in runs]
        medians[path] = (
            None if any(v is None for v in values) else round(statistics.median(values), 3)
        )
    aborted = sum(1 for run in runs if run["aborted_at_exit"])
    return {"runs": len(runs), "aborted_at_exit": aborted, "median": medians, "all": runs}


def _closure(name: str) -> list[str]:
    """The installed distributions `name` needs on this Python (itself included), no extras."""
    from packaging.requirements import Requirement  # pytest's dependency: in the dev extras

    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop().lower().replace("_", "-")
        if current in seen:
            continue
        try:
            requires = importlib.metadata.requires(current) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(current)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(seen)


def _footprint(name: str) -> dict[str, Any] | None:
    """Installed distributions and their files' size on disk, for `name` and what it needs."""
    if importlib.util.find_spec(name) is None:
        return None
    dists = _closure(name)
    size = 0
    for dist in dists:
        for file in importlib.metadata.distribution(dist).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                size += path.stat().st_size
    return {"distributions": dists, "count": len(dists), "installed_mib": round(size / MIB, 1)}


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(quick: bool, clients: tuple[str, ...] = CLIENTS) -> Path:
    size = (16 if quick else 64) * MIB
    heads = HEADS
    if "aiobotocore" in clients and importlib.util.find_spec("aiobotocore") is None:
        print(
            "storage: aiobotocore is not installed, so its part is skipped "
            "(pip install -e '.[bench]' installs it)",
            file=sys.stderr,
        )
        clients = tuple(c for c in clients if c != "aiobotocore")
    expected = expected_sha256(size)
    load_before = os.getloadavg()
    given = os.environ.get("REELWATCH_TEST_S3_ENDPOINT")
    server: subprocess.Popen[bytes] | None = None
    if given:
        endpoint, server_pid = given.rstrip("/"), None
        _make_bucket(endpoint)
    else:
        endpoint, server = start_moto()
        server_pid = server.pid
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    try:
        # moto loads its multipart code on first use: one run, not counted, pays for that.
        run_one(clients[0], endpoint, 2 * PART, 10, server_pid, expected_sha256(2 * PART))
        for i in range(RUNS):
            order = clients[i % len(clients) :] + clients[: i % len(clients)]
            for name in order:  # rotated, so drift on the machine hits every client alike
                got = run_one(name, endpoint, size, heads, server_pid, expected)
                got.update(import_cost(name))
                results[name].append(got)
                print(
                    f"storage: run {i + 1}/{RUNS} {name}: up {got['upload']['mib_per_s']:.0f}"
                    f" MiB/s, down {got['download']['mib_per_s']:.0f} MiB/s, HEAD median"
                    f" {got['head']['ms']['median']:.2f} ms",
                    file=sys.stderr,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    command = " ".join(["python -m bench.storage", *sys.argv[1:]])
    return common.write(
        "storage",
        {
            "command": command,
            "bytes": size,
            "chunk_bytes": CHUNK,
            "part_bytes": PART,
            "parts_in_flight": IN_FLIGHT,
            "read_chunk_bytes": READ_CHUNK,
            "heads": heads,
            "runs": RUNS,
            "server": "given (REELWATCH_TEST_S3_ENDPOINT)" if given else "moto (started here)",
            "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
            "versions": {name: _version(name) for name in VERSIONS},
            "footprint": {name: _footprint(name) for name in ("obstore", "aiobotocore")},
            "features": FEATURES,
            "skipped": [c for c in CLIENTS if c not in clients],
            "clients": {name: combine(runs) for name, runs in results.items()},
        },
        quick=quick,
    )


def table(path: Path) -> str:
    """The medians as a markdown table, one column per client."""
    data = json.loads(path.read_text())
    clients = list(data["clients"])
    rows = [
        ("upload, MiB/s", "upload.mib_per_s", 1),
        ("upload, client CPU s/GiB", "upload.cpu_s_per_gib", 2),
        (
            "upload, client CPU s/GiB less making and hashing the body",
            "upload.cpu_s_per_gib_less_body",
            2,
        ),
        ("upload, server CPU s/GiB", "upload.server_cpu_s_per_gib", 2),
        ("upload, server CPU share of a core", "upload.server_cpu_share", 2),
        ("upload, peak RSS growth MiB", "upload.peak_rss_growth_mib", 1),
        ("download, MiB/s", "download.mib_per_s", 1),
        ("download, client CPU s/GiB", "download.cpu_s_per_gib", 2),
        ("download, server CPU s/GiB", "download.server_cpu_s_per_gib", 2),
        ("download, peak RSS growth MiB", "download.peak_rss_growth_mib", 1),
        ("HEAD, median ms", "head.ms.median", 2),
        ("HEAD, p99 ms", "head.ms.p99", 2),
        ("HEAD, client CPU ms/call", "head.cpu_ms_per_call", 3),
        ("HEAD, server CPU ms/call", "head.server_cpu_ms_per_call", 3),
        ("presigned link, median ms (reelwatch: serve, HEAD + sign)", "link.ms.median", 3),
        ("presigned link, client CPU ms/call", "link.cpu_ms_per_call", 3),
        ("import, s", "import_s", 3),
        ("RSS after import, MiB", "rss_after_import_mib", 1),
        ("first client ready, s", "client_ready_s", 3),
    ]
    lines = ["| figure (median of runs) | " + " | ".join(clients) + " |"]
    lines.append("|---|" + "---:|" * len(clients))
    for label, key, digits in rows:
        cells = []
        for name in clients:
            value = data["clients"][name]["median"][key]
            cells.append("-" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    aborted = [str(data["clients"][name]["aborted_at_exit"]) for name in clients]
    lines.append(
        f"| runs that ended in SIGABRT at exit, of {data['runs']} | " + " | ".join(aborted) + " |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 MiB instead of 64 MiB (CI)")
    parser.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help=f"comma-separated, of {', '.join(CLIENTS)} (default all)",
    )
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--heads", type=int, default=HEADS, help=argparse.SUPPRESS)
    parser.add_argument("--expected", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.size, args.heads, args.server_pid or None, args.expected)
        return
    chosen = tuple(c.strip() for c in args.clients.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CLIENTS]
    if unknown:
        parser.error(f"unknown client(s) {', '.join(unknown)}: choose from {', '.join(CLIENTS)}")
    path = run(args.quick, chosen)
    print(table(path))
    print(f"storage: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

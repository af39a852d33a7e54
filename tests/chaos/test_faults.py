"""Provider and disk faults against real processes: scenarios 7-10, 16 and 21-24.

Each scenario runs `reelwatch simulate`, `serve` and `worker` as subprocesses (tests/chaos/
harness.py), injects its fault, asserts the outcome ../shared/reliability-scenarios.md expects
and prints its figure with `harness.report`. Requests are timed where they arrive: a small
logging reverse proxy (`RequestLog`, below) sits between reelwatch and the simulator, because
the simulator counts requests but keeps no per-request times.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import errno
import hashlib
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from reelwatch.providers.base import retry_after_s
from reelwatch.simulator import content as sim_content
from reelwatch.simulator.config import DEFAULT_CONFIG
from tests.chaos import harness

pytestmark = pytest.mark.chaos

PROVIDER = "openai"
POLL_S = 0.2  # how often a wait looks at the database or a metrics page
SIM_VIDEO_BYTES = DEFAULT_CONFIG.video_bytes  # what a prompt without `bytes=` gets


# --- a logging reverse proxy ----------------------------------------------------------------

# Hop-by-hop headers (RFC 9110 section 7.6.1) are the proxy's own business, never forwarded;
# lengths are set again from what is actually sent.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclasses.dataclass
class Seen:
    """One request as the proxy saw it; times are `time.monotonic()` unless named `wall`."""

    method: str
    path: str
    route: str
    video_id: str | None
    started: float
    wall: float
    ranged: bool
    ended: float | None = None
    status: int | None = None
    body_bytes: int = 0
    outcome: str = "open"  # answered, client_gone, upstream_broke, upstream_refused, cut
    retry_after_s: float | None = None  # what a 429 asked for, as the client was told

    def duration(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started


def _route(method: str, path: str) -> tuple[str, str | None]:
    """The simulator's fault route of a request (`create`, `retrieve`, ...), and its video id."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["v1", "videos"]:
        return "other", None
    if len(parts) == 2:
        return ("create" if method == "POST" else "list"), None
    video_id = parts[2]
    if len(parts) == 4:
        return parts[3], video_id  # content, remix
    return ("delete" if method == "DELETE" else "retrieve"), video_id


class RequestLog:
    """An HTTP reverse proxy in its own thread that records every request with its times.

    Hand-written on aiohttp (already a dependency) because the simulator keeps no
    per-request timestamps and the harness's FaultProxy works at the TCP level, where
    keep-alive hides individual requests. It forwards bodies as they stream (with the
    upstream `content-length`), and when the upstream breaks mid-body it aborts the client's
    connection, so a truncated answer stays truncated. Two faults of its own:
    `retry_after_as_date` rewrites a 429's `retry-after: N` into the equivalent HTTP-date, and
    `cut` (a function of the request) cuts a body after that many bytes. With
    `handler_cancellation` a client that gives up (a timeout) ends its entry at once, and its
    request is cancelled upstream too, except a create, which the provider finishes anyway.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.entries: list[Seen] = []
        self.retry_after_as_date = False
        self.cut: Callable[[Seen], int | None] | None = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._detached: set[asyncio.Future[web.StreamResponse]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> RequestLog:
        self._thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _start(self, sock: socket.socket) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # never queue a request here
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def requests(self, route: str | None = None, video_id: str | None = None) -> list[Seen]:
        """The API requests seen so far (controls excluded), optionally of one route/video."""
        return [
            e
            for e in list(self.entries)
            if e.route != "other"
            and (route is None or e.route == route)
            and (video_id is None or e.video_id == video_id)
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route, video_id = _route(request.method, request.path)
        seen = Seen(
            request.method,
            request.path,
            route,
            video_id,
            time.monotonic(),
            time.time(),
            ranged="range" in {k.lower() for k in request.headers},
        )
        self.entries.append(seen)
        try:
            if route != "create":
                return await self._forward(request, seen)
            # A create the client gave up on still reaches the provider, which makes the
            # video anyway (as a real API would): it is not recalled with the client.
            forwarding = asyncio.ensure_future(self._forward(request, seen))
            self._detached.add(forwarding)
            forwarding.add_done_callback(_detach(self._detached))
            return await asyncio.shield(forwarding)
        except asyncio.CancelledError:
            if seen.outcome == "open":  # not cut on purpose: the client went away
                seen.outcome = "client_gone"
            raise
        finally:
            seen.ended = time.monotonic()

    async def _forward(self, request: web.Request, seen: Seen) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        try:
            upstream = await self._session.request(
                request.method,
                self.target + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            )
        except aiohttp.ClientError:
            seen.outcome = "upstream_refused"  # e.g. the simulator's `drop`: pass it on
            return _abort(request)
        async with upstream:
            seen.status = upstream.status
            answer = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP:
                    answer.headers.add(name, value)
            if upstream.status == 429:
                self._retry_after(answer, seen)
            length = upstream.headers.get("content-length")
            if length is not None:
                answer.content_length = int(length)
            limit = self.cut(seen) if self.cut is not None else None
            await answer.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    if limit is not None and seen.body_bytes + len(chunk) >= limit:
                        piece = chunk[: limit - seen.body_bytes]
                        await answer.write(piece)
                        seen.body_bytes += len(piece)
                        seen.outcome = "cut"
                        return _abort(request, answer)
                    await answer.write(chunk)
                    seen.body_bytes += len(chunk)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                seen.outcome = "upstream_broke"
                return _abort(request, answer)
            await answer.write_eof()
        seen.outcome = "answered"
        return answer

    def _retry_after(self, answer: web.StreamResponse, seen: Seen) -> None:
        """Note the wait a 429 asks for; as an HTTP-date if asked to rewrite it."""
        header = {k.lower(): v for k, v in answer.headers.items()}
        now = datetime.now(UTC)
        wait = retry_after_s(header, now)
        if self.retry_after_as_date and "retry-after" in header and wait is not None:
            # HTTP-dates have whole seconds: round up, so the date is never earlier than asked.
            when = datetime.fromtimestamp(math.ceil(now.timestamp() + wait), UTC)
            answer.headers["retry-after"] = email.utils.format_datetime(when, usegmt=True)
            wait = (when - now).total_seconds()
        seen.retry_after_s = wait


def _detach(
    pending: set[asyncio.Future[web.StreamResponse]],
) -> Callable[[asyncio.Future[web.StreamResponse]], None]:
    """A done-callback that forgets a finished forward and reads its outcome (a client that
    left makes writing the answer fail; nothing is waiting for that error)."""

    def done(future: asyncio.Future[web.StreamResponse]) -> None:
        pending.discard(future)
        if not future.cancelled():
            future.exception()

    return done


def _abort(request: web.Request, answer: web.StreamResponse | None = None) -> web.StreamResponse:
    """Drop the client's connection now (no answer, or a body cut short)."""
    if request.transport is not None:
        request.transport.abort()
    return answer if answer is not None else web.Response(status=502)


# --- small helpers ----------------------------------------------------------------------------


def submit(base: str, prompt: str) -> dict[str, Any]:
    """POST /api/generations through `reelwatch serve`; the generation as answered."""
    answer = httpx.post(f"{base}/api/generations", json={"prompt": prompt}, timeout=60)
    assert answer.status_code == 201, f"{answer.status_code}: {answer.text}"
    body: dict[str, Any] = answer.json()
    return body


def row(db: str, generation_id: str) -> dict[str, Any]:
    """One generation's row as a dict (timestamps as aware datetimes)."""
    rows = harness.sql(db, "SELECT row_to_json(g) FROM generations g WHERE id = %s", generation_id)
    assert rows, f"no generation {generation_id}"
    return _parsed(rows[0][0])


def all_rows(db: str) -> list[dict[str, Any]]:
    return [_parsed(r[0]) for r in harness.sql(db, "SELECT row_to_json(g) FROM generations g")]


def _parsed(data: dict[str, Any]) -> dict[str, Any]:
    for key, value in data.items():
        if isinstance(value, str) and key.endswith("_at"):
            when = datetime.fromisoformat(value)
            data[key] = when if when.tzinfo else when.replace(tzinfo=UTC)
    if isinstance(data.get("assets"), str):
        data["assets"] = json.loads(data["assets"])
    return data


def metric(url: str, name: str, **labels: str) -> float | None:
    """A sample's value from a Prometheus text page, or None if it is not there."""
    text = httpx.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


class Procs:
    """The processes one scenario started, stopped when it ends.

    The harness keeps its processes in a weak set, so one the test no longer references is
    collected, still running, before the harness's teardown sees it (a ResourceWarning, which
    `filterwarnings=error` turns into a failure); this holds them until the scenario is over.
    """

    def __init__(self) -> None:
        self.started: list[harness.Proc] = []

    def keep(self, proc: harness.Proc) -> harness.Proc:
        self.started.append(proc)
        return proc

    def worker(self, env: dict[str, str], *args: str) -> harness.Proc:
        return self.keep(harness.start_worker(env, *args))

    def worker_with_metrics(self, env: dict[str, str]) -> tuple[harness.Proc, str]:
        """`reelwatch worker --metrics-port P`, started; (proc, its /metrics URL)."""
        port = harness.free_port()
        proc = self.worker(env, "--metrics-port", str(port))
        return proc, f"http://127.0.0.1:{port}/metrics"

    def serve(self, env: dict[str, str], *args: str) -> tuple[harness.Proc, str]:
        proc, base = harness.start_serve(env, *args)
        return self.keep(proc), base

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().terminate(timeout=5)


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Start processes through this; every one is stopped when the scenario ends."""
    started = Procs()
    yield started
    started.stop_all()


def hold(seconds: float) -> None:
    """Let a fault or an observation window run for this long (not a wait for an event:
    what happens meanwhile is what the scenario measures)."""
    time.sleep(max(0.0, seconds))


def wait_started(*procs: harness.Proc) -> None:
    for proc in procs:
        harness.wait_worker_started(proc, timeout=30)


def expected_sha256(video_id: str, variant: str, video_bytes: int) -> str:
    """What the simulator serves for a video's variant (a pure function of id and size)."""
    size = sim_content.size_of(sim_content.Variant(variant), video_bytes)
    return sim_content.expected_sha256(video_id, variant, size)


def live_leases(db: str) -> int:
    rows = harness.sql(
        db,
        "SELECT count(*) FROM generations WHERE lease_token IS NOT NULL"
        " AND lease_expires_at > now()",
    )
    return int(rows[0][0])


def part_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part")) if root.exists() else []


def reset_sim(sim: harness.Sim, **config: Any) -> None:
    """A fresh simulator with these SimConfig fields (the CLI does not expose them all)."""
    body = {"api_key": sim.api_key, "queue_s": [0.2, 0.2], "render_s": [1.0, 1.0], **config}
    httpx.post(f"{sim.root}/_sim/reset", json=body, timeout=10).raise_for_status()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (we run as root); skipped locally if refused."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        harness.kill_leftovers()  # nothing may keep the mount busy
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path, *, leave_bytes: int = 0) -> Path:
    """Write a filler file until the file system has about `leave_bytes` free; its path."""
    filler = path / "filler.bin"
    block = b"\0" * (256 * 1024)
    with filler.open("wb") as handle:
        while True:
            free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            if free <= leave_bytes:
                break
            try:
                handle.write(block[: max(4096, min(len(block), free - leave_bytes))])
                handle.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- 7: 429 + Retry-After -----------------------------------------------------------------------

RETRY_AFTER_S = harness.scale(3, 7)


@dataclasses.dataclass
class Window:
    """What followed one 429: requests inside its window (beyond the in-flight grace)."""

    retry_after_s: float
    inside: int  # requests that arrived > 0.2 s after the 429 and before its end (must be 0)
    in_flight: int  # requests that arrived within 0.2 s of the 429 (already on their way)
    min_gap_minus_wait_s: float | None  # first later request's gap minus Retry-After (>= 0)
    resumed: bool  # a request arrived after the window: the workers went on


GRACE_S = 0.2  # a request this soon after the 429 was already on its way (or claimed)


def await_429(log: RequestLog, *, route: str, after: int, timeout: float = 15) -> Seen:
    """The first 429 on `route` among requests after index `after`, once it has been sent."""
    found: list[Seen] = []

    def seen_429() -> bool:
        found[:] = [
            e
            for e in log.entries[after:]
            if e.status == 429 and e.route == route and e.ended is not None
        ]
        return bool(found)

    harness.wait_until(seen_429, timeout=timeout, what=f"a 429 on {route}")
    return found[0]


def window_after(log: RequestLog, hit: Seen, *, observe_after_s: float = 1.0) -> Window:
    """Wait out the window of `hit` (and a little more), then count what arrived when."""
    assert hit.ended is not None and hit.retry_after_s is not None
    end = hit.ended + hit.retry_after_s
    hold(end + observe_after_s - time.monotonic())
    later = [e for e in log.requests() if e.started > hit.ended and e is not hit]
    inside = [e for e in later if hit.ended + GRACE_S < e.started < end]
    in_flight = [e for e in later if e.started <= hit.ended + GRACE_S]
    after_grace = [e.started - hit.ended for e in later if e.started > hit.ended + GRACE_S]
    gap = min(after_grace) - hit.retry_after_s if after_grace else None
    resumed = any(e.started >= end for e in later)
    return Window(hit.retry_after_s, len(inside), len(in_flight), gap, resumed)


def start_polling(
    procs: Procs, env: dict[str, str], log: RequestLog, *, workers: int, jobs: int, tag: str
) -> str:
    """`serve` (with its worker) plus `workers - 1` separate workers, and `jobs` stuck
    generations being polled; the serve base URL."""
    extra = [procs.worker(env) for _ in range(workers - 1)]
    _, base = procs.serve(env)
    for i in range(jobs):
        submit(base, f"chaos {tag} polled {i} [sim:stuck]")
    wait_started(*extra)
    harness.wait_until(
        lambda: len(log.requests("retrieve")) >= jobs, timeout=15, what="the workers polling"
    )
    return base


@pytest.mark.slow
def test_7_retry_after_pauses_every_worker(pg: str, tmp_path: Path, procs: Procs) -> None:
    """A 429 on a status check, with Retry-After in seconds, in ms and as an HTTP-date, stops
    every worker's requests until it has passed."""
    with harness.simulator() as sim, RequestLog(sim.root) as log:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_POLL_MAX_SECONDS="1",
        )
        start_polling(procs, env, log, workers=harness.scale(2, 3), jobs=8, tag="7")
        windows: dict[str, Window] = {}
        for form, params in (
            ("seconds", {"retry_after": RETRY_AFTER_S}),
            ("ms", {"retry_after_ms": RETRY_AFTER_S * 1000}),
            ("http_date", {"retry_after": RETRY_AFTER_S}),
        ):
            log.retry_after_as_date = form == "http_date"
            mark = len(log.entries)
            sim.inject("retrieve", "rate_limit", count=1, **params)
            windows[form] = window_after(log, await_429(log, route="retrieve", after=mark))
        log.retry_after_as_date = False

    harness.report(
        7,
        "429 + Retry-After on status checks",
        workers=harness.scale(2, 3),
        **{f"{form}_requests_in_window": w.inside for form, w in windows.items()},
        **{f"{form}_in_flight": w.in_flight for form, w in windows.items()},
        **{
            f"{form}_min_gap_minus_retry_after_s": w.min_gap_minus_wait_s
            for form, w in windows.items()
        },
    )
    for form, w in windows.items():
        assert w.inside == 0, f"{form}: {w.inside} request(s) inside the Retry-After window"
        assert w.resumed, f"{form}: no request after the window: the workers did not go on"
        assert w.min_gap_minus_wait_s is not None and w.min_gap_minus_wait_s >= 0, form


@pytest.mark.slow
def test_7_retry_after_on_download_and_long_waits(pg: str, tmp_path: Path, procs: Procs) -> None:
    """A 429 on a content download pauses every worker for its Retry-After (it used to be
    retried after ~1 s); a 600 s Retry-After is a row rescheduled in the database, with no
    lease kept while waiting."""
    with harness.simulator() as sim, RequestLog(sim.root) as log:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_POLL_MAX_SECONDS="1",
            REELWATCH_DOWNLOAD_VARIANTS="video",
        )
        base = start_polling(procs, env, log, workers=harness.scale(2, 3), jobs=4, tag="7b")

        mark = len(log.entries)
        sim.inject("content", "rate_limit", count=1, retry_after=RETRY_AFTER_S)
        videos = [submit(base, f"chaos 7b download {i} [sim:queue=0,render=0.5]") for i in (1, 2)]
        download = window_after(log, await_429(log, route="content", after=mark))
        harness.wait_until(
            lambda: all(row(pg, v["id"])["status"] == "completed" for v in videos),
            timeout=20,
            what="the rate-limited downloads to complete",
            interval=POLL_S,
        )

        mark = len(log.entries)
        sim.inject("retrieve", "rate_limit", count=1, retry_after=600)
        hit = await_429(log, route="retrieve", after=mark)
        hit_wall = hit.wall + (hit.ended or hit.started) - hit.started
        harness.wait_until(
            lambda: live_leases(pg) == 0,
            timeout=5,
            what="no lease held during the pause",
            interval=POLL_S,
        )
        hold((hit.ended or 0) + 2.0 - time.monotonic())  # a 600 s pause: nothing may go out
        during = [e for e in log.requests() if e.started > (hit.ended or 0) + GRACE_S]
        limited = [r for r in all_rows(pg) if r["video_id"] == hit.video_id]
        paused = harness.sql(
            # One row per endpoint, keyed "<provider> <base URL>".
            pg,
            "SELECT paused_until FROM provider_state WHERE provider LIKE %s",
            PROVIDER + " %",
        )

    assert limited, "the rate-limited generation is not in the database"
    next_poll_in_s = (
        limited[0]["next_poll_at"] - datetime.fromtimestamp(hit_wall, UTC)
    ).total_seconds()
    paused_for_s = (
        (paused[0][0] - datetime.fromtimestamp(hit_wall, UTC)).total_seconds()
        if paused and paused[0][0] is not None
        else None
    )
    harness.report(
        7,
        "429 + Retry-After on downloads and long waits",
        download_requests_in_window=download.inside,
        download_in_flight=download.in_flight,
        download_min_gap_minus_retry_after_s=download.min_gap_minus_wait_s,
        long_wait_requests_after_429=len(during),
        long_wait_next_poll_in_s=next_poll_in_s,
        long_wait_provider_paused_for_s=paused_for_s,
    )
    assert download.inside == 0, f"{download.inside} request(s) inside a download 429's window"
    assert download.min_gap_minus_wait_s is not None and download.min_gap_minus_wait_s >= 0
    assert not during, f"{len(during)} request(s) sent during a 600 s Retry-After"
    assert next_poll_in_s >= 599, "a 600 s Retry-After is not rescheduled in the database"
    assert paused_for_s is not None and paused_for_s >= 599, "provider_state is not paused"


# --- 8: 5xx bursts, hangs, circuit breaker ------------------------------------------------------

BREAKER_COOLDOWNS_S = (5, 10, 20, 40, 60)  # the engine's breaker: 5 s, doubling to 60 s


def probes_allowed(hold_s: float) -> int:
    """Probes one worker may send in `hold_s` seconds of an open circuit (+1: one may be on
    its way as the window starts)."""
    at, probes = 0.0, 0
    for cooldown in (*BREAKER_COOLDOWNS_S, *([60] * 100)):
        at += cooldown
        if at > hold_s:
            break
        probes += 1
    return probes + 1


def max_concurrent(entries: list[Seen], now: float) -> int:
    edges = sorted(
        [(e.started, 1) for e in entries]
        + [(e.ended if e.ended is not None else now, -1) for e in entries]
    )
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 900))
def test_8_server_errors_hangs_and_the_circuit_breaker(
    pg: str, tmp_path: Path, procs: Procs
) -> None:
    """503 bursts and 40 s hangs: each call ends within its timeout, nothing fails for them,
    the circuit opens (probes only while open) and closes once the provider recovers."""
    timeout_s = 3.0
    burst_s = harness.scale(3, 120)
    hold_s = harness.scale(4, 60)
    with harness.simulator() as sim, RequestLog(sim.root) as log:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_POLL_MAX_SECONDS="1",
            REELWATCH_REQUEST_TIMEOUT_SECONDS=f"{timeout_s:g}",
            REELWATCH_LEASE_SECONDS=f"{2 * timeout_s + 2:g}",
        )
        worker, worker_metrics = procs.worker_with_metrics(env)
        _, base = procs.serve(env)
        pages = [worker_metrics, f"{base}/metrics"]
        generations = [submit(base, f"chaos 8 polled {i} [sim:stuck]") for i in range(8)]
        wait_started(worker)
        harness.wait_until(lambda: len(log.requests("retrieve")) >= 8, timeout=15, what="polls")

        # A burst: half the videos answer 503, and two status checks hang for 40 s.
        for g in generations[::2]:
            sim.inject("retrieve", "server_error", count=-1, video_id=g["video_id"], status=503)
        sim.inject("retrieve", "latency", count=2, seconds=40)
        hold(burst_s)

        # An outage: everything answers 503 until the circuits are open, then a while longer.
        sim.reset_faults()
        sim.inject("*", "server_error", count=-1, status=503)

        def circuits(value: float) -> bool:
            return all(
                metric(p, "reelwatch_circuit_open", provider=PROVIDER) == value for p in pages
            )

        harness.wait_until(
            lambda: circuits(1.0), timeout=15, what="both circuits to open", interval=POLL_S
        )
        opened = time.monotonic()
        hold(hold_s)
        sim.reset_faults()
        recovered = time.monotonic()
        harness.wait_until(
            lambda: circuits(0.0), timeout=90, what="both circuits to close", interval=POLL_S
        )
        time_to_close_s = time.monotonic() - recovered
        harness.wait_until(
            lambda: any(e.status == 200 for e in log.requests() if e.started > recovered),
            timeout=10,
            what="status checks to succeed again",
        )
        now = time.monotonic()
        calls = log.requests()
        stats = sim.stats()
        rows = all_rows(pg)

    while_open = [e for e in calls if opened + GRACE_S < e.started < opened + hold_s]
    allowed = len(pages) * probes_allowed(hold_s)
    too_long = [e for e in calls if e.duration(now) > timeout_s + 1]
    failed = [r for r in rows if r["status"] == "failed"]
    harness.report(
        8,
        "5xx burst, hangs, circuit breaker",
        calls=len(calls),
        calls_longer_than_timeout=len(too_long),
        max_call_s=max(e.duration(now) for e in calls),
        failed_generations=len(failed),
        calls_while_open=len(while_open),
        probes_allowed=allowed,
        time_to_close_s=time_to_close_s,
        max_inflight_simulator=stats["max_inflight"],
        max_inflight_proxy=max_concurrent(calls, now),
    )
    assert not too_long, f"{len(too_long)} call(s) outlived the {timeout_s:g} s request timeout"
    assert not failed, f"failed for transient errors: {[r['error_code'] for r in failed]}"
    assert len(while_open) <= allowed, f"{len(while_open)} calls while the circuit was open"


# --- 9: ambiguous creates -----------------------------------------------------------------------


def creates_per_prompt(sim: harness.Sim) -> tuple[int, int, set[str]]:
    """(creates, duplicate creates, video ids) as the simulator counted them."""
    stats = sim.stats()
    jobs = httpx.get(f"{sim.root}/_sim/jobs", timeout=10).json()
    return int(stats["creates"]), int(stats["duplicate_creates"]), {j["id"] for j in jobs}


def by_prompt(db: str, prompt: str) -> dict[str, Any] | None:
    rows = harness.sql(db, "SELECT row_to_json(g) FROM generations g WHERE prompt = %s", prompt)
    return _parsed(rows[0][0]) if rows else None


@pytest.mark.slow
def test_9_lost_and_slow_creates_are_paid_once(pg: str, tmp_path: Path, procs: Procs) -> None:
    """Creates whose answer is lost (a 500 after the job was made, an answer cut on the wire,
    a `reelwatch submit` killed -9 mid-create) or slow (70 % of the request timeout under the
    shortest lease allowed): one remote video per generation, none reconciled before request
    timeout + 10 s."""
    timeout_s = 3.0
    lease_s = 2 * timeout_s  # the shortest lease settings accept
    with (
        harness.simulator() as sim,
        RequestLog(sim.root) as log,
        harness.FaultProxy("127.0.0.1", log.port) as proxy,
    ):
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_REQUEST_TIMEOUT_SECONDS=f"{timeout_s:g}",
            REELWATCH_LEASE_SECONDS=f"{lease_s:g}",
        )
        too_short = procs.worker({**env, "REELWATCH_LEASE_SECONDS": f"{lease_s - 1:g}"})
        worker = procs.worker(env)
        # The server's creates go through the TCP proxy as well, which can cut their answers.
        _, base = procs.serve({**env, "OPENAI_BASE_URL": f"http://127.0.0.1:{proxy.port}/v1"})
        refused_rc = too_short.wait(timeout=30)
        refused = too_short.output().strip()
        wait_started(worker)
        sim.inject("create", "latency", count=-1, seconds=0.7 * timeout_s)

        sent: dict[str, float] = {}  # ambiguous generation -> when its create was sent
        proxy.cut_after(60)  # the create reaches the simulator; its answer stops mid-headers
        sent[submit(base, "chaos 9 answer cut [sim:queue=0,render=1]")["id"]] = time.monotonic()
        proxy.cut_after(None)
        sim.inject("create", "create_then_fail")
        sent[submit(base, "chaos 9 500 after create [sim:queue=0,render=1]")["id"]] = (
            time.monotonic()
        )
        with ThreadPoolExecutor(2) as pool:
            prompts = [f"chaos 9 slow create {i} [sim:queue=0,render=1]" for i in range(2)]
            slow = [g["id"] for g in pool.map(lambda p: submit(base, p), prompts)]

        killed_prompt = "chaos 9 submitter killed mid-create [sim:queue=0,render=1]"
        creates_before = len(log.requests("create"))
        submitter = procs.keep(
            harness.Proc(
                [sys.executable, "-m", "reelwatch", "submit", killed_prompt], env, name="submit"
            )
        )
        harness.wait_until(
            lambda: len(log.requests("create")) > creates_before,
            timeout=30,
            what="the submitter's create to be in flight",
        )
        killed_sent = log.requests("create")[-1].started
        submitter.kill9()
        killed_id = (by_prompt(pg, killed_prompt) or {})["id"]
        sent[killed_id] = killed_sent

        linked: dict[str, float] = {}

        def reconciled() -> bool:
            for generation_id, at in sent.items():
                if generation_id not in linked and row(pg, generation_id)["video_id"]:
                    linked[generation_id] = time.monotonic() - at
            return len(linked) == len(sent)

        harness.wait_until(
            reconciled,
            timeout=lease_s + timeout_s + 10 + 20,
            interval=POLL_S,
            what="every ambiguous create to be reconciled",
        )
        first_sent = min(sent.values())
        lists = [e.started - first_sent for e in log.requests("list") if e.started > first_sent]
        creates, duplicates, remote = creates_per_prompt(sim)
        local = {row(pg, g)["video_id"] for g in [*sent, *slow]}
        kinds = [
            k
            for (k,) in harness.sql(
                pg, "SELECT kind FROM events WHERE generation_id = %s ORDER BY id", killed_id
            )
        ]

    generations = len(sent) + len(slow)
    harness.report(
        9,
        "ambiguous create",
        generations=generations,
        creates=creates,
        duplicate_creates=duplicates,
        remote_videos_per_local_job=creates / generations,
        first_list_after_lost_create_s=min(lists) if lists else None,
        time_to_reconcile_max_s=max(linked.values()),
        killed_submitter_events="/".join(kinds),
        lease_below_2x_timeout_exit_code=refused_rc,
    )
    assert refused_rc != 0 and "REELWATCH_LEASE_SECONDS" in refused, refused
    assert len(refused.splitlines()) == 1, f"not one line: {refused!r}"
    assert duplicates == 0 and creates == generations, f"{creates} creates, {generations} jobs"
    assert local == remote, "a generation is linked to a video other than the one created"
    assert lists and min(lists) >= timeout_s + 10 - 0.5, "reconciled before timeout + 10 s"


# --- 10: job deadline ---------------------------------------------------------------------------


@pytest.mark.slow
def test_10_stuck_job_fails_at_its_deadline(pg: str, tmp_path: Path, procs: Procs) -> None:
    """A job that stays in progress forever fails with `timeout` within one poll interval of
    its deadline, and is never polled again."""
    timeout_min = 0.1
    poll_max_s = 2.0
    with harness.simulator() as sim, RequestLog(sim.root) as log:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_TIMEOUT_MINUTES=f"{timeout_min:g}",
            REELWATCH_POLL_MAX_SECONDS=f"{poll_max_s:g}",
        )
        _, base = procs.serve(env)
        g = submit(base, "chaos 10 stuck forever [sim:stuck]")
        harness.wait_until(
            lambda: row(pg, g["id"])["status"] == "failed",
            timeout=timeout_min * 60 + poll_max_s + 10,
            what="the deadline to fail it",
            interval=POLL_S,
        )
        failed = row(pg, g["id"])
        shown = httpx.get(f"{base}/api/generations/{g['id']}", timeout=10).json()
        polls_at_failure = len(log.requests("retrieve", g["video_id"]))
        hold(2 * poll_max_s)  # two poll intervals in which it must not be polled
        polls = log.requests("retrieve", g["video_id"])

    deadline = failed["watch_started_at"] + timedelta(minutes=timeout_min)
    overshoot_s = (failed["updated_at"] - deadline).total_seconds()
    deadline_wall = deadline.timestamp()
    after_deadline = [p for p in polls if p.wall > deadline_wall]
    harness.report(
        10,
        "job deadline",
        deadline_overshoot_s=overshoot_s,
        polls_after_deadline=len(after_deadline) - 1,  # the one that saw it past due is needed
        polls_after_failure=len(polls) - polls_at_failure,
        error_code=failed["error_code"],
    )
    assert failed["error_code"] == "timeout", failed["error_code"]
    assert shown["error"]["code"] == "timeout", shown
    assert 0 <= overshoot_s <= poll_max_s + 0.5, f"failed {overshoot_s:.2f} s after its deadline"
    assert len(after_deadline) <= 1, f"{len(after_deadline)} polls after the deadline"
    assert len(polls) == polls_at_failure, "polled again after it failed"


# --- 16: cron overlap ---------------------------------------------------------------------------


@pytest.mark.slow
def test_16_overlapping_cron_calls_poll_each_job_once(
    pg: str, tmp_path: Path, procs: Procs
) -> None:
    """Ten concurrent cron calls, then the same tick delivered twice: every call answers 2xx
    and no generation is polled twice in the round."""
    jobs = harness.scale(20, 200)
    poll_s = float(harness.scale(3, 10))  # a polled job is not due again for this long
    secret = "chaos-cron-secret-16"
    with harness.simulator() as sim:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            CRON_SECRET=secret,
            REELWATCH_POLL_MIN_SECONDS=f"{poll_s:g}",
            REELWATCH_POLL_MAX_SECONDS=f"{poll_s:g}",
        )
        _, base = procs.serve(env, "--no-worker")
        generations = [submit(base, f"chaos 16 job {i} [sim:stuck]") for i in range(jobs)]
        harness.wait_until(
            lambda: (
                int(
                    harness.sql(pg, "SELECT count(*) FROM generations WHERE next_poll_at <= now()")[
                        0
                    ][0]
                )
                == jobs
            ),
            timeout=poll_s + 10,
            what="every generation to be due",
            interval=POLL_S,
        )
        before = sim.stats()["videos"]
        url = f"{base}/api/cron/poll-sora-status"
        headers = {"Authorization": f"Bearer {secret}"}

        def tick(_: int) -> httpx.Response:
            return httpx.get(url, headers=headers, timeout=60)

        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(tick, range(10)))
            answers += list(pool.map(tick, range(2)))  # the same tick, delivered twice
        round_s = time.monotonic() - started
        after = sim.stats()["videos"]

    def retrieves(stats: dict[str, Any], video_id: str) -> int:
        return int(stats.get(video_id, {}).get("retrieves", 0))

    per_video = [
        retrieves(after, g["video_id"]) - retrieves(before, g["video_id"]) for g in generations
    ]
    statuses = sorted({a.status_code for a in answers})
    processed = sum(a.json().get("processed", 0) for a in answers if a.status_code < 300)
    harness.report(
        16,
        "cron overlap",
        calls=len(answers),
        statuses=statuses,
        jobs=jobs,
        processed=processed,
        max_polls_per_job_in_round=max(per_video),
        jobs_polled_twice=sum(1 for n in per_video if n > 1),
        round_s=round_s,
    )
    assert all(200 <= a.status_code < 300 for a in answers), statuses
    assert round_s < poll_s, f"the round took {round_s:.1f} s: longer than a poll interval"
    assert max(per_video) <= 1, "a generation was polled twice in one round"
    assert min(per_video) == 1 and processed == jobs, "a due generation was not polled"


# --- 21: crash during file publish --------------------------------------------------------------


@dataclasses.dataclass
class FileCheck:
    """Files under the storage root against what the simulator serves and the DB records."""

    partial_finals: int = 0  # a final (non-temp) file whose bytes are not the full asset
    completed_without_file: int = 0  # `completed` in the DB, file missing or different
    finals_checked: int = 0


def video_bytes_of(prompt: str) -> int:
    """The video size a prompt's `[sim:...bytes=N]` directive asks for (else the default)."""
    found = re.search(r"\[sim:[^\]]*\bbytes=(\d+)", prompt)
    return int(found.group(1)) if found else SIM_VIDEO_BYTES


def cached_sha256(path: Path, hashed: dict[tuple[str, float], str]) -> str:
    """A file's sha256, hashed again only if it was replaced or touched since last time."""
    stamp = (str(path), path.stat().st_mtime)
    if stamp not in hashed:
        hashed[stamp] = sha256_of(path)
    return hashed[stamp]


def check_files(db: str, root: Path, hashed: dict[tuple[str, float], str]) -> FileCheck:
    """Every final file is the complete asset; every completed row's files are there."""
    result = FileCheck()
    rows = {r["id"]: r for r in all_rows(db)}
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue  # temp files are `.NAME.RANDOM.part`
        generation = rows.get(path.parent.name)
        if generation is None or generation["video_id"] is None:
            continue  # an input reference, or a file of another scenario
        digest = cached_sha256(path, hashed)
        result.finals_checked += 1
        size = video_bytes_of(generation["prompt"])
        if digest != expected_sha256(generation["video_id"], path.stem, size):
            result.partial_finals += 1
    for generation in rows.values():
        if generation["status"] != "completed":
            continue
        for asset in generation["assets"].values():
            path = root / asset["key"]
            if not path.is_file() or cached_sha256(path, hashed) != asset["sha256"]:
                result.completed_without_file += 1
    return result


MAX_KILLS_EACH = 3  # interruptions per generation (over five claims without a step quarantine)


def held_by(db: str, pid: int) -> list[str]:
    """The generations a worker process holds a live lease on while downloading them."""
    rows = harness.sql(
        db,
        "SELECT id FROM generations WHERE status = 'downloading' AND lease_owner LIKE %s"
        " AND lease_expires_at > now()",
        f"%:{pid}:%",
    )
    return [r[0] for r in rows]


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 1800))
def test_21_kill_during_download_never_publishes_a_partial_file(
    pg: str, tmp_path: Path, procs: Procs
) -> None:
    """Workers killed -9 at random points of downloads (write, fsync, rename, DB update):
    final files are absent or complete, `completed` always has its file, and the janitor
    clears the orphaned temp files."""
    runs = harness.scale(6, 200)
    video_bytes = 5 * 1024 * 1024
    rate = 8 * 1024 * 1024  # bytes/s per connection: a download takes about 0.6 s
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    root = tmp_path / "videos"
    hashed: dict[tuple[str, float], str] = {}
    with (
        harness.simulator(render_s=0.5) as sim,
        harness.FaultProxy("127.0.0.1", int(sim.root.rsplit(":", 1)[1])) as proxy,
    ):
        proxy.set_rate(rate)
        submitting = harness.env_for(db_url=pg, sim=sim, data_dir=tmp_path)
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=f"http://127.0.0.1:{proxy.port}/v1",
            REELWATCH_REQUEST_TIMEOUT_SECONDS="2",
            REELWATCH_LEASE_SECONDS="5",
        )
        _, base = procs.serve(submitting, "--no-worker")
        submitted = 0

        def keep_downloads_going() -> None:
            nonlocal submitted
            active = harness.sql(
                pg, "SELECT count(*) FROM generations WHERE status <> 'completed'"
            )[0][0]
            for _ in range(max(0, 4 - int(active))):
                submit(
                    base, f"chaos 21 video {submitted} [sim:queue=0,render=0.3,bytes={video_bytes}]"
                )
                submitted += 1

        keep_downloads_going()
        current = procs.worker(env)
        interrupts: Counter[str] = Counter()
        checks = FileCheck()
        started = time.monotonic()
        for run in range(runs):
            harness.wait_until(
                lambda pid=current.pid: bool(held_by(pg, pid)),
                timeout=30,
                what=f"run {run}: the worker to download",
                interval=POLL_S,
            )
            # Over five claims without a step quarantine a generation as a poison pill (as
            # they should): one interrupted three times is let through before the next kill.
            veterans = [g for g in held_by(pg, current.pid) if interrupts[g] >= MAX_KILLS_EACH]
            if veterans:
                harness.wait_until(
                    lambda ids=veterans: all(row(pg, g)["status"] == "completed" for g in ids),
                    timeout=30,
                    what="an often-interrupted download to finish",
                    interval=POLL_S,
                )
            following = procs.worker(env) if run < runs - 1 else None
            # The kill point: a random moment of the download (about 0.6 s at this rate), which
            # lands in its writes, its fsync, its rename or the database update after it.
            time.sleep(rng.uniform(0, 1.5 * video_bytes / rate))
            interrupts.update(held_by(pg, current.pid))
            current.kill9()
            # Its leases would lapse after the TTL; expire them now instead of waiting (DB time
            # travel), so the next worker takes over at once.
            harness.sql(
                pg,
                "UPDATE generations SET lease_expires_at = now() - interval '1 second'"
                " WHERE lease_owner LIKE %s",
                f"%:{current.pid}:%",
            )
            found = check_files(pg, root, hashed)
            checks.partial_finals += found.partial_finals
            checks.completed_without_file += found.completed_without_file
            checks.finals_checked += found.finals_checked
            if following is not None:
                keep_downloads_going()
                current = following
        runs_s = time.monotonic() - started
        interrupted = sum(interrupts.values())

        orphans_before = len(part_files(root))
        # Age the orphans past the janitor's threshold (2 x max(lease, request timeout) = 10 s)
        # instead of waiting that long: the janitor reads the files' mtime.
        aged = time.time() - 600
        for temp in part_files(root):
            os.utime(temp, (aged, aged))
        janitor, janitor_metrics = procs.worker_with_metrics(env)

        def settled() -> bool:
            if part_files(root) or not janitor.alive():
                return False
            rows = harness.sql(pg, "SELECT count(*) FROM generations WHERE status <> 'completed'")
            return int(rows[0][0]) == 0

        try:
            harness.wait_until(
                settled, timeout=60, what="the janitor and the last downloads", interval=POLL_S
            )
        except AssertionError as exc:
            states = harness.sql(
                pg, "SELECT status, error_code, count(*) FROM generations GROUP BY 1, 2"
            )
            raise AssertionError(
                f"{exc}; temps {part_files(root)}; rows {states}; janitor:\n{janitor.tail()}"
            ) from None
        removed = metric(janitor_metrics, "reelwatch_temp_files_removed_total")
        final = check_files(pg, root, hashed)

    harness.report(
        21,
        "crash during file publish",
        runs=runs,
        runs_s=runs_s,
        seed=seed,
        interrupted_downloads=interrupted,
        final_files_checked=checks.finals_checked + final.finals_checked,
        partial_final_files=checks.partial_finals + final.partial_finals,
        completed_without_file=checks.completed_without_file + final.completed_without_file,
        orphaned_temps_before_janitor=orphans_before,
        orphaned_temps_after_janitor=len(part_files(root)),
        janitor_removed=removed,
    )
    assert interrupted > 0, "no kill landed during a download"
    assert checks.partial_finals + final.partial_finals == 0, "a partial file was published"
    assert checks.completed_without_file + final.completed_without_file == 0
    assert orphans_before == 0 or (removed or 0) >= 1, "the janitor removed nothing"
    assert not part_files(root)


# --- 22: resume correctness ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(harness.scale(120, 900))
def test_22_cut_downloads_end_with_the_right_bytes(pg: str, tmp_path: Path, procs: Procs) -> None:
    """Content answers cut half-way (simulator `truncate`) and at random offsets (the proxy):
    every stored file has the source's sha256; downloads start again from byte 0."""
    videos = harness.scale(3, 20)
    video_bytes = harness.scale(2, 16) * 1024 * 1024
    random_cuts = 2  # per video, after the simulator's half-way cut
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    attempts: Counter[str] = Counter()

    def cut(seen: Seen) -> int | None:
        if seen.route != "content" or seen.video_id is None:
            return None
        attempts[seen.video_id] += 1
        # The first attempt is the simulator's (cut half-way); the next ones are the proxy's.
        if 2 <= attempts[seen.video_id] <= 1 + random_cuts:
            return rng.randint(1, video_bytes - 1)
        return None

    with harness.simulator() as sim, RequestLog(sim.root) as log:
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_DOWNLOAD_VARIANTS="video",
        )
        log.cut = cut
        _, base = procs.serve(env)
        # One video at a time: its three broken attempts stay below the circuit breaker's
        # five failures in a row (a success in between starts the count again).
        generations = []
        for i in range(videos):
            g = submit(base, f"chaos 22 video {i} [sim:queue=0,render=0.3,bytes={video_bytes}]")
            sim.inject("content", "truncate", count=1, video_id=g["video_id"])
            generations.append(g)
            harness.wait_until(
                lambda g=g: row(pg, g["id"])["status"] == "completed",
                timeout=30,
                interval=POLL_S,
                what=f"cut download {i} to complete",
            )
        downloads = log.requests("content")
        stored = [row(pg, g["id"]) for g in generations]

    wrong = 0
    for generation in stored:
        asset = generation["assets"]["video"]
        expected = expected_sha256(generation["video_id"], "video", video_bytes)
        on_disk = sha256_of(tmp_path / "videos" / asset["key"])
        wrong += int(asset["sha256"] != expected or on_disk != expected)
        wrong += int(asset["bytes"] != video_bytes)
    transferred = sum(e.body_bytes for e in downloads)
    outcomes = Counter(e.outcome for e in downloads)
    harness.report(
        22,
        "resume correctness",
        videos=videos,
        seed=seed,
        attempts=len(downloads),
        truncated_by_simulator=outcomes["upstream_broke"],
        cut_by_proxy=outcomes["cut"],
        bytes_transferred_per_file_size=transferred / (videos * video_bytes),
        range_requests=sum(1 for e in downloads if e.ranged),
        corrupt_outputs=wrong,
    )
    assert outcomes["upstream_broke"] >= 1 and outcomes["cut"] >= 1, outcomes
    assert wrong == 0, f"{wrong} stored file(s) differ from the source"


# --- 23: disk full ------------------------------------------------------------------------------

MIB = 1024 * 1024


@pytest.mark.slow
def test_23_full_video_disk_waits_for_space(pg: str, tmp_path: Path, procs: Procs) -> None:
    """A video bigger than the free space: its temp file is removed, it stays `downloading`
    with `disk_full` while small ones complete, and it completes once space is freed."""
    with tmpfs(tmp_path / "disk", "20m") as disk, harness.simulator() as sim:
        filler = fill(disk, leave_bytes=10 * MIB)
        videos = disk / "videos"
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            REELWATCH_STORAGE_URL=f"file://{videos}",
            REELWATCH_DOWNLOAD_VARIANTS="video",
        )
        worker, worker_metrics = procs.worker_with_metrics(env)
        _, base = procs.serve(env, "--no-worker")
        big_bytes = 14 * MIB
        big = submit(base, f"chaos 23 too big [sim:queue=0,render=0.3,bytes={big_bytes}]")
        wait_started(worker)
        harness.wait_until(
            lambda: row(pg, big["id"])["error_code"] == "disk_full",
            timeout=20,
            what="the big download to report disk_full",
            interval=POLL_S,
        )
        small = [
            submit(base, f"chaos 23 small {i} [sim:queue=0,render=0.3,bytes={256 * 1024}]")
            for i in range(3)
        ]
        harness.wait_until(
            lambda: all(row(pg, g["id"])["status"] == "completed" for g in small),
            timeout=20,
            what="the small downloads to complete on the full disk",
            interval=POLL_S,
        )
        while_full = row(pg, big["id"])
        harness.wait_until(
            lambda: (
                not part_files(videos)
                and os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > 9 * MIB
            ),
            timeout=10,
            what="the big download's temp file to be removed",
        )
        disk_full_total = metric(worker_metrics, "reelwatch_disk_full_total")
        filler.unlink()
        freed = time.monotonic()
        harness.wait_until(
            lambda: row(pg, big["id"])["status"] == "completed",
            timeout=30,
            what="the big download to complete after space was freed",
            interval=POLL_S,
        )
        recover_s = time.monotonic() - freed
        hashed: dict[tuple[str, float], str] = {}
        files = check_files(pg, videos, hashed)
        small_ok = all(
            sha256_of(videos / row(pg, g["id"])["assets"]["video"]["key"])
            == expected_sha256(g["video_id"], "video", 256 * 1024)
            for g in small
        )
        alive = worker.alive()
        procs.stop_all()

    harness.report(
        23,
        "disk full (video storage)",
        big_status_while_full=while_full["status"],
        big_error_while_full=while_full["error_code"],
        disk_full_total=disk_full_total,
        small_completed_meanwhile=len(small),
        wrongly_completed=files.completed_without_file,
        time_to_recover_s=recover_s,
    )
    assert while_full["status"] == "downloading" and while_full["error_code"] == "disk_full"
    assert disk_full_total is not None and disk_full_total > 0, disk_full_total
    assert files.completed_without_file == 0 and files.partial_finals == 0
    assert small_ok, "a small video stored on the full disk is not the source's bytes"
    assert alive, "the worker died on a full disk"


@pytest.mark.slow
def test_23_full_database_disk_answers_503_not_500(tmp_path: Path, procs: Procs) -> None:
    """SQLite on a full disk: creating a generation answers 503/507 with a clear message,
    never 500, the worker stays alive, and it works again once space is freed."""
    with tmpfs(tmp_path / "dbdisk", "8m") as disk, harness.simulator() as sim:
        env = harness.env_for(
            db_url=f"sqlite:///{disk / 'reelwatch.db'}",
            sim=sim,
            data_dir=tmp_path / "data",
        )
        _, base = procs.serve(env, "--no-worker")
        worker = procs.worker(env)
        for i in range(2):
            submit(base, f"chaos 23 kept polling {i} [sim:stuck]")
        wait_started(worker)
        filler = fill(disk)
        padding = "x" * 20000  # each row needs new pages: the WAL cannot absorb it in place
        answers: list[httpx.Response] = []
        for i in range(40):
            answers.append(
                httpx.post(
                    f"{base}/api/generations",
                    json={"prompt": f"chaos 23 on a full disk {i} {padding}"},
                    timeout=60,
                )
            )
            if answers[-1].status_code in (503, 507) and i >= 4:
                break
        hold(3.0)  # the worker keeps meeting the full disk meanwhile
        worker_alive = worker.alive()
        filler.unlink()
        after = httpx.post(
            f"{base}/api/generations", json={"prompt": "chaos 23 space again"}, timeout=60
        )
        procs.stop_all()

    statuses = Counter(a.status_code for a in answers)
    refused = [a for a in answers if a.status_code in (503, 507)]
    harness.report(
        23,
        "disk full (SQLite database)",
        statuses=dict(statuses),
        message=refused[0].json() if refused else None,
        worker_alive=worker_alive,
        after_freeing=after.status_code,
    )
    assert 500 not in statuses, [a.text for a in answers if a.status_code == 500][:1]
    assert set(statuses) <= {201, 503, 507}, statuses
    assert refused, "the full disk was never reported"
    text = refused[0].text.lower()
    assert "disk" in text or "space" in text or "full" in text, refused[0].text
    assert worker_alive, f"the worker died on a full database disk:\n{worker.tail()}"
    assert after.status_code == 201, after.text


# --- 24: asset expiry ---------------------------------------------------------------------------


@pytest.mark.slow
def test_24_blocked_download_fails_as_expired(pg: str, tmp_path: Path, procs: Procs) -> None:
    """Downloads blocked (500s, and 429s) until the provider's copy expires: the alert is up
    before expiry, the generation ends `failed` with `asset_expired`, and is not retried
    after expiry."""
    expires_after_s = harness.scale(8, 60)
    poll_max_s = 2.0
    with harness.simulator() as sim, RequestLog(sim.root) as log:
        # The CLI has no flag for it; the simulator's reset takes any SimConfig field.
        reset_sim(sim, queue_s=[0.2, 0.2], render_s=[1.0, 1.0], expires_after_s=expires_after_s)
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=tmp_path,
            OPENAI_BASE_URL=log.base_url,
            REELWATCH_DOWNLOAD_VARIANTS="video",
            REELWATCH_POLL_MAX_SECONDS=f"{poll_max_s:g}",
        )
        _, base = procs.serve(env)
        errors = submit(base, "chaos 24 blocked by 500s")
        limited = submit(base, "chaos 24 blocked by 429s")
        sim.inject("content", "server_error", count=-1, video_id=errors["video_id"], status=500)
        sim.inject("content", "rate_limit", count=-1, video_id=limited["video_id"], retry_after=1)
        ids = [errors["id"], limited["id"]]
        alerted: list[float] = []

        def alert_up() -> bool:
            if (metric(f"{base}/metrics", "reelwatch_assets_expiring") or 0) > 0:
                alerted.append(time.time())
            return bool(alerted)

        harness.wait_until(alert_up, timeout=20, interval=0.2, what="reelwatch_assets_expiring")
        harness.wait_until(
            lambda: all(row(pg, g)["status"] == "failed" for g in ids),
            timeout=expires_after_s + 20,
            what="both generations to fail as expired",
            interval=POLL_S,
        )
        rows = [row(pg, g) for g in ids]
        content = log.requests("content")

    figures: dict[str, object] = {}
    for name, generation in zip(("http_500", "http_429"), rows, strict=True):
        expires = generation["expires_at"].timestamp()
        attempts = [e for e in content if e.video_id == generation["video_id"]]
        figures[f"{name}_error"] = generation["error_code"]
        figures[f"{name}_attempts"] = len(attempts)
        figures[f"{name}_attempts_after_expiry"] = sum(1 for e in attempts if e.wall >= expires)
        figures[f"{name}_failed_after_expiry_s"] = generation["updated_at"].timestamp() - expires
        figures[f"{name}_alert_lead_s"] = expires - alerted[0]
    harness.report(24, "asset expiry", expires_after_s=expires_after_s, **figures)
    for name in ("http_500", "http_429"):
        assert figures[f"{name}_error"] == "asset_expired", figures
        assert 0 < int(figures[f"{name}_attempts"]) <= 2 * expires_after_s, figures  # bounded
        assert int(figures[f"{name}_attempts_after_expiry"]) <= 1, figures
        assert float(figures[f"{name}_alert_lead_s"]) > 0, "no alert before the expiry"
        assert float(figures[f"{name}_failed_after_expiry_s"]) <= poll_max_s + 1, figures

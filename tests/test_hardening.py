"""Hostile input at every edge: bad requests answer 4xx (never 500), no terminal or log
injection, no redirect leaves the provider's origin, cookies are `Secure` over HTTPS."""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
from aiohttp import web
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from reelwatch import exceptions, logs, presenter, service, serving, settings, simulator
from reelwatch.models import Variant
from reelwatch.providers import base
from reelwatch.providers.openai import OpenAIVideos
from reelwatch.settings import Settings
from reelwatch.web import access, create_app

WEBHOOK_KEY = b"hardening-webhook-key-0123456789"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()
BIGINT_MAX = 2**63 - 1

# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def app_settings(tmp_path: Path, db_url: str) -> Settings:
    """The API without a provider key: nothing here needs the provider."""
    return settings.load(
        data_dir=tmp_path / "data",
        database_url_raw=db_url,
        provider_config={"openai": {"webhook_secret": WEBHOOK_SECRET}},
    )


@pytest.fixture
async def api(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app served by uvicorn on a free loopback port, and a client for it."""
    app = create_app(app_settings, run_worker=False)
    with serving.in_thread(app, probe="/healthz", name="hardening") as origin:
        async with httpx.AsyncClient(base_url=origin, timeout=10) as client:
            yield client


@contextlib.asynccontextmanager
async def in_process(app_settings: Settings, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app called in-process (ASGI), for bytes a real HTTP stack would not carry."""
    app = create_app(app_settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def error_of(response: httpx.Response) -> dict[str, str]:
    """The `{"error": {"code", "message"}}` body every refusal has."""
    body = response.json()
    assert set(body["error"]) >= {"code", "message"}, body
    error: dict[str, str] = body["error"]
    return error


def assert_refused(response: httpx.Response, field: str, statuses: tuple[int, ...]) -> None:
    """A 4xx whose JSON error names the offending field."""
    assert response.status_code in statuses, (response.status_code, response.text)
    error = error_of(response)
    assert field in error["message"], error


# --- 1. bad input answers 4xx ---------------------------------------------------------------


def signed(
    payload: bytes, *, webhook_id: str = "msg_1", stamp: str | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for `payload`, signed with the test secret."""
    stamp = stamp or str(int(time.time()))
    mac = hmac.new(WEBHOOK_KEY, f"{webhook_id}.{stamp}.".encode() + payload, hashlib.sha256)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
        "content-type": "application/json",
    }


def webhook_event(video_id: str) -> bytes:
    return json.dumps({"type": "video.completed", "data": {"id": video_id}}).encode()


@pytest.mark.parametrize("stamp", ["9" * 400, "\u00b2", "1" * 30, "-5", "1e9"])
async def test_a_malformed_webhook_timestamp_is_a_400(api: httpx.AsyncClient, stamp: str) -> None:
    """Huge, non-ASCII-digit and signed timestamps are refused before any arithmetic."""
    payload = webhook_event("video_1")
    headers = signed(payload, stamp=stamp)
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    response = await api.post("/api/webhooks/openai", content=payload, headers=raw)
    assert_refused(response, "webhook-timestamp", (400,))


@pytest.mark.parametrize("webhook_id", ["m" * 201, "msg_\x00x", "msg_\x1b[2J"])
async def test_a_bad_webhook_id_is_a_400_and_stores_nothing(
    app_settings: Settings, webhook_id: str
) -> None:
    """A correctly signed delivery whose webhook-id no column can hold (too long, NUL, control
    characters) is refused before the store is touched, on both databases."""
    payload = webhook_event("video_1")
    async with in_process(app_settings, "http://127.0.0.1") as client:
        response = await client.post(
            "/api/webhooks/openai", content=payload, headers=signed(payload, webhook_id=webhook_id)
        )
        assert_refused(response, "webhook-id", (400,))
    assert await deliveries(app_settings) == 0


@pytest.mark.parametrize("video_id", ["v" * 201, "video_\x00x", "video_\u2028x", 42])
async def test_a_bad_video_id_in_a_webhook_is_a_400_and_stores_nothing(
    api: httpx.AsyncClient, app_settings: Settings, video_id: Any
) -> None:
    """A signed delivery whose `data.id` is not a plausible id is refused, on both databases."""
    payload = json.dumps({"type": "video.failed", "data": {"id": video_id}}).encode()
    response = await api.post("/api/webhooks/openai", content=payload, headers=signed(payload))
    assert_refused(response, "data.id", (400,))
    assert await deliveries(app_settings) == 0


async def test_a_good_webhook_still_records_once(
    api: httpx.AsyncClient, app_settings: Settings
) -> None:
    """The checks leave valid deliveries alone: recorded once, the duplicate is a no-op."""
    payload = webhook_event("video_" + "a" * 48)
    headers = signed(payload, webhook_id="msg_" + "x" * 196)
    first = await api.post("/api/webhooks/openai", content=payload, headers=headers)
    again = await api.post("/api/webhooks/openai", content=payload, headers=headers)
    assert first.json()["result"] == "unknown_video" and again.json()["result"] == "duplicate"
    assert await deliveries(app_settings) == 1


async def deliveries(app_settings: Settings) -> int:
    """Webhook deliveries recorded in the database."""
    url = app_settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM webhook_deliveries")).scalar()
    finally:
        engine.dispose()
    return int(count or 0)


@pytest.mark.parametrize("seconds", ["\u00b2", "9" * 5000, "٤", "4.0", "-4", ""])
async def test_multipart_seconds_that_are_not_an_integer_are_a_422(
    api: httpx.AsyncClient, seconds: str
) -> None:
    """`seconds` in a multipart create must be ASCII digits of a sane length (no int() crash)."""
    fields = {"prompt": (None, "a boat"), "seconds": (None, seconds)}
    response = await api.post("/api/generations", files=fields)
    assert_refused(response, "seconds", (422,))


@pytest.mark.parametrize("after", [str(BIGINT_MAX + 1), "9" * 400, "-1"])
async def test_events_after_beyond_bigint_is_refused(api: httpx.AsyncClient, after: str) -> None:
    """`?after=` beyond the events table's bigint is a 4xx, not a 200 whose stream then breaks."""
    async with api.stream("GET", "/api/events", params={"after": after}) as response:
        await response.aread()
        assert_refused(response, "after", (422,))


@pytest.mark.parametrize("last", [str(BIGINT_MAX + 1), "9" * 20, "\u00b2", "12a"])
async def test_a_last_event_id_beyond_bigint_is_refused(api: httpx.AsyncClient, last: str) -> None:
    """A `Last-Event-ID` that no event can have is a 4xx naming the header."""
    headers = [(b"Last-Event-ID", last.encode("latin-1"))]
    async with api.stream("GET", "/api/events", headers=headers) as response:
        await response.aread()
        assert_refused(response, "Last-Event-ID", (400, 422))


async def test_the_largest_event_id_streams(api: httpx.AsyncClient) -> None:
    """The bound is the column's: `after=2**63-1` is accepted and the stream opens."""
    async with api.stream("GET", "/api/events", params={"after": str(BIGINT_MAX)}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")


def cursor_of(created_at: Any, last_id: Any) -> str:
    raw = json.dumps([created_at, last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_of("9999-12-31T23:59:59-23:59", "g_1"),  # the offset pushes it past year 9999
        cursor_of("0001-01-01T00:00:00+14:00", "g_1"),  # and before year 1
        cursor_of("2026-01-01T00:00:00+00:00", "\ud800"),  # a lone surrogate
        cursor_of("2026-01-01T00:00:00+00:00", "g\u0000x"),  # NUL (PostgreSQL refuses it)
        cursor_of("2026-01-01T00:00:00+00:00", "g" * 41),
        cursor_of(1767225600, "g_1"),
        cursor_of("2026-01-01T00:00:00+00:00", ["g_1"]),
        "%%%",
    ],
)
async def test_crafted_list_cursors_are_a_400(api: httpx.AsyncClient, cursor: str) -> None:
    """A cursor the server did not hand out is a 400 naming `cursor`, on both databases."""
    response = await api.get("/api/generations", params={"cursor": cursor})
    assert_refused(response, "cursor", (400,))


# --- database and disk failures in a request ------------------------------------------------


class TcpCut:
    """A TCP forwarder to PostgreSQL that the test can cut: the database "goes away".

    Threads, not asyncio: the app's server thread connects through it while the test's own
    event loop is blocked waiting for that server to start.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="tcp-cut", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        # shutdown() first: close() alone does not wake a thread blocked in accept() on Linux,
        # and the listening socket would keep accepting.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.mark.postgres
async def test_a_lost_postgresql_is_a_503_without_the_url(tmp_path: Path, pg_server: str) -> None:
    """PostgreSQL going away mid-service: requests answer 503 `database_unavailable` with a
    one-line reason that carries neither the URL nor its password."""
    real = make_url(pg_server)
    cut = TcpCut(real.port or 5432)
    proxied = real.set(port=cut.port, password="pw-sentinel-9c1")
    url = proxied.render_as_string(hide_password=False)
    app = create_app(
        settings.load(data_dir=tmp_path / "data", database_url_raw=url), run_worker=False
    )
    with serving.in_thread(app, probe="/healthz", name="hardening-pg") as origin:
        async with httpx.AsyncClient(base_url=origin, timeout=30) as client:
            assert (await client.get("/api/generations")).status_code == 200
            cut.cut()
            response = await client.get("/api/generations")
    assert response.status_code == 503, response.text
    error = error_of(response)
    assert error["code"] == "database_unavailable"
    assert "\n" not in error["message"] and error["message"]
    assert "pw-sentinel" not in response.text and "postgresql" not in response.text


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (
            sa.exc.OperationalError(
                "INSERT", {}, sqlite3.OperationalError("database or disk is full")
            ),
            503,
            "database_unavailable",
        ),
        (
            sa.exc.DBAPIError("SELECT", {}, Exception("server closed the connection\nDETAIL: x")),
            503,
            "database_unavailable",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), 507, "disk_full"),
    ],
)
async def test_storage_failures_in_a_request_are_not_500s(
    api: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    status: int,
    code: str,
) -> None:
    """A database error is a 503 `database_unavailable` (one line), a full disk a 507."""

    async def broken(*_: Any, **__: Any) -> Any:
        raise failure

    monkeypatch.setattr(service.Service, "submit", broken)
    response = await api.post("/api/generations", json={"prompt": "a boat"})
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code and "\n" not in error["message"]


# --- 2. terminal and log injection ----------------------------------------------------------

HOSTILE = "\r\nFORGED 2026-01-01 [info] rooted\x1b]0;title\x07\x1b[2J\x9b2J\u2028FORGED2\x00"
PROMPT = "a paper boat" + HOSTILE.replace("\x00", "")
VIDEO_ID = "video_hostile"


class HostileProvider(BaseHTTPRequestHandler):
    """An OpenAI-shaped API whose every text field tries to drive the terminal."""

    def _json(self, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _video(self, **extra: Any) -> dict[str, Any]:
        return {
            "id": VIDEO_ID,
            "object": "video",
            "model": "sora-2",
            "seconds": "4",
            "size": "720x1280",
            "prompt": PROMPT,
            "created_at": int(time.time()),
            "progress": 0,
            "status": "queued",
            **extra,
        }

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self._json(self._video())

    def do_GET(self) -> None:
        if self.path.startswith(f"/v1/videos/{VIDEO_ID}"):
            error = {"code": "boom" + HOSTILE, "message": "it broke" + HOSTILE}
            self._json(self._video(status="failed", error=error))
        else:
            self._json({"object": "list", "data": [], "has_more": False})

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def hostile_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            **os.environ,
            "REELWATCH_DATA_DIR": str(tmp_path / "data"),
            "OPENAI_API_KEY": "sk-hostile",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
            "REELWATCH_POLL_MIN_SECONDS": "0.1",
            "REELWATCH_POLL_MAX_SECONDS": "0.5",
            "REELWATCH_LOG_FORMAT": "console",
        }
    finally:
        server.shutdown()
        server.server_close()


def rw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reelwatch", *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_inert(text: str) -> None:
    """No escape sequence, no carriage return, no line the hostile text started (a traceback's
    lines may continue a record, indented, but never start one)."""
    assert text.strip()
    for bad in ("\x1b", "\r", "\x07", "\x9b", "\x00", "\u2028"):
        assert bad not in text, (bad, text)
    forged = [line for line in text.split("\n") if line.startswith("FORGED")]
    assert not forged, forged


def status_of(env: dict[str, str]) -> str | None:
    db = Path(env["REELWATCH_DATA_DIR"]) / "reelwatch.db"
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status FROM generations").fetchone()
    return None if row is None else str(row[0])


@pytest.mark.slow
def test_cli_output_and_console_logs_never_carry_control_characters(
    hostile_env: dict[str, str], tmp_path: Path
) -> None:
    """A prompt and a provider error full of CR/LF, ANSI/OSC escapes and C1 controls: `list`,
    `status`, `history`, `submit` and the worker's console log show them inert; `--json`
    keeps them exact."""
    submitted = rw(hostile_env, "submit", PROMPT)
    assert submitted.returncode == 0, submitted.stderr
    assert_inert(submitted.stdout)
    gid = submitted.stdout.split()[0]
    stderr_path = tmp_path / "worker.log"
    with (
        stderr_path.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "reelwatch", "worker"],
            env=hostile_env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        ) as proc,
    ):
        try:
            deadline = time.monotonic() + 30
            while status_of(hostile_env) != "failed" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert status_of(hostile_env) == "failed"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    logged = stderr_path.read_text("utf-8", "surrogateescape")
    assert "it broke" in logged  # the failure was logged, harmlessly
    assert_inert(logged)
    events = json.loads(rw(hostile_env, "history", gid, "--json").stdout)
    folds = sum(1 for e in events if e["data"].get("quiet_polls"))  # "polled N times" lines
    history_lines = len(events) + folds
    view = json.loads(rw(hostile_env, "status", gid, "--json").stdout)
    # The first line, the summary lines, and the error's three (title, what, what to do).
    status_lines = 1 + len(presenter.summary_lines(view)) + len(view["assets"]) + 3
    for args, lines in (
        (["list"], 1),
        (["status", gid], status_lines),
        (["history", gid], history_lines),
    ):
        result = rw(hostile_env, *args)
        assert result.returncode == 0, result.stderr
        assert_inert(result.stdout)
        assert len(result.stdout.splitlines()) == lines, result.stdout  # one line per item
        assert "it broke" in result.stdout
    as_json = rw(hostile_env, "status", gid, "--json")
    assert_inert(as_json.stdout)
    data = json.loads(as_json.stdout)
    assert data["prompt"] == PROMPT
    # Exact, but for the NUL: no text column of PostgreSQL can hold one, so the store keeps
    # U+FFFD in its place on every database.
    assert data["error"]["message"] == "it broke" + HOSTILE.replace("\x00", "\ufffd")


def test_printable_escapes_controls_and_keeps_unicode() -> None:
    """Controls become visible escapes; letters, emoji (with joiners) and CJK stay as they are."""
    assert logs.printable("a\r\nb\x1b[2J\x07\x9b\u2028\u202e") == (
        "a\\r\\nb\\x1b[2J\\x07\\x9b\\u2028\\u202e"
    )
    kept = "caf\u00e9 \u2014 \U0001f469\u200d\U0001f4bb \u65e5\u672c\ttab"
    assert logs.printable(kept) == kept.replace("\t", "\\t")
    assert logs.printable("\ud800") == "\\ud800"


def test_console_log_lines_cannot_be_forged(capsys: pytest.CaptureFixture[str]) -> None:
    """Console logs: the message, values and an exception's text carry no raw control
    character, so a value cannot start a line of its own; JSON logs keep the exact text."""
    try:
        logs.configure("console")
        log = structlog.get_logger("test")
        try:
            raise ValueError("bad" + HOSTILE)
        except ValueError:
            log.exception("failed:" + HOSTILE, action="x", detail="v" + HOSTILE)
        console = capsys.readouterr().err
        assert "failed:" in console and "bad" in console
        assert_inert(console)
        logs.configure("json")
        log.warning("failed:" + HOSTILE, detail="v" + HOSTILE)
        line = json.loads(capsys.readouterr().err)
        assert line["event"] == "failed:" + HOSTILE and line["detail"] == "v" + HOSTILE
    finally:
        structlog.reset_defaults()


# --- 3. redirects never leave the provider's origin -----------------------------------------


class Origins:
    """The provider's API (which redirects) and another origin that must never be reached."""

    def __init__(self) -> None:
        self.elsewhere_hits: list[str] = []
        self.api = ""
        self.elsewhere = ""

    def video(self, video_id: str) -> dict[str, Any]:
        return {
            "id": video_id,
            "object": "video",
            "model": "sora-2",
            "seconds": "4",
            "size": "720x1280",
            "created_at": int(time.time()),
            "progress": 100,
            "status": "completed",
        }


async def _run(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def origins() -> AsyncIterator[Origins]:
    state = Origins()

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        await request.read()
        state.elsewhere_hits.append(f"{request.method} {request.path}")
        if request.path.endswith("/content"):
            return web.Response(body=b"stolen", content_type="video/mp4")
        return web.json_response(state.video("video_elsewhere"))

    async def api(request: web.Request) -> web.StreamResponse:
        await request.read()
        path = request.path
        if path == "/v1/videos/real":
            return web.json_response(state.video("real"))
        if path == "/v1/videos/real/content":
            return web.Response(body=b"mp4", content_type="video/mp4")
        if path.startswith("/v1/videos/same"):  # a same-origin move: allowed
            return web.Response(status=302, headers={"Location": path.replace("same", "real")})
        if path.startswith("/v1/videos/loop"):
            return web.Response(status=302, headers={"Location": path})
        status = 307 if request.method == "POST" else 302
        return web.Response(status=status, headers={"Location": state.elsewhere + path})

    runners = []
    for handler, attr in ((elsewhere, "elsewhere"), (api, "api")):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner, url = await _run(app)
        runners.append(runner)
        setattr(state, attr, url)
    try:
        yield state
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def redirected(origins: Origins) -> AsyncIterator[OpenAIVideos]:
    provider = OpenAIVideos(api_key="sk-r", base_url=f"{origins.api}/v1", timeout_s=5)
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_status_checks_refuse_cross_origin_redirects(
    origins: Origins, redirected: OpenAIVideos
) -> None:
    """A 302 from the status check to another origin is refused; nothing reaches it."""
    with pytest.raises(exceptions.ProviderRejected) as refused:
        await redirected.retrieve(base.Ref("video_1"))
    assert refused.value.error_code == "redirect_refused"
    assert origins.elsewhere_hits == []


async def test_downloads_refuse_cross_origin_redirects(
    origins: Origins, redirected: OpenAIVideos
) -> None:
    """A 302 from the content route to another origin is refused; nothing reaches it."""
    with pytest.raises(exceptions.ProviderRejected) as refused:
        async with redirected.download(base.Ref("video_1"), Variant.VIDEO):
            pass
    assert refused.value.error_code == "redirect_refused"
    assert origins.elsewhere_hits == []


async def test_creates_are_never_reposted_to_another_origin(
    origins: Origins, redirected: OpenAIVideos
) -> None:
    """A 307 answering the create (which would re-POST the prompt) is refused, as is a list
    page's redirect; nothing reaches the other origin."""
    with pytest.raises(exceptions.ProviderRejected) as refused:
        await redirected.create(
            base.CreateRequest("secret prompt", "sora-2", {"seconds": 4, "size": "720x1280"})
        )
    assert refused.value.error_code == "redirect_refused"
    with pytest.raises(exceptions.ProviderRejected):
        await redirected.remix("video_1", "secret remix")
    with pytest.raises(exceptions.ProviderRejected):
        async for _ in redirected.recent(since=datetime.now(UTC) - timedelta(days=1)):
            pass
    assert origins.elsewhere_hits == []


async def test_same_origin_redirects_are_followed_a_few_times(
    origins: Origins, redirected: OpenAIVideos
) -> None:
    """A move within the API's origin is followed; a redirect loop ends after 5 hops."""
    assert (await redirected.retrieve(base.Ref("same"))).video_id == "real"
    async with redirected.download(base.Ref("same"), Variant.VIDEO) as download:
        assert b"".join([c async for c in download.chunks()]) == b"mp4"
    with pytest.raises(exceptions.ProviderRejected) as looped:
        await redirected.retrieve(base.Ref("loop"))
    assert looped.value.error_code == "redirect_refused"
    assert origins.elsewhere_hits == []


# --- 4. Secure cookies over HTTPS -----------------------------------------------------------


def cookie_app() -> access.SecureCookies:
    async def home(_: Request) -> Response:
        response = PlainTextResponse("ok")
        response.set_cookie("plain", "1", httponly=True, samesite="strict")
        response.set_cookie("already", "2", secure=True)
        return response

    return access.SecureCookies(Starlette(routes=[Route("/", home)]))


def secure_flags(response: httpx.Response) -> list[int]:
    """How many `Secure` attributes each Set-Cookie header carries."""
    return [
        sum(part.strip().lower() == "secure" for part in value.split(";"))
        for value in response.headers.get_list("set-cookie")
    ]


async def test_cookies_get_secure_over_https_only() -> None:
    """Over https every Set-Cookie carries `Secure` exactly once; over http none is added."""
    transport = httpx.ASGITransport(app=cookie_app())
    async with httpx.AsyncClient(transport=transport, base_url="https://example.test") as client:
        assert secure_flags(await client.get("/")) == [1, 1]
    async with httpx.AsyncClient(transport=transport, base_url="http://example.test") as client:
        assert secure_flags(await client.get("/")) == [0, 1]


def test_cookies_get_secure_behind_a_trusted_tls_proxy() -> None:
    """Behind a proxy on loopback saying `X-Forwarded-Proto: https`, uvicorn reports https and
    the cookie is `Secure`; without the header it is not."""
    with serving.in_thread(cookie_app(), name="cookies") as origin:
        proxied = httpx.get(origin + "/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
        direct = httpx.get(origin + "/", timeout=10)
    assert secure_flags(proxied) == [1, 1]
    assert secure_flags(direct) == [0, 1]


async def test_the_dashboard_session_cookie_is_secure_over_https(app_settings: Settings) -> None:
    """create_app: the session cookie set by the login page is `Secure` when served over https.

    Needs `app.add_middleware(access.SecureCookies)` in web/app.py (the lead's file)."""
    async with in_process(app_settings, "https://localhost") as client:
        response = await client.get("/login")
    assert response.status_code == 200
    cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("reelwatch_session=") for c in cookies), cookies
    assert secure_flags(response) == [1] * len(cookies)


# --- schemathesis ---------------------------------------------------------------------------


def _openapi_fuzz(app_settings: Settings, examples: int) -> list[str]:
    """Every operation but the endless event stream, valid and invalid requests; the 5xx seen."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    found: list[str] = []
    app = create_app(app_settings, run_worker=False)
    with serving.in_thread(app, probe="/healthz", name="schemathesis") as origin:
        schema = schemathesis.openapi.from_url(origin + "/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/api/events":
                continue  # an endless stream; its parameters have their own tests above
            strategy = st.one_of(
                operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
                operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            )

            @hypothesis_settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=strategy)
            def call(case: Any) -> None:
                response = case.call(base_url=origin, timeout=10)
                if response.status_code >= 500:
                    found.append(f"{case.method} {case.formatted_path}: {response.text[:200]}")

            call()
    return found


@pytest.mark.slow
def test_the_api_answers_no_5xx_to_generated_requests(
    tmp_path: Path, sim: simulator.RunningSimulator
) -> None:
    """Schemathesis sends valid and invalid requests to every operation of the OpenAPI schema
    (SQLite, the simulator as provider): none is answered with a 5xx."""
    app_settings = settings.load(
        data_dir=tmp_path / "data",
        provider_config={
            "openai": {
                "api_key": "sk-test",
                "base_url": sim.base_url,
                "webhook_secret": WEBHOOK_SECRET,
            }
        },
        cron_secret="cron-hardening",
    )
    assert _openapi_fuzz(app_settings, examples=30) == []

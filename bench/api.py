"""`python -m bench api`: list endpoint latency at 100,000 generations, on SQLite and PostgreSQL.

For each database: a fresh database migrated by `Store.open`, N generations bulk-inserted with
realistic values (seeding is timed but not part of the figures), then the real app (no worker,
no provider) served by uvicorn in a thread and called sequentially over one keep-alive
connection from 127.0.0.1. Three requests are measured R times each after a warm-up:

- `first`: `GET /api/generations?limit=50`, the dashboard's landing query;
- `deep`: the same page size from a cursor about half-way down the table (row ~50,000),
  obtained once by following `next_cursor`;
- `failed`: `?status=failed&limit=50`, the first page of a filtered list.

Server and client share one process (and its GIL), as `serving.in_thread` does in the tests,
so these are end-to-end latencies with that handicap included. Beside the HTTP figures, the same
three queries are timed directly against `Store.page` (no HTTP, no JSON), and their query plans
are recorded, which says how much of each request is the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from psycopg import sql

from bench import common
from reelwatch import serving, settings
from reelwatch.models import Status
from reelwatch.store import Store, tables, urls
from reelwatch.web import create_app

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
TARGET_P99_MS = 50.0
PAGE = 50
WALK_PAGE = 200  # the largest page the API serves: fewer requests to reach the deep cursor
CHUNK = 5_000
WARMUP = 50
QUERIES = ("first", "deep", "failed")

# (status, share): most generations finished well; a few are still moving.
STATUS_MIX = (
    (Status.COMPLETED, 0.82),
    (Status.FAILED, 0.08),
    (Status.CANCELLED, 0.02),
    (Status.IN_PROGRESS, 0.04),
    (Status.QUEUED, 0.02),
    (Status.DOWNLOADING, 0.01),
    (Status.PENDING, 0.01),
)
MODELS = (("sora-2", 0.7), ("sora-2-pro", 0.3))
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
ERRORS = (
    ("moderation_blocked", "Your request was blocked by our moderation system."),
    ("timeout", "No progress for 15 minutes; gave up waiting."),
    ("server_error", "The provider reported an internal error while rendering."),
    ("download_failed", "Downloading the finished video failed after 5 attempts."),
)
WORDS = (
    "a slow dolly shot of a lighthouse at dusk, waves crashing on black rocks",
    "a golden retriever surfing a small wave, handheld camera, bright morning light",
    "macro footage of ink drifting through water in swirling blue and orange clouds",
    "an astronaut walking through a neon-lit night market in the rain, cinematic",
    "time-lapse of a city skyline from day to night, clouds racing overhead",
    "a paper boat sailing down a flooded street gutter, low angle, shallow focus",
)


def run(quick: bool) -> Path:
    rows = 5_000 if quick else 100_000
    repeats = 100 if quick else 500
    deep_row = rows // 2
    started = time.perf_counter()
    databases = {
        "sqlite": _sqlite(rows, repeats, deep_row),
        "postgresql": _postgresql(rows, repeats, deep_row),
    }
    met = {
        name: all(db["http"][q]["p99"] <= TARGET_P99_MS for q in QUERIES)
        for name, db in databases.items()
    }
    data = {
        "rows": rows,
        "repeats": repeats,
        "page_size": PAGE,
        "deep_row": deep_row,
        "warmup": WARMUP,
        "queries": {
            "first": f"GET /api/generations?limit={PAGE}",
            "deep": f"GET /api/generations?limit={PAGE}&cursor=<cursor at row ~{deep_row}>",
            "failed": f"GET /api/generations?status=failed&limit={PAGE}",
        },
        "method": (
            "sequential requests over one keep-alive httpx connection from 127.0.0.1 to the app "
            "served by uvicorn in a thread of the same process (run_worker=False, no provider); "
            "wall-clock per request in ms; `store` times Store.page directly in the same process"
        ),
        "databases": databases,
        "targets": {"p99_ms_max": TARGET_P99_MS, "met": met},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    path = common.write("api", data, quick=quick)
    if not quick:
        _plot(databases, rows)
    return path


# --- databases ----------------------------------------------------------------------------


def _sqlite(rows: int, repeats: int, deep_row: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="reelwatch-bench-api-") as folder:
        path = Path(folder) / "reelwatch.db"
        url = f"sqlite:///{path}"
        result = _measure(url, Path(folder), rows, repeats, deep_row)
        files = [path, path.with_name(path.name + "-wal")]
        size = sum(f.stat().st_size for f in files if f.exists())
        result["storage"] = {"file_mib": round(size / 2**20, 1), "analyzed": False}
        result["version"] = _scalar(url, "SELECT sqlite_version()")
        return result


def _postgresql(rows: int, repeats: int, deep_row: int) -> dict[str, Any]:
    name = f"reelwatch_bench_api_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            with tempfile.TemporaryDirectory(prefix="reelwatch-bench-api-") as folder:
                url = PG_URL.format(name=name)
                result = _measure(url, Path(folder), rows, repeats, deep_row)
                size = _scalar(url, "SELECT pg_total_relation_size('generations')")
                result["storage"] = {
                    "table_with_indexes_mib": round(int(size) / 2**20, 1),
                    "analyzed": True,
                }
                result["version"] = _scalar(url, "SHOW server_version")
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    return result


def _measure(url: str, data_dir: Path, rows: int, repeats: int, deep_row: int) -> dict[str, Any]:
    asyncio.run(_migrate(url))
    seed_s = _seed(url, rows)
    counted = int(_scalar(url, "SELECT count(*) FROM generations"))
    config = settings.load(
        data_dir=data_dir,
        database_url_raw=url,
        provider_config={"openai": {"api_key": None}},
        api_token=None,
    )
    app = create_app(config, run_worker=False)
    with (
        serving.in_thread(app, probe="/healthz", name="bench-api") as origin,
        httpx.Client(base_url=origin, timeout=30.0) as client,
    ):
        params: dict[str, dict[str, Any]] = {
            "first": {"limit": PAGE},
            "deep": {"limit": PAGE, "cursor": _walk(client, deep_row)},
            "failed": {"limit": PAGE, "status": "failed"},
        }
        for name in QUERIES:  # each answers a full page, or the figures mean nothing
            body = client.get("/api/generations", params=params[name]).json()
            assert len(body["data"]) == PAGE, (name, body)
        for i in range(WARMUP):
            client.get("/api/generations", params=params[QUERIES[i % len(QUERIES)]])
        http = {name: _timed(client, params[name], repeats) for name in QUERIES}
    store_ms, plans = asyncio.run(_direct(url, params, max(20, repeats // 5)))
    return {
        "rows": counted,
        "seed_seconds": round(seed_s, 1),
        "http": http,
        "store": store_ms,
        "plans": plans,
    }


async def _migrate(url: str) -> None:
    store = await Store.open(url)
    await store.close()


def _scalar(url: str, query: str) -> Any:
    engine = sa.create_engine(urls(url)[1])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


# --- seeding ------------------------------------------------------------------------------


def _seed(url: str, rows: int) -> float:
    """Bulk-insert `rows` generations in chunks; returns the seconds it took (incl. ANALYZE)."""
    rng = random.Random(20240601)
    now = datetime.now(UTC)
    engine = sa.create_engine(urls(url)[1])
    started = time.perf_counter()
    try:
        for offset in range(0, rows, CHUNK):
            batch = [_row(rng, now) for _ in range(min(CHUNK, rows - offset))]
            with engine.begin() as conn:
                conn.execute(tables.generations.insert(), batch)
        if engine.dialect.name == "postgresql":
            # What autovacuum would do within a minute of a bulk load; plans depend on it.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE generations"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _row(rng: random.Random, now: datetime) -> dict[str, Any]:
    status: Status = _pick(rng, STATUS_MIX)
    created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
    gen_id = f"gen_{rng.getrandbits(96):024x}"
    seconds = rng.choice((4, 8, 12))
    started_at = created + timedelta(seconds=rng.uniform(1, 20))
    finished = started_at + timedelta(seconds=rng.uniform(40, 600))
    active = status in (Status.PENDING, Status.QUEUED, Status.IN_PROGRESS, Status.DOWNLOADING)
    row: dict[str, Any] = {
        "id": gen_id,
        "provider": "openai",
        "video_id": None if status is Status.PENDING else f"video_{rng.getrandbits(128):032x}",
        "status": status.value,
        "progress": 100 if status is Status.COMPLETED else rng.randrange(0, 100),
        "model": _pick(rng, MODELS),
        "seconds": seconds,
        "size": rng.choice(SIZES),
        "prompt": _prompt(rng),
        "input_reference": None,
        "created_at": created,
        "watch_started_at": created,
        "submitted_at": None if status is Status.PENDING else created + timedelta(seconds=1),
        "started_at": None if status in (Status.PENDING, Status.QUEUED) else started_at,
        "remote_completed_at": None,
        "completed_at": None,
        "expires_at": None,
        "error_code": None,
        "error_message": None,
        "attempts": rng.randrange(1, 40),
        "failures": 0,
        "next_poll_at": created + timedelta(seconds=rng.uniform(1, 30)) if active else None,
        "last_progress_at": started_at if active else None,
        "remote_status": None if status is Status.PENDING else status.value,
        "submit_ambiguous": False,
        "assets": {},
        "updated_at": finished if not active else started_at,
        "download_bytes": 0,
        "download_total": None,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
    }
    if status is Status.COMPLETED:
        video = rng.randrange(2_000_000, 40_000_000)
        row.update(
            remote_completed_at=finished,
            completed_at=finished + timedelta(seconds=rng.uniform(1, 15)),
            expires_at=finished + timedelta(hours=1),
            assets=_assets(rng, gen_id, video),
            download_bytes=video,
            download_total=video,
        )
    elif status is Status.FAILED:
        code, message = rng.choice(ERRORS)
        row.update(error_code=code, error_message=message, failures=rng.randrange(1, 6))
        row.update(completed_at=finished)
    elif status is Status.CANCELLED:
        row.update(completed_at=finished)
    return row


def _prompt(rng: random.Random) -> str:
    first, second = rng.sample(WORDS, 2)
    return f"{first}; {second}"[: rng.randrange(70, 95)]


def _assets(rng: random.Random, gen_id: str, video: int) -> dict[str, Any]:
    def one(name: str, ext: str, size: int, content_type: str) -> dict[str, Any]:
        return {
            "key": f"{gen_id}/{name}{ext}",
            "bytes": size,
            "sha256": f"{rng.getrandbits(256):064x}",
            "content_type": content_type,
        }

    return {
        "video": one("video", ".mp4", video, "video/mp4"),
        "thumbnail": one("thumbnail", ".webp", rng.randrange(20_000, 120_000), "image/webp"),
        "spritesheet": one("spritesheet", ".jpg", rng.randrange(100_000, 600_000), "image/jpeg"),
    }


# --- measuring ----------------------------------------------------------------------------


def _walk(client: httpx.Client, deep_row: int) -> str:
    """Follow `next_cursor` until about `deep_row` rows are behind; that page's cursor."""
    cursor: str | None = None
    seen = 0
    while seen < deep_row:
        params: dict[str, Any] = {"limit": min(WALK_PAGE, deep_row - seen)}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/api/generations", params=params)
        response.raise_for_status()
        body = response.json()
        seen += len(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            raise RuntimeError(f"the list ended after {seen} rows, before row {deep_row}")
    return cursor


def _timed(client: httpx.Client, params: dict[str, Any], repeats: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: set[int] = set()
    began = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        response = client.get("/api/generations", params=params)
        latencies.append((time.perf_counter() - t0) * 1000)
        statuses.add(response.status_code)
    elapsed = time.perf_counter() - began
    if statuses != {200}:
        raise RuntimeError(f"unexpected statuses {sorted(statuses)} for {params}")
    return {**_ms(latencies), "requests_per_s": round(repeats / elapsed, 1)}


def _ms(values: list[float]) -> dict[str, Any]:
    stats = common.summary(values)
    return {
        "count": stats["count"],
        "p50": _round(stats["median"]),
        "p90": _round(stats["p90"]),
        "p99": _round(stats["p99"]),
        "max": _round(stats["max"]),
    }


def _round(value: float | int | None) -> float | None:
    return None if value is None else round(float(value), 2)


@contextlib.contextmanager
def _capture() -> Iterator[list[tuple[str, Any]]]:
    """Every statement any engine sends while the block runs (to EXPLAIN the exact SQL)."""
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listener)


async def _direct(
    url: str, params: dict[str, dict[str, Any]], repeats: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time `Store.page` alone for each query, and record the plan of the SQL it sends."""
    store = await Store.open(url, upgrade=False)
    try:
        calls: dict[str, Callable[[], Any]] = {
            "first": lambda: store.page(limit=PAGE),
            "deep": lambda: store.page(limit=PAGE, cursor=params["deep"]["cursor"]),
            "failed": lambda: store.page(limit=PAGE, statuses=[Status.FAILED]),
        }
        timings: dict[str, Any] = {}
        statements: dict[str, tuple[str, Any]] = {}
        for name, call in calls.items():
            with _capture() as seen:
                await call()
            statements[name] = next(s for s in seen if "FROM generations" in s[0])
            for _ in range(10):  # warm, like the HTTP figures
                await call()
            latencies = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                await call()
                latencies.append((time.perf_counter() - t0) * 1000)
            timings[name] = _ms(latencies)
    finally:
        await store.close()
    return timings, {name: _explain(url, *statement) for name, statement in statements.items()}


def _explain(url: str, statement: str, parameters: Any) -> dict[str, Any]:
    engine = sa.create_engine(urls(url)[1])
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cursor = raw.cursor()
            if engine.dialect.name == "sqlite":
                cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
                lines = [str(r[-1]) for r in cursor.fetchall()]
            else:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
                lines = [str(r[0]) for r in cursor.fetchall()]
            cursor.close()
    finally:
        engine.dispose()
    return {"sql": " ".join(statement.split()), "plan": lines}


# --- plot ---------------------------------------------------------------------------------


def _plot(databases: dict[str, Any], rows: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "first": "first page",
        "deep": f"deep page (row ~{rows // 2:,})",
        "failed": "status=failed",
    }
    series = [
        (db, stat, [databases[db]["http"][q][stat] for q in QUERIES])
        for db in databases
        for stat in ("p50", "p99")
    ]
    colours = {"sqlite": ("#9ecae1", "#3182bd"), "postgresql": ("#a1d99b", "#31a354")}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (db, stat, values) in enumerate(series):
        xs = [q + (i - (len(series) - 1) / 2) * width for q in range(len(QUERIES))]
        colour = colours.get(db, ("#cccccc", "#666666"))[stat == "p99"]
        bars = ax.bar(xs, values, width, label=f"{db} {stat}", color=colour)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.axhline(TARGET_P99_MS, color="#d62728", linestyle="--", linewidth=1, label="p99 target")
    ax.set_xticks(range(len(QUERIES)), [labels[q] for q in QUERIES])
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"GET /api/generations, limit={PAGE}, {rows:,} rows, sequential")
    ax.legend(fontsize=8, ncols=3)
    ax.set_ylim(0, max(TARGET_P99_MS, *(max(v) for *_, v in series)) * 1.2)
    common.save_plot(fig, "api.png", dpi=120)

"""Security scenarios 13-15 and 17-20 against a real `reelwatch serve` (and worker, simulator).

Each starts its processes through tests/chaos/harness.py, attacks them over real HTTP, asserts
what ../shared/reliability-scenarios.md expects and prints its figure with `harness.report`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import psycopg
import pytest
from aiohttp import web
from psycopg import sql as pg_sql
from sqlalchemy.engine import make_url

from reelwatch import settings as settings_module
from reelwatch.providers import base as providers_base
from reelwatch.providers import standard_webhooks
from reelwatch.web import create_app
from tests.chaos import harness

pytestmark = pytest.mark.chaos

SIGNING_KEY = secrets.token_bytes(32)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(SIGNING_KEY).decode()
API_TOKEN = "tok_" + secrets.token_hex(20)
CRON_SECRET = "cron_" + secrets.token_hex(24)
EVIL_ORIGIN = "https://evil.example"
# With a webhook secret set, polling is only a safety net (120 s by default); scenarios that
# send no webhook of their own poll faster so their generations move.
SAFETY_NET_POLL_S = "0.5"
# What status ranks a generation walks through; it must never walk back.
RANK = {"pending": 0, "queued": 1, "in_progress": 2, "downloading": 3, "completed": 4}


# --- shared helpers -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signature(body: bytes, webhook_id: str, stamp: int | str, key: bytes = SIGNING_KEY) -> str:
    """The Standard Webhooks `v1,<base64 HMAC-SHA256>` of one delivery."""
    signed = f"{webhook_id}.{stamp}.".encode() + body
    return "v1," + b64(hmac.new(key, signed, hashlib.sha256).digest())


def signed_headers(
    body: bytes, webhook_id: str, *, stamp: int | None = None, key: bytes = SIGNING_KEY
) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature(body, webhook_id, stamp, key),
    }


def event_body(video_id: str, kind: str = "video.completed", **extra: Any) -> bytes:
    """An OpenAI webhook event about one video, as the provider serialises it (compact)."""
    event = {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "created_at": int(time.time()),
        "type": kind,
        "data": {"id": video_id, **extra},
    }
    return json.dumps(event, separators=(",", ":")).encode()


FRONT_ROUTE = {
    "provider": "openai",
    "model": "sora-2",
    "seconds": {"param": "seconds", "allowed": [4, 8, 12]},
    "sizes": {"720x1280": {"size": "720x1280"}},
}


def bearer(token: str = API_TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def login(base: str, token: str = API_TOKEN) -> tuple[httpx.Client, str]:
    """A signed-in dashboard session: (its client with the cookie, its CSRF token)."""
    client = httpx.Client(base_url=base, timeout=10)
    csrf = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"token": token, "csrf": csrf, "next": "/"})
    assert answer.status_code == 303, answer.text
    return client, csrf


def submit(base: str, prompt: str, *, token: str = API_TOKEN) -> dict[str, Any]:
    """Submit through the API (stored, then created at the provider); the generation."""
    answer = httpx.post(
        f"{base}/api/generations", json={"prompt": prompt}, headers=bearer(token), timeout=30
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def status_of(db_url: str, generation_id: str) -> str:
    return str(
        harness.sql(db_url, "SELECT status FROM generations WHERE id = %s", generation_id)[0][0]
    )


def wait_status(db_url: str, generation_id: str, wanted: str, *, timeout: float = 30) -> None:
    try:
        harness.wait_until(
            lambda: status_of(db_url, generation_id) == wanted,
            timeout=timeout,
            interval=0.1,
            what=f"{generation_id} to be {wanted}",
        )
    except AssertionError as exc:
        row = harness.rows(db_url, "id = %s", generation_id)
        raise AssertionError(f"{exc}; the row: {row}") from None


def server_errors(proc: harness.Proc) -> list[str]:
    """Lines of a server's output that say a request crashed (500s, tracebacks)."""
    return [
        line
        for line in proc.output().splitlines()
        if "Traceback" in line or '"action": "http_error"' in line
    ]


def routes_of(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route in the app's table, included routers flattened.

    FastAPI >= 0.16x keeps included routers as `_IncludedRouter` entries that expose
    `effective_route_contexts()`; older versions list the routes themselves.
    """
    found: list[tuple[str, str]] = []
    for route in app.routes:
        contexts = (
            route.effective_route_contexts()
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for ctx in contexts:
            path = getattr(ctx, "path", None)
            methods = getattr(ctx, "methods", None)
            if path is None:
                continue
            if not methods:  # a mount (static files)
                found.append(("GET", f"{path}/{{path}}"))
                continue
            found.extend((m, path) for m in sorted(methods) if m != "HEAD")
    return found


@pytest.fixture
def procs() -> Iterator[list[harness.Proc]]:
    """Processes a scenario started: held until it ends, then stopped (a child process must
    not be dropped while it runs)."""
    started: list[harness.Proc] = []
    yield started
    for proc in started:
        proc.terminate()


def serve(procs: list[harness.Proc], env: dict[str, str], *args: str) -> tuple[harness.Proc, str]:
    """`reelwatch serve`, up and answering; stopped when the scenario ends."""
    proc, base = harness.start_serve(env, *args)
    procs.append(proc)
    return proc, base


# --- 13: webhook signature matrix -------------------------------------------------------------


@pytest.mark.slow
def test_webhook_signature_matrix(pg: str, data_dir: Path, procs: list[harness.Proc]) -> None:
    """Only a valid Standard Webhooks signature gets a 2xx; every forgery 400/401, never 500."""
    env = harness.env_for(
        db_url=pg, sim=None, data_dir=data_dir, OPENAI_WEBHOOK_SECRET=WEBHOOK_SECRET
    )
    proc, base = serve(procs, env)
    now = int(time.time())
    body = event_body("video_signature_matrix")

    def case(webhook_id: str, **changes: Any) -> tuple[bytes, dict[str, Any]]:
        headers: dict[str, Any] = signed_headers(body, webhook_id, stamp=now)
        for name, value in changes.items():
            name = name.replace("_", "-")
            if value is None:
                headers.pop(name)
            else:
                headers[name] = value
        return body, headers

    def valid_sig(webhook_id: str, stamp: int = now, payload: bytes = body) -> str:
        return signature(payload, webhook_id, stamp)

    other_key = secrets.token_bytes(32)
    changed = body.replace(b"video_signature_matrix", b"video_signature_matriy")
    reserialised = json.dumps(json.loads(body), indent=2, sort_keys=True).encode()
    assert reserialised != body and json.loads(reserialised) == json.loads(body)
    cases: dict[str, tuple[bytes, dict[str, Any], bool]] = {}

    def add(name: str, expected_ok: bool, payload: bytes, headers: dict[str, Any]) -> None:
        cases[name] = (payload, headers, expected_ok)

    add("valid", True, *case("wh_valid"))
    add("body_1_byte", False, changed, case("wh_changed")[1])
    add("reserialised_json", False, reserialised, case("wh_reserialised")[1])
    add("wrong_secret", False, body, signed_headers(body, "wh_wrong", stamp=now, key=other_key))
    old = now - 301
    add("ts_now-301", False, body, signed_headers(body, "wh_old", stamp=old))
    # The cases are built first and sent one by one; 30 s of slack keeps this one beyond the
    # 300 s tolerance however long the sending takes (301 flaked on a loaded machine).
    add("ts_now+331", False, body, signed_headers(body, "wh_future", stamp=now + 331))
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        add(f"missing_{header}", False, *case(f"wh_missing_{header}", **{header: None}))
    add(
        "missing_all",
        False,
        body,
        {"content-type": "application/json"},
    )
    rotated_old = signature(body, "wh_rotation", now, other_key)
    add(
        "two_signatures_old+new",
        True,
        *case("wh_rotation", webhook_signature=f"{rotated_old} {valid_sig('wh_rotation')}"),
    )
    add(
        "two_signatures_new+old",
        True,
        *case("wh_rotation2", webhook_signature=f"{valid_sig('wh_rotation2')} {rotated_old}"),
    )
    add(
        "only_v1a",
        False,
        *case("wh_v1a", webhook_signature="v1a," + valid_sig("wh_v1a").removeprefix("v1,")),
    )
    add(
        "no_v1_prefix",
        False,
        *case("wh_bare", webhook_signature=valid_sig("wh_bare").removeprefix("v1,")),
    )
    add(
        "non_ascii_signature",
        False,
        *case("wh_utf8", webhook_signature=("v1,é" + valid_sig("wh_utf8")[4:]).encode()),
    )
    # Signed over the UTF-8 id, so only the header's non-ASCII bytes can refuse it.
    utf8_id = "wh_é"
    utf8_headers = {
        "content-type": "application/json",
        "webhook-id": utf8_id.encode(),
        "webhook-timestamp": str(now),
        "webhook-signature": signature(body, utf8_id, now),
    }
    add("non_ascii_id", False, body, utf8_headers)
    fullwidth = "\uff11\uff12\uff13".encode()  # digits that str.isdigit() also accepts
    add("non_ascii_timestamp", False, *case("wh_digits", webhook_timestamp=fullwidth))
    add("bad_base64", False, *case("wh_b64", webhook_signature="v1,!!!not base64!!!"))
    add("huge_timestamp", False, *case("wh_huge", webhook_timestamp="9" * 40))

    matrix: dict[str, int] = {}
    for name, (payload, headers, _) in cases.items():
        try:  # a connection each: a crash in one case must not hide the next
            answer = httpx.post(
                f"{base}/api/webhooks/openai", content=payload, headers=headers, timeout=10
            )
        except httpx.TransportError:
            matrix[name] = 0  # no answer at all (a reset connection)
            continue
        matrix[name] = answer.status_code
    wrong = {
        name: matrix[name]
        for name, (_, _, ok) in cases.items()
        if (200 <= matrix[name] < 300) != ok or (not ok and matrix[name] not in (400, 401))
    }

    # Verification cost, measured in-process on the function the route calls.
    rounds = harness.scale(5_000, 50_000)
    lower = signed_headers(body, "wh_timing", stamp=now)
    forged = {**lower, "webhook-signature": "v1," + b64(secrets.token_bytes(32))}
    timings: dict[str, list[float]] = {"valid": [], "forged": []}
    key = standard_webhooks.key_of(WEBHOOK_SECRET)
    for _ in range(rounds):
        for name, headers in (("valid", lower), ("forged", forged)):
            started = time.perf_counter_ns()
            with contextlib.suppress(providers_base.WebhookRejected):
                standard_webhooks.verify(body, headers, key, float(now))
            timings[name].append((time.perf_counter_ns() - started) / 1000)
    p99 = {name: percentile(values, 99) for name, values in timings.items()}
    crashes = server_errors(proc)
    harness.report(
        13,
        "webhook signature matrix",
        cases=len(cases),
        accepted=sum(1 for s in matrix.values() if 200 <= s < 300),
        rejected_4xx=sum(1 for s in matrix.values() if s in (400, 401)),
        server_errors=sum(1 for s in matrix.values() if s >= 500),
        verify_p99_us=p99["valid"],
        verify_forged_p99_us=p99["forged"],
        verify_rounds=rounds,
        matrix=" ".join(f"{k}={v}" for k, v in matrix.items()),
    )
    assert not wrong, f"unexpected statuses: {wrong}"
    assert not crashes, crashes
    assert p99["valid"] < 1000 and p99["forged"] < 1000, p99


# --- 14: webhook replay, duplicates, ordering -------------------------------------------------


@pytest.mark.slow
def test_webhook_replay_duplicates_and_ordering(
    pg: str, sim: harness.Sim, data_dir: Path, procs: list[harness.Proc]
) -> None:
    """Each webhook id is applied once, even raced to two servers; state never walks back."""
    env = harness.env_for(
        db_url=pg,
        sim=sim,
        data_dir=data_dir,
        OPENAI_WEBHOOK_SECRET=WEBHOOK_SECRET,
        REELWATCH_API_TOKEN=API_TOKEN,
    )
    (first, base_a), (second, base_b) = serve(procs, env), serve(procs, env)
    g = submit(base_a, "[sim:queue=0,render=3,bytes=4096] a lighthouse, delivered twice")
    video_id = g["video_id"]
    assert video_id, g
    latencies_ms: list[float] = []
    results: dict[str, list[str]] = {}
    # One client per server, kept: the latency measured is the receiver's, not a new
    # connection's (or a new client's TLS context).
    clients = {base: httpx.Client(base_url=base, timeout=10) for base in (base_a, base_b)}

    def deliver(base: str, webhook_id: str, kind: str = "video.completed") -> str:
        body = event_body(video_id, kind)
        started = time.perf_counter()
        answer = clients[base].post(
            "/api/webhooks/openai", content=body, headers=signed_headers(body, webhook_id)
        )
        latencies_ms.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
        outcome = str(answer.json().get("result", "not_handled"))
        results.setdefault(webhook_id, []).append(outcome)
        return outcome

    # `completed` before the provider has even finished: only a hint, it forces nothing.
    assert deliver(base_a, "wh_early") == "applied"
    assert deliver(base_a, "wh_early") == "duplicate"
    assert status_of(pg, g["id"]) != "completed"

    # The same id to two processes at the same instant, round after round.
    rounds = harness.scale(20, 200)
    barrier = threading.Barrier(2)

    def raced(base: str, webhook_id: str) -> str:
        barrier.wait()
        return deliver(base, webhook_id)

    with ThreadPoolExecutor(2) as pool:
        for n in range(rounds):
            webhook_id = f"wh_race_{n}"
            outcomes = list(pool.map(raced, (base_a, base_b), (webhook_id, webhook_id)))
            assert sorted(outcomes) == ["applied", "duplicate"], (webhook_id, outcomes)

    # With webhooks configured polling is only a slow safety net: the provider's own
    # `video.completed`, once it has finished, is what moves the generation on.
    def remote_status() -> str:
        answer = httpx.get(
            f"{sim.base_url}/videos/{video_id}", headers=bearer(sim.api_key), timeout=5
        )
        return str(answer.json()["status"])

    harness.wait_until(lambda: remote_status() == "completed", timeout=20, what="the render")
    assert deliver(base_b, "wh_final") == "applied"
    wait_status(pg, g["id"], "completed")
    # Late and out-of-order news after completion: recorded, never a step back.
    deliver(base_b, "wh_late_in_progress", "video.in_progress")
    deliver(base_b, "wh_late_failed", "video.failed")
    deliver(base_a, "wh_late_failed", "video.failed")
    assert status_of(pg, g["id"]) == "completed"

    for client in clients.values():
        client.close()
    per_id = dict(
        harness.sql(
            pg,
            "SELECT data->>'webhook_id', count(*) FROM events"
            " WHERE data->>'webhook_id' IS NOT NULL GROUP BY 1",
        )
    )
    deliveries = harness.sql(pg, "SELECT webhook_id, result FROM webhook_deliveries")
    statuses = [
        s
        for (s,) in harness.sql(
            pg, "SELECT status FROM events WHERE generation_id = %s ORDER BY id", g["id"]
        )
    ]
    regressions = sum(1 for a, b in itertools.pairwise(statuses) if RANK.get(b, 9) < RANK.get(a, 9))
    handled = {w for w, r in results.items() if "applied" in r}
    harness.report(
        14,
        "webhook replay",
        webhook_ids=len(results),
        race_rounds=rounds,
        max_side_effects_per_id=max(per_id.values()),
        status_regressions=regressions,
        receiver_p99_ms=percentile(latencies_ms, 99),
        receiver_p50_ms=percentile(latencies_ms, 50),
    )
    assert set(per_id) == handled and set(per_id.values()) == {1}, per_id
    # One delivery row per id of a handled type (`video.in_progress` is acknowledged only).
    # Stored as "<provider>/<webhook-id>" (ids are only unique per provider).
    stored = sorted(w.removeprefix("openai/") for w, _ in deliveries)
    assert stored == sorted(set(results) - {"wh_late_in_progress"})
    assert regressions == 0, statuses
    assert percentile(latencies_ms, 99) < 1000
    assert not server_errors(first) and not server_errors(second)


# --- 15: cron endpoint authentication --------------------------------------------------------


def bootstrap_median_difference(
    a: list[float], b: list[float], *, resamples: int = 1000, seed: int = 15
) -> tuple[float, float, float]:
    """median(b) - median(a) with a 95 % percentile-bootstrap interval.

    Hand-written with the standard library: numpy and scipy are not installed here.
    """
    rng = random.Random(seed)
    observed = statistics.median(b) - statistics.median(a)
    differences = sorted(
        statistics.median(rng.choices(b, k=len(b))) - statistics.median(rng.choices(a, k=len(a)))
        for _ in range(resamples)
    )
    return observed, differences[int(0.025 * resamples)], differences[int(0.975 * resamples) - 1]


@pytest.mark.slow
def test_cron_authentication(
    pg: str, sim: harness.Sim, data_dir: Path, procs: list[harness.Proc]
) -> None:
    """Every wrong cron credential is a 4xx (never 500, never echoed); timing does not leak."""
    env = harness.env_for(db_url=pg, sim=sim, data_dir=data_dir, CRON_SECRET=CRON_SECRET)
    proc, base = serve(procs, env)
    route = "/api/cron/poll-sora-status"
    basic = b64(f"cron:{CRON_SECRET}".encode())
    attempts: dict[str, dict[str, Any]] = {
        "missing": {},
        "basic": {"authorization": f"Basic {basic}"},
        "wrong": {"authorization": "Bearer not-the-secret"},
        "right+extra_byte": {"authorization": f"Bearer {CRON_SECRET}x"},
        "prefix_only": {"authorization": f"Bearer {CRON_SECRET[:-1]}"},
        "bare_scheme": {"authorization": "Bearer"},
        "1MB_header": {"authorization": "Bearer " + "a" * (1 << 20)},
        "non_ascii_utf8": {"authorization": f"Bearer {CRON_SECRET[:-1]}é".encode()},
        "non_ascii_latin1": {"authorization": f"Bearer {CRON_SECRET[:-1]}é".encode("latin-1")},
    }
    matrix: dict[str, int] = {}
    echoed: list[str] = []
    with httpx.Client(base_url=base, timeout=20) as client:
        for name, headers in attempts.items():
            answer = client.get(route, headers=headers)
            matrix[name] = answer.status_code
            if CRON_SECRET in answer.text or CRON_SECRET in str(answer.headers):
                echoed.append(name)
        right = client.get(route, headers={"authorization": f"Bearer {CRON_SECRET}"})
        assert right.status_code == 200, right.text

        # Timing: a wrong first byte and a wrong last byte must cost the same.
        trials = harness.scale(2_000, 10_000)
        flip = "0" if CRON_SECRET[0] != "0" else "1"
        early = {"authorization": f"Bearer {flip}{CRON_SECRET[1:]}"}
        last = "0" if CRON_SECRET[-1] != "0" else "1"
        late = {"authorization": f"Bearer {CRON_SECRET[:-1]}{last}"}
        order = ["early"] * trials + ["late"] * trials
        random.Random(15).shuffle(order)
        times: dict[str, list[float]] = {"early": [], "late": []}
        for _ in range(50):  # warm the connection and the server's code paths
            client.get(route, headers=early)
        for which in order:
            headers = early if which == "early" else late
            started = time.perf_counter()
            status = client.get(route, headers=headers).status_code
            times[which].append((time.perf_counter() - started) * 1000)
            assert status == 401
    delta_ms, low_ms, high_ms = bootstrap_median_difference(times["early"], times["late"])
    logged_secret = CRON_SECRET in proc.output()
    harness.report(
        15,
        "cron authentication",
        matrix=" ".join(f"{k}={v}" for k, v in matrix.items()),
        server_errors=sum(1 for s in matrix.values() if s >= 500),
        secret_echoed=len(echoed) + int(logged_secret),
        trials_each=trials,
        median_delta_us=delta_ms * 1000,
        ci95_us=f"[{low_ms * 1000:.1f}, {high_ms * 1000:.1f}]",
    )
    assert all(400 <= s < 500 for s in matrix.values()), matrix
    assert all(s == 401 for k, s in matrix.items() if k != "1MB_header"), matrix
    assert not echoed and not logged_secret
    assert low_ms > -1.0 and high_ms < 1.0, (low_ms, high_ms)
    assert not server_errors(proc)


# --- 17: dashboard CSRF and access control ---------------------------------------------------


@dataclass
class Action:
    """One state-changing route, with the request that would change something if allowed."""

    method: str
    route: str  # as in the route table
    path: str
    kind: str  # "api" (JSON), "form" (dashboard form), "webhook" (signed, no session)
    fields: dict[str, Any] = field(default_factory=dict)


def attempt(
    client: httpx.Client,
    action: Action,
    *,
    csrf: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send `action` from `client` (its cookies), with this CSRF token (None: none at all)."""
    extra = dict(headers or {})
    if action.kind == "api":
        if csrf is not None:
            extra["x-csrf-token"] = csrf
        return client.request(action.method, action.path, json=action.fields, headers=extra)
    if action.kind == "webhook":
        return client.request(action.method, action.path, content=b"{}", headers=extra)
    data = dict(action.fields)
    if csrf is not None:
        data["csrf"] = csrf
    return client.request(action.method, action.path, data=data, headers=extra)


def refused(answer: httpx.Response, action: Action) -> bool:
    """A refusal: 401/403 (or 400 for an unsigned webhook), or the dashboard's login redirect."""
    if action.kind == "webhook":
        return answer.status_code in (400, 401)
    if answer.status_code == 303:
        return answer.headers.get("location", "").startswith("/login")
    return answer.status_code in (401, 403)


def changes(db_url: str) -> tuple[int, int]:
    """What any accepted action would move: generations made, admin events appended."""
    made = harness.sql(db_url, "SELECT count(*) FROM generations")[0][0]
    acted = harness.sql(
        db_url, "SELECT count(*) FROM events WHERE kind IN ('cancelled', 'reset', 'retry')"
    )[0][0]
    return int(made), int(acted)


def cookie_flags(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


@pytest.mark.slow
def test_dashboard_csrf_and_access_control(
    pg: str, sim: harness.Sim, data_dir: Path, procs: list[harness.Proc]
) -> None:
    """Every state-changing route refuses forged, foreign and anonymous requests; GET changes
    nothing; session cookies are HttpOnly and SameSite; only allow-listed routes are public."""
    env = harness.env_for(
        db_url=pg,
        sim=sim,
        data_dir=data_dir,
        REELWATCH_API_TOKEN=API_TOKEN,
        OPENAI_WEBHOOK_SECRET=WEBHOOK_SECRET,
        REELWATCH_WEBHOOK_POLL_SECONDS=SAFETY_NET_POLL_S,
        CRON_SECRET=CRON_SECRET,
        # The /v1/videos front's sora-2, routed to the OpenAI dialect this harness configures.
        REELWATCH_MODEL_ROUTES=json.dumps({"sora-2": FRONT_ROUTE}),
    )
    local_env = {k: v for k, v in env.items() if k != "REELWATCH_API_TOKEN"}
    proc, base = serve(procs, env)
    local, local_base = serve(procs, local_env)  # loopback-only mode: no token
    active = submit(base, "[sim:queue=0,render=600] a slow lighthouse")["id"]
    failed = submit(base, "[sim:queue=0,render=0.2,fail=moderation_blocked] a refused one")["id"]
    wait_status(pg, failed, "failed")
    made = httpx.post(
        f"{base}/v1/videos",
        json={"prompt": "[sim:queue=0,render=600] a front video"},
        headers=bearer(),
        timeout=30,
    )
    assert made.status_code == 200, made.text
    video = made.json()["id"]

    actions = [
        Action("POST", "/api/generations", "/api/generations", "api", {"prompt": "forged"}),
        *(
            Action(
                "POST",
                f"/api/generations/{{generation_id}}/{verb}",
                f"/api/generations/{active}/{verb}",
                "api",
            )
            for verb in ("reset", "cancel")
        ),
        Action(
            "POST",
            "/api/generations/{generation_id}/retry",
            f"/api/generations/{failed}/retry",
            "api",
            {"confirm": True},
        ),
        *(
            Action(
                "POST",
                f"/generations/{{generation_id}}/{verb}",
                f"/generations/{active}/{verb}",
                "form",
                {"next": "/"},
            )
            for verb in ("reset", "cancel")
        ),
        Action(
            "POST",
            "/generations/{generation_id}/retry",
            f"/generations/{failed}/retry",
            "form",
            {"confirm": "yes"},
        ),
        Action(
            "POST",
            "/admin/bulk",
            "/admin/bulk",
            "form",
            {"action": "retry", "status": "failed", "ids": failed, "confirm": "yes"},
        ),
        Action("POST", "/new", "/new", "form", {"prompt": "forged"}),
        Action("POST", "/api/estimate", "/api/estimate", "api", {"prompt": "forged"}),
        Action("POST", "/login", "/login", "form", {"token": API_TOKEN, "next": "/"}),
        Action("POST", "/logout", "/logout", "form"),
        Action("POST", "/api/webhooks/{provider}", "/api/webhooks/openai", "webhook"),
        # The /v1/videos front: Bearer keys only (a session is not one), loopback rules else.
        Action("POST", "/v1/videos", "/v1/videos", "api", {"prompt": "forged"}),
        Action("DELETE", "/v1/videos/{video_id}", f"/v1/videos/{video}", "api"),
        Action(
            "POST",
            "/v1/videos/{video_id}/remix",
            f"/v1/videos/{video}/remix",
            "api",
            {"prompt": "forged"},
        ),
    ]
    user, user_csrf = login(base)
    other, other_csrf = login(base)
    anonymous = httpx.Client(base_url=base, timeout=10)
    cross = {"sec-fetch-site": "cross-site", "origin": EVIL_ORIGIN}
    token_cases: dict[str, Callable[[Action], httpx.Response]] = {
        "unauthenticated": lambda a: attempt(anonymous, a, csrf=None),
        "no_csrf_token": lambda a: attempt(user, a, csrf=None),
        "other_sessions_token": lambda a: attempt(user, a, csrf=other_csrf),
        "cross_site": lambda a: attempt(user, a, csrf="x" * 43, headers=cross),
        "foreign_origin": lambda a: attempt(user, a, csrf=None, headers={"origin": EVIL_ORIGIN}),
    }
    local_user = httpx.Client(base_url=local_base, timeout=10)
    local_csrf = csrf_of(local_user.get("/").text)
    local_cases: dict[str, Callable[[Action], httpx.Response]] = {
        "local_cross_site_valid_token": lambda a: attempt(
            local_user, a, csrf=local_csrf, headers={"sec-fetch-site": "cross-site"}
        ),
        "local_foreign_origin_valid_token": lambda a: attempt(
            local_user, a, csrf=local_csrf, headers={"origin": EVIL_ORIGIN}
        ),
    }
    before = changes(pg)
    outcomes: dict[tuple[str, str], int] = {}
    accepted: list[tuple[str, str, int]] = []
    for action in actions:
        for name, send in token_cases.items():
            answer = send(action)
            outcomes[(action.route, name)] = answer.status_code
            if not refused(answer, action):
                accepted.append((action.route, name, answer.status_code))
        # In loopback mode there is no login (nor logout); webhooks never use a session.
        if action.kind == "webhook" or action.route in ("/login", "/logout"):
            continue
        for name, send in local_cases.items():
            answer = send(action)
            outcomes[(action.route, name)] = answer.status_code
            if not refused(answer, action):
                accepted.append((action.route, name, answer.status_code))
    assert changes(pg) == before, "a refused request changed something"
    assert user.get("/").status_code == 200, "a forged logout signed the session out"
    assert anonymous.get("/").status_code == 303, "a forged login signed a session in"

    # GET on mutating routes, with the same parameters: 405, or (where the path also has a
    # page) that page, changing nothing.
    app = create_app(settings_module.load(api_token=API_TOKEN, database_url_raw=pg))
    table = routes_of(app)
    with_get_page = {path for method, path in table if method == "GET"}
    gets: dict[str, int] = {}
    for action in actions:
        params = {k: str(v) for k, v in action.fields.items()}
        gets[action.route] = user.get(action.path, params=params, headers=bearer()).status_code
    assert changes(pg) == before, "a GET changed something"
    bad_gets = {r: s for r, s in gets.items() if s != (200 if r in with_get_page else 405)}

    # Defence in depth with the token set: a valid token from a cross-site context.
    probe = Action(
        "POST",
        "/generations/{generation_id}/cancel",
        f"/generations/{active}/cancel",
        "form",
        {"next": "/"},
    )
    fetch_metadata = attempt(user, probe, csrf=user_csrf, headers={"sec-fetch-site": "cross-site"})
    fetch_metadata_enforced = refused(fetch_metadata, probe)

    # The forms work at all: the same request, same-origin with its token, is accepted.
    if fetch_metadata_enforced:
        control = attempt(user, probe, csrf=user_csrf, headers={"sec-fetch-site": "same-origin"})
        assert control.status_code == 303 and "notice=" in control.headers["location"]
    wait_status(pg, active, "cancelled", timeout=5)

    # Cookies: HttpOnly and SameSite always; Secure when the request came over HTTPS.
    plain = httpx.get(f"{base}/login", timeout=10).headers.get("set-cookie", "")
    https = httpx.get(
        f"{base}/login", headers={"x-forwarded-proto": "https"}, timeout=10
    ).headers.get("set-cookie", "")
    flags, https_flags = cookie_flags(plain), cookie_flags(https)

    # Which routes answer without any credentials (path parameters filled in).
    changing = sorted({(m, p) for m, p in table if m not in ("GET", "HEAD", "OPTIONS")})
    covered = sorted({(a.method, a.route) for a in actions} & set(changing))
    public = []
    with httpx.Client(base_url=base, timeout=10) as nobody:
        for method, path in table:
            if method != "GET":
                continue
            concrete = path.replace("{generation_id}", active).replace("{path}", "app.js")
            answer = nobody.get(concrete)
            login_redirect = answer.status_code == 303 and answer.headers.get(
                "location", ""
            ).startswith("/login")
            if answer.status_code not in (401, 403) and not login_redirect:
                public.append(path)
    allowed = {"/healthz", "/readyz", "/login", "/static/{path}", "/api/cron/poll-sora-status"}
    harness.report(
        17,
        "dashboard csrf",
        state_changing_routes_covered=f"{len(covered)}/{len(changing)}",
        attempts=len(outcomes),
        accepted=len(accepted),
        bad_get_answers=len(bad_gets),
        fetch_metadata_with_token=("refused" if fetch_metadata_enforced else "accepted"),
        cookie_flags=",".join(sorted(flags)),
        cookie_flags_https=",".join(sorted(https_flags)),
        public_routes=" ".join(sorted(set(public))),
    )
    for client in (user, other, anonymous, local_user):
        client.close()
    assert not accepted, accepted
    assert not bad_gets, bad_gets
    assert covered == changing, sorted(set(changing) - set(covered))
    assert "httponly" in flags and "samesite=strict" in flags, plain
    assert "secure" in https_flags, f"no Secure flag over HTTPS: {https}"
    assert set(public) <= allowed, sorted(set(public) - allowed)
    assert not server_errors(proc) and not server_errors(local)


# --- 18: path traversal on file serving ------------------------------------------------------


def raw_get(base: str, target: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (HTTP clients normalise `..` away).

    Hand-written on a socket: http.client refuses control characters in the target and httpx
    removes dot segments, which is exactly what these probes must send.
    """
    host, port = base.removeprefix("http://").split(":")
    lines = [b"GET " + target + b" HTTP/1.1", f"Host: {host}:{port}".encode(), b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


@pytest.mark.slow
def test_path_traversal_on_file_serving(
    pg: str, sim: harness.Sim, data_dir: Path, tmp_path: Path, procs: list[harness.Proc]
) -> None:
    """No URL and no stored key reaches a file outside the storage root or the static folder."""
    env = harness.env_for(db_url=pg, sim=sim, data_dir=data_dir, REELWATCH_API_TOKEN=API_TOKEN)
    proc, base = serve(procs, env)
    g = submit(base, "[sim:queue=0,render=0.3,bytes=2048] a stored boat")
    wait_status(pg, g["id"], "completed")
    gid = g["id"]
    assets = harness.sql(pg, "SELECT assets::text FROM generations WHERE id = %s", gid)[0][0]
    original = json.loads(assets)
    video_key = original["video"]["key"]
    root = data_dir / "videos"
    assert (root / video_key).is_file()

    sentinel = f"TRAVERSAL-SENTINEL-{secrets.token_hex(8)}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(sentinel)
    sibling = data_dir / "videos_evil"  # a sibling whose name starts like the root's
    sibling.mkdir()
    (sibling / "secret.txt").write_text(sentinel)
    link = root / gid / "link.mp4"
    link.symlink_to(outside / "secret.txt")
    escapes: list[str] = []
    statuses: dict[str, int] = {}

    def probe(name: str, target: bytes, allowed: tuple[int, ...] = (400, 404)) -> None:
        status, body = raw_get(base, target, bearer())
        statuses[name] = status
        if 200 <= status < 300 or sentinel.encode() in body or b"root:x:0:0" in body:
            escapes.append(name)
        elif status not in allowed:
            escapes.append(f"{name} (unexpected {status})")

    # Keys as a poisoned row could hold them: the route serves only what a row references.
    keys = {
        "symlink_in_root": f"{gid}/link.mp4",
        "sibling_prefix_dir": "../videos_evil/secret.txt",
        "absolute": str(outside / "secret.txt"),
        "dot_dot": f"{gid}/../../../outside/secret.txt",
        "root_itself": ".",
        "empty": "",
    }
    for name, key in keys.items():
        poisoned = {**original, "video": {**original["video"], "key": key}}
        harness.sql(
            pg, "UPDATE generations SET assets = %s WHERE id = %s", json.dumps(poisoned), gid
        )
        probe(f"key:{name}", f"/api/generations/{gid}/content".encode())
    harness.sql(pg, "UPDATE generations SET assets = %s WHERE id = %s", assets, gid)
    control, body = raw_get(base, f"/api/generations/{gid}/content".encode(), bearer())
    assert control == 200 and len(body) == 2048, control

    urls = {
        "id_dot_dot": b"/api/generations/../../../etc/passwd/content",
        "id_encoded": b"/api/generations/%2e%2e%2f%2e%2e%2fetc%2fpasswd/content",
        "id_double_encoded": b"/api/generations/%252e%252e%252fetc%252fpasswd/content",
        "id_absolute": b"/api/generations//etc/passwd/content",
        "id_nul": b"/api/generations/" + gid.encode() + b"%00/content",
        "id_raw_nul": b"/api/generations/" + gid.encode() + b"\x00/content",
        "static_dot_dot": b"/static/../app.py",
        "static_dot_dot_templates": b"/static/../templates/login.html",
        "static_encoded": b"/static/%2e%2e/app.py",
        "static_encoded_slash": b"/static/..%2fapp.py",
        "static_double_encoded": b"/static/%252e%252e%252fapp.py",
        "static_deep": b"/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "static_absolute": b"/static//etc/passwd",
        "static_encoded_absolute": b"/static/%2fetc%2fpasswd",
        "static_backslash": b"/static/..%5capp.py",
        "static_nul": b"/static/app.js%00",
        # The package's own source is no place to plant a `static_evil` sibling; the
        # sibling-prefix case is the storage root's (`videos` vs `videos_evil`) above.
        "outside_file_absolute": str(outside / "secret.txt").encode(),
    }
    for name, target in urls.items():
        probe(f"url:{name}", target)
    variants = {
        "variant_dot_dot": b"?variant=../../../etc/passwd",
        "variant_encoded": b"?variant=%2e%2e%2fvideo",
        "variant_nul": b"?variant=video%00",
    }
    for name, query in variants.items():
        probe(f"query:{name}", f"/api/generations/{gid}/content".encode() + query, (400, 404, 422))
    harness.report(
        18,
        "path traversal",
        payloads=len(statuses),
        escapes=len(escapes),
        statuses=" ".join(f"{k}={v}" for k, v in statuses.items()),
    )
    assert not escapes, escapes
    assert not server_errors(proc)


# --- 19: SSRF containment --------------------------------------------------------------------

# Hop-by-hop headers (RFC 9110 section 7.6.1) and lengths are the front's own business.
_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
)


class RedirectingFront:
    """An HTTP front for the simulator that answers chosen requests with a redirect.

    Hand-written on aiohttp (already a dependency): the simulator has no redirect fault.
    Requests pass through to the simulator unless `redirect(request)` names a Location; then
    the answer is a 302 (307 for POST) there. In the same thread, listeners on other hosts
    count every connection made to them: any at all means reelwatch followed a redirect off
    the API's host (or fetched a URL it was given).
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.redirects: list[str] = []
        self.decide: Callable[[str, str], str | None] = lambda method, path: None
        self.hits: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._servers: list[asyncio.Server] = []

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=20)

    def start(self) -> RedirectingFront:
        self._thread.start()

        async def up() -> None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server  # aiohttp keeps the bound socket here
            assert server is not None
            self.port = int(server.sockets[0].getsockname()[1])

        self._run(up())
        return self

    def listen(self, host: str) -> str:
        """A listener on `host` that counts connections; its "host:port"."""

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits[name] = self.hits.get(name, 0) + 1
            writer.transport.abort()

        async def up() -> asyncio.Server:
            return await asyncio.start_server(counted, host, 0)

        server: asyncio.Server = self._run(up())
        self._servers.append(server)
        name = f"{host}:{server.sockets[0].getsockname()[1]}"
        self.hits[name] = 0
        return name

    def close(self) -> None:
        async def down() -> None:
            for server in self._servers:
                server.close()
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        self._run(down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        location = self.decide(request.method, request.path)
        if location is not None:
            self.redirects.append(f"{request.method} {request.path}")
            status = 307 if request.method == "POST" else 302
            return web.Response(status=status, headers={"Location": location})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(status=upstream.status, headers=kept, body=body)


@contextlib.contextmanager
def redirecting_front(sim: harness.Sim) -> Iterator[RedirectingFront]:
    front = RedirectingFront(sim.root).start()
    try:
        yield front
    finally:
        front.close()


@pytest.mark.slow
def test_ssrf_containment(
    pg: str, sim: harness.Sim, data_dir: Path, procs: list[harness.Proc]
) -> None:
    """URLs in webhooks or API input are never fetched; a redirect off the API host is never
    followed (create, status check, content download)."""
    with redirecting_front(sim) as front:
        elsewhere = front.listen("127.0.0.2")  # another host (all of 127/8 is loopback)
        local = front.listen("127.0.0.1")  # "localhost" as a URL in the input
        env = harness.env_for(
            db_url=pg,
            sim=sim,
            data_dir=data_dir,
            OPENAI_BASE_URL=f"http://127.0.0.1:{front.port}/v1",
            OPENAI_WEBHOOK_SECRET=WEBHOOK_SECRET,
            REELWATCH_WEBHOOK_POLL_SECONDS=SAFETY_NET_POLL_S,
            REELWATCH_API_TOKEN=API_TOKEN,
        )
        proc, base = serve(procs, env)
        targets = [
            f"http://{local}/latest/meta-data/",
            f"http://localhost:{local.split(':')[1]}/x",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            f"http://{elsewhere}/v1/videos",
        ]

        # Input carrying URLs: webhook bodies, tracked ids, prompts.
        for n, url in enumerate(targets):
            for body in (
                event_body(url),
                event_body("video_x", url=url, download_url=url, thumbnail_url=url),
            ):
                webhook_id = f"wh_ssrf_{n}_{len(body)}"
                answer = httpx.post(
                    f"{base}/api/webhooks/openai",
                    content=body,
                    headers=signed_headers(body, webhook_id),
                    timeout=10,
                )
                assert answer.status_code in (200, 400), answer.text
            tracked = httpx.post(
                f"{base}/api/generations", json={"video_id": url}, headers=bearer(), timeout=10
            )
            assert tracked.status_code in (400, 404, 422), tracked.text

        # The provider redirects: a status check, a download and a create, each off its host.
        def away(path: str) -> str:
            return f"http://{elsewhere}{path}"

        # Renders long enough that the redirects are in place before the first look.
        watched = submit(base, "[sim:queue=0,render=2,bytes=2048] redirect the status check")
        downloaded = submit(base, "[sim:queue=0,render=1.5,bytes=2048] redirect the download")
        retrieve_path = f"/v1/videos/{watched['video_id']}"
        content_path = f"/v1/videos/{downloaded['video_id']}/content"

        def decide(method: str, path: str) -> str | None:
            if method == "GET" and path in (retrieve_path, content_path):
                return away(path)
            if method == "POST" and path == "/v1/videos":
                return away(path)
            return None

        front.decide = decide
        created = httpx.post(
            f"{base}/api/generations",
            json={"prompt": "redirect the create"},
            headers=bearer(),
            timeout=30,
        )
        harness.wait_until(
            lambda: (
                sum(retrieve_path in r for r in front.redirects) >= 2
                and sum(content_path in r for r in front.redirects) >= 2
            ),
            timeout=20,
            interval=0.1,
            what="redirected status checks and downloads",
        )
        outbound = dict(front.hits)
        # Calibration: a client that does follow the redirect is seen by the listener.
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{front.port}{retrieve_path}", follow_redirects=True)
        harness.wait_until(lambda: front.hits[elsewhere] == 1, timeout=5, what="calibration")
        harness.report(
            19,
            "ssrf containment",
            input_urls=len(targets) * 3,
            redirects_issued=len(front.redirects),
            outbound_connections=sum(outbound.values()),
            create_after_redirect=created.status_code,
            per_listener=" ".join(f"{k}={v}" for k, v in outbound.items()),
        )
        assert sum(outbound.values()) == 0, outbound
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "failed", created.json()
        assert created.json()["error"]["code"] == "redirect_refused", created.json()
        assert status_of(pg, downloaded["id"]) == "downloading"
        assert not server_errors(proc)


# --- 20: no secrets in logs or pages ---------------------------------------------------------


@dataclass
class Collected:
    """Everything reelwatch said over HTTP in one run: status lines, headers and bodies."""

    texts: list[str] = field(default_factory=list)

    def fetch(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 15)
        answer = httpx.request(method, url, **kwargs)
        self.keep(answer)
        return answer

    def keep(self, answer: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
        self.texts.append(f"{answer.status_code}\n{headers}\n{answer.text}")
        return answer


@contextlib.contextmanager
def database_with_password() -> Iterator[tuple[str, str]]:
    """A fresh database owned by a new role with a password; (url, password). Both dropped."""
    role = f"rw_secret_{secrets.token_hex(4)}"
    password = f"PGPASSWORDSENTINEL{secrets.token_hex(8)}"

    def admin(statement: pg_sql.Composable) -> None:
        with psycopg.connect(harness.PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(statement)

    with harness.pg_database() as admin_url:
        database = make_url(admin_url).database
        admin(
            pg_sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                pg_sql.Identifier(role), pg_sql.Literal(password)
            )
        )
        admin(
            pg_sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                pg_sql.Identifier(str(database)), pg_sql.Identifier(role)
            )
        )
        url = make_url(admin_url).set(username=role, password=password)
        try:
            yield url.render_as_string(hide_password=False), password
        finally:
            # The database goes first (on leaving the block above), then its owner.
            pass
    admin(pg_sql.SQL("DROP ROLE IF EXISTS {}").format(pg_sql.Identifier(role)))


def forged_record(line: str) -> bool:
    """Whether a log line is (or starts) a record the input forged: CR/LF let it begin a line,
    or a JSON line is not one whole record of reelwatch's own."""
    if line.lstrip().startswith('{"event": "forged"'):
        return True
    if not line.startswith("{"):
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return True  # a JSON log line broken apart by something in it
    return bool(record.get("action") == "forged_record" or record.get("event") == "forged")


@pytest.mark.slow
def test_no_secrets_in_logs_or_pages(data_dir: Path, procs: list[harness.Proc]) -> None:
    """Sentinel secrets appear in no output, log line, page, error JSON or stored text, even
    through bad requests, failures and a database outage; CR/LF cannot forge a log record."""
    marker = secrets.token_hex(6)
    sentinels = {
        "OPENAI_API_KEY": f"sk-APIKEYSENTINEL{marker}",
        "OPENAI_WEBHOOK_SECRET": "whsec_" + b64(f"WEBHOOKSENTINEL{marker}".encode()),
        "CRON_SECRET": f"CRONSENTINEL{marker}",
        "REELWATCH_API_TOKEN": f"TOKENSENTINEL{marker}",
    }
    token, cron = sentinels["REELWATCH_API_TOKEN"], sentinels["CRON_SECRET"]
    key = base64.b64decode(sentinels["OPENAI_WEBHOOK_SECRET"].removeprefix("whsec_"))
    forged = '{"event": "forged", "level": "error", "action": "forged_record"}'
    canary = f"CANARY{marker}"  # not a secret: proves the search sees pages and stored text
    page = Collected()
    with (
        database_with_password() as (db_url, db_password),
        harness.simulator(api_key=sentinels["OPENAI_API_KEY"]) as sim,
        harness.FaultProxy("127.0.0.1", int(make_url(db_url).port or 5432)) as proxy,
    ):
        sentinels["database password"] = db_password
        env = harness.env_for(
            db_url=harness.pg_via(proxy, db_url),
            sim=sim,
            data_dir=data_dir,
            REELWATCH_WEBHOOK_POLL_SECONDS=SAFETY_NET_POLL_S,
            **{k: v for k, v in sentinels.items() if k.isupper()},
        )
        server, base = serve(procs, env, "--no-worker")
        worker = harness.start_worker(env)
        procs.append(worker)
        harness.wait_worker_started(worker)
        auth = bearer(token)
        api = f"{base}/api/generations"

        # Work that succeeds, work that fails, and input meant to break log lines.
        good = page.fetch(
            "POST",
            api,
            json={"prompt": f"[sim:queue=0,render=0.5,bytes=2048] ok {canary}"},
            headers=auth,
        ).json()
        bad = page.fetch(
            "POST",
            api,
            json={"prompt": "[sim:queue=0,render=0.3,fail=moderation_blocked] no"},
            headers=auth,
        ).json()
        crlf = page.fetch(
            "POST", api, json={"prompt": f"one\r\n{forged}\r\ntwo\n{forged}"}, headers=auth
        )
        page.fetch("POST", api, json={"video_id": f"video_x\r\n{forged}"}, headers=auth)
        page.fetch(
            "POST", api, content=b"{not json", headers={**auth, "content-type": "application/json"}
        )
        page.fetch("POST", api, json={"prompt": "x", "unknown": 1}, headers=auth)
        page.fetch("POST", api, json={"prompt": "x"}, headers=bearer("wrong-token"))
        page.fetch("GET", api, headers={"authorization": f"Basic {b64(token.encode())}x"})
        page.fetch("GET", f"{api}?cursor=not-a-cursor", headers=auth)
        page.fetch("GET", f"{api}/gen_unknown", headers=auth)
        page.fetch("GET", f"{api}/{good['id']}/events", headers=auth)
        page.fetch("POST", f"{api}/{good['id']}/retry", json={}, headers=auth)
        page.fetch("GET", f"{base}/api/cron/poll-sora-status", headers=bearer(cron + "x"))
        page.fetch("GET", f"{base}/api/cron/poll-sora-status", headers=bearer(cron))
        body = event_body(good["video_id"])
        page.fetch(
            "POST",
            f"{base}/api/webhooks/openai",
            content=body,
            headers=signed_headers(body, "wh_s1", key=key),
        )
        page.fetch(
            "POST",
            f"{base}/api/webhooks/openai",
            content=body,
            headers=signed_headers(body, "wh_s2"),
        )
        page.fetch("GET", f"{base}/metrics", headers=auth)
        page.fetch("GET", f"{base}/readyz")
        wait_status(db_url, good["id"], "completed")
        wait_status(db_url, bad["id"], "failed")

        # The dashboard, signed in, on every page (failures and costs included).
        with httpx.Client(base_url=base, timeout=15) as browser:
            csrf = csrf_of(page.keep(browser.get("/login")).text)
            page.keep(browser.post("/login", data={"token": token + "x", "csrf": csrf}))
            page.keep(browser.post("/login", data={"token": token, "csrf": csrf}))
            for path in ("/", "/admin", "/charts", f"/generations/{good['id']}",
                         f"/generations/{bad['id']}", f"/generations/{bad['id']}/retry",
                         "/admin/bulk?action=retry&status=failed", "/?q=%0d%0a"):  # fmt: skip
                page.keep(browser.get(path))

            # A database outage: pages, errors and the worker's logs while it lasts.
            proxy.down()
            harness.wait_until(
                lambda: page.fetch("GET", f"{base}/readyz").status_code == 503,
                timeout=15,
                what="readyz to report the outage",
            )
            page.fetch("GET", api, headers=auth)
            page.fetch("POST", api, json={"prompt": "during the outage"}, headers=auth)
            page.fetch("GET", f"{base}/metrics", headers=auth)
            page.keep(browser.get("/"))
            page.keep(browser.get(f"/generations/{good['id']}"))
            # A failed request logs its path: CR/LF in it must stay inside that one record
            # (sent byte for byte: HTTP clients tidy such paths up).
            injected = "/api/generations/x%0d%0a" + quote(forged, safe="") + "%0d%0a/events"
            status, answer = raw_get(base, injected.encode(), auth)
            page.texts.append(f"{status}\n{answer.decode(errors='replace')}")
            harness.wait_until(
                lambda: bool(harness.logged(worker, "db_error")),
                timeout=15,
                what="the worker to log the outage",
            )
            cli = harness.Proc([sys.executable, "-m", "reelwatch", "list"], env, name="cli")
            procs.append(cli)
            cli.wait(timeout=60)
            proxy.up()
            harness.wait_until(
                lambda: page.fetch("GET", f"{base}/readyz").status_code == 200,
                timeout=30,
                what="readyz after the outage",
            )
        stored = harness.sql(
            db_url,
            "SELECT coalesce(string_agg(data::text, ' '), '') FROM events UNION ALL"
            " SELECT coalesce(string_agg(coalesce(error_message, '') || prompt, ' '), '')"
            " FROM generations",
        )
        outputs = {
            "serve": server.output(),
            "worker": worker.output(),
            "simulator": sim.proc.output(),
            "cli": cli.output(),
        }
        server.terminate()
        worker.terminate()
    places = {**outputs, "http": "\n".join(page.texts), "database": " ".join(r[0] for r in stored)}
    forms = {name: {value} for name, value in sentinels.items()}
    forms["OPENAI_WEBHOOK_SECRET"].add(sentinels["OPENAI_WEBHOOK_SECRET"].removeprefix("whsec_"))
    forms["OPENAI_WEBHOOK_SECRET"].add(key.decode())
    found = [
        f"{name} in {where}"
        for name, values in forms.items()
        for where, text in places.items()
        for value in values
        if value in text
    ]
    forged_records = [
        line
        for name in ("serve", "worker", "cli")
        for line in outputs[name].splitlines()
        if forged_record(line)
    ]
    harness.report(
        20,
        "no secrets",
        sentinel_occurrences=len(found),
        places_searched=len(places),
        http_answers=len(page.texts),
        log_lines=sum(len(t.splitlines()) for t in outputs.values()),
        forged_log_records=len(forged_records),
        crlf_prompt_status=crlf.status_code,
    )
    assert canary in places["http"] and canary in places["database"]
    assert "forged_record" in outputs["serve"], "the CR/LF path never reached a log line"
    assert not found, found
    assert not forged_records, forged_records

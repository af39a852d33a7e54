"""The HTTP service over real HTTP (uvicorn on a free port), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from reelwatch import assembly, service, serving
from reelwatch.models import Status, Variant
from reelwatch.store import tables
from reelwatch.web import create_app
from reelwatch.web import events as events_module
from tests.conftest import World, image_file, step, with_changes

pytestmark = pytest.mark.asyncio

CRON = "cron-sentinel-5ec2e7"
TOKEN = "api-sentinel-70ce2"
WEBHOOK_KEY = base64.b64encode(b"webhook-sentinel-key-0123456789").decode()
WEBHOOK_SECRET = f"whsec_{WEBHOOK_KEY}"


@dataclass
class Server:
    origin: str
    client: httpx.AsyncClient
    world: World


@pytest.fixture
def web_world(world: World) -> World:
    return world.with_settings(cron_secret=CRON, openai_webhook_secret=WEBHOOK_SECRET)


@pytest.fixture
def server_factory(web_world: World) -> Iterator[Any]:
    """Start the app (no background worker: tests drive cycles) with optional settings changes."""
    stack: list[Any] = []

    def start(**changes: Any) -> str:
        settings = with_changes(web_world.settings, **changes)
        app = create_app(settings, clock=web_world.clock, run_worker=False)
        context = serving.in_thread(app, probe="/healthz", name="reelwatch-test")
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
async def server(server_factory: Any, web_world: World) -> AsyncIterator[Server]:
    origin = server_factory()
    async with httpx.AsyncClient(base_url=origin, timeout=10) as client:
        yield Server(origin, client, web_world)


async def create(server: Server, prompt: str = "a paper boat", **fields: Any) -> dict[str, Any]:
    response = await server.client.post("/api/generations", json={"prompt": prompt, **fields})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def finish(svc: service.Service, world: World, gid: str) -> None:
    g = await svc.get(gid)
    while not g.terminal:
        g = await step(svc, world, gid)


# --- generations API ------------------------------------------------------------------------


async def test_create_get_list_and_events(server: Server) -> None:
    """Create answers 201 with the contract fields; get, list and events agree."""
    g = await create(server)
    assert g["status"] in ("queued", "in_progress") and g["video_id"].startswith("video_")
    got = (await server.client.get(f"/api/generations/{g['id']}")).json()
    assert got["id"] == g["id"] and got["prompt"] == "a paper boat"
    listed = (await server.client.get("/api/generations", params={"status": got["status"]})).json()
    assert [item["id"] for item in listed["data"]] == [g["id"]]
    events = (await server.client.get(f"/api/generations/{g['id']}/events")).json()["data"]
    assert [e["kind"] for e in events] == ["created", "submitted"]
    assert events[0]["actor"].startswith("api:")


async def test_list_is_newest_first_with_a_cursor(server: Server) -> None:
    """Cursor pagination walks every generation once, newest first."""
    made = []
    for i in range(5):
        made.append((await create(server, f"p{i}"))["id"])
        server.world.advance(1)  # the test clock stands still otherwise
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await server.client.get("/api/generations", params=params)).json()
        seen += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_multipart_create_with_a_reference_image(server: Server, tmp_path: Path) -> None:
    """A multipart create carries the reference image to the provider."""
    image = image_file(tmp_path / "frame.png").read_bytes()
    response = await server.client.post(
        "/api/generations",
        data={"prompt": "from a frame", "seconds": "8"},
        files={"input_reference": ("frame.png", image, "image/png")},
    )
    assert response.status_code == 201, response.text
    g = response.json()
    assert g["seconds"] == 8
    job = server.world.sim.sim.job(g["video_id"])
    assert job is not None and job.reference is not None and job.reference.byte_count == len(image)


async def test_track_by_video_id(server: Server) -> None:
    """`{"video_id"}` tracks a job created elsewhere."""
    job = server.world.sim.sim.create(prompt="elsewhere")
    response = await server.client.post("/api/generations", json={"video_id": job.id})
    assert response.status_code == 201
    assert response.json()["video_id"] == job.id


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b"{not json", 422, "Invalid JSON"),
        (b'{"prompt": "x", "seconds": "soon"}', 422, "seconds"),
        (b'{"prompt": "x", "colour": "red"}', 422, "colour"),
        (b'{"prompt": "x", "model": "sora-9"}', 400, "model: unknown model"),
        (b'{"prompt": ""}', 400, "prompt: must not be empty"),
        # the CLI's limit and words: one limit per field everywhere
        (b'{"prompt": "' + b"x" * 32001 + b'"}', 400, "prompt: 32001 characters; at most 32000"),
        (b'{"prompt": "x", "size": "1x1"}', 400, "size:"),
        (b"[]", 422, "Input should be an object"),
        (b'{"prompt": "x", "params": {"seconds": NaN}}', 422, "params"),
        (b'{"prompt": "x", "provider": "replicate", "params": {"duration": 1e999}}', 422, "params"),
        (b'{"prompt": "x", "provider": "fal", "model": "workflows/x"}', 400, "model:"),
        (b'{"prompt": "x", "provider": "fal", "params": {"duration": 10000000000}}', 400, "params"),
    ],
)
async def test_bad_create_bodies_are_4xx_and_write_nothing(
    server: Server, payload: bytes, status: int, needle: str
) -> None:
    """Malformed or invalid bodies get a 4xx naming the problem; nothing is stored."""
    response = await server.client.post(
        "/api/generations", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["code"]
    assert (await server.client.get("/api/generations")).json()["data"] == []
    assert server.world.sim.sim.stats()["creates"] == 0


async def test_oversize_bodies_are_refused(server: Server) -> None:
    """A body over the limit is 413 before it is read whole."""
    response = await server.client.post(
        "/api/generations",
        content=b"x" * (26 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


async def test_unknown_ids_and_disallowed_actions(server: Server) -> None:
    """Unknown id: 404; an action not allowed in the status: 409; nothing written."""
    missing = await server.client.get("/api/generations/gen_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    g = await create(server)
    refused = await server.client.post(f"/api/generations/{g['id']}/retry", json={"confirm": True})
    assert refused.status_code == 409 and "only failed" in refused.json()["error"]["message"]
    events = (await server.client.get(f"/api/generations/{g['id']}/events")).json()["data"]
    assert len(events) == 2


async def test_retry_answers_the_cost_and_needs_confirmation(
    server: Server, svc: service.Service
) -> None:
    """Retry without confirm answers the estimated cost and changes nothing; with it, resubmits."""
    g = await create(server, "[sim:fail=moderation_blocked,queue=0,render=1] no", seconds=8)
    await finish(svc, server.world, g["id"])
    quote = await server.client.post(f"/api/generations/{g['id']}/retry")
    assert quote.status_code == 409
    assert quote.json()["error"]["code"] == "confirmation_required"
    assert quote.json()["estimated_cost_usd"] == 0.8
    assert (await svc.get(g["id"])).status is Status.FAILED
    done = await server.client.post(f"/api/generations/{g['id']}/retry", json={"confirm": True})
    assert done.status_code == 200, done.text
    assert done.json()["video_id"] != g["video_id"]  # resubmitted at once: a new provider job
    assert done.json()["estimated_cost_usd"] == 0.8


async def test_reset_and_cancel(server: Server) -> None:
    """Reset and cancel answer the generation and write their events."""
    g = await create(server)
    reset = await server.client.post(f"/api/generations/{g['id']}/reset")
    assert reset.status_code == 200 and reset.json()["status"] == "queued"
    cancel = await server.client.post(f"/api/generations/{g['id']}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    again = await server.client.post(f"/api/generations/{g['id']}/cancel")
    assert again.status_code == 409
    kinds = [
        e["kind"]
        for e in (await server.client.get(f"/api/generations/{g['id']}/events")).json()["data"]
    ]
    assert kinds[-2:] == ["reset", "cancelled"]


# --- content --------------------------------------------------------------------------------


async def test_content_streams_with_type_and_range(server: Server, svc: service.Service) -> None:
    """The stored video is served with its type, and Range requests answer 206 slices."""
    g = await create(server, "[sim:queue=0,render=1,bytes=300000] watch me")
    await finish(svc, server.world, g["id"])
    stored = await svc.get(g["id"])
    path = svc.storage.path(stored.assets[next(iter(stored.assets))].key)
    whole = (await svc.get(g["id"])).assets
    video_path = svc.storage.path(whole[next(v for v in whole if v.value == "video")].key)
    full = await server.client.get(f"/api/generations/{g['id']}/content")
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.content == video_path.read_bytes()
    assert full.headers["accept-ranges"] == "bytes"
    part = await server.client.get(
        f"/api/generations/{g['id']}/content", headers={"Range": "bytes=1000-1099"}
    )
    assert part.status_code == 206 and part.content == video_path.read_bytes()[1000:1100]
    assert part.headers["content-range"] == "bytes 1000-1099/300000"
    thumb = await server.client.get(
        f"/api/generations/{g['id']}/content", params={"variant": "thumbnail"}
    )
    assert thumb.headers["content-type"] == "image/webp"
    bad = await server.client.get(f"/api/generations/{g['id']}/content", params={"variant": "x"})
    assert bad.status_code == 422
    assert path.exists()


@pytest.mark.parametrize("serve", ["redirect", "proxy"])
async def test_with_s3_storage_the_worker_stores_in_the_bucket_and_the_api_serves_it(
    world: World, s3_url: str, server_factory: Any, serve: str
) -> None:
    """End to end with `REELWATCH_STORAGE_URL=s3://...`: the worker streams every asset into
    the bucket (nothing on local disk), checksummed; the API answers content with a short-lived
    link to the bucket (`redirect`) or streams it with Range support (`proxy`)."""
    changes = {"storage_url_raw": s3_url, "storage_serve": serve}
    bucket_world = world.with_settings(**changes)
    async with assembly.open_service(
        bucket_world.settings, clock=world.clock, need_provider=True
    ) as svc:
        origin = server_factory(**changes)
        async with httpx.AsyncClient(base_url=origin, timeout=10) as client:
            made = await client.post(
                "/api/generations",
                json={"prompt": "[sim:queue=0,render=1,bytes=300000] into the bucket"},
            )
            gid = made.json()["id"]
            await finish(svc, bucket_world, gid)
            g = await svc.get(gid)
            assert g.status is Status.COMPLETED and len(g.assets) == 3
            assert not list((world.settings.data_dir / "videos").rglob("*.*"))
            video = g.assets[Variant.VIDEO]
            body = await svc.storage.read(video.key)
            assert hashlib.sha256(body).hexdigest() == video.sha256 and len(body) == 300000
            assert video.sha256 == world.sim.sim.expected_sha256(g.video_id, "video")
            url = f"/api/generations/{gid}/content"
            answer = await client.get(url)
            if serve == "redirect":
                assert answer.status_code == 307
                assert answer.headers["location"].startswith(f"{os.environ['AWS_ENDPOINT_URL']}/")
                answer = await client.get(answer.headers["location"])
            assert answer.status_code == 200 and answer.content == body
            assert answer.headers["content-type"] == "video/mp4"
            if serve == "proxy":
                part = await client.get(url, headers={"Range": "bytes=1000-1099"})
                assert part.status_code == 206 and part.content == body[1000:1100]
                assert part.headers["content-range"] == "bytes 1000-1099/300000"
                tail = await client.get(url, headers={"Range": "bytes=-10"})
                assert tail.status_code == 206 and tail.content == body[-10:]
                past = await client.get(url, headers={"Range": "bytes=400000-"})
                assert past.status_code == 416
                assert past.headers["content-range"] == "bytes */300000"
            await svc.storage.delete(video.key)
            assert (await client.get(url)).status_code == 404


async def test_content_serves_only_what_the_database_points_at(
    server: Server, svc: service.Service, tmp_path: Path
) -> None:
    """Traversal in the id, a tampered key, and a symlink out of storage are all 404."""
    g = await create(server, "[sim:queue=0,render=1] x")
    await finish(svc, server.world, g["id"])
    for attempt in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..", "gen_nope"):
        response = await server.client.get(f"/api/generations/{attempt}/content")
        assert response.status_code == 404, attempt
    stored = await svc.get(g["id"])
    video = next(a for v, a in stored.assets.items() if v.value == "video")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"secret")
    path = svc.storage.path(video.key)
    path.unlink()
    path.symlink_to(outside)
    assert (await server.client.get(f"/api/generations/{g['id']}/content")).status_code == 404
    engine = sa.create_engine(
        server.world.settings.database_url.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as conn:
        assets = {"video": {**video.to_json(), "key": "../../../../etc/passwd"}}
        conn.execute(
            tables.generations.update()
            .where(tables.generations.c.id == g["id"])
            .values(assets=assets)
        )
    engine.dispose()
    assert (await server.client.get(f"/api/generations/{g['id']}/content")).status_code == 404


# --- cron -------------------------------------------------------------------------------------


async def test_cron_auth_matrix(server_factory: Any) -> None:
    """Missing, wrong, non-ASCII and non-bearer secrets are 401; the right one runs a cycle."""
    origin = server_factory()
    route = "/api/cron/poll-sora-status"
    async with httpx.AsyncClient(base_url=origin) as client:
        cases: list[dict[str, Any]] = [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {CRON}"},
            {"Authorization": CRON},
            {"Authorization": "Bearer " + CRON + "x"},
        ]
        for headers in cases:
            response = await client.get(route, headers=headers)
            assert response.status_code == 401, headers
            assert CRON not in response.text
        raw = await client.get(route, headers=[(b"authorization", b"Bearer \xc3\xa9\xff")])
        assert raw.status_code == 401
        ok = await client.get(route, headers={"Authorization": f"Bearer {CRON}"})
        assert ok.status_code == 200
        summary = ok.json()
        assert set(summary) == {"success", "message", "processed", "results", "duration"}
        assert set(summary["results"]) == {"success", "failed", "timedOut", "errors"}
    unset = server_factory(cron_secret=None)
    async with httpx.AsyncClient(base_url=unset) as client:
        refused = await client.get(route, headers={"Authorization": "Bearer x"})
        assert refused.status_code == 503


async def test_overlapping_cron_calls_never_process_a_generation_twice(server: Server) -> None:
    """Two cron calls at once split the due work; the provider hears about each job once."""
    made = [await create(server, f"cron {i}") for i in range(10)]
    server.world.advance(121)  # webhooks are configured: polling is the 120 s safety net
    server.world.sim.sim.inject("retrieve", "latency", count=-1, seconds=0.3)
    headers = {"Authorization": f"Bearer {CRON}"}
    first, second = await asyncio.gather(
        server.client.get("/api/cron/poll-sora-status", headers=headers),
        server.client.get("/api/cron/poll-sora-status", headers=headers),
    )
    processed = first.json()["processed"] + second.json()["processed"]
    assert processed == 10, (first.json(), second.json())
    videos = server.world.sim.sim.stats()["videos"]
    assert all(videos[g["video_id"]]["retrieves"] == 1 for g in made)


# --- webhooks -------------------------------------------------------------------------------


def signed(
    payload: bytes, *, key: str = WEBHOOK_SECRET, msg_id: str = "wh_1", at: datetime | None = None
) -> dict[str, str]:
    when = at or datetime.now(UTC)
    signature = Webhook(key).sign(msg_id, when, payload.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def event(video_id: str, kind: str = "video.completed") -> bytes:
    body = {
        "id": "evt_1",
        "object": "event",
        "created_at": int(time.time()),
        "type": kind,
        "data": {"id": video_id},
    }
    return json.dumps(body).encode()


async def test_a_valid_webhook_makes_the_generation_due_now(
    server: Server, svc: service.Service
) -> None:
    """A correctly signed video.completed is applied once: the generation is due immediately."""
    server.world.advance(-0.0)
    g = await create(server)
    payload = event(g["video_id"])
    response = await server.client.post(
        "/api/webhooks/openai", content=payload, headers=signed(payload)
    )
    assert response.status_code == 200 and response.json()["result"] == "applied"
    stored = await svc.get(g["id"])
    assert stored.next_poll_at is not None and stored.next_poll_at <= server.world.clock.now()
    duplicate = await server.client.post(
        "/api/webhooks/openai", content=payload, headers=signed(payload)
    )
    assert duplicate.status_code == 200 and duplicate.json()["result"] == "duplicate"
    kinds = [e.kind for e in await svc.history(g["id"])]
    assert kinds.count("webhook") == 1


@pytest.mark.parametrize(
    "case", ["tampered", "stale", "future", "no_prefix", "missing", "other_key", "garbage"]
)
async def test_bad_webhooks_are_refused_and_change_nothing(
    server: Server, svc: service.Service, case: str
) -> None:
    """Tampered, stale, unprefixed, missing or foreign signatures: 400, and nothing changes."""
    g = await create(server)
    payload = event(g["video_id"])
    headers = signed(payload)
    body = payload
    if case == "tampered":
        body = payload.replace(b"completed", b"failed")
    elif case == "stale":
        headers = signed(payload, at=datetime.now(UTC) - timedelta(seconds=301))
    elif case == "future":
        headers = signed(payload, at=datetime.now(UTC) + timedelta(seconds=301))
    elif case == "no_prefix":
        headers["webhook-signature"] = headers["webhook-signature"].removeprefix("v1,")
    elif case == "missing":
        del headers["webhook-signature"]
    elif case == "other_key":
        headers = signed(payload, key="whsec_" + base64.b64encode(b"another key").decode())
    elif case == "garbage":
        headers["webhook-signature"] = "v1,@@@ v2 ,,, v1"
    before = await svc.history(g["id"])
    response = await server.client.post("/api/webhooks/openai", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await svc.history(g["id"]) == before


async def test_rotated_keys_any_matching_signature_passes(server: Server) -> None:
    """A header with an old key's and the current key's signatures verifies."""
    g = await create(server)
    payload = event(g["video_id"], "video.failed")
    old = signed(payload, key="whsec_" + base64.b64encode(b"old key").decode(), msg_id="wh_rot")
    new = signed(payload, msg_id="wh_rot")
    headers = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    response = await server.client.post("/api/webhooks/openai", content=payload, headers=headers)
    assert response.status_code == 200 and response.json()["result"] == "applied"


async def test_webhooks_refused_without_a_secret(server_factory: Any) -> None:
    """With OPENAI_WEBHOOK_SECRET unset the route refuses."""
    origin = server_factory(openai_webhook_secret=None)
    async with httpx.AsyncClient(base_url=origin) as client:
        payload = event("video_x")
        response = await client.post(
            "/api/webhooks/openai", content=payload, headers=signed(payload)
        )
        assert response.status_code == 503


# --- live events ------------------------------------------------------------------------------


async def read_events(
    client: httpx.AsyncClient,
    count: int,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    found: list[tuple[int, dict[str, Any]]] = []
    async with client.stream(
        "GET", "/api/events", headers=headers or {}, params=params or {}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current_id = None
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                current_id = int(line.split(":", 1)[1].strip())
            elif line.startswith("data:"):
                assert current_id is not None
                found.append((current_id, json.loads(line.split(":", 1)[1])))
                if len(found) == count:
                    break
    return found


async def test_sse_resumes_after_a_disconnect_with_last_event_id(server: Server) -> None:
    """Events arrive in order; reconnecting with Last-Event-ID continues with no gap or repeat."""
    for i in range(3):
        await create(server, f"live {i}")  # six events: created + submitted each
    first = await asyncio.wait_for(read_events(server.client, 4, params={"after": 0}), 10)
    ids = [i for i, _ in first]
    assert ids == sorted(ids) and first[0][1]["kind"] == "created"
    rest = await asyncio.wait_for(
        read_events(server.client, 2, headers={"Last-Event-ID": str(ids[-1])}), 10
    )
    assert rest[0][0] > ids[-1]
    assert len({i for i, _ in first} | {i for i, _ in rest}) == 6
    live_task = asyncio.create_task(
        read_events(server.client, 1, headers={"Last-Event-ID": str(rest[-1][0])})
    )
    await asyncio.sleep(0.2)
    await create(server, "arrives live")
    live = await asyncio.wait_for(live_task, 10)
    assert live[0][1]["kind"] == "created"


# --- metrics, health, access ------------------------------------------------------------------


async def test_metrics_and_health(server: Server, svc: service.Service) -> None:
    """Prometheus text with the reelwatch series; health and readiness answer."""
    g = await create(server, "[sim:queue=0,render=1] counted")
    await finish(svc, server.world, g["id"])
    text = (await server.client.get("/metrics")).text
    for series in (
        'reelwatch_generations{status="queued"}',
        "reelwatch_queue_depth",
        "reelwatch_oldest_active_age_seconds",
        "reelwatch_poll_latency_seconds_bucket",
        "reelwatch_detection_lag_seconds_bucket",
        "reelwatch_download_bytes_total",
        "reelwatch_rate_limited_total",
    ):
        assert series in text, series
    assert (await server.client.get("/healthz")).json() == {"status": "ok"}
    assert (await server.client.get("/readyz")).json() == {"status": "ok"}


async def test_api_token_is_required_when_set(server_factory: Any) -> None:
    """With REELWATCH_API_TOKEN, API calls need the bearer token; cron keeps its own secret."""
    origin = server_factory(api_token=TOKEN)
    async with httpx.AsyncClient(base_url=origin) as client:
        assert (await client.get("/api/generations")).status_code == 401
        wrong = await client.get("/api/generations", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text
        ok = await client.get("/api/generations", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        cron = await client.get(
            "/api/cron/poll-sora-status", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert cron.status_code == 401


async def test_without_a_token_only_loopback_clients_are_served(web_world: World) -> None:
    """No token: a client from another address is refused (403)."""
    app = create_app(web_world.settings, clock=web_world.clock, run_worker=False)
    async with app.router.lifespan_context(app):
        remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=remote, base_url="http://127.0.0.1") as client:
            response = await client.get("/api/generations")
            assert response.status_code == 403
        local = httpx.ASGITransport(app=app, client=("127.0.0.1", 4000))
        async with httpx.AsyncClient(transport=local, base_url="http://127.0.0.1") as client:
            assert (await client.get("/api/generations")).status_code == 200
        # DNS rebinding: a loopback client asking for another site's name is refused.
        async with httpx.AsyncClient(transport=local, base_url="http://evil.example") as client:
            assert (await client.get("/api/generations")).status_code == 403


@pytest.mark.parametrize(
    "header",
    [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
        ("Via", "1.1 nginx"),
    ],
)
async def test_without_a_token_a_forwarded_request_is_not_local(
    server: Server, header: tuple[str, str]
) -> None:
    """Loopback-only mode: a request a proxy on this machine passed on (and said so) is
    refused, over real HTTP from 127.0.0.1; the same request without the header is served."""
    assert (await server.client.get("/api/generations")).status_code == 200
    response = await server.client.get("/api/generations", headers=dict([header]))
    assert response.status_code == 403, response.text
    assert "loopback" in response.json()["error"]["message"]


async def test_no_secret_ever_appears_in_logs(
    server_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Sentinel secrets sent right and wrong never show up in what the server logs."""
    origin = server_factory(api_token=TOKEN)
    async with httpx.AsyncClient(base_url=origin) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        await client.post("/api/generations", json={"prompt": "log me"}, headers=auth)
        await client.get("/api/cron/poll-sora-status", headers={"Authorization": f"Bearer {CRON}"})
        await client.get("/api/cron/poll-sora-status", headers={"Authorization": f"Bearer {CRON}x"})
        payload = event("video_x")
        await client.post(
            "/api/webhooks/openai",
            content=payload,
            headers={**signed(payload), "webhook-signature": "v1,AAAA"},
        )
        await client.get("/api/generations/gen_nope", headers=auth)
    out, err = capfd.readouterr()
    logged = out + err
    assert "log me" in logged or "submitted" in logged  # the server did log
    for secret in (TOKEN, CRON, WEBHOOK_KEY, "sk-test"):
        assert secret not in logged


async def test_sse_sees_events_written_by_another_process(
    server: Server, svc: service.Service
) -> None:
    """The table is the truth: an event written through another store reaches the stream."""
    start = await svc.store.last_event_id()
    reader = asyncio.create_task(
        read_events(server.client, 2, headers={"Last-Event-ID": str(start)})
    )
    await asyncio.sleep(0.2)
    g = await svc.submit(service.SubmitRequest("written elsewhere"), actor="other-process")
    got = await asyncio.wait_for(reader, 10)
    assert [e["generation_id"] for _, e in got] == [g.id, g.id]
    assert got[0][1]["actor"] == "other-process"


async def until_listening(url: str, *, connections: int) -> None:
    """Wait until that many connections LISTEN for reelwatch's events (the server's and the
    test's own service start theirs in the background)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE query = 'LISTEN reelwatch_events' AND datname = current_database()"
    )
    async with asyncio.timeout(20):
        while True:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                row = await (await conn.execute(query)).fetchone()
            if row is not None and row[0] >= connections:
                return
            await asyncio.sleep(0.1)


async def test_on_postgresql_another_process_s_event_is_pushed_not_polled(
    server: Server, svc: service.Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: an event another process commits wakes this server's stream through
    LISTEN/NOTIFY, long before the table poll would (set to 30 s here). SQLite keeps the
    in-process wake-up and the poll."""
    if not server.world.settings.database_url.startswith("postgresql"):
        pytest.skip("push is PostgreSQL's (SQLite's writers share one process)")
    monkeypatch.setattr(events_module, "POLL_S", 30.0)
    # A first row, so the ids below follow the sequence (emptied tables keep theirs going, and
    # a stream reads a jump in ids as a transaction still in flight).
    await svc.submit(service.SubmitRequest("first"))
    start = await svc.store.last_event_id()
    await until_listening(server.world.settings.database_url, connections=2)
    waits = []
    for i in range(5):
        reader = asyncio.create_task(
            read_events(server.client, 1, headers={"Last-Event-ID": str(start)})
        )
        await asyncio.sleep(0.3)  # the stream has read the table and is waiting
        sent = time.perf_counter()
        g = await svc.submit(service.SubmitRequest(f"pushed {i}"), actor="other-process")
        ((event_id, event),) = await asyncio.wait_for(reader, 5)
        waits.append(time.perf_counter() - sent)
        assert event["generation_id"] == g.id and event_id > start
        start = await svc.store.last_event_id()
    assert max(waits) < 5  # far below the 30 s poll: each was pushed


async def test_on_postgresql_a_submission_elsewhere_wakes_an_idle_worker(
    svc: service.Service, world: World
) -> None:
    """PostgreSQL: a generation created by another process wakes the idle worker of its
    provider here at once (NOTIFY), instead of at its next look at the table."""
    if not world.settings.database_url.startswith("postgresql"):
        pytest.skip("push is PostgreSQL's (SQLite's writers share one process)")
    async with assembly.open_service(world.settings, clock=world.clock) as worker_side:
        await until_listening(world.settings.database_url, connections=2)
        engine = worker_side.engines["openai"]
        engine._wake.clear()  # idle: nothing to do, nothing to wake for
        await svc.submit(service.SubmitRequest("made elsewhere"), actor="other-process")
        async with asyncio.timeout(5):
            while not engine._wake.is_set():
                await asyncio.sleep(0.01)


async def test_nul_characters_are_refused_not_crashed_on(server: Server) -> None:
    """NUL in a query, a path or a prompt is a 400 (PostgreSQL cannot store it), never a 500."""
    assert (
        await server.client.get("/api/generations", params={"model": "\x00"})
    ).status_code == 400
    assert (await server.client.get("/api/generations/gen_%00")).status_code == 400
    response = await server.client.post("/api/generations", json={"prompt": "a\x00b"})
    assert response.status_code == 400 and "NUL" in response.json()["error"]["message"]
    tracked = await server.client.post("/api/generations", json={"video_id": "video_\x00"})
    assert tracked.status_code == 400


async def test_cross_site_changes_are_refused_without_a_token(server: Server) -> None:
    """Loopback-only mode: a cross-site browser POST (or a non-JSON create) is refused."""
    evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    forged = await server.client.post(
        "/api/generations", content=b'{"prompt": "pay for me"}', headers=evil
    )
    assert forged.status_code == 403
    site = {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
    assert (
        await server.client.post("/api/generations", json={"prompt": "x"}, headers=site)
    ).status_code == 403
    plain = await server.client.post(
        "/api/generations", content=b'{"prompt": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    assert server.world.sim.sim.stats()["creates"] == 0


async def test_sse_waits_for_an_event_committed_out_of_order(
    server: Server, svc: service.Service
) -> None:
    """An id whose transaction commits late is still delivered, in order (PostgreSQL)."""
    if "postgresql" not in server.world.settings.database_url:
        # Justified: the case cannot arise on SQLite (one writer at a time, ids in commit order).
        pytest.skip("SQLite serialises writers; ids cannot commit out of order there")
    import psycopg

    g = await create(server, "ordered")
    start = await svc.store.last_event_id()
    url = server.world.settings.database_url
    insert = (
        "INSERT INTO events (generation_id, at, kind, status, progress, data)"
        " VALUES (%s, now(), %s, 'queued', 0, '{}') RETURNING id"
    )
    slow = await psycopg.AsyncConnection.connect(url)
    try:
        first = (await (await slow.execute(insert, (g["id"], "slow"))).fetchone())[0]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as fast:
            second = (await (await fast.execute(insert, (g["id"], "fast"))).fetchone())[0]
        assert second == first + 1
        reader = asyncio.create_task(
            read_events(server.client, 2, headers={"Last-Event-ID": str(start)})
        )
        await asyncio.sleep(0.8)  # the later id is visible, the earlier one not yet
        assert not reader.done()
        await slow.commit()
        got = await asyncio.wait_for(reader, 10)
    finally:
        await slow.close()
    assert [(i, e["kind"]) for i, e in got] == [(first, "slow"), (second, "fast")]


async def test_many_streams_share_one_read_of_the_table(
    web_world: World, svc: service.Service
) -> None:
    """Twenty streams on one server each get every event, in order, while the table is read
    by one shared reader: the reads do not grow with the number of streams."""
    await svc.submit(service.SubmitRequest("first"))  # ids follow the sequence from here
    app = create_app(web_world.settings, clock=web_world.clock, run_worker=False)
    with serving.in_thread(app, probe="/healthz", name="reelwatch-hub") as origin:
        server_svc: service.Service = app.state.service
        reads = 0
        read = server_svc.events_after

        async def counted(after_id: int, *, limit: int = 500) -> list[Any]:
            nonlocal reads
            reads += 1
            return await read(after_id, limit=limit)

        server_svc.events_after = counted  # type: ignore[method-assign]
        start = await svc.store.last_event_id()
        async with httpx.AsyncClient(base_url=origin, timeout=10) as client:
            readers = [
                asyncio.create_task(read_events(client, 6, params={"after": start}))
                for _ in range(20)
            ]
            async with asyncio.timeout(10):
                while app.state.event_hub.streams < 20:
                    await asyncio.sleep(0.05)
            reads = 0
            began = time.perf_counter()
            made = [(await svc.submit(service.SubmitRequest(f"shared {i}"))).id for i in range(3)]
            got = await asyncio.wait_for(asyncio.gather(*readers), 15)
            took = time.perf_counter() - began
    for stream in got:
        assert [e["generation_id"] for _, e in stream] == [g for g in made for _ in (0, 1)]
        assert [i for i, _ in stream] == sorted({i for i, _ in stream})
    # One reader: at most one read per event pushed (PostgreSQL) and one per POLL_S; twenty
    # readers would read twenty times as often.
    assert reads <= 6 + took / events_module.POLL_S + 4, (reads, took)


async def test_the_hub_keeps_the_latest_events_and_a_late_stream_reads_the_table(
    server: Server, svc: service.Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared reader holds only the latest KEPT events; a stream starting further back
    reads the table until it reaches them, with no gap and no repeat."""
    monkeypatch.setattr(events_module, "KEPT", 4)
    await svc.submit(service.SubmitRequest("first"))
    start = await svc.store.last_event_id()
    hub = events_module.Hub(svc, asyncio.Event())
    async with hub.joined():
        made = [(await svc.submit(service.SubmitRequest(f"held {i}"))).id for i in range(5)]
        async with asyncio.timeout(10):
            while hub.last < start + 10:
                await asyncio.sleep(0.05)
        assert list(hub.ids) == list(range(start + 7, start + 11))
        assert hub.floor == start + 6
        newest, chunk = hub.after(hub.floor)
        assert newest == start + 10
        assert [
            json.loads(line[5:])["generation_id"]
            for line in chunk.decode().splitlines()
            if line.startswith("data:")
        ] == [made[3], made[3], made[4], made[4]]
    assert hub.streams == 0 and hub.floor == events_module.MAX_EVENT_ID  # stopped with the last
    late = await asyncio.wait_for(read_events(server.client, 10, params={"after": start}), 10)
    assert [i for i, _ in late] == list(range(start + 1, start + 11))


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/generations/gen_nope", 404, "no generation gen_nope"),
        ("/no/such/page", 404, "There is no page here."),
        ("/?cursor=garbage", 400, "cursor"),
    ],
)
async def test_a_browser_gets_an_html_error_page_and_the_api_json(
    server: Server, path: str, status: int, words: str
) -> None:
    """A page that is missing or refused is a page a person can read (with the way back);
    the same failure asked for as JSON, and every /api path, stays JSON."""
    page = await server.client.get(path, headers={"accept": "text/html,*/*;q=0.8"})
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert words in page.text and 'href="/"' in page.text and "Sign out" not in page.text
    plain = await server.client.get(path, headers={"accept": "application/json"})
    assert plain.headers["content-type"].startswith("application/json")
    api = await server.client.get(
        "/api/generations/gen_nope", headers={"accept": "text/html,*/*;q=0.8"}
    )
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"

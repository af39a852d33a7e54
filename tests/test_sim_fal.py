"""The simulator's fal queue dialect, driven over real HTTP by the official `fal-client` (1.0.3)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import fal_client
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fal_client.client import Completed, FalClientHTTPError, InProgress, Queued

from reelwatch.simulator import RunningSimulator, SimConfig, running
from reelwatch.simulator.fal import MODERATION_MESSAGE
from reelwatch.simulator.server import serve_in_thread
from tests.webhook_receiver import Received, Receiver

KEY = "sim-key-id:sim-key-secret"
CONFIG = SimConfig(
    api_key=KEY,
    queue_s=(2.0, 2.0),
    render_s=(10.0, 10.0),
    webhook_retry_base_s=0.01,
    fal_user_id="user-1234",
)
FAST = "[sim:queue=0,render=0.3]"
APP = "fal-ai/sim-video"
ENDPOINT = APP + "/v2/text-to-video"


@pytest.fixture(scope="module")
def served() -> Iterator[RunningSimulator]:
    with running(CONFIG) as rs:
        yield rs


@pytest.fixture
def rs(served: RunningSimulator) -> RunningSimulator:
    """The simulator, reset to CONFIG: no jobs, faults or clock offset."""
    served.sim.reset(CONFIG)
    return served


MakeClient = Callable[..., Awaitable[fal_client.AsyncClient]]


@pytest.fixture
async def make_client(
    rs: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeClient]:
    """Official async clients whose queue is the simulator; their connections closed afterwards.

    `QUEUE_URL_FORMAT` is patched the way fal's own unit tests patch the module's URLs. The SDK
    has no `close()`, so the fixture closes the httpx client each one built.
    """
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", rs.fal_queue_url)
    made: list[fal_client.AsyncClient] = []

    async def make(key: str = KEY) -> fal_client.AsyncClient:
        client = fal_client.AsyncClient(key=key)
        made.append(client)
        return client

    yield make
    for client in made:
        await (await client._client).aclose()


@pytest.fixture
async def fal(make_client: MakeClient) -> fal_client.AsyncClient:
    """The official async client pointed at the simulator."""
    return await make_client()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client for the public CDN and JWKS (no credentials)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def served_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve_in_thread(receiver.app, name="fal-webhook-receiver") as origin:
        receiver.url = origin + "/hook"
        yield receiver


@pytest.fixture
def receiver(served_receiver: Receiver, rs: RunningSimulator) -> Receiver:
    served_receiver.reset()
    return served_receiver


async def _wait_for(receiver: Receiver, count: int, timeout_s: float = 5.0) -> list[Received]:
    deadline = time.monotonic() + timeout_s
    while len(receiver.received()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} deliveries, got {len(receiver.received())}")
        await asyncio.sleep(0.005)
    return receiver.received()


def _public_keys(jwks: dict[str, Any]) -> list[Ed25519PublicKey]:
    keys = []
    for key in jwks["keys"]:
        assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
        x = key["x"]
        keys.append(
            Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
        )
    return keys


def _verify(delivery: Received, jwks: dict[str, Any], tolerance_s: float = 300) -> bool:
    """What a fal webhook receiver does: rebuild the signed message, try every key."""
    headers = delivery.headers
    timestamp = int(headers["x-fal-webhook-timestamp"])
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            str(timestamp),
            hashlib.sha256(delivery.body).hexdigest(),
        ]
    ).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for key in _public_keys(jwks):
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


async def test_submit_answers_the_queue_urls(
    fal: fal_client.AsyncClient, rs: RunningSimulator, http: httpx.AsyncClient
) -> None:
    """Submit answers a UUID and URLs on the simulator that use only `{owner}/{app}`."""
    handle = await fal.submit(ENDPOINT, {"prompt": "a cat [sim:queue=5]"})
    assert str(uuid.UUID(handle.request_id)) == handle.request_id
    base = f"{rs.fal_queue_url}{APP}/requests/{handle.request_id}"
    assert (handle.response_url, handle.status_url, handle.cancel_url) == (
        base,
        base + "/status",
        base + "/cancel",
    )
    raw = await http.post(
        rs.fal_queue_url + ENDPOINT,
        json={"prompt": "raw [sim:queue=5]"},
        headers={"authorization": f"Key {KEY}"},
    )
    body = raw.json()
    assert raw.status_code == 200
    assert body["status"] == "IN_QUEUE"
    assert body["queue_position"] == 4
    assert set(body) >= {"request_id", "response_url", "status_url", "cancel_url"}
    assert rs.sim.stats()["jobs_by_dialect"]["fal"] == 2


async def test_status_walks_the_queue_then_reports_logs(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """IN_QUEUE with a falling position, IN_PROGRESS with logs only when asked, COMPLETED."""
    handle = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=5,render=100]"})
    assert await handle.status() == Queued(position=4)
    rs.sim.clock.advance(3)
    assert await handle.status() == Queued(position=1)
    rs.sim.clock.advance(2 + 99)
    without = await handle.status()
    assert without == InProgress(logs=None)
    running_ = await handle.status(with_logs=True)
    assert isinstance(running_, InProgress)
    assert running_.logs is not None
    messages = [line["message"] for line in running_.logs]
    assert messages[0].startswith("Loading model weights")
    assert any(m.startswith("Generating video: ") and m.endswith("%") for m in messages[1:])
    assert {line["level"] for line in running_.logs} == {"INFO"}
    percents = [int(m.split(": ")[1].rstrip("%")) for m in messages[1:]]
    assert percents == sorted(percents)
    assert percents[-1] < 100
    rs.sim.clock.advance(2)
    done = await handle.status(with_logs=True)
    assert isinstance(done, Completed)
    assert (done.error, done.error_type) == (None, None)
    assert done.metrics == {"inference_time": pytest.approx(100.0)}
    assert done.logs is not None
    assert done.logs[-2]["message"] == "Generating video: 100%"


async def test_get_to_completion_and_download(
    fal: fal_client.AsyncClient, rs: RunningSimulator, http: httpx.AsyncClient
) -> None:
    """`handle.get()` polls to COMPLETED and returns the video; the CDN URL downloads."""
    handle = await fal.submit(ENDPOINT, {"prompt": FAST + "[sim:bytes=90000]"})
    events = [event async for event in handle.iter_events(with_logs=True, interval=0.02)]
    assert isinstance(events[-1], Completed)
    assert all(isinstance(e, Queued | InProgress) for e in events[:-1])
    result = await handle.get(interval=0.02)
    video = result["video"]
    assert (video["content_type"], video["file_name"], video["file_size"]) == (
        "video/mp4",
        "output.mp4",
        90000,
    )
    assert video["url"] == f"{rs.origin}/fal-cdn/files/{handle.request_id}/output.mp4"
    assert isinstance(result["seed"], int)
    download = await http.get(video["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert hashlib.sha256(download.content).hexdigest() == rs.sim.expected_sha256(handle.request_id)
    assert rs.sim.stats()["videos"][handle.request_id]["content_downloads"] == 1


async def test_reattach_with_get_handle(
    fal: fal_client.AsyncClient, make_client: MakeClient, rs: RunningSimulator
) -> None:
    """After a restart, `get_handle(endpoint, request_id)` rebuilds the URLs and finds it."""
    submitted = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=1,render=1]"})
    later = await make_client()
    handle = await later.get_handle(ENDPOINT, submitted.request_id)
    assert handle.status_url == submitted.status_url
    assert isinstance(await handle.status(), Queued)
    rs.sim.clock.advance(3)
    assert (await later.result(APP, submitted.request_id))["video"]["file_size"] > 0
    with pytest.raises(FalClientHTTPError) as caught:
        await later.status("fal-ai/other-app", submitted.request_id)
    assert caught.value.status_code == 404


async def test_cancel_ends_the_request_as_client_cancelled(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """Cancel is accepted while queued or running; the result then answers 499."""
    queued = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=50]"})
    await queued.cancel()
    status = await queued.status(with_logs=True)
    assert isinstance(status, Completed)
    assert (status.error, status.error_type) == (
        "Request cancelled by the client.",
        "client_cancelled",
    )
    assert status.metrics == {}
    with pytest.raises(FalClientHTTPError) as caught:
        await queued.get()
    assert caught.value.status_code == 499
    assert caught.value.error_type == "client_cancelled"
    with pytest.raises(FalClientHTTPError) as again:
        await queued.cancel()
    assert again.value.status_code == 400
    assert again.value.response.json() == {"status": "ALREADY_COMPLETED"}
    rendering = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=0,render=100]"})
    rs.sim.clock.advance(40)
    await rendering.cancel()
    done = await rendering.status()
    assert isinstance(done, Completed)
    assert done.error_type == "client_cancelled"
    assert done.metrics["inference_time"] == pytest.approx(40, abs=1)


async def test_infrastructure_failure_is_completed_with_an_error(
    fal: fal_client.AsyncClient,
) -> None:
    """`fail=runner_disconnected`: COMPLETED + error, and the result is that request error."""
    handle = await fal.submit(ENDPOINT, {"prompt": FAST + "[sim:fail=runner_disconnected]"})
    events = [event async for event in handle.iter_events(interval=0.02)]
    done = events[-1]
    assert isinstance(done, Completed)
    assert (done.error, done.error_type) == ("Runner disconnected", "runner_disconnected")
    with pytest.raises(FalClientHTTPError) as caught:
        await handle.get()
    assert caught.value.status_code == 503
    assert caught.value.error_type == "runner_disconnected"
    assert caught.value.message == "Runner disconnected"
    assert caught.value.response_headers["x-fal-error-type"] == "runner_disconnected"


async def test_other_failure_codes_answer_500(fal: fal_client.AsyncClient) -> None:
    """A code that is not one of fal's request error types answers 500 with it as the type."""
    handle = await fal.submit(ENDPOINT, {"prompt": FAST + "[sim:fail=out_of_memory]"})
    with pytest.raises(FalClientHTTPError) as caught:
        await handle.get(interval=0.02)
    assert (caught.value.status_code, caught.value.error_type) == (500, "out_of_memory")


async def test_moderation_is_a_422_content_policy_violation(
    fal: fal_client.AsyncClient,
) -> None:
    """The model's moderation answers the result GET with 422 and a typed `detail` list."""
    prompt = FAST + "[sim:fail=moderation_blocked]"
    handle = await fal.submit(ENDPOINT, {"prompt": prompt})
    done = [event async for event in handle.iter_events(interval=0.02)][-1]
    assert isinstance(done, Completed)
    assert done.error_type == "content_policy_violation"
    with pytest.raises(FalClientHTTPError) as caught:
        await handle.get()
    assert caught.value.status_code == 422
    [detail] = caught.value.response.json()["detail"]
    assert detail["loc"] == ["body", "prompt"]
    assert detail["type"] == "content_policy_violation"
    assert detail["msg"] == MODERATION_MESSAGE
    assert caught.value.message == [detail]


async def test_unknown_failed_status_makes_the_sdk_raise(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """`[sim:unknown_status=FAILED]` answers FAILED, which `_parse_status` refuses."""
    handle = await fal.submit(
        ENDPOINT, {"prompt": "[sim:queue=1,render=100,unknown_status=FAILED]"}
    )
    assert isinstance(await handle.status(), Queued)
    rs.sim.clock.advance(2)
    with pytest.raises(ValueError, match="Unknown status: FAILED"):
        await handle.status()


async def test_result_is_kept_an_hour(fal: fal_client.AsyncClient, rs: RunningSimulator) -> None:
    """A small result is kept one simulated hour after completion, then answers 404."""
    handle = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=0,render=1]"})
    rs.sim.clock.advance(1 + 3598)
    assert (await handle.get())["video"]["file_name"] == "output.mp4"
    rs.sim.clock.advance(2)
    with pytest.raises(FalClientHTTPError) as caught:
        await handle.get()
    assert caught.value.status_code == 404
    assert isinstance(await handle.status(), Completed)


async def test_large_result_is_kept_six_minutes(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """A result of 10 KB or more is evicted after six minutes (the result echoes the prompt)."""
    handle = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=0,render=1]" + "x" * 12_000})
    rs.sim.clock.advance(1 + 358)
    result = await handle.get()
    assert len(json.dumps(result)) >= 10_000
    rs.sim.clock.advance(2)
    with pytest.raises(FalClientHTTPError) as caught:
        await handle.get()
    assert caught.value.status_code == 404


async def test_media_expires_with_the_configured_lifetime(
    fal: fal_client.AsyncClient, rs: RunningSimulator, http: httpx.AsyncClient
) -> None:
    """The CDN file answers 404 once the job's media lifetime is over."""
    rs.sim.reset(replace(CONFIG, expires_after_s=120))
    handle = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=0,render=1]"})
    rs.sim.clock.advance(2)
    url = (await handle.get())["video"]["url"]
    assert (await http.get(url)).status_code == 200
    rs.sim.clock.advance(120)
    assert (await http.get(url)).status_code == 404


async def test_start_timeout_ends_a_request_that_never_started(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """`start_timeout` (X-Fal-Request-Timeout) reached in the queue: request_timeout, 504."""
    handle = await fal.submit(ENDPOINT, {"prompt": "[sim:queue=100]"}, start_timeout=5)
    rs.sim.clock.advance(6)
    done = await handle.status()
    assert isinstance(done, Completed)
    assert (done.error, done.error_type) == ("Request timed out", "request_timeout")
    with pytest.raises(FalClientHTTPError) as caught:
        await handle.get()
    assert (caught.value.status_code, caught.value.error_type) == (504, "request_timeout")
    assert rs.sim.stats()["requests"]["fal.result"] == 1


async def test_wrong_key_is_a_401(make_client: MakeClient, rs: RunningSimulator) -> None:
    """A wrong key is refused with fal's `detail`."""
    wrong = await make_client("other:key")
    with pytest.raises(FalClientHTTPError) as caught:
        await wrong.submit(ENDPOINT, {"prompt": "x"})
    assert caught.value.status_code == 401
    assert caught.value.message == "No user found for Key ID and Secret"
    assert rs.sim.stats()["jobs"] == 0


async def test_sdk_retries_a_429_submit(fal: fal_client.AsyncClient, rs: RunningSimulator) -> None:
    """The SDK retries 429s, the submit POST included (fal sends no Retry-After by default)."""
    rs.sim.inject("fal.submit", "rate_limit", count=2)
    handle = await fal.submit(ENDPOINT, {"prompt": "x"})
    assert handle.request_id
    assert rs.sim.stats()["requests"]["fal.submit"] == 3
    assert rs.sim.stats()["jobs"] == 1


async def test_lost_submit_answer_is_final_unless_it_looks_like_ingress(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """A JSON 503 after queueing is not retried; an nginx 502 is, so the job is queued twice."""
    rs.sim.inject("fal.submit", "create_then_fail", status=503)
    with pytest.raises(FalClientHTTPError) as caught:
        await fal.submit(ENDPOINT, {"prompt": "answer lost"})
    assert caught.value.status_code == 503
    assert "x-fal-request-id" in caught.value.response_headers
    assert rs.sim.stats()["jobs"] == 1
    rs.sim.inject("fal.submit", "create_then_fail", status=502, should_retry=True)
    handle = await fal.submit(ENDPOINT, {"prompt": "sent twice"})
    stats = rs.sim.stats()
    assert stats["requests"]["fal.submit"] == 3
    assert (stats["jobs"], stats["creates"], stats["duplicate_creates"]) == (3, 3, 1)
    assert rs.sim.find(handle.request_id, rs.sim.clock.now(), dialect="fal") is not None


async def test_webhook_is_ed25519_signed_and_verifies_against_the_jwks(
    fal: fal_client.AsyncClient,
    rs: RunningSimulator,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    """`?fal_webhook=` gets the OK envelope, signed with a key the JWKS publishes."""
    handle = await fal.submit(ENDPOINT, {"prompt": FAST}, webhook_url=receiver.url)
    [delivery] = await _wait_for(receiver, 1)
    jwks = (await http.get(rs.fal_jwks_url)).json()
    assert _verify(delivery, jwks)
    headers = delivery.headers
    assert headers["x-fal-webhook-request-id"] == handle.request_id
    assert headers["x-fal-webhook-user-id"] == "user-1234"
    body = json.loads(delivery.body)
    assert (body["request_id"], body["gateway_request_id"], body["status"]) == (
        handle.request_id,
        handle.request_id,
        "OK",
    )
    assert body["payload"] == await handle.get()
    attempts = rs.sim.stats()["webhooks"]
    assert [(a["dialect"], a["type"], a["ok"]) for a in attempts] == [("fal", "OK", True)]


async def test_failed_request_webhook_is_an_error_envelope(
    fal: fal_client.AsyncClient, rs: RunningSimulator, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    """A moderated request POSTs `status: ERROR` with the 422 body as payload, retried on 5xx."""
    receiver.plan(503)
    await fal.submit(
        ENDPOINT, {"prompt": FAST + "[sim:fail=moderation_blocked]"}, webhook_url=receiver.url
    )
    first, second = await _wait_for(receiver, 2)
    assert first.body == second.body
    body = json.loads(second.body)
    assert (body["status"], body["error"]) == ("ERROR", "Invalid status code: 422")
    assert body["payload"]["detail"][0]["type"] == "content_policy_violation"
    jwks = (await http.get(rs.fal_jwks_url)).json()
    assert _verify(first, jwks)
    assert _verify(second, jwks)


async def test_key_rotation_needs_a_fresh_jwks(
    fal: fal_client.AsyncClient, rs: RunningSimulator, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    """After a rotation, deliveries fail against a cached JWKS and verify after a refresh."""
    cached = (await http.get(rs.fal_jwks_url)).json()
    old_key = cached["keys"][0]
    rotated = await http.post(rs.origin + "/_sim/fal/rotate-key")
    new_kid = rotated.json()["kid"]
    assert new_kid != old_key["kid"]
    await fal.submit(ENDPOINT, {"prompt": FAST}, webhook_url=receiver.url)
    [delivery] = await _wait_for(receiver, 1)
    assert not _verify(delivery, cached)
    fresh = (await http.get(rs.fal_jwks_url)).json()
    assert [key["kid"] for key in fresh["keys"]] == [new_kid, old_key["kid"]]
    assert _verify(delivery, fresh)
    assert rs.sim.rotate_fal_key() not in (new_kid, old_key["kid"])


@pytest.mark.parametrize(
    ("tamper", "tolerance_s"),
    [({"bad_signature": True}, 300), ({"timestamp_offset_s": -600}, 300)],
)
async def test_tampered_fal_webhooks_are_rejected(
    fal: fal_client.AsyncClient,
    rs: RunningSimulator,
    receiver: Receiver,
    http: httpx.AsyncClient,
    tamper: dict[str, Any],
    tolerance_s: float,
) -> None:
    """A forged signature or a stale timestamp fails verification; the next one passes."""
    rs.sim.tamper_next_webhook(dialect="fal", **tamper)
    await fal.submit(ENDPOINT, {"prompt": FAST}, webhook_url=receiver.url)
    [bad] = await _wait_for(receiver, 1)
    jwks = (await http.get(rs.fal_jwks_url)).json()
    assert not _verify(bad, jwks, tolerance_s)
    await fal.submit(ENDPOINT, {"prompt": FAST}, webhook_url=receiver.url)
    good = (await _wait_for(receiver, 2))[1]
    assert _verify(good, jwks, tolerance_s)


async def test_duplicate_fal_webhook(
    fal: fal_client.AsyncClient, rs: RunningSimulator, receiver: Receiver
) -> None:
    """A duplicated delivery arrives twice with the same request id and body."""
    rs.sim.tamper_next_webhook(duplicate=True, dialect="fal")
    await fal.submit(ENDPOINT, {"prompt": FAST}, webhook_url=receiver.url)
    first, second = await _wait_for(receiver, 2)
    assert first.body == second.body
    assert first.headers["x-fal-webhook-request-id"] == second.headers["x-fal-webhook-request-id"]


async def test_in_process_create_for_the_dialect(
    fal: fal_client.AsyncClient, rs: RunningSimulator
) -> None:
    """`sim.create(dialect="fal", extra={"endpoint": ...})` makes a request the SDK can read."""
    job = rs.sim.create(prompt=FAST, dialect="fal", extra={"endpoint": ENDPOINT})
    handle = await fal.get_handle(APP, job.id)
    result = await handle.get(interval=0.02)
    assert result["video"]["url"].startswith(rs.origin + "/fal-cdn/files/")

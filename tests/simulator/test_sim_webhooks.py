"""Webhook deliveries to a real HTTP receiver, verified with standardwebhooks and the SDK."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import openai
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reelwatch.simulator import RunningSimulator, webhooks

if TYPE_CHECKING:
    from conftest import Receiver


@pytest.fixture
def verify(webhook_secret: str) -> Callable[[bytes, dict[str, str]], None]:
    """Check a delivery with both standardwebhooks and the official SDK."""

    def check(body: bytes, headers: dict[str, str]) -> None:
        Webhook(webhook_secret).verify(body, headers)
        with openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1") as sdk:
            sdk.webhooks.verify_signature(body, headers, secret=webhook_secret)

    return check


Verify = Callable[[bytes, dict[str, str]], None]


def test_completed_job_is_announced(
    client: openai.OpenAI,
    rs: RunningSimulator,
    receiver: Receiver,
    verify: Verify,
    eventually: Callable[..., None],
) -> None:
    """A finished job POSTs a signed video.completed event that both verifiers accept."""
    video = client.videos.create(prompt="[sim:queue=0,render=0]")
    [delivery] = receiver.wait_for(1)
    verify(delivery.body, delivery.headers)
    event = json.loads(delivery.body)
    assert (event["type"], event["object"]) == ("video.completed", "event")
    assert event["data"] == {"id": video.id}
    assert event["id"].startswith("evt_")
    assert event["created_at"] == client.videos.retrieve(video.id).completed_at
    assert (
        delivery.headers["user-agent"] == "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
    )
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["webhook-signature"].startswith("v1,")
    eventually(lambda: rs.sim.stats()["webhooks"])
    [attempt] = rs.sim.stats()["webhooks"]
    assert (attempt["ok"], attempt["status_code"], attempt["video_id"]) == (True, 200, video.id)


def test_failed_job_is_announced(client: openai.OpenAI, receiver: Receiver, verify: Verify) -> None:
    """A failed job POSTs video.failed."""
    video = client.videos.create(prompt="[sim:queue=0,render=0,fail=moderation_blocked]")
    [delivery] = receiver.wait_for(1)
    verify(delivery.body, delivery.headers)
    event = json.loads(delivery.body)
    assert (event["type"], event["data"]["id"]) == ("video.failed", video.id)


def test_delivery_waits_for_the_simulated_clock(
    client: openai.OpenAI, rs: RunningSimulator, receiver: Receiver
) -> None:
    """Nothing is sent before the job finishes on the sim clock; advancing the clock sends it."""
    slow = client.videos.create(prompt="slow")
    rs.sim.clock.advance(5)
    marker = client.videos.create(prompt="[sim:queue=0,render=0]")
    [first] = receiver.wait_for(1)
    assert json.loads(first.body)["data"]["id"] == marker.id
    rs.sim.clock.advance(10)
    second = receiver.wait_for(2)[1]
    assert json.loads(second.body)["data"]["id"] == slow.id


def test_deleted_and_stuck_jobs_are_not_announced(
    client: openai.OpenAI, rs: RunningSimulator, receiver: Receiver
) -> None:
    """A job deleted before it finishes, or one that never finishes, sends nothing."""
    deleted = client.videos.create(prompt="to delete")
    client.videos.create(prompt="[sim:stuck]")
    client.videos.create(prompt="[sim:vanish_after=1]")
    client.videos.delete(deleted.id)
    rs.sim.clock.advance(100)
    marker = client.videos.create(prompt="[sim:queue=0,render=0]")
    [only] = receiver.wait_for(1)
    assert json.loads(only.body)["data"]["id"] == marker.id


def test_failed_deliveries_are_retried_with_the_same_id(
    client: openai.OpenAI,
    rs: RunningSimulator,
    receiver: Receiver,
    eventually: Callable[..., None],
) -> None:
    """Non-2xx answers are retried with backoff, keeping webhook-id, until one succeeds."""
    receiver.plan(500, 503)
    client.videos.create(prompt="[sim:queue=0,render=0]")
    deliveries = receiver.wait_for(3)
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    eventually(lambda: len(rs.sim.stats()["webhooks"]) == 3)
    attempts = rs.sim.stats()["webhooks"]
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]


def test_unreachable_receiver_gives_up_after_max_attempts(
    client: openai.OpenAI,
    rs: RunningSimulator,
    configure: Callable[..., None],
    eventually: Callable[..., None],
    webhook_secret: str,
) -> None:
    """Connection errors are retried too, then the delivery is abandoned."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure(
        webhook_url=f"http://127.0.0.1:{port}/nobody",
        webhook_secret=webhook_secret,
        webhook_retry_base_s=0.001,
        webhook_max_attempts=3,
    )
    client.videos.create(prompt="[sim:queue=0,render=0]")
    eventually(lambda: len(rs.sim.stats()["webhooks"]) == 3)
    attempts = rs.sim.stats()["webhooks"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["status_code"] is None and a["error"] for a in attempts)


def test_duplicate_delivery(
    client: openai.OpenAI, rs: RunningSimulator, receiver: Receiver
) -> None:
    """A tampered delivery arrives twice with the same webhook-id and body."""
    rs.sim.tamper_next_webhook(duplicate=True)
    client.videos.create(prompt="[sim:queue=0,render=0]")
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body


@pytest.mark.parametrize("offset_s", [-600.0, 600.0])
def test_stale_or_future_timestamp_is_rejected(
    client: openai.OpenAI,
    rs: RunningSimulator,
    receiver: Receiver,
    webhook_secret: str,
    offset_s: float,
) -> None:
    """A timestamp outside the 300 s tolerance fails verification in both libraries."""
    rs.sim.tamper_next_webhook(timestamp_offset_s=offset_s)
    client.videos.create(prompt="[sim:queue=0,render=0]")
    [delivery] = receiver.wait_for(1)
    with pytest.raises(WebhookVerificationError, match="too old" if offset_s < 0 else "too new"):
        Webhook(webhook_secret).verify(delivery.body, delivery.headers)
    with (
        openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1") as sdk,
        pytest.raises(openai.InvalidWebhookSignatureError, match=r"too old|too new"),
    ):
        sdk.webhooks.verify_signature(delivery.body, delivery.headers, secret=webhook_secret)


def test_bad_signature_is_rejected(
    client: openai.OpenAI,
    rs: RunningSimulator,
    receiver: Receiver,
    webhook_secret: str,
    verify: Verify,
) -> None:
    """A mis-signed delivery fails verification; the following one is fine again."""
    rs.sim.tamper_next_webhook(bad_signature=True)
    client.videos.create(prompt="[sim:queue=0,render=0]")
    [bad] = receiver.wait_for(1)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(webhook_secret).verify(bad.body, bad.headers)
    with (
        openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1") as sdk,
        pytest.raises(openai.InvalidWebhookSignatureError, match="does not match"),
    ):
        sdk.webhooks.verify_signature(bad.body, bad.headers, secret=webhook_secret)
    client.videos.create(prompt="[sim:queue=0,render=0]")
    good = receiver.wait_for(2)[1]
    verify(good.body, good.headers)


def test_signature_matches_an_independent_computation(webhook_secret: str) -> None:
    """`sign` is HMAC-SHA256 over id.timestamp.body with the base64-decoded secret."""
    body = b'{"id":"evt_1"}'
    signed = webhooks.sign(webhook_secret, "wh_1", 1700000000, body)
    key = base64.b64decode(webhook_secret.removeprefix("whsec_"))
    mac = hmac.new(key, b"wh_1.1700000000." + body, hashlib.sha256).digest()
    assert signed == "v1," + base64.b64encode(mac).decode()

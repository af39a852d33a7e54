"""OpenAI webhooks in: Standard Webhooks signatures checked on the raw body, each id once.

The verification is written here rather than taken from a library: the `standardwebhooks`
package crashes (ValueError, binascii.Error) on malformed signature headers and reads the wall
clock itself, and the `openai` SDK's check accepts a signature without the required `v1,`
prefix. This one is strict, total (every bad input is a `Rejected`), and takes `now`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reelwatch import exceptions, lifecycle, service
from reelwatch.web.errors import ApiError

TOLERANCE_S = 300
MAX_BODY_BYTES = 256 * 1024
HANDLED = ("video.completed", "video.failed")
MAX_ID_CHARS = 200  # webhook_deliveries.webhook_id and .video_id are String(200)
MAX_STAMP_DIGITS = 12  # unix seconds until the year 33658; more is never a real timestamp
# Ids are ASCII tokens (`msg_...`, `video_...`); anything else (NUL, which PostgreSQL refuses,
# control characters, spaces) cannot be one and must not reach the store or a log line.
_ID = re.compile(r"[\x21-\x7e]+")

router = APIRouter()


class Rejected(exceptions.ReelwatchError):
    """The webhook's signature does not verify."""


def key_of(secret: str) -> bytes:
    """`whsec_<base64>` secrets are base64 keys; any other string is used as UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise exceptions.ConfigError("OPENAI_WEBHOOK_SECRET: not valid base64") from exc
    return secret.encode("utf-8")


def verify(payload: bytes, headers: Mapping[str, str], secret: str, now: float) -> str:
    """Check the signature of one delivery; returns its webhook-id or raises Rejected."""
    webhook_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and stamp and signatures):
        raise Rejected("missing webhook-id, webhook-timestamp or webhook-signature")
    # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses, and a
    # huge number would overflow the float arithmetic below.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_STAMP_DIGITS):
        raise Rejected("webhook-timestamp is not a unix time")
    if abs(now - int(stamp)) > TOLERANCE_S:
        raise Rejected("webhook-timestamp is outside the 300 s tolerance")
    signed = b".".join([webhook_id.encode(), stamp.encode(), payload])
    expected = hmac.new(key_of(secret), signed, hashlib.sha256).digest()
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue  # other schemes (or no prefix at all) never match
        try:
            presented = base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII string
            continue
        if hmac.compare_digest(presented, expected):
            return webhook_id
    raise Rejected("no webhook-signature matches")


def plausible_id(value: object) -> bool:
    """An id a delivery row can hold: a string of 1..200 printable ASCII characters."""
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS and bool(_ID.fullmatch(value))


@router.post("/api/webhooks/openai")
async def receive(request: Request) -> JSONResponse:
    """Verify, record the delivery once, make the generation due now; the engine does the rest."""
    settings = request.app.state.settings
    svc: service.Service = request.app.state.service
    metrics = request.app.state.metrics
    if not settings.openai_webhook_secret:
        raise ApiError(503, "webhooks_disabled", "OPENAI_WEBHOOK_SECRET is not set")
    payload = await request.body()
    if len(payload) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "webhook body too large")
    try:
        webhook_id = verify(
            payload, request.headers, settings.openai_webhook_secret, svc.clock.now().timestamp()
        )
    except Rejected as exc:
        metrics.webhooks.labels("rejected").inc()
        raise ApiError(400, "invalid_signature", exc.message) from None
    try:
        event: Any = json.loads(payload)
        event_type = str(event["type"])
        video_id = event["data"]["id"]
    except (ValueError, KeyError, TypeError):
        metrics.webhooks.labels("malformed").inc()
        raise ApiError(400, "invalid_request", "body: not a webhook event") from None
    for field, value in (("webhook-id", webhook_id), ("data.id", video_id)):
        if not plausible_id(value):
            metrics.webhooks.labels("malformed").inc()
            raise ApiError(
                400,
                "invalid_request",
                f"{field}: must be 1 to {MAX_ID_CHARS} printable ASCII characters",
            )
    if event_type not in HANDLED:
        metrics.webhooks.labels("ignored").inc()
        return JSONResponse({"received": True, "handled": False})
    observation = lifecycle.WebhookReceived(event_type, webhook_id)
    outcome = await svc.webhook(webhook_id, video_id, observation)
    metrics.webhooks.labels(outcome).inc()
    return JSONResponse({"received": True, "handled": outcome == "applied", "result": outcome})

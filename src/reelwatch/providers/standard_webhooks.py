"""Standard Webhooks (https://www.standardwebhooks.com) signatures, as OpenAI and Replicate
send them: HMAC-SHA256 over `{id}.{timestamp}.{body}`, `v1,<base64>` entries."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime

from reelwatch import exceptions
from reelwatch.providers import base

TOLERANCE_S = 300
MAX_STAMP_DIGITS = 12  # unix seconds until the year 33658; more is never a real timestamp


def key_of(secret: str, variable: str = "webhook secret") -> bytes:
    """`whsec_<base64>` secrets are base64 keys; any other string is used as UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise exceptions.ConfigError(f"{variable}: not valid base64 after whsec_") from exc
    return secret.encode("utf-8")


def verify(payload: bytes, headers: Mapping[str, str], key: bytes, now: float) -> str:
    """Check a Standard Webhooks signature; returns the webhook-id or raises WebhookRejected.

    Written here rather than taken from a library: the `standardwebhooks` package crashes
    (ValueError, binascii.Error) on malformed signature headers and reads the wall clock
    itself, and the `openai` SDK's check accepts a signature without the required `v1,`
    prefix. This one is strict, total (every bad input is a rejection), and takes `now`.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (webhook_id and stamp and signatures):
        raise base.WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature")
    # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses, and a
    # huge number would overflow the float arithmetic below.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_STAMP_DIGITS):
        raise base.WebhookRejected("webhook-timestamp is not a unix time")
    if abs(now - int(stamp)) > TOLERANCE_S:
        raise base.WebhookRejected("webhook-timestamp is outside the 300 s tolerance")
    signed = b".".join([webhook_id.encode(), stamp.encode(), payload])
    expected = hmac.new(key, signed, hashlib.sha256).digest()
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
    raise base.WebhookRejected("no webhook-signature matches")


# Reads a verified body: (job id, event type, whether the event says the job ended).
Parse = Callable[[bytes], tuple[str, str, bool]]


class Verifier:
    """A `WebhookVerifier` for one secret and one provider's body shape."""

    def __init__(self, secret: str, parse: Parse, *, variable: str) -> None:
        self._key = key_of(secret, variable)
        self._parse = parse

    async def verify(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> base.WebhookEvent:
        webhook_id = base.require_id(
            verify(body, headers, self._key, now.timestamp()), "webhook-id"
        )
        video_id, event_type, terminal = self._parse(body)
        return base.WebhookEvent(webhook_id, video_id, event_type, terminal)

    async def aclose(self) -> None:
        return None

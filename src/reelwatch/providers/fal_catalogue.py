"""What fal offers (any fal app by endpoint id, prices of known ones), its configuration and
its webhook verifier: everything but the connection, so reading it imports no SDK.

`build` imports the adapter (`reelwatch.providers.fal`, on `fal-client`) only when a provider
is built; the SDK's endpoint-id rules (`AppId`) are imported where an id is read.
"""

from __future__ import annotations

import base64 as b64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelwatch import clock, exceptions
from reelwatch.models import Variant
from reelwatch.providers import base, jwks
from reelwatch.settings import Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from fal_client.client import AppId

    from reelwatch.providers.fal import Fal

NAME = "fal"
DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
WEBHOOK_TOLERANCE_S = 300

# USD per generated second, as listed on fal's model pages in 2026-11 (estimates; override
# with REELWATCH_PRICES).
PRICES: Mapping[str, float] = {
    "fal-ai/veo3": 0.75,
    "fal-ai/veo3/fast": 0.40,
    "fal-ai/kling-video/v2.1/master/text-to-video": 0.28,
    "fal-ai/minimax/hailuo-02/standard/text-to-video": 0.045,
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": 0.12,
    "fal-ai/wan/v2.2-a14b/text-to-video": 0.08,
    "fal-ai/luma-dream-machine/ray-2": 0.10,
}
MODELS = tuple(PRICES)
APP = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*){1,5}", re.IGNORECASE)
REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


class Catalogue:
    """Any fal app, by its endpoint id (`owner/app[/path]`); prices for known ones."""

    name = NAME
    models = MODELS
    default_model = "fal-ai/veo3/fast"
    capabilities = base.Capabilities(
        progress=(base.ProgressKind.QUEUE_POSITION, base.ProgressKind.LOG_LINES),
        can_list=False,  # not in the queue API: a lost submit goes to a person
        can_cancel=True,
        assets=base.AssetDelivery.OUTPUT_URLS,
        webhooks="ed25519-jwks",
        variants=(Variant.VIDEO,),
        asset_lifetime="result 1 hour (6 minutes if 10 KB or more); media per account setting",
    )

    def validate(self, model: str, params: Mapping[str, Any]) -> base.Inputs:
        if app_id(model) is None:
            raise exceptions.InvalidInput(
                f"model: {model!r} is not a fal endpoint id like {MODELS[0]}"
            )
        clean = base.plain_params(params)
        return base.Inputs(clean, seconds=_seconds(clean.get("duration")), size=_size(clean))

    def estimate_cost(
        self, model: str, params: Mapping[str, Any], prices: Mapping[str, float]
    ) -> float | None:
        return base.price(PRICES, prices, model, _seconds(params.get("duration")))

    def ref(self, job: str) -> base.Ref:
        """`owner/app[/path]/REQUEST_ID`: the request id alone does not say which queue."""
        endpoint, _, request_id = job.strip().rpartition("/")
        app = app_id(endpoint)
        if app is None or not REQUEST_ID.fullmatch(request_id):
            raise exceptions.InvalidInput(
                f"video_id: give a fal request as its endpoint id and request id, like "
                f"{MODELS[0]}/764cabcf-b745-4b3e-ae38-1200304cf45b"
            )
        return base.Ref(request_id, {"app": app_name(app)})


CATALOGUE = Catalogue()


def _seconds(value: object) -> int | None:
    """fal apps write durations as 8, "8" or "8s"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := re.fullmatch(r"(\d{1,4})s?", value.strip())):
        return int(match.group(1))
    return None


def _size(params: Mapping[str, Any]) -> str | None:
    value = params.get("aspect_ratio", params.get("resolution"))
    return None if value is None else str(value)[:20]


class Config(BaseSettings):
    """The key (FAL_KEY, as the SDK reads it) and where the queue and the keys live."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    key: str | None = Field(None, validation_alias=AliasChoices("FAL_KEY"))
    # The SDK's own variable is a host (https only); a full URL (any scheme) wins over it.
    base_url: str = Field(
        default_factory=lambda: f"https://{os.environ.get('FAL_QUEUE_RUN_HOST', 'queue.fal.run')}/",
        validation_alias=AliasChoices("REELWATCH_FAL_QUEUE_URL"),
    )
    jwks_url: str = Field(DEFAULT_JWKS_URL, validation_alias=AliasChoices("REELWATCH_FAL_JWKS_URL"))

    # The endpoint's name when one API is reached through several URLs (a proxy on some
    # hosts): workers agree on it instead of the base URL. Default: the base URL.
    endpoint_name: str | None = Field(None, validation_alias=AliasChoices("REELWATCH_FAL_ENDPOINT"))

    @field_validator("base_url", "jwks_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("base_url")
    @classmethod
    def _slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def missing(self) -> str | None:
        return None if self.key else "FAL_KEY"

    @property
    def webhooks_enabled(self) -> bool:
        return True  # nothing to configure here; they are sent when REELWATCH_PUBLIC_URL is set


def build(config: Config, settings: Settings, the_clock: clock.Clock) -> Fal:
    from reelwatch.providers import fal  # the SDK: only for a provider that is built

    assert config.key is not None
    return fal.Fal(
        key=config.key,
        base_url=config.base_url,
        timeout_s=settings.request_timeout_seconds,
        clock=the_clock,
        webhook_url=settings.webhook_url(NAME),
    )


def verifier(config: Config, settings: Settings) -> base.WebhookVerifier | None:
    """ED25519 signatures against fal's published keys; on when this server is reachable."""
    if settings.public_url is None:
        return None
    return JwksVerifier(config.jwks_url, timeout_s=settings.request_timeout_seconds)


def app_id(endpoint: str) -> AppId | None:
    """The SDK's reading of an endpoint id, or None when it is not one (the SDK raises
    IndexError on `workflows/x`: a namespace needs owner and app after it)."""
    if not APP.fullmatch(endpoint):
        return None
    from fal_client.client import AppId  # the SDK's rules; imported here, where ids are read

    try:
        return AppId.from_endpoint_id(endpoint)
    except (IndexError, ValueError):
        return None


def app_name(app: AppId) -> str:
    prefix = f"{app.namespace}/" if app.namespace else ""
    return f"{prefix}{app.owner}/{app.alias}"


class JwksVerifier:
    """fal's webhooks: ED25519 over `{request_id}\\n{user_id}\\n{timestamp}\\n{sha256(body)}`,
    checked against the keys fal publishes (`jwks.KeyCache`: cached a day, fetched again when
    no cached key verifies a delivery, at most every 30 s). Written here: no library verifies
    fal's scheme (the SDK has no helper), `cryptography` does the signature itself."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._keys = jwks.KeyCache(url, timeout_s=timeout_s, parse=_keys_of, owner="fal")

    async def verify(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> base.WebhookEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id = lowered.get("x-fal-webhook-request-id", "")
        user_id = lowered.get("x-fal-webhook-user-id", "")
        stamp = lowered.get("x-fal-webhook-timestamp", "")
        signature_hex = lowered.get("x-fal-webhook-signature", "")
        if not (request_id and user_id and stamp and signature_hex):
            raise base.WebhookRejected("missing X-Fal-Webhook-* headers")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise base.WebhookRejected("X-Fal-Webhook-Timestamp is not a unix time")
        if abs(now.timestamp() - int(stamp)) > WEBHOOK_TOLERANCE_S:
            raise base.WebhookRejected("X-Fal-Webhook-Timestamp is outside the 300 s tolerance")
        try:
            signature = binascii.unhexlify(signature_hex)
        except (binascii.Error, ValueError):
            raise base.WebhookRejected("X-Fal-Webhook-Signature is not hex") from None
        digest = hashlib.sha256(body).hexdigest()
        message = f"{request_id}\n{user_id}\n{stamp}\n{digest}".encode()
        if not await self._verified(message, signature, now.timestamp()):
            raise base.WebhookRejected("no published key verifies X-Fal-Webhook-Signature")
        job_id, status = _webhook_body(body)
        if job_id != request_id:
            raise base.WebhookMalformed("request_id: differs from X-Fal-Webhook-Request-Id")
        return base.WebhookEvent(request_id, job_id, f"fal.{status}"[:60], terminal=True)

    async def _verified(self, message: bytes, signature: bytes, now: float) -> bool:
        if _any_verifies(await self._keys.keys(now), message, signature):
            return True
        fresh = await self._keys.refreshed(now)  # the keys may have rotated
        return fresh is not None and _any_verifies(fresh, message, signature)

    async def aclose(self) -> None:
        await self._keys.aclose()


def _any_verifies(keys: list[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature  # see JwksVerifier.__init__

    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _keys_of(document: object) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS (`kty: OKP`, `crv: Ed25519`, `x` base64url)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # likewise

    keys = []
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP":
            continue
        if entry.get("crv") != "Ed25519" or not isinstance(entry.get("x"), str):
            continue
        raw = entry["x"]
        try:
            material = b64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(material))
        except (ValueError, binascii.Error):
            continue
    return keys


def _webhook_body(body: bytes) -> tuple[str, str]:
    try:
        event: Any = json.loads(body)
        request_id = event["request_id"]
        status = str(event.get("status") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise base.WebhookMalformed("body: not a fal webhook") from None
    return base.require_id(request_id, "request_id"), status.lower() or "unknown"

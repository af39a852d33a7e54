"""What Replicate offers (any model by name, prices of known ones), its configuration and its
webhook verifier: everything but the connection, so reading it imports no SDK.

`build` imports the adapter (`reelwatch.providers.replicate`, on the `replicate` SDK, which
imports numpy) only when a provider is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelwatch import clock, exceptions
from reelwatch.models import RemoteStatus, Variant
from reelwatch.providers import base, standard_webhooks
from reelwatch.settings import Settings

if TYPE_CHECKING:
    from reelwatch.providers.replicate import Replicate

NAME = "replicate"
DEFAULT_BASE_URL = "https://api.replicate.com"

# The API's exact words (providers.md section 3.1); anything else is UNKNOWN.
STATUSES: Mapping[str, RemoteStatus] = {
    "starting": RemoteStatus.QUEUED,
    "processing": RemoteStatus.IN_PROGRESS,
    "succeeded": RemoteStatus.COMPLETED,
    "failed": RemoteStatus.FAILED,
    "canceled": RemoteStatus.FAILED,
    "aborted": RemoteStatus.FAILED,  # its deadline passed before it started (not billed)
}
# USD per generated second, as listed on the models' pages in 2026-11 (estimates: a user with
# other prices sets REELWATCH_PRICES).
PRICES: Mapping[str, float] = {
    "google/veo-3": 0.75,
    "google/veo-3-fast": 0.40,
    "google/veo-3.1": 0.40,
    "kwaivgi/kling-v2.1": 0.05,
    "minimax/hailuo-02": 0.045,
    "bytedance/seedance-1-pro": 0.03,
    "wan-video/wan-2.5-t2v": 0.10,
    "luma/ray-2-720p": 0.18,
}
MODELS = tuple(PRICES)
_MODEL = re.compile(r"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*(:[0-9a-f]{64})?", re.IGNORECASE)


class Catalogue:
    """Any Replicate model, by `owner/name` or `owner/name:version`; prices for known ones."""

    name = NAME
    models = MODELS
    default_model = "google/veo-3-fast"
    capabilities = base.Capabilities(
        progress=(base.ProgressKind.LOG_LINES,),
        can_list=True,
        can_cancel=True,
        assets=base.AssetDelivery.OUTPUT_URLS,
        webhooks="standard-webhooks",
        variants=(Variant.VIDEO,),
        asset_lifetime="1 hour after the prediction ends",
    )

    def validate(self, model: str, params: Mapping[str, Any]) -> base.Inputs:
        if not _MODEL.fullmatch(model):
            raise exceptions.InvalidInput(
                f"model: {model!r} is not owner/name or owner/name:version (e.g. {MODELS[0]})"
            )
        clean = base.plain_params(params)
        seconds = clean.get("duration", clean.get("seconds"))
        size = clean.get("aspect_ratio", clean.get("resolution"))
        return base.Inputs(
            clean,
            seconds=seconds if isinstance(seconds, int) and not isinstance(seconds, bool) else None,
            size=str(size)[:20] if size is not None else None,
        )

    def estimate_cost(
        self, model: str, params: Mapping[str, Any], prices: Mapping[str, float]
    ) -> float | None:
        seconds = params.get("duration", params.get("seconds"))
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return None
        return base.price(PRICES, prices, model.split(":")[0], float(seconds))

    def ref(self, job: str) -> base.Ref:
        return base.Ref(job)


CATALOGUE = Catalogue()


class Config(BaseSettings):
    """The token and base URL, from the SDK's own variables."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    api_token: str | None = Field(None, validation_alias=AliasChoices("REPLICATE_API_TOKEN"))
    base_url: str = Field(DEFAULT_BASE_URL, validation_alias=AliasChoices("REPLICATE_BASE_URL"))
    webhook_secret: str | None = Field(
        None, validation_alias=AliasChoices("REPLICATE_WEBHOOK_SECRET")
    )

    # The endpoint's name when one API is reached through several URLs (a proxy on some
    # hosts): workers agree on it instead of the base URL. Default: the base URL.
    endpoint_name: str | None = Field(
        None, validation_alias=AliasChoices("REELWATCH_REPLICATE_ENDPOINT")
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("REPLICATE_BASE_URL must be an http(s) URL")
        return value.rstrip("/")

    @property
    def missing(self) -> str | None:
        return None if self.api_token else "REPLICATE_API_TOKEN"

    @property
    def webhooks_enabled(self) -> bool:
        return bool(self.webhook_secret)


def build(config: Config, settings: Settings, the_clock: clock.Clock) -> Replicate:
    from reelwatch.providers import replicate  # the SDK: only for a provider that is built

    assert config.api_token is not None
    hook = settings.webhook_url(NAME) if config.webhooks_enabled else None
    return replicate.Replicate(
        api_token=config.api_token,
        base_url=config.base_url,
        timeout_s=settings.request_timeout_seconds,
        clock=the_clock,
        webhook_url=hook,
    )


def verifier(config: Config, settings: Settings) -> base.WebhookVerifier | None:
    """Standard Webhooks with the account's secret (GET /v1/webhooks/default/secret)."""
    if not config.webhook_secret:
        return None
    return standard_webhooks.Verifier(
        config.webhook_secret, _webhook_body, variable="REPLICATE_WEBHOOK_SECRET"
    )


def _webhook_body(body: bytes) -> tuple[str, str, bool]:
    """The body is the Prediction itself."""
    try:
        prediction: Any = json.loads(body)
        job_id = prediction["id"]
        status = str(prediction.get("status") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise base.WebhookMalformed("body: not a prediction") from None
    base.require_id(job_id, "id")
    ended = STATUSES.get(status) in (RemoteStatus.COMPLETED, RemoteStatus.FAILED)
    return job_id, f"prediction.{status or 'unknown'}"[:60], ended

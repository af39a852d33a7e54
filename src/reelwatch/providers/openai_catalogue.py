"""What the OpenAI Videos API shape offers (models, sizes, prices), its configuration and its
webhook verifier: everything but the connection, so reading it imports no SDK.

`build` imports the adapter (`reelwatch.providers.openai`, on the `openai` SDK, httpx2 and
aiohttp, the heaviest imports reelwatch has) only when a provider is built.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelwatch import clock, exceptions
from reelwatch.models import Variant
from reelwatch.providers import base, standard_webhooks
from reelwatch.settings import Settings

if TYPE_CHECKING:
    from reelwatch.providers.openai import OpenAIVideos

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


MODELS = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-2025-12-08",
    "sora-2-pro-2025-10-06",
)
SECONDS = (4, 8, 12, 16, 20)
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PRO_SIZES = ("1920x1080", "1080x1920")
# USD per generated second (../shared/openai-videos-api.md section 8); pro at the large sizes
# costs more, which a flat per-model override cannot say, so it stays in `estimate_cost`.
PRICES: Mapping[str, float] = {
    "sora-2": 0.10,
    "sora-2-2025-10-06": 0.10,
    "sora-2-2025-12-08": 0.10,
    "sora-2-pro": 0.30,
    "sora-2-pro-2025-10-06": 0.30,
}
PRO_LARGE_SIZES = frozenset({"1024x1792", "1792x1024"})
TERMINAL_EVENTS = ("video.completed", "video.failed")


class Catalogue:
    """The Videos API's models, durations and sizes, and Sora's prices."""

    name = NAME
    models = MODELS
    default_model = "sora-2"
    capabilities = base.Capabilities(
        progress=(base.ProgressKind.PERCENT,),
        can_list=True,
        can_cancel=False,  # the API deletes a finished video; it cannot stop a running one
        assets=base.AssetDelivery.CONTENT_BY_ID,
        webhooks="standard-webhooks",
        variants=(Variant.VIDEO, Variant.THUMBNAIL, Variant.SPRITESHEET),
        asset_lifetime="until expires_at (about an hour after completion)",
        input_reference=True,
    )

    def validate(self, model: str, params: Mapping[str, Any]) -> base.Inputs:
        if model not in MODELS:
            raise exceptions.InvalidInput(
                f"model: unknown model {model!r}; choose one of {', '.join(MODELS)}"
            )
        unknown = sorted(set(params) - {"seconds", "size"})
        if unknown:
            raise exceptions.InvalidInput(
                f"params: {unknown[0]!r} is not a parameter of {NAME}; it takes seconds and size"
            )
        raw_seconds = params.get("seconds", 4)
        seconds = whole(raw_seconds)
        if seconds not in SECONDS:
            raise exceptions.InvalidInput(
                f"seconds: {raw_seconds} is not one of {', '.join(map(str, SECONDS))}"
            )
        size = str(params.get("size", "720x1280"))
        sizes = SIZES + (PRO_SIZES if model.startswith("sora-2-pro") else ())
        if size not in sizes:
            raise exceptions.InvalidInput(
                f"size: {size!r} is not one of {', '.join(sizes)} for {model}"
            )
        return base.Inputs({"seconds": seconds, "size": size}, seconds=seconds, size=size)

    def estimate_cost(
        self, model: str, params: Mapping[str, Any], prices: Mapping[str, float]
    ) -> float | None:
        seconds = whole(params.get("seconds"))
        per_second = prices.get(model, PRICES.get(model))
        if per_second is None or seconds is None:
            return None
        pro = model not in prices and model.startswith("sora-2-pro")
        if pro and params.get("size") in PRO_LARGE_SIZES:
            per_second = 0.50
        return round(per_second * seconds, 2)

    def ref(self, job: str) -> base.Ref:
        return base.Ref(job)


CATALOGUE = Catalogue()


def whole(value: object) -> int | None:
    """An int from an int or a string of ASCII digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 6:
        return int(value)
    return None


class Config(BaseSettings):
    """OpenAI's (or a gateway's) credentials and base URL, from the SDK's own variables."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    api_key: str | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    base_url: str = Field(DEFAULT_BASE_URL, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    webhook_secret: str | None = Field(None, validation_alias=AliasChoices("OPENAI_WEBHOOK_SECRET"))

    # The endpoint's name when one API is reached through several URLs (a proxy on some
    # hosts): workers agree on it instead of the base URL. Default: the base URL.
    endpoint_name: str | None = Field(
        None, validation_alias=AliasChoices("REELWATCH_OPENAI_ENDPOINT")
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if urllib.parse.urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("OPENAI_BASE_URL must be an http(s) URL, including /v1")
        return value.rstrip("/")

    @property
    def missing(self) -> str | None:
        return None if self.api_key else "OPENAI_API_KEY"

    @property
    def webhooks_enabled(self) -> bool:
        return bool(self.webhook_secret)


def build(config: Config, settings: Settings, the_clock: clock.Clock) -> OpenAIVideos:
    from reelwatch.providers import openai  # the SDK: only for a provider that is built

    assert config.api_key is not None
    return openai.OpenAIVideos(
        api_key=config.api_key,
        base_url=config.base_url,
        timeout_s=settings.request_timeout_seconds,
        clock=the_clock,
        webhooks=config.webhooks_enabled,
    )


def verifier(config: Config, settings: Settings) -> base.WebhookVerifier | None:
    """Standard Webhooks with OPENAI_WEBHOOK_SECRET; None when it is not set."""
    if not config.webhook_secret:
        return None
    return standard_webhooks.Verifier(
        config.webhook_secret, _webhook_body, variable="OPENAI_WEBHOOK_SECRET"
    )


def _webhook_body(body: bytes) -> tuple[str, str, bool]:
    """`{"type": "video.completed", "data": {"id": ...}}`."""
    try:
        event: Any = json.loads(body)
        event_type = str(event["type"])
        video_id = event["data"]["id"]
    except (ValueError, KeyError, TypeError):
        raise base.WebhookMalformed("body: not a webhook event") from None
    return base.require_id(video_id, "data.id"), event_type, event_type in TERMINAL_EVENTS

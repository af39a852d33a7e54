"""What Google Veo offers (models, parameters, prices), its configuration for both ways in
(Vertex AI and the Gemini API) and its webhook verifier: everything but the connection, so
reading it imports no SDK (../shared/providers.md section 1).

`build` imports the adapter (`reelwatch.providers.veo`, on `google-genai`) only when a
provider is built. The configuration reads the SDK's own variables, so a user who set up
`google-genai` has set up reelwatch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelwatch import clock, exceptions
from reelwatch.models import Variant
from reelwatch.providers import base, jwks, standard_webhooks
from reelwatch.settings import Settings

if TYPE_CHECKING:
    from reelwatch.providers.veo import Veo

NAME = "veo"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/"
DEFAULT_JWKS_URL = GEMINI_BASE_URL + ".well-known/jwks.json"
JWT_ISSUER = "https://generativelanguage.googleapis.com"
STORAGE_URL = "https://storage.googleapis.com"
DEFAULT_LOCATION = "us-central1"  # Veo on Vertex is served there; the SDK would pick "global"
WEBHOOK_TOLERANCE_S = 300

# USD per generated second as (with audio, without), from Google's pricing pages in 2026-11
# (estimates; override with REELWATCH_PRICES: `model` for the audio price, `model:silent`).
# On the Gemini API (the -preview ids) the video always has audio.
PRICES: Mapping[str, tuple[float, float]] = {
    "veo-3.1-generate-001": (0.40, 0.20),
    "veo-3.1-fast-generate-001": (0.15, 0.10),
    "veo-3.1-lite-generate-001": (0.08, 0.05),
    "veo-3.1-generate-preview": (0.40, 0.40),
    "veo-3.1-fast-generate-preview": (0.15, 0.15),
    "veo-3.1-lite-generate-preview": (0.08, 0.08),
}
MODELS = tuple(PRICES)
MODEL = re.compile(r"veo-[a-z0-9][a-z0-9.-]{0,62}")
OPERATION_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
GEMINI_NAME = re.compile(r"models/(?P<model>veo-[a-z0-9.-]+)/operations/(?P<id>[A-Za-z0-9_-]+)")
VERTEX_NAME = re.compile(
    r"projects/[a-z0-9._-]+/locations/[a-z0-9-]+/publishers/google/models/"
    r"(?P<model>veo-[a-z0-9.-]+)/operations/(?P<id>[A-Za-z0-9_-]+)"
)

# The parameters, by the SDK's `GenerateVideosConfig` names, and what each may be.
ASPECT_RATIOS = ("16:9", "9:16")
DURATIONS = (4, 6, 8)
RESOLUTIONS = ("720p", "1080p", "4k")
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
COMPRESSION = ("optimized", "lossless")
RESIZE_MODES = ("pad", "crop")
TEXT_PARAMS = ("negative_prompt",)
BOOL_PARAMS = ("enhance_prompt", "generate_audio")
# Parameters only Vertex takes: the SDK's Gemini API converter refuses them (its words).
VERTEX_ONLY = ("generate_audio", "seed", "storage_uri", "compression_quality", "resize_mode")
PARAMS = (
    "aspect_ratio",
    "duration_seconds",
    "resolution",
    "person_generation",
    "compression_quality",
    "resize_mode",
    "seed",
    "storage_uri",
    "number_of_videos",
    *TEXT_PARAMS,
    *BOOL_PARAMS,
)


class Catalogue:
    """Veo 3.1 on Vertex AI (the -001 ids) and the Gemini API (the -preview ids); any other
    `veo-...` id is passed through unpriced."""

    name = NAME
    models = MODELS
    default_model = "veo-3.1-fast-generate-001"
    capabilities = base.Capabilities(
        progress=(base.ProgressKind.NONE,),
        can_list=False,  # no list of operations: a lost create goes to a person
        can_cancel=False,  # no cancel for video operations
        assets=base.AssetDelivery.PROVIDER_FILES,
        webhooks="standard-webhooks | rs256-jwt (Gemini API only; Vertex uses Pub/Sub)",
        variants=(Variant.VIDEO,),
        asset_lifetime="Gemini API: 2 days; Vertex: in the operation, or in your bucket",
        input_reference=True,
        host="Google",
    )

    def validate(self, model: str, params: Mapping[str, Any]) -> base.Inputs:
        if not MODEL.fullmatch(model):
            raise exceptions.InvalidInput(
                f"model: {model!r} is not a Veo model id like {self.default_model}"
            )
        clean = _params(params)
        seconds = clean.get("duration_seconds")
        size = f"{clean.get('aspect_ratio', '16:9')} {clean.get('resolution', '720p')}"
        return base.Inputs(clean, seconds=seconds if seconds is not None else 8, size=size)

    def estimate_cost(
        self, model: str, params: Mapping[str, Any], prices: Mapping[str, float]
    ) -> float | None:
        silent = params.get("generate_audio") is False
        seconds = params.get("duration_seconds", params.get("seconds", 8))
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            return None
        override = prices.get(f"{model}:silent" if silent else model)
        if override is not None:
            return round(override * seconds, 2)
        listed = PRICES.get(model)
        if listed is None:
            return None
        return round(listed[1 if silent else 0] * seconds, 2)

    def ref(self, job: str) -> base.Ref:
        """The operation's full name: `models/{model}/operations/{id}` (Gemini API) or
        `projects/.../publishers/google/models/{model}/operations/{id}` (Vertex)."""
        name = job.strip()
        match = GEMINI_NAME.fullmatch(name) or VERTEX_NAME.fullmatch(name)
        if match is None:
            raise exceptions.InvalidInput(
                "video_id: give the operation's name, like "
                "models/veo-3.1-fast-generate-preview/operations/vz341u0pmdlc"
            )
        return base.Ref(match["id"], {"operation": name})


CATALOGUE = Catalogue()


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters by the SDK's names, checked; `seconds` is taken for `duration_seconds`."""
    raw = dict(params)
    if "seconds" in raw:
        if "duration_seconds" in raw:
            raise exceptions.InvalidInput("params: give seconds or duration_seconds, not both")
        raw["duration_seconds"] = raw.pop("seconds")
    unknown = sorted(set(raw) - set(PARAMS))
    if unknown:
        raise exceptions.InvalidInput(
            f"params: {unknown[0]!r} is not a parameter of {NAME}; it takes {', '.join(PARAMS)}"
        )
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        clean[key] = _param(key, value)
    if clean.pop("number_of_videos", 1) != 1:
        raise exceptions.InvalidInput("params: number_of_videos must be 1 (one video per job)")
    return clean


def _param(key: str, value: Any) -> Any:
    choices: dict[str, tuple[Any, ...]] = {
        "aspect_ratio": ASPECT_RATIOS,
        "resolution": RESOLUTIONS,
        "person_generation": PERSON_GENERATION,
        "compression_quality": COMPRESSION,
        "resize_mode": RESIZE_MODES,
    }
    if key in choices:
        if value not in choices[key]:
            raise exceptions.InvalidInput(
                f"params: {key} must be one of {', '.join(map(str, choices[key]))}"
            )
        return value
    if key in ("duration_seconds", "number_of_videos", "seed"):
        number = _integer(value)
        if number is None:
            raise exceptions.InvalidInput(f"params: {key} must be a whole number")
        if key == "duration_seconds" and number not in DURATIONS:
            raise exceptions.InvalidInput(
                f"params: duration_seconds must be one of {', '.join(map(str, DURATIONS))}"
            )
        if key == "seed" and not 0 <= number <= 2**32 - 1:
            raise exceptions.InvalidInput("params: seed must be between 0 and 4294967295")
        return number
    if key in BOOL_PARAMS:
        if not isinstance(value, bool):
            raise exceptions.InvalidInput(f"params: {key} must be true or false")
        return value
    if key == "storage_uri":
        if not (isinstance(value, str) and re.fullmatch(r"gs://[a-z0-9._-]{3,222}(/\S*)?", value)):
            raise exceptions.InvalidInput("params: storage_uri must be a gs://bucket/prefix")
        return value
    # negative_prompt
    if not isinstance(value, str) or len(value) > base.MAX_PARAM_CHARS or "\x00" in value:
        raise exceptions.InvalidInput(f"params: {key} must be text of at most 2000 characters")
    return value


def _integer(value: object) -> int | None:
    """8, or "8" (a CLI `--param duration_seconds=8` arrives as a number already)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class Config(BaseSettings):
    """The dialect and credentials as `google-genai` reads them from the environment:
    Vertex AI (GOOGLE_GENAI_USE_VERTEXAI=true, GOOGLE_CLOUD_PROJECT, GOOGLE_CLOUD_LOCATION,
    application default credentials) or the Gemini API (GOOGLE_API_KEY or GEMINI_API_KEY)."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    use_vertexai: bool = Field(
        False,
        validation_alias=AliasChoices("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"),
    )
    project: str | None = Field(None, validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT"))
    location: str | None = Field(None, validation_alias=AliasChoices("GOOGLE_CLOUD_LOCATION"))
    api_key: str | None = Field(
        None, validation_alias=AliasChoices("GOOGLE_API_KEY", "GEMINI_API_KEY")
    )
    gemini_base_url: str = Field(
        GEMINI_BASE_URL, validation_alias=AliasChoices("GOOGLE_GEMINI_BASE_URL")
    )
    vertex_base_url: str | None = Field(
        None, validation_alias=AliasChoices("GOOGLE_VERTEX_BASE_URL")
    )
    # A fixed OAuth access token for Vertex (instead of application default credentials).
    access_token: str | None = Field(
        None, validation_alias=AliasChoices("REELWATCH_VEO_ACCESS_TOKEN")
    )
    storage_url: str = Field(
        STORAGE_URL, validation_alias=AliasChoices("REELWATCH_VEO_STORAGE_URL")
    )
    # Gemini API webhooks: the secret of a webhook registered with `client.webhooks.create`
    # (Standard Webhooks), and/or per-request webhooks (RS256 JWTs checked against the JWKS).
    webhook_secret: str | None = Field(
        None, validation_alias=AliasChoices("REELWATCH_VEO_WEBHOOK_SECRET")
    )
    dynamic_webhooks: bool = Field(
        False, validation_alias=AliasChoices("REELWATCH_VEO_DYNAMIC_WEBHOOKS")
    )
    jwks_url: str = Field(DEFAULT_JWKS_URL, validation_alias=AliasChoices("REELWATCH_VEO_JWKS_URL"))
    endpoint_name: str | None = Field(None, validation_alias=AliasChoices("REELWATCH_VEO_ENDPOINT"))

    @field_validator("gemini_base_url", "vertex_base_url", "storage_url", "jwks_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("gemini_base_url", "vertex_base_url")
    @classmethod
    def _slash(cls, value: str | None) -> str | None:
        return value if value is None or value.endswith("/") else value + "/"

    @property
    def region(self) -> str:
        return self.location or DEFAULT_LOCATION

    @property
    def express(self) -> bool:
        """Vertex with an API key and no project ("express mode")."""
        return self.use_vertexai and self.project is None and self.api_key is not None

    @property
    def vertex_root(self) -> str:
        """Vertex's base URL (the SDK's rule: regional host, `aiplatform` for global)."""
        if self.vertex_base_url is not None:
            return self.vertex_base_url
        if self.region == "global":
            return "https://aiplatform.googleapis.com/"
        return f"https://{self.region}-aiplatform.googleapis.com/"

    @property
    def base_url(self) -> str:
        """Where this configuration's jobs live; on Vertex the project's own path, since the
        quota (and a 429) is the project's."""
        if not self.use_vertexai:
            return self.gemini_base_url
        if self.express:
            return self.vertex_root
        return f"{self.vertex_root}projects/{self.project}/locations/{self.region}/"

    @property
    def missing(self) -> str | None:
        if self.use_vertexai:
            return None if self.project or self.api_key else "GOOGLE_CLOUD_PROJECT"
        return None if self.api_key else "GOOGLE_API_KEY"

    @property
    def webhooks_enabled(self) -> bool:
        return not self.use_vertexai and (self.webhook_secret is not None or self.dynamic_webhooks)


def build(config: Config, settings: Settings, the_clock: clock.Clock) -> Veo:
    from reelwatch.providers import veo  # the SDK: only for a provider that is built

    webhook_url = settings.webhook_url(NAME) if config.dynamic_webhooks else None
    return veo.Veo(
        config,
        timeout_s=settings.request_timeout_seconds,
        clock=the_clock,
        webhook_url=webhook_url,
    )


def verifier(config: Config, settings: Settings) -> base.WebhookVerifier | None:
    """Gemini API deliveries (Vertex has none): Standard Webhooks with the registered webhook's
    secret, and RS256 JWTs for the per-request ones; None when neither is set up."""
    if config.use_vertexai:
        return None
    audience = settings.webhook_url(NAME) if config.dynamic_webhooks else None
    if config.webhook_secret is None and audience is None:
        return None
    return Verifier(
        config.webhook_secret,
        audience,
        config.jwks_url,
        timeout_s=settings.request_timeout_seconds,
    )


class Verifier:
    """Both of the Gemini API's webhook signatures, told apart by the `webhook-signature`
    header: `v1,<base64>` entries are Standard Webhooks (the static, registered webhook); a
    JWT (three base64url parts) is a per-request webhook, RS256 over claims that repeat the
    event, checked with PyJWT against Google's published keys, its `aud` this server's URL."""

    def __init__(
        self, secret: str | None, audience: str | None, jwks_url: str, *, timeout_s: float
    ) -> None:
        self._static = (
            None
            if secret is None
            else standard_webhooks.Verifier(
                secret, _webhook_body, variable="REELWATCH_VEO_WEBHOOK_SECRET"
            )
        )
        self._audience = audience
        self._keys = (
            None
            if audience is None
            else jwks.KeyCache(jwks_url, timeout_s=timeout_s, parse=_rsa_keys, owner="Google")
        )

    async def verify(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> base.WebhookEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        signature = lowered.get("webhook-signature", "").strip()
        if signature.count(".") == 2 and " " not in signature and "," not in signature:
            return await self._verify_jwt(lowered, signature, body, now)
        if self._static is None:
            raise base.WebhookRejected("no REELWATCH_VEO_WEBHOOK_SECRET for a signed delivery")
        return await self._static.verify(headers, body, now)

    async def _verify_jwt(
        self, headers: Mapping[str, str], token: str, body: bytes, now: datetime
    ) -> base.WebhookEvent:
        import jwt  # PyJWT: only where a per-request webhook is checked

        if self._keys is None or self._audience is None:
            raise base.WebhookRejected("per-request webhooks are off (REELWATCH_VEO_DYNAMIC_...)")
        webhook_id = base.require_id(headers.get("webhook-id"), "webhook-id")
        stamp = headers.get("webhook-timestamp", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise base.WebhookRejected("webhook-timestamp is not a unix time")
        if abs(now.timestamp() - int(stamp)) > WEBHOOK_TOLERANCE_S:
            raise base.WebhookRejected("webhook-timestamp is outside the 300 s tolerance")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise base.WebhookRejected(f"webhook-signature: {exc}") from None
        claims = await self._claims(token, kid, now.timestamp())
        # PyJWT reads the wall clock; reelwatch's clock decides (tests move it).
        issued, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued, int | float) or not isinstance(expires, int | float):
            raise base.WebhookRejected("the JWT has no iat or exp")
        if now.timestamp() > expires + WEBHOOK_TOLERANCE_S:
            raise base.WebhookRejected("the JWT has expired")
        if issued > now.timestamp() + WEBHOOK_TOLERANCE_S:
            raise base.WebhookRejected("the JWT was issued in the future")
        video_id, event_type, terminal = _webhook_body(body)
        event = json.loads(body)
        # The signature covers the claims, not the body: the body must say what they say.
        if claims.get("type") != event.get("type") or claims.get("data") != event.get("data"):
            raise base.WebhookRejected("the body differs from the signed claims")
        return base.WebhookEvent(webhook_id, video_id, event_type, terminal)

    async def _claims(self, token: str, kid: object, now: float) -> dict[str, Any]:
        assert self._keys is not None
        for attempt in range(2):
            cache = self._keys
            keys = await cache.keys(now) if attempt == 0 else await cache.refreshed(now)
            key = next((k for k_id, k in keys or [] if k_id == kid), None)
            if key is not None:
                return _decode(token, key, self._audience)
        raise base.WebhookRejected("no published key has the JWT's kid")

    async def aclose(self) -> None:
        if self._keys is not None:
            await self._keys.aclose()


def _decode(token: str, key: Any, audience: str | None) -> dict[str, Any]:
    import jwt  # see Verifier._verify_jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audience,
            issuer=JWT_ISSUER,
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["aud", "iat", "exp"],
            },
        )
    except jwt.PyJWTError as exc:
        raise base.WebhookRejected(f"webhook-signature: {exc}") from None
    return claims


def _rsa_keys(document: object) -> list[tuple[str, Any]]:
    """The RS256 keys of a JWKS, as (kid, public key)."""
    import jwt  # see Verifier._verify_jwt

    keys: list[tuple[str, Any]] = []
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if not isinstance(entry.get("kid"), str):
            continue
        try:
            keys.append((entry["kid"], jwt.PyJWK(entry, algorithm="RS256").key))
        except jwt.PyJWTError:
            continue
    return keys


def _webhook_body(body: bytes) -> tuple[str, str, bool]:
    """`{"type": "video.generated", "data": {"id": "models/.../operations/ID"}}`: the event
    only points at the operation; the next look decides what happened."""
    try:
        event: Any = json.loads(body)
        event_type = str(event["type"])
        name = event["data"]["id"]
    except (ValueError, KeyError, TypeError):
        raise base.WebhookMalformed("body: not a Gemini API webhook event") from None
    if not isinstance(name, str):
        raise base.WebhookMalformed("data.id: not an operation name")
    video_id = base.require_id(name.rpartition("/operations/")[2], "data.id")
    return video_id, event_type[:60], event_type.startswith("video.")

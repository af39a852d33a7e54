"""Every setting in one typed object, read from the environment (and `.env`) at the edge."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelwatch import exceptions


def _env(name: str) -> Any:
    """Bind a field to exactly one environment variable (the names are a contract)."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """reelwatch's configuration. Names are in ../shared/CONTRACT.md; extras are prefixed."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True, allow_inf_nan=False
    )

    data_dir: Path = Field(Path("reelwatch-data"), validation_alias=_env("REELWATCH_DATA_DIR"))
    database_url_raw: str | None = Field(None, validation_alias=_env("REELWATCH_DATABASE_URL"))
    storage_url_raw: str | None = Field(None, validation_alias=_env("REELWATCH_STORAGE_URL"))
    # How stored content reaches a browser from a bucket: a short-lived presigned URL, or
    # streamed through reelwatch (local files are always streamed, with Range support).
    storage_serve: Literal["redirect", "proxy"] = Field(
        "redirect", validation_alias=_env("REELWATCH_STORAGE_SERVE")
    )
    # Stored files of a completed generation are deleted this many days after it completed
    # (its row, timeline and checksums stay); unset keeps them.
    retention_days: float | None = Field(
        None, gt=0, le=36500, validation_alias=_env("REELWATCH_RETENTION_DAYS")
    )
    timeout_minutes: float = Field(
        15.0, gt=0, le=7 * 24 * 60, validation_alias=_env("REELWATCH_TIMEOUT_MINUTES")
    )
    api_token: str | None = Field(None, validation_alias=_env("REELWATCH_API_TOKEN"))
    # Providers: each adapter reads its own credentials and base URL (its `Config` in
    # providers/; `reelwatch providers` lists them); these are what the core needs of them.
    default_provider: str | None = Field(None, validation_alias=_env("REELWATCH_PROVIDER"))
    provider_config: dict[str, dict[str, Any]] = Field(
        default_factory=dict, validation_alias=_env("REELWATCH_PROVIDER_CONFIG")
    )
    # USD per generated second by provider and model, over each adapter's built-in table.
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict, validation_alias=_env("REELWATCH_PRICES")
    )
    # The compatible front (/v1/videos, front.py): where each client model goes (JSON, model ->
    # route, over the defaults in providers/front_routes.py), and the keys clients may use
    # besides REELWATCH_API_TOKEN (comma-separated; each client sees only its own videos).
    model_routes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, validation_alias=_env("REELWATCH_MODEL_ROUTES")
    )
    client_keys_raw: str | None = Field(None, validation_alias=_env("REELWATCH_CLIENT_KEYS"))
    # Each client's share: videos being made at once, and request rates ("60/minute", as the
    # `limits` library writes them; per server process; unset: no limit).
    client_max_active: int = Field(
        100, ge=1, le=1_000_000, validation_alias=_env("REELWATCH_CLIENT_MAX_ACTIVE")
    )
    client_create_rate: str | None = Field(
        "60/minute", validation_alias=_env("REELWATCH_CLIENT_CREATE_RATE")
    )
    client_request_rate: str | None = Field(
        None, validation_alias=_env("REELWATCH_CLIENT_REQUEST_RATE")
    )
    # Webhooks to your apps when a /v1/videos video ends (Standard Webhooks, the Videos
    # API's payload): one or more URLs (comma-separated) and the `whsec_...` secret.
    webhook_urls_raw: str | None = Field(None, validation_alias=_env("REELWATCH_WEBHOOK_URL"))
    webhook_secret: str | None = Field(None, validation_alias=_env("REELWATCH_WEBHOOK_SECRET"))
    # The first retry of a failed delivery waits about this long, doubling up to an hour.
    webhook_retry_base_seconds: float = Field(
        2.0, gt=0, le=3600, validation_alias=_env("REELWATCH_WEBHOOK_RETRY_BASE_SECONDS")
    )
    # Where providers can reach this server (webhook URLs given with each submit).
    public_url: str | None = Field(None, validation_alias=_env("REELWATCH_PUBLIC_URL"))
    cron_secret: str | None = Field(None, validation_alias=_env("CRON_SECRET"))

    # Worker tuning (additions to the contract).
    poll_min_seconds: float = Field(1.0, gt=0, validation_alias=_env("REELWATCH_POLL_MIN_SECONDS"))
    poll_max_seconds: float = Field(30.0, gt=0, validation_alias=_env("REELWATCH_POLL_MAX_SECONDS"))
    # Seconds of detection lag one status request is worth: lower spends more requests for
    # less lag (the schedule's one knob once a shape has history).
    poll_look_worth_seconds: float = Field(
        0.2, gt=0, le=60, validation_alias=_env("REELWATCH_POLL_LOOK_WORTH_SECONDS")
    )
    webhook_poll_seconds: float = Field(
        120.0, gt=0, validation_alias=_env("REELWATCH_WEBHOOK_POLL_SECONDS")
    )
    concurrency: int = Field(32, ge=1, le=1000, validation_alias=_env("REELWATCH_CONCURRENCY"))
    requests_per_minute: int = Field(
        1200, ge=1, validation_alias=_env("REELWATCH_REQUESTS_PER_MINUTE")
    )
    batch_size: int = Field(200, ge=1, le=10000, validation_alias=_env("REELWATCH_BATCH_SIZE"))
    lease_seconds: float = Field(60.0, ge=5, validation_alias=_env("REELWATCH_LEASE_SECONDS"))
    request_timeout_seconds: float = Field(
        20.0, gt=0, validation_alias=_env("REELWATCH_REQUEST_TIMEOUT_SECONDS")
    )
    backoff_base_seconds: float = Field(
        1.0, gt=0, validation_alias=_env("REELWATCH_BACKOFF_BASE_SECONDS")
    )
    backoff_max_seconds: float = Field(
        120.0, gt=0, validation_alias=_env("REELWATCH_BACKOFF_MAX_SECONDS")
    )
    download_variants: str = Field(
        "video,thumbnail,spritesheet", validation_alias=_env("REELWATCH_DOWNLOAD_VARIANTS")
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=_env("REELWATCH_LOG_FORMAT")
    )

    @field_validator("database_url_raw")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("storage_url_raw")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and parsed.path:
            return value
        if parsed.scheme == "s3" and parsed.netloc:
            return value
        raise ValueError("must be file:///path or s3://bucket[/prefix]")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for provider, table in value.items():
            for model, price in table.items():
                if not 0 <= price < 1000:
                    raise ValueError(f"{provider} {model}: a price per second from 0 to 1000")
        return value

    @field_validator("webhook_urls_raw")
    @classmethod
    def _check_webhook_urls(cls, value: str | None) -> str | None:
        for url in (value or "").split(","):
            if url.strip() and urlparse(url.strip()).scheme not in ("http", "https"):
                raise ValueError(f"{url.strip()!r} is not an http(s) URL")
        return value

    @field_validator("client_create_rate", "client_request_rate")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if not value:
            return None
        import limits  # only where a rate is configured

        try:
            limits.parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like 60/minute") from None
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not value.startswith("whsec_") or len(key) < 16:
            raise ValueError("must be whsec_ followed by base64 of at least 16 bytes")
        return value

    @field_validator("download_variants")
    @classmethod
    def _check_variants(cls, value: str) -> str:
        names = [v.strip() for v in value.split(",") if v.strip()]
        allowed = {"video", "thumbnail", "spritesheet"}
        if "video" not in names or not set(names) <= allowed:
            raise ValueError("a comma-separated subset of video,thumbnail,spritesheet with video")
        return ",".join(names)

    @model_validator(mode="after")
    def _check_poll_bounds(self) -> Settings:
        if self.poll_min_seconds > self.poll_max_seconds:
            raise ValueError(
                "REELWATCH_POLL_MIN_SECONDS must not exceed REELWATCH_POLL_MAX_SECONDS"
            )
        if self.webhook_urls_raw and not self.webhook_secret:
            raise ValueError("REELWATCH_WEBHOOK_URL needs REELWATCH_WEBHOOK_SECRET (whsec_...)")
        if self.lease_seconds < 2 * self.request_timeout_seconds:
            # A claim must outlive any one call made under it (a create above all), or another
            # worker could take the generation over while the call is still running.
            raise ValueError(
                f"REELWATCH_LEASE_SECONDS ({self.lease_seconds:g}) must be at least twice "
                f"REELWATCH_REQUEST_TIMEOUT_SECONDS ({self.request_timeout_seconds:g})"
            )
        return self

    @property
    def database_url(self) -> str:
        return self.database_url_raw or f"sqlite:///{self.data_dir.resolve() / 'reelwatch.db'}"

    @property
    def storage_url(self) -> str:
        """Where assets are stored: REELWATCH_STORAGE_URL, or the data folder's `videos`."""
        return self.storage_url_raw or (self.data_dir.resolve() / "videos").as_uri()

    @property
    def client_keys(self) -> tuple[str, ...]:
        """The keys /v1/videos clients may present: REELWATCH_API_TOKEN and
        REELWATCH_CLIENT_KEYS."""
        extra = (self.client_keys_raw or "").split(",")
        keys = [self.api_token, *(key.strip() for key in extra)]
        return tuple(dict.fromkeys(key for key in keys if key))

    @property
    def webhook_urls(self) -> tuple[str, ...]:
        """Where client webhooks go (REELWATCH_WEBHOOK_URL, comma-separated)."""
        return tuple(u.strip() for u in (self.webhook_urls_raw or "").split(",") if u.strip())

    @property
    def timeout_seconds(self) -> float:
        return self.timeout_minutes * 60.0

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.download_variants.split(","))

    def webhook_url(self, provider: str) -> str | None:
        """Where `provider` should send its webhooks, when this server is reachable."""
        return None if self.public_url is None else f"{self.public_url}/api/webhooks/{provider}"


_FIELD_TO_ENV = {
    name: str(field.validation_alias.choices[0])
    for name, field in Settings.model_fields.items()
    if isinstance(field.validation_alias, AliasChoices)
}


def load(**overrides: Any) -> Settings:
    """Build settings from the environment; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        where = ", ".join(_FIELD_TO_ENV.get(part, part) for part in loc) or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise exceptions.ConfigError(f"{where}: {message}") from exc

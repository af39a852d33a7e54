"""Provider adapters turn each API's answers into the same provider-neutral observations.

The registry below is the only place that knows which adapters exist (saq's
`Queue.from_url` is the model): the rest of reelwatch asks it for a provider by name and
reads `Catalogue` and `Capabilities`, never an adapter module. Each adapter is two modules:
`<name>_catalogue` offers `CATALOGUE`, a `Config` (pydantic-settings: its credentials and
base URL, from its own environment variables), `verifier(config, settings)` and
`build(config, settings, clock)`; `<name>` is the provider itself, on its SDK, and only
`build` imports it. So describing providers, reading generations or a worker configured for
one provider never imports the other SDKs (openai's alone takes about a second).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol, cast

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from reelwatch import clock, exceptions
from reelwatch.providers.base import Catalogue, Endpoint, Provider, WebhookVerifier
from reelwatch.settings import Settings

# Registry order is the order `reelwatch providers` lists them and the default's fallback.
_MODULES = {
    "openai": "reelwatch.providers.openai_catalogue",
    "replicate": "reelwatch.providers.replicate_catalogue",
    "fal": "reelwatch.providers.fal_catalogue",
    "veo": "reelwatch.providers.veo_catalogue",
}
NAMES = tuple(_MODULES)


class ProviderConfig(Protocol):
    """An adapter's own settings (a pydantic-settings model)."""

    base_url: str
    endpoint_name: str | None

    @property
    def missing(self) -> str | None:
        """The environment variable a user must set before this provider can be used."""
        ...

    @property
    def webhooks_enabled(self) -> bool: ...


def _module(name: str) -> ModuleType:
    if name not in _MODULES:
        raise exceptions.InvalidInput(
            f"provider: unknown provider {name!r}; choose one of {', '.join(NAMES)}"
        )
    return importlib.import_module(_MODULES[name])


def catalogue(name: str) -> Catalogue:
    """What a provider offers (models, validation, prices); needs no credentials."""
    return cast(Catalogue, _module(name).CATALOGUE)


def config(name: str, settings: Settings) -> ProviderConfig:
    """The provider's settings: its environment variables, overridden by
    `REELWATCH_PROVIDER_CONFIG` (`{"replicate": {"base_url": ...}}`) and by code."""
    module = _module(name)
    overrides: Mapping[str, Any] = settings.provider_config.get(name, {})
    config_class: type[BaseSettings] = module.Config
    try:
        return cast(ProviderConfig, config_class(**overrides))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise exceptions.ConfigError(f"{_variable(config_class, field, name)}: {message}") from exc


def _variable(config_class: type[BaseSettings], field: str, provider: str) -> str:
    """The environment variable behind a config field (what the user set), for errors."""
    info = config_class.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return f"{provider} {field}" if field else provider


def configured(settings: Settings) -> list[str]:
    """Names of the providers whose credentials are set, in registry order."""
    return [name for name in NAMES if config(name, settings).missing is None]


def default_name(settings: Settings) -> str:
    """The provider `submit` uses when none is named: REELWATCH_PROVIDER, else the first
    configured one, else the first registered one (whose error then names its variable)."""
    if settings.default_provider:
        return settings.default_provider
    ready = configured(settings)
    return ready[0] if ready else NAMES[0]


def endpoint(name: str, settings: Settings) -> Endpoint:
    """The endpoint a provider's generations are kept under: its name and base URL (or the
    endpoint name configured for it, when one API is reached through several URLs)."""
    cfg = config(name, settings)
    return Endpoint(name, cfg.endpoint_name or cfg.base_url)


def verifier(name: str, settings: Settings) -> WebhookVerifier | None:
    """Checks `name`'s webhooks, from its configuration alone; None when they are not set up."""
    module = _module(name)
    return cast("WebhookVerifier | None", module.verifier(config(name, settings), settings))


def build(name: str, settings: Settings, the_clock: clock.Clock) -> Provider:
    """A connected provider; ConfigError naming the variable when a credential is missing."""
    module = _module(name)
    cfg = config(name, settings)
    if cfg.missing is not None:
        raise exceptions.ConfigError(
            f"{cfg.missing} is not set (needed for provider {name}; "
            "or run `reelwatch demo` to use the built-in simulator)"
        )
    provider = cast(Provider, module.build(cfg, settings, the_clock))
    if cfg.endpoint_name:
        provider.endpoint = Endpoint(name, cfg.endpoint_name)
    return provider

"""Where the OpenAI-shaped front (`/v1/videos`) sends each model a client names: a provider,
its model and params, and how the OpenAI API's `seconds` and `size` are said there.

`REELWATCH_MODEL_ROUTES` (JSON, model -> route) replaces the defaults below model by model.
What a route cannot do is refused with the route's words (a clear 400), never changed
silently: `seconds="12"` on a route that makes 4, 6 or 8 seconds, a size it has no
translation for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reelwatch import exceptions

Scalar = str | int | float | bool
OPENAI_SECONDS = ("4", "8", "12")  # the API's enum (guides name 16 and 20 too)
OPENAI_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024", "1920x1080", "1080x1920")
DEFAULT_SECONDS = "4"  # the OpenAI API's defaults, which a client that sends neither expects
DEFAULT_SIZE = "720x1280"


class Seconds(BaseModel):
    """How a route says the length: the provider's param name, the lengths it makes, and the
    value's form (`"{}s"` for "8s"; None: the number itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    param: str
    allowed: tuple[int, ...]
    format: str | None = None


class Route(BaseModel):
    """One client model's destination."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    params: dict[str, Scalar] = Field(default_factory=dict)
    seconds: Seconds
    # OpenAI size -> the provider's params for it; a size not listed is refused.
    sizes: dict[str, dict[str, Scalar]]

    def translate(self, client_model: str, seconds: str | None, size: str | None) -> dict[str, Any]:
        """The provider's params for the client's `seconds` and `size` (OpenAI's defaults when
        absent); InvalidInput naming the field when this route cannot make them."""
        wanted_seconds = seconds if seconds is not None else DEFAULT_SECONDS
        if not (wanted_seconds.isascii() and wanted_seconds.isdigit()):
            raise exceptions.InvalidInput(f"seconds: {wanted_seconds!r} is not a whole number")
        length = int(wanted_seconds)
        where = f"{client_model} is served by {self.provider} {self.model}"
        if length not in self.seconds.allowed:
            allowed = ", ".join(map(str, self.seconds.allowed))
            raise exceptions.InvalidInput(
                f"seconds: {where}, which makes {allowed} seconds, not {length}"
            )
        wanted_size = size if size is not None else DEFAULT_SIZE
        if wanted_size not in self.sizes:
            raise exceptions.InvalidInput(
                f"size: {where}, which makes {', '.join(self.sizes)}, not {wanted_size}"
            )
        value: Scalar = (
            length if self.seconds.format is None else self.seconds.format.format(length)
        )
        return {**self.params, **self.sizes[wanted_size], self.seconds.param: value}


_VEO_SIZES_720 = {
    "1280x720": {"aspect_ratio": "16:9", "resolution": "720p"},
    "720x1280": {"aspect_ratio": "9:16", "resolution": "720p"},
}
_VEO_SIZES_1080 = {
    **_VEO_SIZES_720,
    "1920x1080": {"aspect_ratio": "16:9", "resolution": "1080p"},
    "1080x1920": {"aspect_ratio": "9:16", "resolution": "1080p"},
}
_SORA_2 = Route(
    provider="fal",
    model="fal-ai/veo3/fast",
    seconds=Seconds(param="duration", allowed=(4, 6, 8), format="{}s"),
    sizes=_VEO_SIZES_720,
)
_SORA_2_PRO = Route(
    provider="veo",
    model="veo-3.1-generate-001",
    seconds=Seconds(param="duration_seconds", allowed=(4, 6, 8)),
    sizes=_VEO_SIZES_1080,
)
DEFAULT_ROUTES: Mapping[str, Route] = {
    "sora-2": _SORA_2,
    "sora-2-2025-10-06": _SORA_2,
    "sora-2-2025-12-08": _SORA_2,
    "sora-2-pro": _SORA_2_PRO,
    "sora-2-pro-2025-10-06": _SORA_2_PRO,
}


def routes(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Route]:
    """The defaults with `REELWATCH_MODEL_ROUTES` over them, model by model; ConfigError
    naming the model and the field when an override is not a route."""
    table = dict(DEFAULT_ROUTES)
    for model, raw in overrides.items():
        try:
            table[model] = Route.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise exceptions.ConfigError(
                f"REELWATCH_MODEL_ROUTES: {model}: {where}: {first['msg']}"
            ) from None
    return table


def route(table: Mapping[str, Route], model: str) -> Route:
    """The route of a client's model; InvalidInput naming it when there is none."""
    found = table.get(model)
    if found is None:
        raise exceptions.InvalidInput(
            f"model: no route for {model!r}; routed models: {', '.join(sorted(table))} "
            "(REELWATCH_MODEL_ROUTES)"
        )
    return found

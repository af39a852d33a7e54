"""What `reelwatch demo` submits: one sample set across every simulated dialect.

Kept beside the simulator (the one place outside providers/ that knows provider names), so the
demo itself stays provider-neutral: it submits what is listed here, with the client
configuration `client_config` gives, and asks `rate_limit_next_status` for the 429.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reelwatch.simulator import fal, replicate, veo
from reelwatch.simulator.server import RunningSimulator


@dataclass(frozen=True, slots=True)
class Sample:
    provider: str
    prompt: str
    model: str | None = None  # None: the provider's default model
    params: Mapping[str, Any] = field(default_factory=dict)
    rate_limited: bool = False
    """Its first status check answers 429 with Retry-After: 2."""


SAMPLES = (
    Sample("openai", "A paper boat drifting down a rain-soaked street at dusk"),
    Sample(
        "replicate",
        "Timelapse of a harbour city from noon to night",
        model="google/veo-3-fast",
        params={"duration": 8, "aspect_ratio": "16:9"},
    ),
    Sample(
        "fal",
        "A red fox trotting through fresh snow, slow motion",
        model="fal-ai/kling-video/v2.1/master/text-to-video",
        params={"duration": "5", "aspect_ratio": "16:9"},
        rate_limited=True,
    ),
    Sample(
        "openai",
        "[sim:fail=moderation_blocked] A famous actor's face in close-up",
        params={"seconds": 8},
    ),
    Sample(
        "fal",
        "Aerial shot of a lighthouse in a storm, waves breaking",
        model="fal-ai/veo3/fast",
        params={"duration": "8s"},
    ),
    Sample(
        "veo",
        "A hummingbird hovering at a red flower, macro",
        model="veo-3.1-fast-generate-preview",
        params={"aspect_ratio": "16:9", "duration_seconds": 8},
    ),
    Sample(
        "veo",
        "[sim:fail=moderation_blocked] A crowd at a protest, faces in close-up",
        model="veo-3.1-fast-generate-preview",
    ),
)

# The route of each dialect's status check (see `Simulator.inject`).
STATUS_ROUTES = {
    "openai": "retrieve",
    "replicate": "replicate.get",
    "fal": "fal.status",
    "veo": "veo.get",
}


def client_config(sim: RunningSimulator | str, key: str) -> dict[str, dict[str, Any]]:
    """Every provider's configuration (`REELWATCH_PROVIDER_CONFIG`) pointing at this simulator
    (a running one, or the origin of one in another process)."""
    origin = sim if isinstance(sim, str) else sim.origin
    return {
        "openai": {"api_key": key, "base_url": origin + "/v1"},
        "replicate": {"api_token": key, "base_url": origin + replicate.PREFIX},
        "fal": {
            "key": key,
            "base_url": origin + fal.PREFIX + "/",
            "jwks_url": origin + fal.JWKS_PATH,
        },
        "veo": {  # the Gemini API dialect
            "api_key": key,
            "gemini_base_url": origin + veo.GEMINI_PREFIX + "/",
            "jwks_url": origin + veo.JWKS_PATH,
        },
    }


def rate_limit_next_status(
    sim: RunningSimulator, provider: str, job_id: str, retry_after: int = 2
) -> None:
    """Make the next status check of this job answer 429 in that provider's own shape."""
    sim.sim.inject(STATUS_ROUTES[provider], "rate_limit", video_id=job_id, retry_after=retry_after)

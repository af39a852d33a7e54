"""Generations and events as users and scripts see them (../shared/CONTRACT.md, plus extras).

Pure functions of domain objects: the HTTP API, the CLI's `--json` and the dashboard all show
the same shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reelwatch import predict
from reelwatch.models import Event, Generation


def to_json(
    g: Generation,
    now: datetime,
    *,
    stuck: bool = False,
    cost_usd: float | None = None,
    served: bool = True,
    history: predict.History | None = None,
) -> dict[str, Any]:
    """One generation; `served` is False when no configured worker serves its endpoint;
    `history` (finished renders of its shape) makes the ETA a range."""
    guess = predict.estimate(g, now, history) if g.active else None
    eta = None if guess is None else guess.seconds
    high = None if guess is None else guess.high_seconds
    end = g.completed_at or (g.updated_at if g.terminal else None) or now
    return {
        "id": g.id,
        "provider": g.provider,
        "endpoint": g.endpoint,
        "video_id": g.video_id,
        "status": g.status.value,
        "progress": g.progress,
        "step": g.step,
        "eta_seconds": None if eta is None else round(eta, 1),
        "eta_high_seconds": None if high is None else round(high, 1),
        "eta_text": None if guess is None else guess.text,
        "eta_source": None if guess is None else guess.source,
        "model": g.model,
        "seconds": g.seconds,
        "size": g.size,
        "params": dict(g.params),
        "prompt": g.prompt,
        "created_at": iso(g.created_at),
        "submitted_at": iso(g.submitted_at),
        "completed_at": iso(g.completed_at),
        "expires_at": iso(g.expires_at),
        "error": None if g.error is None else {"code": g.error.code, "message": g.error.message},
        "attempts": g.attempts,
        "next_poll_at": iso(g.next_poll_at),
        "elapsed_seconds": round(max(0.0, (end - g.created_at).total_seconds()), 1),
        "suspected_stuck": stuck,
        "attention": g.attention,
        "served": served,
        "estimated_cost_usd": cost_usd,
        "assets": {
            variant.value: {
                "bytes": asset.bytes,
                "sha256": asset.sha256,
                "content_type": asset.content_type,
                "url": f"/api/generations/{g.id}/content?variant={variant.value}",
            }
            for variant, asset in g.assets.items()
        },
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "generation_id": event.generation_id,
        "at": iso(event.at),
        "kind": event.kind,
        "status": event.status.value,
        "progress": event.progress,
        "actor": event.actor,
        "data": dict(event.data),
    }


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")

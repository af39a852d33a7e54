"""Generations and events as users and scripts see them (../shared/CONTRACT.md, plus extras).

Pure functions of domain objects: the HTTP API, the CLI's `--json` and the dashboard all show
the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
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


QUIET_KEYS = ("quiet_polls", "quiet_from", "quiet_to")


def timeline(events: Sequence[Event], g: Generation) -> list[dict[str, Any]]:
    """The events as people read them: the unchanged looks folded before an event (and those
    since the last one) become one `quiet` entry each ("polled 37 times, no change")."""
    entries: list[dict[str, Any]] = []
    for event in events:
        item = event_json(event)
        data = item["data"]
        if data.get("quiet_polls"):
            entries.append(
                _quiet(data["quiet_polls"], data.get("quiet_from"), data.get("quiet_to"))
            )
        item["data"] = {k: v for k, v in data.items() if k not in QUIET_KEYS}
        entries.append(item)
    if g.quiet_polls:
        entries.append(_quiet(g.quiet_polls, iso(g.quiet_since), iso(g.updated_at)))
    return entries


def _quiet(polls: int, first: str | None, last: str | None) -> dict[str, Any]:
    return {"kind": "quiet", "polls": polls, "from": first, "to": last}


def quiet_words(entry: dict[str, Any]) -> str:
    """`polled 37 times, no change` (the times are shown beside it)."""
    polls = int(entry["polls"])
    return f"polled {'once' if polls == 1 else f'{polls} times'}, no change"


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")

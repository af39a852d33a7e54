"""Generations and events as users and scripts see them (../shared/CONTRACT.md, plus extras).

Pure functions of domain objects: the HTTP API, the CLI's `--json` and the dashboard all show
the same shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from reelwatch import predict
from reelwatch.models import Event, Generation, Status


def to_json(
    g: Generation,
    now: datetime,
    *,
    stuck: bool = False,
    cost_usd: float | None = None,
    served: bool = True,
    history: predict.History | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """One generation; `served` is False when no configured worker serves its endpoint;
    `history` (finished renders of its shape) makes the ETA a range; `host` names who runs
    the model ("Google") in the step's words."""
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
        "step": step(g, history, host),
        "eta_seconds": None if eta is None else round(eta, 1),
        "eta_high_seconds": None if high is None else round(high, 1),
        "eta_text": None if guess is None else guess.text,
        "eta_source": None if guess is None else guess.source,
        "overdue": bool(guess and guess.overdue),
        "eta": None
        if guess is None or guess.source == "none"
        else {
            "seconds": None if eta is None else round(eta, 1),
            "low": None if guess.low_seconds is None else round(guess.low_seconds, 1),
            "high": None if high is None else round(high, 1),
            "source": guess.source,
        },
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
        "submissions": g.submissions,
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


def step(g: Generation, history: predict.History | None, host: str | None = None) -> str:
    """The step in words. Where the provider says nothing but "not done", the words say
    what is known: where it waits, and how long renders like it usually take."""
    if g.status is Status.QUEUED and not g.step_detail and host:
        return f"Queued at {host}"
    if g.status is Status.IN_PROGRESS and g.progress == 0 and not g.step_detail:
        typical = history.typical_render() if history is not None else None
        if typical is not None:
            low, high = (predict.clock(s) for s in typical)
            return f"Rendering, usually takes {low}-{high} for this model and length"
        if host:
            return f"Rendering ({host} shows no progress)"
    return g.step


def summary_lines(view: Mapping[str, Any]) -> list[str]:
    """The lines `reelwatch status` prints under a generation's first line, from its `to_json`
    view: what it is, where it is, when it should end, and anything a person should look at."""
    prompt = " ".join(str(view["prompt"]).split())
    lines = [f"prompt: {prompt if len(prompt) <= 70 else prompt[:69] + '…'}"]
    shape = ", ".join(
        str(part)
        for part in (view["model"], view["seconds"] and f"{view['seconds']} s", view["size"])
        if part
    )
    lines.append(f"provider: {view['provider']} ({shape})")
    if view["video_id"]:
        lines.append(f"video_id: {view['video_id']}")
    lines.append(f"created: {_minute(view['created_at'])}")
    if view["completed_at"]:
        lines.append(f"finished: {_minute(view['completed_at'])}")
    if view["eta_text"]:
        lines.append(f"ETA: {view['eta_text']}")
    sent = view.get("submissions", 0)
    if sent > 1:
        lines.append(f"sent to the provider {sent} times (each create is paid)")
    if view["suspected_stuck"]:
        lines.append("suspected stuck: no progress for longer than renders like it take")
    if view["attention"]:
        lines.append(f"needs a person: {view['attention']}")
    if not view["served"] and view["status"] not in ("completed", "failed", "cancelled"):
        lines.append("no worker here is configured for its provider and endpoint")
    return lines


def files_words(g: Generation, retention_days: float | None, events: Sequence[Event]) -> str:
    """What became of a completed generation's stored files, in words."""
    deleted = next((e for e in reversed(events) if e.kind == "assets_deleted"), None)
    if deleted is not None:
        days = deleted.data.get("retention_days")
        return f"deleted after {_days(days)} ({deleted.at:%Y-%m-%d})" if days else "deleted"
    if not g.assets:
        return "none stored"
    if retention_days is None or g.completed_at is None:
        return "kept (no retention set)"
    until = g.completed_at + timedelta(days=retention_days)
    return f"kept until {until:%Y-%m-%d %H:%M} UTC, then deleted (after {_days(retention_days)})"


def _days(days: float) -> str:
    return f"{days:g} day" if days == 1 else f"{days:g} days"


def _minute(stamp: str) -> str:
    return stamp[:16].replace("T", " ") + " UTC"


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


# Error codes of a prompt the provider refused for its content (every adapter's words): a
# retry most likely meets the same refusal, and may be charged.
CONTENT_REFUSALS = frozenset(
    {"moderation_blocked", "moderation", "content_policy_violation", "nsfw", "safety"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Trouble:
    """An error code explained: what happened, and what to do next."""

    title: str
    what: str
    next: str


# Every error code a user can meet, in plain words (docs/troubleshooting.md says the same; a
# test checks the two agree). Codes a provider makes up are explained by `troubleshoot`'s
# fallback with the provider's own message.
TROUBLES = {
    "moderation_blocked": Trouble(
        "Refused for its content",
        "The provider's safety system refused the prompt or the reference image.",
        "Reword the prompt (or change the image) and submit it as a new generation; retrying"
        " the same prompt is most likely refused again, and some providers charge for it.",
    ),
    "timeout": Trouble(
        "Timed out",
        "The generation did not finish within REELWATCH_TIMEOUT_MINUTES; reelwatch stopped"
        " waiting (the provider may still finish it).",
        "Look at the timeline: if progress stood still, the provider is struggling; retry"
        " later, or raise REELWATCH_TIMEOUT_MINUTES for long renders.",
    ),
    "not_found": Trouble(
        "Gone at the provider",
        "The provider answered 404: it no longer knows this job (deleted, expired, or made"
        " with another account or endpoint).",
        "Check the provider's key and base URL are the ones it was submitted with; otherwise"
        " submit it again (retry).",
    ),
    "asset_expired": Trouble(
        "The file expired before it was stored",
        "The provider keeps a finished video only for a while (minutes to days), and it was"
        " gone before reelwatch could download it (a worker was down, or the disk was full).",
        "Retry to render it again (paid). Keep a worker running so files are fetched as soon"
        " as they are ready.",
    ),
    "create_unknown": Trouble(
        "Not known whether the provider took it",
        "The create was sent but its answer was lost, and this provider has no list to check:"
        " resubmitting could pay twice, so reelwatch did not.",
        "Look in the provider's own dashboard for a job with this prompt. If there is one,"
        " track it (`reelwatch track ID`); if not, retry.",
    ),
    "rate_limited": Trouble(
        "Rate-limited",
        "The provider answered 429 (too many requests); reelwatch waits as long as it asks"
        " and tries again, nothing is lost.",
        "Nothing, unless it lasts: then lower REELWATCH_REQUESTS_PER_MINUTE or"
        " REELWATCH_CONCURRENCY, or ask the provider for a higher limit.",
    ),
    "provider_unavailable": Trouble(
        "The provider is not answering",
        "Connection refused, unknown host, TLS failure, timeouts or 5xx answers: the request"
        " did not get through; reelwatch keeps trying with backoff.",
        "Check the base URL and that the machine can reach it (proxy, DNS, firewall); the"
        " provider's status page says whether it is down.",
    ),
    "invalid_api_key": Trouble(
        "Bad credentials",
        "The provider refused the API key (401).",
        "Set the provider's key (see `reelwatch providers` for the variable), restart the"
        " worker, then retry.",
    ),
    "disk_full": Trouble(
        "The disk is full",
        "There was no space left to store the file; nothing half-written was kept, and the"
        " download is tried again.",
        "Free space in REELWATCH_DATA_DIR (or the storage bucket) before the provider's copy"
        " expires.",
    ),
    "download_failed": Trouble(
        "The download keeps failing",
        "The file could not be fetched whole (connection broken, truncated, checksum or size"
        " mismatch); reelwatch tries again.",
        "Nothing at first; if it lasts, check the network to the provider's file host.",
    ),
    "unknown_status": Trouble(
        "The provider said something new",
        "The provider reported a status word reelwatch does not know, so it is shown to you"
        " rather than guessed at; the job keeps being checked (with backoff).",
        "Look at the word in the timeline; if the provider has a new state, tell the"
        " reelwatch maintainers. Cancel it if it will never finish.",
    ),
    "cancelled": Trouble(
        "Cancelled",
        "The job was cancelled (by someone here, or at the provider).",
        "Retry to submit it again if you still want it.",
    ),
    "deadline": Trouble(
        "The provider's deadline passed",
        "The job waited past the deadline set for it at the provider before it started.",
        "Retry when the provider is less busy, or with a longer deadline.",
    ),
    "no_output": Trouble(
        "Finished without a video",
        "The provider said the job succeeded but gave no video file.",
        "Retry; if it happens again with this model, report it to the provider.",
    ),
}
TROUBLES["moderation"] = TROUBLES["content_policy_violation"] = TROUBLES["moderation_blocked"]
TROUBLES["nsfw"] = TROUBLES["safety"] = TROUBLES["moderation_blocked"]
TROUBLES["http_401"] = TROUBLES["http_403"] = TROUBLES["invalid_api_key"]


def troubleshoot(code: str, message: str = "") -> Trouble:
    """The explanation of an error code; a code only the provider knows keeps its words."""
    known = TROUBLES.get(code)
    if known is not None:
        return known
    return Trouble(
        f"The provider reported {code.replace('_', ' ')}",
        message or "The provider failed the job without saying more.",
        "Read the provider's message above; retry if it looks temporary.",
    )


# What each event says, in words (the stored kind stays the machine's name).
EVENT_WORDS = {
    "created": "Created",
    "tracked": "Tracking a job made elsewhere",
    "submitted": "Sent to the provider",
    "reconciled": "Looked for a lost create",
    "submit_ambiguous": "The create got no answer",
    "status": "Status changed",
    "progress": "Progress",
    "poll": "Checked, no change",
    "unknown_status": "The provider said something new",
    "rate_limited": "Rate-limited by the provider",
    "retry_scheduled": "A call failed; trying again",
    "waiting": "Waiting",
    "webhook": "Told by a webhook",
    "ignored": "Webhook ignored",
    "quarantined": "Set aside for a person",
    "failed": "Failed",
    "completed": "Stored",
    "download_failed": "Download failed",
    "download_progress": "Downloading",
    "cancelled": "Cancelled",
    "reset": "Reset",
    "retry": "Retried (paid again)",
    "assets_deleted": "Files deleted (retention)",
    "notified": "Webhook delivered to your app",
    "notify_failed": "Webhook to your app failed",
}
# Detail keys in words; a key not here is shown with its underscores as spaces.
DETAIL_WORDS = {
    "latency_ms": "answered in",
    "delay_s": "next try in",
    "remote_status": "provider said",
    "estimated_cost_usd": "estimated cost",
    "detection_lag_s": "found after",
    "duration_ms": "took",
    "video_id": "provider id",
    "from": "from",
    "to": "to",
}


def event_words(kind: str) -> str:
    return EVENT_WORDS.get(kind, kind.replace("_", " ").capitalize())


def detail_words(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An event's details as (label, text) pairs people read: no Python reprs, durations with
    units, money with a currency, lists and mappings spelled out."""
    pairs = []
    for key, value in data.items():
        if value is None or key in QUIET_KEYS:
            continue
        pairs.append((DETAIL_WORDS.get(key, key.replace("_", " ")), _value_words(key, value)))
    return pairs


def _value_words(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_usd") and isinstance(value, int | float):
        return f"${value:,.2f}"
    if key.endswith("_ms") and isinstance(value, int | float):
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{round(value)} ms"
    if key.endswith("_s") and isinstance(value, int | float):
        return f"{value:.1f} s" if value < 120 else predict.clock(value)
    if key == "bytes" and isinstance(value, int):
        return _bytes(value)
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple):
        return ", ".join(_value_words("", item) for item in value) or "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_value_words(str(k), v)}" for k, v in value.items()) or "none"
    return str(value)


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"


def quiet_words(entry: dict[str, Any]) -> str:
    """`polled 37 times, no change` (the times are shown beside it)."""
    polls = int(entry["polls"])
    return f"polled {'once' if polls == 1 else f'{polls} times'}, no change"


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")

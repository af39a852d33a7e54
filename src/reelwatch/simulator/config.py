"""Knobs of the simulated Videos API and the clock it runs on.

`SimConfig` is a frozen record of everything a test or demo may want to tune. `SimClock` is real
wall time plus an offset that only grows, so tests can jump ahead instead of sleeping; whoever
cares about jumps (the webhook outbox) subscribes to be told.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How one simulated Videos API behaves; every field has a demo-friendly default."""

    api_key: str | None = None
    """The only bearer token accepted; None accepts any (a missing header is still 401)."""
    queue_s: tuple[float, float] = (1.0, 3.0)
    """Each job waits a duration drawn uniformly from this range before rendering."""
    render_s: tuple[float, float] = (4.0, 10.0)
    """Each job renders for a duration drawn uniformly from this range."""
    seed: int = 0
    """Seed of the random source the durations are drawn from."""
    video_bytes: int = 256 * 1024
    """Size of the `video` variant (a prompt directive `bytes=` overrides it per job)."""
    latency_s: float = 0.0
    """Added to every /v1 answer."""
    webhook_url: str | None = None
    """Where `video.completed` / `video.failed` events are POSTed (with `webhook_secret`)."""
    webhook_secret: str | None = None
    """A `whsec_...` secret (Standard Webhooks); other strings are used as raw UTF-8 keys."""
    expires_after_s: float = 3600.0
    """Assets stay downloadable this long after completion."""
    allow_delete_active: bool = True
    """Whether a queued or in-progress job may be deleted (else 400)."""
    poll_after_ms: int | None = None
    """If set, non-terminal retrieves carry `openai-poll-after-ms` with this value."""
    webhook_retry_base_s: float = 0.5
    """First webhook retry delay; it doubles after each failed attempt."""
    webhook_max_attempts: int = 5
    """Attempts per webhook delivery, the first included."""
    webhook_timeout_s: float = 5.0
    """How long one webhook attempt may take."""

    def __post_init__(self) -> None:
        for name in ("queue_s", "render_s"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
        for name in ("video_bytes", "latency_s", "expires_after_s", "webhook_retry_base_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be at least 1")
        if self.webhook_timeout_s <= 0:
            raise ValueError("webhook_timeout_s must be positive")
        if self.poll_after_ms is not None and self.poll_after_ms < 0:
            raise ValueError("poll_after_ms must not be negative")
        if self.webhook_secret is not None:
            try:
                key = secret_key(self.webhook_secret)
            except (binascii.Error, ValueError):
                raise ValueError("webhook_secret: the part after whsec_ must be base64") from None
            if not key:
                raise ValueError("webhook_secret must not be empty")

    @property
    def webhooks_enabled(self) -> bool:
        """Whether terminal transitions are announced by webhook."""
        return bool(self.webhook_url and self.webhook_secret)


DEFAULT_CONFIG = SimConfig()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: base64 after `whsec_`, else the secret's UTF-8 bytes."""
    if secret.startswith("whsec_"):
        # Extra padding is ignored, so unpadded secrets decode too (as standardwebhooks does).
        return base64.b64decode(secret.removeprefix("whsec_") + "==")
    return secret.encode()


class SimClock:
    """Unix time as the simulator sees it: `time.time()` plus an offset that tests advance."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset_s = 0.0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def offset_s(self) -> float:
        """How far ahead of wall time the simulator is."""
        return self._offset_s

    def now(self) -> float:
        """Current simulated unix time in seconds."""
        return self._wall() + self._offset_s

    def wall(self) -> float:
        """Current real unix time (what a webhook receiver compares timestamps against)."""
        return self._wall()

    def advance(self, seconds: float) -> float:
        """Jump `seconds` ahead (never back) and return the new simulated time."""
        if seconds < 0:
            raise ValueError("the simulator clock only moves forward")
        with self._lock:
            self._offset_s += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return self.now()

    def reset(self) -> None:
        """Go back to wall time (only sensible once no job depends on the old offset)."""
        with self._lock:
            self._offset_s = 0.0
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every jump; returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

"""A circuit breaker per provider: stop hammering a provider that keeps failing. No I/O here.

Written by hand because the libraries (pybreaker, aiobreaker, purgatory) wrap a call and read
the wall clock themselves; here the engine asks before it claims (claiming nothing while the
circuit is open, so no lease ages waiting) and tells each outcome, with its own clock.

Closed: every call goes. After `threshold` transient failures in a row (5xx, timeout, connection
refused) it opens for `cooldown_s`, doubling on each failed probe up to `max_cooldown_s`. Open:
nothing goes until the cooldown ends; then one probe (half-open). A probe that gets any answer
from the provider (even a 4xx or a 429, which prove it is up) closes the circuit.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass(slots=True)
class Breaker:
    threshold: int = 5
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0
    failures: int = 0  # transient failures in a row
    opened_at: datetime | None = None
    open_for_s: float = 0.0
    probe_at: datetime | None = None  # when the half-open probe went out

    PROBE_LOST_S = (
        30.0  # a probe with no outcome by then is forgotten (its task ended without a call)
    )

    def _probing(self, now: datetime) -> bool:
        if self.probe_at is None:
            return False
        return (now - self.probe_at).total_seconds() < self.open_for_s + self.PROBE_LOST_S

    def state(self, now: datetime) -> State:
        if self.opened_at is None:
            return State.CLOSED
        if self.probe_at is not None or now >= self.reopens_at:
            return State.HALF_OPEN
        return State.OPEN

    @property
    def reopens_at(self) -> datetime:
        assert self.opened_at is not None
        return self.opened_at + timedelta(seconds=self.open_for_s)

    def allowance(self, now: datetime) -> int | None:
        """How many calls may start now: None for no limit, 0 while open, 1 for the probe."""
        match self.state(now):
            case State.CLOSED:
                return None
            case State.HALF_OPEN:
                return 0 if self._probing(now) else 1
        return 0

    def wait_s(self, now: datetime) -> float:
        """Seconds until a probe may go (0 when calls may go now)."""
        if self.state(now) is not State.OPEN:
            return 0.0
        return max(0.0, (self.reopens_at - now).total_seconds())

    def started(self, now: datetime) -> None:
        """A call is going out; in half-open, it is the probe."""
        if self.state(now) is State.HALF_OPEN:
            self.probe_at = now

    def succeeded(self) -> None:
        """The provider answered: close."""
        self.failures = 0
        self.opened_at = None
        self.open_for_s = 0.0
        self.probe_at = None

    def failed(self, now: datetime) -> bool:
        """A transient failure; True when this opened (or re-opened) the circuit."""
        self.failures += 1
        if self.opened_at is not None:  # the probe (or a call from before opening) failed
            if self.probe_at is None and now < self.reopens_at:
                return False
            self.open_for_s = min(self.max_cooldown_s, self.open_for_s * 2)
            self.opened_at = now
            self.probe_at = None
            return True
        if self.failures >= self.threshold:
            self.opened_at = now
            self.open_for_s = self.cooldown_s
            return True
        return False

"""The `Simulator`: jobs, clock, faults, counters and webhooks of one simulated Videos API.

Routes (`app.py`) call its domain verbs (`create`, `find`, `delete`, `page`); tests call the
same object in-process to advance the clock, inject faults and read stats. Everything mutable is
behind one lock held only for dictionary work, never across an await, so the test thread and the
server's event loop can share it.
"""

from __future__ import annotations

import functools
import hashlib
import random
import threading
from collections import Counter
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette

from reelwatch.simulator import app as routes
from reelwatch.simulator import content, faults, jobs, webhooks
from reelwatch.simulator.config import DEFAULT_CONFIG, SimClock, SimConfig


class Simulator:
    """One simulated OpenAI Videos API; `.app` serves it over HTTP."""

    def __init__(self, config: SimConfig = DEFAULT_CONFIG, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock if clock is not None else SimClock()
        self.faults = faults.FaultBook()
        self.outbox = webhooks.Outbox(self.clock, self._terminal_event, lambda: self.config)
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._shutdown = False
        self._jobs: dict[str, jobs.Job] = {}
        self._order: list[str] = []
        self._seq: dict[str, int] = {}
        self._requests: Counter[str] = Counter()
        self._inflight = self._max_inflight = 0
        self._retrieves: Counter[str] = Counter()
        self._downloads: Counter[str] = Counter()
        self._fingerprints: set[tuple[str, str, str, str]] = set()
        self._creates = 0
        self._duplicate_creates = 0

    @functools.cached_property
    def app(self) -> Starlette:
        """The Starlette ASGI app serving this simulator."""
        return routes.build(self)

    # -- jobs ---------------------------------------------------------------------------------

    def create(
        self,
        *,
        prompt: str,
        model: str = jobs.DEFAULT_MODEL,
        seconds: str = jobs.DEFAULT_SECONDS,
        size: str = jobs.DEFAULT_SIZE,
        reference: jobs.Reference | None = None,
        remixed_from_video_id: str | None = None,
    ) -> jobs.Job:
        """Start a job now; raises `jobs.DirectiveError` for a malformed `[sim:...]` directive."""
        settings = self.config
        with self._lock:
            queue_s = self._rng.uniform(*settings.queue_s)
            render_s = self._rng.uniform(*settings.render_s)
        script = jobs.script_for(
            prompt,
            queue_s=queue_s,
            render_s=render_s,
            video_bytes=settings.video_bytes,
            expires_after_s=settings.expires_after_s,
        )
        fingerprint = (prompt, model, seconds, size)
        with self._lock:
            job = jobs.Job(
                id=jobs.new_video_id(),
                seq=len(self._order),
                created_at=self.clock.now(),
                prompt=prompt,
                model=model,
                seconds=seconds,
                size=size,
                script=script,
                remixed_from_video_id=remixed_from_video_id,
                reference=reference,
            )
            self._jobs[job.id] = job
            self._order.append(job.id)
            self._seq[job.id] = job.seq
            self._creates += 1
            if fingerprint in self._fingerprints:
                self._duplicate_creates += 1
            else:
                self._fingerprints.add(fingerprint)
        finish_at = job.finish_at
        if settings.webhooks_enabled and finish_at is not None:
            self.outbox.schedule(job.id, finish_at)
        return job

    def timeline(self) -> list[dict[str, Any]]:
        """Every job's id, creation and terminal times on the simulator clock."""
        with self._lock:
            return [
                {
                    "id": job.id,
                    "created_at": job.created_at,
                    "finish_at": job.finish_at,
                    "fails": job.script.fail_code is not None,
                }
                for job in self._jobs.values()
            ]

    def job(self, video_id: str) -> jobs.Job | None:
        """The job with this id as created (even if it has vanished); None if unknown or deleted."""
        return self._jobs.get(video_id)

    def find(self, video_id: str, now: float) -> tuple[jobs.Job, jobs.State] | None:
        """The job and its state at `now`, unless it is unknown, deleted or has vanished."""
        job = self._jobs.get(video_id)
        if job is None:
            return None
        state = jobs.state_at(job, now)
        return None if state.vanished else (job, state)

    def delete(self, video_id: str) -> None:
        """Forget a job: later calls about it answer 404."""
        with self._lock:
            self._jobs.pop(video_id, None)

    def page(
        self, *, after: str | None, limit: int, descending: bool, now: float
    ) -> tuple[list[tuple[jobs.Job, jobs.State]], bool]:
        """Up to `limit` visible jobs after the cursor, in creation order; and whether more follow.

        An `after` id the simulator never issued yields an empty page (so paging stops).
        """
        with self._lock:
            order = self._order
            if after is None:
                index = len(order) - 1 if descending else 0
            elif after in self._seq:
                index = self._seq[after] + (-1 if descending else 1)
            else:
                return [], False
            step = -1 if descending else 1
            found: list[tuple[jobs.Job, jobs.State]] = []
            while 0 <= index < len(order) and len(found) <= limit:
                job = self._jobs.get(order[index])
                index += step
                if job is None:
                    continue
                state = jobs.state_at(job, now)
                if not state.vanished:
                    found.append((job, state))
        return found[:limit], len(found) > limit

    def expected_sha256(self, video_id: str, variant: str = "video") -> str:
        """Hex sha256 of the asset this job serves (to check a download)."""
        job = self._jobs.get(video_id)
        if job is None:
            raise KeyError(video_id)
        if self.config.sample_media:
            return hashlib.sha256(content.sample(content.Variant(variant))).hexdigest()
        size = content.size_of(content.Variant(variant), job.script.video_bytes)
        return content.expected_sha256(video_id, variant, size)

    # -- faults and modes ---------------------------------------------------------------------

    def inject(self, route: str, kind: str, count: int = 1, **params: Any) -> None:
        """Make the next `count` requests to `route` (or `"*"`) suffer `kind` (-1: until reset).

        `video_id=` restricts the fault to requests about that id (so it never matches create or
        list). Other parameters depend on the kind: `retry_after` / `retry_after_ms`
        (rate_limit), `status` / `should_retry` (server_error; `status` for create_then_fail),
        `seconds` (latency). Raises ValueError for anything else.
        """
        self.faults.add(faults.fault(route, kind, count, **params))

    def reset_faults(self) -> None:
        """Forget every injected fault."""
        self.faults.reset()

    @property
    def shutdown(self) -> bool:
        """Whether every /v1 call answers as after the real API's shutdown."""
        return self._shutdown

    def set_shutdown(self, enabled: bool = True) -> None:
        """Rehearse the real cutoff: every /v1 call answers 404 model_not_found."""
        self._shutdown = enabled

    def tamper_next_webhook(
        self,
        *,
        duplicate: bool = False,
        timestamp_offset_s: float = 0.0,
        bad_signature: bool = False,
    ) -> None:
        """Spoil the next webhook delivery: send it twice, shift its timestamp, or mis-sign it."""
        self.outbox.tamper_next(
            webhooks.Tamper(
                duplicate=duplicate,
                timestamp_offset_s=timestamp_offset_s,
                bad_signature=bad_signature,
            )
        )

    def reset(self, config: SimConfig | None = None) -> None:
        """Back to a fresh simulator (optionally with another config), keeping the server up.

        Forgets jobs, counters, faults, webhook records and shutdown mode, re-seeds the random
        source and resets the clock to wall time (a clock shared with others is reset for them too).
        """
        with self._lock:
            if config is not None:
                self.config = config
            self._rng = random.Random(self.config.seed)
            self._shutdown = False
            self._jobs.clear()
            self._order.clear()
            self._seq.clear()
            self._requests.clear()
            self._max_inflight = self._inflight
            self._retrieves.clear()
            self._downloads.clear()
            self._fingerprints.clear()
            self._creates = self._duplicate_creates = 0
        self.faults.reset()
        self.outbox.reset()
        self.clock.reset()

    # -- counters -----------------------------------------------------------------------------

    def enter(self) -> None:
        """A /v1 request started being handled (for the in-flight high-water mark)."""
        with self._lock:
            self._inflight += 1
            self._max_inflight = max(self._max_inflight, self._inflight)

    def leave(self) -> None:
        """A /v1 request's handler returned (a streamed body may still be flowing)."""
        with self._lock:
            self._inflight -= 1

    def count(self, route: str, video_id: str | None) -> None:
        """Record one request to a /v1 route."""
        with self._lock:
            self._requests[route] += 1
            if video_id is not None:
                if route == "retrieve":
                    self._retrieves[video_id] += 1
                elif route == "content":
                    self._downloads[video_id] += 1

    def stats(self) -> dict[str, Any]:
        """Counters as plain data: requests per route, per-video retrieves and downloads, etc."""
        with self._lock:
            videos: dict[str, dict[str, int]] = {}
            for video_id, n in self._retrieves.items():
                videos.setdefault(video_id, {"retrieves": 0, "content_downloads": 0})
                videos[video_id]["retrieves"] = n
            for video_id, n in self._downloads.items():
                videos.setdefault(video_id, {"retrieves": 0, "content_downloads": 0})
                videos[video_id]["content_downloads"] = n
            result: dict[str, Any] = {
                "requests": dict(self._requests),
                "videos": videos,
                "jobs": len(self._jobs),
                "creates": self._creates,
                "duplicate_creates": self._duplicate_creates,
                "max_inflight": self._max_inflight,
                "now": self.clock.now(),
                "clock_offset_s": self.clock.offset_s,
                "shutdown": self._shutdown,
            }
        result["faults"] = self.faults.pending()
        result["webhooks"] = [asdict(a) | {"ok": a.ok} for a in self.outbox.attempts()]
        return result

    # -- webhooks -----------------------------------------------------------------------------

    def _terminal_event(self, video_id: str) -> webhooks.Event | None:
        job = self._jobs.get(video_id)
        finish_at = None if job is None else job.finish_at
        if job is None or finish_at is None:
            return None
        state = jobs.state_at(job, finish_at)
        if state.vanished or not state.terminal:
            return None
        kind = "video.completed" if state.status == jobs.Status.COMPLETED else "video.failed"
        return webhooks.Event(type=kind, video_id=job.id, created_at=int(finish_at))

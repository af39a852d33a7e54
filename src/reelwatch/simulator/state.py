"""The `Simulator`: jobs, clock, faults, counters and webhooks of the simulated video APIs.

One simulator serves five dialects over one origin: OpenAI Videos under /v1, Replicate under
/replicate, the fal queue under /fal and Google Veo's two (the Gemini API under /gemini, Vertex AI
under /vertex). Routes (`app.py`, `replicate.py`, `fal.py`, `veo.py`) call its domain verbs
(`create`, `find`, `cancel`, `delete`, `page`, `jobs_of`); tests call the same object in-process
to advance the clock, inject faults, rotate the fal and Veo webhook keys and read stats. Every
job belongs to the dialect that created it and is invisible to the others. Everything mutable is
behind one lock held only for dictionary work, never across an await, so the test thread and the
server's event loop can share it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import heapq
import math
import random
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette

from reelwatch.simulator import app as routes
from reelwatch.simulator import content, fal, faults, jobs, replicate, veo, webhooks
from reelwatch.simulator.config import DEFAULT_CONFIG, SimClock, SimConfig

RETRIEVE_ROUTES = frozenset({"retrieve", "replicate.get", "fal.status", "veo.get", "veo.fetch"})
"""Routes whose requests count as a job's retrieves in stats."""
CONTENT_ROUTES = frozenset(
    {"content", "replicate.files", "fal.files", "veo.files", "veo.media", "veo.gcs"}
)
"""Routes whose requests count as a job's downloads in stats."""
_EVENT_SEP = "\x1f"


class Simulator:
    """The simulated OpenAI Videos, Replicate, fal queue and Veo APIs; `.app` serves them."""

    def __init__(self, config: SimConfig = DEFAULT_CONFIG, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock if clock is not None else SimClock()
        self.faults = faults.FaultBook()
        self.outbox = webhooks.Outbox(self.clock, self._resolve_webhook, lambda: self.config)
        self.origin = "http://127.0.0.1"
        """Where the simulator is served; `running()` and `serve()` set it. Requests carry their
        own origin, this one is used for jobs created in-process."""
        self._generated_replicate_secret = (
            "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        )
        self.fal_keys = fal.KeyRing(config.fal_webhook_key)
        self.veo_keys = veo.RsaKeyRing(config.veo_webhook_key_pem)
        self.veo_hooks = veo.Registry()
        """Static webhooks registered through `POST /gemini/v1beta/webhooks`."""
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
        self._fingerprints: set[tuple[str, ...]] = set()
        self._creates = 0
        self._duplicate_creates = 0
        self._load = Load()

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
        dialect: str = "openai",
        extra: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        deadline_while_running: bool = False,
        expires_after_s: float | None = None,
    ) -> jobs.Job:
        """Start a job now; raises `jobs.DirectiveError` for a malformed `[sim:...]` directive.

        `dialect` ("openai", "replicate", "fal", "veo-gemini" or "veo-vertex") decides the id's
        shape and which API sees the job; `extra` holds that dialect's request data, e.g. for
        Replicate `{"input": {...}, "version": ..., "webhook": url, "webhook_events_filter":
        [...]}`, for fal `{"app": "owner/app", "endpoint": "owner/app/path", "input": {...},
        "webhook_url": url}` and for Veo `{"instances": [...], "parameters": {...},
        "webhook_uris": [...]}` (missing keys get defaults; see `replicate.py`, `fal.py`,
        `veo.py`).
        `deadline_s` (from now) aborts the job if it has not started rendering by then, and
        also cancels it while rendering if `deadline_while_running`. `expires_after_s`
        overrides the configured media lifetime for this job (Veo: else `veo_retention_s`).
        Unscripted durations follow the config: `render_spread` (around the model's mean x
        `seconds` / 8) and `queue_per_active_s` (per job of the dialect still queued or
        rendering now).
        """
        if dialect not in jobs.DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; expected one of {list(jobs.DIALECTS)}")
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError("deadline_s must be positive")
        settings = self.config
        if expires_after_s is None and dialect in veo.DIALECTS:
            expires_after_s = settings.veo_retention_s
        details = _dialect_extra(dialect, prompt, model, extra, self.origin)
        job_model = str(details.get("model", model))
        now = self.clock.now()
        with self._lock:
            queue_s = self._rng.uniform(*settings.queue_s)
            if settings.render_spread is None:
                render_s = self._rng.uniform(*settings.render_s)
            else:
                mean = settings.mean_render_s(job_model, seconds)
                render_s = truncated_normal(self._rng, mean, settings.render_spread)
            if settings.queue_per_active_s:
                queue_s += settings.queue_per_active_s * self._load.active(dialect, now)
        script = jobs.script_for(
            prompt,
            queue_s=queue_s,
            render_s=render_s,
            video_bytes=settings.video_bytes,
            expires_after_s=settings.expires_after_s
            if expires_after_s is None
            else expires_after_s,
            progress=settings.progress,
        )
        fingerprint = (dialect, prompt, model, seconds, size)
        with self._lock:
            job = jobs.Job(
                id=jobs.new_job_id(dialect),
                seq=len(self._order),
                created_at=now,
                prompt=prompt,
                model=job_model,
                seconds=seconds,
                size=size,
                script=script,
                remixed_from_video_id=remixed_from_video_id,
                reference=reference,
                dialect=dialect,
                extra=details,
                deadline_at=None if deadline_s is None else now + deadline_s,
                deadline_while_running=deadline_while_running,
            )
            self._jobs[job.id] = job
            self._order.append(job.id)
            self._seq[job.id] = job.seq
            self._creates += 1
            self._load.add(job)
            if fingerprint in self._fingerprints:
                self._duplicate_creates += 1
            else:
                self._fingerprints.add(fingerprint)
        self._schedule_webhooks(job)
        return job

    def cancel(self, job_id: str) -> jobs.Job | None:
        """Cancel a job now if it is still queued or rendering; returns the job as it stands.

        None if the job is unknown or has vanished. A finished job is returned unchanged.
        """
        now = self.clock.now()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            state = jobs.state_at(job, now)
            if state.vanished:
                return None
            if not state.active:
                return job
            self._load.ended(job, now)
            job = dataclasses.replace(job, cancelled_at=now)
            self._jobs[job_id] = job
        self._schedule_webhooks(job, only_at=now)
        return job

    def timeline(self) -> list[dict[str, Any]]:
        """Every job's id, creation and terminal times on the simulator clock."""
        with self._lock:
            return [
                {
                    "id": job.id,
                    "created_at": job.created_at,
                    "finish_at": job.finish_at,
                    "render_at": job.render_at,
                    "fails": job.script.fail_code is not None,
                    "dialect": job.dialect,
                    "ends_at": jobs.end_at(job),
                }
                for job in self._jobs.values()
            ]

    def job(self, video_id: str) -> jobs.Job | None:
        """The job with this id as created (even if it has vanished); None if unknown or deleted."""
        return self._jobs.get(video_id)

    def find(
        self, video_id: str, now: float, dialect: str | None = "openai"
    ) -> tuple[jobs.Job, jobs.State] | None:
        """The job and its state at `now`, unless it is unknown, deleted or has vanished.

        Only a job of `dialect` is found (None: any dialect).
        """
        job = self._jobs.get(video_id)
        if job is None or (dialect is not None and job.dialect != dialect):
            return None
        state = jobs.state_at(job, now)
        return None if state.vanished else (job, state)

    def jobs_of(self, dialect: str, now: float) -> list[tuple[jobs.Job, jobs.State]]:
        """Every visible job of `dialect` with its state at `now`, newest first."""
        with self._lock:
            found = [self._jobs.get(job_id) for job_id in reversed(self._order)]
        visible = []
        for job in found:
            if job is None or job.dialect != dialect:
                continue
            state = jobs.state_at(job, now)
            if not state.vanished:
                visible.append((job, state))
        return visible

    def delete(self, video_id: str) -> None:
        """Forget a job: later calls about it answer 404."""
        now = self.clock.now()
        with self._lock:
            job = self._jobs.pop(video_id, None)
            if job is not None:
                self._load.ended(job, now)

    def page(
        self,
        *,
        after: str | None,
        limit: int,
        descending: bool,
        now: float,
        dialect: str = "openai",
    ) -> tuple[list[tuple[jobs.Job, jobs.State]], bool]:
        """Up to `limit` visible jobs of `dialect` after the cursor, in creation order; and
        whether more follow.

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
                if job is None or job.dialect != dialect:
                    continue
                state = jobs.state_at(job, now)
                if not state.vanished:
                    found.append((job, state))
        return found[:limit], len(found) > limit

    def expected_sha256(self, video_id: str, variant: str = "video") -> str:
        """Hex sha256 of the asset this job serves (to check a download).

        Works for every dialect: a Replicate prediction's output file and a fal request's video
        are the job's `video` variant.
        """
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

        Routes: OpenAI `create`, `retrieve`, `list`, `content`, `delete`, `remix`; Replicate
        `replicate.create`, `replicate.get`, `replicate.list`, `replicate.cancel`,
        `replicate.files`; fal `fal.submit`, `fal.status`, `fal.result`, `fal.cancel`,
        `fal.files`; Veo `veo.create`, `veo.get`, `veo.fetch`, `veo.vertex_get`, `veo.files`,
        `veo.media`, `veo.gcs`, `veo.webhooks`. Each dialect answers 429 and 5xx in its own shape.
        `video_id=` restricts the fault to requests about that job id (a prediction id, a fal
        request id, the last segment of a Veo operation name; so it never matches a create or a
        list). Other parameters depend on the
        kind: `retry_after` / `retry_after_ms` (rate_limit), `status` / `should_retry`
        (server_error; `status` for create_then_fail), `seconds` (latency). Raises ValueError
        for anything else.
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
        dialect: str | None = None,
    ) -> None:
        """Spoil the next webhook delivery: send it twice, shift its timestamp, or mis-sign it.

        `dialect` ("openai", "replicate", "fal", "veo-gemini") spoils the next delivery of that
        dialect only.
        """
        if dialect is not None and dialect not in jobs.DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; expected one of {list(jobs.DIALECTS)}")
        self.outbox.tamper_next(
            webhooks.Tamper(
                duplicate=duplicate,
                timestamp_offset_s=timestamp_offset_s,
                bad_signature=bad_signature,
            ),
            dialect,
        )

    @property
    def replicate_webhook_secret(self) -> str:
        """Replicate's signing secret (`whsec_...`): the configured one, else this simulator's."""
        return self.config.replicate_webhook_secret or self._generated_replicate_secret

    def rotate_fal_key(self) -> str:
        """Sign fal webhooks with a new Ed25519 key pair from now on; returns its `kid`.

        The JWKS then lists the new key first and the previous one after it, so a receiver
        that cached the old JWKS must refresh it to verify new deliveries.
        """
        return self.fal_keys.rotate()

    def rotate_veo_key(self) -> str:
        """Sign dynamic Veo webhooks (RS256 JWTs) with a new RSA key from now on; returns its `kid`.

        The JWKS then lists the new key first and the previous one after it.
        """
        return self.veo_keys.rotate()

    def reset(self, config: SimConfig | None = None) -> None:
        """Back to a fresh simulator (optionally with another config), keeping the server up.

        Forgets jobs, counters, faults, webhook records and shutdown mode, re-seeds the random
        source, starts fresh fal and Veo webhook key rings (the configured keys, else new random
        ones; rotations are forgotten), forgets registered Veo webhooks and resets the clock to
        wall time (a clock shared with others is reset for them too). The Replicate secret stays.
        """
        with self._lock:
            if config is not None:
                self.config = config
            self.fal_keys = fal.KeyRing(self.config.fal_webhook_key)
            self.veo_keys = veo.RsaKeyRing(self.config.veo_webhook_key_pem)
            self.veo_hooks = veo.Registry()
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
            self._load = Load()
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
        """Record one request to an API route (any dialect)."""
        with self._lock:
            self._requests[route] += 1
            if video_id is not None:
                if route in RETRIEVE_ROUTES:
                    self._retrieves[video_id] += 1
                elif route in CONTENT_ROUTES:
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
            by_dialect = Counter(job.dialect for job in self._jobs.values())
            result: dict[str, Any] = {
                "requests": dict(self._requests),
                "videos": videos,
                "jobs": len(self._jobs),
                "jobs_by_dialect": {name: by_dialect[name] for name in jobs.DIALECTS},
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

    def _schedule_webhooks(self, job: jobs.Job, only_at: float | None = None) -> None:
        """Queue the job's webhook moments (only those at `only_at`, after a cancel)."""
        if job.dialect == "openai":
            finish_at = job.finish_at
            if only_at is None and self.config.webhooks_enabled and finish_at is not None:
                self.outbox.schedule(job.id, finish_at)
            return
        for event, at in _HOOKS[job.dialect].webhook_moments(job):
            if only_at is None or at == only_at:
                self.outbox.schedule(_EVENT_SEP.join((job.id, event, repr(at))), at)

    def _resolve_webhook(self, key: str) -> webhooks.Delivery | None:
        """Turn a due outbox key into a delivery, unless the job changed its mind meanwhile."""
        if _EVENT_SEP not in key:
            event = self._terminal_event(key)
            return None if event is None else webhooks.openai_delivery(event, lambda: self.config)
        job_id, event_name, raw_at = key.split(_EVENT_SEP)
        job = self._jobs.get(job_id)
        if job is None:
            return None
        at = float(raw_at)
        hooks = _HOOKS[job.dialect]
        if (event_name, at) not in hooks.webhook_moments(job):
            return None  # cancelled meanwhile: this moment no longer happens
        if jobs.state_at(job, at).vanished:
            return None
        return hooks.delivery(self, job, event_name, at)

    def _terminal_event(self, video_id: str) -> webhooks.Event | None:
        job = self._jobs.get(video_id)
        finish_at = None if job is None else job.finish_at
        if job is None or finish_at is None or job.dialect != "openai":
            return None
        state = jobs.state_at(job, finish_at)
        if state.vanished or not state.terminal:
            return None
        kind = "video.completed" if state.status == jobs.Status.COMPLETED else "video.failed"
        return webhooks.Event(type=kind, video_id=job.id, created_at=int(finish_at))


class Load:
    """How many jobs of each dialect are queued or rendering, counted in amortised O(log n).

    Per dialect a heap of `(end, job id)` as scripted at creation (a stuck job never ends); a
    job cancelled or deleted before that end is remembered until its entry leaves the heap.
    Not thread-safe: the simulator calls it under its lock.
    """

    def __init__(self) -> None:
        self._ends: dict[str, list[tuple[float, str]]] = {}
        self._early: dict[str, set[str]] = {}

    def add(self, job: jobs.Job) -> None:
        """Count a new job until its scripted end (a deadline included)."""
        end = jobs.end_at(job)
        entry = (math.inf if end is None else end, job.id)
        heapq.heappush(self._ends.setdefault(job.dialect, []), entry)

    def ended(self, job: jobs.Job, now: float) -> None:
        """A job (as it stood) stops counting at `now`, before its end: cancelled or deleted."""
        end = jobs.end_at(job)
        if job.dialect in self._ends and (end is None or end > now):
            self._early.setdefault(job.dialect, set()).add(job.id)

    def active(self, dialect: str, now: float) -> int:
        """Jobs of `dialect` still queued or rendering at `now`."""
        ends = self._ends.get(dialect)
        if not ends:
            return 0
        early = self._early.setdefault(dialect, set())
        while ends and ends[0][0] <= now:
            _, job_id = heapq.heappop(ends)
            early.discard(job_id)
        return len(ends) - len(early)


def truncated_normal(rng: random.Random, mean: float, spread: float) -> float:
    """A draw around `mean` with relative standard deviation `spread`, at least 0.2 x mean."""
    floor = 0.2 * mean
    for _ in range(100):  # each try lands above the floor with probability > 1/2
        value = rng.gauss(mean, spread * mean)
        if value >= floor:
            return value
    return mean


def _dialect_extra(
    dialect: str, prompt: str, model: str, extra: Mapping[str, Any] | None, origin: str
) -> dict[str, Any]:
    """A job's `extra` with the dialect's defaults filled in (and the origin it was seen at)."""
    if dialect == "openai":
        return dict(extra or {})
    details = {"origin": origin, **(extra or {})}
    return _HOOKS[dialect].complete_extra(details, prompt, model)


@dataclass(frozen=True, slots=True)
class _Hooks:
    """What the simulator asks of a dialect's module (every dialect but OpenAI's)."""

    complete_extra: Callable[[dict[str, Any], str, str], dict[str, Any]]
    """A job's `extra` with the dialect's defaults: (details, prompt, model) -> extra."""
    webhook_moments: Callable[[jobs.Job], list[tuple[str, float]]]
    """The (event, simulated time) pairs the job's webhooks fire at, as things stand."""
    delivery: Callable[[Simulator, jobs.Job, str, float], webhooks.Delivery | None]
    """The delivery of one of those moments (None: nothing to send after all)."""


_HOOKS = {
    "replicate": _Hooks(replicate.complete_extra, replicate.webhook_moments, replicate.delivery),
    "fal": _Hooks(fal.complete_extra, fal.webhook_moments, fal.delivery),
    veo.GEMINI: _Hooks(veo.gemini_extra, veo.webhook_moments, veo.delivery),
    veo.VERTEX: _Hooks(veo.vertex_extra, veo.webhook_moments, veo.delivery),
}

"""Simulated video jobs: their script, and their state as a pure function of script and time.

A job is fixed at creation: when it leaves the queue, how long it renders, how it ends and how
its progress reads. Prompt directives such as `[sim:queue=0,render=5,fail=moderation_blocked]`
script it through the real API; anything not scripted is drawn from the simulator's seeded random
source. `state_at(job, now)` answers what the API reports at any moment, so there is no mutable
status to keep in sync.

Progress while rendering is one function for every dialect, `progress_at(job, at)`, shaped by the
job's progress profile (`[sim:progress=lumps]`, see `PROFILES`); the Replicate and fal logs are
drawn from the same function by `progress_marks(job)`, so what a client reads in them is what the
OpenAI dialect would report as `progress` at that moment.

The same core serves every dialect (OpenAI, Replicate, fal, Google Veo's two): a job records its
`dialect`, the dialect's own request data in `extra`, and the only two things that can change
after creation -- a cancel (`cancelled_at`, set by replacing the frozen job) and a deadline fixed
at creation (`deadline_at`). `state_at` speaks the OpenAI words plus `cancelled` and `aborted`;
each dialect maps them onto its own vocabulary.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import random
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """The four statuses of the Videos API, valued as sent on the wire, and two more endings.

    `cancelled` (a cancel, or a deadline reached while rendering) and `aborted` (a deadline
    reached before rendering started) never happen to OpenAI jobs, which cannot be cancelled.
    """

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.ABORTED})
DIALECTS = ("openai", "replicate", "fal", "veo-gemini", "veo-vertex")
MODELS = ("sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SECONDS = ("4", "8", "12", "16", "20")
DEFAULT_MODEL = "sora-2"
DEFAULT_SIZE = "720x1280"
DEFAULT_SECONDS = "4"
PROMPT_MAX_CHARS = 32000
MODERATION_MESSAGE = "Your request was blocked by our moderation system."
STUCK_PROGRESS = 50
"""Where a `stuck` job's progress freezes unless the directive names a value."""
PROFILES = ("linear", "lumps", "easeout", "stall", "none")
"""How progress reads while rendering (`[sim:progress=...]`, `SimConfig.progress`):
`linear` a straight line; `lumps` 2-4 jumps at random points, holding in between at the fraction
reached at the last jump; `easeout` fast then slow; `stall` a straight line held flat for a
stretch, then back on the line; `none` 0 throughout (as Google Veo reports it)."""
DEFAULT_PROFILE = "linear"
MARK_STEP = 5
"""Progress log lines are thinned to one per rise of this many percent (jumps always get one)."""

_GEMINI_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_DIRECTIVE = re.compile(r"\[sim:([^\]]*)\]")
_FLAGS = frozenset({"stuck"})
_KEYS = frozenset(
    {"queue", "render", "fail", "stuck", "bytes", "unknown_status", "vanish_after", "progress"}
)


class DirectiveError(ValueError):
    """A `[sim:...]` directive in a prompt is malformed."""


@dataclass(frozen=True, slots=True)
class Script:
    """Everything that decides how a job unfolds; fixed when the job is created."""

    queue_s: float
    render_s: float
    video_bytes: int
    expires_after_s: float = 3600.0
    fail_code: str | None = None
    stuck_at: int | None = None
    unknown_status: str | None = None
    vanish_after_s: float | None = None
    progress: str = DEFAULT_PROFILE
    """The progress profile (one of `PROFILES`)."""

    @property
    def finish_after_s(self) -> float | None:
        """Seconds from creation to the terminal status; None for a stuck job."""
        return None if self.stuck_at is not None else self.queue_s + self.render_s


@dataclass(frozen=True, slots=True)
class Reference:
    """What was sent as `input_reference`: an uploaded file, an image URL or a file id."""

    kind: str
    content_type: str | None = None
    byte_count: int | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One video job as created; `seq` orders jobs by creation."""

    id: str
    seq: int
    created_at: float
    prompt: str
    model: str
    seconds: str
    size: str
    script: Script
    remixed_from_video_id: str | None = None
    reference: Reference | None = None
    dialect: str = "openai"
    """Which API created the job (and is the only one that can see it)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """The dialect's own request data (input, webhook URL, endpoint, ...); never mutated."""
    cancelled_at: float | None = None
    """When a cancel was accepted (the job is replaced, not mutated)."""
    deadline_at: float | None = None
    """A deadline fixed at creation (Replicate `Cancel-After`, fal `X-Fal-Request-Timeout`)."""
    deadline_while_running: bool = False
    """Whether the deadline also stops a job that is already rendering (Replicate: yes)."""

    @property
    def render_at(self) -> float:
        """Simulated time at which the job leaves the queue and starts rendering."""
        return self.created_at + self.script.queue_s

    @property
    def finish_at(self) -> float | None:
        """Simulated time of the scripted terminal transition; None if it never comes.

        A cancel or a deadline can end the job earlier: see `stop_of` and `end_at`.
        """
        after = self.script.finish_after_s
        return None if after is None else self.created_at + after

    @property
    def vanish_at(self) -> float | None:
        """Simulated time after which the job is gone (404); None if it stays."""
        after = self.script.vanish_after_s
        return None if after is None else self.created_at + after


@dataclass(frozen=True, slots=True)
class State:
    """What the API reports about a job at one moment."""

    status: str
    progress: int
    completed_at: int | None = None
    expires_at: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    vanished: bool = False

    @property
    def terminal(self) -> bool:
        """Whether the job has finished, one way or the other."""
        return self.status in TERMINAL

    @property
    def active(self) -> bool:
        """Whether the job is still queued or rendering."""
        return not self.terminal


def new_video_id() -> str:
    """A fresh id shaped like the real ones: `video_` and 48 hex digits."""
    return "video_" + secrets.token_hex(24)


def new_job_id(dialect: str = "openai") -> str:
    """A fresh id in the dialect's shape.

    OpenAI `video_` + 48 hex digits; Replicate 26 lowercase base32 characters (as in
    `gm3qorzdhgbfurvjtvhg6dckhu`); fal and Veo on Vertex a UUID; Veo on the Gemini API 12
    lowercase letters and digits (as in `vz341u0pmdlc`, the last segment of its operation name).
    """
    if dialect == "replicate":
        return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()
    if dialect in ("fal", "veo-vertex"):
        return str(uuid.uuid4())
    if dialect == "veo-gemini":
        return "".join(secrets.choice(_GEMINI_ID_CHARS) for _ in range(12))
    if dialect != "openai":
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {list(DIALECTS)}")
    return new_video_id()


def parse_directives(prompt: str) -> dict[str, str | None]:
    """Collect `[sim:key=value,flag]` directives from anywhere in the prompt (later ones win)."""
    found: dict[str, str | None] = {}
    for block in _DIRECTIVE.findall(prompt):
        for item in block.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if key not in _KEYS:
                raise DirectiveError(f"unknown simulator directive {key!r}")
            if not sep and key not in _FLAGS:
                raise DirectiveError(f"simulator directive {key!r} needs a value")
            found[key] = value if sep else None
    return found


def script_for(
    prompt: str,
    *,
    queue_s: float,
    render_s: float,
    video_bytes: int,
    expires_after_s: float,
    progress: str = DEFAULT_PROFILE,
) -> Script:
    """The script of a new job: the drawn defaults, overridden by the prompt's directives."""
    found = parse_directives(prompt)
    stuck_at: int | None = None
    if "stuck" in found:
        raw = found["stuck"]
        stuck_at = STUCK_PROGRESS if raw is None else _integer("stuck", raw, high=99)
    vanish = found.get("vanish_after")
    return Script(
        queue_s=_duration("queue", found["queue"]) if "queue" in found else queue_s,
        render_s=_duration("render", found["render"]) if "render" in found else render_s,
        video_bytes=_integer("bytes", found["bytes"]) if "bytes" in found else video_bytes,
        expires_after_s=expires_after_s,
        fail_code=_word("fail", found["fail"]) if "fail" in found else None,
        stuck_at=stuck_at,
        unknown_status=(
            _word("unknown_status", found["unknown_status"]) if "unknown_status" in found else None
        ),
        vanish_after_s=_duration("vanish_after", vanish) if "vanish_after" in found else None,
        progress=_profile(found["progress"]) if "progress" in found else progress,
    )


def failure_message(code: str) -> str:
    """The message a failed job reports for its error code."""
    if code == "moderation_blocked":
        return MODERATION_MESSAGE
    return f"Video generation failed ({code})."


def stop_of(job: Job) -> tuple[float, Status] | None:
    """When and how a cancel or deadline ends the job early; None if it runs its course.

    A deadline reached before rendering starts aborts the job; one reached while rendering
    cancels it only if `deadline_while_running`. Whatever comes at or after the scripted finish
    changes nothing.
    """
    found: list[tuple[float, Status]] = []
    if job.cancelled_at is not None:
        found.append((job.cancelled_at, Status.CANCELLED))
    if job.deadline_at is not None:
        if job.deadline_at < job.render_at:
            found.append((job.deadline_at, Status.ABORTED))
        elif job.deadline_while_running:
            found.append((job.deadline_at, Status.CANCELLED))
    if not found:
        return None
    stop = min(found, key=lambda item: item[0])
    finish_at = job.finish_at
    if finish_at is not None and stop[0] >= finish_at:
        return None
    return stop


def end_at(job: Job) -> float | None:
    """Simulated time of the job's actual terminal transition (scripted, cancel or deadline)."""
    stop = stop_of(job)
    return stop[0] if stop is not None else job.finish_at


def started_at(job: Job, now: float) -> float | None:
    """When rendering started, if it has by `now` (a job stopped in the queue never starts)."""
    render_at = job.render_at
    if now < render_at:
        return None
    stop = stop_of(job)
    if stop is not None and stop[0] < render_at:
        return None
    return render_at


def seed_of(job: Job) -> int:
    """The random seed a job reports it rendered with (fixed by its id)."""
    return int.from_bytes(hashlib.sha256(job.id.encode()).digest()[:4], "big") % 2**31


def state_at(job: Job, now: float) -> State:
    """The job's state at simulated time `now`: a pure function of its script (and cancel)."""
    script = job.script
    vanish_at = job.vanish_at
    vanished = vanish_at is not None and now >= vanish_at
    render_start = job.created_at + script.queue_s
    stop = stop_of(job)
    if stop is not None and now >= stop[0]:
        at, status = stop
        progress = 0 if at < render_start else progress_at(job, at)
        return State(
            status=status, progress=progress, completed_at=math.floor(at), vanished=vanished
        )
    if now < render_start:
        return State(status=Status.QUEUED, progress=0, vanished=vanished)
    finish_at = job.finish_at
    if finish_at is None or now < finish_at:
        rendering: str = script.unknown_status or Status.IN_PROGRESS
        return State(status=rendering, progress=progress_at(job, now), vanished=vanished)
    completed_at = math.floor(finish_at)
    if script.fail_code is not None:
        return State(
            status=Status.FAILED,
            progress=0,
            completed_at=completed_at,
            error_code=script.fail_code,
            error_message=failure_message(script.fail_code),
            vanished=vanished,
        )
    return State(
        status=Status.COMPLETED,
        progress=100,
        completed_at=completed_at,
        expires_at=math.floor(completed_at + script.expires_after_s),
        vanished=vanished,
    )


def progress_at(job: Job, at: float) -> int:
    """The percent (0..99) a job reports at `at` while rendering, per its progress profile.

    0 before rendering starts; a `stuck` job's progress never passes its stuck value (it climbs
    to it as the profile goes and freezes there, except `none`, which stays 0). Only meaningful
    while the job is rendering: `state_at` reports 100 or 0 once it has ended.
    """
    return _progress(job.id, job.render_at, job.script, at)


def progress_marks(job: Job) -> tuple[tuple[float, int], ...]:
    """When a progress log line appears, and the percent it shows: `(simulated time, percent)`.

    One mark per moment the percent of `progress_at` changes, thinned to one per rise of
    `MARK_STEP` percent, plus every jump (`lumps`, the end of a `stall`), the start of a stall
    and, for a stuck job, the moment it reaches its stuck value. Each mark's percent equals
    `progress_at(job, time)`, so the last line a client has seen is the current progress up to
    the thinning. Only marks while the job renders: none at or after its scripted finish, none
    at all for the `none` profile.
    """
    marks = _marks(job.id, job.render_at, job.script)
    finish_at = job.finish_at
    if finish_at is None or not marks or marks[-1][0] < finish_at:
        return marks
    return tuple(mark for mark in marks if mark[0] < finish_at)  # a render of (next to) nothing


def _progress(job_id: str, render_at: float, script: Script, at: float) -> int:
    if at < render_at or script.progress == "none":
        return 0
    cap = 99 if script.stuck_at is None else script.stuck_at
    if script.progress == "linear":
        progress = 99 if script.render_s <= 0 else int(99 * (at - render_at) / script.render_s)
        return max(min(progress, cap), 0)
    fraction = 1.0 if script.render_s <= 0 else (at - render_at) / script.render_s
    return max(min(_shape(job_id, script.progress, fraction), cap), 0)


def _shape(job_id: str, profile: str, fraction: float) -> int:
    """The percent a profile reads at `fraction` of the render (99 from the render's end on)."""
    if fraction >= 1:
        return 99
    if fraction <= 0:
        return 0
    if profile == "easeout":
        return int(99 * (1 - (1 - fraction) ** 2))
    if profile == "lumps":
        held = 0.0
        for point in _lumps(job_id):
            if point > fraction:
                break
            held = point
        return int(99 * held)
    if profile == "stall":
        stall_at, resume_at = _stall(job_id)
        if stall_at <= fraction < resume_at:
            return int(99 * stall_at)
        return int(99 * fraction)
    return int(99 * fraction)  # linear (via `progress_at` it keeps its own float arithmetic)


@functools.lru_cache(maxsize=4096)
def _lumps(job_id: str) -> tuple[float, ...]:
    """Fractions of the render at which a `lumps` job's progress jumps (2-4, fixed by its id).

    Each lands inside its own whole percent (`int(99 * point)` is that percent), at least 3
    percent above the previous one, so every jump shows and none follows another too closely.
    """
    rng = random.Random(f"{job_id}/lumps")
    slots = sorted(rng.sample(range(1, 19), rng.randint(2, 4)))
    percents = [5 * slot + rng.randint(0, 2) for slot in slots]
    return tuple((percent + rng.uniform(0.2, 0.8)) / 99 for percent in percents)


@functools.lru_cache(maxsize=4096)
def _stall(job_id: str) -> tuple[float, float]:
    """Fractions of the render where a `stall` job's progress stops, and where it resumes."""
    rng = random.Random(f"{job_id}/stall")
    stall_at = rng.uniform(0.3, 0.6)
    return stall_at, stall_at + rng.uniform(0.2, 0.35)  # back on the line before the end


def _breakpoints(job_id: str, script: Script) -> list[tuple[float, int, bool]]:
    """`(fraction, percent, jump)` where the profile (uncapped) first reads each new percent."""
    profile = script.progress
    if profile == "none":
        return []
    if script.render_s <= 0:
        return [(0.0, 99, True)]
    points: list[tuple[float, int, bool]]
    if profile == "lumps":
        points = [(point, int(99 * point), True) for point in _lumps(job_id)]
    elif profile == "easeout":
        points = [(1 - math.sqrt(1 - k / 99), k, False) for k in range(1, 99)]
    elif profile == "stall":
        stall_at, resume_at = _stall(job_id)
        held, resumed = int(99 * stall_at), int(99 * resume_at)
        points = [(k / 99, k, k == held) for k in range(1, held + 1)]  # a line for the stall
        points.append((resume_at, resumed, True))
        points.extend((k / 99, k, False) for k in range(resumed + 1, 99))
    else:
        points = [(k / 99, k, False) for k in range(1, 99)]
    points.append((1.0, 99, True))  # the render's end: only a stuck job renders past it
    return points


@functools.lru_cache(maxsize=4096)
def _marks(job_id: str, render_at: float, script: Script) -> tuple[tuple[float, int], ...]:
    cap = 99 if script.stuck_at is None else script.stuck_at
    stuck = script.stuck_at is not None
    marks: list[tuple[float, int]] = []
    last = 0
    for fraction, raw, jump in _breakpoints(job_id, script):
        if fraction >= 1 and not stuck:
            break
        percent = min(raw, cap)
        if percent <= last:
            continue
        frozen = raw >= cap
        if not (jump or frozen or percent - last >= MARK_STEP):
            continue
        at = render_at + fraction * script.render_s
        # Float rounding may put the computed moment an ulp before the percent is reached.
        for _ in range(64):
            if _progress(job_id, render_at, script, at) >= percent:
                break
            at = math.nextafter(at, math.inf)
        shown = _progress(job_id, render_at, script, at)
        if shown > last:
            marks.append((at, shown))
            last = shown
        if frozen:
            break
    return tuple(marks)


def video_object(job: Job, state: State) -> dict[str, Any]:
    """The `Video` resource as the API sends it: all 13 fields, nullable ones as null."""
    error = None
    if state.error_code is not None:
        error = {"code": state.error_code, "message": state.error_message}
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": str(state.status),
        "progress": state.progress,
        "created_at": math.floor(job.created_at),
        "completed_at": state.completed_at,
        "expires_at": state.expires_at,
        "prompt": job.prompt,
        "size": job.size,
        "seconds": job.seconds,
        "remixed_from_video_id": job.remixed_from_video_id,
        "error": error,
    }


def _duration(key: str, raw: str | None) -> float:
    try:
        value = float(raw or "")
    except ValueError:
        raise DirectiveError(f"simulator directive {key!r} needs a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise DirectiveError(f"simulator directive {key!r} must be a finite number >= 0")
    return value


def _integer(key: str, raw: str | None, *, high: int | None = None) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        raise DirectiveError(f"simulator directive {key!r} needs a whole number") from None
    if value < 0 or (high is not None and value > high):
        limit = "" if high is None else f" and <= {high}"
        raise DirectiveError(f"simulator directive {key!r} must be >= 0{limit}")
    return value


def _profile(raw: str | None) -> str:
    if raw is None or raw not in PROFILES:
        allowed = ", ".join(PROFILES)
        raise DirectiveError(f"simulator directive 'progress' must be one of {allowed}")
    return raw


def _word(key: str, raw: str | None) -> str:
    if not raw or not re.fullmatch(r"[A-Za-z0-9_.-]+", raw):
        raise DirectiveError(f"simulator directive {key!r} needs a word (letters, digits, _ . -)")
    return raw

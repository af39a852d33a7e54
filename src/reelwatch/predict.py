"""How long a render has left: a distribution learned from finished renders of the same shape,
narrowed by what this one has shown so far. Pure functions, no I/O.

A finished render becomes a `Run`: how long it queued, how long it rendered, and the fractions
of the render at which its percents were first seen. For a job still rendering, two estimates of
its whole render time are formed from the history of its shape:
- by duration: the history's render times, conditioned on being longer than this one has run;
- by progress: for each run, the fraction at which it first showed this job's percent; this
  job's total is the time it took to reach that percent divided by the fraction.
The one with the tighter spread (10 %-90 %) wins, so straight-line progress is trusted, lumpy
or missing progress falls back on the durations, and a profile such as ease-out, which is
honest but not straight, is read through the history. The result is a `Remaining`: the time left
as a sorted sample, scaled and shifted, conditioned on the end not having come yet.

Hand-written because no maintained library does this small empirical conditioning; the sizes
(at most `WINDOW` runs a shape) keep it in microseconds with `bisect`.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from statistics import median

from reelwatch.models import Generation, Status

WINDOW = 200  # finished renders kept per shape
MIN_RUNS = 5  # fewer than this and the history says nothing
BLUR_POINTS = (-0.5, -1 / 6, 1 / 6, 0.5)  # where a window of uncertainty is sampled


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One finished render: seconds queued (None if unknown), seconds rendering, and the
    `(fraction of the render, percent)` at which each new percent was first seen."""

    queue_s: float | None
    render_s: float
    marks: tuple[tuple[float, int], ...] = ()

    def fraction_at(self, percent: int) -> float | None:
        """The fraction of the render at which this run reached `percent`, interpolated between
        the marks around it (from (0, 0)); None if it never showed that percent."""
        low_f, low_p = 0.0, 0
        for fraction, shown in self.marks:
            if shown >= percent:
                if shown == low_p:
                    return fraction
                return low_f + (percent - low_p) / (shown - low_p) * (fraction - low_f)
            low_f, low_p = fraction, shown
        return None


class History:
    """The recent finished runs of one shape, with the sorted views the predictor reads."""

    __slots__ = (
        "_after",
        "_between",
        "_fractions",
        "_inverse",
        "queue",
        "render",
        "runs",
        "signal",
    )

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = tuple(runs[:WINDOW])
        self.render = sorted(r.render_s for r in self.runs)
        self.queue = sorted(r.queue_s for r in self.runs if r.queue_s is not None)
        self._inverse: dict[int, list[float]] = {}
        self._between: dict[tuple[int, int], list[float]] = {}
        self._after: dict[int, list[float]] = {}
        self._fractions: list[list[float | None]] | None = None
        self.signal = sum(1 for r in self.runs if r.marks) * 2 >= len(self.runs) > 0

    def __len__(self) -> int:
        return len(self.runs)

    def inverse_fractions(self, percent: int) -> list[float]:
        """Sorted 1/fraction at which the runs reached `percent` (cached per percent)."""
        found = self._inverse.get(percent)
        if found is None:
            found = sorted(
                1.0 / f
                for fractions in self._fractions_by_percent()
                if (f := fractions[percent]) is not None and f > 0.001
            )
            self._inverse[percent] = found
        return found

    def _fractions_by_percent(self) -> list[list[float | None]]:
        if self._fractions is None:
            self._fractions = [
                [run.fraction_at(percent) for percent in range(100)] for run in self.runs
            ]
        return self._fractions

    def left_after(self, percent: int) -> list[float]:
        """Per run, the seconds it rendered after it reached `percent`, sorted."""
        found = self._after.get(percent)
        if found is None:
            found = sorted(
                (1.0 - f) * run.render_s
                for run, fractions in zip(self.runs, self._fractions_by_percent(), strict=True)
                if (f := fractions[percent]) is not None
            )
            self._after[percent] = found
        return found

    def stretch(self, low: int, high: int) -> list[float]:
        """For a job seen at `low` percent and later at `high`: per run, the render left after
        `low` over the render between the two, `(1 - f(low)) / (f(high) - f(low))`, sorted
        (the time from `low` to `high` times this is the time from `low` to the end)."""
        found = self._between.get((low, high))
        if found is None:
            found = []
            for fractions in self._fractions_by_percent():
                f_low, f_high = fractions[low], fractions[high]
                if f_low is not None and f_high is not None and f_high - f_low > 0.005:
                    found.append((1.0 - f_low) / (f_high - f_low))
            found.sort()
            self._between[(low, high)] = found
        return found

    def typical_render(self) -> tuple[float, float] | None:
        """The 10 %-90 % range of render times, for "usually 1:10-1:40"."""
        if len(self.render) < MIN_RUNS:
            return None
        return _pick(self.render, 0.1), _pick(self.render, 0.9)


@dataclasses.dataclass(frozen=True, slots=True)
class Remaining:
    """Time left, as `scale * v - offset + u` for v in `values` (sorted) and u uniform over
    `[-blur/2, blur/2]`, conditioned on being positive (the end has not come yet)."""

    values: Sequence[float]
    scale: float = 1.0
    offset: float = 0.0
    blur: float = 0.0

    def _below(self, t: float) -> float:
        """P(scale * v - offset + u <= t), unconditioned."""
        n = len(self.values)
        if self.blur <= 0:
            return bisect_right(self.values, (t + self.offset) / self.scale) / n
        total = 0
        for point in BLUR_POINTS:
            total += bisect_right(self.values, (t - point * self.blur + self.offset) / self.scale)
        return total / (n * len(BLUR_POINTS))

    @property
    def latest(self) -> float:
        """The longest time left the sample allows (<= 0: overdue)."""
        return self.scale * self.values[-1] - self.offset + self.blur / 2

    @property
    def overdue(self) -> bool:
        return self.latest <= 0

    def cdf(self, t: float) -> float:
        """P(the end comes within `t` seconds | it has not come yet); 1.0 once overdue."""
        gone = self._below(0.0)
        if gone >= 1.0 or t >= self.latest:
            return 1.0
        return max(0.0, (self._below(t) - gone) / (1.0 - gone))

    def quantile(self, q: float) -> float:
        """The time left by which the end has come with probability `q` (bisection)."""
        low, high = 0.0, max(0.0, self.latest)
        for _ in range(40):
            if high - low < 0.01:
                break
            middle = (low + high) / 2
            if self.cdf(middle) >= q:
                high = middle
            else:
                low = middle
        return high

    def look_after(self, worth_s: float) -> float:
        """When to look next so that lag and looks balance: the smallest wait `d` with
        `d * P(end within d) >= 2 * worth_s`, `worth_s` being the seconds of lag one look is
        worth. This is the discrete form of Keller's optimal inspection density
        `sqrt(hazard / (2 c))`: looks are dense where the end is likely and sparse where it is
        not. Never later than the latest end the sample allows."""
        target = 2.0 * worth_s
        low, high = 0.0, max(0.0, self.latest)
        if high * self.cdf(high) < target:
            return high
        for _ in range(40):
            if high - low < 0.01:
                break
            middle = (low + high) / 2
            if middle * self.cdf(middle) >= target:
                high = middle
            else:
                low = middle
        return high


@dataclasses.dataclass(frozen=True, slots=True)
class Forecast:
    """What the predictor knows: the time left (None: nothing to go by), where it came from
    ("progress", "history"), and how far past every run of its shape the job is."""

    remaining: Remaining | None
    source: str
    overdue_s: float = 0.0
    signal: bool = False  # whether renders of this shape showed any progress


NOTHING = Forecast(None, "none")


def queued(history: History, waited_s: float) -> Forecast:
    """A job still queued `waited_s` after it was submitted: when its render starts (what the
    looks while queued are for: the better the start is known, the better the end is)."""
    if len(history.queue) < MIN_RUNS:
        return NOTHING
    return _forecast(Remaining(history.queue, offset=waited_s), "queue", history.signal)


def forecast(g: Generation, now: datetime, history: History | None) -> Forecast:
    """The forecast for a generation at `now`, from its shape's history (None: no history)."""
    if history is None or len(history) < MIN_RUNS:
        return NOTHING
    if g.status is Status.QUEUED:
        since = g.submitted_at or g.watch_started_at
        return queued(history, (now - since).total_seconds())
    if g.status is not Status.IN_PROGRESS or g.started_at is None:
        return NOTHING
    high = g.started_at.timestamp()
    low = g.started_after.timestamp() if g.started_after else high
    start = (low + high) / 2
    reached: float | None = None
    if g.progress > 0 and g.last_progress_at is not None:
        reached = g.last_progress_at.timestamp() - start
    return rendering(
        history,
        elapsed_s=now.timestamp() - start,
        start_blur_s=high - low,
        percent=g.progress,
        reached_s=reached,
        anchor_percent=g.started_progress,
        anchor_s=high - start,
    )


def rendering(
    history: History,
    *,
    elapsed_s: float,
    start_blur_s: float = 0.0,
    percent: int = 0,
    reached_s: float | None = None,
    anchor_percent: int = 0,
    anchor_s: float | None = None,
) -> Forecast:
    """A job rendering for `elapsed_s` (its start known to within `start_blur_s`), showing
    `percent`, first seen `reached_s` after its start; first seen rendering `anchor_s` after
    its start, showing `anchor_percent` then.

    Three estimates of the end, the tightest (10 %-90 % spread) wins: the durations alone; the
    time to reach `percent` stretched by how far into their render the runs of the shape were
    at that percent; and, when the job already showed a percent at its first look, the time
    between its two percents stretched likewise (the start, known only to within the queue
    looks, then drops out: this is the straight-line rate, bent by the shape's own curve).
    """
    if len(history) < MIN_RUNS:
        return NOTHING
    durations = best = Remaining(history.render, offset=elapsed_s, blur=start_blur_s)
    source = "history"
    spread = _pick(history.render, 0.9) - _pick(history.render, 0.1) + start_blur_s
    if 0 < anchor_percent == percent and anchor_s is not None:
        # One percent seen so far, at the first look: the runs' render left after it.
        left = history.left_after(percent)
        if len(left) >= MIN_RUNS:
            tried = _pick(left, 0.9) - _pick(left, 0.1)
            if tried < spread:
                best = Remaining(left, offset=elapsed_s - anchor_s)
                source, spread = "progress", tried
    if percent > 0 and reached_s is not None and reached_s > 0:
        if 0 < anchor_percent < percent and anchor_s is not None and reached_s > anchor_s:
            stretch = history.stretch(anchor_percent, percent)
            span = reached_s - anchor_s
            if len(stretch) >= MIN_RUNS:
                tried = span * (_pick(stretch, 0.9) - _pick(stretch, 0.1))
                if tried < spread:
                    best = Remaining(stretch, scale=span, offset=elapsed_s - anchor_s)
                    source, spread = "progress", tried
        inverse = history.inverse_fractions(percent)
        if len(inverse) >= MIN_RUNS:
            tried = reached_s * (_pick(inverse, 0.9) - _pick(inverse, 0.1)) + start_blur_s
            if tried < spread:
                best = Remaining(inverse, scale=reached_s, offset=elapsed_s, blur=start_blur_s)
                source = "progress"
    if best is not durations and best.overdue:
        # Its percent has stood still past where it should have moved on (a stall, a lump
        # still to come): what is left to go by is how long renders of its shape take.
        best, source = durations, "history"
    return _forecast(best, source, history.signal)


def _forecast(remaining: Remaining, source: str, signal: bool) -> Forecast:
    overdue_s = -remaining.latest if remaining.overdue else 0.0
    return Forecast(remaining, source, overdue_s=overdue_s, signal=signal)


def _pick(ordered: Sequence[float], q: float) -> float:
    """The `q` quantile of a sorted sample (nearest rank)."""
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


# --- learning from a finished render ----------------------------------------------------------

SHAPE_PARAMS = ("duration", "resolution", "aspect_ratio", "num_frames")


def shape_of(g: Generation) -> str:
    """The history a render belongs to: provider, model and the request's length and size."""
    parts = [g.provider, g.model, "" if g.seconds is None else str(g.seconds), g.size or ""]
    parts += [f"{k}={g.params[k]}" for k in SHAPE_PARAMS if g.params.get(k) is not None]
    return " ".join(parts)[:300]


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """One moment reelwatch saw the job: when, the status it was in, the percent shown."""

    at: datetime
    status: str
    progress: int
    # The last of the unchanged looks folded before this one (the store keeps no event for
    # those), if any: the window this look's news is known to within starts there.
    after: datetime | None = None


def learn(
    submitted_at: datetime | None, remote_completed_at: datetime | None, looks: Sequence[Look]
) -> Run | None:
    """The `Run` a render leaves behind, from the looks that followed it (in order, the last
    one the look that found it finished); None when it was never seen rendering.

    Each moment is read as the middle of the window it is known to within: the render began
    between the last look that saw it queued and the first that saw it rendering; a percent
    was reached between the look before the one that first showed it and that one; it ended
    at the provider's `completed_at` (whole seconds, so half a second later) kept within the
    window of the last two looks.
    """
    start: float | None = None
    previous = submitted_at.timestamp() if submitted_at else None
    marks: list[tuple[float, int]] = []
    shown = 0
    end_window: tuple[float, float] | None = None
    for look in looks:
        at = look.at.timestamp()
        if look.after is not None:
            previous = max(previous or 0.0, look.after.timestamp())
        low = previous if previous is not None else at
        if look.status in ("downloading", "completed"):
            end_window = (low, at)
            break
        if look.status == "in_progress":
            if start is None:
                start = (low + at) / 2
            if look.progress > shown:
                marks.append((at, look.progress))
                shown = look.progress
        previous = at
    if start is None or end_window is None:
        return None
    low, high = end_window
    end = (low + high) / 2
    if remote_completed_at is not None:
        end = min(high, max(low, remote_completed_at.timestamp() + 0.5))
    render_s = end - start
    if render_s <= 0:
        return None
    fractions = tuple(
        (min(1.0, max(0.0, (when - start) / render_s)), min(99, percent)) for when, percent in marks
    )
    queue_s = start - submitted_at.timestamp() if submitted_at else None
    return Run(
        queue_s=None if queue_s is None else max(0.0, queue_s), render_s=render_s, marks=fractions
    )


# --- what people are shown ---------------------------------------------------------------------

STUCK_OVERDUE_S = 60.0  # past every render of its shape by this much (or half a render): stuck


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """The ETA people see: a likely time left, the latest it plausibly is, and words."""

    seconds: float | None
    high_seconds: float | None
    text: str | None
    source: str  # "progress", "history", "queue", "rate" or "none"
    overdue: bool = False
    low_seconds: float | None = None  # the earliest it plausibly is (10th percentile)


def clock(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss from an hour)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def estimate(g: Generation, now: datetime, history: History | None) -> Estimate:
    """The ETA of a generation: a range from its shape's history and its progress when there
    is history, else the straight-line rate of its own percent (a point), else nothing."""
    eta = g.eta_seconds(now)
    outlook = forecast(g, now, history)
    if outlook.remaining is None and eta is not None and eta > 0:
        return Estimate(eta, None, f"about {clock(eta)}", "rate")  # no history: its own rate
    typical = history.typical_render() if history is not None else None
    usually = None if typical is None else f"usually {clock(typical[0])}-{clock(typical[1])}"
    remaining = outlook.remaining
    if remaining is not None and outlook.overdue_s > 0:
        late = "in the queue" if outlook.source == "queue" else "rendering"
        return Estimate(None, None, f"longer {late} than any like it so far", outlook.source, True)
    if remaining is not None and outlook.source != "queue":
        likely, latest = remaining.quantile(0.5), remaining.quantile(0.9)
        text = "any moment now" if likely < 1.0 else f"about {clock(likely)}"
        if latest - likely > max(5.0, 0.15 * likely):
            text += f", at most {clock(latest)}"
        if outlook.source == "history" and usually:
            text += f" ({usually} for this model)"
        return Estimate(likely, latest, text, outlook.source, low_seconds=remaining.quantile(0.1))
    if g.status is Status.QUEUED and usually:
        return Estimate(None, None, f"queued; rendering {usually} for this model", "queue")
    if eta is not None and eta <= 0:
        # Never "0:00": the end its own percent pointed to has passed.
        return Estimate(None, None, "overdue: past the end its progress pointed to", "rate", True)
    if eta is not None:
        return Estimate(eta, None, f"about {clock(eta)}", "rate")
    return Estimate(None, None, None, "none")


def stuck(g: Generation, now: datetime, history: History | None) -> bool | None:
    """Whether a render is well past every one of its shape (None: no history to judge by)."""
    if history is None or len(history) < MIN_RUNS or g.status is not Status.IN_PROGRESS:
        return None
    outlook = forecast(g, now, history)
    if outlook.remaining is None:
        return None
    return outlook.overdue_s > max(STUCK_OVERDUE_S, 0.5 * median(history.render))

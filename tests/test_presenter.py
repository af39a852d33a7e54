"""What people read: event words and details without Python reprs (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reelwatch import attention, predict, presenter
from reelwatch.models import Event, Generation, Status


def test_details_read_as_words_not_python_reprs() -> None:
    data = {
        "variants": ["spritesheet", "thumbnail", "video"],
        "duration_ms": 65,
        "latency_ms": 1534.2,
        "detection_lag_s": 1.978505413059097,
        "estimated_cost_usd": 2.4,
        "bytes": 96256,
        "params": {"seconds": 4, "size": "720x1280"},
        "found": None,
        "quiet_polls": 3,
    }
    assert presenter.detail_words(data) == [
        ("variants", "spritesheet, thumbnail, video"),
        ("took", "65 ms"),
        ("answered in", "1.5 s"),
        ("found after", "2.0 s"),
        ("estimated cost", "$2.40"),
        ("bytes", "94.0 KiB"),
        ("params", "seconds 4, size 720x1280"),
    ]
    for _, text in presenter.detail_words(data):
        assert "[" not in text and "{" not in text and "'" not in text


def test_every_event_kind_has_words_and_unknown_ones_are_readable() -> None:
    assert presenter.event_words("submitted") == "Sent to the provider"
    assert presenter.event_words("some_new_kind") == "Some new kind"


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rendering(**changes: Any) -> Generation:
    """A sora-2 render that began at T0; override any field."""
    values: dict[str, Any] = {
        "id": "gen_1",
        "provider": "openai",
        "video_id": "v",
        "status": Status.IN_PROGRESS,
        "progress": 0,
        "model": "sora-2",
        "seconds": 8,
        "size": "1280x720",
        "prompt": "p",
        "created_at": T0,
        "watch_started_at": T0,
        "submitted_at": T0,
        "started_at": T0,
        "started_after": T0,
    }
    return Generation(**{**values, **changes})


def test_quiet_looks_are_one_entry_before_the_event_that_ended_them() -> None:
    t0 = T0
    g = rendering(progress=40, updated_at=t0, quiet_polls=2, quiet_since=t0)
    quiet = {"quiet_polls": 1, "quiet_from": "a", "quiet_to": "b"}
    events = [
        Event(1, "gen_1", t0, "created", Status.PENDING, 0, None, {}),
        Event(2, "gen_1", t0, "progress", Status.IN_PROGRESS, 40, None, {**quiet, "progress": 40}),
    ]
    entries = presenter.timeline(events, g)
    assert [e["kind"] for e in entries] == ["created", "quiet", "progress", "quiet"]
    assert presenter.quiet_words(entries[1]) == "polled once, no change"
    assert presenter.quiet_words(entries[3]) == "polled 2 times, no change"
    assert entries[2]["data"] == {"progress": 40}


def test_a_histogram_has_axes_and_marks_p50_and_p95() -> None:
    from reelwatch.web import charts

    values = [float(v) for v in range(1, 101)]  # 1..100 s
    svg = str(charts.histogram_svg([(0.0, 50.0, 49), (50.0, 100.0, 51)], "render", values))
    assert 'class="axis"' in svg and ">51</text>" in svg and ">25</text>" in svg
    assert "p50 50.5 s" in svg and "p95 95.0 s" in svg
    assert ">0.0 s</text>" in svg and ">100.0 s</text>" in svg


def test_the_troubleshooting_guide_explains_every_code_the_dashboard_explains() -> None:
    from pathlib import Path

    guide = (Path(__file__).parent.parent / "docs" / "troubleshooting.md").read_text()
    for code, trouble in presenter.TROUBLES.items():
        assert f"`{code}`" in guide, code
        assert trouble.next in guide.replace("\n", " "), code
    unknown = presenter.troubleshoot("weird_code", "the model crashed")
    assert unknown.what == "the model crashed" and "weird code" in unknown.title


def test_the_eta_object_of_the_contract_is_a_range_with_its_source() -> None:
    """`eta` is `{seconds, low, high, source}` once there is an estimate, null before."""
    from datetime import timedelta

    from reelwatch.predict import History, Run

    t0 = T0
    g = rendering()
    history = History([Run(1.0, 60.0 + i) for i in range(60)])
    view = presenter.to_json(g, t0 + timedelta(seconds=10), history=history)
    eta = view["eta"]
    assert eta["source"] == "history"
    assert eta["low"] < eta["seconds"] < eta["high"]
    assert eta["seconds"] == view["eta_seconds"]
    pending = presenter.to_json(
        rendering(video_id=None, status=Status.PENDING, submitted_at=None, started_at=None), t0
    )
    assert pending["eta"] is None and pending["eta_seconds"] is None


def test_the_step_says_what_is_known_without_a_percent() -> None:
    """Veo tells only "not done": the words say where it waits and how long renders like it
    usually take (the 10th-90th percentile of its shape's history)."""
    queued = rendering(status=Status.QUEUED, started_at=None, started_after=None)
    assert presenter.step(queued, None, "Google") == "Queued at Google"
    assert presenter.step(queued, None) == "Queued at the provider"
    running = rendering()
    assert presenter.step(running, None, "Google") == "Rendering (Google shows no progress)"
    history = predict.History([predict.Run(0.0, 70.0 + i) for i in range(31)])
    assert presenter.step(running, history, "Google") == (
        "Rendering, usually takes 1:13-1:37 for this model and length"
    )
    assert presenter.step(rendering(progress=40), history, "Google") == "Rendering 40%"
    assert presenter.to_json(running, T0, history=history, host="Google")["step"].startswith(
        "Rendering, usually takes"
    )


def test_chart_durations_are_never_negative() -> None:
    """A completion time in whole seconds can fall before the moment the render was seen
    running; the charts count that as 0 s, never as a negative bin ("-0.0-0.2 s")."""
    g = rendering(
        status=Status.COMPLETED,
        started_at=T0 + timedelta(seconds=10.7),
        remote_completed_at=T0 + timedelta(seconds=10),
        completed_at=T0 + timedelta(seconds=11),
    )
    spans = attention.durations([g])
    assert spans["render"] == [0.0] and spans["lag"] == [1.0]
    assert attention.histogram(spans["render"])[0][0] == 0.0

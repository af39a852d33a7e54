"""Injected faults as the official SDK sees them, and the /_sim control routes."""

from __future__ import annotations

import time

import httpx
import httpx2
import openai
import pytest

from reelwatch.simulator import RunningSimulator


def test_rate_limit_is_a_429_with_retry_after(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """A rate_limit fault raises RateLimitError with Retry-After and x-ratelimit-* headers."""
    rs.sim.inject("list", "rate_limit", retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        client.videos.list()
    headers = caught.value.response.headers
    assert headers["retry-after"] == "7"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.code == "rate_limit_exceeded"
    assert client.videos.list().data == []


def test_sdk_retries_honour_retry_after_ms(rs: RunningSimulator) -> None:
    """With retries on, the SDK waits `retry-after-ms` and gets through on the third attempt."""
    rs.sim.inject("list", "rate_limit", count=2, retry_after_ms=20)
    with openai.OpenAI(base_url=rs.base_url, api_key="test", max_retries=2) as retrying:
        assert retrying.videos.list().data == []
    assert rs.sim.stats()["requests"]["list"] == 3


@pytest.mark.parametrize(("status", "should_retry"), [(500, None), (502, True), (503, False)])
def test_server_error_is_internal_server_error(
    client: openai.OpenAI, rs: RunningSimulator, status: int, should_retry: bool | None
) -> None:
    """A server_error fault raises InternalServerError with the chosen status and retry hint."""
    rs.sim.inject("create", "server_error", status=status, should_retry=should_retry)
    with pytest.raises(openai.InternalServerError) as caught:
        client.videos.create(prompt="x")
    assert caught.value.status_code == status
    hint = caught.value.response.headers.get("x-should-retry")
    assert hint == (None if should_retry is None else str(should_retry).lower())
    assert rs.sim.stats()["jobs"] == 0


def test_truncated_download_fails_while_reading(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """A truncate fault sends the full content-length but half the body, so reading raises."""
    video = client.videos.create(prompt="[sim:queue=0,render=0]")
    rs.sim.inject("content", "truncate")
    with client.videos.with_streaming_response.download_content(video.id) as response:
        assert response.headers["content-length"] == str(256 * 1024)
        with pytest.raises(httpx2.RemoteProtocolError, match=r"complete message body"):
            response.read()
    assert len(client.videos.download_content(video.id).content) == 256 * 1024


def test_truncated_buffered_download_is_a_connection_error(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """The SDK's buffered download_content reports a truncated body as APIConnectionError."""
    video = client.videos.create(prompt="[sim:queue=0,render=0]")
    rs.sim.inject("content", "truncate", video_id=video.id)
    with pytest.raises(openai.APIConnectionError):
        client.videos.download_content(video.id)


def test_create_then_fail_loses_the_answer_not_the_job(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """create_then_fail answers 500 but the job exists and shows up in the list."""
    rs.sim.inject("create", "create_then_fail")
    with pytest.raises(openai.InternalServerError):
        client.videos.create(prompt="was I created?")
    [video] = client.videos.list().data
    assert video.prompt == "was I created?"


def test_latency_fault_delays_one_answer(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """A latency fault sleeps before answering normally; the next request is fast again."""
    rs.sim.inject("*", "latency", seconds=0.2)
    started = time.perf_counter()
    client.videos.list()
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    client.videos.list()
    assert time.perf_counter() - started < 0.2


def test_latency_beyond_the_timeout_is_a_timeout(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """A slow answer past the client's timeout raises APITimeoutError."""
    rs.sim.inject("retrieve", "latency", seconds=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.1).videos.retrieve("video_123")


def test_drop_is_a_connection_error(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """A drop fault closes the connection without an answer: APIConnectionError."""
    rs.sim.inject("create", "drop")
    with pytest.raises(openai.APIConnectionError):
        client.videos.create(prompt="x")
    assert client.videos.create(prompt="x").status == "queued"
    assert rs.sim.stats()["jobs"] == 1


def test_faults_can_target_one_video(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """A fault with video_id spares other videos; count=-1 lasts until reset."""
    hit = client.videos.create(prompt="hit")
    spared = client.videos.create(prompt="spared")
    rs.sim.inject("retrieve", "server_error", count=-1, video_id=hit.id)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.videos.retrieve(hit.id)
        assert client.videos.retrieve(spared.id).id == spared.id
    rs.sim.reset_faults()
    assert client.videos.retrieve(hit.id).id == hit.id


def test_control_routes_work_without_auth(rs: RunningSimulator, client: openai.OpenAI) -> None:
    """/_sim lets another process inject faults, advance the clock, read stats and reset."""
    with httpx.Client(base_url=rs.origin, trust_env=False) as control:
        assert control.get("/_sim/health").json() == {"ok": True}
        video = client.videos.create(prompt="remote")
        answer = control.post("/_sim/faults", json={"route": "retrieve", "kind": "rate_limit"})
        assert answer.json()["faults"][0]["kind"] == "rate_limit"
        with pytest.raises(openai.RateLimitError):
            client.videos.retrieve(video.id)
        control.post("/_sim/faults", json={"route": "*", "kind": "drop", "count": -1})
        control.post("/_sim/reset-faults")
        assert control.post("/_sim/clock/advance", json={"seconds": 12}).json()["offset_s"] == 12
        assert client.videos.retrieve(video.id).status == "completed"
        control.post("/_sim/shutdown", json={"enabled": True})
        with pytest.raises(openai.NotFoundError):
            client.videos.list()
        control.post("/_sim/shutdown", json={"enabled": False})
        stats = control.get("/_sim/stats").json()
        assert (stats["requests"]["retrieve"], stats["faults"]) == (2, [])
        assert control.post("/_sim/reset", json={"render_s": [1, 1]}).json() == {"ok": True}
        assert rs.sim.config.render_s == (1, 1)
        assert control.get("/_sim/stats").json()["jobs"] == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sim/faults", {"route": "retrieve", "kind": "explode"}),
        ("/_sim/faults", {"route": "create", "kind": "drop", "colour": "red"}),
        ("/_sim/clock/advance", {"seconds": -5}),
        ("/_sim/reset", {"queue_s": [5, 1]}),
        ("/_sim/reset", {"nonsense": 1}),
        ("/_sim/webhooks/tamper", {"louder": True}),
    ],
)
def test_control_routes_refuse_nonsense(rs: RunningSimulator, path: str, body: object) -> None:
    """Bad control requests are 400 in the error envelope and change nothing."""
    with httpx.Client(base_url=rs.origin, trust_env=False) as control:
        response = control.post(path, json=body)
        assert response.status_code == 400
        assert response.json()["error"]["message"]
        assert control.post("/_sim/faults", content=b"{not json").status_code == 400
    assert rs.sim.stats()["faults"] == []

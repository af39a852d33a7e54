"""The /v1 videos routes over real HTTP, driven by the official SDK (and raw JSON where needed)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from reelwatch.simulator import RunningSimulator

VIDEO_FIELDS = {
    "id", "object", "model", "status", "progress", "created_at", "completed_at", "expires_at",
    "prompt", "size", "seconds", "remixed_from_video_id", "error",
}  # fmt: skip


def test_create_multipart_answers_a_queued_video(
    client: openai.OpenAI, rs: RunningSimulator
) -> None:
    """The SDK's multipart create gets a full queued Video with the defaults filled in."""
    video = client.videos.create(prompt="a red fox in snow [sim:render=3]")
    assert re.fullmatch(r"video_[0-9a-f]{48}", video.id)
    assert (video.status, video.progress, video.model) == ("queued", 0, "sora-2")
    assert (video.seconds, video.size) == ("4", "720x1280")
    assert video.prompt == "a red fox in snow [sim:render=3]"
    assert (video.completed_at, video.expires_at, video.error) == (None, None, None)
    assert abs(video.created_at - rs.sim.clock.now()) < 2


def test_create_records_the_uploaded_reference(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """A file `input_reference` is accepted and its length and content type recorded."""
    video = client.videos.create(
        prompt="x",
        input_reference=("first.png", b"\x89PNG fake image", "image/png"),
        model="sora-2-pro",
        seconds="8",
        size="1792x1024",
    )
    job = rs.sim.job(video.id)
    assert job is not None
    assert job.reference is not None
    assert (job.reference.kind, job.reference.byte_count) == ("file", 15)
    assert job.reference.content_type == "image/png"
    assert (video.model, video.seconds, video.size) == ("sora-2-pro", "8", "1792x1024")


def test_create_accepts_json(http: httpx.Client, rs: RunningSimulator) -> None:
    """A JSON body works too, with an image_url reference; every Video field is present."""
    response = http.post(
        "/v1/videos",
        json={
            "prompt": "json",
            "seconds": "20",
            "input_reference": {"image_url": "https://x/y.png"},
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == VIDEO_FIELDS
    assert (body["seconds"], body["status"]) == ("20", "queued")
    job = rs.sim.job(body["id"])
    assert job is not None
    assert job.reference is not None
    assert (job.reference.kind, job.reference.value) == ("image_url", "https://x/y.png")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 32001}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x [sim:queue=later]"}, "prompt"),
        ({"prompt": "x", "model": "sora-3"}, "model"),
        ({"prompt": "x", "seconds": "5"}, "seconds"),
        ({"prompt": "x", "seconds": 4}, "seconds"),
        ({"prompt": "x", "size": "1920x1080"}, "size"),
        ({"prompt": "x", "input_reference": {"image_url": "a", "file_id": "b"}}, "input_reference"),
    ],
)
def test_create_validation_names_the_field(
    http: httpx.Client, body: dict[str, object], param: str
) -> None:
    """Bad fields are refused with 400 invalid_request_error naming the parameter."""
    response = http.post("/v1/videos", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]


def test_sdk_sees_validation_errors(client: openai.OpenAI) -> None:
    """The SDK raises BadRequestError carrying the parameter name."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="x", size="1920x1080")  # type: ignore[arg-type]
    assert caught.value.param == "size"
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "model", ["sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08"]
)
def test_dated_model_slugs_are_accepted(client: openai.OpenAI, model: str) -> None:
    """The dated slugs from the spec are valid models."""
    assert client.videos.create(prompt="x", model=model, seconds="12").model == model


def test_retrieve_follows_the_clock(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """queued, then in_progress with rising integer progress, then completed with timestamps."""
    video = client.videos.create(prompt="progression")
    job = rs.sim.job(video.id)
    assert job is not None
    assert client.videos.retrieve(video.id).status == "queued"
    rs.sim.clock.advance(3)
    early = client.videos.retrieve(video.id)
    rs.sim.clock.advance(5)
    late = client.videos.retrieve(video.id)
    assert (early.status, late.status) == ("in_progress", "in_progress")
    assert 0 <= early.progress < late.progress < 100
    rs.sim.clock.advance(5)
    done = client.videos.retrieve(video.id)
    assert (done.status, done.progress) == ("completed", 100)
    assert done.completed_at == math.floor(job.created_at + 12)
    assert done.expires_at == done.completed_at + 3600


def test_failed_job_reports_the_scripted_code(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """`fail=moderation_blocked` ends failed with the moderation message."""
    video = client.videos.create(prompt="a famous actor [sim:fail=moderation_blocked]")
    rs.sim.clock.advance(13)
    failed = client.videos.retrieve(video.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "moderation_blocked"
    assert failed.error.message == "Your request was blocked by our moderation system."
    assert failed.expires_at is None


def test_unknown_id_is_404(client: openai.OpenAI) -> None:
    """Retrieving an id that never existed raises NotFoundError."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.videos.retrieve("video_123")
    assert caught.value.code == "not_found"
    assert caught.value.type == "invalid_request_error"


def test_list_pages_through_everything(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """Auto-paging with limit=2 yields every job, newest first by default, oldest first on asc."""
    ids = [client.videos.create(prompt=f"clip {n}").id for n in range(5)]
    first = client.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[:2:-1][:2]
    assert first.has_more is True
    assert [v.id for v in client.videos.list(limit=2)] == ids[::-1]
    assert [v.id for v in client.videos.list(limit=2, order="asc")] == ids
    assert rs.sim.stats()["requests"]["list"] == 1 + 3 + 3


async def test_async_list_and_create_and_poll(aclient: openai.AsyncOpenAI) -> None:
    """The async client pages with `async for` and create_and_poll returns a finished job."""
    done = await aclient.videos.create_and_poll(prompt="instant [sim:queue=0,render=0]")
    assert done.status == "completed"
    await aclient.videos.create(prompt="second")
    seen = [video.id async for video in aclient.videos.list(limit=1, order="asc")]
    assert seen == [done.id, seen[1]]


def test_list_edges(http: httpx.Client, client: openai.OpenAI) -> None:
    """limit=0 gives an empty page; an `after` id never issued gives an empty, final page."""
    client.videos.create(prompt="only")
    empty = client.videos.list(limit=0)
    assert (empty.data, empty.has_more, empty.last_id) == ([], True, None)
    page = client.videos.list(after="after", limit=0, order="asc")
    assert (page.data, page.has_more) == ([], False)
    body = http.get("/v1/videos", params={"after": "video_nope"}).json()
    assert body == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"), ({"order": "up"}, "order")],
)
def test_list_validation(http: httpx.Client, params: dict[str, str], param: str) -> None:
    """Out-of-range limits and unknown orders are 400 naming the parameter."""
    response = http.get("/v1/videos", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_delete_then_404(client: openai.OpenAI) -> None:
    """A deleted video answers 404 and disappears from the list."""
    keep = client.videos.create(prompt="keep")
    gone = client.videos.create(prompt="gone")
    deleted = client.videos.delete(gone.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (gone.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(gone.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(gone.id)
    assert [v.id for v in client.videos.list()] == [keep.id]


def test_delete_active_can_be_refused(
    client: openai.OpenAI, rs: RunningSimulator, configure: Callable[..., None]
) -> None:
    """With allow_delete_active=False, only finished videos can be deleted."""
    configure(allow_delete_active=False)
    video = client.videos.create(prompt="busy")
    with pytest.raises(openai.BadRequestError, match="still queued"):
        client.videos.delete(video.id)
    rs.sim.clock.advance(12)
    assert client.videos.delete(video.id).deleted is True


def test_remix_needs_a_completed_source(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """Remix is refused before completion, then creates a new queued job pointing at the source."""
    source = client.videos.create(prompt="original", size="1280x720", seconds="8")
    with pytest.raises(openai.BadRequestError, match="only completed videos can be remixed"):
        client.videos.remix(source.id, prompt="now with hats")
    rs.sim.clock.advance(12)
    remix = client.videos.remix(source.id, prompt="now with hats")
    assert remix.id != source.id
    assert remix.status == "queued"
    assert (remix.remixed_from_video_id, remix.prompt) == (source.id, "now with hats")
    assert (remix.size, remix.seconds) == ("1280x720", "8")
    with pytest.raises(openai.NotFoundError):
        client.videos.remix("video_123", prompt="x")


def test_missing_token_is_401(http: httpx.Client) -> None:
    """Without an Authorization header every /v1 route answers 401 invalid_api_key."""
    response = http.get("/v1/videos", headers={"authorization": ""})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_wrong_key_is_401(rs: RunningSimulator, configure: Callable[..., None]) -> None:
    """With api_key set, another key raises AuthenticationError; the right one passes."""
    configure(api_key="sk-right-key-123")
    with (
        openai.OpenAI(base_url=rs.base_url, api_key="sk-wrong-key-456", max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        wrong.videos.list()
    assert caught.value.code == "invalid_api_key"
    assert "sk-right" not in caught.value.message
    with openai.OpenAI(base_url=rs.base_url, api_key="sk-right-key-123", max_retries=0) as right:
        assert right.videos.list().data == []


def test_shutdown_mode_rejects_everything(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """In shutdown mode every call is 404 model_not_found, until switched off."""
    rs.sim.set_shutdown(True)
    with pytest.raises(openai.NotFoundError) as caught:
        client.videos.create(prompt="x")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.videos.list()
    rs.sim.set_shutdown(False)
    assert client.videos.create(prompt="x").status == "queued"


def test_stuck_job_stays_in_progress(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """A `stuck` job reports in_progress with frozen progress, however long one waits."""
    video = client.videos.create(prompt="[sim:stuck=33]")
    rs.sim.clock.advance(10_000)
    first = client.videos.retrieve(video.id)
    rs.sim.clock.advance(100_000)
    second = client.videos.retrieve(video.id)
    assert (first.status, first.progress) == ("in_progress", 33)
    assert (second.status, second.progress) == ("in_progress", 33)


def test_unknown_status_is_sent_raw(http: httpx.Client, rs: RunningSimulator) -> None:
    """`unknown_status=processing` is what a gateway-like answer says while rendering."""
    created = http.post("/v1/videos", json={"prompt": "[sim:unknown_status=processing]"})
    video_id = created.json()["id"]
    rs.sim.clock.advance(5)
    assert http.get(f"/v1/videos/{video_id}").json()["status"] == "processing"
    rs.sim.clock.advance(10)
    assert http.get(f"/v1/videos/{video_id}").json()["status"] == "completed"


def test_strict_sdk_rejects_unknown_status(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """The strict SDK refuses a non-standard status (what a provider adapter must handle)."""
    video = client.videos.create(prompt="[sim:unknown_status=unknown]")
    rs.sim.clock.advance(5)
    with pytest.raises(openai.APIResponseValidationError):
        client.videos.retrieve(video.id)


def test_vanished_job_is_404(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """After `vanish_after` seconds the job answers 404 and leaves the list."""
    video = client.videos.create(prompt="[sim:vanish_after=4]")
    rs.sim.clock.advance(3)
    assert client.videos.retrieve(video.id).status == "in_progress"
    rs.sim.clock.advance(2)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    assert client.videos.list().data == []


def test_poll_after_header_on_unfinished_jobs(
    http: httpx.Client, rs: RunningSimulator, configure: Callable[..., None]
) -> None:
    """With poll_after_ms set, unfinished jobs' retrieves suggest a poll interval."""
    configure(poll_after_ms=1500)
    video_id = http.post("/v1/videos", json={"prompt": "x"}).json()["id"]
    assert http.get(f"/v1/videos/{video_id}").headers["openai-poll-after-ms"] == "1500"
    rs.sim.clock.advance(12)
    assert "openai-poll-after-ms" not in http.get(f"/v1/videos/{video_id}").headers


def test_configured_latency_slows_every_answer(
    client: openai.OpenAI, configure: Callable[..., None]
) -> None:
    """latency_s is added to each API response."""
    configure(latency_s=0.15)
    started = time.perf_counter()
    client.videos.list()
    assert time.perf_counter() - started >= 0.15


def test_requests_carry_an_id_and_are_counted(client: openai.OpenAI, rs: RunningSimulator) -> None:
    """Answers have x-request-id; stats count requests per route and retrieves per video."""
    raw = client.videos.with_raw_response.create(prompt="count me")
    assert raw.request_id is not None
    assert raw.request_id.startswith("req_")
    video = raw.parse()
    client.videos.retrieve(video.id)
    client.videos.retrieve(video.id)
    client.videos.create(prompt="count me")
    stats = rs.sim.stats()
    assert stats["requests"] == {"create": 2, "retrieve": 2}
    assert stats["videos"][video.id]["retrieves"] == 2
    assert (stats["creates"], stats["duplicate_creates"]) == (2, 1)


def test_unknown_route_uses_the_error_envelope(http: httpx.Client) -> None:
    """Routes the simulator does not serve answer 404 in the API's error shape."""
    response = http.get("/v1/videos/characters/char_123/extra")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Invalid URL")

"""The OpenAI-shaped front: the official `openai` SDK, pointed at `reelwatch serve`, runs on
every provider's fake. Real HTTP all the way: SDK -> reelwatch -> simulator."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reelwatch import serving, settings, simulator
from reelwatch.providers import front_routes
from reelwatch.simulator import samples
from reelwatch.web.app import create_app
from tests.conftest import image_file

KEY = "sk-front-client"
OTHER_KEY = "sk-front-other"
SIM_KEY = "sk-sim"
# Routes to each fake besides the default table (sora-2 -> fal, sora-2-pro -> Veo on Vertex,
# which these tests do not configure).
ROUTES = {
    "replicate-veo": {
        "provider": "replicate",
        "model": "google/veo-3-fast",
        "seconds": {"param": "duration", "allowed": [4, 6, 8]},
        "sizes": {"1280x720": {"aspect_ratio": "16:9"}, "720x1280": {"aspect_ratio": "9:16"}},
    },
    "gemini-veo": {
        "provider": "veo",
        "model": "veo-3.1-fast-generate-preview",
        "seconds": {"param": "duration_seconds", "allowed": [4, 6, 8]},
        "sizes": {"1280x720": {"aspect_ratio": "16:9", "resolution": "720p"}},
    },
    "gateway-sora": {
        "provider": "openai",
        "model": "sora-2",
        "seconds": {"param": "seconds", "allowed": [4, 8, 12]},
        "sizes": {"1280x720": {"size": "1280x720"}, "720x1280": {"size": "720x1280"}},
    },
}
# The simulator's status-check route per provider (its request counters).
STATUS_ROUTES = {**samples.STATUS_ROUTES}


@dataclass
class Front:
    origin: str
    sim: simulator.RunningSimulator
    clients: list[openai.OpenAI]

    def client(self, key: str = KEY) -> openai.OpenAI:
        made = openai.OpenAI(base_url=self.origin + "/v1", api_key=key, max_retries=0, timeout=20)
        self.clients.append(made)  # closed when the test ends
        return made


@pytest.fixture
def front(tmp_path: Path, db_url: str) -> Iterator[Front]:
    config = simulator.SimConfig(api_key=SIM_KEY, queue_s=(0.2, 0.2), render_s=(1.5, 1.5))
    with simulator.running(config) as sim:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url_raw": db_url,
            "provider_config": samples.client_config(sim, SIM_KEY),
            "model_routes": ROUTES,
            "api_token": KEY,
            "client_keys_raw": OTHER_KEY,
            "poll_min_seconds": 0.2,
            "poll_max_seconds": 1.0,
            "public_url": None,
        }
        app = create_app(settings.load(**values))
        with serving.in_thread(app, probe="/healthz", name="reelwatch-front") as origin:
            made = Front(origin, sim, [])
            yield made
            for client in made.clients:
                client.close()


def _stored_sha(front: Front, video: openai.types.Video) -> str:
    """The sha256 reelwatch recorded for the video (its own API, with the token)."""
    generation = video.model_extra["reelwatch"]["generation_id"]  # type: ignore[index]
    answer = httpx.get(
        f"{front.origin}/api/generations/{generation}",
        headers={"authorization": f"Bearer {KEY}"},
    )
    answer.raise_for_status()
    return str(answer.json()["assets"]["video"]["sha256"])


@pytest.mark.parametrize("model", ["sora-2", "replicate-veo", "gemini-veo", "gateway-sora"])
def test_create_and_poll_then_download_through_reelwatch(front: Front, model: str) -> None:
    client = front.client()
    video = client.videos.create_and_poll(
        prompt="[sim:queue=0,render=1.5] a paper boat",
        model=model,
        seconds="4",
        size="1280x720",
        poll_interval_ms=200,
    )
    assert video.status == "completed", video
    assert video.id.startswith("video_") and video.model == model
    assert (video.seconds, video.size, video.progress) == ("4", "1280x720", 100)
    data = client.videos.download_content(video.id).content
    sha = hashlib.sha256(data).hexdigest()
    assert sha == _stored_sha(front, video)
    provider_id = client.videos.retrieve(video.id).model_extra["reelwatch"]["generation_id"]  # type: ignore[index]
    assert provider_id
    assert client.videos.retrieve(video.id).status == "completed"  # stable across reads


def test_a_polling_client_costs_no_provider_requests(front: Front) -> None:
    """A second client polling every 100 ms is answered from the database: the provider sees
    only reelwatch's own schedule."""
    client = front.client()
    video = client.videos.create(
        prompt="[sim:queue=0,render=3] watched closely", model="replicate-veo", seconds="4"
    )
    polls = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal polls
        other = front.client()
        while not stop.is_set():
            if other.videos.retrieve(video.id).status in ("completed", "failed"):
                return
            polls += 1
            time.sleep(0.1)

    worker = threading.Thread(target=poll)
    worker.start()
    done = client.videos.poll(video.id, poll_interval_ms=100)
    stop.set()
    worker.join(timeout=10)
    assert done.status == "completed"
    assert polls >= 20  # it really polled, about 30 times
    provider_id = done.model_extra["reelwatch"]  # type: ignore[index]
    assert provider_id["provider"] == "replicate"
    checks = front.sim.sim.stats()["requests"].get(STATUS_ROUTES["replicate"], 0)
    print(f"client polls {polls}, provider status checks {checks}")
    assert 1 <= checks <= 6, checks


def test_errors_are_openais_shape_and_words(front: Front) -> None:
    client = front.client()
    with pytest.raises(openai.BadRequestError, match="no route for 'sora-9'") as unknown:
        client.videos.create(prompt="x", model="sora-9")
    assert unknown.value.body["param"] is None or isinstance(unknown.value.body, dict)  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="makes 4, 6, 8 seconds, not 12"):
        client.videos.create(prompt="x", model="sora-2", seconds="12")
    with pytest.raises(openai.BadRequestError, match="size"):
        client.videos.create(prompt="x", model="sora-2", size="1792x1024")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve("video_" + "0" * 48)
    with pytest.raises(openai.AuthenticationError):
        front.client("sk-wrong").videos.list()
    by_url = httpx.post(
        f"{front.origin}/v1/videos",
        json={"prompt": "x", "input_reference": {"image_url": "https://example.com/a.png"}},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert by_url.status_code == 400 and "multipart" in by_url.json()["error"]["message"]
    raw = httpx.get(f"{front.origin}/v1/videos/nope", headers={"authorization": f"Bearer {KEY}"})
    assert raw.status_code == 404
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}
    assert front.sim.sim.stats()["creates"] == 0  # nothing refused reached a provider


def test_each_client_sees_only_its_own_videos_and_lists_page_by_cursor(front: Front) -> None:
    mine, theirs = front.client(), front.client(OTHER_KEY)
    made = [
        mine.videos.create(prompt=f"[sim:queue=0,render=60] {n}", model="sora-2").id
        for n in range(3)
    ]
    other = theirs.videos.create(prompt="[sim:queue=0,render=60] theirs", model="sora-2")
    with pytest.raises(openai.NotFoundError):
        mine.videos.retrieve(other.id)
    first = mine.videos.list(limit=2, order="asc")
    assert [v.id for v in first.data] == made[:2] and first.has_more
    rest = mine.videos.list(limit=2, order="asc", after=first.data[-1].id)
    assert [v.id for v in rest.data] == made[2:] and not rest.has_more
    assert [v.id for v in mine.videos.list(order="desc")] == made[::-1]
    with pytest.raises(openai.ConflictError):  # still being made
        mine.videos.delete(made[0])


def test_a_first_frame_upload_and_delete_after_completion(front: Front, tmp_path: Path) -> None:
    client = front.client()
    image = image_file(tmp_path / "frame.png", size=(1280, 720))
    video = client.videos.create_and_poll(
        prompt="[sim:queue=0,render=1] from a frame",
        model="gateway-sora",
        size="1280x720",
        input_reference=image,
        poll_interval_ms=200,
    )
    assert video.status == "completed", video
    whole = client.videos.download_content(video.id).content
    part = httpx.get(
        f"{front.origin}/v1/videos/{video.id}/content",
        headers={"authorization": f"Bearer {KEY}", "range": "bytes=10-19"},
    )
    assert part.status_code == 206 and part.content == whole[10:20]
    with pytest.raises(openai.BadRequestError, match="remix"):
        client.videos.remix(video.id, prompt="again")
    deleted = client.videos.delete(video.id)
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_a_failure_reads_as_failed_with_the_providers_reason(front: Front) -> None:
    client = front.client()
    video = client.videos.create_and_poll(
        prompt="[sim:queue=0,render=1,fail=moderation_blocked] a face",
        model="gemini-veo",
        seconds="4",
        size="1280x720",
        poll_interval_ms=200,
    )
    assert video.status == "failed" and video.error is not None
    assert video.error.code == "moderation_blocked"
    with pytest.raises(openai.NotFoundError, match="not ready"):
        client.videos.download_content(video.id)
    assert json.loads(json.dumps(video.model_dump()))["error"]["message"]


# --- webhooks to your app ---------------------------------------------------------------------

HOOK_SECRET = "whsec_" + base64.b64encode(b"front-outbound-secret-0123456789").decode()


class Receiver:
    """A test app receiving reelwatch's webhooks: verified with the `standardwebhooks` library;
    the first `fail_first` attempts are answered 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts: list[str] = []  # webhook-id of every attempt, in order
        self.received: list[dict[str, Any]] = []  # verified events answered 2xx
        self.lock = threading.Lock()

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        event = standardwebhooks.Webhook(HOOK_SECRET).verify(body, dict(request.headers))
        with self.lock:
            self.attempts.append(request.headers["webhook-id"])
            if len(self.attempts) <= self.fail_first:
                return Response("not now", status_code=500)
            self.received.append(event)
        return Response(status_code=204)


@contextlib.contextmanager
def _serving(values: dict[str, Any]) -> Iterator[str]:
    app = create_app(settings.load(**values))
    with serving.in_thread(app, probe="/healthz", name="reelwatch-front") as origin:
        yield origin


@contextlib.contextmanager
def _hooked(
    tmp_path: Path, db_url: str, fail_first: int
) -> Iterator[tuple[dict[str, Any], Receiver, simulator.RunningSimulator]]:
    config = simulator.SimConfig(api_key=SIM_KEY, queue_s=(0.2, 0.2), render_s=(1.0, 1.0))
    receiver = Receiver(fail_first)
    hook_app = Starlette(
        routes=[
            Route("/hook", receiver.handle, methods=["POST"]),
            Route("/_sim/health", lambda r: Response()),
        ]
    )
    with (
        simulator.running(config) as sim,
        serving.in_thread(hook_app, probe="/_sim/health", name="hook") as hook,
    ):
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url_raw": db_url,
            "provider_config": samples.client_config(sim, SIM_KEY),
            "api_token": KEY,
            "poll_min_seconds": 0.2,
            "poll_max_seconds": 1.0,
            "webhook_urls_raw": hook + "/hook",
            "webhook_secret": HOOK_SECRET,
            "webhook_retry_base_seconds": 0.3,
        }
        yield values, receiver, sim


def _until(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_app_is_told_once_when_its_video_is_ready(tmp_path: Path, db_url: str) -> None:
    with (
        _hooked(tmp_path, db_url, fail_first=0) as (values, receiver, _sim),
        _serving(values) as origin,
        openai.OpenAI(base_url=origin + "/v1", api_key=KEY, max_retries=0) as client,
    ):
        video = client.videos.create_and_poll(
            prompt="[sim:queue=0,render=1] tell me", poll_interval_ms=200
        )
        failed = client.videos.create_and_poll(
            prompt="[sim:queue=0,render=1,fail=internal_error] doomed", poll_interval_ms=200
        )
        _until(lambda: len(receiver.received) == 2)
        time.sleep(1.0)  # nothing more comes
        kinds = {e["data"]["id"]: e["type"] for e in receiver.received}
        assert kinds == {video.id: "video.completed", failed.id: "video.failed"}
        assert len(receiver.attempts) == 2
        generation = video.model_extra["reelwatch"]["generation_id"]  # type: ignore[index]
        log = httpx.get(
            f"{origin}/api/generations/{generation}/deliveries",
            headers={"authorization": f"Bearer {KEY}"},
        ).json()["data"]
        assert [(d["event"], d["attempts"], d["last_error"]) for d in log] == [
            ("video.completed", 1, None)
        ]
        timeline = httpx.get(
            f"{origin}/api/generations/{generation}/events",
            headers={"authorization": f"Bearer {KEY}"},
        ).json()
        assert "notified" in [e["kind"] for e in timeline["data"]]


def test_a_delivery_survives_a_restart_in_the_middle_of_its_retries(
    tmp_path: Path, db_url: str
) -> None:
    with _hooked(tmp_path, db_url, fail_first=2) as (values, receiver, _sim):
        with (
            _serving(values) as origin,
            openai.OpenAI(base_url=origin + "/v1", api_key=KEY, max_retries=0) as client,
        ):
            video = client.videos.create_and_poll(
                prompt="[sim:queue=0,render=1] persist", poll_interval_ms=200
            )
            _until(lambda: len(receiver.attempts) >= 1)
        # reelwatch is down between attempts; the outbox row waits in the database.
        assert receiver.received == []
        with _serving(values):
            _until(lambda: len(receiver.received) == 1)
            time.sleep(1.0)
        assert [e["data"]["id"] for e in receiver.received] == [video.id]
        assert len(receiver.attempts) == 3 and len(set(receiver.attempts)) == 1  # one webhook-id


def test_a_client_over_its_share_is_told_to_wait_with_retry_after(
    tmp_path: Path, db_url: str
) -> None:
    config = simulator.SimConfig(api_key=SIM_KEY, queue_s=(0.2, 0.2), render_s=(60.0, 60.0))
    with simulator.running(config) as sim:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url_raw": db_url,
            "provider_config": samples.client_config(sim, SIM_KEY),
            "api_token": KEY,
            "client_keys_raw": OTHER_KEY,
            "client_max_active": 3,
            "client_create_rate": "5/minute",
        }
        with (
            _serving(values) as origin,
            openai.OpenAI(base_url=origin + "/v1", api_key=KEY, max_retries=0) as mine,
            openai.OpenAI(base_url=origin + "/v1", api_key=OTHER_KEY, max_retries=0) as theirs,
        ):
            for n in range(3):
                mine.videos.create(prompt=f"[sim:queue=0,render=600] running {n}")
            for _ in range(2):  # creates 4 and 5: within the rate, over the running share
                with pytest.raises(openai.RateLimitError, match="Too many videos") as busy:
                    mine.videos.create(prompt="one too many")
                assert busy.value.response.headers["retry-after"] == "10"
                assert busy.value.body["type"] == "rate_limit_error"  # type: ignore[index]
            with pytest.raises(openai.RateLimitError, match="Rate limit") as limited:
                mine.videos.create(prompt="and again")  # the sixth in a minute
            assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
            assert theirs.videos.create(prompt="[sim:queue=0,render=60] theirs").status == "queued"
        assert sim.sim.stats()["creates"] == 4  # the refused ones never reached a provider


def test_the_readme_lists_every_default_route() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Moving a Sora app to another provider in one setting")[1]
    table = section.split("**Routes**")[1].split("```")[0]
    for model, route in front_routes.DEFAULT_ROUTES.items():
        line = next(row for row in table.splitlines() if f"`{model}`" in row)
        assert route.model in line, (model, line)


def test_sora_2_pro_goes_to_veo_on_vertex_by_the_default_table(tmp_path: Path) -> None:
    """The default route of `sora-2-pro`: Veo 3.1 on Vertex AI, 1080p, the video inline."""
    config = simulator.SimConfig(api_key=SIM_KEY, queue_s=(0.2, 0.2), render_s=(1.0, 1.0))
    with simulator.running(config) as sim:
        vertex = {
            "use_vertexai": True,
            "project": "front-test",
            "location": "us-central1",
            "access_token": SIM_KEY,
            "vertex_base_url": sim.veo_vertex_url,
        }
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "provider_config": {"veo": vertex},
            "api_token": KEY,
            "poll_min_seconds": 0.2,
            "poll_max_seconds": 1.0,
        }
        with (
            _serving(values) as origin,
            openai.OpenAI(base_url=origin + "/v1", api_key=KEY, max_retries=0) as client,
        ):
            video = client.videos.create_and_poll(
                prompt="[sim:queue=0,render=1] a pro render",
                model="sora-2-pro",
                seconds="8",
                size="1920x1080",
                poll_interval_ms=200,
            )
            assert video.status == "completed", video
            extra = video.model_extra["reelwatch"]  # type: ignore[index]
            assert (extra["provider"], extra["model"]) == ("veo", "veo-3.1-generate-001")
            data = client.videos.download_content(video.id).content
            stored = httpx.get(
                f"{origin}/api/generations/{extra['generation_id']}",
                headers={"authorization": f"Bearer {KEY}"},
            ).json()
        sha = hashlib.sha256(data).hexdigest()
        assert sha == stored["assets"]["video"]["sha256"]
        assert sha == sim.sim.expected_sha256(stored["video_id"])  # what the fake rendered
        assert stored["params"] == {
            "aspect_ratio": "16:9",
            "resolution": "1080p",
            "duration_seconds": 8,
        }
        assert sim.sim.stats()["requests"].get("veo.vertex_get", 0) == 0

"""The simulator's Replicate dialect, driven over real HTTP by the official `replicate` SDK."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime

import httpx
import pytest
import replicate
from pydantic.v1 import ValidationError
from replicate.exceptions import ReplicateError
from replicate.pagination import paginate
from replicate.webhook import InvalidSignatureError, Webhooks, WebhookSigningSecret
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reelwatch.simulator import RunningSimulator, SimConfig, running
from reelwatch.simulator.replicate import MODERATION_ERROR, version_id
from reelwatch.simulator.server import serve_in_thread
from tests.webhook_receiver import Received, Receiver

TOKEN = "r8_sim_test_token"
SECRET = "whsec_" + base64.b64encode(b"replicate simulator test secret!").decode()
CONFIG = SimConfig(
    api_key=TOKEN,
    queue_s=(2.0, 2.0),
    render_s=(10.0, 10.0),
    replicate_webhook_secret=SECRET,
    webhook_retry_base_s=0.01,
)
FAST = "[sim:queue=0,render=0.3]"


@pytest.fixture(scope="module")
def served() -> Iterator[RunningSimulator]:
    with running(CONFIG) as rs:
        yield rs


@pytest.fixture
def rs(served: RunningSimulator) -> RunningSimulator:
    """The simulator, reset to CONFIG: no jobs, faults or clock offset."""
    served.sim.reset(CONFIG)
    return served


MakeClient = Callable[..., replicate.Client]


@pytest.fixture
def make_client(rs: RunningSimulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeClient]:
    """Official clients pointed at the simulator, polling every 10 ms, closed afterwards.

    The SDK has no `close()`; each client gets its own transport, which the fixture closes.
    """
    monkeypatch.setenv("REPLICATE_POLL_INTERVAL", "0.01")
    transports: list[httpx.HTTPTransport] = []

    def make(api_token: str = TOKEN, **kwargs: object) -> replicate.Client:
        transport = httpx.HTTPTransport()
        transports.append(transport)
        return replicate.Client(
            api_token=api_token, base_url=rs.replicate_base_url, transport=transport, **kwargs
        )

    yield make
    for transport in transports:
        transport.close()


@pytest.fixture
def client(make_client: MakeClient) -> replicate.Client:
    """The official client pointed at the simulator."""
    return make_client()


@pytest.fixture(scope="module")
def served_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve_in_thread(receiver.app, name="replicate-webhook-receiver") as origin:
        receiver.url = origin + "/hook"
        yield receiver


@pytest.fixture
def receiver(served_receiver: Receiver, rs: RunningSimulator) -> Receiver:
    served_receiver.reset()
    return served_receiver


def _raw_get(rs: RunningSimulator, prediction_id: str) -> dict[str, object]:
    """The prediction as JSON, without the SDK's strict model."""
    with httpx.Client(trust_env=False) as raw:
        answer = raw.get(
            f"{rs.replicate_base_url}/v1/predictions/{prediction_id}",
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    answer.raise_for_status()
    body: dict[str, object] = answer.json()
    return body


def _download(url: str) -> httpx.Response:
    with httpx.Client(trust_env=False) as raw:
        return raw.get(url)


def test_create_answers_starting_even_for_an_instant_job(client: replicate.Client) -> None:
    """The create answer is `starting` even when the script starts (and ends) at once."""
    prediction = client.predictions.create(
        model="acme/video", input={"prompt": "[sim:queue=0,render=0]"}
    )
    assert (prediction.status, prediction.started_at, prediction.logs) == ("starting", None, "")
    assert client.predictions.get(prediction.id).status == "succeeded"


def test_create_by_model_answers_a_full_starting_prediction(
    client: replicate.Client, rs: RunningSimulator
) -> None:
    """POST /v1/models/{owner}/{name}/predictions: 201 with every field, status `starting`."""
    prediction = client.predictions.create(model="acme/video-1", input={"prompt": "a cat"})
    assert re.fullmatch(r"[a-z2-7]{26}", prediction.id)
    assert (prediction.status, prediction.model) == ("starting", "acme/video-1")
    assert prediction.version == version_id("acme/video-1")
    assert re.fullmatch(r"[0-9a-f]{64}", prediction.version)
    assert prediction.input == {"prompt": "a cat"}
    assert (prediction.logs, prediction.output, prediction.error) == ("", None, None)
    assert (prediction.metrics, prediction.started_at, prediction.completed_at) == ({}, None, None)
    assert prediction.created_at is not None
    assert datetime.fromisoformat(prediction.created_at).tzinfo is not None
    get_url = f"{rs.replicate_base_url}/v1/predictions/{prediction.id}"
    assert prediction.urls == {
        "get": get_url,
        "cancel": get_url + "/cancel",
        "web": f"https://replicate.com/p/{prediction.id}",
    }
    raw = _raw_get(rs, prediction.id)
    assert (raw["data_removed"], raw["source"]) == (False, "api")
    assert client.predictions.get(prediction.id).id == prediction.id
    assert rs.sim.stats()["requests"]["replicate.create"] == 1
    assert rs.sim.stats()["jobs_by_dialect"]["replicate"] == 1


def test_create_by_version(client: replicate.Client, rs: RunningSimulator) -> None:
    """POST /v1/predictions takes `owner/name:<id>`, `owner/name` or a known 64-hex id."""
    pinned = "b" * 64
    first = client.predictions.create(version=f"acme/video-2:{pinned}", input={"prompt": "x"})
    assert (first.model, first.version) == ("acme/video-2", pinned)
    official = client.predictions.create(version="acme/official", input={"prompt": "x"})
    assert (official.model, official.version) == ("acme/official", version_id("acme/official"))
    again = client.predictions.create(version=pinned, input={"prompt": "y"})
    assert (again.model, again.version) == ("acme/video-2", pinned)
    with pytest.raises(ReplicateError) as caught:
        client.predictions.create(version="c" * 64, input={"prompt": "z"})
    assert caught.value.status == 422
    assert caught.value.title == "Invalid version or not permitted"
    assert rs.sim.stats()["jobs"] == 3


def test_progress_logs_wait_and_download(client: replicate.Client, rs: RunningSimulator) -> None:
    """`processing` logs carry tqdm lines `Prediction.progress` parses; the output downloads."""
    prediction = client.predictions.create(
        model="acme/video", input={"prompt": "[sim:queue=1,render=100,bytes=70000]"}
    )
    rs.sim.clock.advance(1 + 99.5)
    running_ = client.predictions.get(prediction.id)
    assert running_.status == "processing"
    assert running_.started_at is not None
    assert running_.logs is not None
    assert running_.logs.startswith("Using seed: ")
    progress = running_.progress
    assert progress is not None
    assert 0 < progress.percentage < 1
    assert progress.total in (25, 50, 100)
    assert re.search(r"^\s*\d+%\|.+?\|\s*\d+/\d+ \[\d\d:\d\d<\d\d:\d\d, ", running_.logs, re.M)
    rs.sim.clock.advance(1)
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.progress is not None
    assert prediction.progress.percentage == 1.0
    assert prediction.metrics is not None
    assert prediction.metrics["predict_time"] == pytest.approx(100.0)
    assert isinstance(prediction.output, str)
    assert prediction.output.startswith(rs.origin + "/replicate-delivery/")
    assert prediction.output.endswith("/output.mp4")
    download = _download(prediction.output)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert len(download.content) == 70000
    assert hashlib.sha256(download.content).hexdigest() == rs.sim.expected_sha256(prediction.id)
    assert rs.sim.stats()["videos"][prediction.id]["content_downloads"] == 1


def test_run_holds_the_create_open_with_prefer_wait(
    client: replicate.Client, rs: RunningSimulator
) -> None:
    """`replicate.run()` sends `Prefer: wait`; the create answers once the prediction ended."""
    output = client.run("acme/video", input={"prompt": FAST})
    [prediction] = client.predictions.list().results
    assert prediction.status == "succeeded"
    assert output == prediction.output
    assert rs.sim.stats()["requests"].get("replicate.get", 0) == 0


def test_wait_polls_to_the_end_in_real_time(client: replicate.Client) -> None:
    """Without touching the clock, `wait()` sees starting -> processing -> succeeded."""
    prediction = client.predictions.create(model="acme/video", input={"prompt": FAST})
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.completed_at is not None


def test_cancel_while_queued_and_while_processing(
    client: replicate.Client, rs: RunningSimulator
) -> None:
    """Cancel answers the canceled Prediction; cancelling a finished one changes nothing."""
    queued = client.predictions.create(model="acme/video", input={"prompt": "[sim:queue=50]"})
    canceled = client.predictions.cancel(queued.id)
    assert (canceled.status, canceled.started_at, canceled.output) == ("canceled", None, None)
    assert canceled.completed_at is not None
    rendering = client.predictions.create(
        model="acme/video", input={"prompt": "[sim:queue=0,render=100]"}
    )
    rs.sim.clock.advance(60)
    rendering.cancel()
    assert rendering.status == "canceled"
    assert rendering.started_at is not None
    assert rendering.metrics is not None
    assert rendering.metrics["predict_time"] == pytest.approx(60, abs=1)
    rs.sim.clock.advance(100)
    assert client.predictions.get(rendering.id).status == "canceled"
    assert client.predictions.cancel(rendering.id).status == "canceled"


def test_list_pages_newest_first(client: replicate.Client, rs: RunningSimulator) -> None:
    """GET /v1/predictions pages by cursor, newest first, with next and previous links."""
    rs.sim.reset(replace(CONFIG, replicate_page_size=2))
    created = [
        client.predictions.create(model="acme/video", input={"prompt": f"n{i}"}).id
        for i in range(5)
    ]
    first = client.predictions.list()
    assert [p.id for p in first] == created[::-1][:2]
    assert first.previous is None
    assert first.next is not None
    assert first.next.startswith(rs.replicate_base_url + "/v1/predictions?cursor=")
    second = client.predictions.list(first.next)
    assert [p.id for p in second] == created[::-1][2:4]
    assert second.previous is not None
    assert [p.id for p in client.predictions.list(second.previous)] == created[::-1][:2]
    pages = list(paginate(client.predictions.list))
    assert [p.id for page in pages for p in page] == created[::-1]
    assert pages[-1].next is None


def test_failed_prediction_reports_its_error(client: replicate.Client) -> None:
    """`[sim:fail=...]` ends `failed` with an error string and no output."""
    prediction = client.predictions.create(
        model="acme/video", input={"prompt": FAST + "[sim:fail=out_of_memory]"}
    )
    prediction.wait()
    assert (prediction.status, prediction.output) == ("failed", None)
    assert prediction.error == "Video generation failed (out_of_memory)."


def test_moderation_is_the_nsfw_error(client: replicate.Client) -> None:
    """`fail=moderation_blocked` reads like Replicate's safety checker."""
    prediction = client.predictions.create(
        model="acme/video", input={"prompt": FAST + "[sim:fail=moderation_blocked]"}
    )
    prediction.wait()
    assert prediction.status == "failed"
    assert prediction.error == MODERATION_ERROR
    assert MODERATION_ERROR == (
        "NSFW content detected. Try running it again, or try a different prompt."
    )


def test_cancel_after_aborts_a_queued_prediction_which_sdk_1_0_7_cannot_parse(
    rs: RunningSimulator, make_client: MakeClient
) -> None:
    """A `Cancel-After` deadline reached in the queue ends `aborted` (not in the SDK's Literal)."""
    with_deadline = make_client(headers={"Cancel-After": "30s"})
    prediction = with_deadline.predictions.create(
        model="acme/video", input={"prompt": "[sim:queue=100]"}
    )
    raw = _raw_get(rs, prediction.id)
    assert raw["deadline"] is not None
    rs.sim.clock.advance(31)
    raw = _raw_get(rs, prediction.id)
    assert (raw["status"], raw["started_at"], raw["error"]) == ("aborted", None, None)
    assert raw["completed_at"] is not None
    with pytest.raises(ValidationError, match="status"):
        with_deadline.predictions.get(prediction.id)


def test_cancel_after_cancels_a_running_prediction(
    rs: RunningSimulator, make_client: MakeClient
) -> None:
    """A deadline reached while rendering ends `canceled` (billed, unlike `aborted`)."""
    with_deadline = make_client(headers={"Cancel-After": "1m"})
    prediction = with_deadline.predictions.create(
        model="acme/video", input={"prompt": "[sim:queue=0,render=100]"}
    )
    rs.sim.clock.advance(61)
    done = with_deadline.predictions.get(prediction.id)
    assert (done.status, done.output) == ("canceled", None)
    assert done.started_at is not None


def test_malformed_cancel_after_is_refused(rs: RunningSimulator, make_client: MakeClient) -> None:
    """A `Cancel-After` that is not a positive duration is a 400 problem."""
    bad = make_client(headers={"Cancel-After": "soon"})
    with pytest.raises(ReplicateError) as caught:
        bad.predictions.create(model="acme/video", input={"prompt": "x"})
    assert caught.value.status == 400
    assert rs.sim.stats()["jobs"] == 0


def test_get_retry_honours_retry_after(client: replicate.Client, rs: RunningSimulator) -> None:
    """A 429 with `Retry-After: 1` on a GET is retried by the SDK after one second."""
    prediction = client.predictions.create(model="acme/video", input={"prompt": "x"})
    rs.sim.inject("replicate.get", "rate_limit", retry_after=1, video_id=prediction.id)
    started = time.monotonic()
    assert client.predictions.get(prediction.id).id == prediction.id
    assert time.monotonic() - started >= 0.95
    assert rs.sim.stats()["requests"]["replicate.get"] == 2


def test_throttled_answer_shape(rs: RunningSimulator) -> None:
    """The 429 body is Replicate's `detail` sentence; `Retry-After` only when the fault has one."""
    rs.sim.inject("replicate.list", "rate_limit", retry_after=7)
    rs.sim.inject("replicate.list", "rate_limit")
    with httpx.Client(trust_env=False, headers={"authorization": f"Token {TOKEN}"}) as raw:
        first = raw.get(rs.replicate_base_url + "/v1/predictions")
        second = raw.get(rs.replicate_base_url + "/v1/predictions")
        third = raw.get(rs.replicate_base_url + "/v1/predictions")
    assert first.status_code == 429
    assert first.json() == {"detail": "Request was throttled. Your rate limit resets in ~7s."}
    assert first.headers["retry-after"] == "7"
    assert second.status_code == 429
    assert "retry-after" not in second.headers
    assert third.json()["results"] == []


def test_create_is_not_retried(client: replicate.Client, rs: RunningSimulator) -> None:
    """The SDK never retries a POST: a 429 on create surfaces at once, nothing was created."""
    rs.sim.inject("replicate.create", "rate_limit", retry_after=1)
    with pytest.raises(ReplicateError) as caught:
        client.predictions.create(model="acme/video", input={"prompt": "x"})
    assert caught.value.status == 429
    assert caught.value.detail == "Request was throttled. Your rate limit resets in ~1s."
    assert rs.sim.stats()["requests"]["replicate.create"] == 1
    assert rs.sim.stats()["jobs"] == 0


def test_server_error_is_a_problem_document(client: replicate.Client, rs: RunningSimulator) -> None:
    """A 5xx fault is RFC 7807 JSON; create_then_fail loses the answer but not the prediction."""
    rs.sim.inject("replicate.create", "create_then_fail")
    with pytest.raises(ReplicateError) as caught:
        client.predictions.create(model="acme/video", input={"prompt": "lost"})
    assert (caught.value.status, caught.value.title) == (500, "Internal Server Error")
    assert caught.value.type == "about:blank"
    [found] = client.predictions.list().results
    assert found.input == {"prompt": "lost"}


def test_data_is_removed_an_hour_after_completion(
    client: replicate.Client, rs: RunningSimulator
) -> None:
    """After a simulated hour input, output, logs and the file are gone (`data_removed`)."""
    prediction = client.predictions.create(model="acme/video", input={"prompt": FAST})
    prediction.wait()
    assert isinstance(prediction.output, str)
    assert _download(prediction.output).status_code == 200
    rs.sim.clock.advance(3599)
    assert client.predictions.get(prediction.id).output == prediction.output
    rs.sim.clock.advance(2)
    removed = _raw_get(rs, prediction.id)
    assert removed["data_removed"] is True
    assert (removed["output"], removed["input"], removed["logs"]) == (None, {}, "")
    assert removed["status"] == "succeeded"
    assert _download(prediction.output).status_code == 404


def test_wrong_token_is_unauthenticated(rs: RunningSimulator, make_client: MakeClient) -> None:
    """A wrong token is a 401 problem; `Token` works like `Bearer`."""
    wrong = make_client("nope")
    with pytest.raises(ReplicateError) as caught:
        wrong.predictions.list()
    assert caught.value.status == 401
    assert caught.value.detail == "You did not pass a valid authentication token"
    with httpx.Client(trust_env=False) as raw:
        missing = raw.get(rs.replicate_base_url + "/v1/predictions")
        token = raw.get(
            rs.replicate_base_url + "/v1/predictions", headers={"authorization": f"Token {TOKEN}"}
        )
    assert missing.status_code == 401
    assert missing.json()["title"] == "Unauthenticated"
    assert token.status_code == 200


def test_unknown_status_breaks_the_strict_model(
    client: replicate.Client, rs: RunningSimulator
) -> None:
    """`[sim:unknown_status=...]` is reported while rendering; SDK 1.0.7 refuses it."""
    prediction = client.predictions.create(
        model="acme/video", input={"prompt": "[sim:queue=1,render=100,unknown_status=booting]"}
    )
    assert prediction.status == "starting"
    rs.sim.clock.advance(2)
    assert _raw_get(rs, prediction.id)["status"] == "booting"
    with pytest.raises(ValidationError):
        client.predictions.get(prediction.id)


def test_webhooks_are_signed_and_filtered(
    client: replicate.Client, rs: RunningSimulator, receiver: Receiver
) -> None:
    """`start` and `completed` POST the Prediction, signed per Standard Webhooks."""
    prediction = client.predictions.create(
        model="acme/video",
        input={"prompt": FAST},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    deliveries = receiver.wait_for(2)
    secret = client.webhooks.default.secret()
    assert secret.key == SECRET
    statuses = []
    for delivery in deliveries:
        Webhooks.validate(
            headers=delivery.headers, body=delivery.body.decode(), secret=secret, tolerance=300
        )
        Webhook(SECRET).verify(delivery.body, delivery.headers)
        body = json.loads(delivery.body)
        assert body["id"] == prediction.id
        statuses.append(body["status"])
    assert sorted(statuses) == ["starting", "succeeded"]
    [completed] = [json.loads(d.body) for d in deliveries if b'"succeeded"' in d.body]
    assert completed["output"].endswith("/output.mp4")
    time.sleep(0.1)
    assert len(receiver.wait_for(2)) == 2
    attempts = rs.sim.stats()["webhooks"]
    assert {a["dialect"] for a in attempts} == {"replicate"}


def test_default_filter_sends_output_and_completed_with_retries(
    client: replicate.Client, rs: RunningSimulator, receiver: Receiver
) -> None:
    """By default `output` and `completed` are sent; a failed attempt is retried, same id."""
    receiver.plan(500)
    client.predictions.create(model="acme/video", input={"prompt": FAST}, webhook=receiver.url)
    deliveries = receiver.wait_for(3)
    by_id: dict[str, list[Received]] = {}
    for delivery in deliveries:
        by_id.setdefault(delivery.headers["webhook-id"], []).append(delivery)
    assert sorted(len(group) for group in by_id.values()) == [1, 2]
    for group in by_id.values():
        assert len({d.body for d in group}) == 1
        assert json.loads(group[0].body)["status"] == "succeeded"


def test_logs_webhooks_are_throttled(
    client: replicate.Client, rs: RunningSimulator, receiver: Receiver
) -> None:
    """`logs` events come at most every 500 ms of simulated time, with growing logs."""
    client.predictions.create(
        model="acme/video",
        input={"prompt": "[sim:queue=0,render=2]"},
        webhook=receiver.url,
        webhook_events_filter=["logs"],
    )
    rs.sim.clock.advance(3)
    receiver.wait_for(1)
    time.sleep(0.3)
    deliveries = receiver.wait_for(1)
    assert 1 <= len(deliveries) <= 4
    for delivery in deliveries:
        body = json.loads(delivery.body)
        assert body["status"] == "processing"
        assert body["logs"].startswith("Using seed: ")


def test_tampered_replicate_webhook_fails_validation(
    client: replicate.Client, rs: RunningSimulator, receiver: Receiver
) -> None:
    """A delivery signed with the wrong key is rejected by the SDK's validator."""
    rs.sim.tamper_next_webhook(bad_signature=True, dialect="replicate")
    client.predictions.create(
        model="acme/video",
        input={"prompt": FAST},
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    [delivery] = receiver.wait_for(1)
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(
            headers=delivery.headers,
            body=delivery.body.decode(),
            secret=WebhookSigningSecret(key=SECRET),
        )
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(delivery.body, delivery.headers)


def test_stale_replicate_webhook_needs_a_tolerance(
    client: replicate.Client, rs: RunningSimulator, receiver: Receiver
) -> None:
    """A delivery dated 10 minutes ago passes the SDK check only without a tolerance."""
    rs.sim.tamper_next_webhook(timestamp_offset_s=-600, dialect="replicate")
    client.predictions.create(
        model="acme/video",
        input={"prompt": FAST},
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    [delivery] = receiver.wait_for(1)
    secret = WebhookSigningSecret(key=SECRET)
    Webhooks.validate(headers=delivery.headers, body=delivery.body.decode(), secret=secret)
    with pytest.raises(ValueError, match="tolerance"):
        Webhooks.validate(
            headers=delivery.headers, body=delivery.body.decode(), secret=secret, tolerance=300
        )


def test_openai_routes_do_not_see_predictions(
    client: replicate.Client, rs: RunningSimulator
) -> None:
    """Jobs belong to their dialect: /v1/videos knows nothing of a prediction."""
    prediction = client.predictions.create(model="acme/video", input={"prompt": "x"})
    with httpx.Client(trust_env=False, headers={"authorization": f"Bearer {TOKEN}"}) as raw:
        assert raw.get(f"{rs.base_url}/videos/{prediction.id}").status_code == 404
        assert raw.get(f"{rs.base_url}/videos").json()["data"] == []


def test_in_process_create_for_the_dialect(client: replicate.Client, rs: RunningSimulator) -> None:
    """`sim.create(dialect="replicate", extra=...)` makes a prediction the SDK can read."""
    job = rs.sim.create(prompt=FAST, dialect="replicate", extra={"model": "acme/in-process"})
    prediction = client.predictions.get(job.id)
    assert (prediction.model, prediction.input) == ("acme/in-process", {"prompt": FAST})
    prediction.wait()
    assert isinstance(prediction.output, str)
    assert prediction.output.startswith(rs.origin)

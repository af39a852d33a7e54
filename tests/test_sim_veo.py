"""The simulator's Google Veo dialects, driven over real HTTP by the official `google-genai` SDK.

Vertex AI end to end through the SDK; on the Gemini API the create is a plain REST POST (SDK 3.x
refuses Gemini-mode video creates), then polls and the file download go through the SDK.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pydantic
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reelwatch.simulator import RunningSimulator, SimConfig, running, veo
from reelwatch.simulator.server import serve_in_thread
from tests.webhook_receiver import Receiver

KEY = "sim-veo-key"
CONFIG = SimConfig(
    api_key=KEY, queue_s=(2.0, 2.0), render_s=(10.0, 10.0), webhook_retry_base_s=0.01
)
FAST = "[sim:queue=0,render=2] "
GEMINI_MODEL = "veo-3.1-fast-generate-preview"
VERTEX_MODEL = "veo-3.1-fast-generate-001"
SECRET = "whsec_" + base64.b64encode(b"reelwatch veo static secret 0123").decode()


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads GOOGLE_* / GEMINI_* variables even when arguments are given."""
    for name in list(os.environ):
        if name.startswith(("GOOGLE_", "GEMINI_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def served() -> Iterator[RunningSimulator]:
    with running(CONFIG) as rs:
        yield rs


@pytest.fixture
def rs(served: RunningSimulator) -> RunningSimulator:
    """The simulator, reset to CONFIG: no jobs, faults, webhooks or clock offset."""
    served.sim.reset(CONFIG)
    return served


@pytest.fixture
def vertex(rs: RunningSimulator) -> Iterator[genai.Client]:
    """The SDK in Vertex mode, with a static token (never refreshed: it has no expiry)."""
    client = genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=Credentials(token=KEY),
        http_options=types.HttpOptions(base_url=rs.veo_vertex_url),
    )
    yield client
    client.close()


@pytest.fixture
def gemini(rs: RunningSimulator) -> Iterator[genai.Client]:
    """The SDK in Gemini API mode (3.x defaults to v1; Veo lives under v1beta)."""
    client = genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(base_url=rs.veo_gemini_url, api_version="v1beta"),
    )
    yield client
    client.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def served_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve_in_thread(receiver.app, name="veo-webhook-receiver") as origin:
        receiver.url = origin + "/hook"
        yield receiver


@pytest.fixture
def receiver(served_receiver: Receiver, rs: RunningSimulator) -> Receiver:
    served_receiver.reset()
    return served_receiver


def _gemini_create(
    http: httpx.Client,
    rs: RunningSimulator,
    prompt: str,
    model: str = GEMINI_MODEL,
    key: str | None = KEY,
    **body: Any,
) -> httpx.Response:
    """The Gemini API create as reelwatch sends it: a plain REST POST."""
    headers = {} if key is None else {"x-goog-api-key": key}
    return http.post(
        f"{rs.veo_gemini_url}v1beta/models/{model}:predictLongRunning",
        json={"instances": [{"prompt": prompt}], **body},
        headers=headers,
    )


def _vertex_create(
    vertex: genai.Client, prompt: str, **config: Any
) -> types.GenerateVideosOperation:
    return vertex.models.generate_videos(
        model=VERTEX_MODEL,
        source=types.GenerateVideosSource(prompt=prompt),
        config=types.GenerateVideosConfig(number_of_videos=1, **config),
    )


def _job_id(name: str) -> str:
    return name.rpartition("/operations/")[2]


def _until_done(
    client: genai.Client, rs: RunningSimulator, op: types.GenerateVideosOperation
) -> types.GenerateVideosOperation:
    """Poll through the SDK, one simulated second apart, until the operation is done."""
    for _ in range(60):
        op = client.operations.get(op)
        if op.done:
            return op
        rs.sim.clock.advance(1)
    raise AssertionError(f"{op.name} never finished")


def test_vertex_end_to_end_through_the_sdk(vertex: genai.Client, rs: RunningSimulator) -> None:
    """generate_videos -> operations.get (fetchPredictOperation) until done -> inline bytes."""
    op = _vertex_create(vertex, "[sim:queue=0,render=2] A lighthouse in a storm")
    assert op.name is not None
    prefix = f"projects/p/locations/us-central1/publishers/google/models/{VERTEX_MODEL}/operations/"
    assert op.name.startswith(prefix)
    job_id = _job_id(op.name)
    assert str(uuid.UUID(job_id)) == job_id
    assert not op.done
    assert not vertex.operations.get(op).done
    done = _until_done(vertex, rs, op)
    assert done.error is None
    assert done.response is not None and done.response.generated_videos
    video = done.response.generated_videos[0].video
    assert video is not None and video.video_bytes is not None
    assert video.mime_type == "video/mp4"
    assert hashlib.sha256(video.video_bytes).hexdigest() == rs.sim.expected_sha256(job_id)
    stats = rs.sim.stats()
    assert stats["requests"]["veo.create"] == 1
    assert stats["requests"]["veo.fetch"] >= 2
    assert "veo.vertex_get" not in stats["requests"]
    assert stats["videos"][job_id]["retrieves"] == stats["requests"]["veo.fetch"]
    job = rs.sim.job(job_id)
    assert job is not None
    assert job.extra["instances"][0]["prompt"].endswith("A lighthouse in a storm")
    assert job.extra["parameters"]["sampleCount"] == 1


def test_gemini_end_to_end_rest_create_sdk_poll_and_files_download(
    gemini: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """REST create -> SDK poll until done -> `files.download` through the 302 to signed bytes."""
    created = _gemini_create(
        http,
        rs,
        FAST + "A hummingbird",
        parameters={"durationSeconds": 8, "aspectRatio": "16:9", "sampleCount": 1},
    )
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    assert set(created.json()) == {"name"}
    job_id = _job_id(name)
    assert name == f"models/{GEMINI_MODEL}/operations/{job_id}"
    assert re.fullmatch(r"[a-z0-9]{12}", job_id)
    op = gemini.operations.get(types.GenerateVideosOperation(name=name))
    assert not op.done
    done = _until_done(gemini, rs, op)
    assert done.response is not None and done.response.generated_videos
    video = done.response.generated_videos[0].video
    assert video is not None and video.uri is not None
    assert video.uri == (
        f"https://generativelanguage.googleapis.com/v1beta/files/{job_id}:download?alt=media"
    )
    data = gemini.files.download(file=video)
    assert hashlib.sha256(data).hexdigest() == rs.sim.expected_sha256(job_id)
    assert video.video_bytes == data
    stats = rs.sim.stats()
    assert (stats["requests"]["veo.files"], stats["requests"]["veo.media"]) == (1, 1)
    assert stats["videos"][job_id]["content_downloads"] == 2
    # The redirect leaves the key behind: the signed URL needs none, and only works as signed.
    raw = http.get(
        f"{rs.veo_gemini_url}v1beta/files/{job_id}:download",
        params={"alt": "media"},
        headers={"x-goog-api-key": KEY},
    )
    assert raw.status_code == 302
    location = raw.headers["location"]
    assert location.startswith(f"{rs.origin}/gemini-dl/files/{job_id}?sig=")
    assert http.head(location).headers["content-length"] == str(CONFIG.video_bytes)
    assert http.get(location).status_code == 200
    forged = http.get(location.split("?")[0] + "?sig=0123")
    assert forged.status_code == 403
    assert forged.json()["error"]["status"] == "PERMISSION_DENIED"
    job = rs.sim.job(job_id)
    assert job is not None and job.seconds == "8" and job.size == "16:9 720p"


def test_the_sdk_refuses_a_gemini_mode_create(gemini: genai.Client, rs: RunningSimulator) -> None:
    """SDK 3.x raises before sending anything: the reason reelwatch creates over REST."""
    with pytest.raises(ValueError, match="only supported in Gemini Enterprise Agent Platform"):
        gemini.models.generate_videos(
            model=GEMINI_MODEL, source=types.GenerateVideosSource(prompt="x")
        )
    assert rs.sim.stats()["requests"] == {}


def test_safety_filtered_reads_as_empty_with_reasons_in_both_dialects(
    gemini: genai.Client, vertex: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """`fail=moderation_blocked`: done, no videos, a reason with a support code."""
    prompt = FAST + "[sim:fail=moderation_blocked] A crowd"
    name = _gemini_create(http, rs, prompt).json()["name"]
    from_gemini = _until_done(gemini, rs, types.GenerateVideosOperation(name=name))
    from_vertex = _until_done(vertex, rs, _vertex_create(vertex, prompt))
    for op in (from_gemini, from_vertex):
        assert op.error is None
        assert op.response is not None
        assert not op.response.generated_videos
        assert op.response.rai_media_filtered_count == 1
        assert op.response.rai_media_filtered_reasons == [veo.FILTERED_REASON]
        assert "Support codes:" in veo.FILTERED_REASON


@pytest.mark.parametrize(
    ("code", "rpc"),
    [("internal_error", 13), ("deadline_exceeded", 4), ("resource_exhausted", 8), ("oom", 13)],
)
def test_an_error_operation_carries_the_rpc_status(
    vertex: genai.Client, rs: RunningSimulator, code: str, rpc: int
) -> None:
    """Any other `fail=CODE` is a done operation with a google.rpc.Status `error`."""
    op = _until_done(vertex, rs, _vertex_create(vertex, FAST + f"[sim:fail={code}]"))
    assert op.response is None
    assert op.error == {"code": rpc, "message": f"Video generation failed ({code}).", "details": []}


def test_a_vertex_get_of_an_operation_is_404(
    vertex: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """Real Vertex answers a plain GET of a Veo operation 404: polls are fetchPredictOperation."""
    op = _vertex_create(vertex, FAST + "x")
    assert op.name is not None
    answer = http.get(
        f"{rs.veo_vertex_url}v1beta1/{op.name}", headers={"authorization": f"Bearer {KEY}"}
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["status"] == "NOT_FOUND"
    assert rs.sim.stats()["requests"]["veo.vertex_get"] == 1
    unknown = http.get(f"{rs.veo_vertex_url}v1beta1/nothing/here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == 404


def test_429_is_resource_exhausted_with_retry_info(
    vertex: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """A rate limit answers RetryInfo (no Retry-After header); the SDK does not retry it."""
    rs.sim.inject("veo.create", "rate_limit", retry_after=30)
    with pytest.raises(errors.ClientError) as caught:
        _vertex_create(vertex, "x")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert rs.sim.stats()["jobs"] == 0
    rs.sim.inject("veo.get", "rate_limit", retry_after_ms=1500)
    raw = http.get(
        f"{rs.veo_gemini_url}v1beta/models/{GEMINI_MODEL}/operations/abc",
        headers={"x-goog-api-key": KEY},
    )
    assert raw.status_code == 429
    assert "retry-after" not in raw.headers
    assert raw.json() == {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
            ],
        }
    }
    rs.sim.inject("veo.create", "server_error")
    with pytest.raises(errors.ServerError) as unavailable:
        _vertex_create(vertex, "x")
    assert (unavailable.value.code, unavailable.value.status) == (503, "UNAVAILABLE")


def test_credentials_are_checked_as_google_does(
    vertex: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """Gemini: no key 403, a wrong key 400 INVALID_ARGUMENT; Vertex: a wrong token 401."""
    missing = _gemini_create(http, rs, "x", key=None)
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    wrong = _gemini_create(http, rs, "x", key="nope")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["message"] == "API key not valid. Please pass a valid API key."
    by_query = http.post(
        f"{rs.veo_gemini_url}v1beta/models/{GEMINI_MODEL}:predictLongRunning",
        params={"key": KEY},
        json={"instances": [{"prompt": "x"}]},
    )
    assert by_query.status_code == 200
    other = genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=Credentials(token="stale"),
        http_options=types.HttpOptions(base_url=rs.veo_vertex_url),
    )
    with pytest.raises(errors.ClientError) as caught:
        _vertex_create(other, "x")
    other.close()
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")
    assert rs.sim.stats()["jobs"] == 1


def test_bad_requests_answer_googles_envelope(rs: RunningSimulator, http: httpx.Client) -> None:
    """Unknown model 404, malformed directive 400, Vertex-only fields refused on Gemini."""
    not_veo = _gemini_create(http, rs, "x", model="imagen-4")
    assert (not_veo.status_code, not_veo.json()["error"]["status"]) == (404, "NOT_FOUND")
    directive = _gemini_create(http, rs, "[sim:bogus=1] x")
    assert (directive.status_code, directive.json()["error"]["status"]) == (
        400,
        "INVALID_ARGUMENT",
    )
    gcs = _gemini_create(http, rs, "x", parameters={"storageUri": "gs://b/p"})
    assert gcs.status_code == 400
    as_string = _gemini_create(http, rs, "x", parameters={"durationSeconds": "6"})
    assert as_string.status_code == 200
    job = rs.sim.job(_job_id(as_string.json()["name"]))
    assert job is not None and job.seconds == "6"
    unknown = http.get(rs.veo_gemini_url + "v1beta/nothing", headers={"x-goog-api-key": KEY})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["status"] == "NOT_FOUND"


def test_gemini_files_expire_after_the_retention(
    gemini: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """The operation and its file answer 404 once `veo_retention_s` has passed after the end."""
    rs.sim.reset(replace(CONFIG, veo_retention_s=172_800))
    name = _gemini_create(http, rs, FAST + "x").json()["name"]
    op = _until_done(gemini, rs, types.GenerateVideosOperation(name=name))
    assert op.response is not None and op.response.generated_videos
    video = op.response.generated_videos[0].video
    assert video is not None
    rs.sim.clock.advance(172_800 - 5)
    assert gemini.files.download(file=video)
    rs.sim.clock.advance(5)
    with pytest.raises(errors.ClientError) as gone:
        gemini.files.download(file=video)
    assert gone.value.code == 404
    with pytest.raises(errors.ClientError) as op_gone:
        gemini.operations.get(op)
    assert op_gone.value.code == 404


def test_gcs_result_is_fetched_with_the_token(
    vertex: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """With `output_gcs_uri`, the result names a gs:// object served by the JSON API."""
    op = _vertex_create(vertex, FAST + "x", output_gcs_uri="gs://my-bucket/runs/a")
    done = _until_done(vertex, rs, op)
    assert done.name is not None
    job_id = _job_id(done.name)
    assert done.response is not None and done.response.generated_videos
    video = done.response.generated_videos[0].video
    assert video is not None and video.video_bytes is None
    assert video.uri == f"gs://my-bucket/runs/a/{job_id}/sample_0.mp4"
    url = veo.gcs_media_url(rs.veo_storage_url, video.uri)
    assert "%2F" in url
    assert http.get(url).status_code == 401
    fetched = http.get(url, headers={"authorization": f"Bearer {KEY}"})
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == rs.sim.expected_sha256(job_id)
    elsewhere = http.get(
        veo.gcs_media_url(rs.veo_storage_url, f"gs://other/runs/a/{job_id}/sample_0.mp4"),
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert elsewhere.status_code == 404
    assert rs.sim.stats()["videos"][job_id]["content_downloads"] == 3  # every request counts


def test_static_webhook_verifies_with_standardwebhooks(
    rs: RunningSimulator, http: httpx.Client, receiver: Receiver
) -> None:
    """Configured (or registered) static webhooks are Standard Webhooks, for any outcome."""
    rs.sim.reset(replace(CONFIG, veo_webhook_url=receiver.url, veo_webhook_secret=SECRET))
    name = _gemini_create(http, rs, FAST + "x").json()["name"]
    rs.sim.clock.advance(2)
    [delivery] = receiver.wait_for(1)
    event = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert event["type"] == "video.generated"
    assert event["version"] == "v1"
    assert event["data"] == {"id": name}
    registered = http.post(
        rs.veo_gemini_url + "v1beta/webhooks",
        json={"uri": receiver.url, "subscribed_events": ["video.generated"]},
        headers={"x-goog-api-key": KEY},
    )
    assert registered.status_code == 200
    secret = registered.json()["new_signing_secret"]
    assert secret.startswith("whsec_")
    assert registered.json()["state"] == "enabled"
    failed = _gemini_create(http, rs, FAST + "[sim:fail=internal_error] x").json()["name"]
    rs.sim.clock.advance(2)
    second = receiver.wait_for(2)[1]
    assert Webhook(secret).verify(second.body, second.headers)["data"] == {"id": failed}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(second.body, second.headers)
    rs.sim.tamper_next_webhook(bad_signature=True, dialect="veo-gemini")
    _gemini_create(http, rs, FAST + "x")
    rs.sim.clock.advance(2)
    third = receiver.wait_for(3)[2]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(third.body, third.headers)


def test_vertex_sends_no_webhooks(
    vertex: genai.Client, rs: RunningSimulator, receiver: Receiver
) -> None:
    rs.sim.reset(replace(CONFIG, veo_webhook_url=receiver.url, veo_webhook_secret=SECRET))
    _until_done(vertex, rs, _vertex_create(vertex, FAST + "x"))
    assert rs.sim.stats()["webhooks"] == []
    assert receiver.received() == []


def _verify_jwt(token: str, jwks: dict[str, Any], audience: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    [entry] = [key for key in jwks["keys"] if key["kid"] == kid]
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(entry).key,
        algorithms=["RS256"],
        audience=audience,
        issuer="https://generativelanguage.googleapis.com",
    )
    return claims


def test_dynamic_webhook_is_an_rs256_jwt_the_jwks_verifies(
    rs: RunningSimulator, http: httpx.Client, receiver: Receiver
) -> None:
    """`webhookConfig.uris` get a JWT in `webhook-signature`, checked against the JWKS."""
    rs.sim.reset(
        replace(CONFIG, veo_webhook_url=receiver.url + "?static", veo_webhook_secret=SECRET)
    )
    config = {"uris": [receiver.url], "userMetadata": {"source": "reelwatch"}}
    name = _gemini_create(http, rs, FAST + "x", webhookConfig=config).json()["name"]
    rs.sim.clock.advance(2)
    [delivery] = receiver.wait_for(1)
    cached = http.get(rs.veo_jwks_url).json()
    assert rs.sim.stats()["requests"]["veo.jwks"] == 1
    [key] = cached["keys"]
    assert (key["kty"], key["alg"]) == ("RSA", "RS256")
    header = jwt.get_unverified_header(delivery.headers["webhook-signature"])
    assert header == {"alg": "RS256", "kid": key["kid"], "typ": "JWT"}
    claims = _verify_jwt(delivery.headers["webhook-signature"], cached, receiver.url)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["webhook_id"] == delivery.headers["webhook-id"]
    assert (claims["type"], claims["data"]) == ("video.generated", {"id": name})
    assert json.loads(delivery.body)["data"] == claims["data"]
    with pytest.raises(jwt.InvalidAudienceError):
        _verify_jwt(delivery.headers["webhook-signature"], cached, receiver.url + "/other")
    # Rotated: a new kid signs, the cached JWKS no longer knows it, a fresh one does.
    new_kid = http.post(rs.origin + "/_sim/veo/rotate-key").json()["kid"]
    assert new_kid != key["kid"]
    _gemini_create(http, rs, FAST + "x", webhookConfig=config)
    rs.sim.clock.advance(2)
    rotated = receiver.wait_for(2)[1]
    token = rotated.headers["webhook-signature"]
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert new_kid not in {entry["kid"] for entry in cached["keys"]}  # a stale JWKS cannot tell
    fresh = http.get(rs.veo_jwks_url).json()
    assert [entry["kid"] for entry in fresh["keys"]] == [new_kid, key["kid"]]
    assert _verify_jwt(token, fresh, receiver.url)["type"] == "video.generated"
    # Tampered: signed under the right kid by a key nobody published.
    rs.sim.tamper_next_webhook(bad_signature=True, dialect="veo-gemini")
    _gemini_create(http, rs, FAST + "x", webhookConfig=config)
    rs.sim.clock.advance(2)
    forged = receiver.wait_for(3)[2]
    with pytest.raises(jwt.InvalidSignatureError):
        _verify_jwt(forged.headers["webhook-signature"], fresh, receiver.url)
    assert len(receiver.received()) == 3  # dynamic URIs replace the static webhook


def test_unknown_status_makes_the_sdk_raise_validation_error(
    vertex: genai.Client, gemini: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """`[sim:unknown_status=W]` answers `"done": "W"` while rendering, which pydantic refuses."""
    prompt = "[sim:queue=0,render=100,unknown_status=paused] x"
    op = _vertex_create(vertex, prompt)
    name = _gemini_create(http, rs, prompt).json()["name"]
    rs.sim.clock.advance(1)
    with pytest.raises(pydantic.ValidationError) as caught:
        vertex.operations.get(op)
    assert caught.value.errors()[0]["input"] == "paused"
    with pytest.raises(pydantic.ValidationError):
        gemini.operations.get(types.GenerateVideosOperation(name=name))


def test_stuck_and_vanished_operations(
    gemini: genai.Client, rs: RunningSimulator, http: httpx.Client
) -> None:
    """`stuck` never finishes; `vanish_after` turns into 404."""
    stuck = _gemini_create(http, rs, "[sim:stuck] x").json()["name"]
    gone = _gemini_create(http, rs, "[sim:vanish_after=5] x").json()["name"]
    rs.sim.clock.advance(3600)
    assert not gemini.operations.get(types.GenerateVideosOperation(name=stuck)).done
    with pytest.raises(errors.ClientError) as caught:
        gemini.operations.get(types.GenerateVideosOperation(name=gone))
    assert caught.value.code == 404


def test_faults_by_video_id_on_fetch_hit_only_that_job(
    vertex: genai.Client, rs: RunningSimulator
) -> None:
    """The Vertex poll names its job in the body; a fault aimed at it spares the others."""
    first = _vertex_create(vertex, FAST + "one")
    second = _vertex_create(vertex, FAST + "two")
    assert first.name is not None
    rs.sim.inject("veo.fetch", "server_error", count=-1, video_id=_job_id(first.name))
    assert vertex.operations.get(second).done is False
    with pytest.raises(errors.ServerError):
        vertex.operations.get(first)
    rs.sim.clock.advance(3)
    assert vertex.operations.get(second).done is True
    stats = rs.sim.stats()
    assert stats["videos"][_job_id(first.name)]["retrieves"] == 1


def test_in_process_jobs_for_both_dialects(rs: RunningSimulator) -> None:
    """`sim.create(dialect=...)` fills in the defaults; `find` and `expected_sha256` work."""
    gemini_job = rs.sim.create(prompt=FAST + "x", dialect="veo-gemini")
    vertex_job = rs.sim.create(prompt=FAST + "x", dialect="veo-vertex")
    assert veo.operation_name(gemini_job) == f"models/{GEMINI_MODEL}/operations/{gemini_job.id}"
    assert veo.operation_name(vertex_job).startswith(
        f"projects/reelwatch-sim/locations/us-central1/publishers/google/models/{VERTEX_MODEL}/"
    )
    now = rs.sim.clock.now()
    assert rs.sim.find(gemini_job.id, now, dialect="veo-gemini") is not None
    assert rs.sim.find(gemini_job.id, now, dialect="veo-vertex") is None
    assert len(rs.sim.expected_sha256(vertex_job.id)) == 64
    assert rs.sim.stats()["jobs_by_dialect"] == {
        "openai": 0,
        "replicate": 0,
        "fal": 0,
        "veo-gemini": 1,
        "veo-vertex": 1,
    }

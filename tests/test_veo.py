"""Veo's catalogue, configuration and webhook checks (no provider calls; the contract suite in
test_contract.py drives both ways in over HTTP).

The per-request webhook JWTs are signed here by hand with `cryptography` (not PyJWT, which the
verifier uses) and their keys served over real HTTP, so a verifier that only agreed with
itself would fail."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reelwatch import exceptions
from reelwatch.providers import base, veo_catalogue
from reelwatch.providers.veo import retry_delay_s
from reelwatch.simulator.server import serve_in_thread
from tests.conftest import make_settings

CATALOGUE = veo_catalogue.CATALOGUE
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
AUDIENCE = "https://reelwatch.example/api/webhooks/veo"


# --- the catalogue --------------------------------------------------------------------------


def test_parameters_are_checked_by_the_sdks_names() -> None:
    inputs = CATALOGUE.validate(
        "veo-3.1-fast-generate-001",
        {"aspect_ratio": "9:16", "seconds": "6", "resolution": "1080p", "generate_audio": False},
    )
    assert inputs.params == {
        "aspect_ratio": "9:16",
        "duration_seconds": 6,
        "resolution": "1080p",
        "generate_audio": False,
    }
    assert (inputs.seconds, inputs.size) == (6, "9:16 1080p")
    assert CATALOGUE.validate("veo-3.1-generate-preview", {}).size == "16:9 720p"


@pytest.mark.parametrize(
    ("model", "params", "words"),
    [
        ("sora-2", {}, "model"),
        ("veo-3.1-fast-generate-001", {"duration": 8}, "'duration' is not a parameter"),
        ("veo-3.1-fast-generate-001", {"duration_seconds": 5}, "one of 4, 6, 8"),
        ("veo-3.1-fast-generate-001", {"aspect_ratio": "1:1"}, "aspect_ratio"),
        ("veo-3.1-fast-generate-001", {"number_of_videos": 2}, "number_of_videos must be 1"),
        ("veo-3.1-fast-generate-001", {"storage_uri": "s3://b/x"}, "gs://"),
        ("veo-3.1-fast-generate-001", {"generate_audio": "no"}, "true or false"),
        ("veo-3.1-fast-generate-001", {"seconds": 8, "duration_seconds": 8}, "not both"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    model: str, params: dict[str, Any], words: str
) -> None:
    with pytest.raises(exceptions.InvalidInput, match=words):
        CATALOGUE.validate(model, params)


def test_prices_are_per_second_with_and_without_audio() -> None:
    model = "veo-3.1-fast-generate-001"
    assert CATALOGUE.estimate_cost(model, {"duration_seconds": 8}, {}) == 1.2
    assert CATALOGUE.estimate_cost(model, {"duration_seconds": 8, "generate_audio": False}, {}) == (
        0.8
    )
    assert CATALOGUE.estimate_cost(model, {}, {model: 0.5}) == 4.0  # 8 s by default
    assert CATALOGUE.estimate_cost(model, {"generate_audio": False}, {f"{model}:silent": 0.01}) == (
        0.08
    )
    assert CATALOGUE.estimate_cost("veo-9-unlisted", {}, {}) is None


def test_a_job_is_named_by_its_full_operation_name() -> None:
    gemini = CATALOGUE.ref("models/veo-3.1-generate-preview/operations/vz341u0pmdlc")
    assert gemini.video_id == "vz341u0pmdlc"
    vertex_name = (
        "projects/p-1/locations/us-central1/publishers/google/models/veo-3.1-generate-001/"
        "operations/0b4c6f5e-7a3d-4b8e-9d1f-2a6c8e0f1b3d"
    )
    assert CATALOGUE.ref(vertex_name).remote == {"operation": vertex_name}
    for bad in ("vz341u0pmdlc", "models/sora-2/operations/x", "models/veo-3/operations/a b"):
        with pytest.raises(exceptions.InvalidInput, match="video_id"):
            CATALOGUE.ref(bad)


def test_rpc_retry_delay_is_read_from_the_error_details() -> None:
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "x"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"},
            ],
        }
    }
    assert retry_delay_s(body) == 1.5
    assert (
        retry_delay_s({"error": {"details": [{"@type": "RetryInfo", "retryDelay": "x"}]}}) is None
    )
    assert retry_delay_s("not json") is None


# --- configuration --------------------------------------------------------------------------


def test_the_dialect_and_credentials_come_from_the_sdks_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k-1")
    gemini = veo_catalogue.Config()
    assert (gemini.use_vertexai, gemini.api_key, gemini.missing) == (False, "k-1", None)
    assert gemini.base_url == "https://generativelanguage.googleapis.com/"
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.delenv("GEMINI_API_KEY")
    assert veo_catalogue.Config().missing == "GOOGLE_CLOUD_PROJECT"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "films")
    vertex = veo_catalogue.Config()
    assert vertex.missing is None
    assert vertex.base_url == (
        "https://us-central1-aiplatform.googleapis.com/projects/films/locations/us-central1/"
    )
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "global")
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", "http://127.0.0.1:9/vertex")
    assert veo_catalogue.Config().base_url == (
        "http://127.0.0.1:9/vertex/projects/films/locations/global/"
    )
    assert veo_catalogue.Config().webhooks_enabled is False  # Pub/Sub only on Vertex


# --- webhooks -------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class _Keys:
    """An RSA key pair and its JWKS entry, made with `cryptography` alone."""

    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.private.public_key().public_numbers()
        self.n = _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        self.e = _b64url(numbers.e.to_bytes(3, "big"))
        canonical = json.dumps({"e": self.e, "kty": "RSA", "n": self.n}, separators=(",", ":"))
        self.kid = _b64url(hashlib.sha256(canonical.encode()).digest())

    def jwk(self) -> dict[str, str]:
        return {"kty": "RSA", "n": self.n, "e": self.e, "kid": self.kid, "alg": "RS256"}

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)


@pytest.fixture(scope="module")
def google_keys() -> _Keys:
    return _Keys()


@pytest.fixture
def jwks_server(google_keys: _Keys) -> Iterator[tuple[str, list[int]]]:
    fetches: list[int] = []

    async def jwks(request: Request) -> JSONResponse:
        fetches.append(1)
        return JSONResponse({"keys": [google_keys.jwk()]})

    app = Starlette(routes=[Route("/jwks.json", jwks), Route("/_sim/health", jwks)])
    with serve_in_thread(app) as origin:
        fetches.clear()
        yield origin + "/jwks.json", fetches


def _jwt_delivery(
    keys: _Keys,
    *,
    at: datetime = NOW,
    audience: str = AUDIENCE,
    kid: str | None = None,
    body_id: str | None = None,
    issued: datetime | None = None,
) -> tuple[dict[str, str], bytes]:
    name = "models/veo-3.1-fast-generate-preview/operations/vz341u0pmdlc"
    event = {"type": "video.generated", "data": {"id": name}}
    stamp = int((issued or at).timestamp())
    claims = {
        "iss": "https://generativelanguage.googleapis.com",
        "aud": audience,
        "iat": stamp,
        "exp": stamp + 300,
        **event,
    }
    body = {**event, "version": "v1", "data": {"id": body_id or name}}
    headers = {
        "webhook-id": "wh_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": keys.sign(claims, kid),
    }
    return headers, json.dumps(body).encode()


async def test_a_per_request_webhook_is_a_jwt_checked_against_the_published_keys(
    google_keys: _Keys, jwks_server: tuple[str, list[int]]
) -> None:
    url, fetches = jwks_server
    verifier = veo_catalogue.Verifier(None, AUDIENCE, url, timeout_s=5)
    try:
        event = await verifier.verify(*_jwt_delivery(google_keys), NOW)
        assert (event.video_id, event.terminal) == ("vz341u0pmdlc", True)
        refused = [
            _jwt_delivery(google_keys, audience="https://elsewhere.example/hook"),
            _jwt_delivery(google_keys, body_id="models/veo-3.1/operations/someoneelse"),
            _jwt_delivery(google_keys, issued=NOW - timedelta(hours=1)),  # expired
            _jwt_delivery(_Keys(), kid=google_keys.kid),  # the right kid, another key
            _jwt_delivery(google_keys, at=NOW - timedelta(minutes=10)),  # stale timestamp
        ]
        for headers, body in refused:
            with pytest.raises(base.WebhookRejected):
                await verifier.verify(headers, body, NOW)
        assert len(fetches) == 1  # cached; an unknown kid may fetch once more, no more
        for _ in range(5):
            with pytest.raises(base.WebhookRejected, match="kid"):
                await verifier.verify(*_jwt_delivery(google_keys, kid="unknown"), NOW)
        assert len(fetches) <= 2
    finally:
        await verifier.aclose()


async def test_a_jwt_is_refused_when_per_request_webhooks_are_off(google_keys: _Keys) -> None:
    secret = "whsec_" + base64.b64encode(b"veo-static-secret-000000000000").decode()
    verifier = veo_catalogue.Verifier(secret, None, "http://127.0.0.1:9/jwks", timeout_s=5)
    with pytest.raises(base.WebhookRejected, match="per-request"):
        await verifier.verify(*_jwt_delivery(google_keys), NOW)


def test_verifier_is_off_on_vertex_and_without_a_secret(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///:memory:", "http://127.0.0.1:9/v1")
    assert veo_catalogue.verifier(veo_catalogue.Config(api_key="k"), settings) is None
    on_vertex = veo_catalogue.Config(use_vertexai=True, project="p", webhook_secret="s")
    assert veo_catalogue.verifier(on_vertex, settings) is None
    assert veo_catalogue.verifier(veo_catalogue.Config(webhook_secret="s"), settings) is not None

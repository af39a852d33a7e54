"""A fake of Google Veo in its two dialects, the Gemini API and Vertex AI, served by the simulator.

Mounts on the simulator's origin (each standing in for a Google host):
- `/gemini/` is https://generativelanguage.googleapis.com/ (what `genai.Client(api_key=...,
  http_options=HttpOptions(base_url=origin + "/gemini/", api_version="v1beta"))` takes):
  `POST /gemini/v1beta/models/{model}:predictLongRunning` (create; REST, SDK 3.x refuses it),
  `GET /gemini/v1beta/models/{model}/operations/{id}` (poll),
  `GET /gemini/v1beta/files/{id}:download?alt=media` (302 to the signed download below),
  `POST /gemini/v1beta/webhooks` (register a static webhook) and the webhook keys at
  `/gemini/.well-known/jwks.json`. Auth: `x-goog-api-key` (or `?key=`).
- `/gemini-dl/files/{id}?sig=...` is the signed download host the file redirects to (no key).
- `/vertex/` is https://{location}-aiplatform.googleapis.com/ (what `genai.Client(vertexai=True,
  project=..., location=..., credentials=..., http_options=HttpOptions(base_url=origin +
  "/vertex/"))` takes): `POST /vertex/v1beta1/projects/{p}/locations/{l}/publishers/google/
  models/{model}:predictLongRunning` (create) and `...:fetchPredictOperation` with
  `{"operationName"}` (poll); a plain `GET .../operations/{id}` answers 404, as Vertex does.
  Auth: `Authorization: Bearer <token>`.
- `/gcs/` is https://storage.googleapis.com/: `GET /gcs/storage/v1/b/{bucket}/o/{object}?alt=media`
  serves a Vertex result written to `parameters.storageUri` (same Bearer token).

Operations follow the SDK's `GenerateVideosOperation.from_api_response`: `{"name"}` while
running (Vertex adds `"done": false`; no progress of any kind), then `done: true` with a
`response` (Gemini: `generateVideoResponse.generatedSamples[].video.uri`, a file URI on Google's
host; Vertex: `videos[]` inline as base64, or as `gcsUri`), with no samples and
`raiMediaFilteredReasons` when the safety filters took the video, or with a `google.rpc.Status`
`error`. Job ids are the operation name's last segment: 12 lowercase letters and digits on the
Gemini API, a UUID on Vertex. A finished operation, its file and its GCS object answer 404 once the
job's retention (`SimConfig.veo_retention_s`, else `expires_after_s`) has passed. Errors use
Google's envelope `{"error": {"code", "message", "status"[, "details"]}}`.

Webhooks (Gemini API only; Vertex uses Pub/Sub): one `video.generated` event per job when it
ends, whatever the outcome. A create with `webhookConfig.uris` is announced to those URIs only,
signed as an RS256 JWT in `webhook-signature` (keys in the JWKS); otherwise to the static webhook
(the last one registered, else `SimConfig.veo_webhook_url`), signed per Standard Webhooks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from reelwatch.simulator import content, faults, jobs, surface, webhooks
from reelwatch.simulator.config import SimConfig
from reelwatch.simulator.surface import Headers, HttpError

if TYPE_CHECKING:
    from reelwatch.simulator.state import Simulator

GEMINI = "veo-gemini"
VERTEX = "veo-vertex"
DIALECTS = (GEMINI, VERTEX)
GEMINI_PREFIX = "/gemini"
"""The Gemini API's root on the simulator's origin (`HttpOptions.base_url`: origin + "/gemini/")."""
GEMINI_API = GEMINI_PREFIX + "/v1beta"
VERTEX_PREFIX = "/vertex"
"""Vertex AI's root on the simulator's origin (`HttpOptions.base_url` is origin + "/vertex/")."""
VERTEX_API = VERTEX_PREFIX + "/v1beta1"
MEDIA_PREFIX = "/gemini-dl"
"""Where a Gemini file download redirects to (signed URL, no key), standing in for Google's
download host."""
GCS_PREFIX = "/gcs"
"""Cloud Storage's JSON API, standing in for https://storage.googleapis.com."""
JWKS_PATH = GEMINI_PREFIX + "/.well-known/jwks.json"
GEMINI_HOST = "https://generativelanguage.googleapis.com"
"""The host file URIs name: the SDK only takes a file id out of an https URI, and both the SDK
and reelwatch rebuild the download URL from their own base URL, so nobody fetches this host."""
DEFAULT_MODELS = {GEMINI: "veo-3.1-fast-generate-preview", VERTEX: "veo-3.1-fast-generate-001"}
"""The model of a job created in-process without one."""
DEFAULT_PROJECT = "reelwatch-sim"
DEFAULT_LOCATION = "us-central1"
DEFAULT_SECONDS = "8"
MODEL_ID = re.compile(r"veo-[a-z0-9.-]+")
"""Any model id of this shape is accepted, in both dialects."""
SAMPLE_FILE = "sample_0.mp4"
"""The object name of a video written to `storageUri` (`{prefix}/{operation id}/sample_0.mp4`)."""
GEMINI_RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
)
VERTEX_RESPONSE_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
FILTERED_REASON = (
    "Veo could not generate videos because the input prompt contains content that goes against "
    "our usage guidelines. Try rephrasing the prompt. Support codes: 58061214"
)
"""The `raiMediaFilteredReasons` entry of a job ended with `[sim:fail=moderation_blocked]`."""
RPC_CODES = {"invalid_argument": 3, "deadline_exceeded": 4, "resource_exhausted": 8}
"""`[sim:fail=CODE]` -> the gRPC code of the operation's `error` (anything else: 13 INTERNAL)."""
INTERNAL = 13
CANCELLED = 1
WEBHOOK_EVENT = "video.generated"
JWT_ISSUER = GEMINI_HOST
JWT_LIFETIME_S = 300
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""The `status` word Google's envelope pairs with each HTTP code."""
_SERVER_MESSAGES = {
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "Deadline expired before operation could complete.",
}
NOT_FOUND_MESSAGE = "Requested entity was not found."


# -- the dynamic webhook key ring ---------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _uint(value: int) -> str:
    """A JWK big-endian unsigned integer (`n`, `e`)."""
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def encode_jwt(key: rsa.RSAPrivateKey, kid: str, claims: Mapping[str, Any]) -> str:
    """An RS256 JWT, signed by hand (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3)."""
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


class RsaKeyRing:
    """The RSA keys dynamic Gemini webhooks are signed with: the current one, and the previous.

    Built from a PEM (`SimConfig.veo_webhook_key_pem`) or a random 2048-bit key, made when first
    needed (generating one takes a noticeable fraction of a second, and most simulators never
    sign a JWT). `rotate()` switches to a fresh key with a new `kid`; the JWKS lists the current
    key first, then the previous one.
    """

    def __init__(self, pem: str | None = None) -> None:
        self._lock = threading.Lock()
        self._pem = pem
        self._keys: list[rsa.RSAPrivateKey] = []

    def _current(self) -> list[rsa.RSAPrivateKey]:
        """The keys, the first one made if need be (call under the lock)."""
        if not self._keys:
            self._keys = [self._load(self._pem) if self._pem else new_rsa_key()]
        return self._keys

    @staticmethod
    def _load(pem: str) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("veo_webhook_key_pem must be an RSA private key")
        return key

    @staticmethod
    def jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
        """The public half as a JWK, with its RFC 7638 thumbprint as `kid`."""
        numbers = key.public_key().public_numbers()
        n, e = _uint(numbers.n), _uint(numbers.e)
        canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
        kid = _b64url(hashlib.sha256(canonical.encode()).digest())
        return {"kty": "RSA", "n": n, "e": e, "kid": kid, "use": "sig", "alg": "RS256"}

    @property
    def kid(self) -> str:
        """The `kid` of the key signing now."""
        with self._lock:
            return self.jwk(self._current()[0])["kid"]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """`{"keys": [...]}`: the current public key, then the previous one (if rotated)."""
        with self._lock:
            return {"keys": [self.jwk(key) for key in self._current()]}

    def sign_jwt(self, claims: Mapping[str, Any]) -> str:
        """`claims` as an RS256 JWT signed with the current key (its `kid` in the header)."""
        with self._lock:
            key = self._current()[0]
        return encode_jwt(key, self.jwk(key)["kid"], claims)

    def rotate(self) -> str:
        """Switch to a new key (the old one stays listed second); returns the new `kid`."""
        key = new_rsa_key()
        with self._lock:
            self._keys = [key, self._current()[0]]
        return self.jwk(key)["kid"]


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- static webhooks registered through the API -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hook:
    """One webhook registered with `POST /gemini/v1beta/webhooks`."""

    id: str
    name: str
    uri: str
    secret: str
    subscribed_events: tuple[str, ...]
    created_at: float


class Registry:
    """The static webhooks registered so far (a fresh one per simulator reset)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[Hook] = []

    def add(self, uri: str, events: tuple[str, ...], name: str | None, now: float) -> Hook:
        """Register a webhook with a new `whsec_` signing secret."""
        hook_id = secrets.token_hex(8)
        hook = Hook(
            id=hook_id,
            name=name or f"webhooks/{hook_id}",
            uri=uri,
            secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            subscribed_events=events,
            created_at=now,
        )
        with self._lock:
            self._hooks.append(hook)
        return hook

    def latest(self, event: str) -> Hook | None:
        """The last webhook registered for `event`, if any."""
        with self._lock:
            found = [hook for hook in self._hooks if event in hook.subscribed_events]
        return found[-1] if found else None


# -- jobs and their operations ------------------------------------------------------------------


def _complete_extra(
    details: dict[str, Any], prompt: str, model: str, dialect: str
) -> dict[str, Any]:
    name = str(
        details.get("model") or (DEFAULT_MODELS[dialect] if model == jobs.DEFAULT_MODEL else model)
    )
    raw_instances = details.get("instances")
    instances = list(raw_instances) if isinstance(raw_instances, list) else [{"prompt": prompt}]
    raw_parameters = details.get("parameters")
    parameters = dict(raw_parameters) if isinstance(raw_parameters, Mapping) else {}
    extra = {**details, "model": name, "instances": instances, "parameters": parameters}
    if dialect == VERTEX:
        extra["project"] = str(details.get("project") or DEFAULT_PROJECT)
        extra["location"] = str(details.get("location") or DEFAULT_LOCATION)
        storage_uri = parameters.get("storageUri")
        extra["storage_uri"] = storage_uri if isinstance(storage_uri, str) else None
    else:
        extra["webhook_uris"] = [str(uri) for uri in details.get("webhook_uris") or []]
    return extra


def gemini_extra(details: dict[str, Any], prompt: str, model: str) -> dict[str, Any]:
    """A Gemini API job's `extra` with defaults: model, instances, parameters, webhook URIs."""
    return _complete_extra(details, prompt, model, GEMINI)


def vertex_extra(details: dict[str, Any], prompt: str, model: str) -> dict[str, Any]:
    """A Vertex job's `extra` with defaults: model, project, location, instances, parameters,
    storage URI."""
    return _complete_extra(details, prompt, model, VERTEX)


def operation_name(job: jobs.Job) -> str:
    """The operation's full name, as the create answered it."""
    model = job.extra["model"]
    if job.dialect == GEMINI:
        return f"models/{model}/operations/{job.id}"
    return (
        f"projects/{job.extra['project']}/locations/{job.extra['location']}"
        f"/publishers/google/models/{model}/operations/{job.id}"
    )


def file_uri(job: jobs.Job) -> str:
    """The Gemini file URI of the job's video (on Google's host; see `GEMINI_HOST`)."""
    return f"{GEMINI_HOST}/v1beta/files/{job.id}:download?alt=media"


def gcs_location(job: jobs.Job) -> tuple[str, str] | None:
    """(bucket, object) of a Vertex video written to `storageUri`; None if it is inline."""
    storage_uri = job.extra.get("storage_uri")
    if not storage_uri:
        return None
    bucket, _, prefix = str(storage_uri).removeprefix("gs://").partition("/")
    prefix = prefix.strip("/")
    obj = f"{prefix}/{job.id}/{SAMPLE_FILE}" if prefix else f"{job.id}/{SAMPLE_FILE}"
    return bucket, obj


def video_bytes(settings: SimConfig, job: jobs.Job) -> bytes:
    """The whole video, exactly what `Simulator.expected_sha256(job.id)` hashes."""
    if settings.sample_media:
        return content.sample(content.Variant.VIDEO)
    size = content.size_of(content.Variant.VIDEO, job.script.video_bytes)
    return b"".join(content.chunks(job.id, content.Variant.VIDEO, size))


def expired(job: jobs.Job, now: float) -> bool:
    """Whether the finished operation (and its video) is past its retention."""
    end = jobs.end_at(job)
    return end is not None and now >= end + job.script.expires_after_s


def rpc_code(code: str) -> int:
    """The gRPC code of an operation that ended with `[sim:fail=code]`."""
    return RPC_CODES.get(code, INTERNAL)


def operation(settings: SimConfig, job: jobs.Job, now: float) -> dict[str, Any]:
    """The operation as a poll answers it at `now` (the caller checks `expired` first)."""
    name = operation_name(job)
    state = jobs.state_at(job, now)
    if not state.terminal:
        if state.status not in (jobs.Status.QUEUED, jobs.Status.IN_PROGRESS):
            return {"name": name, "done": state.status}  # `[sim:unknown_status=W]`
        return {"name": name} if job.dialect == GEMINI else {"name": name, "done": False}
    if state.status == jobs.Status.COMPLETED:
        return {"name": name, "done": True, "response": _response(settings, job)}
    code = state.error_code or ""
    if state.status == jobs.Status.FAILED and code in MODERATION_CODES:
        filtered: dict[str, Any] = {
            "raiMediaFilteredCount": 1,
            "raiMediaFilteredReasons": [FILTERED_REASON],
        }
        response: dict[str, Any]
        if job.dialect == GEMINI:
            response = {"@type": GEMINI_RESPONSE_TYPE, "generateVideoResponse": filtered}
        else:
            response = {"@type": VERTEX_RESPONSE_TYPE} | filtered
        return {"name": name, "done": True, "response": response}
    if state.status == jobs.Status.FAILED:
        error = {"code": rpc_code(code), "message": jobs.failure_message(code), "details": []}
    else:  # cancelled in-process (Veo itself has no cancel)
        error = {"code": CANCELLED, "message": "Operation was cancelled.", "details": []}
    return {"name": name, "done": True, "error": error}


def _response(settings: SimConfig, job: jobs.Job) -> dict[str, Any]:
    if job.dialect == GEMINI:
        samples = [{"video": {"uri": file_uri(job)}}]
        return {
            "@type": GEMINI_RESPONSE_TYPE,
            "generateVideoResponse": {"generatedSamples": samples},
        }
    location = gcs_location(job)
    if location is None:
        data = base64.b64encode(video_bytes(settings, job)).decode()
        video = {"bytesBase64Encoded": data, "mimeType": "video/mp4"}
    else:
        video = {"gcsUri": f"gs://{location[0]}/{location[1]}", "mimeType": "video/mp4"}
    return {"@type": VERTEX_RESPONSE_TYPE, "raiMediaFilteredCount": 0, "videos": [video]}


# -- webhooks (Gemini API only) -----------------------------------------------------------------


def webhook_moments(job: jobs.Job) -> list[tuple[str, float]]:
    """One `video.generated` when a Gemini job ends: to each `webhookConfig` URI, else static."""
    end = jobs.end_at(job)
    if job.dialect != GEMINI or end is None:
        return []
    uris = job.extra.get("webhook_uris") or []
    if uris:
        return [(f"dynamic:{index}", end) for index in range(len(uris))]
    return [("static", end)]


def static_target(sim: Simulator) -> tuple[str, str] | None:
    """(URL, secret) of the static webhook: the last one registered, else the configured one."""
    hook = sim.veo_hooks.latest(WEBHOOK_EVENT)
    if hook is not None:
        return hook.uri, hook.secret
    settings = sim.config
    if settings.veo_webhook_url and settings.veo_webhook_secret:
        return settings.veo_webhook_url, settings.veo_webhook_secret
    return None


def delivery(sim: Simulator, job: jobs.Job, event: str, at: float) -> webhooks.Delivery | None:
    """The `video.generated` POST of one webhook moment (`static` or `dynamic:{index}`)."""
    name = operation_name(job)
    event_body = {
        "type": WEBHOOK_EVENT,
        "version": "v1",
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "data": {"id": name},
    }
    body = json.dumps(event_body, separators=(",", ":")).encode()
    webhook_id = "msg_" + secrets.token_hex(14)

    def static(timestamp: int, bad_signature: bool) -> tuple[str, dict[str, str]] | None:
        found = static_target(sim)
        if found is None:
            return None
        url, secret = found
        return url, webhooks.standard_headers(
            secret, webhook_id, timestamp, body, bad_signature=bad_signature
        )

    def dynamic(timestamp: int, bad_signature: bool) -> tuple[str, dict[str, str]]:
        url = str(job.extra["webhook_uris"][int(event.partition(":")[2])])
        claims = {
            "iss": JWT_ISSUER,
            "aud": url,
            "iat": timestamp,
            "exp": timestamp + JWT_LIFETIME_S,
            "webhook_id": webhook_id,
            "type": WEBHOOK_EVENT,
            "data": {"id": name},
        }
        if bad_signature:  # the right `kid`, a key nobody published
            token = encode_jwt(new_rsa_key(), sim.veo_keys.kid, claims)
        else:
            token = sim.veo_keys.sign_jwt(claims)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": token,
        }
        return url, headers

    return webhooks.Delivery(
        dialect=GEMINI,
        type=WEBHOOK_EVENT,
        video_id=job.id,
        event_id=webhook_id,
        webhook_id=webhook_id,
        body=body,
        target=dynamic if event.startswith("dynamic:") else static,
    )


# -- errors, auth, faults -----------------------------------------------------------------------


def google_error(status: int, message: str, details: list[Any] | None = None) -> HttpError:
    """An error in Google's envelope, its `status` word following the HTTP code."""
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details is not None:
        body["details"] = details
    return HttpError(status, {"error": body})


def _invalid(message: str) -> HttpError:
    return google_error(400, message)


def _not_found(message: str = NOT_FOUND_MESSAGE) -> HttpError:
    return google_error(404, message)


def _authorize_gemini(request: Request, settings: SimConfig) -> None:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key:
        raise google_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    expected = settings.api_key
    if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        raise google_error(400, "API key not valid. Please pass a valid API key.", [info])


def _authorize_bearer(request: Request, settings: SimConfig) -> None:
    """Vertex and Cloud Storage: an OAuth access token (`SimConfig.api_key` if that is set)."""
    token = surface.bearer_token(request, ("bearer",))
    expected = settings.api_key
    if token is None or (
        expected is not None and not hmac.compare_digest(token.encode(), expected.encode())
    ):
        raise google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )


def _duration(seconds: float) -> str:
    """A `google.protobuf.Duration` in JSON: "30s", "1.5s"."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"


def _rate_limited(fault: faults.Fault, headers: Headers) -> Response:
    """429 RESOURCE_EXHAUSTED; the delay travels as `RetryInfo` only (no `Retry-After`)."""
    details: list[Any] = []
    delay = faults.retry_after_s(fault)
    if delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _duration(delay)}
        )
    error = google_error(429, "Resource has been exhausted (e.g. check quota).", details)
    return error.response(headers)


def _server_error(fault: faults.Fault, headers: Headers) -> Response:
    """A 5xx (503 UNAVAILABLE unless the fault says `status`), or the `error` fault's 4xx."""
    status = int(fault.params.get("status", 503))
    known = status in HTTPStatus._value2member_map_
    message = _SERVER_MESSAGES.get(status) or (HTTPStatus(status).phrase if known else "Error")
    return google_error(status, message).response(headers)


def unknown_route(method: str, path: str, status: int) -> Response:
    """A path (or method) the fake does not have: Google's 404."""
    return google_error(404, f"Method not found: {method} {path}").response({})


def _no_headers() -> Headers:
    return {}


ANSWERS = faults.Answers(rate_limited=_rate_limited, server_error=_server_error)
GEMINI_SURFACE = surface.Surface(
    name=GEMINI, answers=ANSWERS, authorize=_authorize_gemini, headers=_no_headers
)
VERTEX_SURFACE = surface.Surface(
    name=VERTEX, answers=ANSWERS, authorize=_authorize_bearer, headers=_no_headers
)
PUBLIC_SURFACE = surface.Surface(name=GEMINI, answers=ANSWERS, authorize=None, headers=_no_headers)


async def _operation_id_in_body(request: Request) -> str | None:
    """The job id of a `fetchPredictOperation` body's `operationName` (for faults and stats)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    name = body.get("operationName") if isinstance(body, dict) else None
    if not isinstance(name, str) or "/operations/" not in name:
        return None
    return name.rpartition("/operations/")[2]


async def _job_id_in_object(request: Request) -> str | None:
    """The job id in a GCS object name `{prefix}/{id}/sample_0.mp4`."""
    parts = request.path_params.get("object", "").split("/")
    return parts[-2] if len(parts) >= 2 else None


# -- routes -------------------------------------------------------------------------------------


def routes(sim: Simulator, guard: surface.Guard) -> list[Route]:
    """The /gemini, /gemini-dl, /vertex and /gcs routes of one simulator."""
    api = _Veo(sim)
    gemini_model = GEMINI_API + "/models/{model}"
    vertex_model = (
        VERTEX_API + "/projects/{project}/locations/{location}/publishers/google/models/{model}"
    )
    return [
        Route(
            gemini_model + ":predictLongRunning",
            guard("veo.create", api.gemini_create, GEMINI_SURFACE),
            methods=["POST"],
        ),
        Route(
            gemini_model + "/operations/{operation_id}",
            guard("veo.get", api.gemini_get, GEMINI_SURFACE, "operation_id"),
            methods=["GET"],
        ),
        Route(
            GEMINI_API + "/files/{file_id}:download",
            guard("veo.files", api.gemini_file, GEMINI_SURFACE, "file_id"),
            methods=["GET"],
        ),
        Route(
            GEMINI_API + "/webhooks",
            guard("veo.webhooks", api.register_webhook, GEMINI_SURFACE),
            methods=["POST"],
        ),
        Route(JWKS_PATH, api.jwks, methods=["GET"]),
        Route(
            MEDIA_PREFIX + "/files/{file_id}",
            guard("veo.media", api.media, PUBLIC_SURFACE, "file_id"),
            methods=["GET", "HEAD"],
        ),
        Route(
            vertex_model + ":predictLongRunning",
            guard("veo.create", api.vertex_create, VERTEX_SURFACE),
            methods=["POST"],
        ),
        Route(
            vertex_model + ":fetchPredictOperation",
            guard("veo.fetch", api.vertex_fetch, VERTEX_SURFACE, id_of=_operation_id_in_body),
            methods=["POST"],
        ),
        Route(
            vertex_model + "/operations/{operation_id}",
            guard("veo.vertex_get", api.vertex_get, VERTEX_SURFACE, "operation_id"),
            methods=["GET"],
        ),
        Route(
            GCS_PREFIX + "/storage/v1/b/{bucket}/o/{object:path}",
            guard("veo.gcs", api.gcs, VERTEX_SURFACE, id_of=_job_id_in_object),
            methods=["GET"],
        ),
    ]


class _Veo:
    """Handlers of the Veo routes, bound to one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._url_key = secrets.token_bytes(32)
        """Signs the download URLs a Gemini file redirects to."""

    # -- create -------------------------------------------------------------------------------

    async def gemini_create(self, request: Request, headers: Headers) -> Response:
        """POST /gemini/v1beta/models/{model}:predictLongRunning."""
        return await self._create(request, headers, GEMINI)

    async def vertex_create(self, request: Request, headers: Headers) -> Response:
        """POST /vertex/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}
        :predictLongRunning."""
        return await self._create(request, headers, VERTEX)

    async def _create(self, request: Request, headers: Headers, dialect: str) -> Response:
        model = request.path_params["model"]
        if not MODEL_ID.fullmatch(model):
            raise _model_not_found(dialect, model)
        body = await surface.json_body(request, _invalid)
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received. Expected an object.")
        unknown = (
            set(body)
            - {"instances", "parameters", "labels"}
            - ({"webhookConfig"} if dialect == GEMINI else set())
        )
        if unknown:
            field = sorted(unknown)[0]
            raise _invalid(
                f'Invalid JSON payload received. Unknown name "{field}": Cannot find field.'
            )
        instance, prompt, reference = _instance(body.get("instances"), dialect)
        parameters = body.get("parameters", {})
        if not isinstance(parameters, dict):
            raise _invalid("parameters must be an object.")
        seconds = _seconds(parameters.get("durationSeconds"))
        sample_count = parameters.get("sampleCount", 1)
        if sample_count != 1 or isinstance(sample_count, bool):
            raise _invalid("sampleCount: the simulator makes one video per operation.")
        extra: dict[str, Any] = {
            "origin": str(request.base_url).rstrip("/"),
            "model": model,
            "instances": [instance],
            "parameters": parameters,
        }
        storage_uri = parameters.get("storageUri")
        if storage_uri is not None:
            if dialect == GEMINI:
                raise _invalid("storageUri isn't supported by the Gemini API.")
            if not isinstance(storage_uri, str) or not re.fullmatch(
                r"gs://[a-z0-9._-]+(/.*)?", storage_uri
            ):
                raise _invalid("storageUri must be a Cloud Storage URI (gs://bucket/prefix).")
        if dialect == VERTEX:
            extra["project"] = request.path_params["project"]
            extra["location"] = request.path_params["location"]
        else:
            extra |= _webhook_config(body.get("webhookConfig"))
        size = f"{parameters.get('aspectRatio') or '16:9'} {parameters.get('resolution') or '720p'}"
        try:
            job = self.sim.create(
                prompt=prompt,
                model=model,
                seconds=seconds,
                size=size,
                reference=reference,
                dialect=dialect,
                extra=extra,
            )
        except jobs.DirectiveError as exc:
            raise _invalid(str(exc)) from None
        return JSONResponse({"name": operation_name(job)}, 200, headers)

    # -- polls ----------------------------------------------------------------------------------

    def _operation(self, job_id: str, dialect: str, name: str, headers: Headers) -> Response:
        """The operation answer of a job, or 404 (unknown, vanished, past retention, or not the
        operation `name` says)."""
        now = self.sim.clock.now()
        found = self.sim.find(job_id, now, dialect=dialect)
        if found is None or expired(found[0], now):
            raise _not_found()
        job = found[0]
        if operation_name(job) != name:
            raise _not_found()
        return JSONResponse(operation(self.sim.config, job, now), 200, headers)

    async def gemini_get(self, request: Request, headers: Headers) -> Response:
        """GET /gemini/v1beta/models/{model}/operations/{id}: the poll."""
        params = request.path_params
        name = f"models/{params['model']}/operations/{params['operation_id']}"
        return self._operation(params["operation_id"], GEMINI, name, headers)

    async def vertex_fetch(self, request: Request, headers: Headers) -> Response:
        """POST .../models/{m}:fetchPredictOperation `{"operationName"}`: the Vertex poll."""
        body = await surface.json_body(request, _invalid)
        name = body.get("operationName") if isinstance(body, dict) else None
        if not isinstance(name, str) or "/operations/" not in name:
            raise _invalid("operationName is required (the operation's full name).")
        resource, _, job_id = name.rpartition("/operations/")
        params = request.path_params
        expected = (
            f"projects/{params['project']}/locations/{params['location']}"
            f"/publishers/google/models/{params['model']}"
        )
        if resource != expected:
            raise _invalid(f"operationName {name} does not belong to {expected}.")
        return self._operation(job_id, VERTEX, name, headers)

    async def vertex_get(self, request: Request, headers: Headers) -> Response:
        """GET .../operations/{id} on Vertex: always 404 (poll with fetchPredictOperation)."""
        raise _not_found()

    # -- results --------------------------------------------------------------------------------

    def _video_job(self, job_id: str, dialect: str) -> jobs.Job:
        """A job whose video can be downloaded now; else 404."""
        now = self.sim.clock.now()
        found = self.sim.find(job_id, now, dialect=dialect)
        if found is None or found[1].status != jobs.Status.COMPLETED or expired(found[0], now):
            raise _not_found()
        return found[0]

    def _signature(self, file_id: str) -> str:
        return hmac.new(self._url_key, file_id.encode(), hashlib.sha256).hexdigest()[:32]

    async def gemini_file(self, request: Request, headers: Headers) -> Response:
        """GET /gemini/v1beta/files/{id}:download?alt=media: 302 to a signed URL without key."""
        if request.query_params.get("alt") != "media":
            raise _invalid("files:download needs alt=media.")
        file_id = request.path_params["file_id"]
        self._video_job(file_id, GEMINI)
        origin = str(request.base_url).rstrip("/")
        location = f"{origin}{MEDIA_PREFIX}/files/{file_id}?sig={self._signature(file_id)}"
        return RedirectResponse(location, status_code=302, headers=headers)

    async def media(self, request: Request, headers: Headers) -> Response:
        """GET|HEAD /gemini-dl/files/{id}?sig=...: the bytes (public, but the URL is signed)."""
        file_id = request.path_params["file_id"]
        if "x-goog-api-key" in request.headers or "key" in request.query_params:
            # Counted so tests can assert the key never follows the redirect off the API.
            self.sim.count("veo.media_with_key", None)
        sig = request.query_params.get("sig", "")
        if not hmac.compare_digest(sig.encode(), self._signature(file_id).encode()):
            raise google_error(403, "The download URL is not valid (bad or missing signature).")
        job = self._video_job(file_id, GEMINI)
        return self._stream(job, headers)

    async def gcs(self, request: Request, headers: Headers) -> Response:
        """GET /gcs/storage/v1/b/{bucket}/o/{object}?alt=media: a Vertex video in Cloud Storage."""
        bucket, obj = request.path_params["bucket"], request.path_params["object"]
        if request.query_params.get("alt") != "media":
            raise _invalid("The simulator serves object media only (alt=media).")
        job_id = await _job_id_in_object(request) or ""
        now = self.sim.clock.now()
        found = self.sim.find(job_id, now, dialect=VERTEX)
        if found is None or gcs_location(found[0]) != (bucket, obj):
            raise _not_found(f"No such object: {bucket}/{obj}")
        job, state = found
        if state.status != jobs.Status.COMPLETED or expired(job, now):
            raise _not_found(f"No such object: {bucket}/{obj}")
        return self._stream(job, headers)

    def _stream(self, job: jobs.Job, headers: Headers) -> Response:
        size, chunks = content.video_body(
            job.id, job.script.video_bytes, sample_media=self.sim.config.sample_media
        )
        headers["content-length"] = str(size)
        media_type = content.CONTENT_TYPES[content.Variant.VIDEO]
        return StreamingResponse(chunks, headers=headers, media_type=media_type)

    # -- webhooks -------------------------------------------------------------------------------

    async def register_webhook(self, request: Request, headers: Headers) -> Response:
        """POST /gemini/v1beta/webhooks `{uri, subscribed_events[, name]}`: a static webhook."""
        body = await surface.json_body(request, _invalid)
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received. Expected an object.")
        uri = body.get("uri")
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            raise _invalid("uri must be an http(s) URL.")
        events = body.get("subscribed_events", body.get("subscribedEvents"))
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) for e in events)
        ):
            raise _invalid("subscribed_events must be a non-empty list of event names.")
        name = body.get("name")
        now = self.sim.clock.now()
        hook = self.sim.veo_hooks.add(
            uri, tuple(events), name if isinstance(name, str) else None, now
        )
        stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        answer = {
            "id": hook.id,
            "name": hook.name,
            "uri": hook.uri,
            "subscribed_events": list(hook.subscribed_events),
            "state": "enabled",
            "create_time": stamp,
            "update_time": stamp,
            "new_signing_secret": hook.secret,
        }
        return JSONResponse(answer, 200, headers)

    async def jwks(self, request: Request) -> Response:
        """GET /gemini/.well-known/jwks.json (public); counted as `veo.jwks`."""
        self.sim.count("veo.jwks", None)
        return JSONResponse(self.sim.veo_keys.jwks(), headers={"cache-control": "max-age=3600"})


def _model_not_found(dialect: str, model: str) -> HttpError:
    if dialect == GEMINI:
        return _not_found(
            f"models/{model} is not found for API version v1beta, or is not supported for "
            "predictLongRunning. Call ListModels to see the list of available models and their "
            "supported methods."
        )
    return _not_found(f"Publisher Model `publishers/google/models/{model}` was not found.")


def _instance(raw: Any, dialect: str) -> tuple[dict[str, Any], str, jobs.Reference | None]:
    """The one instance of a create: (instance, prompt, what was sent as `image`)."""
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], dict):
        raise _invalid("instances must be a list of exactly one object.")
    instance: dict[str, Any] = raw[0]
    prompt = instance.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("instances[0].prompt is required.")
    image = instance.get("image")
    if image is None:
        return instance, prompt, None
    if not isinstance(image, dict):
        raise _invalid("instances[0].image must be an object.")
    mime = image.get("mimeType")
    if "gcsUri" in image:
        if dialect == GEMINI:
            raise _invalid("image.gcsUri isn't supported by the Gemini API; send the bytes.")
        return (
            instance,
            prompt,
            jobs.Reference(kind="gcs", content_type=mime, value=str(image["gcsUri"])),
        )
    try:
        data = base64.b64decode(str(image.get("bytesBase64Encoded", "")), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data or not isinstance(mime, str):
        raise _invalid("instances[0].image needs bytesBase64Encoded (base64) and mimeType.")
    return instance, prompt, jobs.Reference(kind="image", content_type=mime, byte_count=len(data))


def _seconds(raw: Any) -> str:
    """`durationSeconds` as the job's seconds: an int, or a string of digits (both are sent)."""
    if raw is None:
        return DEFAULT_SECONDS
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return str(raw)
    if isinstance(raw, str) and raw.isdigit() and int(raw) > 0:
        return str(int(raw))
    raise _invalid("durationSeconds must be a whole number of seconds.")


def _webhook_config(raw: Any) -> dict[str, Any]:
    """`webhookConfig` of a Gemini create -> `webhook_uris` (and `user_metadata`)."""
    if raw is None:
        return {}
    uris = raw.get("uris") if isinstance(raw, dict) else None
    if not isinstance(uris, list) or not all(
        isinstance(uri, str) and uri.startswith(("http://", "https://")) for uri in uris
    ):
        raise _invalid("webhookConfig.uris must be a list of http(s) URLs.")
    metadata = raw.get("userMetadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _invalid("webhookConfig.userMetadata must be an object.")
    return {"webhook_uris": list(uris), "user_metadata": metadata}


def gcs_media_url(storage_url: str, gcs_uri: str) -> str:
    """The JSON API URL serving `gs://bucket/object` under `storage_url` (for tests and docs)."""
    bucket, _, obj = gcs_uri.removeprefix("gs://").partition("/")
    return f"{storage_url}/storage/v1/b/{bucket}/o/{quote(obj, safe='')}?alt=media"

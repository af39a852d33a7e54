"""A fake of the fal queue API, served under /fal by the simulator (plus its CDN and JWKS).

Point the official SDK at it with
`monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", origin + "/fal/")` and
`fal_client.AsyncClient(key=...)`. Routes: `POST /fal/{owner}/{app}[/{path}][?fal_webhook=]`
(submit), `GET /fal/{owner}/{app}/requests/{id}/status[?logs=1]`, `GET
/fal/{owner}/{app}/requests/{id}` (result) and `PUT /fal/{owner}/{app}/requests/{id}/cancel`; the
URLs in the submit answer use `{owner}/{app}` only, as the real ones do. Media is public at
`{origin}/fal-cdn/files/{id}/output.mp4` (standing in for https://v3.fal.media) and the webhook
keys at `{origin}/fal-rest/.well-known/jwks.json` (for https://rest.alpha.fal.ai).

Statuses follow the SDK's `_parse_status`: 202 `IN_QUEUE` with a falling `queue_position`, 202
`IN_PROGRESS` with `logs` (always present; null unless `?logs=1`), 200 `COMPLETED` with `metrics`
and, for a request that did not succeed, `error` and `error_type`. `[sim:unknown_status=FAILED]`
answers that word while rendering (the SDK raises `ValueError`). The result answers the video,
or the model's 422 `content_policy_violation`, or a request error `{"detail", "error_type"}` with
`X-Fal-Error-Type`; it is kept one simulated hour after completion, six minutes if it is 10 KB or
more. A cancel ends the request with error type `client_cancelled` (the result answers 499), and
`X-Fal-Request-Timeout` reached before rendering starts ends it with `request_timeout` (504).
Webhooks POST `{"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload", ...}`
signed with Ed25519 over `{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(body)}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reelwatch.simulator import content, faults, jobs, surface, webhooks
from reelwatch.simulator.config import SimConfig
from reelwatch.simulator.surface import Headers, HttpError

if TYPE_CHECKING:
    from reelwatch.simulator.state import Simulator

DIALECT = "fal"
PREFIX = "/fal"
"""Where the queue lives on the simulator's origin: `QUEUE_URL_FORMAT` is origin + "/fal/"."""
CDN_PREFIX = "/fal-cdn"
"""Where media lives (public, no auth), standing in for https://v3.fal.media."""
REST_PREFIX = "/fal-rest"
JWKS_PATH = REST_PREFIX + "/.well-known/jwks.json"
OUTPUT_FILE = "output.mp4"
DEFAULT_ENDPOINT = "fal-ai/reelwatch-sim-video"
"""The endpoint of a request created in-process without one."""
NAMESPACES = ("workflows", "comfy")
QUEUE_STEP_S = 1.0
"""A queued request moves up one `queue_position` per simulated second of its queue time."""
MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
MODERATION_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
CANCELLED_MESSAGE = "Request cancelled by the client."
TIMEOUT_MESSAGE = "Request timed out"
REQUEST_ERRORS: dict[str, tuple[int, str]] = {
    "request_timeout": (504, TIMEOUT_MESSAGE),
    "startup_timeout": (504, "Runner startup timed out"),
    "runner_scheduling_failure": (503, "Failed to schedule a runner for the request"),
    "runner_connection_timeout": (503, "Connection to the runner timed out"),
    "runner_disconnected": (503, "Runner disconnected"),
    "runner_connection_refused": (503, "Runner refused the connection"),
    "runner_connection_error": (503, "Connection error with the runner"),
    "runner_incomplete_response": (502, "Runner sent an incomplete response"),
    "runner_server_error": (500, "Runner server error"),
    "internal_error": (500, "Internal error"),
    "client_cancelled": (499, CANCELLED_MESSAGE),
}
"""fal's request error types (https://fal.ai/docs/documentation/model-apis/request-errors):
`[sim:fail=<type>]` ends the request with that type; any other code answers 500 with it."""
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n<center><h1>{status} "
    "{phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


# -- the webhook key ring -----------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class KeyRing:
    """The Ed25519 key pairs fal webhooks are signed with: the current one, and the previous.

    Built from a 64-hex seed (`SimConfig.fal_webhook_key`) or a random one. `rotate()` switches to
    a fresh pair with a new `kid`; the JWKS lists the current key first, then the previous one.
    """

    def __init__(self, seed_hex: str | None = None) -> None:
        self._lock = threading.Lock()
        seed = bytes.fromhex(seed_hex) if seed_hex is not None else None
        key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
        self._keys: list[Ed25519PrivateKey] = [key]

    @staticmethod
    def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
        """The public half as a JWK, with its RFC 7638 thumbprint as `kid`."""
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = _b64url(raw)
        canonical = json.dumps(
            {"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True
        )
        kid = _b64url(hashlib.sha256(canonical.encode()).digest())
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}

    @property
    def kid(self) -> str:
        """The `kid` of the key signing now."""
        with self._lock:
            return self.jwk(self._keys[0])["kid"]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """`{"keys": [...]}`: the current public key, then the previous one (if rotated)."""
        with self._lock:
            return {"keys": [self.jwk(key) for key in self._keys]}

    def sign(self, message: bytes) -> str:
        """The hex Ed25519 signature of `message` with the current key."""
        with self._lock:
            key = self._keys[0]
        return key.sign(message).hex()

    def rotate(self) -> str:
        """Switch to a new key pair (the old one stays listed second); returns the new `kid`."""
        key = Ed25519PrivateKey.generate()
        with self._lock:
            self._keys = [key, self._keys[0]]
        return self.jwk(key)["kid"]


def signed_message(request_id: str, user_id: str, timestamp: int, body: bytes) -> bytes:
    """What a fal webhook signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


# -- requests and their answers -----------------------------------------------------------------


def split_endpoint(endpoint: str) -> tuple[str, str | None]:
    """`owner/app[/path]` (or `workflows/owner/app/...`) -> (app root, subpath), as the SDK does."""
    parts = [part for part in endpoint.strip("/").split("/") if part]
    if parts and parts[0] in NAMESPACES:
        if len(parts) < 3:
            raise ValueError(f"invalid endpoint {endpoint!r}")
        return "/".join(parts[:3]), "/".join(parts[3:]) or None
    if len(parts) < 2:
        raise ValueError(f"invalid endpoint {endpoint!r}")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None


def complete_extra(details: dict[str, Any], prompt: str, model: str) -> dict[str, Any]:
    """A fal job's `extra` with defaults: endpoint, app root, input, webhook URL."""
    endpoint = str(
        details.get("endpoint") or (DEFAULT_ENDPOINT if model == jobs.DEFAULT_MODEL else model)
    )
    app, _ = split_endpoint(endpoint)
    raw_input = details.get("input")
    job_input = dict(raw_input) if isinstance(raw_input, Mapping) else {}
    job_input.setdefault("prompt", prompt)
    return {
        **details,
        "model": endpoint,
        "endpoint": endpoint,
        "app": str(details.get("app") or app),
        "input": job_input,
        "webhook_url": details.get("webhook_url"),
    }


def request_urls(job: jobs.Job) -> dict[str, str]:
    """`response_url`, `status_url` and `cancel_url` of a request (app root only)."""
    base = f"{job.extra.get('origin', '')}{PREFIX}/{job.extra['app']}/requests/{job.id}"
    return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}


def media_url(job: jobs.Job) -> str:
    """Where the request's video is served (public)."""
    return f"{job.extra.get('origin', '')}{CDN_PREFIX}/files/{job.id}/{OUTPUT_FILE}"


def queue_position(job: jobs.Job, now: float) -> int:
    """0-based position in the queue: falls by one per `QUEUE_STEP_S` of remaining queue time."""
    remaining = job.render_at - now
    return max(math.ceil(remaining / QUEUE_STEP_S) - 1, 0)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def logs_at(job: jobs.Job, at: float) -> list[dict[str, str]]:
    """Runner log lines up to `at`: model loading, then `Generating video: N%` lines.

    The progress lines are `jobs.progress_marks`: the last one reads `jobs.progress_at` as of
    its moment (none at all for the `none` profile).
    """
    started = jobs.started_at(job, at)
    if started is None:
        return []
    render_s = job.script.render_s
    lines = [_log(started, f"Loading model weights (seed {jobs.seed_of(job)})")]
    for when, percent in jobs.progress_marks(job):
        if when > at:
            break
        lines.append(_log(when, f"Generating video: {percent}%"))
    if jobs.state_at(job, at).status == jobs.Status.COMPLETED:
        lines.append(_log(started + render_s, "Generating video: 100%"))
        lines.append(_log(started + render_s, f"Uploaded {OUTPUT_FILE}"))
    return lines


def _log(at: float, message: str) -> dict[str, str]:
    return {"message": message, "level": "INFO", "source": "user", "timestamp": _iso(at)}


def outcome(job: jobs.Job, now: float) -> tuple[int, Any, Headers] | None:
    """The result GET of a finished request: (status, body, headers); None while it runs."""
    state = jobs.state_at(job, now)
    if not state.terminal:
        return None
    if state.status == jobs.Status.COMPLETED:
        body = {
            "video": {
                "url": media_url(job),
                "content_type": "video/mp4",
                "file_name": OUTPUT_FILE,
                "file_size": content.size_of(content.Variant.VIDEO, job.script.video_bytes),
            },
            "seed": jobs.seed_of(job),
            "prompt": job.prompt,
        }
        return 200, body, {}
    code = _error_type(state)
    if code in MODERATION_CODES:
        detail = [
            {
                "loc": ["body", "prompt"],
                "msg": MODERATION_MESSAGE,
                "type": "content_policy_violation",
                "url": "https://docs.fal.ai/errors#content_policy_violation",
                "input": job.prompt,
            }
        ]
        return 422, {"detail": detail}, {"x-fal-retryable": "false"}
    status, message = REQUEST_ERRORS.get(code, (500, jobs.failure_message(code)))
    headers = {"x-fal-error-type": code}
    if state.status == jobs.Status.ABORTED:
        headers["x-fal-request-timeout-type"] = "user"
    return status, {"detail": message, "error_type": code}, headers


def _error_type(state: jobs.State) -> str:
    if state.status == jobs.Status.CANCELLED:
        return "client_cancelled"
    if state.status == jobs.Status.ABORTED:
        return "request_timeout"
    return state.error_code or "internal_error"


def status_body(job: jobs.Job, now: float, with_logs: bool) -> tuple[int, dict[str, Any]]:
    """The status GET: (HTTP status, body) in the shape `_parse_status` reads."""
    state = jobs.state_at(job, now)
    urls = request_urls(job)
    if state.status == jobs.Status.QUEUED:
        body: dict[str, Any] = {
            "status": "IN_QUEUE",
            "queue_position": queue_position(job, now),
            "request_id": job.id,
            **urls,
        }
        return 202, body
    end = jobs.end_at(job)
    terminal = state.terminal and end is not None
    seen_at = end if terminal and end is not None else now
    logs = logs_at(job, seen_at) if with_logs else None
    if not terminal:
        word = "IN_PROGRESS" if state.status == jobs.Status.IN_PROGRESS else str(state.status)
        return 202, {"status": word, "request_id": job.id, "logs": logs, **urls}
    started = jobs.started_at(job, seen_at)
    metrics: dict[str, Any] = {}
    if started is not None and end is not None:
        metrics["inference_time"] = round(end - started, 6)
    body = {"status": "COMPLETED", "request_id": job.id, "logs": logs, "metrics": metrics, **urls}
    if state.status != jobs.Status.COMPLETED:
        code = _error_type(state)
        body["error"] = (
            MODERATION_MESSAGE
            if code in MODERATION_CODES
            else REQUEST_ERRORS.get(code, (500, jobs.failure_message(code)))[1]
        )
        body["error_type"] = "content_policy_violation" if code in MODERATION_CODES else code
    return 200, body


def result_retention_s(settings: SimConfig, body: Any) -> float:
    """How long the result is kept: the shorter retention once its JSON is 10 KB or more."""
    size = len(json.dumps(body, separators=(",", ":")).encode())
    if size >= settings.fal_large_result_bytes:
        return settings.fal_large_result_retention_s
    return settings.fal_result_retention_s


# -- webhooks -----------------------------------------------------------------------------------


def webhook_moments(job: jobs.Job) -> list[tuple[str, float]]:
    """fal calls the `fal_webhook` once, when the request completes (any outcome)."""
    end = jobs.end_at(job)
    if not job.extra.get("webhook_url") or end is None:
        return []
    return [("completed", end)]


def delivery(sim: Simulator, job: jobs.Job, event: str, at: float) -> webhooks.Delivery | None:
    """The webhook POST of a completed request, signed with the simulator's current key."""
    answer = outcome(job, at)
    if answer is None:
        return None
    status, payload, _ = answer
    envelope: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
    if status == 200:
        envelope |= {"status": "OK", "payload": payload}
    else:
        envelope |= {
            "status": "ERROR",
            "error": f"Invalid status code: {status}",
            "payload": payload,
        }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    url = str(job.extra["webhook_url"])

    def target(timestamp: int, bad_signature: bool) -> tuple[str, dict[str, str]]:
        user_id = sim.config.fal_user_id
        message = signed_message(job.id, user_id, timestamp, body)
        if bad_signature:
            signature = Ed25519PrivateKey.generate().sign(message).hex()
        else:
            signature = sim.fal_keys.sign(message)
        headers = {
            "content-type": "application/json",
            "user-agent": "fal-webhooks/1.0",
            "x-fal-webhook-request-id": job.id,
            "x-fal-webhook-user-id": user_id,
            "x-fal-webhook-timestamp": str(timestamp),
            "x-fal-webhook-signature": signature,
        }
        return url, headers

    return webhooks.Delivery(
        dialect=DIALECT,
        type="OK" if status == 200 else "ERROR",
        video_id=job.id,
        event_id=job.id,
        webhook_id=job.id,
        body=body,
        target=target,
    )


# -- errors, auth, faults -----------------------------------------------------------------------


def _detail(status: int, message: str, **more: Any) -> HttpError:
    return HttpError(status, {"detail": message, **more})


def _not_found() -> HttpError:
    return _detail(404, "Request not found")


def _authorize(request: Request, settings: SimConfig) -> None:
    if not request.headers.get("authorization", "").strip():
        raise _detail(401, "Missing authorization header")
    token = surface.bearer_token(request, ("key",))
    if token is None:
        raise _detail(
            401, "Invalid Key Authorization header format. Expected '<key_id>:<key_secret>'."
        )
    expected = settings.api_key
    if expected is not None and not hmac.compare_digest(token.encode(), expected.encode()):
        raise _detail(401, "No user found for Key ID and Secret")


def _rate_limited(fault: faults.Fault, headers: Headers) -> Response:
    headers = dict(headers)
    delay = faults.retry_after_s(fault)
    if delay is not None:
        headers["retry-after"] = str(math.ceil(delay))
    return JSONResponse({"detail": "Rate limit exceeded"}, status_code=429, headers=headers)


def _server_error(fault: faults.Fault, headers: Headers) -> Response:
    """A 5xx: JSON from fal by default; with `should_retry` an nginx page with no
    `x-fal-request-id`, which the SDK takes for an ingress error and retries (502/503/504)."""
    status = int(fault.params.get("status", 500))
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    headers = dict(headers)
    if fault.params.get("should_retry"):
        headers.pop("x-fal-request-id", None)
        page = _NGINX_PAGE.format(status=status, phrase=phrase)
        return Response(page, status_code=status, headers=headers, media_type="text/html")
    return JSONResponse({"detail": phrase}, status_code=status, headers=headers)


def unknown_route(method: str, path: str, status: int) -> Response:
    """A 404 / 405 under /fal for a route the fake does not have."""
    detail = "Not Found" if status == 404 else "Method Not Allowed"
    return JSONResponse({"detail": detail}, status)


def _request_headers() -> Headers:
    return {"x-fal-request-id": str(uuid.uuid4())}


def _no_headers() -> Headers:
    return {}


ANSWERS = faults.Answers(rate_limited=_rate_limited, server_error=_server_error)
SURFACE = surface.Surface(
    name=DIALECT, answers=ANSWERS, authorize=_authorize, headers=_request_headers
)
PUBLIC_SURFACE = surface.Surface(name=DIALECT, answers=ANSWERS, authorize=None, headers=_no_headers)


# -- routes -------------------------------------------------------------------------------------


def routes(sim: Simulator, guard: surface.Guard) -> list[Route]:
    """The /fal, /fal-cdn and /fal-rest routes of one simulator."""
    api = _Fal(sim)
    requests = PREFIX + "/{app:path}/requests/{request_id}"
    return [
        Route(
            requests + "/status",
            guard("fal.status", api.status, SURFACE, "request_id"),
            methods=["GET"],
        ),
        Route(
            requests + "/cancel",
            guard("fal.cancel", api.cancel, SURFACE, "request_id"),
            methods=["PUT"],
        ),
        Route(requests, guard("fal.result", api.result, SURFACE, "request_id"), methods=["GET"]),
        Route(
            CDN_PREFIX + "/files/{request_id}/{filename}",
            guard("fal.files", api.file, PUBLIC_SURFACE, "request_id"),
            methods=["GET", "HEAD"],
        ),
        Route(JWKS_PATH, api.jwks, methods=["GET"]),
        Route(
            PREFIX + "/{endpoint:path}", guard("fal.submit", api.submit, SURFACE), methods=["POST"]
        ),
    ]


class _Fal:
    """Handlers of the fal routes, bound to one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def submit(self, request: Request, headers: Headers) -> Response:
        """POST /fal/{owner}/{app}[/{path}][?fal_webhook=]: queue a request."""
        endpoint = request.path_params["endpoint"]
        try:
            app, _ = split_endpoint(endpoint)
        except ValueError:
            raise _detail(404, "Application not found") from None
        raw = await surface.json_body(request, lambda message: _detail(400, message))
        if not isinstance(raw, dict):
            raise HttpError(
                422, {"detail": [_field_error("body", "Input should be a valid dictionary")]}
            )
        prompt = raw.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise HttpError(422, {"detail": [_field_error("prompt", "Field required", "missing")]})
        webhook_url = request.query_params.get("fal_webhook")
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise _detail(400, "fal_webhook must be an http(s) URL")
        priority = request.headers.get("x-fal-queue-priority", "normal")
        if priority not in ("normal", "low"):
            raise _detail(400, "X-Fal-Queue-Priority must be 'normal' or 'low'")
        deadline_s = _start_timeout(request.headers.get("x-fal-request-timeout"))
        expires_after_s = _lifecycle(request.headers.get("x-fal-object-lifecycle-preference"))
        extra = {
            "origin": str(request.base_url).rstrip("/"),
            "endpoint": endpoint.strip("/"),
            "app": app,
            "input": raw,
            "webhook_url": webhook_url,
            "priority": priority,
        }
        try:
            job = self.sim.create(
                prompt=prompt,
                model=endpoint.strip("/"),
                dialect=DIALECT,
                extra=extra,
                deadline_s=deadline_s,
                expires_after_s=expires_after_s,
            )
        except jobs.DirectiveError as exc:
            raise HttpError(422, {"detail": [_field_error("prompt", str(exc))]}) from None
        headers["x-fal-request-id"] = job.id
        body = {
            "status": "IN_QUEUE",
            "request_id": job.id,
            "gateway_request_id": job.id,
            **request_urls(job),
            "queue_position": queue_position(job, job.created_at),
        }
        return JSONResponse(body, 200, headers)

    def _find(self, request: Request) -> jobs.Job:
        found = self.sim.find(
            request.path_params["request_id"], self.sim.clock.now(), dialect=DIALECT
        )
        if found is None or found[0].extra.get("app") != request.path_params["app"]:
            raise _not_found()
        return found[0]

    async def status(self, request: Request, headers: Headers) -> Response:
        """GET .../requests/{id}/status[?logs=1]."""
        job = self._find(request)
        with_logs = request.query_params.get("logs", "0").lower() in ("1", "true", "yes")
        code, body = status_body(job, self.sim.clock.now(), with_logs)
        return JSONResponse(body, code, headers)

    async def result(self, request: Request, headers: Headers) -> Response:
        """GET .../requests/{id}: the output, the model's error, or 404 once evicted."""
        job = self._find(request)
        now = self.sim.clock.now()
        answer = outcome(job, now)
        if answer is None:
            queued = jobs.state_at(job, now).status == jobs.Status.QUEUED
            raise _detail(
                400, "Request is still in queue" if queued else "Request is still in progress"
            )
        status, body, extra_headers = answer
        end = jobs.end_at(job)
        if end is not None and now >= end + result_retention_s(self.sim.config, body):
            raise _not_found()
        return JSONResponse(body, status, {**headers, **extra_headers})

    async def cancel(self, request: Request, headers: Headers) -> Response:
        """PUT .../requests/{id}/cancel: 202 while queued or running, else 400."""
        found = self.sim.find(
            request.path_params["request_id"], self.sim.clock.now(), dialect=DIALECT
        )
        if found is None or found[0].extra.get("app") != request.path_params["app"]:
            raise HttpError(404, {"status": "NOT_FOUND"})
        if found[1].terminal:
            raise HttpError(400, {"status": "ALREADY_COMPLETED"})
        self.sim.cancel(found[0].id)
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202, headers)

    async def file(self, request: Request, headers: Headers) -> Response:
        """GET /fal-cdn/files/{id}/output.mp4 (public; 404 once the media expired)."""
        if request.path_params["filename"] != OUTPUT_FILE:
            raise HttpError(404, "Not Found")
        now = self.sim.clock.now()
        found = self.sim.find(request.path_params["request_id"], now, dialect=DIALECT)
        if found is None:
            raise HttpError(404, "Not Found")
        job, state = found
        if state.status != jobs.Status.COMPLETED:
            raise HttpError(404, "Not Found")
        if state.expires_at is not None and now >= state.expires_at:
            raise HttpError(404, "Not Found")
        size, chunks = content.video_body(
            job.id, job.script.video_bytes, sample_media=self.sim.config.sample_media
        )
        headers["content-length"] = str(size)
        media_type = content.CONTENT_TYPES[content.Variant.VIDEO]
        return StreamingResponse(chunks, headers=headers, media_type=media_type)

    async def jwks(self, request: Request) -> Response:
        """GET /fal-rest/.well-known/jwks.json (public); counted as `fal.jwks`."""
        self.sim.count("fal.jwks", None)
        return JSONResponse(self.sim.fal_keys.jwks(), headers={"cache-control": "max-age=86400"})


def _field_error(field: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    loc = ["body"] if field == "body" else ["body", field]
    return {"loc": loc, "msg": message, "type": kind}


def _start_timeout(raw: str | None) -> float | None:
    """`X-Fal-Request-Timeout`: seconds the request may wait before rendering starts (> 1)."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not (math.isfinite(seconds) and seconds > 1):
        raise _detail(
            400,
            "X-Fal-Request-Timeout must be a number of seconds above 1",
            error_type="bad_request",
        )
    return seconds


def _lifecycle(raw: str | None) -> float | None:
    """`X-Fal-Object-Lifecycle-Preference: {"expiration_duration_seconds": N}` -> N."""
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("expiration_duration_seconds")
    except (ValueError, AttributeError):
        value = None
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise _detail(400, "expiration_duration_seconds must be a positive number of seconds")
    return float(value)

"""A fake of Replicate's HTTP API (predictions), served under /replicate by the simulator.

Point the official SDK at it with `replicate.Client(api_token=..., base_url=origin + "/replicate")`.
Routes (below the prefix): `POST /v1/models/{owner}/{name}/predictions`, `POST /v1/predictions`
(by `version`: `owner/name`, `owner/name:<64 hex>` or a 64-hex id this simulator issued),
`GET /v1/predictions/{id}`, `POST /v1/predictions/{id}/cancel`, `GET /v1/predictions` (newest
first, cursor pages `{"next", "previous", "results"}`) and `GET /v1/webhooks/default/secret`.
Output files are public at `{origin}/replicate-delivery/xezq/{id}/output.mp4` (standing in for
https://replicate.delivery).

The prompt is `input.prompt`; its `[sim:...]` directives script the job as in the OpenAI dialect.
Statuses: `starting` (queued), `processing` (rendering; `logs` grows with tqdm lines that the
SDK's `Prediction.progress` parses), then `succeeded` (`output` is one URL string), `failed`
(`error` a string), `canceled` (a cancel, or `Cancel-After` reached while rendering) or `aborted`
(`Cancel-After` reached before rendering started; SDK 1.0.7 cannot parse it). An hour (simulated)
after the end, input, output, logs and the file are removed (`data_removed: true`).
Errors are RFC 7807 problem details; a 429 says `Request was throttled. Your rate limit resets in
~Ns.` Webhooks POST the Prediction for the filtered events (`start`, `output`, `logs` (at most
every 500 ms), `completed`), signed per Standard Webhooks with the account secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reelwatch.simulator import content, faults, jobs, surface, webhooks
from reelwatch.simulator.config import SimConfig
from reelwatch.simulator.surface import Headers, HttpError

if TYPE_CHECKING:
    from reelwatch.simulator.state import Simulator

DIALECT = "replicate"
PREFIX = "/replicate"
"""Where the API lives on the simulator's origin: the SDK's `base_url` is origin + PREFIX."""
DELIVERY_PREFIX = "/replicate-delivery"
"""Where output files live (public, no auth), standing in for https://replicate.delivery."""
DELIVERY_BUCKET = "xezq"
OUTPUT_FILE = "output.mp4"
DEFAULT_MODEL = "reelwatch/sim-video"
"""The model of a prediction created in-process without one."""
WEB_URL = "https://replicate.com/p/"
MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation", "nsfw"})
"""`[sim:fail=...]` codes reported as Replicate's safety-checker failure."""
MODERATION_ERROR = "NSFW content detected. Try running it again, or try a different prompt."
EVENTS = ("start", "output", "logs", "completed")
DEFAULT_EVENTS = ("output", "completed")
"""Replicate's default: webhooks for new output and for the end of the prediction."""
LOGS_THROTTLE_S = 0.5
PREFER_WAIT_MAX_S = 60
STATUS_WORDS: dict[str, str] = {
    jobs.Status.QUEUED: "starting",
    jobs.Status.IN_PROGRESS: "processing",
    jobs.Status.COMPLETED: "succeeded",
    jobs.Status.FAILED: "failed",
    jobs.Status.CANCELLED: "canceled",
    jobs.Status.ABORTED: "aborted",
}
_VERSION = re.compile(r"[0-9a-f]{64}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_BAR_PARTIALS = " ▏▎▍▌▋▊▉"


# -- the Prediction object ------------------------------------------------------------------------


def version_id(model: str) -> str:
    """The 64-hex version id this simulator reports for a model (stable across runs)."""
    return hashlib.sha256(f"reelwatch-sim/{model}".encode()).hexdigest()


def iso(at: float) -> str:
    """A timestamp as Replicate writes it: ISO 8601 UTC with microseconds and a `Z`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def complete_extra(details: dict[str, Any], prompt: str, model: str) -> dict[str, Any]:
    """A Replicate job's `extra` with defaults: model, version, input, webhook settings."""
    name = str(details.get("model") or (DEFAULT_MODEL if model == jobs.DEFAULT_MODEL else model))
    raw_input = details.get("input")
    job_input = dict(raw_input) if isinstance(raw_input, Mapping) else {}
    job_input.setdefault("prompt", prompt)
    events = details.get("webhook_events_filter")
    return {
        **details,
        "model": name,
        "version": str(details.get("version") or version_id(name)),
        "input": job_input,
        "webhook": details.get("webhook"),
        "webhook_events_filter": list(DEFAULT_EVENTS if events is None else events),
    }


def output_url(job: jobs.Job) -> str:
    """Where the prediction's video is served (public)."""
    origin = job.extra.get("origin", "")
    return f"{origin}{DELIVERY_PREFIX}/{DELIVERY_BUCKET}/{job.id}/{OUTPUT_FILE}"


def error_message(code: str) -> str:
    """The `error` string of a prediction that failed with this `[sim:fail=...]` code."""
    if code in MODERATION_CODES:
        return MODERATION_ERROR
    return jobs.failure_message(code)


def data_removed(job: jobs.Job, now: float, retention_s: float) -> bool:
    """Whether Replicate has removed the prediction's data by `now` (an hour after its end)."""
    state = jobs.state_at(job, now)
    end = jobs.end_at(job)
    return state.terminal and end is not None and now >= end + retention_s


def prediction(job: jobs.Job, now: float, *, retention_s: float) -> dict[str, Any]:
    """The Prediction as `GET /v1/predictions/{id}` answers it at simulated time `now`.

    At the instant of creation it is always `starting` (what the create answers and the `start`
    webhook carries), even for a job scripted to start rendering at once.
    """
    state = jobs.state_at(job, now)
    end = jobs.end_at(job)
    if now <= job.created_at:
        state, end = jobs.State(status=jobs.Status.QUEUED, progress=0), None
    terminal = state.terminal and end is not None
    seen_at = end if terminal and end is not None else now
    status = STATUS_WORDS.get(state.status, state.status)
    started = jobs.started_at(job, seen_at) if now > job.created_at else None
    removed = data_removed(job, now, retention_s)
    extra = job.extra
    get_url = f"{extra.get('origin', '')}{PREFIX}/v1/predictions/{job.id}"
    metrics: dict[str, Any] = {}
    if terminal and end is not None:
        if started is not None:
            metrics["predict_time"] = round(end - started, 6)
        metrics["total_time"] = round(end - job.created_at, 6)
    error = None
    if state.status == jobs.Status.FAILED and state.error_code is not None:
        error = error_message(state.error_code)
    body: dict[str, Any] = {
        "id": job.id,
        "model": extra["model"],
        "version": extra["version"],
        "input": {} if removed else dict(extra["input"]),
        "logs": "" if removed or started is None else logs_at(job, seen_at),
        "output": output_url(job) if status == "succeeded" and not removed else None,
        "data_removed": removed,
        "error": error,
        "status": status,
        "source": "api",
        "created_at": iso(job.created_at),
        "started_at": None if started is None else iso(started),
        "completed_at": iso(end) if terminal and end is not None else None,
        "urls": {"cancel": get_url + "/cancel", "get": get_url, "web": WEB_URL + job.id},
        "metrics": metrics,
    }
    if job.deadline_at is not None:
        body["deadline"] = iso(job.deadline_at)
    return body


def logs_at(job: jobs.Job, at: float) -> str:
    """The prediction's logs at `at`: a seed line, then tqdm progress lines as rendering goes.

    The progress lines are `jobs.progress_marks`: the last one reads `jobs.progress_at` as of
    its moment (none at all for the `none` profile).
    """
    started = jobs.started_at(job, at)
    if started is None:
        return ""
    lines = [f"Using seed: {jobs.seed_of(job)}"]
    total = _total_steps(job)
    render_s = job.script.render_s
    for when, percent in jobs.progress_marks(job):
        if when > at:
            break
        lines.append(_tqdm(percent, total, when - started, render_s))
    if jobs.state_at(job, at).status == jobs.Status.COMPLETED:
        lines.append(_tqdm(100, total, render_s, render_s))
        lines.append(f"Video written to {OUTPUT_FILE}")
    return "\n".join(lines) + "\n"


def _total_steps(job: jobs.Job) -> int:
    return (25, 50, 100)[jobs.seed_of(job) % 3]


def _tqdm(percent: int, total: int, elapsed_s: float, render_s: float) -> str:
    """One tqdm line, e.g. ` 37%|███▋      | 37/100 [00:03<00:05, 11.10it/s]`."""
    current = round(total * percent / 100)
    tenths = percent / 10
    full = int(tenths)
    bar = "█" * full
    if full < 10:
        bar += _BAR_PARTIALS[int((tenths - full) * 8)]
    bar = bar.ljust(10)
    rate = current / elapsed_s if elapsed_s > 0 else 0.0
    remaining = max(render_s - elapsed_s, 0.0)
    return (
        f"{percent:3d}%|{bar}| {current}/{total} "
        f"[{_clock(elapsed_s)}<{_clock(remaining)}, {rate:.2f}it/s]"
    )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


# -- webhooks -----------------------------------------------------------------------------------


def webhook_moments(job: jobs.Job) -> list[tuple[str, float]]:
    """The (event, simulated time) pairs this prediction's webhook fires at, as things stand."""
    if not job.extra.get("webhook"):
        return []
    events = job.extra.get("webhook_events_filter")
    wanted = set(DEFAULT_EVENTS if events is None else events)
    end = jobs.end_at(job)
    moments: list[tuple[str, float]] = []
    if "start" in wanted:
        moments.append(("start", job.created_at))
    if "logs" in wanted:
        moments.extend(("logs", at) for at in _log_moments(job, end))
    succeeded = end is not None and jobs.state_at(job, end).status == jobs.Status.COMPLETED
    if "output" in wanted and succeeded and end is not None:
        moments.append(("output", end))
    if "completed" in wanted and end is not None:
        moments.append(("completed", end))
    return moments


def _log_moments(job: jobs.Job, end: float | None) -> list[float]:
    """When new log lines appear before the end, at most one every `LOGS_THROTTLE_S`."""
    started = jobs.started_at(job, math.inf if end is None else end)
    if started is None:
        return []
    times = [started] + [when for when, _ in jobs.progress_marks(job)]
    kept: list[float] = []
    for at in times:
        if end is not None and at >= end:
            break
        if at <= job.created_at:
            continue  # at the instant of creation the prediction is `starting`, without logs
        if not kept or at - kept[-1] >= LOGS_THROTTLE_S:
            kept.append(at)
    return kept


def delivery(sim: Simulator, job: jobs.Job, event: str, at: float) -> webhooks.Delivery:
    """The POST of the Prediction as it was at `at`, signed with the account secret."""
    body = json.dumps(
        prediction(job, at, retention_s=sim.config.replicate_data_retention_s),
        separators=(",", ":"),
    ).encode()
    webhook_id = "msg_" + secrets.token_hex(14)
    url = str(job.extra["webhook"])

    def target(timestamp: int, bad_signature: bool) -> tuple[str, dict[str, str]]:
        headers = webhooks.standard_headers(
            sim.replicate_webhook_secret, webhook_id, timestamp, body, bad_signature=bad_signature
        )
        headers["user-agent"] = "Replicate-Webhooks/1.0"
        return url, headers

    return webhooks.Delivery(
        dialect=DIALECT,
        type=event,
        video_id=job.id,
        event_id=webhook_id,
        webhook_id=webhook_id,
        body=body,
        target=target,
    )


# -- errors, auth, faults -----------------------------------------------------------------------


def problem(status: int, title: str, detail: str, **more: Any) -> HttpError:
    """An RFC 7807 problem-details error as Replicate sends them."""
    return HttpError(status, {"title": title, "detail": detail, "status": status, **more})


def _invalid(field: str, description: str, kind: str = "invalid") -> HttpError:
    return problem(
        422,
        "Input validation failed",
        f"- {field}: {description}\n",
        invalid_fields=[{"type": kind, "field": field, "description": description}],
    )


def _not_found() -> HttpError:
    return problem(404, "Not found", "No prediction matches the given query.")


def _authorize(request: Request, settings: SimConfig) -> None:
    token = surface.bearer_token(request, ("bearer", "token"))
    if token is None:
        raise problem(401, "Unauthenticated", "You did not pass an authentication token")
    expected = settings.api_key
    if expected is not None and not hmac.compare_digest(token.encode(), expected.encode()):
        raise problem(401, "Unauthenticated", "You did not pass a valid authentication token")


def _rate_limited(fault: faults.Fault, headers: Headers) -> Response:
    headers = dict(headers)
    delay = faults.retry_after_s(fault)
    if delay is not None:
        headers["retry-after"] = str(math.ceil(delay))
    shown = 1 if delay is None else math.ceil(delay)
    body = {"detail": f"Request was throttled. Your rate limit resets in ~{shown}s."}
    return JSONResponse(body, status_code=429, headers=headers)


def _server_error(fault: faults.Fault, headers: Headers) -> Response:
    status = int(fault.params.get("status", 500))
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": "Something went wrong on our end. Please try again."
        if status >= 500
        else "The request could not be served.",
    }
    return JSONResponse(body, status_code=status, headers=dict(headers))


def unknown_route(method: str, path: str, status: int) -> Response:
    """A 404 / 405 under /replicate for a route the fake does not have."""
    detail = "Not found." if status == 404 else f'Method "{method}" not allowed.'
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return JSONResponse({"title": phrase, "detail": detail, "status": status}, status)


ANSWERS = faults.Answers(rate_limited=_rate_limited, server_error=_server_error)


def _no_headers() -> Headers:
    return {}


SURFACE = surface.Surface(name=DIALECT, answers=ANSWERS, authorize=_authorize, headers=_no_headers)
FILES_SURFACE = surface.Surface(name=DIALECT, answers=ANSWERS, authorize=None, headers=_no_headers)


# -- routes -------------------------------------------------------------------------------------


def routes(sim: Simulator, guard: surface.Guard) -> list[Route]:
    """The /replicate and /replicate-delivery routes of one simulator."""
    api = _Replicate(sim)

    def api_route(route: str, handler: surface.Handler, id_param: str | None = None) -> Any:
        return guard(route, handler, SURFACE, id_param)

    v1 = PREFIX + "/v1"
    return [
        Route(v1 + "/predictions", api_route("replicate.create", api.create), methods=["POST"]),
        Route(v1 + "/predictions", api_route("replicate.list", api.list), methods=["GET"]),
        Route(
            v1 + "/models/{owner}/{name}/predictions",
            api_route("replicate.create", api.create_for_model),
            methods=["POST"],
        ),
        Route(
            v1 + "/predictions/{prediction_id}",
            api_route("replicate.get", api.get, "prediction_id"),
            methods=["GET"],
        ),
        Route(
            v1 + "/predictions/{prediction_id}/cancel",
            api_route("replicate.cancel", api.cancel, "prediction_id"),
            methods=["POST"],
        ),
        Route(
            v1 + "/webhooks/default/secret",
            api_route("replicate.secret", api.secret),
            methods=["GET"],
        ),
        Route(
            DELIVERY_PREFIX + "/{bucket}/{prediction_id}/{filename}",
            guard("replicate.files", api.file, FILES_SURFACE, "prediction_id"),
            methods=["GET", "HEAD"],
        ),
    ]


class _Replicate:
    """Handlers of the Replicate routes, bound to one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def _prediction(self, job: jobs.Job, now: float) -> dict[str, Any]:
        return prediction(job, now, retention_s=self.sim.config.replicate_data_retention_s)

    async def create(self, request: Request, headers: Headers) -> Response:
        """POST /v1/predictions `{"version", "input", "webhook"?, "webhook_events_filter"?}`."""
        body = await _object(request)
        version = body.get("version")
        if not isinstance(version, str) or not version:
            raise _invalid("version", "version is required", "required")
        model, version_hash = self._resolve_version(version)
        return await self._start(request, headers, body, model, version_hash)

    async def create_for_model(self, request: Request, headers: Headers) -> Response:
        """POST /v1/models/{owner}/{name}/predictions `{"input", "webhook"?, ...}`."""
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        body = await _object(request)
        return await self._start(request, headers, body, model, version_id(model))

    def _resolve_version(self, version: str) -> tuple[str, str]:
        """`owner/name`, `owner/name:<64 hex>` or a known 64-hex id -> (model, version id)."""
        name, _, hash_ = version.partition(":")
        if _MODEL.fullmatch(name) and (not hash_ or _VERSION.fullmatch(hash_)):
            return name, hash_ or version_id(name)
        if _VERSION.fullmatch(version):
            for job, _state in self.sim.jobs_of(DIALECT, self.sim.clock.now()):
                if job.extra.get("version") == version:
                    return str(job.extra["model"]), version
        raise problem(
            422,
            "Invalid version or not permitted",
            "The specified version does not exist (or perhaps you don't have permission to "
            "use it?)",
        )

    async def _start(
        self,
        request: Request,
        headers: Headers,
        body: dict[str, Any],
        model: str,
        version: str,
    ) -> Response:
        job_input = body.get("input")
        if job_input is None:
            raise _invalid("input", "input is required", "required")
        if not isinstance(job_input, dict):
            raise _invalid("input", "Invalid type. Expected: object, given: " + _kind(job_input))
        prompt = job_input.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _invalid("input", "prompt is required", "required")
        webhook = body.get("webhook")
        if webhook is not None and not (
            isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
        ):
            raise _invalid("webhook", "Does not match format 'uri'", "format")
        events = body.get("webhook_events_filter")
        if events is not None and not (
            isinstance(events, list) and all(e in EVENTS for e in events)
        ):
            allowed = ", ".join(f'"{e}"' for e in EVENTS)
            raise _invalid(
                "webhook_events_filter",
                f"webhook_events_filter must be a list of the following: {allowed}",
                "enum",
            )
        deadline_s = _cancel_after(request.headers.get("cancel-after"))
        extra = {
            "origin": str(request.base_url).rstrip("/"),
            "model": model,
            "version": version,
            "input": job_input,
            "webhook": webhook,
            "webhook_events_filter": events,
        }
        try:
            job = self.sim.create(
                prompt=prompt,
                model=model,
                dialect=DIALECT,
                extra=extra,
                deadline_s=deadline_s,
                deadline_while_running=True,
            )
        except jobs.DirectiveError as exc:
            raise _invalid("input.prompt", str(exc)) from None
        wait_s = _prefer_wait(request.headers.get("prefer"))
        if wait_s:
            job = await self._hold(job, wait_s)
            return JSONResponse(self._prediction(job, self.sim.clock.now()), 201, headers)
        return JSONResponse(self._prediction(job, job.created_at), 201, headers)

    async def _hold(self, job: jobs.Job, wait_s: float) -> jobs.Job:
        """`Prefer: wait`: keep the request open until the prediction ends or `wait_s` pass."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            job = self.sim.job(job.id) or job
            if jobs.state_at(job, self.sim.clock.now()).terminal:
                break
            await asyncio.sleep(0.05)
        return self.sim.job(job.id) or job

    async def get(self, request: Request, headers: Headers) -> Response:
        """GET /v1/predictions/{prediction_id}."""
        now = self.sim.clock.now()
        found = self.sim.find(request.path_params["prediction_id"], now, dialect=DIALECT)
        if found is None:
            raise _not_found()
        return JSONResponse(self._prediction(found[0], now), 200, headers)

    async def cancel(self, request: Request, headers: Headers) -> Response:
        """POST /v1/predictions/{prediction_id}/cancel: the Prediction, canceled if it ran."""
        prediction_id = request.path_params["prediction_id"]
        if self.sim.find(prediction_id, self.sim.clock.now(), dialect=DIALECT) is None:
            raise _not_found()
        job = self.sim.cancel(prediction_id)
        if job is None:
            raise _not_found()
        return JSONResponse(self._prediction(job, self.sim.clock.now()), 200, headers)

    async def list(self, request: Request, headers: Headers) -> Response:
        """GET /v1/predictions[?cursor=]: newest first, `page_size` at a time."""
        now = self.sim.clock.now()
        items = self.sim.jobs_of(DIALECT, now)
        size = self.sim.config.replicate_page_size
        start = _page_start(request.query_params.get("cursor"), items, size)
        if start is None:
            empty: dict[str, Any] = {"next": None, "previous": None, "results": []}
            return JSONResponse(empty, 200, headers)
        chosen = items[start : start + size]
        base = f"{str(request.base_url).rstrip('/')}{PREFIX}/v1/predictions?cursor="
        next_url = None
        if chosen and start + size < len(items):
            next_url = base + _cursor("n", chosen[-1][0].id)
        previous_url = base + _cursor("p", chosen[0][0].id) if chosen and start > 0 else None
        page: dict[str, Any] = {
            "next": next_url,
            "previous": previous_url,
            "results": [self._prediction(job, now) for job, _ in chosen],
        }
        return JSONResponse(page, 200, headers)

    async def secret(self, request: Request, headers: Headers) -> Response:
        """GET /v1/webhooks/default/secret: `{"key": "whsec_..."}`."""
        return JSONResponse({"key": self.sim.replicate_webhook_secret}, 200, headers)

    async def file(self, request: Request, headers: Headers) -> Response:
        """GET /replicate-delivery/xezq/{id}/output.mp4 (public; 404 once data is removed)."""
        params = request.path_params
        if params["bucket"] != DELIVERY_BUCKET or params["filename"] != OUTPUT_FILE:
            raise HttpError(404, "Not Found")
        now = self.sim.clock.now()
        found = self.sim.find(params["prediction_id"], now, dialect=DIALECT)
        if found is None:
            raise HttpError(404, "Not Found")
        job, state = found
        retention_s = self.sim.config.replicate_data_retention_s
        if state.status != jobs.Status.COMPLETED or data_removed(job, now, retention_s):
            raise HttpError(404, "Not Found")
        return _video(self.sim, job, headers)


def _video(sim: Simulator, job: jobs.Job, headers: Headers) -> Response:
    """The job's video as a streamed `video/mp4` with its exact content-length."""
    variant = content.Variant.VIDEO
    if sim.config.sample_media:
        data = content.sample(variant)
        headers["content-length"] = str(len(data))
        chunks = content.stream_bytes(data)
    else:
        size = content.size_of(variant, job.script.video_bytes)
        headers["content-length"] = str(size)
        chunks = content.stream(job.id, variant, size)
    return StreamingResponse(chunks, headers=headers, media_type=content.CONTENT_TYPES[variant])


async def _object(request: Request) -> dict[str, Any]:
    body = await surface.json_body(request, lambda message: problem(400, "Bad request", message))
    if not isinstance(body, dict):
        raise problem(400, "Bad request", "The request body must be a JSON object.")
    return body


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else "object"


def _cancel_after(raw: str | None) -> float | None:
    """Seconds from a `Cancel-After` header: a duration like `1m`, `30s`, `1h30m`, `500ms`."""
    if raw is None:
        return None
    text = raw.strip()
    total = 0.0
    if _DURATION.fullmatch(text):
        total = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    elif re.fullmatch(r"\d+(?:\.\d+)?", text):
        total = float(text)
    if total > 0:
        return total
    raise problem(
        400,
        "Invalid Cancel-After header",
        f"Cancel-After must be a positive duration such as 30s, 5m or 1h, got {raw!r}.",
    )


def _prefer_wait(raw: str | None) -> float | None:
    """Seconds to hold a create open for `Prefer: wait` / `Prefer: wait=N` (at most 60)."""
    if raw is None:
        return None
    for part in raw.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return float(PREFER_WAIT_MAX_S)
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
        return min(max(seconds, 0.0), PREFER_WAIT_MAX_S) or None
    return None


def _cursor(direction: str, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{job_id}".encode()).decode().rstrip("=")


def _page_start(
    cursor: str | None, items: list[tuple[jobs.Job, jobs.State]], size: int
) -> int | None:
    """Index of a page's first item for a cursor; None for a cursor that leads nowhere."""
    if not cursor:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    direction, _, job_id = decoded.partition(":")
    ids = [job.id for job, _ in items]
    if direction not in ("n", "p") or job_id not in ids:
        return None
    index = ids.index(job_id)
    return index + 1 if direction == "n" else max(index - size, 0)

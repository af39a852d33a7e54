"""HTTP surface of the simulator: the OpenAI Videos routes under /v1, composed with Replicate's
(`replicate.py`, under /replicate), fal's (`fal.py`, under /fal), Google Veo's (`veo.py`, under
/gemini, /gemini-dl, /vertex and /gcs) and the `controls` under /_sim.

Raw Starlette, one handler per operation, all state in the `Simulator`. Every handler is wrapped
by `surface.Guard`: count the request, add the configured latency, check the credentials, answer
as a shut-down API if asked to (OpenAI only), then apply whatever fault was injected for it.
OpenAI errors use the API's envelope `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from reelwatch.simulator import content, controls, fal, faults, jobs, replicate, surface, veo
from reelwatch.simulator.config import SimConfig
from reelwatch.simulator.surface import Headers

if TYPE_CHECKING:
    from reelwatch.simulator.state import Simulator

SHUTDOWN_MESSAGE = (
    "The Videos API and the Sora 2 models have been shut down; "
    "the model `sora-2` does not exist or you do not have access to it."
)


class ApiError(surface.HttpError):
    """An error answer in the OpenAI API's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(status, faults.error_body(message, type_, param, code))


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def _not_found(video_id: str) -> ApiError:
    return ApiError(404, f"No video found with id '{video_id}'.", code="not_found")


class _App(Starlette):
    """Starlette that remembers the server's own `send`, so a fault can drop the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[faults.RAW_SEND] = send
        await super().__call__(scope, receive, send)


def build(sim: Simulator) -> Starlette:
    """The ASGI app of one simulator: every dialect's routes and the controls."""
    api = _Api(sim)
    guard = surface.Guard(sim)

    def openai(route: str, handler: surface.Handler) -> surface.Endpoint:
        return guard(route, handler, OPENAI, "video_id")

    v1 = [
        Route("/v1/videos", openai("create", api.create), methods=["POST"]),
        Route("/v1/videos", openai("list", api.list), methods=["GET"]),
        Route("/v1/videos/{video_id}", openai("retrieve", api.retrieve), methods=["GET"]),
        Route("/v1/videos/{video_id}", openai("delete", api.delete), methods=["DELETE"]),
        Route("/v1/videos/{video_id}/remix", openai("remix", api.remix), methods=["POST"]),
        Route("/v1/videos/{video_id}/content", openai("content", api.content)),
    ]
    return _App(
        routes=v1
        + replicate.routes(sim, guard)
        + fal.routes(sim, guard)
        + veo.routes(sim, guard)
        + controls.routes(sim),
        exception_handlers={HTTPException: _http_error},
        lifespan=api.lifespan,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    path = request.url.path
    if path.startswith((replicate.DELIVERY_PREFIX + "/", fal.CDN_PREFIX + "/")):
        return Response("Not Found", status_code=404, media_type="text/plain")
    if status != 400 and path.startswith(replicate.PREFIX + "/"):
        return replicate.unknown_route(request.method, path, status)
    if status != 400 and path.startswith(fal.PREFIX + "/"):
        return fal.unknown_route(request.method, path, status)
    google = (veo.GEMINI_PREFIX, veo.MEDIA_PREFIX, veo.VERTEX_PREFIX, veo.GCS_PREFIX)
    if status != 400 and path.startswith(tuple(prefix + "/" for prefix in google)):
        return veo.unknown_route(request.method, path, status)
    message = f"Invalid URL ({request.method} {path})"
    if status == 400 and isinstance(exc, HTTPException):
        message = exc.detail
    return JSONResponse(faults.error_body(message, "invalid_request_error"), status_code=status)


class _Api:
    """Route handlers bound to one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Run the webhook outbox while the server is up."""
        async with httpx.AsyncClient(trust_env=False) as client:
            task = asyncio.create_task(self.sim.outbox.run(client), name="reelwatch-sim-outbox")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- /v1 ----------------------------------------------------------------------------------

    async def create(self, request: Request, headers: Headers) -> Response:
        """POST /v1/videos (multipart or JSON)."""
        body, reference = await _create_body(request)
        prompt = _prompt(body)
        model = _choice(body, "model", jobs.MODELS, jobs.DEFAULT_MODEL)
        seconds = _choice(body, "seconds", jobs.SECONDS, jobs.DEFAULT_SECONDS)
        size = _choice(body, "size", jobs.SIZES, jobs.DEFAULT_SIZE)
        try:
            job = self.sim.create(
                prompt=prompt, model=model, seconds=seconds, size=size, reference=reference
            )
        except jobs.DirectiveError as exc:
            raise _bad(str(exc), "prompt") from None
        return JSONResponse(
            jobs.video_object(job, jobs.state_at(job, job.created_at)), 200, headers
        )

    async def retrieve(self, request: Request, headers: Headers) -> Response:
        """GET /v1/videos/{video_id}."""
        video_id = request.path_params["video_id"]
        found = self.sim.find(video_id, self.sim.clock.now(), dialect="openai")
        if found is None:
            raise _not_found(video_id)
        job, state = found
        poll_after_ms = self.sim.config.poll_after_ms
        if poll_after_ms is not None and not state.terminal:
            headers["openai-poll-after-ms"] = str(poll_after_ms)
        return JSONResponse(jobs.video_object(job, state), 200, headers)

    async def list(self, request: Request, headers: Headers) -> Response:
        """GET /v1/videos?after=&limit=&order=."""
        query = request.query_params
        raw_limit = query.get("limit", "20")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise _bad(
                f"Invalid 'limit': expected an integer, got {raw_limit!r}.", "limit"
            ) from None
        if not 0 <= limit <= 100:
            raise _bad("Invalid 'limit': it must be between 0 and 100.", "limit")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _bad("Invalid 'order': expected 'asc' or 'desc'.", "order")
        found, has_more = self.sim.page(
            after=query.get("after") or None,
            limit=limit,
            descending=order == "desc",
            now=self.sim.clock.now(),
            dialect="openai",
        )
        data = [jobs.video_object(job, state) for job, state in found]
        page = {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
        return JSONResponse(page, 200, headers)

    async def delete(self, request: Request, headers: Headers) -> Response:
        """DELETE /v1/videos/{video_id}."""
        video_id = request.path_params["video_id"]
        found = self.sim.find(video_id, self.sim.clock.now(), dialect="openai")
        if found is None:
            raise _not_found(video_id)
        _, state = found
        if state.active and not self.sim.config.allow_delete_active:
            raise _bad(
                f"Video '{video_id}' is still {state.status}; only finished videos can be deleted."
            )
        self.sim.delete(video_id)
        return JSONResponse(
            {"id": video_id, "object": "video.deleted", "deleted": True}, 200, headers
        )

    async def remix(self, request: Request, headers: Headers) -> Response:
        """POST /v1/videos/{video_id}/remix (JSON or multipart `{prompt}`)."""
        video_id = request.path_params["video_id"]
        body, _ = await _create_body(request)
        prompt = _prompt(body)
        found = self.sim.find(video_id, self.sim.clock.now(), dialect="openai")
        if found is None:
            raise _not_found(video_id)
        source, state = found
        if state.status != jobs.Status.COMPLETED:
            raise _bad(
                f"Video '{video_id}' is {state.status}; only completed videos can be remixed."
            )
        try:
            job = self.sim.create(
                prompt=prompt,
                model=source.model,
                seconds=source.seconds,
                size=source.size,
                remixed_from_video_id=source.id,
            )
        except jobs.DirectiveError as exc:
            raise _bad(str(exc), "prompt") from None
        return JSONResponse(
            jobs.video_object(job, jobs.state_at(job, job.created_at)), 200, headers
        )

    async def content(self, request: Request, headers: Headers) -> Response:
        """GET /v1/videos/{video_id}/content?variant=video|thumbnail|spritesheet."""
        video_id = request.path_params["video_id"]
        raw_variant = request.query_params.get("variant", "video")
        try:
            variant = content.Variant(raw_variant)
        except ValueError:
            expected = ", ".join(v.value for v in content.Variant)
            raise _bad(
                f"Invalid 'variant' {raw_variant!r}: expected one of {expected}.", "variant"
            ) from None
        now = self.sim.clock.now()
        found = self.sim.find(video_id, now, dialect="openai")
        if found is None:
            raise _not_found(video_id)
        job, state = found
        if state.status == jobs.Status.FAILED:
            raise ApiError(404, f"Video '{video_id}' failed; it has no content to download.")
        if state.status != jobs.Status.COMPLETED:
            raise ApiError(
                404, f"Video is not ready yet, use GET /v1/videos/{video_id} to check status."
            )
        if state.expires_at is not None and now >= state.expires_at:
            raise ApiError(
                404, f"Video '{video_id}' has expired; its content is no longer available."
            )
        if self.sim.config.sample_media:
            body = content.sample(variant)
            headers["content-length"] = str(len(body))
            chunks = content.stream_bytes(body)
        else:
            size = content.size_of(variant, job.script.video_bytes)
            headers["content-length"] = str(size)
            chunks = content.stream(video_id, variant, size)
        return StreamingResponse(chunks, headers=headers, media_type=content.CONTENT_TYPES[variant])


_REQUEST_IDS = itertools.count(1)


def _request_headers() -> Headers:
    return {"x-request-id": f"req_{next(_REQUEST_IDS):032x}"}


def _shutdown_error() -> surface.HttpError:
    return ApiError(404, SHUTDOWN_MESSAGE, code="model_not_found")


def _authorize(request: Request, settings: SimConfig) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    expected = settings.api_key
    if expected is not None and not hmac.compare_digest(token.encode(), expected.encode()):
        shown = (token[:3] + "*" * (len(token) - 7) + token[-4:]) if len(token) > 8 else "***"
        raise ApiError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _bad("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _bad("The JSON body of your request must be an object.")
    return body


async def _create_body(request: Request) -> tuple[dict[str, Any], jobs.Reference | None]:
    """The fields of a create or remix body, and what was sent as `input_reference`."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await _json_object(request)
        return body, _json_reference(body.get("input_reference"))
    body = {}
    reference = None
    try:
        async with request.form() as form:
            for key, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    body[key] = value
                elif key == "input_reference":
                    reference = jobs.Reference(
                        kind="file", content_type=value.content_type, byte_count=value.size
                    )
    except HTTPException as exc:
        raise _bad(f"Invalid form body: {exc.detail}") from None
    if "input_reference" in body:
        raise _bad("'input_reference' must be an uploaded image file.", "input_reference")
    return body, reference


def _json_reference(value: Any) -> jobs.Reference | None:
    if value is None:
        return None
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind in ("image_url", "file_id") and isinstance(ref, str) and 0 < len(ref) <= 20_971_520:
            return jobs.Reference(kind=kind, value=ref)
    message = "'input_reference' must be an object with exactly one of 'image_url' or 'file_id'."
    raise _bad(message, "input_reference")


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise _bad("Missing required parameter: 'prompt'.", "prompt")
    if not isinstance(prompt, str):
        raise _bad("Invalid type for 'prompt': expected a string.", "prompt")
    if not 1 <= len(prompt) <= jobs.PROMPT_MAX_CHARS:
        raise _bad(
            f"Invalid 'prompt': string length must be between 1 and {jobs.PROMPT_MAX_CHARS}, "
            f"got {len(prompt)}.",
            "prompt",
        )
    return prompt


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or value not in allowed:
        shown = ", ".join(repr(v) for v in allowed)
        raise _bad(f"Invalid value for '{name}': {value!r}. Supported values are: {shown}.", name)
    return value


OPENAI = surface.Surface(
    name="openai",
    answers=faults.OPENAI_ANSWERS,
    authorize=_authorize,
    headers=_request_headers,
    shutdown_error=_shutdown_error,
)

"""What every simulated API's routes share: error answers, and the guard around each handler.

Each dialect (OpenAI under /v1, Replicate under /replicate, fal under /fal, Google Veo under
/gemini and /vertex) describes itself with a `Surface`: how it authenticates, which headers every
answer carries, how it answers an injected 429 or 5xx, and whether the OpenAI shutdown mode
applies to it. `Guard` wraps a handler with what
all of them do alike: count the request, add the configured latency, check the credentials,
answer as a shut-down API if asked to, then apply whatever fault was injected for the route.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reelwatch.simulator import faults
from reelwatch.simulator.config import SimConfig

if TYPE_CHECKING:
    from reelwatch.simulator.state import Simulator

Headers = dict[str, str]
Handler = Callable[[Request, Headers], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
IdOf = Callable[[Request], Awaitable[str | None]]
"""Reads the job id a request is about from somewhere other than one path parameter (the body,
say: Starlette keeps `request.body()`, so the handler can read it again)."""


class HttpError(Exception):
    """An error answer: a status, a JSON (or text) body and extra headers."""

    def __init__(self, status: int, body: Any, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body if isinstance(body, str) else json.dumps(body))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self, headers: Headers) -> Response:
        """This error as a response, with the route's own headers under the error's."""
        merged = {**headers, **self.headers}
        if isinstance(self.body, str):
            return Response(self.body, self.status, merged, media_type="text/plain")
        return JSONResponse(self.body, status_code=self.status, headers=merged)


@dataclass(frozen=True, slots=True)
class Surface:
    """How one dialect's routes behave around their handlers."""

    name: str
    answers: faults.Answers
    authorize: Callable[[Request, SimConfig], None] | None
    """Raises `HttpError` (the dialect's 401) for missing or wrong credentials; None: public."""
    headers: Callable[[], Headers]
    """Headers every answer of the dialect starts with (e.g. a request id)."""
    shutdown_error: Callable[[], HttpError] | None = None
    """The answer while the simulator rehearses the OpenAI shutdown (OpenAI only)."""


class Guard:
    """Wraps route handlers of one simulator; `guard(route, handler, surface, id_param)`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def __call__(
        self,
        route: str,
        handler: Handler,
        surface: Surface,
        id_param: str | None = None,
        *,
        id_of: IdOf | None = None,
    ) -> Endpoint:
        """Wrap `handler` with counting, latency, auth, shutdown mode and faults.

        `id_param` names the path parameter holding the job id (or `id_of` reads it from the
        request): faults with a `video_id` match it, and per-job counters use it.
        """
        sim = self.sim

        async def endpoint(request: Request) -> Response:
            job_id: str | None = None
            if id_param:
                job_id = request.path_params.get(id_param)
            elif id_of is not None:
                job_id = await id_of(request)
            sim.count(route, job_id)
            headers = surface.headers()
            settings = sim.config
            sim.enter()
            try:
                if settings.latency_s > 0:
                    await asyncio.sleep(settings.latency_s)
                if surface.authorize is not None:
                    surface.authorize(request, settings)
                if sim.shutdown and surface.shutdown_error is not None:
                    raise surface.shutdown_error()
                delay, fault = sim.faults.take(route, job_id)
                if delay > 0:
                    await asyncio.sleep(delay)
                if fault is None:
                    return await handler(request, headers)
                return await with_fault(fault, surface.answers, handler, request, headers)
            except HttpError as exc:
                return exc.response(headers)
            finally:
                sim.leave()

        return endpoint


async def with_fault(
    fault: faults.Fault,
    answers: faults.Answers,
    handler: Handler,
    request: Request,
    headers: Headers,
) -> Response:
    """Answer one request under an injected fault, in the dialect's shape."""
    if fault.kind is faults.Kind.RATE_LIMIT:
        return answers.rate_limited(fault, headers)
    if fault.kind in (faults.Kind.SERVER_ERROR, faults.Kind.ERROR):
        return answers.server_error(fault, headers)
    if fault.kind is faults.Kind.DROP:
        return faults.Dropped()
    response = await handler(request, headers)
    if fault.kind is faults.Kind.CREATE_THEN_FAIL:
        return answers.server_error(fault, headers)
    return faults.Truncated(response)


async def json_body(request: Request, refuse: Callable[[str], HttpError]) -> Any:
    """The request's JSON body (empty: `{}`); `refuse(message)` builds the dialect's 4xx."""
    raw = await request.body()
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise refuse("The request body is not valid JSON.") from None


def bearer_token(request: Request, schemes: tuple[str, ...]) -> str | None:
    """The token of an `Authorization: <scheme> <token>` header, if one of `schemes` is used."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() not in schemes or not token:
        return None
    return token

"""One place maps failures to HTTP: JSON `{"error": {"code", "message"}}`, never a secret."""

from __future__ import annotations

import errno
import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from reelwatch import exceptions, front

log = structlog.get_logger("reelwatch.web")

STATUS = {
    exceptions.InvalidInput: 400,
    exceptions.NotFound: 404,
    exceptions.NotAllowed: 409,
    exceptions.LeaseLost: 409,
    exceptions.ConfigError: 503,
    exceptions.DatabaseUnavailable: 503,
    exceptions.ProviderError: 502,  # the provider failed us; not the caller's fault
}


class ApiError(exceptions.ReelwatchError):
    """An HTTP-level refusal with its own status and code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


def body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


def respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An error in the shape the path's clients read: the compatible front's under /v1/
    (front.py), reelwatch's elsewhere."""
    if request.url.path.startswith(front.PREFIX):
        param = extra.get("param")
        content = front.error_body(status, code, message, param if isinstance(param, str) else None)
    else:
        content = body(code, message, **extra)
    return JSONResponse(content, status_code=status, headers=dict(headers or {}))


def _status(exc: exceptions.ReelwatchError) -> int:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    from reelwatch.web import dashboard  # the pages import this module

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        if exc.status < 500 and dashboard.wants_page(request):
            return dashboard.error_page(request, exc.status, exc.message)
        return respond(request, exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(exceptions.Busy)
    async def _busy(request: Request, exc: exceptions.Busy) -> Response:
        wait = str(max(1, math.ceil(exc.retry_after_s)))
        return respond(request, 429, exc.code, exc.message, {"retry-after": wait})

    @app.exception_handler(exceptions.ReelwatchError)
    async def _domain(request: Request, exc: exceptions.ReelwatchError) -> Response:
        status = _status(exc)
        if status < 500 and dashboard.wants_page(request):
            return dashboard.error_page(request, status, exc.message)
        return respond(request, status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        message = f"{_field(first.get('loc', ()))}: {first.get('msg', 'invalid')}"
        if dashboard.wants_page(request):
            return dashboard.error_page(request, 400, message)
        if request.url.path.startswith(front.PREFIX):
            return respond(request, 400, "invalid_request", message)
        return JSONResponse(body("invalid_request", message), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (400, 404, 405) and dashboard.wants_page(request):
            words = {404: "There is no page here.", 405: "That page cannot be used that way."}
            return dashboard.error_page(
                request, exc.status_code, words.get(exc.status_code, str(exc.detail))
            )
        return respond(
            request, exc.status_code, f"http_{exc.status_code}", str(exc.detail), exc.headers
        )

    @app.exception_handler(sa.exc.DBAPIError)
    async def _database(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        reason = database_reason(exc, request.app.state.settings.database_url)
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            log.warning(f"database error: {reason}", action="http_db_error", path=request.url.path)
        else:  # the database refused a statement (a constraint, a value): worth a traceback
            log.exception(
                f"database error: {reason}", action="http_db_error", path=request.url.path
            )
        return respond(request, 503, "database_unavailable", f"the database failed: {reason}")

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno == errno.ENOSPC:
            log.warning("disk full", action="http_disk_full", path=request.url.path)
            return respond(request, 507, "disk_full", "no space left on the server's disk")
        return await _crash(request, exc)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", action="http_error", path=request.url.path)
        return respond(request, 500, "internal_error", "internal error")


def database_reason(exc: sa.exc.DBAPIError, url: str) -> str:
    """The first line of what the driver said, without the URL or its password.

    SQLAlchemy's own text (`str(exc)`) carries the statement and its parameters, so only the
    driver's error is used; a driver may name its host or user, but the URL and the password
    are cut out in case one echoes them.
    """
    cause = exc.orig if exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    reason = lines[0].strip() if lines else type(cause).__name__
    parsed = sa.engine.make_url(url)
    for secret in (url, parsed.render_as_string(hide_password=False), parsed.password):
        if secret:
            reason = reason.replace(str(secret), "***")
    return reason[:300] or type(cause).__name__

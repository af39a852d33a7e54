"""One place maps failures to HTTP: JSON `{"error": {"code", "message"}}`, never a secret."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from reelwatch import exceptions

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


def _status(exc: exceptions.ReelwatchError) -> int:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.message, **exc.extra), status_code=exc.status)

    @app.exception_handler(exceptions.ReelwatchError)
    async def _domain(_: Request, exc: exceptions.ReelwatchError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.message), status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        message = f"{_field(first.get('loc', ()))}: {first.get('msg', 'invalid')}"
        return JSONResponse(body("invalid_request", message), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            body(f"http_{exc.status_code}", str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", action="http_error", path=request.url.path)
        return JSONResponse(body("internal_error", "internal error"), status_code=500)

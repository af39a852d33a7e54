"""The app factory: `create_app(settings)`; the lifespan opens the store and runs the worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import reelwatch
from reelwatch import assembly, front, metrics
from reelwatch import clock as clock_module
from reelwatch.providers.base import Provider
from reelwatch.settings import Settings
from reelwatch.web import access, api, cron, dashboard, errors, events, ops, videos, webhooks

log = structlog.get_logger("reelwatch.web")

MAX_BODY_BYTES = 25 * 1024 * 1024  # a 20 MiB reference image plus the form around it


class BodyLimit:
    """Refuse request bodies over a limit, by Content-Length or while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise errors.ApiError(413, "too_large", "request body too large")
            return message

        await self.app(scope, counted, send)


class NoNulBytes:
    """Refuse NUL characters in the path or query: no text column can hold them (PostgreSQL
    rejects them outright), so they can only be an attack or a mistake."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote_to_bytes(scope.get("query_string", b""))
            if "\x00" in scope.get("path", "") or b"\x00" in query:
                await _refuse(send, 400, "invalid_request", "NUL characters are not allowed")
                return
        await self.app(scope, receive, send)


async def _too_large(send: Send) -> None:
    await _refuse(send, 413, "too_large", "request body too large")


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    payload = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def create_app(
    settings: Settings,
    *,
    clock: clock_module.Clock | None = None,
    provider: Provider | None = None,
    run_worker: bool = True,
) -> FastAPI:
    """The HTTP API (and dashboard); with `run_worker`, the background worker in-process too."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collected = metrics.Metrics()
        written = asyncio.Event()
        async with assembly.open_service(settings, clock=clock, provider=provider) as svc:
            svc.on_event_written(written.set)
            svc.attach_metrics(collected)
            app.state.service = svc
            app.state.front = front.Front(svc)  # /v1/videos (web/videos.py)
            app.state.metrics = collected
            hub = events.Hub(svc, written)
            app.state.event_hub = hub
            stop = asyncio.Event()
            worker = None
            app.state.runs_worker = False
            if run_worker and svc.has_workers:
                collected.track_worker()
                worker = asyncio.create_task(svc.run(stop), name="reelwatch-workers")
                app.state.runs_worker = True
            try:
                yield
            finally:
                stop.set()
                await hub.close()
                if worker is not None:
                    await worker

    app = FastAPI(
        title="reelwatch",
        version=reelwatch.__version__,
        description="Submit, monitor and download asynchronous AI video generations.",
        lifespan=lifespan,
        # The API docs are served below, behind the same access rule as the API itself.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(access.require_user)])
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(access.require_user)])
    async def api_docs() -> HTMLResponse:
        # Swagger UI from our own static files (swagger-ui-dist 5, vendored with its licence):
        # FastAPI's default loads it from a CDN, and the page was blank offline.
        vendor = "/static/vendor/swagger-ui"
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="reelwatch API",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    errors.install(app)
    app.add_middleware(
        SessionMiddleware,
        secret_key=access.session_secret(settings.api_token),
        session_cookie="reelwatch_session",
        max_age=12 * 3600,
        same_site="strict",
    )
    app.add_middleware(access.SecureCookies)  # outside the sessions: sees their cookie
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(NoNulBytes)
    routers = (api.router, cron.router, webhooks.router, events.router, ops.router, videos.router)
    for router in (*routers, dashboard.router, dashboard.pages):
        app.include_router(router)
    app.add_exception_handler(dashboard.LoginRequired, dashboard.to_login)
    app.mount("/static", StaticFiles(directory=dashboard.HERE / "static"), name="static")
    return app

"""The app factory: `create_app(settings)`; the lifespan opens the store and runs the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import reelwatch
from reelwatch import clock as clock_module
from reelwatch import metrics, service
from reelwatch.providers.base import Provider
from reelwatch.settings import Settings
from reelwatch.web import api, cron, errors, events, ops, webhooks

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


async def _too_large(send: Send) -> None:
    payload = b'{"error":{"code":"too_large","message":"request body too large"}}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
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
        async with service.open_service(settings, clock=clock, provider=provider) as svc:
            svc.store.on_append(written.set)
            if svc.engine is not None:
                svc.engine.metrics = collected
            app.state.service = svc
            app.state.metrics = collected
            app.state.events_written = written
            stop = asyncio.Event()
            worker = None
            if run_worker and svc.engine is not None:
                worker = asyncio.create_task(svc.engine.run(stop), name="reelwatch-worker")
            try:
                yield
            finally:
                stop.set()
                if worker is not None:
                    await worker

    app = FastAPI(
        title="reelwatch",
        version=reelwatch.__version__,
        description="Submit, monitor and download asynchronous AI video generations.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    for router in (api.router, cron.router, webhooks.router, events.router, ops.router):
        app.include_router(router)
    return app

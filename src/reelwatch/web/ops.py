"""Operations: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from reelwatch import exceptions, metrics, service
from reelwatch.web import access

router = APIRouter()


@router.get("/metrics", dependencies=[Depends(access.require_user)])
async def prometheus(request: Request) -> Response:
    svc: service.Service = request.app.state.service
    collected: metrics.Metrics = request.app.state.metrics
    await collected.refresh(svc.store, svc.clock.now())
    return Response(collected.render(), media_type=metrics.CONTENT_TYPE)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The database answers."""
    svc: service.Service = request.app.state.service
    try:
        await svc.store.ping()
    except Exception as exc:  # any driver failure means not ready
        reason = exc.message if isinstance(exc, exceptions.ReelwatchError) else type(exc).__name__
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ok"})

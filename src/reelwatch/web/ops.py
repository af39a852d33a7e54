"""Operations: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from reelwatch import engine, exceptions, metrics, service, store
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
    """Ready when the database answers and, if this process runs a worker, the worker runs
    and its last step reached the database; otherwise 503 with the reason in words."""
    svc: service.Service = request.app.state.service
    try:
        await svc.store.ping()
    except Exception as exc:  # any driver failure means not ready
        trouble = store.database_error(exc)
        if trouble is not None:
            reason = f"database unreachable: {trouble.reason}"
        elif isinstance(exc, exceptions.ReelwatchError):
            reason = exc.message
        else:
            reason = type(exc).__name__
        return _unavailable(reason)
    health: engine.Health | None = request.app.state.worker
    if health is not None:
        # The loop reaches the database at least every few seconds, however idle it is.
        why = health.trouble(stalled_after_s=STALLED_AFTER_S)
        if why is not None:
            return _unavailable(why)
    return JSONResponse({"status": "ok"})


STALLED_AFTER_S = 60.0


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

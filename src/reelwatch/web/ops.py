"""Operations: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from reelwatch import metrics, service
from reelwatch.web import access

router = APIRouter()


@router.get("/metrics", dependencies=[Depends(access.require_user)])
async def prometheus(request: Request) -> Response:
    svc: service.Service = request.app.state.service
    collected: metrics.Metrics = request.app.state.metrics
    await svc.refresh_metrics(collected)
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
    why = await svc.unready(workers=request.app.state.runs_worker, stalled_after_s=STALLED_AFTER_S)
    if why is not None:
        return _unavailable(why)
    return JSONResponse({"status": "ok"})


STALLED_AFTER_S = 60.0


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

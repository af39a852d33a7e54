"""The seed's cron route: one cycle of the same engine the worker runs, behind CRON_SECRET."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from reelwatch import service
from reelwatch.web import access
from reelwatch.web.errors import ApiError

router = APIRouter()


# The path is the original monitor's, kept for the schedulers that call it (../shared/CONTRACT.md);
# it runs a cycle for every configured provider.
@router.get("/api/cron/poll-sora-status")
async def poll(request: Request) -> dict[str, Any]:
    """Run one worker cycle; answers the cycle summary. `Authorization: Bearer $CRON_SECRET`.

    Overlapping calls are safe: each claims only rows nobody holds a lease on, so a second
    call while the first runs finds nothing to do and answers at once.
    """
    secret = request.app.state.settings.cron_secret
    if not secret:
        raise ApiError(503, "cron_disabled", "the cron route is off: CRON_SECRET is not set")
    if not access.secret_matches(request.headers.get("authorization"), secret):
        raise ApiError(401, "unauthorized", "wrong or missing cron secret")
    svc: service.Service = request.app.state.service
    svc.require_engine()  # at least the default provider is configured, or a clear 503
    summary = await svc.cycle()
    return summary.to_json()

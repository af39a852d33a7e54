"""Webhooks in: `POST /api/webhooks/{provider}`, verified with that provider's scheme on the raw
body (the adapter's `verify_webhook`), each delivery id applied once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reelwatch import exceptions, service
from reelwatch.providers.base import WebhookMalformed, WebhookRejected
from reelwatch.web.errors import ApiError

MAX_BODY_BYTES = 256 * 1024

router = APIRouter()


@router.post("/api/webhooks/{provider}")
async def receive(provider: str, request: Request) -> JSONResponse:
    """Verify, record the delivery once, make the generation due now; the engine does the rest."""
    svc: service.Service = request.app.state.service
    metrics = request.app.state.metrics
    payload = await request.body()
    if len(payload) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "webhook body too large")
    try:
        outcome = await svc.webhook(provider, request.headers, payload)
    except exceptions.InvalidInput as exc:
        raise ApiError(404, "not_found", exc.message) from None
    except exceptions.ConfigError as exc:
        raise ApiError(503, "webhooks_disabled", exc.message) from None
    except WebhookMalformed as exc:
        metrics.webhooks.labels("malformed").inc()
        raise ApiError(400, "invalid_request", exc.message) from None
    except WebhookRejected as exc:
        metrics.webhooks.labels("rejected").inc()
        raise ApiError(400, "invalid_signature", exc.message) from None
    metrics.webhooks.labels(outcome).inc()
    return JSONResponse({"received": True, "handled": outcome == "applied", "result": outcome})

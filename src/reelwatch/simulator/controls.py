"""Test controls under /_sim (no auth): faults, clock, shutdown mode, webhook tampering, stats,
the fal and Veo webhook key rotations and the Replicate webhook secret.

They let another process (a demo, a benchmark, the CLI) steer a simulator the way in-process tests
steer `Simulator` directly. Bad input answers 400 in the API's error envelope.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelwatch.simulator import faults
from reelwatch.simulator.config import SimConfig

if TYPE_CHECKING:
    from reelwatch.simulator.state import Simulator


def routes(sim: Simulator) -> list[Route]:
    """The /_sim routes of one simulator."""
    controls = _Controls(sim)
    return [
        Route("/_sim/health", controls.health, methods=["GET"]),
        Route("/_sim/stats", controls.stats, methods=["GET"]),
        Route("/_sim/jobs", controls.jobs, methods=["GET"]),
        Route("/_sim/faults", controls.inject, methods=["POST"]),
        Route("/_sim/reset-faults", controls.reset_faults, methods=["POST"]),
        Route("/_sim/clock/advance", controls.advance, methods=["POST"]),
        Route("/_sim/shutdown", controls.set_shutdown, methods=["POST"]),
        Route("/_sim/webhooks/tamper", controls.tamper, methods=["POST"]),
        Route("/_sim/fal/rotate-key", controls.rotate_fal_key, methods=["POST"]),
        Route("/_sim/veo/rotate-key", controls.rotate_veo_key, methods=["POST"]),
        Route("/_sim/replicate/webhook-secret", controls.replicate_secret, methods=["GET"]),
        Route("/_sim/reset", controls.reset, methods=["POST"]),
    ]


def _refuse(message: str) -> Response:
    return JSONResponse(faults.error_body(message, "invalid_request_error"), 400)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object sent; anything else is a 400 (through the app's HTTPException handler)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise HTTPException(400, "The body must be JSON.") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "The body must be a JSON object.")
    return body


class _Controls:
    """Handlers of the /_sim routes."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def health(self, request: Request) -> Response:
        """GET /_sim/health: the server answers."""
        return JSONResponse({"ok": True})

    async def stats(self, request: Request) -> Response:
        """GET /_sim/stats."""
        return JSONResponse(self._sim.stats())

    async def jobs(self, request: Request) -> Response:
        """GET /_sim/jobs: every job's creation and scripted finish time (benchmarks need them)."""
        return JSONResponse(self._sim.timeline())

    async def inject(self, request: Request) -> Response:
        """POST /_sim/faults `{route, kind, count?, video_id?, ...params}`."""
        body = await _body(request)
        try:
            self._sim.inject(**body)
        except (TypeError, ValueError) as exc:
            return _refuse(str(exc))
        return JSONResponse({"faults": self._sim.faults.pending()})

    async def reset_faults(self, request: Request) -> Response:
        """POST /_sim/reset-faults."""
        self._sim.reset_faults()
        return JSONResponse({"faults": []})

    async def advance(self, request: Request) -> Response:
        """POST /_sim/clock/advance `{seconds}`."""
        body = await _body(request)
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or seconds < 0:
            return _refuse("seconds must be a number >= 0")
        now = self._sim.clock.advance(float(seconds))
        return JSONResponse({"now": now, "offset_s": self._sim.clock.offset_s})

    async def set_shutdown(self, request: Request) -> Response:
        """POST /_sim/shutdown `{enabled}`."""
        body = await _body(request)
        self._sim.set_shutdown(bool(body.get("enabled", True)))
        return JSONResponse({"shutdown": self._sim.shutdown})

    async def tamper(self, request: Request) -> Response:
        """POST /_sim/webhooks/tamper `{duplicate?, timestamp_offset_s?, bad_signature?,
        dialect?}` (dialect: openai, replicate, fal or veo-gemini; absent: the next delivery of
        any)."""
        body = await _body(request)
        try:
            self._sim.tamper_next_webhook(**body)
        except (TypeError, ValueError) as exc:
            return _refuse(str(exc))
        return JSONResponse({"ok": True})

    async def rotate_fal_key(self, request: Request) -> Response:
        """POST /_sim/fal/rotate-key: sign fal webhooks with a new key pair from now on."""
        kid = self._sim.rotate_fal_key()
        return JSONResponse({"kid": kid, "jwks": self._sim.fal_keys.jwks()})

    async def rotate_veo_key(self, request: Request) -> Response:
        """POST /_sim/veo/rotate-key: sign dynamic Veo webhooks with a new RSA key from now on."""
        kid = self._sim.rotate_veo_key()
        return JSONResponse({"kid": kid, "jwks": self._sim.veo_keys.jwks()})

    async def replicate_secret(self, request: Request) -> Response:
        """GET /_sim/replicate/webhook-secret: the secret Replicate webhooks are signed with."""
        return JSONResponse({"key": self._sim.replicate_webhook_secret})

    async def reset(self, request: Request) -> Response:
        """POST /_sim/reset with optional SimConfig fields: a fresh simulator, same server."""
        body = await _body(request)
        known = {f.name for f in fields(SimConfig)}
        try:
            if set(body) - known:
                raise ValueError(f"unknown config fields {sorted(set(body) - known)}")
            for name in ("queue_s", "render_s"):
                if name in body:
                    body[name] = tuple(body[name])
            config = SimConfig(**body) if body else None
        except (TypeError, ValueError) as exc:
            return _refuse(str(exc))
        self._sim.reset(config)
        return JSONResponse({"ok": True})

"""The OpenAI-shaped front: code written for OpenAI's Videos API (Sora) runs on any provider.

`reelwatch serve` answers `/v1/videos` (web/videos.py). Each create becomes a generation on the
provider its model is routed to (`providers/front_routes.py`), bound to an id of the front's
own (`video_...`), and from then on reelwatch does what it does for every generation: it
watches it on its own schedule, stores the file, keeps the history. A client's status polls
are answered from the database, however often they come, and `completed` is said only once the
video is stored, so a `download_content` right after `create_and_poll` always finds it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from reelwatch import exceptions, service
from reelwatch.models import FrontVideo, Generation, Status, Variant
from reelwatch.providers import front_routes

PREFIX = "/v1/"
"""The front's paths; their errors are in the API's shape (`error_body`), which its SDK reads."""
ID_PREFIX = "video_"
MAX_PAGE = 100
BUSY_RETRY_S = 10.0  # what a client at its limit of running videos is told to wait
OPENAI_STATUS = {
    Status.PENDING: "queued",
    Status.QUEUED: "queued",
    Status.IN_PROGRESS: "in_progress",
    Status.DOWNLOADING: "in_progress",  # completed only once the video is stored
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "failed",  # the API has no cancelled
}


def new_id() -> str:
    """`video_` and 48 hex digits, as OpenAI's ids look."""
    return ID_PREFIX + secrets.token_hex(24)


class Front:
    """The videos of the OpenAI-shaped front, per client (a client sees only its own)."""

    def __init__(self, svc: service.Service) -> None:
        self.svc = svc
        self.routes = front_routes.routes(svc.settings.model_routes)
        settings = svc.settings
        self._rates = {
            name: limits.parse(rate)
            for name, rate in (
                ("create", settings.client_create_rate),
                ("request", settings.client_request_rate),
            )
            if rate
        }
        # Per server process, in memory (the `limits` library's moving window).
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def admit(self, client: str, what: str) -> None:
        """Count a client's request ("request", "create") against its rate; Busy with the
        wait when it is over."""
        rate = self._rates.get(what)
        if rate is None or await self._limiter.hit(rate, what, client):
            return
        stats = await self._limiter.get_window_stats(rate, what, client)
        wait = max(1.0, stats.reset_time - time.time())
        raise exceptions.Busy(f"Rate limit reached for {what}s: {rate}", retry_after_s=wait)

    async def create(
        self,
        client: str,
        *,
        prompt: str,
        model: str | None,
        seconds: str | None,
        size: str | None,
        input_reference: Path | None = None,
    ) -> tuple[FrontVideo, Generation]:
        """Route, translate and submit; the front's id is written with the generation."""
        model = model or "sora-2"
        route = front_routes.route(self.routes, model)
        params = route.translate(model, seconds, size)
        await self.admit(client, "create")  # in memory: before the database is asked
        running = await self.svc.store.front_active(client)
        most = self.svc.settings.client_max_active
        if running >= most:
            raise exceptions.Busy(
                f"Too many videos being made at once: {running} of {most} "
                "(REELWATCH_CLIENT_MAX_ACTIVE); try again when one has finished",
                retry_after_s=BUSY_RETRY_S,
            )
        request = service.SubmitRequest(
            prompt, route.provider, route.model, params, input_reference
        )
        made: list[FrontVideo] = []

        def bind(g: Generation) -> FrontVideo:
            video = FrontVideo(
                id=new_id(),
                generation_id=g.id,
                client=client,
                model=model,
                seconds=seconds or front_routes.DEFAULT_SECONDS,
                size=size or front_routes.DEFAULT_SIZE,
                created_at=g.created_at,
            )
            made.append(video)
            return video

        g = await self.svc.submit(request, actor=f"v1:{client}", front=bind)
        return made[0], g

    async def get(self, client: str, video_id: str) -> tuple[FrontVideo, Generation]:
        video, g = await self.svc.store.front_video(video_id, client)
        await self.svc.learn([g])  # its shape's history, for the ETA
        return video, g

    async def page(
        self, client: str, *, after: str | None, limit: int, newest_first: bool
    ) -> tuple[list[tuple[FrontVideo, Generation]], bool]:
        if not 0 <= limit <= MAX_PAGE:
            raise exceptions.InvalidInput(f"limit: must be between 0 and {MAX_PAGE}")
        found, more = await self.svc.store.front_page(
            client, after=after, limit=limit, newest_first=newest_first
        )
        await self.svc.learn([g for _, g in found])
        return found, more

    async def delete(self, client: str, video_id: str) -> None:
        """Forget a finished video at the front (its generation and history stay in
        reelwatch); one still being made is refused, as the API refuses it."""
        _, g = await self.svc.store.front_video(video_id, client)
        if g.active:
            raise exceptions.NotAllowed(
                f"{video_id} is still being made; delete it once it is completed or failed"
            )
        await self.svc.store.delete_front_video(video_id, client, now=self.svc.clock.now())

    async def content(self, client: str, video_id: str, variant: Variant) -> Any:
        """Where the stored asset is (see `Service.content`); "not ready" before that."""
        _, g = await self.svc.store.front_video(video_id, client)
        if g.status is not Status.COMPLETED:
            raise exceptions.NotFound("Video is not ready yet, use GET /v1/videos/{id} to check")
        if variant not in g.assets:
            raise exceptions.NotFound(f"{video_id} has no {variant.value}")
        return await self.svc.content(g.id, variant)

    def to_json(self, video: FrontVideo, g: Generation) -> dict[str, Any]:
        """The OpenAI Video object, plus what reelwatch knows beyond it under `reelwatch`
        (the SDK keeps unknown fields)."""
        view = self.svc.view(g)
        done = g.completed_at if g.terminal else None
        if g.terminal and done is None:
            done = g.updated_at
        return {
            "id": video.id,
            "object": "video",
            "model": video.model,
            "status": OPENAI_STATUS[g.status],
            "progress": 100 if g.status is Status.COMPLETED else min(g.progress, 99),
            "created_at": _unix(video.created_at),
            "completed_at": _unix(done),
            "expires_at": _unix(self._expires_at(g)),
            "prompt": g.prompt,
            "size": video.size,
            "seconds": video.seconds,
            "remixed_from_video_id": video.remixed_from,
            "error": _error(g),
            "reelwatch": {
                "generation_id": g.id,
                "provider": g.provider,
                "model": g.model,
                "step": view["step"],
                "eta": view["eta"],
                "eta_text": view["eta_text"],
            },
        }

    def _expires_at(self, g: Generation) -> datetime | None:
        """When reelwatch deletes the stored files (REELWATCH_RETENTION_DAYS), if it does."""
        days = self.svc.settings.retention_days
        if g.status is not Status.COMPLETED or days is None or g.completed_at is None:
            return None
        return g.completed_at + timedelta(days=days)


def error_body(status: int, code: str | None, message: str, param: str | None = None) -> Any:
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI's API answers."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    if status == 429:
        kind = "rate_limit_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _unix(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _error(g: Generation) -> Mapping[str, str] | None:
    if g.status is Status.CANCELLED:
        return {"code": "cancelled", "message": "The video was cancelled."}
    if g.status is not Status.FAILED:
        return None
    if g.error is None:
        return {"code": "failed", "message": "The video failed."}
    return {"code": g.error.code, "message": g.error.message}

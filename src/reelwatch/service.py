"""The one service layer: submit, track, look, reset, retry, cancel. CLI, HTTP and dashboard use it.

Input is checked before anything is written; a bad request raises `exceptions.InvalidInput`
and changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from reelwatch import attention, clock, engine, exceptions, lifecycle, storage
from reelwatch.models import (
    Event,
    Generation,
    NewEvent,
    Status,
    estimated_cost_usd,
)
from reelwatch.providers import openai as openai_provider
from reelwatch.providers.base import Provider
from reelwatch.settings import Settings
from reelwatch.store import Page, Store

log = structlog.get_logger("reelwatch.service")

MODELS = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-2025-12-08",
    "sora-2-pro-2025-10-06",
)
SECONDS = (4, 8, 12, 16, 20)
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PRO_SIZES = ("1920x1080", "1080x1920")
MAX_PROMPT = 32000
REFERENCE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
MAX_REFERENCE_BYTES = 20 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitRequest:
    prompt: str
    model: str = "sora-2"
    seconds: int = 4
    size: str = "720x1280"
    input_reference: Path | None = None


def validate(request: SubmitRequest) -> None:
    """Raise InvalidInput naming the first bad field; nothing is written before this passes."""
    if not request.prompt or not request.prompt.strip():
        raise exceptions.InvalidInput("prompt: must not be empty")
    if "\x00" in request.prompt:
        raise exceptions.InvalidInput("prompt: must not contain NUL characters")
    if len(request.prompt) > MAX_PROMPT:
        raise exceptions.InvalidInput(
            f"prompt: {len(request.prompt)} characters; at most {MAX_PROMPT} are allowed"
        )
    if request.model not in MODELS:
        raise exceptions.InvalidInput(
            f"model: unknown model {request.model!r}; choose one of {', '.join(MODELS)}"
        )
    if request.seconds not in SECONDS:
        raise exceptions.InvalidInput(
            f"seconds: {request.seconds} is not one of {', '.join(map(str, SECONDS))}"
        )
    sizes = SIZES + (PRO_SIZES if request.model.startswith("sora-2-pro") else ())
    if request.size not in sizes:
        raise exceptions.InvalidInput(
            f"size: {request.size!r} is not one of {', '.join(sizes)} for {request.model}"
        )
    ref = request.input_reference
    if ref is not None:
        if not ref.is_file():
            raise exceptions.InvalidInput(f"input_reference: no such file {str(ref)!r}")
        if ref.suffix.lower() not in REFERENCE_TYPES:
            raise exceptions.InvalidInput("input_reference: must be a .jpg, .png or .webp image")
        if ref.stat().st_size > MAX_REFERENCE_BYTES:
            raise exceptions.InvalidInput("input_reference: larger than 20 MiB")


def new_id() -> str:
    return f"gen_{secrets.token_hex(12)}"


def to_json(g: Generation, now: datetime, *, stuck: bool = False) -> dict[str, Any]:
    """A generation as users and scripts see it (../shared/CONTRACT.md, plus a few extras)."""
    eta = g.eta_seconds(now)
    end = g.completed_at or (g.updated_at if g.terminal else None) or now
    return {
        "id": g.id,
        "provider": g.provider,
        "video_id": g.video_id,
        "status": g.status.value,
        "progress": g.progress,
        "step": g.step,
        "eta_seconds": None if eta is None else round(eta, 1),
        "model": g.model,
        "seconds": g.seconds,
        "size": g.size,
        "prompt": g.prompt,
        "created_at": _iso(g.created_at),
        "submitted_at": _iso(g.submitted_at),
        "completed_at": _iso(g.completed_at),
        "expires_at": _iso(g.expires_at),
        "error": None if g.error is None else {"code": g.error.code, "message": g.error.message},
        "attempts": g.attempts,
        "next_poll_at": _iso(g.next_poll_at),
        "elapsed_seconds": round(max(0.0, (end - g.created_at).total_seconds()), 1),
        "suspected_stuck": stuck,
        "attention": g.attention,
        "assets": {
            variant.value: {
                "bytes": asset.bytes,
                "sha256": asset.sha256,
                "content_type": asset.content_type,
                "url": f"/api/generations/{g.id}/content?variant={variant.value}",
            }
            for variant, asset in g.assets.items()
        },
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "generation_id": event.generation_id,
        "at": _iso(event.at),
        "kind": event.kind,
        "status": event.status.value,
        "progress": event.progress,
        "actor": event.actor,
        "data": dict(event.data),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def build_provider(settings: Settings, clock: clock.Clock) -> Provider:
    if not settings.openai_api_key:
        raise exceptions.ConfigError(
            "OPENAI_API_KEY is not set (or run `reelwatch demo` to use the built-in simulator)"
        )
    return openai_provider.OpenAIVideos(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        timeout_s=settings.request_timeout_seconds,
        clock=clock,
    )


class Service:
    """Everything a user can ask of reelwatch, over one store and (when needed) one provider."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        storage: storage.LocalStorage,
        clock: clock.Clock,
        provider: Provider | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.clock = clock
        self.provider = provider
        self.engine = (
            None
            if provider is None
            else engine.Engine(
                store=store, provider=provider, storage=storage, settings=settings, clock=clock
            )
        )

    def require_engine(self) -> engine.Engine:
        if self.engine is None:
            raise exceptions.ConfigError("OPENAI_API_KEY is not set")
        return self.engine

    async def submit(self, request: SubmitRequest, *, actor: str = "cli") -> Generation:
        """Record a new generation, then submit it to the provider right away."""
        validate(request)
        runner = self.require_engine()
        now = self.clock.now()
        generation = Generation(
            id=new_id(),
            provider=runner.provider.name,
            video_id=None,
            status=Status.PENDING,
            progress=0,
            model=request.model,
            seconds=request.seconds,
            size=request.size,
            prompt=request.prompt,
            created_at=now,
            watch_started_at=now,
            next_poll_at=now,
        )
        if request.input_reference is not None:
            key = await self._keep_reference(generation.id, request.input_reference)
            generation = dataclasses.replace(generation, input_reference=key)
        data = {
            "model": request.model,
            "seconds": request.seconds,
            "size": request.size,
            "estimated_cost_usd": estimated_cost_usd(request.model, request.seconds, request.size),
        }
        claim = await self.store.create(
            generation,
            NewEvent("created", data, actor=actor),
            owner=runner.owner,
            now=now,
            lease_s=self.settings.lease_seconds,
        )
        return await runner.advance(claim)

    async def _keep_reference(self, generation_id: str, path: Path) -> str:
        """Copy the reference image into storage, so a later retry can send it again."""
        key = f"{generation_id}/reference{path.suffix.lower()}"

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as handle:
                while block := handle.read(256 * 1024):
                    yield block

        await self.storage.put_stream(key, chunks())
        return key

    async def track(self, video_id: str, *, actor: str = "cli") -> Generation:
        """Monitor a video created elsewhere; the provider must know it."""
        video_id = video_id.strip()
        if not video_id:
            raise exceptions.InvalidInput("video_id: must not be empty")
        if "\x00" in video_id:
            raise exceptions.InvalidInput("video_id: must not contain NUL characters")
        runner = self.require_engine()
        if await self.store.find(runner.provider.name, video_id) is not None:
            raise exceptions.InvalidInput(f"video_id: {video_id} is already tracked")
        try:
            remote = await runner.provider.retrieve(video_id)
        except exceptions.ProviderNotFound as exc:
            raise exceptions.InvalidInput(
                f"video_id: the provider does not know {video_id}"
            ) from exc
        now = self.clock.now()
        generation = Generation(
            id=new_id(),
            provider=runner.provider.name,
            video_id=video_id,
            status=Status.QUEUED,
            progress=0,
            model=remote.model or "unknown",
            seconds=int(remote.seconds) if remote.seconds and remote.seconds.isdigit() else 0,
            size=remote.size or "unknown",
            prompt=remote.prompt or "",
            created_at=now,
            watch_started_at=now,
            submitted_at=remote.created_at or now,
            next_poll_at=now,
        )
        claim = await self.store.create(
            generation,
            NewEvent("tracked", {"video_id": video_id}, actor=actor),
            owner=runner.owner,
            now=now,
            lease_s=self.settings.lease_seconds,
        )
        claim, _ = await self.store.apply(
            claim,
            lifecycle.decide(claim.generation, lifecycle.Polled(remote), now, runner.policy),
            now=now,
        )
        return claim.generation

    async def get(self, generation_id: str) -> Generation:
        return await self.store.get(generation_id)

    def view(self, g: Generation) -> dict[str, Any]:
        """`to_json` with the facts that need settings (whether it looks stuck)."""
        now = self.clock.now()
        policy = engine.policy_from(self.settings)
        return to_json(g, now, stuck=attention.suspected_stuck(g, now, policy))

    async def page(
        self,
        *,
        statuses: Sequence[Status] = (),
        model: str | None = None,
        text: str | None = None,
        error_code: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        if not 1 <= limit <= 1000:
            raise exceptions.InvalidInput("limit: must be between 1 and 1000")
        return await self.store.page(
            statuses=statuses,
            model=model,
            text=text,
            error_code=error_code,
            since=since,
            limit=limit,
            cursor=cursor,
        )

    async def history(self, generation_id: str) -> list[Event]:
        return await self.store.history(generation_id)

    async def quote_retry(self, generation_id: str) -> tuple[Generation, float | None]:
        """What a retry would cost; NotAllowed unless the generation failed. Writes nothing."""
        g = await self.store.get(generation_id)
        if g.status is not Status.FAILED:
            raise exceptions.NotAllowed(
                f"only failed generations can be retried; {g.id} is {g.status.value}"
            )
        return g, estimated_cost_usd(g.model, g.seconds, g.size)

    async def reset(
        self, generation_id: str, *, actor: str = "cli", now_too: bool = False
    ) -> Generation:
        """Forget what was seen and poll again from scratch (free)."""
        generation = await self._act(generation_id, lifecycle.Reset(actor))
        return await self._advance_now(generation) if now_too else generation

    async def retry(
        self, generation_id: str, *, actor: str = "cli", now_too: bool = False
    ) -> Generation:
        """Resubmit a failed generation (paid); with `now_too`, submit before returning."""
        generation = await self._act(generation_id, lifecycle.Retry(actor))
        return await self._advance_now(generation) if now_too else generation

    async def _advance_now(self, generation: Generation) -> Generation:
        """Take one step at once instead of waiting for a worker (if no worker holds it)."""
        runner = self.require_engine()
        claim = await self.store.claim(
            generation.id,
            owner=runner.owner,
            now=self.clock.now(),
            lease_s=self.settings.lease_seconds,
        )
        return generation if claim is None else await runner.advance(claim)

    async def cancel(self, generation_id: str, *, actor: str = "cli") -> Generation:
        return await self._act(generation_id, lifecycle.Cancel(actor))

    async def _act(self, generation_id: str, observation: lifecycle.Observation) -> Generation:
        now = self.clock.now()
        policy = engine.policy_from(self.settings)
        generation, _ = await self.store.act(
            generation_id, lambda g: lifecycle.decide(g, observation, now, policy), now=now
        )
        if self.engine is not None:
            self.engine.wake()
        return generation

    async def webhook(
        self, webhook_id: str, video_id: str, observation: lifecycle.WebhookReceived
    ) -> str:
        """Record a verified delivery once and make its generation due now.

        Returns "applied", "duplicate" (this webhook-id was seen before) or "unknown_video".
        """
        provider = self.provider.name if self.provider is not None else "openai"
        now = self.clock.now()
        policy = engine.policy_from(self.settings)
        outcome = await self.store.record_webhook(
            webhook_id,
            provider=provider,
            video_id=video_id,
            event_type=observation.event_type,
            decide=lambda g: lifecycle.decide(g, observation, now, policy),
            now=now,
        )
        if outcome == "applied" and self.engine is not None:
            self.engine.wake()
        return outcome

    async def counts(self) -> Mapping[Status, int]:
        return await self.store.count_by_status()


@asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    clock: clock.Clock | None = None,
    provider: Provider | None = None,
    need_provider: bool = False,
    wait_for_database: bool = False,
) -> AsyncIterator[Service]:
    """Open the store (migrating it), the storage and, if asked or configured, the provider.

    With `wait_for_database` (the long-running worker), an unreachable database is waited for,
    with a line logged per try, instead of being an error: a restart could not do better.
    """
    the_clock = clock or _system_clock
    store = await (
        _open_patiently(settings) if wait_for_database else Store.open(settings.database_url)
    )
    owned: Provider | None = None
    try:
        if provider is None and (need_provider or settings.openai_api_key):
            provider = owned = build_provider(settings, the_clock)
        yield Service(
            settings=settings,
            store=store,
            storage=storage.LocalStorage(settings.storage_path),
            clock=the_clock,
            provider=provider,
        )
    finally:
        if owned is not None:
            await owned.aclose()
        await store.close()


async def _open_patiently(settings: Settings) -> Store:
    delay = 0.5
    while True:
        try:
            return await Store.open(settings.database_url)
        except exceptions.DatabaseUnavailable as exc:
            log.warning(f"{exc.message}; trying again in {delay:g}s", action="db_wait")
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


_system_clock = clock.SystemClock()

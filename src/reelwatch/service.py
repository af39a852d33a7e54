"""The one service layer: submit, track, look, reset, retry, cancel. CLI, HTTP and dashboard use it.

Input is checked before anything is written; a bad request raises `exceptions.InvalidInput`
and changes nothing. Providers are reached through the registry (`reelwatch.providers`): the
service knows them by name and by what their catalogue and capabilities say, never by module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import mimetypes
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from reelwatch import (
    attention,
    clock,
    exceptions,
    lifecycle,
    predict,
    presenter,
    providers,
)
from reelwatch import storage as storage_module
from reelwatch.engine import Engine, Histories, Summary, policy_from
from reelwatch.engine import supervised as engine_supervised
from reelwatch.models import (
    Asset,
    Event,
    EventKind,
    FrontVideo,
    Generation,
    NewEvent,
    Status,
    Variant,
)
from reelwatch.providers import base
from reelwatch.providers.base import Catalogue, Endpoint, Provider, Ref, WebhookVerifier
from reelwatch.schedule import Policy
from reelwatch.settings import Settings

# What `content` answers, for the web layer (which does not import storage itself).
from reelwatch.storage import LocalFile as LocalFile
from reelwatch.storage import Redirect as Redirect
from reelwatch.storage import Served as Served
from reelwatch.storage import Streamed as Streamed
from reelwatch.store import ORDERS, Page, Store, database_error

if TYPE_CHECKING:
    from reelwatch import metrics  # prometheus_client: imported by those that collect metrics
    from reelwatch.outbox import Sender

log = structlog.get_logger("reelwatch.service")

MAX_PROMPT = 32000
# Events written elsewhere that make a generation due now (the rest are a worker's own steps).
WAKING_KINDS = frozenset({"created", "tracked", "retry", "reset", "webhook"})
MAX_REFERENCE_BYTES = 20 * 1024 * 1024
MAX_REFERENCE_PIXELS = 8192 * 8192  # larger is no frame of a video, and a decompression bomb
# Pillow's format names for the kinds of image a provider takes, with the suffix kept.
REFERENCE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


@dataclasses.dataclass(frozen=True, slots=True)
class Quote:
    provider: str
    model: str
    inputs: base.Inputs
    cost_usd: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class ReferenceImage:
    suffix: str  # from the content, not the file's name
    width: int
    height: int


def reference_image(path: Path) -> ReferenceImage:
    """Read an input reference's header (Pillow) and check it is a whole JPEG, PNG or WebP
    image: an extension proves nothing (a text file named .png used to be sent and paid)."""
    from PIL import Image, UnidentifiedImageError  # ~30 ms: only where a reference is given

    if not path.is_file():
        raise exceptions.InvalidInput(f"input_reference: no such file {str(path)!r}")
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        raise exceptions.InvalidInput("input_reference: larger than 20 MiB")
    try:
        with Image.open(path) as image:
            kind, (width, height) = image.format, image.size
            if width * height > MAX_REFERENCE_PIXELS:
                raise exceptions.InvalidInput(f"input_reference: {width}x{height} is too large")
            image.verify()  # the structure past the header (PNG chunks and their CRCs)
    except exceptions.InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise exceptions.InvalidInput(
            "input_reference: not a readable JPEG, PNG or WebP image"
        ) from None
    suffix = REFERENCE_FORMATS.get(kind or "")
    if suffix is None:
        raise exceptions.InvalidInput(
            f"input_reference: a {kind} image; it must be a JPEG, PNG or WebP image"
        )
    return ReferenceImage(suffix, width, height)


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitRequest:
    prompt: str
    provider: str | None = None  # None: the default provider
    model: str | None = None  # None: the provider's default model
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_reference: Path | None = None


def check_request(request: SubmitRequest) -> ReferenceImage | None:
    """Raise InvalidInput naming the first bad field of what every provider takes alike; the
    reference image's header as read, if there is one."""
    if not request.prompt or not request.prompt.strip():
        raise exceptions.InvalidInput("prompt: must not be empty")
    if "\x00" in request.prompt:
        raise exceptions.InvalidInput("prompt: must not contain NUL characters")
    if len(request.prompt) > MAX_PROMPT:
        raise exceptions.InvalidInput(
            f"prompt: {len(request.prompt)} characters; at most {MAX_PROMPT} are allowed"
        )
    if request.input_reference is None:
        return None
    return reference_image(request.input_reference)


def _check_frame(reference: ReferenceImage, size: str | None) -> None:
    """The reference is the first frame: its pixels must be the video's `WxH` (the API answers
    400 otherwise, after the generation was stored and counted)."""
    if size is None:
        return
    width, sep, height = size.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        return
    if (reference.width, reference.height) != (int(width), int(height)):
        raise exceptions.InvalidInput(
            f"input_reference: the image is {reference.width}x{reference.height};"
            f" as the first frame it must be the video's size, {size}"
        )


def new_id() -> str:
    return f"gen_{secrets.token_hex(12)}"


class Service:
    """Everything a user can ask of reelwatch, over one store and the configured providers."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        storage: storage_module.Storage,
        clock: clock.Clock,
        providers: Mapping[str, Provider] | None = None,
        verifiers: Mapping[str, WebhookVerifier] | None = None,
        endpoints: Mapping[str, Endpoint] | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender  # webhooks to clients (outbox.py), when configured
        self.store = store
        self.storage = storage
        self.clock = clock
        self.providers = dict(providers or {})
        self.verifiers = dict(verifiers or {})
        self.histories = Histories(store)
        self.engines = {
            name: Engine(
                store=store, provider=provider, storage=storage, settings=settings, clock=clock
            )
            for name, provider in self.providers.items()
        }
        # The endpoint each provider is served at here: its engine's, or, for a read-only
        # service that builds no provider (`endpoints`), the one its configuration names.
        self.endpoints = (
            dict(endpoints)
            if endpoints is not None
            else {name: runner.endpoint for name, runner in self.engines.items()}
        )
        self.default_provider = providers_default(settings, self.providers)
        self._policies: dict[str, Policy] = {}

    # --- providers ----------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """The default provider's worker (the one `submit` uses when none is named)."""
        return self.engines.get(self.default_provider)

    def require_engine(self, provider: str | None = None) -> Engine:
        """The worker of `provider` (default: the default one), or ConfigError naming the
        variable to set."""
        name = provider or self.default_provider
        providers.catalogue(name)  # InvalidInput for a name no adapter has
        found = self.engines.get(name)
        if found is None:
            missing = providers.config(name, self.settings).missing
            hint = f"{missing} is not set" if missing else "it is not configured here"
            raise exceptions.ConfigError(
                f"provider {name}: {hint} (or run `reelwatch demo` to use the simulator)"
            )
        return found

    def catalogue(self, provider: str) -> Catalogue:
        return providers.catalogue(provider)

    def policy(self, provider: str) -> Policy:
        """The schedule of one provider's generations (with its webhooks, polls are a net)."""
        policy = self._policies.get(provider)
        if policy is None:
            webhooks = provider in self.verifiers
            policy = self._policies[provider] = policy_from(self.settings, webhooks=webhooks)
        return policy

    def cost(self, g: Generation) -> float | None:
        """Estimated price of running `g` once more (None when the model's price is unknown)."""
        try:
            catalogue = providers.catalogue(g.provider)
        except exceptions.InvalidInput:
            return None
        prices = self.settings.prices.get(g.provider, {})
        return catalogue.estimate_cost(g.model, _params_of(g), prices)

    def served(self, g: Generation) -> bool:
        """Whether a worker configured here serves the endpoint `g` belongs to."""
        endpoint = self.endpoints.get(g.provider)
        return endpoint is not None and g.endpoint in (None, endpoint.base_url)

    def provider_names(self) -> tuple[str, ...]:
        return providers.NAMES

    def models(self) -> list[str]:
        """Every model of every provider (for filters), in registry order."""
        return [model for name in providers.NAMES for model in providers.catalogue(name).models]

    def describe_providers(self) -> list[dict[str, Any]]:
        """What `reelwatch providers` and `GET /api/providers` show."""
        described = []
        for name in providers.NAMES:
            catalogue = providers.catalogue(name)
            config = providers.config(name, self.settings)
            runner = self.engines.get(name)
            described.append(
                {
                    "name": name,
                    "configured": runner is not None,
                    "missing": None if runner is not None else config.missing,
                    "default": name == self.default_provider,
                    "base_url": config.base_url,
                    "webhooks": name in self.verifiers,
                    "models": list(catalogue.models),
                    "default_model": catalogue.default_model,
                    "capabilities": catalogue.capabilities.to_json(),
                }
            )
        return described

    async def run(self, stop: asyncio.Event, *, supervised: bool = True) -> None:
        """Every configured provider's worker, side by side, until `stop`. Supervised (as in
        `serve`), a worker that dies is restarted; otherwise its failure ends them all."""
        try:
            async with asyncio.TaskGroup() as group:
                for name, runner in self.engines.items():
                    work = engine_supervised(runner, stop) if supervised else runner.run(stop)
                    group.create_task(work, name=f"reelwatch-worker-{name}")
                if self.sender is not None:
                    group.create_task(self.sender.run(stop), name="reelwatch-webhooks-out")
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # one line for the user, as one worker gives

    async def cycle(self) -> Summary:
        """One cron cycle: every configured provider's due work, one provider after another."""
        total = Summary()
        for runner in self.engines.values():
            total.add(await runner.cycle())
        if self.sender is not None:
            await self.sender.run_once()
        return total

    # --- submit and track ---------------------------------------------------------------------

    async def submit(
        self,
        request: SubmitRequest,
        *,
        actor: str = "cli",
        front: Callable[[Generation], FrontVideo] | None = None,
    ) -> Generation:
        """Record a new generation, then submit it to the provider right away."""
        reference = check_request(request)
        quote = self.quote(request)
        name, model, inputs = quote.provider, quote.model, quote.inputs
        if reference is not None:
            if not self.catalogue(name).capabilities.input_reference:
                raise exceptions.InvalidInput(
                    f"input_reference: {name} takes no uploaded file; give an image URL as a"
                    " param (its model's input name, e.g. image)"
                )
            _check_frame(reference, inputs.size)
        runner = self.require_engine(name)
        now = self.clock.now()
        generation = Generation(
            id=new_id(),
            provider=name,
            endpoint=runner.endpoint.base_url,
            video_id=None,
            status=Status.PENDING,
            progress=0,
            model=model,
            seconds=inputs.seconds,
            size=inputs.size,
            params=inputs.params,
            prompt=request.prompt,
            created_at=now,
            watch_started_at=now,
            next_poll_at=now,
        )
        if request.input_reference is not None and reference is not None:
            key = await self._keep_reference(
                generation.id, request.input_reference, reference.suffix
            )
            generation = dataclasses.replace(generation, input_reference=key)
        data = {
            "provider": name,
            "model": model,
            "params": dict(inputs.params),
            "estimated_cost_usd": quote.cost_usd,
        }
        claim = await self.store.create(
            generation,
            NewEvent(EventKind.CREATED, data, actor=actor),
            owner=runner.owner,
            now=now,
            lease_s=self.settings.lease_seconds,
            front=None if front is None else front(generation),
        )
        return await runner.advance(claim)

    def quote(self, request: SubmitRequest) -> Quote:
        """The provider, model and inputs a create would send, checked, with the estimated
        cost: what `submit` records, and what the dashboard's form shows as you type."""
        name = request.provider or self.default_provider
        catalogue = providers.catalogue(name)
        model = request.model or catalogue.default_model
        inputs = catalogue.validate(model, request.params)
        prices = self.settings.prices.get(name, {})
        return Quote(name, model, inputs, catalogue.estimate_cost(model, inputs.params, prices))

    async def _keep_reference(self, generation_id: str, path: Path, suffix: str) -> str:
        """Copy the reference image into storage, so a later retry can send it again."""
        key = f"{generation_id}/reference{suffix}"

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as handle:
                while block := handle.read(256 * 1024):
                    yield block

        content_type = mimetypes.guess_type(key)[0]
        await self.storage.put_stream(key, chunks(), content_type=content_type)
        return key

    async def track(
        self, video_id: str, *, provider: str | None = None, actor: str = "cli"
    ) -> Generation:
        """Monitor a job created elsewhere; the provider must know it."""
        video_id = video_id.strip()
        if not video_id:
            raise exceptions.InvalidInput("video_id: must not be empty")
        if not base.plausible_id(video_id):
            raise exceptions.InvalidInput("video_id: 1 to 200 printable ASCII characters")
        runner = self.require_engine(provider)
        name = runner.name
        ref = runner.provider.catalogue.ref(video_id)
        video_id = ref.video_id
        if await self.store.find(name, video_id) is not None:
            raise exceptions.InvalidInput(f"video_id: {video_id} is already tracked")
        try:
            remote = await runner.provider.retrieve(ref)
        except exceptions.ProviderNotFound as exc:
            raise exceptions.InvalidInput(
                f"video_id: the provider does not know {video_id}"
            ) from exc
        now = self.clock.now()
        generation = Generation(
            id=new_id(),
            provider=name,
            endpoint=runner.endpoint.base_url,
            video_id=video_id,
            status=Status.QUEUED,
            progress=0,
            model=remote.model or "unknown",
            seconds=int(remote.seconds) if remote.seconds and remote.seconds.isdigit() else None,
            size=remote.size,
            params=remote.params,
            prompt=remote.prompt or "",
            created_at=now,
            watch_started_at=now,
            submitted_at=remote.created_at or now,
            next_poll_at=now,
            remote={**ref.remote, **remote.remote},
        )
        claim = await self.store.create(
            generation,
            NewEvent(EventKind.TRACKED, {"video_id": video_id, "provider": name}, actor=actor),
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

    # --- look -----------------------------------------------------------------------------------

    async def get(self, generation_id: str) -> Generation:
        g = await self.store.get(generation_id)
        await self.learn([g])
        return g

    async def learn(self, items: Sequence[Generation]) -> None:
        """Read the render history of the active generations' shapes, for their ETA ranges
        and stuck verdicts in `view`."""
        for g in items:
            if g.active:
                await self.histories.get(g)

    def renders(self, g: Generation) -> predict.History | None:
        """The render history of a generation's shape, as last read by `learn`."""
        return self.histories.last(g)

    def view(self, g: Generation) -> dict[str, Any]:
        """The presenter's view with the facts that need settings: whether it looks stuck,
        what running it again would cost, whether any worker here serves it."""
        now = self.clock.now()
        history = self.renders(g)
        stuck = attention.suspected_stuck(g, now, self.policy(g.provider), history)
        return presenter.to_json(
            g,
            now,
            stuck=stuck,
            cost_usd=self.cost(g),
            served=self.served(g),
            history=history,
            host=self.host(g.provider),
        )

    def host(self, provider: str) -> str | None:
        """Who runs the provider's models, for the step's words (None: unknown provider)."""
        try:
            return self.catalogue(provider).capabilities.host
        except exceptions.InvalidInput:
            return None

    async def deliveries(self, generation_id: str) -> list[dict[str, Any]]:
        """The webhooks sent to your apps about a generation (REELWATCH_WEBHOOK_URL), each
        with its attempts, delivery time or last error and next try."""
        await self.store.get(generation_id)  # NotFound for an unknown id
        rows = await self.store.outbox(generation_id)
        return [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in rows
        ]

    async def page(
        self,
        *,
        statuses: Sequence[Status] = (),
        model: str | None = None,
        provider: str | None = None,
        text: str | None = None,
        error_code: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        before: str | None = None,
        order: str = "newest",
    ) -> Page:
        if not 1 <= limit <= 1000:
            raise exceptions.InvalidInput("limit: must be between 1 and 1000")
        if order not in ORDERS:
            choices = ", ".join(ORDERS)
            raise exceptions.InvalidInput(f"order: must be one of {choices}")
        if cursor and before:
            raise exceptions.InvalidInput("cursor: give cursor or before, not both")
        found = await self.store.page(
            statuses=statuses,
            model=model,
            provider=provider,
            text=text,
            error_code=error_code,
            since=since,
            limit=limit,
            cursor=cursor,
            before=before,
            order=order,
        )
        await self.learn(found.items)
        return found

    async def content(self, generation_id: str, variant: Variant) -> tuple[Asset, Served]:
        """A stored asset and how to hand it to a browser; NotFound if it is not stored."""
        g = await self.get(generation_id)
        asset = g.assets.get(variant)
        if asset is None:
            raise exceptions.NotFound(f"{generation_id} has no stored {variant.value}")
        filename = asset.key.rsplit("/", 1)[-1]
        try:
            return asset, await self.storage.serve(asset.key, filename=filename)
        except exceptions.NotFound:
            raise exceptions.NotFound(
                f"the stored {variant.value} of {generation_id} is missing"
            ) from None

    async def history(self, generation_id: str) -> list[Event]:
        return await self.store.history(generation_id)

    async def counts(self) -> Mapping[Status, int]:
        return await self.store.count_by_status()

    async def events_after(self, event_id: int, *, limit: int) -> list[Event]:
        return await self.store.events_after(event_id, limit=limit)

    async def last_event_id(self) -> int:
        return await self.store.last_event_id()

    def on_event_written(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each event this process writes, and (PostgreSQL, while
        `listen` runs) each event any process writes: live pages wake on it."""
        self.store.on_append(listener)

    async def listen(self) -> None:
        """Until cancelled, on PostgreSQL: events other processes commit wake this process's
        live pages, and a generation that became due elsewhere (created, retried, reset, told
        by a webhook) wakes the worker of its provider here. SQLite: returns at once."""
        await self.store.listen(self._notified)

    def _notified(self, payload: str) -> None:
        kind, _, provider = payload.partition(" ")
        self.store.wake_listeners()
        if not kind:  # the connection was (re)opened: anything may have been missed
            for runner in self.engines.values():
                runner.wake()
        elif kind in WAKING_KINDS:
            self._wake(provider)

    # --- operations -----------------------------------------------------------------------------

    @property
    def has_workers(self) -> bool:
        return bool(self.engines)

    def attach_metrics(self, collected: metrics.Metrics) -> None:
        for runner in self.engines.values():
            runner.metrics = collected

    async def refresh_metrics(self, collected: metrics.Metrics) -> None:
        await collected.refresh(self.store, self.clock.now())

    async def unready(self, *, workers: bool, stalled_after_s: float) -> str | None:
        """Why this process is not ready, in words (None when it is): the database does not
        answer, or (where it runs workers) one stopped or stalled."""
        try:
            await self.store.ping()
        except Exception as exc:  # any driver failure means not ready
            trouble = database_error(exc)
            if trouble is not None:
                return f"database unreachable: {trouble.reason}"
            if isinstance(exc, exceptions.ReelwatchError):
                return exc.message
            return type(exc).__name__
        if not workers:
            return None
        for name, runner in self.engines.items():
            # The loop reaches the database at least every few seconds, however idle it is.
            why = runner.health.trouble(stalled_after_s=stalled_after_s)
            if why is not None:
                return f"{name}: {why}" if len(self.engines) > 1 else why
        return None

    # --- recover ------------------------------------------------------------------------------

    async def quote_retry(self, generation_id: str) -> tuple[Generation, float | None]:
        """What a retry would cost; NotAllowed unless the generation failed. Writes nothing."""
        g = await self.store.get(generation_id)
        if g.status is not Status.FAILED:
            raise exceptions.NotAllowed(
                f"only failed generations can be retried; {g.id} is {g.status.value}"
            )
        return g, self.cost(g)

    async def reset(
        self, generation_id: str, *, actor: str = "cli", now_too: bool = False
    ) -> Generation:
        """Forget what was seen and poll again from scratch (free)."""
        generation = await self._act(generation_id, lambda g: lifecycle.Reset(actor))
        return await self._advance_now(generation) if now_too else generation

    async def retry(
        self, generation_id: str, *, actor: str = "cli", now_too: bool = False
    ) -> Generation:
        """Resubmit a failed generation (paid); with `now_too`, submit before returning."""
        generation = await self._act(
            generation_id, lambda g: lifecycle.Retry(actor, cost_usd=self.cost(g))
        )
        return await self._advance_now(generation) if now_too else generation

    async def _advance_now(self, generation: Generation) -> Generation:
        """Take one step at once instead of waiting for a worker (if no worker holds it)."""
        runner = self.engines.get(generation.provider)
        if runner is None or not self.served(generation):
            return generation
        claim = await self.store.claim(
            generation.id,
            owner=runner.owner,
            now=self.clock.now(),
            lease_s=self.settings.lease_seconds,
        )
        return generation if claim is None else await runner.advance(claim)

    async def cancel(self, generation_id: str, *, actor: str = "cli") -> Generation:
        """Stop watching it; where the provider can, stop the job there too (best effort)."""
        g = await self.store.get(generation_id)
        outcome = None
        runner = self.engines.get(g.provider)
        can_cancel = runner is not None and runner.provider.catalogue.capabilities.can_cancel
        if runner is not None and can_cancel and g.active and g.video_id and self.served(g):
            try:
                await runner.provider.cancel(Ref(g.video_id, g.remote))
                outcome = "requested"
            except exceptions.ProviderError as exc:
                outcome = f"failed: {exc.message}"
        return await self._act(generation_id, lambda g: lifecycle.Cancel(actor, outcome))

    async def _act(
        self, generation_id: str, observe: Callable[[Generation], lifecycle.Observation]
    ) -> Generation:
        now = self.clock.now()

        def decide(g: Generation) -> lifecycle.Decision:
            return lifecycle.decide(g, observe(g), now, self.policy(g.provider))

        generation, _ = await self.store.act(generation_id, decide, now=now)
        self._wake(generation.provider)
        return generation

    def _wake(self, provider: str) -> None:
        runner = self.engines.get(provider)
        if runner is not None:
            runner.wake()

    # --- webhooks -----------------------------------------------------------------------------

    async def webhook(self, provider: str, headers: Mapping[str, str], body: bytes) -> str:
        """Verify a delivery with the provider's scheme, record it once, make its generation
        due now. Returns "applied", "duplicate", "unknown_video" or "ignored" (not an end).

        Raises WebhookRejected (a bad signature; WebhookMalformed: a bad body), ConfigError
        (webhooks not set up for this provider here) or InvalidInput (an unknown provider).
        """
        providers.catalogue(provider)  # InvalidInput for a name no adapter has
        checker = self.verifiers.get(provider)
        if checker is None:
            raise exceptions.ConfigError(f"webhooks are not set up for {provider} here")
        now = self.clock.now()
        event = await checker.verify(headers, body, now)
        base.require_id(event.webhook_id, "webhook id")  # adapters check; this is the net
        base.require_id(event.video_id, "job id")
        if not event.terminal:
            return "ignored"
        observation = lifecycle.WebhookReceived(event.event_type, event.webhook_id)
        policy = self.policy(provider)
        outcome = await self.store.record_webhook(
            f"{provider}/{event.webhook_id}",
            provider=provider,
            video_id=event.video_id,
            event_type=event.event_type[:60],
            decide=lambda g: lifecycle.decide(g, observation, now, policy),
            now=now,
        )
        if outcome == "applied":
            self._wake(provider)
        return outcome


def providers_default(settings: Settings, configured: Mapping[str, Provider]) -> str:
    """REELWATCH_PROVIDER, else the first configured provider, else the registry's first."""
    if settings.default_provider:
        return settings.default_provider
    if configured:
        return next(iter(configured))
    return providers.default_name(settings)


def _params_of(g: Generation) -> Mapping[str, Any]:
    """The inputs of `g`; rows from before params were stored have seconds and size only."""
    if g.params:
        return g.params
    legacy = {"seconds": g.seconds, "size": g.size}
    return {name: value for name, value in legacy.items() if value is not None}

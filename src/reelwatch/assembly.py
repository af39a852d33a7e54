"""Putting reelwatch together: open the store, the storage and the configured providers, and
hand them to one `Service`. The CLI, the web app and the tests start here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import structlog

from reelwatch import clock, exceptions, outbox, providers, storage
from reelwatch.providers.base import Endpoint, Provider, WebhookVerifier
from reelwatch.service import Service
from reelwatch.settings import Settings
from reelwatch.store import Store

log = structlog.get_logger("reelwatch.assembly")
_system_clock = clock.SystemClock()


@asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    clock: clock.Clock | None = None,
    provider: Provider | None = None,
    need_provider: bool = False,
    wait_for_database: bool = False,
    read_only: bool = False,
) -> AsyncIterator[Service]:
    """Open the store (migrating it), the storage and every provider whose credentials are set.

    `provider` adds (or replaces) one already built provider (tests). With `need_provider`, the
    default provider must be among them: a missing credential is a ConfigError naming the
    variable now, not a traceback later. With `wait_for_database` (the long-running worker),
    an unreachable database is waited for, with a line logged per try. With `read_only` (the
    CLI's read commands) the database must already exist at this version's schema (nothing is
    created or migrated) and no provider is built, so no provider SDK is imported: what the
    configuration names is enough to say which generations are served here.
    """
    the_clock = clock or _system_clock
    if read_only:
        store = await Store.open_existing(settings.database_url)
    elif wait_for_database:
        store = await _open_patiently(settings)
    else:
        store = await Store.open(settings.database_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        opened: dict[str, Provider] = {}
        endpoints: dict[str, Endpoint] = {}
        for name in providers.configured(settings):
            if read_only:
                endpoints[name] = providers.endpoint(name, settings)
                continue
            if provider is not None and name == provider.catalogue.name:
                continue
            built = providers.build(name, settings, the_clock)
            stack.push_async_callback(built.aclose)
            opened[name] = built
        if provider is not None:
            opened[provider.catalogue.name] = provider
        if need_provider:
            _require_default(settings, opened)
        verifiers: dict[str, WebhookVerifier] = {}
        for name in providers.NAMES:
            checker = providers.verifier(name, settings)
            if checker is not None:
                stack.push_async_callback(checker.aclose)
                verifiers[name] = checker
        assets = storage.from_url(settings.storage_url, serve=settings.storage_serve)
        stack.push_async_callback(assets.close)
        sender = None
        if settings.webhook_urls and settings.webhook_secret and not read_only:
            # Webhooks to your apps when a /v1/videos video ends (outbox.py).
            store.outbound_urls = settings.webhook_urls
            sender = outbox.Sender(
                store,
                secret=settings.webhook_secret,
                the_clock=the_clock,
                timeout_s=settings.request_timeout_seconds,
                retry_base_s=settings.webhook_retry_base_seconds,
            )
            stack.push_async_callback(sender.aclose)
        svc = Service(
            settings=settings,
            store=store,
            storage=assets,
            clock=the_clock,
            providers=_in_registry_order(opened),
            verifiers=verifiers,
            endpoints=endpoints if read_only else None,
            sender=sender,
        )
        if not read_only:
            # PostgreSQL: other processes' events wake this one (LISTEN/NOTIFY).
            listening = asyncio.create_task(svc.listen(), name="reelwatch-listen")
            stack.push_async_callback(_cancel, listening)
        yield svc


def _require_default(settings: Settings, opened: Mapping[str, Provider]) -> None:
    name = settings.default_provider or providers.default_name(settings)
    if name not in opened:
        providers.build(name, settings, _system_clock)  # raises ConfigError naming the variable
        raise exceptions.ConfigError(f"provider {name} is not configured")


def _in_registry_order(opened: Mapping[str, Provider]) -> dict[str, Provider]:
    order = {name: index for index, name in enumerate(providers.NAMES)}
    return dict(sorted(opened.items(), key=lambda item: order.get(item[0], len(order))))


async def _open_patiently(settings: Settings) -> Store:
    delay = 0.5
    while True:
        try:
            return await Store.open(settings.database_url)
        except exceptions.DatabaseUnavailable as exc:
            log.warning(f"{exc.message}; trying again in {delay:g}s", action="db_wait")
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""All persistence, as domain verbs. SQLite and PostgreSQL differences live only here.

Claims are leases, not locks held across network calls: `claim_due` marks a batch of due rows
with an owner, a random token and an expiry in one statement; every later write of that row
checks the token, so a worker that lost its lease (it was too slow, or an admin acted) cannot
overwrite newer state. An expired lease makes the row claimable again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from reelwatch import exceptions, lifecycle, predict
from reelwatch.models import (
    ACTIVE,
    RENDERING,
    TERMINAL,
    Asset,
    Endpoint,
    ErrorInfo,
    Event,
    EventKind,
    FrontVideo,
    Generation,
    NewEvent,
    Outbound,
    Status,
    Variant,
)
from reelwatch.store import migrate
from reelwatch.store.group import GroupCommit
from reelwatch.store.tables import (
    UTCDateTime,
    events,
    front_videos,
    generations,
    provider_state,
    render_history,
    webhook_deliveries,
    webhook_outbox,
)

_FULL = 1e9  # tokens of a budget nobody has spent from yet (capped at the claimer's capacity)
_LEASE_COLUMNS = ("lease_owner", "lease_token", "lease_expires_at")
_ACTIVE_VALUES = sorted(s.value for s in ACTIVE)
_utc = UTCDateTime()


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A generation this process holds the lease of, and the token that proves it."""

    generation: Generation
    token: str
    lease_expires_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Gate:
    """What a provider's shared state allowed at a claim: a 429 pause, or an empty budget."""

    paused_until: datetime | None = None
    budget_wait_s: float = 0.0  # until the shared request budget has a token again


@dataclasses.dataclass(frozen=True, slots=True)
class Trouble:
    expiring: int  # downloading, the provider's copy expiring soon
    quarantined: int  # active, set aside for a person


# The orders a page can be listed in: the column and whether it runs down (newest first).
# "changed" follows `updated_at`, which moves: paging while rows change may show one twice.
ORDERS: dict[str, tuple[sa.Column[Any], bool]] = {
    "newest": (generations.c.created_at, True),
    "oldest": (generations.c.created_at, False),
    "changed": (generations.c.updated_at, True),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    items: list[Generation]
    next_cursor: str | None  # older items follow (None: this is the oldest page)
    prev_cursor: str | None = None  # with `before=`: newer items come before this page


def urls(url: str) -> tuple[str, str]:
    """The async URL the store uses and the sync URL Alembic uses, from a user's URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return (
            str(parsed.set(drivername="sqlite+aiosqlite")),
            str(parsed.set(drivername="sqlite")),
        )
    if backend in ("postgresql", "postgres"):
        pg = parsed.set(drivername="postgresql+psycopg")
        return pg.render_as_string(hide_password=False), pg.render_as_string(hide_password=False)
    raise exceptions.ConfigError(f"REELWATCH_DATABASE_URL: unsupported database {backend!r}")


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _reason(exc: Exception) -> str:
    """The first line of what the driver (or the file system) said, for a one-line error."""
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseTrouble:
    """A database failure in one line; `fatal` when no retry can fix it (schema missing)."""

    reason: str
    fatal: bool


def database_error(exc: BaseException) -> DatabaseTrouble | None:
    """Whether `exc` is the database failing (and how), or None if it is something else.

    Connection loss, a server restart, a full disk, a lock timeout: transient, the caller
    retries. A missing table or column means the schema is not this version's: fatal.
    """
    if isinstance(exc, exceptions.DatabaseUnavailable):
        return DatabaseTrouble(exc.message, fatal=False)
    if isinstance(exc, sa.exc.NoSuchTableError):
        return DatabaseTrouble(_reason(exc), fatal=True)
    if not isinstance(exc, sa.exc.DBAPIError):
        return None  # a statement reelwatch got wrong is a bug, not an outage
    reason = _reason(exc)
    if "no such table" in reason or "no such column" in reason:
        return DatabaseTrouble(reason, fatal=True)
    if isinstance(exc, sa.exc.ProgrammingError):
        return DatabaseTrouble(reason, fatal=True)  # e.g. PostgreSQL's undefined table
    if exc.connection_invalidated or isinstance(
        exc, sa.exc.OperationalError | sa.exc.InterfaceError
    ):
        return DatabaseTrouble(reason, fatal=False)  # connection lost, server gone, disk full
    # A value the database refuses (DataError, IntegrityError): this row's trouble, not an
    # outage; the caller treats it like any other failure of one step.
    return None


log = structlog.get_logger("reelwatch.store")

# Every event insert on PostgreSQL notifies this channel (payload: "<kind> <provider>").
CHANNEL = "reelwatch_events"
LISTEN_RETRY_MIN_S = 0.5
LISTEN_RETRY_MAX_S = 5.0


class Store:
    """The generations table, its events, and the verbs that change them."""

    def __init__(self, engine: AsyncEngine, sync_engine: sa.Engine, url: str = "") -> None:
        self._url = url
        self._engine = engine
        self._sync_engine = sync_engine
        # Writes on SQLite take the write lock up front (BEGIN IMMEDIATE): a deferred transaction
        # that reads and then writes can fail with SQLITE_BUSY instead of waiting its turn.
        self._writer = engine.execution_options(reelwatch_write=True)
        self.dialect = engine.dialect.name
        self._listeners: list[Callable[[], None]] = []
        # Where a front video's end is announced (REELWATCH_WEBHOOK_URL; set by assembly).
        self.outbound_urls: tuple[str, ...] = ()
        # The hot small writes (a poll's result, download progress) share transactions.
        self._group = GroupCommit(
            sync_engine.execution_options(reelwatch_write=True).begin,
            committed=self._committed,
        )

    def on_append(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each committed write (live-event tailers wake early)."""
        self._listeners.append(listener)

    @classmethod
    async def open(cls, url: str, *, upgrade: bool = True) -> Store:
        """Connect (and migrate unless told not to); an unreachable database is one clear error."""
        async_url, sync_url = urls(url)
        parsed = make_url(async_url)
        sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
        engine: AsyncEngine | None = None
        sync_engine: sa.Engine | None = None
        try:
            if sqlite_file and sqlite_file != ":memory:":
                Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
            if upgrade:
                await asyncio.to_thread(migrate.upgrade, sync_url)
            engine = _create_engine(async_url)
            sync_engine = _create_sync_engine(sync_url)
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (sa.exc.OperationalError, OSError) as exc:
            if engine is not None:
                await engine.dispose()
            if sync_engine is not None:
                sync_engine.dispose()
            raise exceptions.DatabaseUnavailable(
                f"cannot reach the database at {_safe(url)}: {_reason(exc)}"
            ) from exc
        return cls(engine, sync_engine, url)

    @classmethod
    async def open_existing(cls, url: str) -> Store:
        """Connect to a database that exists and is at this version's schema, creating and
        migrating nothing (read commands): NoDatabase or SchemaMismatch, in one line, if not."""
        parsed = make_url(url)
        sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
        # Connecting would create the file (and WAL switches a new one): look first.
        if sqlite_file and sqlite_file != ":memory:":
            exists = await asyncio.to_thread(Path(sqlite_file).is_file)
        else:
            exists = True
        if not exists:
            raise exceptions.NoDatabase(
                f"no database at {sqlite_file}: nothing has been submitted yet"
            )
        store = await cls.open(url, upgrade=False)
        try:
            migrate.expected(await store._schema_versions())
        except BaseException:
            await store.close()
            raise
        return store

    async def _schema_versions(self) -> list[str]:
        """What `alembic_version` holds; empty when the table is missing (never migrated)."""
        async with self._engine.connect() as conn:
            try:
                result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
                trouble = database_error(exc)
                if trouble is None or not trouble.fatal:
                    raise exceptions.DatabaseUnavailable(
                        f"cannot read the database: {_reason(exc)}"
                    ) from exc
                return []  # no such table
            return [str(version) for version in result.scalars()]

    async def close(self) -> None:
        await self._group.close()
        await self._engine.dispose()
        self._sync_engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn
        self._committed()

    def _committed(self) -> None:
        self.wake_listeners()

    def wake_listeners(self) -> None:
        """Tell everyone waiting for events that there may be new ones."""
        for listener in self._listeners:
            listener()

    async def listen(self, on_notify: Callable[[str], None]) -> None:
        """PostgreSQL: call `on_notify(payload)` for each event any process commits (its kind
        and provider, `"created <provider>"`), until cancelled; SQLite: return at once (its
        writers are in this process, whose listeners `on_append` already calls).

        One connection LISTENs on CHANNEL (every event insert NOTIFYs it in the writing
        transaction, so a notification means a committed row). Lost, it is opened again with
        backoff, and `on_notify("")` then says "something may have been missed: look now".
        Tables are still read on a timer by whoever waits, as the safety net."""
        if self.dialect != "postgresql":
            return
        import psycopg  # the driver SQLAlchemy already uses for PostgreSQL

        dsn = make_url(urls(self._url)[1]).set(drivername="postgresql")
        delay = LISTEN_RETRY_MIN_S
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    dsn.render_as_string(hide_password=False), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = LISTEN_RETRY_MIN_S
                    on_notify("")
                    async for note in conn.notifies():
                        on_notify(note.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    f"LISTEN connection lost ({exc}); again in {delay:.1f} s", action="listen"
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX_S)

    # --- writes ---------------------------------------------------------------------------

    async def create(
        self,
        generation: Generation,
        event: NewEvent,
        *,
        owner: str,
        now: datetime,
        lease_s: float,
        front: FrontVideo | None = None,
    ) -> Claim:
        """Insert a new generation, leased to its creator so no worker submits it meanwhile;
        with `front`, the /v1/videos id bound to it, in the same transaction."""
        token = secrets.token_hex(16)
        expires = now + timedelta(seconds=lease_s)
        row = {**_to_row(generation), "lease_owner": owner, "lease_token": token}
        row["lease_expires_at"] = expires
        async with self._write() as conn:
            try:
                await conn.execute(generations.insert().values(row))
            except sa.exc.IntegrityError as exc:
                raise exceptions.InvalidInput(
                    f"video {generation.video_id} is already tracked"
                ) from exc
            if front is not None:
                await conn.execute(front_videos.insert().values(_front_row(front)))
            await conn.run_sync(_append, generation, event, generation.created_at)
        return Claim(generation, token, expires)

    async def claim_due(
        self, *, owner: str, now: datetime, limit: int, lease_s: float
    ) -> list[Claim]:
        """Lease up to `limit` due generations, most overdue first, oldest first among equals."""
        if limit <= 0:
            return []
        async with self._write() as conn:
            return await conn.run_sync(_claim_due, owner, now, limit, lease_s, None)

    async def claim_for(
        self,
        endpoint: Endpoint,
        *,
        owner: str,
        now: datetime,
        limit: int,
        lease_s: float,
        per_minute: float,
    ) -> tuple[list[Claim], Gate]:
        """Lease due generations of one provider, within what every worker of it shares.

        In one transaction with the claim: the provider's row says whether a 429 paused it
        (nothing is claimed until then) and how many requests its budget holds (a token bucket
        of `per_minute`, at most ten seconds' worth at once, shared by all workers); each claim
        takes one token. Only rows of this endpoint are claimed; rows from before endpoints
        were recorded are adopted by the first worker of their provider.
        """
        async with self._write() as conn:
            return await conn.run_sync(
                _claim_within_budget, endpoint, owner, now, limit, lease_s, per_minute
            )

    async def claim(
        self, generation_id: str, *, owner: str, now: datetime, lease_s: float
    ) -> Claim | None:
        """Lease one active generation now, whatever its due time; None if busy or finished."""
        token = secrets.token_hex(16)
        expires = now + timedelta(seconds=lease_s)
        stmt = (
            generations.update()
            .where(
                generations.c.id == generation_id,
                generations.c.status.in_(_ACTIVE_VALUES),
                sa.or_(
                    generations.c.lease_expires_at.is_(None),
                    generations.c.lease_expires_at < now,
                ),
            )
            .values(
                lease_owner=owner,
                lease_token=token,
                lease_expires_at=expires,
                claims=generations.c.claims + 1,
            )
            .returning(*generations.c)
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else Claim(_from_row(row), token, expires)

    async def apply(
        self, claim: Claim, decision: lifecycle.Decision, *, now: datetime, release: bool = True
    ) -> tuple[Claim, Event | None]:
        """Store a decision and append its event in one transaction, if the lease still holds.

        A look that changed nothing (`poll`) appends no event: it is counted on the row, and
        the next event carries the count and the stretch (`quiet_polls`, `quiet_from`,
        `quiet_to`), so a stuck job's timeline and live stream hold changes, not repeats.
        Returns the event appended, or None for a folded look.
        Raises LeaseLost (and writes nothing) when another worker or an admin took the row.
        """
        before = claim.generation
        new = dataclasses.replace(decision.generation, updated_at=now)
        event: NewEvent | None = None
        if decision.event.kind == EventKind.POLL:
            new = dataclasses.replace(
                new, quiet_polls=before.quiet_polls + 1, quiet_since=before.quiet_since or now
            )
        else:
            event = _with_quiet(decision.event, before) if before.quiet_polls else decision.event
            new = dataclasses.replace(new, quiet_polls=0, quiet_since=None)
        values = _to_row(new)
        expires = claim.lease_expires_at
        if release:
            values.update(lease_owner=None, lease_token=None, lease_expires_at=None)

        def write(conn: SyncConnection) -> Event | None:
            _update_held(conn, claim, values)
            if event is None:
                return None
            stored = _append(conn, new, event, now)
            _learn(conn, before.status, new, now)
            _announce(conn, before.status, new, now, self.outbound_urls)
            return stored

        stored = await self._group.run(write)
        return Claim(new, claim.token, expires), stored

    async def extend(self, claim: Claim, *, now: datetime, lease_s: float) -> Claim:
        """Push a held lease further out (long downloads); LeaseLost if it is gone."""
        expires = now + timedelta(seconds=lease_s)
        await self._group.run(lambda conn: _update_held(conn, claim, {"lease_expires_at": expires}))
        return dataclasses.replace(claim, lease_expires_at=expires)

    async def mark_submitting(
        self, claim: Claim, *, now: datetime, reconcile_after_s: float = 30.0
    ) -> Claim:
        """Flag a claimed pending generation as possibly submitted, before its create is sent.

        If the process dies (or anything fails) between the create and storing its answer,
        the flag makes the next attempt reconcile with the provider's list instead of paying
        for a second create, and not before `reconcile_after_s` (by then the create has either
        answered or timed out, and a job it made can show up in the list). The answer to the
        create clears the flag.
        """
        due = now + timedelta(seconds=reconcile_after_s)
        sent = claim.generation.submissions + 1  # the row is held: nobody else counts
        values = {
            "submit_ambiguous": True,
            "submit_started_at": now,
            "next_poll_at": due,
            "updated_at": now,
            "submissions": sent,
        }
        await self._group.run(lambda conn: _update_held(conn, claim, values))
        g = dataclasses.replace(
            claim.generation,
            submit_ambiguous=True,
            submit_started_at=now,
            next_poll_at=due,
            submissions=sent,
        )
        return dataclasses.replace(claim, generation=g)

    async def pause(self, provider: str, *, until: datetime, now: datetime) -> None:
        """Pause every worker of `provider` until `until` (a 429's Retry-After); never shortens
        a pause already there."""
        await self._group.run(lambda conn: _pause(conn, provider, until, now))

    async def spend(self, provider: str, requests: int) -> None:
        """Take requests beyond the one each claim took from the provider's shared budget
        (a download of several assets); the budget may go below zero, which delays claims."""
        stmt = (
            provider_state.update()
            .where(provider_state.c.provider == provider)
            .values(tokens=provider_state.c.tokens - requests)
        )
        await self._group.run(lambda conn: conn.execute(stmt))

    async def gate(self, provider: str) -> Gate:
        """The provider's shared pause as stored (for the worker's sleep and the dashboard)."""
        query = sa.select(provider_state.c.paused_until).where(
            provider_state.c.provider == provider
        )
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return Gate(paused_until=_utc.process_result_value(value, self._engine.dialect))

    async def download_progress(
        self,
        claim: Claim,
        *,
        variant: str,
        done: int,
        total: int | None,
        now: datetime,
        lease_s: float,
    ) -> Claim:
        """Record how far a download has got (and renew the lease); LeaseLost if it is gone.

        Not a status change, so it does not go through the lifecycle: it only moves the byte
        counters and appends a `download_progress` event for live views.
        """
        expires = now + timedelta(seconds=lease_s)
        values = {
            "download_bytes": done,
            "download_total": total,
            "lease_expires_at": expires,
            "updated_at": now,
        }
        g = dataclasses.replace(claim.generation, download_bytes=done, download_total=total)
        event = NewEvent(
            EventKind.DOWNLOAD_PROGRESS, {"variant": variant, "bytes": done, "total": total}
        )

        def write(conn: SyncConnection) -> None:
            _update_held(conn, claim, values)
            _append(conn, g, event, now)

        await self._group.run(write)
        return dataclasses.replace(claim, lease_expires_at=expires)

    async def release(self, claims: Sequence[Claim]) -> None:
        """Give leases back unchanged (shutdown): the rows are due again for anyone, and the
        claim is not counted against them (see `claims`)."""
        if not claims:
            return
        params = [{"held_id": c.generation.id, "held_token": c.token} for c in claims]
        async with self._write() as conn:
            await conn.execute(_RELEASE, params)

    async def act(
        self,
        generation_id: str,
        decide: Callable[[Generation], lifecycle.Decision],
        *,
        now: datetime,
    ) -> tuple[Generation, Event]:
        """Apply an out-of-band decision (admin action, webhook) to the current row.

        The row is read and written in one transaction and any lease on it is voided, so a
        worker still working on the old state finds its write refused. If `decide` raises,
        nothing is written. A generation whose create is in flight (pending, leased) is
        refused: voiding that lease could lose the answer of a paid create, or pay twice.
        """
        query = sa.select(generations).where(generations.c.id == generation_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        async with self._write() as conn:
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                raise exceptions.NotFound(f"no generation {generation_id}")
            # Held up to and including its expiry instant, as `claim_due` sees it.
            leased = row["lease_expires_at"] is not None and _utc_value(row) >= now
            if row["status"] == Status.PENDING.value and leased:
                raise exceptions.NotAllowed(
                    f"{generation_id} is being submitted right now; try again in a moment"
                )
            before = _from_row(row)
            decision = decide(before)
            new = dataclasses.replace(decision.generation, updated_at=now)
            values = {**_to_row(new), **dict.fromkeys(_LEASE_COLUMNS)}
            await conn.execute(
                generations.update().where(generations.c.id == generation_id).values(values)
            )
            stored = await conn.run_sync(_append, new, decision.event, now)
            await conn.run_sync(_learn, before.status, new, now)
            await conn.run_sync(_announce, before.status, new, now, self.outbound_urls)
        return new, stored

    async def record_webhook(
        self,
        webhook_id: str,
        *,
        provider: str,
        video_id: str,
        event_type: str,
        decide: Callable[[Generation], lifecycle.Decision],
        now: datetime,
    ) -> str:
        """Record one webhook delivery and apply its decision, once per webhook-id.

        One transaction: the delivery row (unique on webhook-id) and the generation's update
        and event land together or not at all. Returns "applied", "duplicate" or
        "unknown_video" (a video reelwatch does not track: recorded, nothing else).
        """
        query = sa.select(generations).where(
            generations.c.provider == provider, generations.c.video_id == video_id
        )
        if self.dialect == "postgresql":
            query = query.with_for_update()
        async with self._write() as conn:
            seen = await conn.execute(
                sa.select(webhook_deliveries.c.webhook_id).where(
                    webhook_deliveries.c.webhook_id == webhook_id
                )
            )
            if seen.first() is not None:
                return "duplicate"
            row = (await conn.execute(query)).mappings().first()
            result = "unknown_video" if row is None else "applied"
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        webhook_deliveries.insert().values(
                            webhook_id=webhook_id,
                            received_at=now,
                            event_type=event_type,
                            video_id=video_id,
                            generation_id=None if row is None else row["id"],
                            result=result,
                        )
                    )
            except sa.exc.IntegrityError:
                return "duplicate"  # the same delivery, racing in another process
            if row is None:
                return result
            current = _from_row(row)
            decision = decide(current)
            new = dataclasses.replace(decision.generation, updated_at=now)
            values = _to_row(new)
            if current.status is not Status.DOWNLOADING:
                # Void the lease: a worker polling the old state must look again, now. While
                # downloading there is nothing to look at again; the download goes on.
                values.update(dict.fromkeys(_LEASE_COLUMNS))
            await conn.execute(
                generations.update().where(generations.c.id == new.id).values(values)
            )
            await conn.run_sync(_append, new, decision.event, now)
            await conn.run_sync(_learn, current.status, new, now)
            await conn.run_sync(_announce, current.status, new, now, self.outbound_urls)
        return result

    # --- the compatible front (/v1/videos, front.py) ---------------------------------------

    async def front_video(self, video_id: str, client: str) -> tuple[FrontVideo, Generation]:
        """A client's video (not deleted) and its generation; NotFound otherwise (another
        client's video is not found either)."""
        query = (
            sa.select(generations, *_FRONT_COLUMNS)
            .join(generations, generations.c.id == front_videos.c.generation_id)
            .where(
                front_videos.c.id == video_id,
                front_videos.c.client == client,
                front_videos.c.deleted_at.is_(None),
            )
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise exceptions.NotFound(f"no video {video_id}")
        return _front_from_row(row), _from_row(row)

    async def front_active(self, client: str) -> int:
        """How many of a client's videos are being made now."""
        query = (
            sa.select(sa.func.count())
            .select_from(front_videos)
            .join(generations, generations.c.id == front_videos.c.generation_id)
            .where(front_videos.c.client == client, generations.c.status.in_(_ACTIVE_VALUES))
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def front_page(
        self, client: str, *, after: str | None, limit: int, newest_first: bool
    ) -> tuple[list[tuple[FrontVideo, Generation]], bool]:
        """A page of a client's videos by creation time, after the video `after` (a cursor);
        and whether more follow."""
        order = (front_videos.c.created_at, front_videos.c.id)
        query = (
            sa.select(generations, *_FRONT_COLUMNS)
            .join(generations, generations.c.id == front_videos.c.generation_id)
            .where(front_videos.c.client == client, front_videos.c.deleted_at.is_(None))
        )
        async with self._engine.connect() as conn:
            if after is not None:
                mark = (
                    await conn.execute(
                        sa.select(front_videos.c.created_at, front_videos.c.id).where(
                            front_videos.c.id == after, front_videos.c.client == client
                        )
                    )
                ).first()
                if mark is None:
                    return (
                        [],
                        False,
                    )  # a cursor that names no video of this client: nothing after it
                beyond = (
                    sa.tuple_(*order) < tuple(mark)
                    if newest_first
                    else (sa.tuple_(*order) > tuple(mark))
                )
                query = query.where(beyond)
            query = query.order_by(*(c.desc() if newest_first else c.asc() for c in order))
            rows = (await conn.execute(query.limit(limit + 1))).mappings().all()
        found = [(_front_from_row(r), _from_row(r)) for r in rows[:limit]]
        return found, len(rows) > limit

    async def delete_front_video(self, video_id: str, client: str, *, now: datetime) -> None:
        """Hide a client's video from the front for good (its generation keeps its history)."""
        async with self._write() as conn:
            result = await conn.execute(
                front_videos.update()
                .where(
                    front_videos.c.id == video_id,
                    front_videos.c.client == client,
                    front_videos.c.deleted_at.is_(None),
                )
                .values(deleted_at=now)
            )
        if result.rowcount == 0:
            raise exceptions.NotFound(f"no video {video_id}")

    # --- webhooks to clients (the outbox) ----------------------------------------------------

    async def due_webhooks(self, *, now: datetime, limit: int, lease_s: float) -> list[Outbound]:
        """Claim up to `limit` due deliveries: each is pushed `lease_s` ahead (so no other
        sender takes it meanwhile; a sender that dies leaves it due again) and counted."""
        due_now = sa.select(webhook_outbox.c.id).where(webhook_outbox.c.next_attempt_at <= now)
        async with self._engine.connect() as conn:
            # A read first: an idle sender looks every second, and on SQLite a write
            # transaction would take the database's write lock each time.
            if (await conn.execute(due_now.limit(1))).first() is None:
                return []
        async with self._write() as conn:
            query = (
                sa.select(webhook_outbox)
                .where(webhook_outbox.c.next_attempt_at <= now)
                .order_by(webhook_outbox.c.next_attempt_at)
                .limit(limit)
            )
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).mappings().all()
            claimed = []
            for row in rows:
                attempts = row["attempts"] + 1
                await conn.execute(
                    webhook_outbox.update()
                    .where(webhook_outbox.c.id == row["id"])
                    .values(next_attempt_at=now + timedelta(seconds=lease_s), attempts=attempts)
                )
                claimed.append(
                    Outbound(
                        id=row["id"],
                        webhook_id=row["webhook_id"],
                        url=row["url"],
                        generation_id=row["generation_id"],
                        event_type=row["event_type"],
                        body=row["body"],
                        created_at=row["created_at"],
                        attempts=attempts,
                    )
                )
        return claimed

    async def webhook_attempted(
        self,
        outbound: Outbound,
        *,
        now: datetime,
        delivered: bool,
        detail: str,
        next_at: datetime | None,
    ) -> None:
        """Record one attempt: delivered (done), failed with a next try (`next_at`), or given
        up (`next_at` None); the generation's timeline gets the attempt either way."""
        async with self._write() as conn:
            await conn.execute(
                webhook_outbox.update()
                .where(webhook_outbox.c.id == outbound.id)
                .values(
                    next_attempt_at=None if delivered else next_at,
                    delivered_at=now if delivered else None,
                    last_error=None if delivered else detail[:300],
                )
            )
            row = (
                (
                    await conn.execute(
                        sa.select(generations).where(generations.c.id == outbound.generation_id)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return
            data: dict[str, Any] = {
                "event": outbound.event_type,
                "url": outbound.url,
                "attempt": outbound.attempts,
                "result": detail[:200],
            }
            if not delivered:
                data["next_try_at"] = None if next_at is None else next_at.isoformat()
            kind = EventKind.NOTIFIED if delivered else EventKind.NOTIFY_FAILED
            await conn.run_sync(_append, _from_row(row), NewEvent(kind, data, "webhooks"), now)

    async def outbox(self, generation_id: str) -> list[dict[str, Any]]:
        """The deliveries of one generation's webhooks, oldest first (for its page)."""
        query = (
            sa.select(webhook_outbox)
            .where(webhook_outbox.c.generation_id == generation_id)
            .order_by(webhook_outbox.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            {
                "webhook_id": row["webhook_id"],
                "url": row["url"],
                "event": row["event_type"],
                "attempts": row["attempts"],
                "delivered_at": row["delivered_at"],
                "next_attempt_at": row["next_attempt_at"],
                "last_error": row["last_error"],
            }
            for row in rows
        ]

    # --- reads ----------------------------------------------------------------------------

    async def get(self, generation_id: str) -> Generation:
        async with self._engine.connect() as conn:
            query = sa.select(generations).where(generations.c.id == generation_id)
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise exceptions.NotFound(f"no generation {generation_id}")
        return _from_row(row)

    async def find(self, provider: str, video_id: str) -> Generation | None:
        query = sa.select(generations).where(
            generations.c.provider == provider, generations.c.video_id == video_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _from_row(row)

    async def video_ids(self, provider: str, candidates: Sequence[str]) -> set[str]:
        """Which of these provider ids are already tracked (for reconciliation)."""
        if not candidates:
            return set()
        query = sa.select(generations.c.video_id).where(
            generations.c.provider == provider, generations.c.video_id.in_(list(candidates))
        )
        async with self._engine.connect() as conn:
            return {str(v) for v in (await conn.execute(query)).scalars()}

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
        """In `order` (ORDERS: newest first by default), with opaque keyset cursors (stable
        under inserts): `cursor` gives the page after an item, `before` the page before one.
        `text` matches the prompt, or exactly our id or the provider's job id."""
        query = sa.select(generations)
        if error_code:
            query = query.where(generations.c.error_code == error_code)
        if since is not None:
            query = query.where(generations.c.created_at >= since)
        if statuses:
            query = query.where(generations.c.status.in_([s.value for s in statuses]))
        if model:
            query = query.where(generations.c.model == model)
        if provider:
            query = query.where(generations.c.provider == provider)
        if text:
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(
                sa.or_(
                    generations.c.prompt.ilike(f"%{escaped}%", escape="\\"),
                    generations.c.id == text.strip(),
                    generations.c.video_id == text.strip(),
                )
            )
        column, descending = ORDERS[order]
        key = sa.tuple_(column, generations.c.id)

        def beyond(mark: str, *, later: bool) -> sa.ColumnElement[bool]:
            value, last_id = _decode_cursor(mark)
            other = sa.tuple_(sa.literal(value, column.type), last_id)
            return key > other if later else key < other

        def ordered(query: sa.Select[Any], *, down: bool) -> sa.Select[Any]:
            if down:
                return query.order_by(column.desc(), generations.c.id.desc())
            return query.order_by(column.asc(), generations.c.id.asc())

        if before:
            # The page before `before`: walk the other way from it, then turn the rows round.
            query = ordered(query.where(beyond(before, later=descending)), down=not descending)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query.limit(limit + 1))).mappings().all()
            items = [_from_row(r) for r in reversed(rows[:limit])]
            earlier = len(rows) > limit
            return Page(
                items,
                _encode_cursor(items[-1], column.key) if items else None,
                _encode_cursor(items[0], column.key) if earlier and items else None,
            )
        if cursor:
            query = query.where(beyond(cursor, later=not descending))
        query = ordered(query, down=descending)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit + 1))).mappings().all()
        items = [_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(
            items,
            _encode_cursor(items[-1], column.key) if more and items else None,
            _encode_cursor(items[0], column.key) if cursor and items else None,
        )

    async def stored_before(
        self, provider: str, before: datetime, *, limit: int = 100
    ) -> list[Generation]:
        """Completed generations of `provider` finished before `before` whose files are still
        stored, oldest first (what retention deletes next)."""
        query = (
            sa.select(generations)
            .where(
                generations.c.provider == provider,
                generations.c.status == Status.COMPLETED.value,
                generations.c.completed_at < before,
                sa.cast(generations.c.assets, sa.Text) != "{}",
            )
            .order_by(generations.c.completed_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [g for g in map(_from_row, rows) if g.assets]

    async def renders(self, shape: str, *, limit: int = predict.WINDOW) -> list[predict.Run]:
        """The newest finished renders of one shape (newest first), for the predictor."""
        query = (
            sa.select(render_history.c.queue_s, render_history.c.render_s, render_history.c.marks)
            .where(render_history.c.shape == shape)
            .order_by(render_history.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            predict.Run(
                queue_s=queue_s,
                render_s=render_s,
                marks=tuple((float(f), int(p)) for f, p in marks or ()),
            )
            for queue_s, render_s, marks in rows
        ]

    async def history(self, generation_id: str) -> list[Event]:
        await self.get(generation_id)  # NotFound for an unknown id
        query = sa.select(events).where(events.c.generation_id == generation_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(events.c.id))).mappings().all()
        return [_event(r) for r in rows]

    async def events_after(self, after_id: int, *, limit: int = 500) -> list[Event]:
        query = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_event(r) for r in rows]

    async def last_event_id(self) -> int:
        async with self._engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.func.max(events.c.id)))).scalar()
        return int(value or 0)

    async def backlog(self, now: datetime) -> tuple[int, datetime | None]:
        """How many active generations are due now, and when the oldest active one was made."""
        active = generations.c.status.in_(_ACTIVE_VALUES)
        due = sa.select(sa.func.count()).where(active, generations.c.next_poll_at <= now)
        oldest = sa.select(sa.func.min(generations.c.created_at)).where(active)
        async with self._engine.connect() as conn:
            depth = (await conn.execute(due)).scalar()
            first = (await conn.execute(oldest)).scalar()
        return int(depth or 0), _utc.process_result_value(first, self._engine.dialect)

    async def trouble(self, now: datetime, *, expiring_within: timedelta) -> Trouble:
        """Counts for alerts: downloads whose provider copy expires soon, quarantined rows."""
        downloading = generations.c.status == Status.DOWNLOADING.value
        soon = sa.select(sa.func.count()).where(
            downloading, generations.c.expires_at <= now + expiring_within
        )
        active = generations.c.status.in_(_ACTIVE_VALUES)
        set_aside = sa.select(sa.func.count()).where(active, generations.c.attention.is_not(None))
        async with self._engine.connect() as conn:
            expiring = (await conn.execute(soon)).scalar()
            quarantined = (await conn.execute(set_aside)).scalar()
        return Trouble(expiring=int(expiring or 0), quarantined=int(quarantined or 0))

    async def next_due_at(self, endpoint: Endpoint | None = None) -> datetime | None:
        """The earliest time any active, unleased generation (of `endpoint`, if given) is due
        (for the worker's sleep)."""
        query = sa.select(sa.func.min(generations.c.next_poll_at)).where(
            generations.c.status.in_(_ACTIVE_VALUES), generations.c.lease_token.is_(None)
        )
        if endpoint is not None:
            query = query.where(*_of_endpoint(endpoint))
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return _utc.process_result_value(value, self._engine.dialect)

    async def count_by_status(self) -> dict[Status, int]:
        query = sa.select(generations.c.status, sa.func.count()).group_by(generations.c.status)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        counts = dict.fromkeys(Status, 0)
        counts.update({Status(s): int(n) for s, n in rows})
        return counts

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


def _create_engine(async_url: str) -> AsyncEngine:
    if make_url(async_url).get_backend_name() != "sqlite":
        return create_async_engine(async_url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(async_url, connect_args={"timeout": 30})
    _sqlite_hooks(engine.sync_engine)
    return engine


def _create_sync_engine(sync_url: str) -> sa.Engine:
    """The engine of the group-commit thread (one connection is all it uses)."""
    if make_url(sync_url).get_backend_name() != "sqlite":
        return sa.create_engine(sync_url, pool_size=1, max_overflow=1, pool_pre_ping=True)
    engine = sa.create_engine(sync_url, connect_args={"timeout": 30, "check_same_thread": False})
    _sqlite_hooks(engine)
    return engine


def _sqlite_hooks(engine: sa.Engine) -> None:
    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see the begin hook).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: SyncConnection) -> None:
        write = conn.get_execution_options().get("reelwatch_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# The hot statements are built once, their values passed as parameters: building a statement
# with `.values(...)` per call (and its cache key) cost more CPU than running it (profiled).
_HELD = generations.update().where(
    generations.c.id == sa.bindparam("held_id"),
    generations.c.lease_token == sa.bindparam("held_token"),
)
_INSERT_EVENT = events.insert().returning(events.c.id)
# A lease given back unused: the claim did not end in a crash, so it does not count.
_RELEASE = _HELD.values(
    lease_owner=None,
    lease_token=None,
    lease_expires_at=None,
    claims=sa.case((generations.c.claims > 0, generations.c.claims - 1), else_=0),
)


def _claim_due(
    conn: SyncConnection,
    owner: str,
    now: datetime,
    limit: int,
    lease_s: float,
    endpoint: Endpoint | None,
) -> list[Claim]:
    token = secrets.token_hex(16)
    expires = now + timedelta(seconds=lease_s)
    due = (
        sa.select(generations.c.id)
        .where(
            generations.c.next_poll_at <= now,
            generations.c.status.in_(_ACTIVE_VALUES),
            sa.or_(
                generations.c.lease_expires_at.is_(None),
                generations.c.lease_expires_at < now,
            ),
        )
        .order_by(generations.c.next_poll_at, generations.c.created_at)
        .limit(limit)
    )
    values: dict[str, Any] = {
        "lease_owner": owner,
        "lease_token": token,
        "lease_expires_at": expires,
        "claims": generations.c.claims + 1,
    }
    if endpoint is not None:
        due = due.where(*_of_endpoint(endpoint))
        values["endpoint"] = sa.func.coalesce(generations.c.endpoint, endpoint.base_url)
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        generations.update()
        .where(generations.c.id.in_(due.scalar_subquery()))
        .values(values)
        .returning(*generations.c)
    )
    rows = conn.execute(stmt).mappings().all()
    claimed = [Claim(_from_row(r), token, expires) for r in rows]
    claimed.sort(key=lambda c: (c.generation.next_poll_at or now, c.generation.created_at))
    return claimed


def _of_endpoint(endpoint: Endpoint) -> tuple[sa.ColumnElement[bool], ...]:
    """Rows of this endpoint, and legacy rows (no endpoint recorded) of its provider."""
    column = generations.c.endpoint
    return (
        generations.c.provider == endpoint.provider,
        sa.or_(column == endpoint.base_url, column.is_(None)),
    )


def _claim_within_budget(
    conn: SyncConnection,
    endpoint: Endpoint,
    owner: str,
    now: datetime,
    limit: int,
    lease_s: float,
    per_minute: float,
) -> tuple[list[Claim], Gate]:
    rate = per_minute / 60.0
    capacity = max(1.0, per_minute / 6.0)  # at most ten seconds' worth at once
    provider = endpoint.key
    state = _provider_row(conn, provider, now, capacity)
    paused = state["paused_until"]
    if paused is not None and paused > now:
        return [], Gate(paused_until=paused)
    elapsed = max(0.0, (now - state["tokens_at"]).total_seconds())
    tokens = min(capacity, float(state["tokens"]) + elapsed * rate)
    room = min(limit, int(tokens))
    claimed = _claim_due(conn, owner, now, room, lease_s, endpoint) if room > 0 else []
    tokens -= len(claimed)
    conn.execute(
        provider_state.update()
        .where(provider_state.c.provider == provider)
        .values(tokens=tokens, tokens_at=now)
    )
    wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
    return claimed, Gate(budget_wait_s=wait)


def _provider_row(
    conn: SyncConnection, provider: str, now: datetime, capacity: float
) -> sa.RowMapping:
    """The provider's shared row, locked for this transaction; made (full budget) if new."""
    _ensure_provider(conn, provider, now, capacity)
    query = sa.select(provider_state).where(provider_state.c.provider == provider)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).mappings().one()


def _ensure_provider(conn: SyncConnection, provider: str, now: datetime, capacity: float) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(provider_state)
        .values(provider=provider, paused_until=None, tokens=capacity, tokens_at=now)
        .on_conflict_do_nothing(index_elements=["provider"])
    )


def _pause(conn: SyncConnection, provider: str, until: datetime, now: datetime) -> None:
    _ensure_provider(conn, provider, now, _FULL)  # a full bucket: claims cap it to capacity
    column = provider_state.c.paused_until
    conn.execute(
        provider_state.update()
        .where(provider_state.c.provider == provider)
        .where(sa.or_(column.is_(None), column < until))
        .values(paused_until=until)
    )


def _update_held(conn: SyncConnection, claim: Claim, values: dict[str, Any]) -> None:
    """Update the columns in `values` of a row this claim holds; LeaseLost if it is gone."""
    params = {**values, "held_id": claim.generation.id, "held_token": claim.token}
    if conn.execute(_HELD, params).rowcount != 1:
        raise exceptions.LeaseLost()


def _with_quiet(event: NewEvent, before: Generation) -> NewEvent:
    """The event with the unchanged looks that came before it (the last was `updated_at`)."""
    quiet = {
        "quiet_polls": before.quiet_polls,
        "quiet_from": _iso(before.quiet_since or before.updated_at),
        "quiet_to": _iso(before.updated_at or before.quiet_since),
    }
    return dataclasses.replace(event, data={**event.data, **quiet})


def _quiet_to(data: Any) -> datetime | None:
    """The last folded look before an event, from its data (see `_with_quiet`)."""
    raw = data.get("quiet_to") if isinstance(data, dict) else None
    if not isinstance(raw, str):
        return None
    at = datetime.fromisoformat(raw)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', :payload)")


def _notify_once(conn: SyncConnection, payload: str) -> None:
    """NOTIFY `payload`, delivered when this transaction commits (never if it rolls back).

    PostgreSQL sends identical payloads of one transaction once, so only the first is sent
    here: a group commit of hundreds of events (each "<kind> <provider>") then costs a
    handful of statements, not one round trip per event (that was a quarter of the write
    thread's time at 10,000 active generations, `python -m bench scale --workers`)."""
    transaction = conn.get_transaction()
    sent = conn.info.get("reelwatch_notified")
    if sent is None or sent[0] is not transaction:
        payloads: set[str] = set()
        sent = conn.info["reelwatch_notified"] = (transaction, payloads)
    if payload not in sent[1]:
        sent[1].add(payload)
        conn.execute(_NOTIFY, {"payload": payload})


def _append(conn: SyncConnection, generation: Generation, event: NewEvent, at: datetime) -> Event:
    """Append an event (sync: async callers go through `AsyncConnection.run_sync`)."""
    data = dict(event.data)
    values = {
        "generation_id": generation.id,
        "at": at,
        "kind": event.kind,
        "status": generation.status.value,
        "progress": generation.progress,
        "actor": event.actor,
        "data": data,
    }
    event_id = conn.execute(_INSERT_EVENT, values).scalar()
    assert event_id is not None
    if conn.dialect.name == "postgresql":
        _notify_once(conn, f"{event.kind} {generation.provider}")
    return Event(
        id=int(event_id),
        generation_id=generation.id,
        at=at,
        kind=event.kind,
        status=generation.status,
        progress=generation.progress,
        actor=event.actor,
        data=data,
    )


# The events that record what the provider said (a look); a 429 or a worker's own wait saw nothing.
_LOOKS = tuple(
    kind.value
    for kind in (
        EventKind.SUBMITTED,
        EventKind.TRACKED,
        EventKind.RECONCILED,
        EventKind.STATUS,
        EventKind.PROGRESS,
        EventKind.POLL,
        EventKind.WEBHOOK,
    )
)


def _announce(
    conn: SyncConnection, before: Status, new: Generation, now: datetime, urls: Sequence[str]
) -> None:
    """Queue the webhooks that say a front video ended (sync, in the writer's transaction, so
    the change and its announcement commit together): one row per URL, sent by `outbox.py`."""
    if not urls or not new.terminal or before in TERMINAL:
        return
    video_id = conn.execute(
        sa.select(front_videos.c.id).where(front_videos.c.generation_id == new.id)
    ).scalar()
    if video_id is None:
        return
    event_type = "video.completed" if new.status is Status.COMPLETED else "video.failed"
    webhook_id = "evt_" + secrets.token_hex(16)
    body = json.dumps(
        {
            "id": webhook_id,
            "object": "event",
            "created_at": int(now.timestamp()),
            "type": event_type,
            "data": {"id": video_id},
        },
        separators=(",", ":"),
    )
    conn.execute(
        webhook_outbox.insert(),
        [
            {
                "webhook_id": webhook_id,
                "url": url,
                "generation_id": new.id,
                "event_type": event_type,
                "body": body,
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            }
            for url in urls
        ],
    )


def _learn(conn: SyncConnection, before: Status, new: Generation, now: datetime) -> None:
    """Keep what a render that just finished at its provider teaches (sync, in the writer's
    transaction): one indexed read of its events and one insert, once per render."""
    if before not in RENDERING or new.status is not Status.DOWNLOADING:
        return
    rows = conn.execute(
        sa.select(events.c.at, events.c.status, events.c.progress, events.c.data)
        .where(events.c.generation_id == new.id, events.c.kind.in_(_LOOKS))
        .order_by(events.c.id)
    ).all()
    looks = [
        predict.Look(at, status, progress, _quiet_to(data)) for at, status, progress, data in rows
    ]
    run = predict.learn(new.submitted_at, new.remote_completed_at, looks)
    if run is None:
        return
    shape = predict.shape_of(new)
    conn.execute(
        render_history.insert().values(
            shape=shape,
            generation_id=new.id,
            finished_at=now,
            queue_s=run.queue_s,
            render_s=run.render_s,
            marks=[list(mark) for mark in run.marks],
        )
    )


def _to_row(g: Generation) -> dict[str, Any]:
    return {
        "id": g.id,
        "provider": g.provider,
        "video_id": g.video_id,
        "status": g.status.value,
        "progress": g.progress,
        "model": g.model,
        "seconds": g.seconds,
        "size": g.size,
        "prompt": g.prompt,
        "input_reference": g.input_reference,
        "created_at": g.created_at,
        "watch_started_at": g.watch_started_at,
        "submitted_at": g.submitted_at,
        "started_at": g.started_at,
        "remote_completed_at": g.remote_completed_at,
        "completed_at": g.completed_at,
        "expires_at": g.expires_at,
        "error_code": _fit(g.error.code, 100) if g.error else None,
        "error_message": _fit(g.error.message, None) if g.error else None,
        "attempts": g.attempts,
        "failures": g.failures,
        "next_poll_at": g.next_poll_at,
        "last_progress_at": g.last_progress_at,
        "remote_status": _fit(g.remote_status, 50),
        "submit_ambiguous": g.submit_ambiguous,
        "assets": {v.value: a.to_json() for v, a in g.assets.items()},
        "updated_at": g.updated_at or g.created_at,
        "download_bytes": g.download_bytes,
        "download_total": g.download_total,
        "started_progress": g.started_progress,
        "claims": g.claims,
        "attention": g.attention,
        "submit_started_at": g.submit_started_at,
        "endpoint": g.endpoint,
        "params": dict(g.params),
        "remote": dict(g.remote),
        "step_detail": _fit(g.step_detail, 200),
        "started_after": g.started_after,
        "progress_after": g.progress_after,
        "quiet_polls": g.quiet_polls,
        "quiet_since": g.quiet_since,
        "submissions": g.submissions,
    }


def _fit(text: str | None, width: int | None) -> str | None:
    """Provider text as a column can hold it: no NUL (PostgreSQL refuses it in text), and cut
    to the column's width (a provider's status word or error code can be anything)."""
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    return text if width is None else text[:width]


def _front_row(video: FrontVideo) -> dict[str, Any]:
    return {
        "id": video.id,
        "generation_id": video.generation_id,
        "client": video.client,
        "model": video.model,
        "seconds": video.seconds,
        "size": video.size,
        "remixed_from": video.remixed_from,
        "created_at": video.created_at,
        "deleted_at": video.deleted_at,
    }


# A join with `generations` names the front's columns apart (both tables have id, model, ...).
_FRONT_COLUMNS = [column.label(f"front_{column.name}") for column in front_videos.c]


def _front_from_row(row: sa.RowMapping) -> FrontVideo:
    """A front video from a row that joined `generations` with `_FRONT_COLUMNS`."""
    return FrontVideo(
        id=row["front_id"],
        generation_id=row["front_generation_id"],
        client=row["front_client"],
        model=row["front_model"],
        seconds=row["front_seconds"],
        size=row["front_size"],
        created_at=row["front_created_at"],
        remixed_from=row["front_remixed_from"],
        deleted_at=row["front_deleted_at"],
    )


def _from_row(row: sa.RowMapping) -> Generation:
    error = None
    if row["error_code"] is not None:
        error = ErrorInfo(row["error_code"], row["error_message"] or "")
    assets = {Variant(k): Asset.from_json(k, v) for k, v in (row["assets"] or {}).items()}
    return Generation(
        id=row["id"],
        provider=row["provider"],
        video_id=row["video_id"],
        status=Status(row["status"]),
        progress=row["progress"],
        model=row["model"],
        seconds=row["seconds"],
        size=row["size"],
        prompt=row["prompt"],
        input_reference=row["input_reference"],
        created_at=row["created_at"],
        watch_started_at=row["watch_started_at"],
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        remote_completed_at=row["remote_completed_at"],
        completed_at=row["completed_at"],
        expires_at=row["expires_at"],
        error=error,
        attempts=row["attempts"],
        failures=row["failures"],
        next_poll_at=row["next_poll_at"],
        last_progress_at=row["last_progress_at"],
        remote_status=row["remote_status"],
        submit_ambiguous=bool(row["submit_ambiguous"]),
        assets=assets,
        updated_at=row["updated_at"],
        download_bytes=row["download_bytes"],
        download_total=row["download_total"],
        started_progress=row["started_progress"],
        claims=row["claims"],
        attention=row["attention"],
        submit_started_at=row["submit_started_at"],
        endpoint=row["endpoint"],
        params=row["params"] or {},
        remote=row["remote"] or {},
        step_detail=row["step_detail"],
        started_after=row["started_after"],
        progress_after=row["progress_after"],
        quiet_polls=row["quiet_polls"],
        quiet_since=row["quiet_since"],
        submissions=row["submissions"],
    )


def _utc_value(row: sa.RowMapping) -> datetime:
    value = row["lease_expires_at"]
    assert isinstance(value, datetime)
    return value


def _event(row: sa.RowMapping) -> Event:
    return Event(
        id=int(row["id"]),
        generation_id=row["generation_id"],
        at=row["at"],
        kind=row["kind"],
        status=Status(row["status"]),
        progress=row["progress"],
        actor=row["actor"],
        data=row["data"] or {},
    )


def _encode_cursor(g: Generation, column: str = "created_at") -> str:
    value = g.updated_at or g.created_at if column == "updated_at" else g.created_at
    raw = json.dumps([value.isoformat(), g.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor this server handed out, or InvalidInput: anything else (a crafted offset, lone
    surrogates, NUL, an id no generation can have) never reaches the database."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, last_id = json.loads(raw)
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None or not isinstance(last_id, str):
            raise ValueError(cursor)
        if not 1970 <= parsed.year <= 9998 or not _CURSOR_ID.fullmatch(last_id):
            raise ValueError(cursor)
        return parsed, last_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, OverflowError) as exc:
        raise exceptions.InvalidInput("cursor: not a cursor this server handed out") from exc


_CURSOR_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")

"""The store contract: the same behaviour on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import secrets
import sys
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from reelwatch import exceptions, lifecycle
from reelwatch import store as store_module
from reelwatch.models import (
    ACTIVE,
    TERMINAL,
    Asset,
    Endpoint,
    ErrorInfo,
    Generation,
    NewEvent,
    Status,
    Variant,
)
from reelwatch.store import Store, migrate, tables, urls

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE_S = 60.0


def at(seconds: float) -> datetime:
    """T0 plus some seconds: every test runs on this one fixed clock."""
    return T0 + timedelta(seconds=seconds)


def make_generation(**changes: Any) -> Generation:
    """A queued generation due at T0, unique id and video id; override any field."""
    suffix = secrets.token_hex(6)
    values: dict[str, Any] = {
        "id": f"gen_{suffix}",
        "provider": "openai",
        "video_id": f"video_{suffix}",
        "status": Status.QUEUED,
        "progress": 0,
        "model": "sora-2",
        "seconds": 4,
        "size": "1280x720",
        "prompt": f"a paper boat {suffix}",
        "created_at": T0,
        "watch_started_at": T0,
        "next_poll_at": T0,
    }
    values.update(changes)
    return Generation(**values)


def decision(g: Generation, kind: str = "polled", **changes: Any) -> lifecycle.Decision:
    return lifecycle.Decision(dataclasses.replace(g, **changes), NewEvent(kind, {"step": kind}))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url)
    yield s
    await s.close()


@pytest.fixture
async def other_store(db_url: str, store: Store) -> AsyncIterator[Store]:
    """A second Store on the same database: its own connection pool, like another process."""
    s = await Store.open(db_url)
    yield s
    await s.close()


async def add(store: Store, g: Generation | None = None, **changes: Any) -> Generation:
    """Create a generation and give back the creator's lease, so it is free for workers."""
    g = g or make_generation(**changes)
    claim = await store.create(g, NewEvent("created"), owner="creator", now=T0, lease_s=LEASE_S)
    await store.release([claim])
    return await store.get(g.id)


async def claim_ids(
    store: Store, *, now: datetime, limit: int = 100, owner: str = "w"
) -> list[str]:
    claims = await store.claim_due(owner=owner, now=now, limit=limit, lease_s=LEASE_S)
    return [c.generation.id for c in claims]


def _sync_url(db_url: str) -> str:
    return urls(db_url)[1]


def _inspect(db_url: str) -> tuple[set[str], str | None, list[Any]]:
    """Table names, the Alembic revision and the differences from `tables.metadata`."""
    engine = sa.create_engine(_sync_url(db_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            names = set(sa.inspect(conn).get_table_names())
            return names, context.get_current_revision(), compare_metadata(context, tables.metadata)
    finally:
        engine.dispose()


def _drop_everything(db_url: str) -> None:
    engine = sa.create_engine(_sync_url(db_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            tables.metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def _head() -> str | None:
    return ScriptDirectory.from_config(migrate.config("sqlite://")).get_current_head()


# --- migrations -----------------------------------------------------------------------------


async def test_open_creates_the_schema(db_url: str) -> None:
    """Opening an empty database migrates it to the head revision."""
    await asyncio.to_thread(_drop_everything, db_url)
    store = await Store.open(db_url)
    await store.close()
    names, revision, _ = await asyncio.to_thread(_inspect, db_url)
    assert {"generations", "events", "alembic_version"} <= names
    assert revision == _head()


def test_the_cheap_version_check_knows_the_revisions_alembic_knows() -> None:
    """Read commands check the schema without importing Alembic: the revisions and the head
    read from the migration files' text are Alembic's own."""
    script = ScriptDirectory.from_config(migrate.config("sqlite://"))
    known, head = migrate.revisions()
    assert head == script.get_current_head()
    assert known == {revision.revision for revision in script.walk_revisions()}


async def test_open_existing_never_migrates_and_says_what_to_run(db_url: str) -> None:
    """A database without the schema, or at an older revision, is refused in one line naming
    `reelwatch db upgrade` and left as it was; at the head it opens and reads."""
    await asyncio.to_thread(_drop_everything, db_url)
    with pytest.raises(exceptions.SchemaMismatch, match="no reelwatch schema yet"):
        await Store.open_existing(db_url)
    await asyncio.to_thread(migrate.upgrade, urls(db_url)[1], "0007")
    with pytest.raises(exceptions.SchemaMismatch) as caught:
        await Store.open_existing(db_url)
    assert str(caught.value) == (
        f"the database schema is at 0007, this reelwatch needs {_head()}:"
        " run `reelwatch db upgrade`"
    )
    _, revision, _ = await asyncio.to_thread(_inspect, db_url)
    assert revision == "0007"
    await (await Store.open(db_url)).close()  # a write command migrates
    reader = await Store.open_existing(db_url)
    try:
        assert (await reader.page(limit=5)).items == []
    finally:
        await reader.close()


async def test_open_existing_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    """No file, no folder: NoDatabase in one line, and neither is created."""
    folder = tmp_path / "data"
    with pytest.raises(exceptions.NoDatabase, match="nothing has been submitted yet"):
        await Store.open_existing(f"sqlite:///{folder / 'reelwatch.db'}")
    assert not folder.exists()


async def test_open_twice_is_idempotent(db_url: str) -> None:
    """Opening a migrated database again changes nothing and keeps the data."""
    first = await Store.open(db_url)
    g = await add(first)
    await first.close()
    second = await Store.open(db_url)
    try:
        assert await second.get(g.id) == g
        assert len(await second.history(g.id)) == 1
    finally:
        await second.close()
    _, revision, _ = await asyncio.to_thread(_inspect, db_url)
    assert revision == _head()


async def test_concurrent_opens_of_a_fresh_database_all_succeed(db_url: str) -> None:
    """Stores opened at once in one process on an empty database all migrate it cleanly."""
    await asyncio.to_thread(_drop_everything, db_url)
    stores = await asyncio.gather(*(Store.open(db_url) for _ in range(3)))
    for s in stores:
        await s.close()
    _, revision, differences = await asyncio.to_thread(_inspect, db_url)
    assert (revision, differences) == (_head(), [])


async def test_concurrent_migrations_from_several_processes_all_succeed(db_url: str) -> None:
    """Processes migrating one empty database at once all succeed: one migrates, others wait."""
    await asyncio.to_thread(_drop_everything, db_url)
    code = (
        "import sys; from reelwatch import store; store.migrate.upgrade(store.urls(sys.argv[1])[1])"
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, db_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    errors = [(await p.communicate())[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], errors
    _, revision, differences = await asyncio.to_thread(_inspect, db_url)
    assert (revision, differences) == (_head(), [])


async def test_migrated_schema_matches_the_tables(store: Store, db_url: str) -> None:
    """Alembic's autogenerate finds no difference between the migrations and `tables`."""
    _, _, differences = await asyncio.to_thread(_inspect, db_url)
    assert differences == []


# --- create and get -------------------------------------------------------------------------


async def test_create_then_get_round_trips_every_field(store: Store) -> None:
    """Every Generation field comes back as stored: aware UTC datetimes, assets, error."""
    assets = {
        Variant.VIDEO: Asset(Variant.VIDEO, "v/gen/video.mp4", 123_456, "ab" * 32, "video/mp4"),
        Variant.THUMBNAIL: Asset(
            Variant.THUMBNAIL, "v/gen/thumb.webp", 42, "cd" * 32, "image/webp"
        ),
    }
    g = make_generation(
        status=Status.FAILED,
        progress=73,
        model="sora-2-pro",
        seconds=12,
        size="1792x1024",
        prompt="ünïcode 🎬 prompt with 'quotes' and \\ backslash",
        input_reference="refs/first-frame.png",
        created_at=at(-3600),
        watch_started_at=at(-3599),
        submitted_at=at(-3598),
        started_at=at(-3000),
        remote_completed_at=at(-100.5),
        completed_at=at(-100),
        expires_at=at(86_400),
        error=ErrorInfo("moderation_blocked", "The prompt was blocked."),
        attempts=3,
        failures=2,
        next_poll_at=None,
        last_progress_at=at(-200),
        remote_status="failed",
        submit_ambiguous=True,
        assets=assets,
        updated_at=at(-50),
    )
    claim = await store.create(g, NewEvent("created"), owner="api", now=T0, lease_s=LEASE_S)
    assert claim.generation == g
    assert claim.lease_expires_at == at(LEASE_S)
    got = await store.get(g.id)
    assert got == g
    for field in dataclasses.fields(Generation):
        value = getattr(got, field.name)
        if isinstance(value, datetime):
            assert value.tzinfo is UTC, field.name


async def test_datetimes_in_other_zones_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    """An aware non-UTC datetime is stored as its instant and read back in UTC."""
    paris = timezone(timedelta(hours=2))
    g = make_generation(created_at=T0.astimezone(paris), next_poll_at=at(5).astimezone(paris))
    got = await add(store, g)
    assert (got.created_at, got.next_poll_at) == (T0, at(5))
    assert got.created_at.tzinfo is UTC
    assert got.next_poll_at is not None
    assert got.next_poll_at.tzinfo is UTC


async def test_create_appends_the_first_event(store: Store) -> None:
    """Creating a generation writes its first event in the same transaction."""
    g = make_generation()
    await store.create(
        g, NewEvent("created", {"by": "api"}, "alice"), owner="api", now=T0, lease_s=1
    )
    [event] = await store.history(g.id)
    assert (event.kind, event.status, event.actor, event.data) == (
        "created",
        Status.QUEUED,
        "alice",
        {"by": "api"},
    )
    assert event.at == g.created_at


async def test_create_of_a_tracked_video_raises_invalid_input_and_writes_nothing(
    store: Store,
) -> None:
    """A second generation for the same (provider, video_id) is refused, row and event alike."""
    first = await add(store)
    twin = make_generation(video_id=first.video_id)
    with pytest.raises(exceptions.InvalidInput):
        await store.create(twin, NewEvent("created"), owner="api", now=T0, lease_s=LEASE_S)
    with pytest.raises(exceptions.NotFound):
        await store.get(twin.id)
    assert [e.generation_id for e in await store.events_after(0)] == [first.id]


async def test_created_generation_is_leased_to_its_creator(store: Store) -> None:
    """A new generation is not claimable by workers until its creator's lease ends."""
    g = make_generation(next_poll_at=T0)
    await store.create(g, NewEvent("created"), owner="api", now=T0, lease_s=LEASE_S)
    assert await claim_ids(store, now=at(LEASE_S / 2)) == []
    assert await claim_ids(store, now=at(LEASE_S + 1)) == [g.id]


# --- claim_due ------------------------------------------------------------------------------


async def test_claim_due_takes_only_active_rows_that_are_due(store: Store) -> None:
    """Future rows and terminal rows (even with a past next_poll_at) are left alone."""
    due = [(await add(store, status=s, next_poll_at=at(-1))).id for s in ACTIVE]
    await add(store, next_poll_at=at(1))
    await add(store, next_poll_at=None)
    for status in TERMINAL:
        await add(store, status=status, next_poll_at=at(-1))
    assert sorted(await claim_ids(store, now=T0)) == sorted(due)


async def test_claim_due_takes_a_row_due_exactly_now(store: Store) -> None:
    """next_poll_at == now counts as due."""
    g = await add(store, next_poll_at=T0)
    assert await claim_ids(store, now=T0) == [g.id]


async def test_claim_due_skips_rows_under_a_live_lease(store: Store) -> None:
    """A row leased by another owner is not claimed while the lease lasts."""
    g = await add(store)
    assert await claim_ids(store, now=T0, owner="a") == [g.id]
    assert await claim_ids(store, now=at(LEASE_S - 1), owner="b") == []


async def test_claim_due_takes_a_row_whose_lease_expired(store: Store) -> None:
    """An expired lease makes the row claimable again, by another owner, with a new token."""
    await add(store)
    [first] = await store.claim_due(owner="a", now=T0, limit=10, lease_s=LEASE_S)
    [second] = await store.claim_due(owner="b", now=at(LEASE_S + 1), limit=10, lease_s=LEASE_S)
    assert second.generation.id == first.generation.id
    assert second.token != first.token
    assert second.lease_expires_at == at(2 * LEASE_S + 1)


async def test_claim_due_orders_most_overdue_first_then_oldest_created(store: Store) -> None:
    """Claims come back by next_poll_at, ties broken by created_at."""
    late = await add(store, next_poll_at=at(-30), created_at=at(-10))
    tie_young = await add(store, next_poll_at=at(-20), created_at=at(-5))
    tie_old = await add(store, next_poll_at=at(-20), created_at=at(-50))
    recent = await add(store, next_poll_at=at(-1), created_at=at(-100))
    expected = [late.id, tie_old.id, tie_young.id, recent.id]
    assert await claim_ids(store, now=T0) == expected


async def test_claim_due_respects_limit_and_takes_the_most_overdue(store: Store) -> None:
    """With a limit, the most overdue rows are claimed and the rest stay due."""
    rows = [await add(store, next_poll_at=at(-i)) for i in range(1, 8)]
    most_overdue = [g.id for g in sorted(rows, key=lambda g: g.next_poll_at or T0)]
    assert await claim_ids(store, now=T0, limit=3) == most_overdue[:3]
    assert await claim_ids(store, now=T0, limit=3) == most_overdue[3:6]
    assert await claim_ids(store, now=T0, limit=3) == most_overdue[6:]


async def test_claim_due_with_no_room_claims_nothing(store: Store) -> None:
    """limit <= 0 leases nothing."""
    await add(store)
    assert await claim_ids(store, now=T0, limit=0) == []
    assert len(await claim_ids(store, now=T0, limit=1)) == 1


async def test_claimed_row_is_not_claimed_again_until_its_lease_expires(store: Store) -> None:
    """Claiming again before expiry, by the same or another owner, returns nothing."""
    g = await add(store)
    assert await claim_ids(store, now=T0, owner="a") == [g.id]
    assert await claim_ids(store, now=T0, owner="a") == []
    assert await claim_ids(store, now=at(LEASE_S / 2), owner="b") == []
    assert await claim_ids(store, now=at(LEASE_S + 0.001), owner="b") == [g.id]


# --- concurrency ----------------------------------------------------------------------------


async def test_concurrent_claimers_never_get_the_same_row(store: Store, other_store: Store) -> None:
    """Four claimers on two connection pools split 200 due rows with no row claimed twice."""
    rows = 200
    expected = {(await add(store)).id for _ in range(rows)}

    async def drain(s: Store, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await claim_ids(s, now=T0, limit=9, owner=owner):
            got += batch
        return got

    results = await asyncio.gather(
        drain(store, "a1"), drain(other_store, "b1"), drain(store, "a2"), drain(other_store, "b2")
    )
    assert sum(1 for result in results if result) > 1  # they did take turns
    claimed = [gid for result in results for gid in result]
    assert len(claimed) == len(set(claimed)) == rows
    assert set(claimed) == expected


async def test_concurrent_acts_never_lose_an_update(store: Store, other_store: Store) -> None:
    """act reads and writes in one transaction: concurrent increments all land."""
    g = await add(store)

    def bump(current: Generation) -> lifecycle.Decision:
        return decision(current, "bumped", attempts=current.attempts + 1)

    per_store = 10
    await asyncio.gather(
        *(s.act(g.id, bump, now=T0) for s in (store, other_store) for _ in range(per_store))
    )
    assert (await store.get(g.id)).attempts == 2 * per_store
    assert len(await store.history(g.id)) == 1 + 2 * per_store


# --- apply, extend, release -----------------------------------------------------------------


async def test_apply_writes_the_decision_and_appends_its_event(store: Store) -> None:
    """The row takes the decision's state (updated_at = now) and one event is appended."""
    await add(store)
    [claim] = await store.claim_due(owner="w", now=T0, limit=1, lease_s=LEASE_S)
    now = at(5)
    new = dataclasses.replace(
        claim.generation, status=Status.IN_PROGRESS, progress=40, started_at=now
    )
    event = NewEvent("progress", {"progress": 40}, actor="worker-1")
    after, stored = await store.apply(claim, lifecycle.Decision(new, event), now=now)
    assert after.generation == dataclasses.replace(new, updated_at=now)
    assert await store.get(new.id) == after.generation
    history = await store.history(new.id)
    assert history[-1] == stored
    assert (stored.kind, stored.status, stored.progress, stored.actor, stored.at) == (
        "progress",
        Status.IN_PROGRESS,
        40,
        "worker-1",
        now,
    )
    assert stored.data == {"progress": 40}
    assert len(history) == 2


async def test_apply_releases_the_lease_by_default(store: Store) -> None:
    """After apply, another owner can claim the row at once if it is due."""
    await add(store)
    [claim] = await store.claim_due(owner="a", now=T0, limit=1, lease_s=LEASE_S)
    await store.apply(claim, decision(claim.generation), now=T0)
    assert await claim_ids(store, now=T0, owner="b") == [claim.generation.id]


async def test_apply_without_release_keeps_the_lease(store: Store) -> None:
    """release=False keeps the row leased and the returned claim usable for the next write."""
    await add(store)
    [claim] = await store.claim_due(owner="a", now=T0, limit=1, lease_s=LEASE_S)
    kept, _ = await store.apply(claim, decision(claim.generation), now=T0, release=False)
    assert (kept.token, kept.lease_expires_at) == (claim.token, claim.lease_expires_at)
    assert await claim_ids(store, now=at(1), owner="b") == []
    assert await store.claim(claim.generation.id, owner="b", now=at(1), lease_s=LEASE_S) is None
    done, _ = await store.apply(kept, decision(kept.generation, progress=10), now=at(2))
    assert done.generation.progress == 10


async def test_apply_after_another_owner_reclaimed_raises_lease_lost(store: Store) -> None:
    """A stale token (lease expired, row re-claimed) is refused and nothing is written."""
    await add(store)
    [stale] = await store.claim_due(owner="a", now=T0, limit=1, lease_s=LEASE_S)
    [fresh] = await store.claim_due(owner="b", now=at(LEASE_S + 1), limit=1, lease_s=LEASE_S)
    before = await store.get(stale.generation.id)
    events_before = await store.history(stale.generation.id)
    with pytest.raises(exceptions.LeaseLost):
        await store.apply(stale, decision(stale.generation, progress=99), now=at(LEASE_S + 2))
    assert await store.get(stale.generation.id) == before
    assert await store.history(stale.generation.id) == events_before
    await store.apply(fresh, decision(fresh.generation), now=at(LEASE_S + 3))


async def test_apply_after_act_voided_the_lease_raises_lease_lost(store: Store) -> None:
    """An admin act voids the lease: the worker's later write is refused and writes nothing."""
    await add(store)
    [claim] = await store.claim_due(owner="w", now=T0, limit=1, lease_s=LEASE_S)
    cancelled, _ = await store.act(
        claim.generation.id,
        lambda g: decision(g, "cancelled", status=Status.CANCELLED, next_poll_at=None),
        now=at(1),
    )
    events_before = await store.history(claim.generation.id)
    with pytest.raises(exceptions.LeaseLost):
        await store.apply(claim, decision(claim.generation, progress=50), now=at(2))
    assert await store.get(claim.generation.id) == cancelled
    assert await store.history(claim.generation.id) == events_before


async def test_apply_writes_nothing_when_its_event_cannot_be_stored(store: Store) -> None:
    """Row and event are one transaction: a failing event insert rolls the row back."""
    await add(store)
    [claim] = await store.claim_due(owner="w", now=T0, limit=1, lease_s=LEASE_S)
    before = await store.get(claim.generation.id)
    bad = lifecycle.Decision(
        dataclasses.replace(claim.generation, progress=50),
        NewEvent("progress", {"not json": object()}),
    )
    with pytest.raises((TypeError, sa.exc.StatementError)):  # psycopg / SQLAlchemy serialise
        await store.apply(claim, bad, now=at(1))
    assert await store.get(claim.generation.id) == before
    assert len(await store.history(claim.generation.id)) == 1
    assert await claim_ids(store, now=at(1), owner="other") == []  # the lease still holds


async def test_concurrent_applies_share_commits_and_each_gets_its_own_outcome(
    store: Store,
) -> None:
    """Writes from many tasks are committed together (group commit), yet a write whose lease
    was voided fails alone with LeaseLost, a write that breaks the transaction fails alone with
    its own error, and every other write is stored with its event."""
    for _ in range(12):
        await add(store)
    claims = await store.claim_due(owner="w", now=T0, limit=12, lease_s=LEASE_S)
    voided, broken, *good = claims
    await store.act(voided.generation.id, lambda g: decision(g, "reset"), now=at(1))
    commits = 0

    def count() -> None:
        nonlocal commits
        commits += 1

    store.on_append(count)
    bad = lifecycle.Decision(
        dataclasses.replace(broken.generation, progress=50),
        NewEvent("progress", {"not json": object()}),
    )
    outcomes = await asyncio.gather(
        store.apply(voided, decision(voided.generation, progress=9), now=at(2)),
        store.apply(broken, bad, now=at(2)),
        *(store.apply(c, decision(c.generation, progress=30), now=at(2)) for c in good),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], exceptions.LeaseLost)
    assert isinstance(outcomes[1], (TypeError, sa.exc.StatementError))
    for claim, outcome in zip(good, outcomes[2:], strict=True):
        assert not isinstance(outcome, BaseException)
        assert (await store.get(claim.generation.id)).progress == 30
        assert (await store.history(claim.generation.id))[-1] == outcome[1]
    assert (await store.get(voided.generation.id)).progress == 0
    assert (await store.get(broken.generation.id)).progress == 0
    assert len(await store.history(broken.generation.id)) == 1
    assert commits < len(claims)  # fewer commits than writes: they were grouped


async def test_extend_moves_the_lease_expiry(store: Store) -> None:
    """An extended lease keeps others out past the original expiry."""
    await add(store)
    [claim] = await store.claim_due(owner="a", now=T0, limit=1, lease_s=LEASE_S)
    extended = await store.extend(claim, now=at(LEASE_S - 1), lease_s=LEASE_S)
    assert extended.lease_expires_at == at(2 * LEASE_S - 1)
    assert extended.token == claim.token
    assert await claim_ids(store, now=at(LEASE_S + 1), owner="b") == []
    assert await claim_ids(store, now=at(2 * LEASE_S), owner="b") == [claim.generation.id]


async def test_extend_with_a_stale_token_raises_lease_lost(store: Store) -> None:
    """Extending a lease someone else re-claimed is refused and leaves their lease alone."""
    await add(store)
    [stale] = await store.claim_due(owner="a", now=T0, limit=1, lease_s=LEASE_S)
    [fresh] = await store.claim_due(owner="b", now=at(LEASE_S + 1), limit=1, lease_s=LEASE_S)
    with pytest.raises(exceptions.LeaseLost):
        await store.extend(stale, now=at(LEASE_S + 2), lease_s=10 * LEASE_S)
    assert await claim_ids(store, now=fresh.lease_expires_at + timedelta(seconds=1)) != []


async def test_release_frees_leases(store: Store) -> None:
    """Released rows are claimable again at once, unchanged."""
    for _ in range(3):
        await add(store)
    claims = await store.claim_due(owner="a", now=T0, limit=2, lease_s=LEASE_S)
    before = [await store.get(c.generation.id) for c in claims]
    await store.release(claims)
    again = await claim_ids(store, now=T0, owner="b")
    assert {c.generation.id for c in claims} < set(again)
    assert [await store.get(c.generation.id) for c in claims] == before


async def test_release_with_a_stale_token_keeps_the_new_lease(store: Store) -> None:
    """Releasing a lease someone else has since taken does not free their lease."""
    await add(store)
    [stale] = await store.claim_due(owner="a", now=T0, limit=1, lease_s=LEASE_S)
    await store.claim_due(owner="b", now=at(LEASE_S + 1), limit=1, lease_s=LEASE_S)
    await store.release([stale])
    assert await claim_ids(store, now=at(LEASE_S + 2), owner="c") == []


# --- act ------------------------------------------------------------------------------------


async def test_act_decides_on_the_current_row_and_appends_its_event(store: Store) -> None:
    """decide sees the stored row; its decision is written with updated_at = now."""
    g = await add(store, progress=30)
    seen: list[Generation] = []

    def decide(current: Generation) -> lifecycle.Decision:
        seen.append(current)
        return lifecycle.Decision(
            dataclasses.replace(current, status=Status.CANCELLED, next_poll_at=None),
            NewEvent("cancelled", {"reason": "test"}, actor="admin"),
        )

    new, event = await store.act(g.id, decide, now=at(7))
    assert seen == [g]
    assert new.status is Status.CANCELLED
    assert new.updated_at == at(7)
    assert await store.get(g.id) == new
    assert (await store.history(g.id))[-1] == event
    assert (event.kind, event.actor, event.at, event.status) == (
        "cancelled",
        "admin",
        at(7),
        Status.CANCELLED,
    )


async def test_act_voids_any_lease(store: Store) -> None:
    """After act, the row is free for any owner (if still active and due)."""
    g = await add(store)
    assert await claim_ids(store, now=T0, owner="a") == [g.id]
    await store.act(g.id, lambda current: decision(current, "reset"), now=T0)
    assert await claim_ids(store, now=T0, owner="b") == [g.id]


async def test_act_writes_nothing_when_decide_raises(store: Store) -> None:
    """An exception from decide propagates and leaves the row, its lease and events as they were."""
    g = await add(store)
    [claim] = await store.claim_due(owner="w", now=T0, limit=1, lease_s=LEASE_S)

    def refuse(current: Generation) -> lifecycle.Decision:
        raise exceptions.NotAllowed("not in this state")

    with pytest.raises(exceptions.NotAllowed):
        await store.act(g.id, refuse, now=at(1))
    assert await store.get(g.id) == claim.generation
    assert len(await store.history(g.id)) == 1
    await store.apply(claim, decision(claim.generation), now=at(2))  # the lease survived


async def test_act_on_an_unknown_id_raises_not_found(store: Store) -> None:
    """act on a generation that does not exist raises NotFound."""
    with pytest.raises(exceptions.NotFound):
        await store.act("gen_missing", decision, now=T0)


# --- claim one ------------------------------------------------------------------------------


async def test_claim_leases_an_active_row_before_it_is_due(store: Store) -> None:
    """claim(id) ignores next_poll_at and leases the row to the caller."""
    g = await add(store, next_poll_at=at(3600))
    claim = await store.claim(g.id, owner="cli", now=T0, lease_s=LEASE_S)
    assert claim is not None
    assert claim.generation == dataclasses.replace(g, claims=1)  # claims are counted
    assert claim.lease_expires_at == at(LEASE_S)
    assert await store.claim(g.id, owner="other", now=at(1), lease_s=LEASE_S) is None
    await store.apply(claim, decision(g), now=at(2))


async def test_claim_returns_none_when_the_row_is_busy(store: Store) -> None:
    """A row under a live lease cannot be claimed; after expiry it can."""
    g = await add(store)
    assert await store.claim(g.id, owner="a", now=T0, lease_s=LEASE_S) is not None
    assert await store.claim(g.id, owner="b", now=at(1), lease_s=LEASE_S) is None
    assert await store.claim(g.id, owner="b", now=at(LEASE_S + 1), lease_s=LEASE_S) is not None


@pytest.mark.parametrize("status", sorted(TERMINAL))
async def test_claim_returns_none_for_a_terminal_row(store: Store, status: Status) -> None:
    """Finished generations are never leased."""
    g = await add(store, status=status, next_poll_at=None)
    assert await store.claim(g.id, owner="a", now=T0, lease_s=LEASE_S) is None


async def test_claim_returns_none_for_an_unknown_id(store: Store) -> None:
    """Claiming a generation that does not exist returns None."""
    assert await store.claim("gen_missing", owner="a", now=T0, lease_s=LEASE_S) is None


# --- page -----------------------------------------------------------------------------------


async def test_page_lists_newest_first(store: Store) -> None:
    """Without filters, the most recently created generation comes first."""
    rows = [await add(store, created_at=at(i)) for i in (3, 1, 2)]
    page = await store.page()
    assert [g.id for g in page.items] == [rows[0].id, rows[2].id, rows[1].id]
    assert page.next_cursor is None


async def test_page_filters_by_status(store: Store) -> None:
    """Only generations in the given statuses are listed."""
    done = await add(store, status=Status.COMPLETED, created_at=at(1))
    failed = await add(store, status=Status.FAILED, created_at=at(2))
    await add(store, status=Status.QUEUED)
    page = await store.page(statuses=[Status.COMPLETED, Status.FAILED])
    assert [g.id for g in page.items] == [failed.id, done.id]


async def test_page_filters_by_model(store: Store) -> None:
    """Only generations of the given model are listed."""
    pro = await add(store, model="sora-2-pro")
    await add(store, model="sora-2")
    assert [g.id for g in (await store.page(model="sora-2-pro")).items] == [pro.id]


async def test_page_text_filter_is_a_case_insensitive_substring_match(store: Store) -> None:
    """text finds prompts containing it, whatever the case."""
    boat = await add(store, prompt="A Paper BOAT at dusk")
    await add(store, prompt="a red kite")
    assert [g.id for g in (await store.page(text="paper boat")).items] == [boat.id]


@pytest.mark.parametrize(
    ("needle", "matches", "decoy"),
    [
        ("100%", "growth of 100% in a year", "100 percent, 1000 times"),
        ("a_b", "snake a_b case", "the axb pattern"),
        ("c:\\dir", "a path c:\\dir here", "a path c:dir here"),
    ],
)
async def test_page_text_filter_treats_wildcards_literally(
    store: Store, needle: str, matches: str, decoy: str
) -> None:
    """%, _ and backslash in the search text match themselves, not LIKE patterns."""
    hit = await add(store, prompt=matches)
    await add(store, prompt=decoy)
    assert [g.id for g in (await store.page(text=needle)).items] == [hit.id]


async def test_page_cursor_walks_every_row_once_even_with_equal_created_at(store: Store) -> None:
    """Keyset pagination visits all rows exactly once, in order, ties broken by id."""
    rows = [await add(store, created_at=at(i // 4)) for i in range(23)]  # runs of 4 equal times
    expected = [g.id for g in sorted(rows, key=lambda g: (g.created_at, g.id), reverse=True)]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(rows)):
        page = await store.page(limit=5, cursor=cursor)
        seen += [g.id for g in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected


@pytest.mark.parametrize("order", ["newest", "oldest", "changed"])
async def test_page_walks_both_ways_in_every_order(store: Store, order: str) -> None:
    """In each order, `cursor=next_cursor` walks every row once to the end, and from any page
    `before=prev_cursor` gives the page just before it, in the same order, back to the first
    (no prev_cursor)."""
    rows = [await add(store, created_at=at(i // 3)) for i in range(14)]  # ties broken by id
    # Three rows change later, so "changed" differs from "newest".
    for minutes, g in enumerate(rows[1:4], start=1):
        await store.act(g.id, lambda current: decision(current, "bumped"), now=at(60 * minutes))
    rows = [await store.get(g.id) for g in rows]

    def sort_key(g: Generation) -> tuple[datetime, str]:
        return ((g.updated_at or g.created_at) if order == "changed" else g.created_at), g.id

    expected = [g.id for g in sorted(rows, key=sort_key, reverse=order != "oldest")]
    by_creation = sorted(rows, key=lambda g: (g.created_at, g.id), reverse=True)
    assert (expected == [g.id for g in by_creation]) == (order == "newest")
    pages = [await store.page(limit=4, order=order)]
    assert pages[0].prev_cursor is None
    while pages[-1].next_cursor:
        pages.append(await store.page(limit=4, cursor=pages[-1].next_cursor, order=order))
    assert [g.id for p in pages for g in p.items] == expected
    back = pages[-1]
    walked = [g.id for g in back.items]
    while back.prev_cursor:
        back = await store.page(limit=4, before=back.prev_cursor, order=order)
        walked = [g.id for g in back.items] + walked
    assert walked == expected
    assert back.items == pages[0].items and back.prev_cursor is None


async def test_page_text_finds_our_id_or_the_providers_exactly(store: Store) -> None:
    mine = await add(store, prompt="a kite")
    await add(store, prompt=f"mentions {mine.id[:8]} in passing")
    assert [g.id for g in (await store.page(text=mine.id)).items] == [mine.id]
    assert mine.video_id is not None
    assert [g.id for g in (await store.page(text=mine.video_id)).items] == [mine.id]


async def test_page_cursor_is_stable_under_inserts(store: Store) -> None:
    """Rows created after the first page was read do not shift the following pages."""
    rows = [await add(store, created_at=at(i)) for i in range(6)]
    first = await store.page(limit=3)
    await add(store, created_at=at(100))
    assert first.next_cursor is not None
    second = await store.page(limit=3, cursor=first.next_cursor)
    assert [g.id for g in first.items + second.items] == [g.id for g in reversed(rows)]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(json.dumps({"a": 1, "b": 2}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["2026-03-01T12:00:00", "gen_x"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["2026-03-01T12:00:00+00:00", 7]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2, 3]).encode()).decode(),
    ],
    ids=["not-base64", "not-utf8", "object", "naive-time", "int-id", "three-items"],
)
async def test_page_rejects_a_garbage_cursor(store: Store, cursor: str) -> None:
    """A cursor the server did not hand out raises InvalidInput."""
    with pytest.raises(exceptions.InvalidInput):
        await store.page(cursor=cursor)


# --- history, events, due time, counts ------------------------------------------------------


async def test_history_returns_events_in_order(store: Store) -> None:
    """A generation's events come back oldest first, only its own."""
    g = await add(store)
    await add(store)
    claim = await store.claim(g.id, owner="w", now=T0, lease_s=LEASE_S)
    assert claim is not None
    for step in ("a", "b", "c"):
        claim, _ = await store.apply(claim, decision(claim.generation, step), now=T0, release=False)
    history = await store.history(g.id)
    assert [e.kind for e in history] == ["created", "a", "b", "c"]
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert {e.generation_id for e in history} == {g.id}


async def test_history_of_an_unknown_id_raises_not_found(store: Store) -> None:
    """history of a generation that does not exist raises NotFound."""
    with pytest.raises(exceptions.NotFound):
        await store.history("gen_missing")


async def test_get_of_an_unknown_id_raises_not_found(store: Store) -> None:
    """get of a generation that does not exist raises NotFound."""
    with pytest.raises(exceptions.NotFound):
        await store.get("gen_missing")


async def test_events_after_pages_through_all_events_by_id(store: Store) -> None:
    """events_after(id) returns the next events in id order, `limit` at a time."""
    for _ in range(7):
        await add(store)
    everything = await store.events_after(0)
    assert len(everything) == 7
    walked: list[int] = []
    after = 0
    while batch := await store.events_after(after, limit=3):
        assert len(batch) <= 3
        walked += [e.id for e in batch]
        after = batch[-1].id
    assert walked == sorted(walked) == [e.id for e in everything]


async def test_next_due_at_is_the_earliest_poll_of_active_unleased_rows(store: Store) -> None:
    """Terminal and leased rows do not count; an empty table gives None."""
    assert await store.next_due_at() is None
    await add(store, status=Status.COMPLETED, next_poll_at=at(-100))
    leased = await add(store, next_poll_at=at(-50))
    assert await store.claim(leased.id, owner="w", now=T0, lease_s=LEASE_S) is not None
    await add(store, next_poll_at=at(30))
    await add(store, next_poll_at=at(20))
    due = await store.next_due_at()
    assert due == at(20)
    assert due is not None
    assert due.tzinfo is UTC


async def test_count_by_status_counts_every_status(store: Store) -> None:
    """Every status is a key, zero when no generation has it."""
    for status in (Status.QUEUED, Status.QUEUED, Status.FAILED):
        await add(store, status=status)
    counts = await store.count_by_status()
    assert counts == {s: {Status.QUEUED: 2, Status.FAILED: 1}.get(s, 0) for s in Status}


# --- an unreachable database ----------------------------------------------------------------


def _unreachable(tmp_path: Path, kind: str) -> str:
    if kind == "postgres":
        return "postgresql://postgres:secret-pw@127.0.0.1:1/nope"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return f"sqlite:///{blocker / 'sub' / 'reelwatch.db'}"


@pytest.mark.parametrize("upgrade", [True, False], ids=["upgrade", "no-upgrade"])
@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_open_an_unreachable_database_raises_database_unavailable(
    tmp_path: Path, kind: str, upgrade: bool
) -> None:
    """One clear one-line error, with the password masked."""
    with pytest.raises(exceptions.DatabaseUnavailable) as caught:
        await Store.open(_unreachable(tmp_path, kind), upgrade=upgrade)
    message = str(caught.value)
    assert "\n" not in message
    assert "secret-pw" not in message
    assert "secret-pw" not in "".join(traceback.format_exception(caught.value))  # nor in the log
    assert "cannot reach the database" in message


async def test_rows_from_before_providers_keep_their_inputs_and_are_adopted(db_url: str) -> None:
    """A row written by 0.5 (revision 0005: no endpoint, params or remote) reads back with its
    seconds and size as params, and the first worker of its provider claims it and records its
    endpoint; a worker of another endpoint of that provider does not see it after that."""
    await asyncio.to_thread(_drop_everything, db_url)
    sync_url = urls(db_url)[1]
    await asyncio.to_thread(migrate.upgrade, sync_url, "0005")
    now = datetime.now(UTC)
    legacy = {
        "id": "gen_legacy",
        "provider": "openai",
        "video_id": "video_old",
        "status": "queued",
        "progress": 0,
        "model": "sora-2",
        "seconds": 8,
        "size": "1280x720",
        "prompt": "from before",
        "created_at": now,
        "watch_started_at": now,
        "next_poll_at": now,
        "attempts": 0,
        "failures": 0,
        "submit_ambiguous": False,
        "assets": {},
        "updated_at": now,
    }

    def write_old_row() -> None:
        engine = sa.create_engine(sync_url)
        old = sa.Table("generations", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(old.insert().values(**legacy))
        engine.dispose()

    await asyncio.to_thread(write_old_row)
    opened = await Store.open(db_url)  # migrates to head
    try:
        g = await opened.get("gen_legacy")
        assert g.params == {"seconds": 8, "size": "1280x720"} and g.endpoint is None
        other = Endpoint("openai", "http://elsewhere/v1")
        mine = Endpoint("openai", "http://127.0.0.1:9/v1")
        claims, _ = await opened.claim_for(
            mine, owner="w", now=now, limit=5, lease_s=60, per_minute=600
        )
        assert [c.generation.endpoint for c in claims] == [mine.base_url]
        later = now + timedelta(seconds=120)  # the lease has expired
        claims, _ = await opened.claim_for(
            other, owner="w2", now=later, limit=5, lease_s=60, per_minute=600
        )
        assert claims == []
    finally:
        await opened.close()


async def test_a_render_finishing_at_its_provider_is_learned_once(store: Store) -> None:
    """The transition to downloading writes one render_history row for the generation's shape,
    read back by `renders`; later writes (download failures, completion) add none; a webhook
    that brings the end (through `record_webhook`) is learned the same way."""
    g = await add(store, submitted_at=T0)
    looks = [
        (at(4), Status.QUEUED, 0, "poll"),
        (at(10), Status.IN_PROGRESS, 10, "status"),
        (at(20), Status.IN_PROGRESS, 50, "progress"),
        (at(30), Status.DOWNLOADING, 100, "status"),
        (at(32), Status.DOWNLOADING, 100, "download_failed"),
        (at(40), Status.COMPLETED, 100, "completed"),
    ]
    for when, status, progress, kind in looks:
        claim = await store.claim(g.id, owner="w", now=when, lease_s=LEASE_S)
        assert claim is not None
        changes: dict[str, Any] = {"status": status, "progress": progress}
        if status is Status.DOWNLOADING:
            changes["remote_completed_at"] = at(27)
        await store.apply(claim, decision(claim.generation, kind, **changes), now=when)
    shape = "openai sora-2 4 1280x720"
    [run] = await store.renders(shape)
    # Started between 4 and 10 s (7 s); ended at the provider's 27 s + 0.5 s.
    assert run.queue_s == pytest.approx(7.0)
    assert run.render_s == pytest.approx(20.5)
    assert [p for _, p in run.marks] == [10, 50]
    # Each percent at the look that showed it: 50 % at 20 s, 13 s into the render.
    assert run.marks[1][0] == pytest.approx((20.0 - 7.0) / 20.5)
    assert await store.renders("openai sora-2 8 1280x720") == []

    other = await add(store, submitted_at=T0)
    started = await store.claim(other.id, owner="w", now=at(5), lease_s=LEASE_S)
    assert started is not None
    await store.apply(
        started, decision(started.generation, "status", status=Status.IN_PROGRESS), now=at(5)
    )

    def finished(current: Generation) -> lifecycle.Decision:
        return decision(current, "webhook", status=Status.DOWNLOADING, remote_completed_at=at(9))

    result = await store.record_webhook(
        "openai/wh_1",
        provider="openai",
        video_id=other.video_id or "",
        event_type="video.completed",
        decide=finished,
        now=at(9.2),
    )
    assert result == "applied"
    newest, oldest = await store.renders(shape)
    assert oldest == run
    assert newest.render_s == pytest.approx(9.2 - (0 + 5) / 2)


# --- push (LISTEN/NOTIFY) -------------------------------------------------------------------


async def test_listen_hears_other_stores_commits_on_postgresql(
    store: Store, other_store: Store
) -> None:
    """PostgreSQL: each event another Store commits arrives as "<kind> <provider>", after a
    first "" for the connection itself; SQLite has nobody to hear and returns at once."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    if store.dialect != "postgresql":
        await asyncio.wait_for(store.listen(heard.put_nowait), 1)
        assert heard.empty()
        return
    listening = asyncio.create_task(store.listen(heard.put_nowait))
    try:
        assert await asyncio.wait_for(heard.get(), 10) == ""  # connected and listening
        g = await add(other_store, provider="fal")
        assert await asyncio.wait_for(heard.get(), 5) == "created fal"
        await other_store.claim_due(owner="w", now=T0, limit=1, lease_s=LEASE_S)
        with pytest.raises(ValueError, match="not now"):  # a decision that raises writes nothing
            await other_store.act(g.id, _refuse, now=at(1))
        await other_store.act(g.id, lambda cur: decision(cur, "reset"), now=at(1))
        assert await asyncio.wait_for(heard.get(), 5) == "reset fal"
        assert heard.empty()  # neither the claim nor the refused decision notified anyone
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def test_a_shared_transaction_sends_each_notification_once(
    store: Store, other_store: Store
) -> None:
    """A group commit of many events sends one NOTIFY per distinct "<kind> <provider>" (the
    rest would be folded by PostgreSQL anyway), and a later transaction sends again; the
    listener hears each payload once per transaction."""
    if store.dialect != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    gens = [await add(other_store, provider="fal") for _ in range(4)]
    sent: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "pg_notify" in statement:
            sent.append(statement)

    heard: asyncio.Queue[str] = asyncio.Queue()
    listening = asyncio.create_task(store.listen(heard.put_nowait))
    sa.event.listen(other_store._sync_engine, "before_cursor_execute", spy)
    try:
        assert await asyncio.wait_for(heard.get(), 10) == ""

        def write(conn: Any) -> None:
            for g in gens:
                store_module._append(conn, g, NewEvent("progress"), at(1))
            store_module._append(conn, gens[0], NewEvent("status"), at(1))

        for _ in range(2):
            await other_store._group.run(write)
        assert len(sent) == 4  # two payloads, two transactions
        got = [await asyncio.wait_for(heard.get(), 5) for _ in range(4)]
        assert sorted(got) == ["progress fal", "progress fal", "status fal", "status fal"]
        await asyncio.sleep(0.2)
        assert heard.empty()
    finally:
        sa.event.remove(other_store._sync_engine, "before_cursor_execute", spy)
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


def _refuse(g: Generation) -> lifecycle.Decision:
    raise ValueError(f"not now: {g.id}")

"""Group commit on a real SQLite file: who fails when the shared transaction breaks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from reelwatch import exceptions
from reelwatch.store.group import GroupCommit

notes = sa.Table("notes", sa.MetaData(), sa.Column("text", sa.String, unique=True))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    notes.metadata.create_all(engine)
    yield engine
    engine.dispose()


def note(text: str) -> Any:
    def write(conn: sa.Connection) -> str:
        conn.execute(notes.insert(), {"text": text})
        return text

    return write


def stored(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(notes.c.text)).scalars())


def lost(conn: sa.Connection) -> None:
    raise exceptions.LeaseLost()


async def test_a_broken_write_fails_alone_and_a_lost_lease_writes_nothing(
    engine: sa.Engine,
) -> None:
    group = GroupCommit(engine.begin)
    try:
        outcomes = await asyncio.gather(
            group.run(note("a")),
            group.run(note("dup")),
            group.run(note("dup")),  # breaks the shared transaction: unique
            group.run(lost),
            group.run(note("b")),
            return_exceptions=True,
        )
    finally:
        await group.close()
    assert outcomes[0] == "a" and outcomes[1] == "dup" and outcomes[4] == "b"
    assert isinstance(outcomes[2], sa.exc.IntegrityError)
    assert isinstance(outcomes[3], exceptions.LeaseLost)
    assert stored(engine) == ["a", "b", "dup"]


async def test_a_failed_commit_fails_every_write_and_runs_none_again(engine: sa.Engine) -> None:
    """Whether a failed COMMIT landed is unknown: no write is run a second time."""
    failures = [RuntimeError("the connection dropped during COMMIT")]

    @event.listens_for(engine, "commit")
    def fail_once(conn: sa.Connection) -> None:
        if failures:
            raise failures.pop()

    group = GroupCommit(engine.begin)
    try:
        outcomes = await asyncio.gather(
            group.run(note("x")), group.run(note("y")), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert stored(engine) == []  # the hook stopped the COMMIT; nothing was retried
        assert await group.run(note("z")) == "z"  # the next batch works
    finally:
        await group.close()
    assert stored(engine) == ["z"]

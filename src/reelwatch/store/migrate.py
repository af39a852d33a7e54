"""Alembic, driven from code: the server, the worker and `reelwatch db upgrade` call `upgrade`.

Read commands only check the version (`expected`): Alembic is imported where a migration runs,
never to read the version, because importing it (and Mako) costs about as much as a whole
read command may take.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reelwatch import exceptions

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's `context` and `op` are process-wide proxies, so two runs in one process (two stores
# opened at once) would trample each other. Across processes, env.py takes a database lock.
_one_run_at_a_time = threading.Lock()
# `revision = "0008"` and `down_revision = "0007"` as every file in versions/ writes them.
_REVISION = re.compile(r"""^(revision|down_revision)\s*(?::[^=\n]*)?=\s*["']([^"'\n]+)["']""", re.M)


def config(sync_url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%'; URL-encoded passwords contain it.
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def upgrade(sync_url: str, revision: str = "head") -> None:
    from alembic import command

    with _one_run_at_a_time:
        command.upgrade(config(sync_url), revision)


def revisions() -> tuple[frozenset[str], str]:
    """Every revision id in versions/ and the head (the one no other revises), read from the
    files as text."""
    known: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            known.add(found["revision"])
        if "down_revision" in found:
            revised.add(found["down_revision"])
    heads = known - revised
    if len(heads) != 1:
        raise RuntimeError(f"migrations: expected one head revision, found {sorted(heads)}")
    return frozenset(known), heads.pop()


def expected(found: Sequence[str]) -> None:
    """Check the versions stored in `alembic_version` against this reelwatch's head; a schema
    that is not the head is one line saying what to do (read commands never migrate)."""
    known, head = revisions()
    if list(found) == [head]:
        return
    if not found:
        raise exceptions.SchemaMismatch(
            "the database has no reelwatch schema yet: run `reelwatch db upgrade`"
        )
    stored = ", ".join(found)
    if all(version in known for version in found):
        raise exceptions.SchemaMismatch(
            f"the database schema is at {stored}, this reelwatch needs {head}:"
            " run `reelwatch db upgrade`"
        )
    raise exceptions.SchemaMismatch(
        f"the database schema ({stored}) is newer than this reelwatch knows ({head}):"
        " upgrade reelwatch"
    )

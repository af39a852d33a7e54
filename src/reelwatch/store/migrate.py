"""Alembic, driven from code: the server, the worker and `reelwatch db upgrade` call `upgrade`."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's `context` and `op` are process-wide proxies, so two runs in one process (two stores
# opened at once) would trample each other. Across processes, env.py takes a database lock.
_one_run_at_a_time = threading.Lock()


def config(sync_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%'; URL-encoded passwords contain it.
    cfg.set_main_option("sqlalchemy.url", sync_url.replace("%", "%%"))
    return cfg


def upgrade(sync_url: str, revision: str = "head") -> None:
    with _one_run_at_a_time:
        command.upgrade(config(sync_url), revision)

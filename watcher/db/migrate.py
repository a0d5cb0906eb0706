"""Applying and checking the Alembic migrations from code (`watcher migrate`, start-up, tests)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LOCK_POLL_SECONDS = 0.2


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def _in_fresh_thread(fn: object, *args: object) -> None:
    # env.py runs its own event loop; never nest it in a running one.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)  # type: ignore[operator]
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fn, *args).result()  # type: ignore[arg-type]


def upgrade(url: str, revision: str = "head") -> None:
    _in_fresh_thread(command.upgrade, alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    _in_fresh_thread(command.downgrade, alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the schema module and the migrations disagree."""
    _in_fresh_thread(command.check, alembic_config(url))

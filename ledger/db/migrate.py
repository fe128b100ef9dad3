"""Create or upgrade a store with Alembic (what ``provledger init`` runs)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import UnavailableError

__all__ = ["INIT_LOCK_KEY", "alembic_config", "current_revision", "head_revision", "init_lock", "upgrade"]

ALEMBIC_DIR = Path(__file__).resolve().parent.parent.parent / "alembic"

#: The PostgreSQL advisory lock that ``init_lock`` holds (a fixed 64-bit number, ASCII "provinit").
INIT_LOCK_KEY = int.from_bytes(b"provinit", "big") - 2**63


@contextlib.contextmanager
def init_lock(engine: Engine) -> Iterator[None]:
    """Hold the store's initialisation lock: ``provledger init`` run at once by several processes
    (each instance of a deployment at its start, say) upgrades the schema and writes the first
    rows once, the others wait and then find them there. Without it, two Alembic runs both try
    CREATE TABLE and all but one fail.

    PostgreSQL: a session-level advisory lock (``INIT_LOCK_KEY``) on a connection of its own,
    released at the end or when the process dies. SQLite: an flock on the folder that holds the
    file (nothing for an in-memory database)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": INIT_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                # a connection that broke meanwhile has lost the lock with its session already
                with contextlib.suppress(SQLAlchemyError):
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INIT_LOCK_KEY})
                    conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    # The folder that holds the file, not a lock file of its own: nothing is left behind, and
    # nothing to unlink while another process waits on it.
    folder = os.path.dirname(os.path.abspath(database))
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise UnavailableError(f"cannot open the store's folder {folder}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    return cfg


def upgrade(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()

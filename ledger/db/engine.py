"""Engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["WRITE_LOCK", "begin_write", "is_sqlite", "make_engine", "make_session_factory", "pooled_reads"]

#: Pooled connections an SQLite engine keeps open (each is a file handle and a page cache).
SQLITE_POOL_SIZE = 24

#: WAL pages after which a commit copies them back into the database file (SQLite's default is
#: 1,000). An append dirties pages all over the hash-keyed indexes; copied back every 4 MB, the
#: same pages went back again and again, and the checkpoint was half of each commit.
SQLITE_WAL_AUTOCHECKPOINT = 10_000

#: Execution option naming a transaction that takes the write lock at BEGIN (SQLite).
WRITE_LOCK = "provledger_write_lock"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. SQLite gets WAL, full sync and explicit BEGIN handling."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and "poolclass" not in kwargs:
            # A serving process has up to 16 request threads, a sequencer and short token and
            # trust reads: with the default 5 (+10 overflow) the overflow connections were
            # closed on return and reopened (file open, PRAGMAs) several times a request.
            kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "do_connect")
        def _private_file(*_args: Any) -> None:
            _create_private(database)  # then SQLite connects as usual (returning None)

        _configure_sqlite(engine)
        return engine
    # A commit returns only once its WAL record is flushed to disk on the server (whatever the
    # server's default): the sequencer acknowledges nothing that a crash could take back.
    if parsed.get_backend_name() == "postgresql" and "options" not in parsed.query:
        connect_args = {"options": "-c synchronous_commit=on", **kwargs.pop("connect_args", {})}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _create_private(database: str | None) -> None:
    """Create a new SQLite database file owner-only (0600) before SQLite does (with the umask's
    mode); SQLite gives its -wal and -shm files the database file's mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or not path.parent.is_dir():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN until the first write and cannot take the
    # write lock up front; we emit BEGIN ourselves so an appender can say BEGIN IMMEDIATE and
    # serialise with appenders in other processes before it reads the sequencer row.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed batch survives a power loss, not only a process crash.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_LOCK):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def pooled_reads(engine: Engine, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """The first row (or None) of each ``(sql, params)`` read, on one pooled DBAPI connection: no
    session, no SQLAlchemy statement (about a tenth of their cost on a per-request path). ``sql``
    writes its placeholders as ``{mark}``; the pool rolls the connection back when it returns."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            rows = []
            for sql, params in statements:
                cursor.execute(sql.format(mark=mark), params)
                rows.append(cursor.fetchone())
            return rows
        finally:
            cursor.close()
    finally:
        connection.close()


def begin_write(session: Session) -> None:
    """Begin ``session``'s transaction as a writer, before it reads what its writes depend on.

    SQLite: BEGIN IMMEDIATE, which waits (``busy_timeout``) for the other writers. A deferred
    transaction that has read and then writes fails at once with "database is locked"
    (SQLITE_BUSY_SNAPSHOT) when another connection committed in between; this one cannot.
    PostgreSQL: nothing to do (its row locks and snapshots need no upgrade). Must be the
    transaction's first statement (RuntimeError otherwise: end a read transaction first).
    """
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        transaction = session.get_transaction()
        if transaction is not None and transaction._connections:  # noqa: SLF001 - it has begun on a connection
            raise RuntimeError("begin_write must be the first statement of its transaction on SQLite")
        conn = session.connection(execution_options={WRITE_LOCK: True})
        if not conn.get_execution_options().get(WRITE_LOCK):
            raise RuntimeError("begin_write must be the first statement of its transaction on SQLite")

"""Store fixtures for the ledger-core tests: the same tests on SQLite and on PostgreSQL.

``store`` is parametrised over both backends. Each test gets a fresh store made by
``ledger.services.setup.init_store`` (real Alembic migrations) under its own PROVLEDGER_HOME.
PostgreSQL stays cheap: the migrations run once per session into a template database, and each
test clones it with ``CREATE DATABASE … TEMPLATE`` (then ``init_store`` finds the schema at head
and only records the test's own log identity and first checkpoint).

Helpers register keys, sign statements and append; ``bypass_triggers`` is how an attacker with
database access gets past the append-only triggers (the tamper tests use it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ledger.config import DEFAULT_ORIGIN, Settings
from ledger.db import migrate, store as dbstore
from ledger.db.engine import make_engine, make_session_factory
from ledger.db.models import Checkpoint, Entry
from ledger.records.dsse import sign_envelope
from ledger.errors import LedgerError
from ledger.records.keys import PrivateKey, generate_private_key
from ledger.services.append import Appended, append_batch
from ledger.services.log import LogIdentity
from ledger.trust.policy import Grant
from ledger.services.registry import add_key
from ledger.services.setup import init_store, load_admin_key
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROVLEDGER = str(Path(sys.executable).with_name("provledger"))
POSTGRES_URL = os.environ.get(
    "PROVLEDGER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PREDICATE = "https://slsa.dev/provenance/v1"
BACKENDS = ("sqlite", "postgres")

_counter = itertools.count()


def _skip_or_fail(reason: str) -> None:
    from tests.conftest import skip_or_fail  # noqa: PLC0415 - conftest imports this module

    skip_or_fail(reason)


# ------------------------------------------------------------------------------ records


def make_statement(
    name: str | None = None, *, digest: str | None = None, predicate_type: str = PREDICATE
) -> bytes:
    """A valid in-toto Statement v1 (bytes) about one artifact."""
    name = name or f"artifact-{secrets.token_hex(6)}.tar.gz"
    digest = digest or hashlib.sha256(name.encode()).hexdigest()
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest}}],
        "predicateType": predicate_type,
        "predicate": {"builder": {"id": "https://ci.example/builder"}},
    }
    return json.dumps(doc, indent=1).encode()


def sign(key: PrivateKey, statement: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
    """A DSSE envelope (JSON object) over ``statement`` (a fresh one if None)."""
    return sign_envelope(statement if statement is not None else make_statement(**kwargs), IN_TOTO_PAYLOAD_TYPE, [key])


def envelope_bytes(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


# ------------------------------------------------------------------------------ the store


@dataclass
class StoreHandle:
    """A fresh, initialised store and the handles a test needs to drive it."""

    backend: str
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    log: LogIdentity
    clock: int = 1_750_000_000
    keys: list[PrivateKey] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a `provledger` subprocess (or an in-process main()) on this store."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVLEDGER_")}
        env.update(
            PROVLEDGER_HOME=str(self.settings.home),
            PROVLEDGER_DATABASE_URL=self.settings.database_url,
            PROVLEDGER_ORIGIN=self.settings.origin,
            PYTHONPATH=str(REPO),
        )
        return env

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def add_signer(
        self, allow: Sequence[str] = ("*",), *, algorithm: str = "ed25519", name: str | None = None,
        key: PrivateKey | None = None,
    ) -> PrivateKey:
        key = key or generate_private_key(algorithm)
        # Registration is itself a ledger entry (a key event signed by the admin key).
        add_key(
            self.sessions, self.log, load_admin_key(self.settings),
            name or f"signer-{len(self.keys)}", key.public_key, [Grant(tuple(allow))], now=self.clock,
        )
        self.keys.append(key)
        return key

    @property
    def admin(self) -> PrivateKey:
        """The administrator key (the ledger's root of trust) that signs key events."""
        return load_admin_key(self.settings)

    def append(self, raws: Sequence[Any], *, now: int | None = None, limit: int | None = None) -> list[Appended | LedgerError]:
        kwargs = {} if limit is None else {"limit": limit}
        return append_batch(self.sessions, list(raws), self.log, now=now if now is not None else self.tick(), **kwargs)

    def append_ok(self, raws: Sequence[Any], **kwargs: Any) -> list[Appended]:
        results = self.append(raws, **kwargs)
        for r in results:
            assert isinstance(r, Appended), f"append failed: {r!r}"
        return results  # type: ignore[return-value]

    def fill(self, batches: Sequence[int], key: PrivateKey | None = None) -> list[Appended]:
        """Append fresh signed records in batches of the given sizes."""
        key = key or (self.keys[0] if self.keys else self.add_signer())
        out: list[Appended] = []
        for n in batches:
            out += self.append_ok([sign(key) for _ in range(n)])
        return out

    def size(self) -> int:
        with self.sessions() as session:
            return dbstore.current_size(session)

    def state(self) -> tuple[int, int, int, str]:
        """(sequencer size, entry rows, checkpoint rows, latest checkpoint note)."""
        with self.sessions() as session:
            size = dbstore.current_size(session)
            entries = session.execute(select(func.count()).select_from(Entry)).scalar_one()
            cps = session.execute(select(func.count()).select_from(Checkpoint)).scalar_one()
            latest = dbstore.latest_checkpoint(session)
            return size, entries, cps, latest.note if latest else ""

    def leaf_hashes(self) -> list[bytes]:
        with self.sessions() as session:
            return list(session.execute(select(Entry.leaf_hash).order_by(Entry.idx)).scalars())

    @contextmanager
    def tamper(self) -> Iterator[Connection]:
        """A connection with the append-only triggers out of the way, as an attacker would have."""
        with bypass_triggers(self.engine) as conn:
            yield conn


@contextmanager
def bypass_triggers(engine: Engine, *, restore: bool = True) -> Iterator[Connection]:
    """SQLite: drop the triggers (and recreate them afterwards). PostgreSQL: replica role."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            saved = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%append_only%'")
            ).all()
            assert saved, "the store has no append-only triggers to bypass"
            for name, _ in saved:
                conn.execute(text(f"DROP TRIGGER {name}"))
            conn.execute(text("PRAGMA defer_foreign_keys = ON"))
            yield conn
            if restore:
                for _, sql in saved:
                    conn.execute(text(sql))
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            yield conn


# ------------------------------------------------------------------------------ PostgreSQL


def _pg_admin_engine() -> Engine:
    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def _pg_url(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


class PostgresDatabases:
    """Per-test databases cloned from one migrated template."""

    def __init__(self) -> None:
        self.admin = _pg_admin_engine()
        self.template = f"provledger_tmpl_{os.getpid()}"
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {self.template}"))
        engine = make_engine(_pg_url(self.template))
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()

    def create(self) -> tuple[str, str]:
        name = f"provledger_t_{os.getpid()}_{next(_counter)}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {self.template}"))
        return name, _pg_url(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def close(self) -> None:
        self.drop(self.template)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    try:
        dbs = PostgresDatabases()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "unavailable"
        yield None
        _ = exc
        return
    try:
        yield dbs
    finally:
        dbs.close()


def require_postgres(dbs: PostgresDatabases | None) -> PostgresDatabases:
    if dbs is None:
        _skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (set PROVLEDGER_TEST_POSTGRES_URL)")
    assert dbs is not None
    return dbs


@contextmanager
def open_store(backend: str, home: Path, dbs: PostgresDatabases | None) -> Iterator[StoreHandle]:
    name = None
    if backend == "sqlite":
        url = f"sqlite:///{(home / 'ledger.db').resolve()}"
    else:
        dbs = require_postgres(dbs)
        name, url = dbs.create()
    settings = Settings(home=home, database_url=url, redis_url=None, origin=DEFAULT_ORIGIN)
    engine = make_engine(url)
    try:
        log = init_store(settings, engine)
        yield StoreHandle(backend, settings, engine, make_session_factory(engine), log)
    finally:
        engine.dispose()
        if name is not None:
            assert dbs is not None
            dbs.drop(name)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases | None) -> Iterator[StoreHandle]:
    """A fresh initialised store, on SQLite and on PostgreSQL."""
    with open_store(request.param, tmp_path / "home", postgres_databases) as handle:
        yield handle


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StoreHandle]:
    with open_store("sqlite", tmp_path / "home", None) as handle:
        yield handle


@pytest.fixture
def postgres_store(tmp_path: Path, postgres_databases: PostgresDatabases | None) -> Iterator[StoreHandle]:
    with open_store("postgres", tmp_path / "home", postgres_databases) as handle:
        yield handle


__all__ = ["postgres_databases", "postgres_store", "sqlite_store", "store"]

"""``init``: create or upgrade the store and the log key; idempotent."""

from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.config import Settings
from ledger.db import migrate, store
from ledger.db.engine import make_engine
from ledger.db.models import LogInfo
from ledger.errors import ConfigurationError, UnavailableError
from ledger.hashing import EMPTY_ROOT
from ledger.services.log import LogIdentity, create_log_key, load_log_identity

__all__ = ["check_initialised", "init_store"]


def init_store(settings: Settings, engine: Engine | None = None) -> LogIdentity:
    """Create the home folder, the log key (if absent) and the schema (Alembic), then record the
    log's identity and its first (empty) checkpoint. Running it again changes nothing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    if not settings.log_key_path.exists():
        create_log_key(settings.log_key_path, settings.origin)
    log = load_log_identity(settings)
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url)
    try:
        try:
            migrate.upgrade(engine)
        except OperationalError as exc:
            raise UnavailableError(f"cannot reach the database: {exc.orig}") from exc
        with Session(engine) as session, session.begin():
            info = session.get(LogInfo, 1)
            if info is None:
                session.add(LogInfo(id=1, origin=log.origin, vkey=log.vkey))
            elif info.vkey != log.vkey:
                raise ConfigurationError(
                    f"the database belongs to log {info.vkey}, but the key in {settings.log_key_path} is {log.vkey}"
                )
            if store.latest_checkpoint(session) is None:
                note = sign_checkpoint(Checkpoint(log.origin, 0, EMPTY_ROOT), log.signer).decode()
                store.insert_checkpoint(session, 0, EMPTY_ROOT, note, int(time.time()))
    finally:
        if own_engine:
            engine.dispose()
    return log


def check_initialised(engine: Engine) -> None:
    """Raise ConfigurationError unless the schema is at the head revision."""
    try:
        current = migrate.current_revision(engine)
    except OperationalError as exc:
        raise UnavailableError(f"cannot reach the database: {exc.orig}") from exc
    if current is None:
        raise ConfigurationError("the store is not initialised: run `provledger init`")
    if current != migrate.head_revision():
        raise ConfigurationError(f"the store is at schema {current}; run `provledger init` to upgrade it")

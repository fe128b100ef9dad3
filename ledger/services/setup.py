"""``init``: create or upgrade the store and the log key; idempotent."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.config import Settings, create_private_file
from ledger.db import migrate, store
from ledger.db.engine import make_engine
from ledger.db.models import LogInfo, TrustRoot
from ledger.errors import ConfigurationError, LedgerError, UnavailableError
from ledger.tlog.hashing import EMPTY_ROOT
from ledger.records.keys import PrivateKey, generate_private_key, load_private_key
from ledger.services.log import LogIdentity, create_log_key, load_log_identity

__all__ = ["admin_key_path", "check_initialised", "create_admin_key", "init_store", "load_admin_key", "make_private_home"]

ADMIN_KEY_FILE = "admin.key"


def admin_key_path(settings: Settings) -> Path:
    """The administrator key (the root of trust that signs key events): ``admin.key`` in PROVLEDGER_HOME."""
    return settings.home / ADMIN_KEY_FILE


def create_admin_key(path: Path) -> PrivateKey:
    """Write a new Ed25519 administrator key (PKCS#8 PEM, mode 0600); never overwrite."""
    key = generate_private_key("ed25519")
    make_private_home(path.parent)
    if not create_private_file(path, key.to_pem()):
        raise FileExistsError(f"{path} exists: an administrator key is never overwritten")
    return key


def load_admin_key(settings: Settings) -> PrivateKey:
    path = admin_key_path(settings)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"the administrator key {path} does not exist: run `provledger init`") from None
    except OSError as exc:
        raise ConfigurationError(f"the administrator key {path} cannot be read: {exc.strerror}") from exc
    try:
        return load_private_key(data)
    except LedgerError as exc:
        raise ConfigurationError(f"the administrator key {path} is not a PKCS#8 PEM Ed25519 or ECDSA P-256 key") from exc


def make_private_home(home: Path) -> None:
    """Create PROVLEDGER_HOME owner-only (0700), its parents as the umask says."""
    if home.is_dir():
        return
    if home.exists():
        raise ConfigurationError(f"PROVLEDGER_HOME {home} is not a folder")
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        home.mkdir(mode=0o700, exist_ok=True)
        os.chmod(home, 0o700)  # mkdir's mode is masked by the umask; this is exact
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(home) else ""
        raise ConfigurationError(f"cannot create PROVLEDGER_HOME {home}: {exc.strerror or exc}{where}") from exc


def init_store(settings: Settings, engine: Engine | None = None) -> LogIdentity:
    """Create the home folder, the log key and the administrator key (if absent) and the schema
    (Alembic), then record the log's identity, its root of trust (the administrator key id) and
    its first (empty) checkpoint. Running it again changes nothing.

    The home folder is created owner-only (0700); the keys and the SQLite file are 0600."""
    make_private_home(settings.home)
    # Another init may create either key at the same moment: a key file appears whole or not at
    # all (``create_private_file``), so the one already there is the one to load.
    if not settings.log_key_path.exists():
        with contextlib.suppress(FileExistsError):
            create_log_key(settings.log_key_path, settings.origin)
    log = load_log_identity(settings)
    if not admin_key_path(settings).exists():
        with contextlib.suppress(FileExistsError):
            create_admin_key(admin_key_path(settings))
    admin = load_admin_key(settings)
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url)
    try:
        try:
            with migrate.init_lock(engine):  # one init at a time: the others wait, then find it done
                migrate.upgrade(engine)
                _first_rows(engine, settings, log, admin)
        except OperationalError as exc:
            raise UnavailableError(f"cannot reach the database: {exc.orig}") from exc
    finally:
        if own_engine:
            engine.dispose()
    return log


def _first_rows(engine: Engine, settings: Settings, log: LogIdentity, admin: PrivateKey) -> None:
    """The log's identity, its root of trust and its first (empty) checkpoint, unless there."""
    with Session(engine) as session, session.begin():
        info = session.get(LogInfo, 1)
        if info is None:
            session.add(LogInfo(id=1, origin=log.origin, vkey=log.vkey))
        elif info.vkey != log.vkey:
            raise ConfigurationError(
                f"the database belongs to log {info.vkey}, but the key in {settings.log_key_path} is {log.vkey}"
            )
        root = session.get(TrustRoot, 1)
        if root is None:
            session.add(TrustRoot(id=1, key_id=admin.key_id, public_key=admin.public_key.spki_der, created_at=int(time.time())))
        elif root.key_id != admin.key_id:
            raise ConfigurationError(
                f"the database's root of trust is administrator key {root.key_id}, "
                f"but the key in {admin_key_path(settings)} is {admin.key_id}"
            )
        if store.latest_checkpoint(session) is None:
            note = sign_checkpoint(Checkpoint(log.origin, 0, EMPTY_ROOT), log.signer).decode()
            store.insert_checkpoint(session, 0, EMPTY_ROOT, note, int(time.time()))


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

"""What the Flask app keeps in ``app.extensions["provledger"]``: the store, the log, the
sequencer, and the integrity state (a compromise stops writes and shows on /healthz)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ledger.config import Settings
from ledger.db.engine import begin_write
from ledger.services.cosign import CosignLoop, WitnessConfig
from ledger.services.log import LogIdentity
from ledger.services.sequencer import Sequencer
from ledger.services.sessions import LoginThrottle
from web.counters import Counters
from web.integrity_flag import SharedFlag

__all__ = ["IntegrityState", "LedgerExtension", "get_session", "ledger", "write_session"]


@dataclass
class IntegrityState:
    """Set once the ledger is found compromised; never cleared while the process lives.

    Read it with :meth:`report`: under ``serve``'s worker processes, ``shared`` carries a flag
    set by any of them (``web.integrity_flag``)."""

    checked: str = "start-up"
    compromised: dict[str, Any] | None = None
    background_audit_running: bool = False
    #: why the background full audit ended without a report (the store is then not verified)
    audit_error: str | None = None
    shared: SharedFlag | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self) -> dict[str, Any] | None:
        """The first compromise found, by this process or (``shared``) by another; None if none."""
        if self.compromised is None and self.shared is not None:
            found = self.shared.read()
            if found is not None:
                with self._lock:
                    if self.compromised is None:
                        self.compromised = found
        return self.compromised

    def flag(self, report: dict[str, Any]) -> None:
        with self._lock:
            if self.compromised is None:
                self.compromised = report
        if self.shared is not None:
            self.shared.set(report)


@dataclass
class LedgerExtension:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    log: LogIdentity
    sequencer: Sequencer
    integrity: IntegrityState
    #: the witnesses the ledger asks to cosign, and the loop that asks them (None: no witnesses)
    witnesses: WitnessConfig | None = None
    cosign: CosignLoop | None = None
    #: failed admin logins, per client and across clients (``ledger.services.sessions``)
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    started_at: float = field(default_factory=time.time)
    #: what /metrics counts (``web.counters``: all of serve's worker processes together)
    counters: Counters = field(default_factory=Counters)

    def count(self, name: str, n: int = 1) -> None:
        self.counters.add(name, n)


def ledger() -> LedgerExtension:
    return current_app.extensions["provledger"]


def get_session() -> Session:
    """The request's session, created lazily and closed at teardown (one per request)."""
    if "db_session" not in g:
        g.db_session = ledger().sessions()
    return g.db_session


def write_session() -> Session:
    """The request's session, its reads so far ended and a writer's transaction begun
    (``ledger.db.engine.begin_write``): for a handler about to read what it then writes. On
    SQLite a read transaction that later writes fails ("database is locked") when another
    process wrote in between; this one waits for the other writers instead."""
    session = get_session()
    if session.in_transaction():
        session.rollback()
    begin_write(session)
    return session

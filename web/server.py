"""``provledger serve``: check the store, then run the app under gunicorn.

The server refuses to start (exit 1, naming the first bad index) when the store fails its
integrity check. Large ledgers start on a fast check and are re-measured in the background; a
failure then stops writes (503) and shows on /healthz.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.errors import IntegrityError
from ledger.services import audit, browse, integrity, setup
from ledger.services.log import LogIdentity, load_log_identity
from web.app import create_app
from web.extension import IntegrityState

__all__ = ["check_at_start", "serve"]

log = logging.getLogger(__name__)


def check_at_start(settings: Settings) -> tuple[IntegrityState, bool]:
    """Run the start-up check. Returns the state and whether a background audit is needed.

    Raises IntegrityError when the store must not be served.
    """
    identity = load_log_identity(settings)
    engine = make_engine(settings.database_url)
    try:
        setup.check_initialised(engine)
        with make_session_factory(engine)() as session:
            size = browse.tree_size(session)
            if size <= integrity.full_check_limit():
                report = audit.audit(session, identity)
                if not report.ok:
                    first = next(p for p in report.problems if p.index == report.first_bad_index) if report.first_bad_index is not None else report.problems[0]
                    raise IntegrityError(
                        f"the store failed its integrity check at index {report.first_bad_index}: {first.message}",
                        first_bad_index=report.first_bad_index,
                    )
                return IntegrityState(checked=f"full audit of {size} entries at start-up"), False
            integrity.fast_check(session, identity)
            state = IntegrityState(checked=f"fast check at start-up; full audit of {size} entries running")
            state.background_audit_running = True
            return state, True
    finally:
        engine.dispose()


def start_background_audit(settings: Settings, identity: LogIdentity, state: IntegrityState) -> threading.Thread:
    def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            with make_session_factory(engine)() as session:
                report = audit.audit(session, identity)
            if not report.ok:
                log.error("background audit failed: first bad index %s", report.first_bad_index)
                state.flag(report.to_json())
            else:
                state.checked = f"full audit of {report.tree_size} entries (background)"
        finally:
            state.background_audit_running = False
            engine.dispose()

    thread = threading.Thread(target=run, name="provledger-audit", daemon=True)
    thread.start()
    return thread


def serve(settings: Settings, *, host: str, port: int, workers: int = 1, threads: int = 16) -> int:
    try:
        state, background = check_at_start(settings)
    except IntegrityError as exc:
        print(f"provledger: refusing to start: {exc}", file=sys.stderr)
        return 1
    print(f"provledger: integrity: {state.checked}", file=sys.stderr)

    from gunicorn.app.base import BaseApplication  # noqa: PLC0415

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "accesslog": "-",
                "timeout": 120,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            app = create_app({"SETTINGS": settings, "INTEGRITY": state})
            if background:
                start_background_audit(settings, app.extensions["provledger"].log, state)
            return app

    print(f"provledger: serving {settings.origin} on http://{host}:{port}/", file=sys.stderr)
    _App().run()
    return 0

"""A ledger too large for the full start-up audit is served on the fast check while the full
audit runs in the background. /healthz must say what that audit established: "checking" while it
runs, "verified" once it passed, and "unverified" (with the reason) when it could not finish —
never "verified" for an audit that ended without a report."""

from __future__ import annotations

import dataclasses
from typing import Any

from web.app import create_app
from web.extension import IntegrityState
from web.server import start_background_audit


def _healthz(settings: Any, state: IntegrityState) -> dict[str, Any]:
    app = create_app({"SETTINGS": settings, "TESTING": True, "INTEGRITY": state})
    try:
        response = app.test_client().get("/healthz")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()
    finally:
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()


def test_a_background_audit_that_passes_reports_verified(sqlite_store):
    sqlite_store.fill([5])
    state = IntegrityState(checked="fast check at start-up; full audit running", background_audit_running=True)
    assert _healthz(sqlite_store.settings, state)["integrity"] == "checking"
    start_background_audit(sqlite_store.settings, sqlite_store.log, state).join(timeout=60)
    body = _healthz(sqlite_store.settings, state)
    assert body["integrity"] == "verified" and "background" in body["checked"] and "audit_error" not in body


def test_a_background_audit_that_cannot_finish_reports_unverified(sqlite_store):
    sqlite_store.fill([5])
    state = IntegrityState(checked="fast check at start-up; full audit running", background_audit_running=True)
    # the audit's own database is unreachable (a real connection that fails): it ends without a report
    unreachable = dataclasses.replace(sqlite_store.settings, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    start_background_audit(unreachable, sqlite_store.log, state).join(timeout=60)
    assert not state.background_audit_running and state.compromised is None
    body = _healthz(sqlite_store.settings, state)
    assert body["status"] == "ok" and body["integrity"] == "unverified", body
    assert "could not finish" in body["checked"] and "OperationalError" in body["audit_error"]

"""/healthz and /metrics, at the root."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ledger.services.browse import tree_size
from web.extension import get_session, ledger

__all__ = ["bp"]

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    ext = ledger()
    state = ext.integrity
    compromised = state.report()
    if compromised is not None:
        return jsonify({"status": "compromised", "writes": "stopped", **compromised}), 503
    size = tree_size(get_session())
    body = {
        "status": "ok",
        "tree_size": size,
        # "unverified": the background full audit ended without a report (not a failed check)
        "integrity": "checking" if state.background_audit_running else "unverified" if state.audit_error else "verified",
        "checked": state.checked,
    }
    if state.audit_error is not None:
        body["audit_error"] = state.audit_error
    return jsonify(body), 200


@bp.get("/metrics")
def metrics() -> Response:
    ext = ledger()
    size = tree_size(get_session())
    lines = [
        "# HELP provledger_tree_size Entries in the log.",
        "# TYPE provledger_tree_size gauge",
        f"provledger_tree_size {size}",
        "# HELP provledger_compromised 1 when the ledger failed its integrity check.",
        "# TYPE provledger_compromised gauge",
        f"provledger_compromised {1 if ext.integrity.report() else 0}",
        "# HELP provledger_batches_total Batches the server committed (all its worker processes).",
        "# TYPE provledger_batches_total counter",
        f"provledger_batches_total {ext.counters.total('batches')}",
        "# HELP provledger_entries_total Submissions the server handled (all its worker processes), by outcome.",
        "# TYPE provledger_entries_total counter",
    ]
    for outcome in ("created", "duplicate", "refused"):
        lines.append(f'provledger_entries_total{{outcome="{outcome}"}} {ext.counters.total("entries_" + outcome)}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")

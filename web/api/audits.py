"""/api/v1/audits: full audits of the ledger, run on the Celery workers.

``POST /api/v1/audits`` (admin token) records an audit of the tree as it stands, commits, and
only then hands its shards to the workers: 202 with the audit. With Redis configured and down
it answers 503 and records nothing. Without Redis (the embedded mode) a worker thread in this
process runs it. ``GET /api/v1/audits/<id>`` shows its state, progress and, once done, its
report (the shape of ``provledger audit --json`` plus ``"shard"``); ``GET /api/v1/audits``
lists the latest ones.

The web layer touches ``workers`` only to enqueue.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from ledger.errors import LedgerError, MalformedError
from ledger.services import shards
from ledger.untrusted.json import parse_json
from ledger.services.registry import use_token
from web.api.strict import require_json
from web.extension import get_session, ledger, write_session

__all__ = ["bp"]

bp = Blueprint("api_audits", __name__, url_prefix="/api/v1")

#: An audit request body is a small JSON object (or nothing).
MAX_AUDIT_REQUEST_BYTES = 1024
_EXTENSION = "provledger_workers"
_lock = threading.Lock()


class _Unauthorized(LedgerError):
    code = "unauthorized"
    http_status = 401
    exit_code = 3


def _require_admin() -> None:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    # a short session of its own, closed before the body is read (see web.api.v1._require_token)
    if use_token(ledger().sessions, token, "admin", now=int(time.time())) is None:
        raise _Unauthorized("a valid bearer token with scope 'admin' is required")


def _celery(app: Flask) -> Any:
    """This web app's Celery app (and, in the embedded mode, its worker thread), made once."""
    with _lock:
        found = app.extensions.get(_EXTENSION)
        if found is None:
            from workers.app import is_embedded, make_celery  # noqa: PLC0415 - only to enqueue
            from workers.embedded import EmbeddedWorker  # noqa: PLC0415

            celery_app = make_celery(ledger().settings)
            worker = None
            if is_embedded(celery_app):
                worker = EmbeddedWorker(celery_app)
                worker.start()
            found = app.extensions[_EXTENSION] = (celery_app, worker)
    return found[0]


def _shard_level() -> int | None:
    length = request.content_length
    body = request.stream.read(MAX_AUDIT_REQUEST_BYTES + 1) if length != 0 else b""
    if len(body) > MAX_AUDIT_REQUEST_BYTES:
        raise MalformedError(f"an audit request is a small JSON object (at most {MAX_AUDIT_REQUEST_BYTES} bytes)")
    if not body.strip():
        return None
    doc = parse_json(body, what="the audit request")
    if not isinstance(doc, dict) or set(doc) - {"shard_size"}:
        raise MalformedError('an audit request is {} or {"shard_size": <a power of two>}')
    if "shard_size" not in doc:
        return None
    size = doc["shard_size"]  # null is not a size: leave the field out for the default
    if type(size) is not int or size < 1 or size & (size - 1) or size > 1 << shards.MAX_SHARD_LEVEL:
        raise MalformedError(f"shard_size must be a power of two between 1 and {1 << shards.MAX_SHARD_LEVEL}")
    return size.bit_length() - 1


@bp.post("/audits")
def post_audit() -> tuple[Response, int, dict[str, str]]:
    from workers.dispatch import check_broker, enqueue_audit  # noqa: PLC0415

    _require_admin()
    require_json(optional=True)
    level = _shard_level()
    celery_app = _celery(current_app._get_current_object())  # type: ignore[attr-defined]
    check_broker(celery_app)  # 503 before anything is recorded
    session = write_session()
    run = shards.create_audit(session, ledger().log, now=int(time.time()), source="api", shard_level=level)
    session.commit()
    enqueue_audit(celery_app, ledger().sessions, run.id)  # only after the commit
    location = url_for("api_audits.get_audit", audit_id=run.id)
    return jsonify(shards.audit_json(session, run.id)), 202, {"Location": location}


@bp.get("/audits/<int:audit_id>")
def get_audit(audit_id: int) -> Response:
    return jsonify(shards.audit_json(get_session(), audit_id))


@bp.get("/audits")
def list_audits() -> Response:
    return jsonify({"audits": shards.list_audits(get_session(), limit=50)})

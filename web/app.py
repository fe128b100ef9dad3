"""The Flask application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ledger.config import Settings
from ledger.db.engine import make_engine, make_session_factory
from ledger.errors import IntegrityError, LedgerError, MalformedError
from ledger.services.cosign import CosignLoop, witness_config_from_env
from ledger.services.log import load_log_identity
from ledger.services.sequencer import Sequencer
from ledger.services.sessions import LoginThrottle
from web.counters import Counters
from web.extension import IntegrityState, LedgerExtension
from web.proxy import TrustedProxies, parse_trusted_proxies

__all__ = ["create_app"]

log = logging.getLogger(__name__)

#: A request body over this many bytes is refused (413) before it is read.
MAX_REQUEST_BYTES = 32 * 1024 * 1024


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` may carry SETTINGS (a ledger.config.Settings), MAX_* limits,
    INTEGRITY (an IntegrityState prepared by ``serve``'s start-up check), LOGIN_THROTTLE and
    COUNTERS (the admin-login throttle and the /metrics counters ``serve``'s worker processes
    share; default: this process's own), and PACE_BATCHES (``serve`` with several processes:
    ``ledger.services.sequencer.Sequencer.pace``; default off)."""
    app = Flask(__name__)
    app.config.update(MAX_REQUEST_BYTES=MAX_REQUEST_BYTES, MAX_CONTENT_LENGTH=None, JSON_SORT_KEYS=False)
    app.config.from_prefixed_env("PROVLEDGER_FLASK")
    if config:
        app.config.update(config)
    settings: Settings = app.config.get("SETTINGS") or Settings.from_env()
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    identity = load_log_identity(settings)
    integrity: IntegrityState = app.config.get("INTEGRITY") or IntegrityState()

    def on_failure(exc: BaseException) -> None:
        if isinstance(exc, IntegrityError):
            integrity.flag({"first_bad_index": exc.first_bad_index, "message": str(exc)})

    witnesses = app.config["WITNESSES"] if "WITNESSES" in app.config else witness_config_from_env()
    cosign = CosignLoop(sessions, identity, witnesses.witnesses) if witnesses is not None else None
    counters: Counters = app.config.get("COUNTERS") or Counters()
    sequencer = Sequencer(
        sessions, identity, on_failure=on_failure, on_commit=cosign.notify if cosign else None,
        on_batch=lambda: counters.add("batches"),
        pace_batches=bool(app.config.get("PACE_BATCHES")),
    )
    app.extensions["provledger"] = LedgerExtension(
        settings, engine, sessions, identity, sequencer, integrity, witnesses=witnesses, cosign=cosign,
        login_throttle=app.config.get("LOGIN_THROTTLE") or LoginThrottle(), counters=counters,
    )
    if cosign is not None:
        cosign.start()
    if settings.redis_url:
        # large batches of deployments are appraised on the workers (ledger.trust.tee_jobs)
        from ledger.services.deployment import register_job_runner  # noqa: PLC0415
        from workers.app import make_celery  # noqa: PLC0415 - only with Redis
        from workers.dispatch import appraisal_runner  # noqa: PLC0415

        register_job_runner(engine.url.render_as_string(hide_password=False), appraisal_runner(make_celery(settings)))

    @app.before_request
    def _no_nul_in_path_or_query() -> None:
        # No name, digest or number holds NUL, and PostgreSQL text cannot: a 400, never a 500.
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            raise MalformedError("the request's path or query holds a NUL character")

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    from web.api import health, provenance, tiles, v1  # noqa: PLC0415
    from web.api.strict import IndexConverter  # noqa: PLC0415

    app.url_map.converters["int"] = IndexConverter  # before any route: ASCII digits only, bounded

    app.register_blueprint(v1.bp)
    app.register_blueprint(provenance.bp)
    from web.api import audits  # noqa: PLC0415

    app.register_blueprint(audits.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(tiles.bp, url_prefix=app.config.get("TLOG_PREFIX", tiles.DEFAULT_PREFIX))

    @app.errorhandler(LedgerError)
    def _ledger_error(exc: LedgerError):  # type: ignore[no-untyped-def]
        return error_response(exc.code, exc.diagnostics(), exc.http_status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        code = {400: "malformed", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}.get(
            exc.code or 500, "http_error"
        )
        response = error_response(code, exc.description or exc.name, exc.code or 500)
        for name, value in exc.get_headers():  # e.g. Allow on a 405 (RFC 9110)
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal_error", "the server failed to handle the request", 500)

    # The auditor pages; it wraps the handlers above so that UI routes get HTML errors.
    from web import ui  # noqa: PLC0415

    ui.init_app(app)
    trusted = parse_trusted_proxies(app.config.get("TRUSTED_PROXIES", os.environ.get("PROVLEDGER_TRUSTED_PROXIES")))
    app.wsgi_app = TrustedProxies(app.wsgi_app, trusted)  # type: ignore[method-assign]
    return app


def error_response(code: str, message: str, status: int):  # type: ignore[no-untyped-def]
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response

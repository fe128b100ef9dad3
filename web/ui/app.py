"""The auditor web UI on the app: blueprint registration, security hooks and HTML error pages.

``init_app(app)`` registers the ``ui`` blueprint and the app-wide hooks it needs: the session
secret, security headers on every response, and HTML error pages for UI routes (the JSON error
handlers stay in charge of /api, /healthz, /metrics and the tiles). Call it at the end of
``create_app``, after the JSON error handlers are registered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from ledger.errors import LedgerError
from web.ui.security import configure
from web.ui.views import bp

__all__ = ["bp", "init_app", "is_ui_request"]

log = logging.getLogger(__name__)

#: Paths answered in JSON or plain text, whatever the error.
_MACHINE_PATHS = ("/api/", "/healthz", "/metrics")


def is_ui_request() -> bool:
    """Whether the current request is for a page (HTML errors) rather than the API (JSON errors)."""
    if request.blueprint is not None:
        return request.blueprint == "ui"
    path = request.path
    tiles = str(current_app.config.get("TLOG_PREFIX", "/tlog")).rstrip("/")
    if path == "/api" or path.startswith(_MACHINE_PATHS) or (tiles and (path == tiles or path.startswith(tiles + "/"))):
        return False
    return True


_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Does not verify",
    500: "Server error",
    503: "Unavailable",
}


def error_page(status: int, message: str) -> tuple[str, int]:
    title = _TITLES.get(status, "Error")
    try:
        return render_template("error.html", status=status, title=title, message=message), status
    except Exception:  # noqa: BLE001 - the error page itself must never fail with a trace
        log.exception("the error page failed to render")
        return f"<!doctype html><title>{status}</title><p>{status} {title}</p>", status


def _html_for_ui(previous: Callable[[Any], Any] | None, exc_class: type[BaseException]) -> Callable[[Any], Any]:
    def handler(exc: BaseException) -> Any:
        if not is_ui_request():
            if previous is not None:
                return previous(exc)
            if isinstance(exc, HTTPException):
                return exc
            raise exc
        if isinstance(exc, HTTPException):
            status = exc.code or 500
            message = exc.description or exc.name
            if status >= 500:
                message = "the server failed to handle the request"
            return error_page(status, message)
        if isinstance(exc, LedgerError):
            status = exc.http_status
            if status >= 500 and exc.code != "integrity_failure" and exc.code != "unavailable":
                log.error("ledger error on %s %s: %s", request.method, request.path, exc.diagnostics())
                return error_page(status, "the server failed to handle the request")
            return error_page(status, exc.diagnostics())
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(500, "the server failed to handle the request")

    handler.__name__ = f"ui_or_previous_{exc_class.__name__}"
    return handler


def init_app(app: Flask) -> None:
    """Register the UI on ``app`` (once)."""
    if "ui" in app.blueprints:
        return
    ext = app.extensions["provledger"]
    configure(app, ext.settings.home)
    app.register_blueprint(bp)
    handlers = app.error_handler_spec.setdefault(None, {}).setdefault(None, {})
    for exc_class in (LedgerError, HTTPException, Exception):
        app.register_error_handler(exc_class, _html_for_ui(handlers.get(exc_class), exc_class))

"""The auditor web UI: server-rendered pages on the same app as the API.

``init_app(app)`` (:mod:`web.ui.app`) registers the ``ui`` blueprint (:mod:`web.ui.views`) and the
app-wide hooks it needs. This face only re-exports.
"""

from __future__ import annotations

from web.ui.app import init_app, is_ui_request
from web.ui.views import bp

__all__ = ["bp", "init_app", "is_ui_request"]

"""The tlog-tiles read API (c2sp.org/tlog-tiles), byte-exact, at a configurable prefix.

``<prefix>/checkpoint``, ``<prefix>/tile/<L>/<N>[.p/<W>]`` and ``<prefix>/tile/entries/<N>[.p/<W>]``
(the prefix is ``/tlog`` unless the app registers the blueprint elsewhere). Full tiles never
change, so they are cacheable for a year; partial tiles and the checkpoint only briefly.
"""

from __future__ import annotations

import gzip

from flask import Blueprint, Response, request

from ledger.services import tiles as tile_service
from ledger.services.cosign import latest_cosigned_note
from ledger.tlog.tiles import parse_tile_path
from web.extension import get_session

__all__ = ["DEFAULT_PREFIX", "bp"]

DEFAULT_PREFIX = "/tlog"

bp = Blueprint("tlog_tiles", __name__, url_prefix=DEFAULT_PREFIX)

IMMUTABLE = "public, max-age=31536000, immutable"
#: A partial tile's bytes never change either, but the log may drop it once the full tile exists.
PARTIAL = "public, max-age=60"
#: C2SP: the checkpoint should not be cached for more than a few seconds.
CHECKPOINT = "public, max-age=5"


@bp.get("/checkpoint")
def checkpoint() -> Response:
    note = latest_cosigned_note(get_session())
    response = Response(note.encode("utf-8"), content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = CHECKPOINT
    return response


@bp.get("/tile/<path:rest>")
def tile(rest: str) -> Response:
    ref = parse_tile_path("tile/" + rest)
    data = tile_service.read_tile(get_session(), ref)
    response = Response(data, content_type="application/octet-stream")
    response.headers["Cache-Control"] = PARTIAL if ref.is_partial else IMMUTABLE
    if ref.entries:
        # C2SP: entry bundles SHOULD be compressed at the HTTP layer.
        response.vary.add("Accept-Encoding")
        if request.accept_encodings["gzip"] > 0:
            response.set_data(gzip.compress(data, mtime=0))
            response.headers["Content-Encoding"] = "gzip"
    return response

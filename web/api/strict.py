"""Strict reading of what a client sends besides bodies: numbers in paths and queries, and the
media type of POST bodies.

- ``<int:…>`` in every route is ``IndexConverter``: ASCII digits only, at most ``MAX_DECIMAL``;
  anything else is a 400 naming the rule (not a 404, not a 500 from the database).
- ``int_arg`` is the same rule for query parameters.
- ``require_json`` answers 415 to a POST body that is not ``application/json`` (UTF-8).
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter

from ledger.errors import LedgerError, MalformedError
from ledger.untrusted.json import MAX_DECIMAL, parse_decimal

__all__ = ["IndexConverter", "UnsupportedMediaTypeError", "int_arg", "require_json"]


class UnsupportedMediaTypeError(LedgerError):
    """A POST body in a media type the route does not take."""

    code = "unsupported_media_type"
    http_status = 415
    exit_code = 2


class _BadPathNumber(BadRequest):
    """Raised while routing; the app's HTTPException handler answers it as ``malformed``."""


class IndexConverter(BaseConverter):
    """``<int:name>``: a non-negative decimal of ASCII digits, at most ``MAX_DECIMAL``."""

    #: any run of (Unicode) digits reaches ``to_python``, which answers 400 to all but ASCII
    #: digits within range; other words ("batch") fall through to other routes or 404/405
    regex = r"\d+"
    weight = 50

    def to_python(self, value: str) -> int:
        try:
            return parse_decimal(value, what="a number in the path")
        except MalformedError as exc:
            raise _BadPathNumber(description=str(exc)) from None

    def to_url(self, value: int) -> str:
        return str(int(value))


def int_arg(name: str, default: int | None = None, *, minimum: int = 0, maximum: int = MAX_DECIMAL) -> int:
    """A query parameter read with ``parse_decimal``; MalformedError when absent without default."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise MalformedError(f"the query parameter {name} is required")
        return default
    return parse_decimal(raw, what=f"the query parameter {name}", minimum=minimum, maximum=maximum)


def require_json(*, optional: bool = False) -> None:
    """415 unless the request's Content-Type is ``application/json`` (charset, if given, UTF-8).

    Checked from the headers only, after authentication and before the body is read.
    ``optional``: a request with no body at all needs no Content-Type.
    """
    if optional and request.content_length in (None, 0) and not request.headers.get("Content-Type"):
        return
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != "application/json" or charset not in ("utf-8", "utf8"):
        given = request.headers.get("Content-Type") or "none"
        raise UnsupportedMediaTypeError(
            f"the body must be application/json (UTF-8); the request's Content-Type is {given[:80]!r}"
        )

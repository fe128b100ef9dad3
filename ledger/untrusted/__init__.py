"""Untrusted input: the one strict JSON loader and the one decimal parser (see ``json``), the
one X.509 loader (``x509``: import it from there) and the characters no name or shown text
may hold (``text``)."""

from ledger.untrusted.json import (
    MAX_DECIMAL,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MAX_JSON_NUMBER_CHARS,
    check_json,
    parse_decimal,
    parse_json,
)

__all__ = [
    "MAX_DECIMAL",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER",
    "MAX_JSON_NUMBER_CHARS",
    "check_json",
    "parse_decimal",
    "parse_json",
]

"""The one JSON loader for untrusted bytes (and the one decimal parser for untrusted text):
strict, bounded, and judged completely before use.

Envelopes, statements (and so predicates), batch bodies, Sigstore bundles, receipts, evidence
and every file the command line reads go through ``parse_json``. Beyond RFC 8259 it refuses,
with a ``MalformedError`` naming the rule:

- bytes that are not UTF-8 (no UTF-16/32 guessing, no byte-order mark);
- duplicate object keys (two readers must never see two different documents);
- strings that are not sequences of Unicode scalar values (a lone surrogate, e.g. ``"\\ud800"``);
- nesting deeper than ``MAX_JSON_DEPTH`` arrays and objects;
- numbers outside ``MAX_JSON_INTEGER`` (integers) or not finite (floats such as ``1e999``),
  number literals longer than ``MAX_JSON_NUMBER_CHARS``, and ``NaN``/``Infinity``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ledger.errors import MalformedError

__all__ = [
    "MAX_DECIMAL",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER",
    "MAX_JSON_NUMBER_CHARS",
    "check_json",
    "parse_decimal",
    "parse_json",
]

#: Arrays and objects nest at most this deep (the outermost one is level 1).
MAX_JSON_DEPTH = 64
#: Integers must lie within ±MAX_JSON_INTEGER (every 64-bit field fits; nothing bigger is data).
MAX_JSON_INTEGER = 2**64 - 1
#: A number literal longer than this is refused before it is converted.
MAX_JSON_NUMBER_CHARS = 40

_SURROGATE = re.compile("[\ud800-\udfff]")
#: a ``\\uD800``-``\\uDFFF`` escape: where a decoded string could hold a surrogate when the text
#: itself holds none (a pair of them may decode to a valid character; the full check tells)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class _Refused(Exception):
    """A rule broken inside the decoder's hooks (re-raised as MalformedError with context)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"repeats the key {_show(key)} (object keys must be unique)")
            seen.add(key)
    return doc


def _int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _Refused(f"holds a number of {len(text)} characters (at most {MAX_JSON_NUMBER_CHARS})")
    value = int(text)
    if abs(value) > MAX_JSON_INTEGER:
        raise _Refused(f"holds the integer {text}, outside ±(2**64 - 1)")
    return value


def _float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _Refused(f"holds a number of {len(text)} characters (at most {MAX_JSON_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"holds the number {text}, which is not a finite double")
    return value


def _constant(text: str) -> Any:
    raise _Refused(f"holds {text}, which is not JSON (numbers must be finite)")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant)


def _show(text: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "…"
    return json.dumps(shown)  # escapes controls and surrogates: safe in a one-line message


def parse_json(data: bytes | bytearray | memoryview | str, *, what: str = "the input", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode untrusted JSON strictly (see the module docstring); ``what`` names it in errors."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")  # strict: never yields a surrogate
        except UnicodeDecodeError as exc:
            raise MalformedError(f"{what} is not valid JSON: it must be UTF-8 text, and byte {exc.start} is not") from exc
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"parse_json takes bytes or str, not {type(data).__name__}")
    try:
        doc = _DECODER.decode(text)
    except _Refused as exc:
        raise MalformedError(f"{what} {exc}") from None
    except RecursionError:
        raise MalformedError(f"{what} nests arrays and objects deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise MalformedError(f"{what} is not valid JSON: {exc}") from None
    except ValueError as exc:  # int() of a literal: cannot happen within the length bound
        raise MalformedError(f"{what} is not valid JSON: {exc}") from None
    # The decoder's hooks already enforce the number and key rules; what is left is depth and
    # surrogates. Nesting cannot exceed the count of "[" and "{" in the text, and a surrogate
    # can only come from a \\uDxxx escape or (str input) the text itself: when neither can
    # happen, the walk over every value (most of the cost for small documents) finds nothing.
    if _SURROGATE_ESCAPE.search(text) or (data is text and _SURROGATE.search(text)):
        check_json(doc, what=what, max_depth=max_depth)
    elif text.count("{") + text.count("[") > max_depth and _deeper_than(doc, max_depth):
        check_json(doc, what=what, max_depth=max_depth)  # names the rule
    return doc


def _deeper_than(doc: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` (level by level, containers only)."""
    level = [doc] if isinstance(doc, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        level = [
            item
            for value in level
            for item in (value.values() if isinstance(value, dict) else value)
            if isinstance(item, dict | list)
        ]
    return False


def check_json(doc: Any, *, what: str = "the input", max_depth: int = MAX_JSON_DEPTH) -> None:
    """The rules no decoder hook sees: depth, and Unicode scalar values in keys and strings.

    Also usable on a value decoded elsewhere (iterative: no recursion on hostile depth)."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise MalformedError(
                    f"{what} holds a string that is not valid Unicode ({_show(value)} has a lone surrogate)"
                )
        elif isinstance(value, dict | list):
            depth += 1
            if depth > max_depth:
                raise MalformedError(f"{what} nests arrays and objects deeper than {max_depth} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise MalformedError(f"{what} has an object key that is not a string")
                    if _SURROGATE.search(key):
                        raise MalformedError(
                            f"{what} holds a key that is not valid Unicode ({_show(key)} has a lone surrogate)"
                        )
                    stack.append((item, depth))
            else:
                stack.extend((item, depth) for item in value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_JSON_INTEGER:
                raise MalformedError(f"{what} holds an integer outside ±(2**64 - 1)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise MalformedError(f"{what} holds a number that is not finite")
        else:
            raise MalformedError(f"{what} holds a {type(value).__name__}, which is not a JSON value")


#: An index or size in a path or query: at most this (the database's 64-bit signed integers).
MAX_DECIMAL = 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def parse_decimal(text: str, *, what: str, minimum: int = 0, maximum: int = MAX_DECIMAL) -> int:
    """An untrusted decimal integer: ASCII digits only (no ``%D9%A1``, no ``+``, no spaces,
    no ``_``), within [minimum, maximum]; MalformedError naming ``what`` and the range."""
    if not _DECIMAL.fullmatch(text) or text.startswith("-") and minimum >= 0:
        raise MalformedError(f"{what} must be a decimal integer of ASCII digits between {minimum} and {maximum}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise MalformedError(f"{what} must be a decimal integer of ASCII digits between {minimum} and {maximum}")
    return value

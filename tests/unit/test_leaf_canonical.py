"""The leaf decoder's cheap canonical test never accepts what the exact one (strict loader, then
RFC 8785 re-encoding) refuses, and gives the same value where both accept."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedError
from ledger.records.leaf import plain_canonical, canonical_json, decode_leaf
from ledger.untrusted.json import parse_json

_text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "\x1f", "\x7f", "\u2028", "/", '"', "\\", "é", "\U0001f600", "\ue000"]), max_size=12)
_scalar = st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64) | st.floats(allow_nan=False) | _text
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=20)


def _exact(data: bytes) -> object:
    doc = parse_json(data, what="leaf data")
    if canonical_json(doc) != data:
        raise MalformedError("not canonical")
    return doc


def _agrees(data: bytes) -> None:
    fast = plain_canonical(data)
    if fast is None:
        return
    assert _exact(data) == fast  # the exact path accepts it too, as the same value


@settings(max_examples=400, deadline=None)
@given(_json)
def test_canonical_encodings(value: object) -> None:
    try:
        data = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError):
        return
    _agrees(data)
    if data.isascii() and value == json.loads(data) and data.count(b"{") + data.count(b"[") <= 64:
        try:
            _exact(data)
        except MalformedError:
            return
        if isinstance(value, dict) and not any(isinstance(v, float) for v in _walk(value)):
            assert plain_canonical(data) is not None  # the common case does take the cheap path


@settings(max_examples=400, deadline=None)
@given(_json, st.data())
def test_mutated_encodings(value: object, data: st.DataObject) -> None:
    """Any other encoding of a value: spaces, other escapes, repeated keys, reordering, numbers."""
    for text in (json.dumps(value), json.dumps(value, sort_keys=True), json.dumps(value, separators=(",", ":"))):
        _agrees(text.encode("utf-8", "surrogatepass"))
    try:
        base = bytearray(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, ValueError):
        return
    if base:
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.sampled_from(b' "\\{}[],:0123456789eE.-+uU/abcdfnrt'))
        _agrees(bytes(base))


@pytest.mark.parametrize("data", [
    b'{"a":1,"a":1}', b'{"a":"\\ud800"}', b'{"a":"\\u00e9"}', b'{"a":"\\/"}', b'{"a":"\\u001F"}', b'{"a":1.0}',
    b'{"a":1e2}', b'{"a":-0}', b'{"a":9007199254740993}', b'{"b":1,"a":2}', b'{"a":1} ', b"[" * 65 + b"]" * 65,
    b'{"a":NaN}', b'{"a":1}{"a":1}', b'\xef\xbb\xbf{"a":1}',
])
def test_non_canonical_never_takes_the_cheap_path(data: bytes) -> None:
    assert plain_canonical(data) is None


def test_decode_leaf_refuses_the_same_either_way() -> None:
    good = b'{"envelope":{"payload":"e30=","payloadType":"x","signatures":[{"sig":"AAAA"}]},"integrated_time":1,"kind":"dsse","signers":[]}'
    assert plain_canonical(good) is not None and decode_leaf(good).integrated_time == 1
    for bad, rule in [(good.replace(b'"kind"', b' "kind"'), "canonical"), (good.replace(b'"dsse"', b'"other"'), "not a dsse"),
                      (good.replace(b":1,", b":1.5,"), "integrated_time")]:
        with pytest.raises(MalformedError, match=rule):
            decode_leaf(bad)


def _walk(value: object):  # type: ignore[no-untyped-def]
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)

"""The strict parsers of untrusted input: JSON, decimals, subject names, digests, envelopes and
statements. Generated hostile input must raise MalformedError (naming the rule), never anything
else; honest input must round-trip unchanged."""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.records.dsse import parse_envelope
from ledger.errors import MalformedError
from ledger.trust.chain import parse_digest
from ledger.records.leaf import decode_leaf
from ledger.records.statement import MAX_SUBJECT_NAME_CHARS, check_subject_name, parse_statement
from ledger.untrusted.json import MAX_DECIMAL, MAX_JSON_DEPTH, MAX_JSON_INTEGER, check_json, parse_json, parse_decimal
from ledger.verify import parse_receipt

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------ parse_json: honest input

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_JSON_INTEGER, max_value=MAX_JSON_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # hypothesis text never holds a lone surrogate
)
honest_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@FAST
@given(honest_json, st.booleans())
def test_honest_json_round_trips(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert parse_json(text) == value
    assert parse_json(text.encode("utf-8")) == value


# ------------------------------------------------------------------------------ parse_json: each rule


def _refused(data, *words: str) -> str:
    with pytest.raises(MalformedError) as info:
        parse_json(data, what="the test input")
    message = str(info.value)
    assert message.startswith("the test input"), message
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return message


def test_duplicate_keys_are_refused_at_any_depth():
    _refused(b'{"a": 1, "a": 2}', "repeats the key", '"a"', "unique")
    _refused(b'{"x": [{"subject": 1, "subject": 1}]}', "subject")
    # the same key in sibling objects is fine
    assert parse_json(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    "data",
    [b'"\\ud800"', b'"\\udfff"', b'{"k\\ud800": 1}', b'["ok", "x\\ud83d"]', b'"\\ude00\\ud83d"'],
)
def test_lone_surrogate_escapes_are_refused(data):
    _refused(data, "not valid Unicode", "surrogate")


def test_a_surrogate_pair_is_one_scalar_value():
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize("data", [b'"\xed\xa0\x80"', b'"\xff"', b'"\xc3"', b"\xef\xbb\xbf{}", "\ufeff{}".encode("utf-16")])
def test_bytes_that_are_not_utf8_json_are_refused(data):
    _refused(data)


def test_a_str_holding_a_lone_surrogate_is_refused():
    _refused('["\ud800"]', "surrogate")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 3000, 10_000, 100_000])
@pytest.mark.parametrize("open_, close", [("[", "]"), ('{"a":', "}")])
def test_nesting_deeper_than_the_limit_is_refused(depth, open_, close):
    _refused(open_ * depth + "1" + close * depth, f"deeper than {MAX_JSON_DEPTH}")
    _refused(open_ * depth, "")  # truncated as well as deep


def test_nesting_up_to_the_limit_is_accepted():
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


def test_brackets_and_escapes_inside_strings_are_only_text():
    # more "[" and "{" than the depth limit, and \u escapes, all inside strings: a shallow
    # document of valid characters (the full walk runs and finds nothing)
    text = json.dumps({"a": "[{" * MAX_JSON_DEPTH, "b": "\ud83d\ude00 \u00e9 \\ud800"}, ensure_ascii=True)
    assert parse_json(text.encode()) == {"a": "[{" * MAX_JSON_DEPTH, "b": "\U0001f600 \u00e9 \\ud800"}
    assert parse_json(text) == parse_json(text.encode())
    # a lone surrogate escape among valid ones is still found, in bytes and in str
    for data in (b'["\\u00e9", {"k": "\\uD800"}]', '["\\u00e9", {"k": "\\uDBFF"}]'):
        _refused(data, "surrogate")


@pytest.mark.parametrize(
    "literal",
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", str(MAX_JSON_INTEGER + 1), str(-MAX_JSON_INTEGER - 1), "9" * 5000, "1." + "0" * 100],
)
def test_numbers_out_of_range_are_refused(literal):
    _refused(f'{{"n": {literal}}}'.encode())


def test_numbers_at_the_limits_are_accepted():
    assert parse_json(str(MAX_JSON_INTEGER)) == MAX_JSON_INTEGER
    assert parse_json(str(-MAX_JSON_INTEGER)) == -MAX_JSON_INTEGER
    assert parse_json("1.7976931348623157e308") == 1.7976931348623157e308


def test_check_json_walks_decoded_values_without_recursion():
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(MalformedError, match="deeper than"):
        check_json(deep)
    with pytest.raises(MalformedError, match="not finite"):
        check_json({"x": math.nan})
    with pytest.raises(MalformedError, match="not a JSON value"):
        check_json({"x": object()})


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_malformed_only(data):
    try:
        parse_json(data)
    except MalformedError:
        pass


_hostile_fragments = st.sampled_from(
    ['"\\ud800"', "NaN", "1e999", "[" * 200, '{"a":1,"a":2}', str(2**70), '"\x00"', "\ufeff", "\\", '"', "{", "]", ",", ":"]
)


@FAST
@given(st.lists(st.one_of(_hostile_fragments, st.sampled_from(['{"a":', "[", "]", "}", "1", '"x"', ","])), max_size=40))
def test_generated_hostile_json_is_refused_as_malformed(parts):
    text = "".join(parts)
    try:
        value = parse_json(text)
    except MalformedError:
        return
    # whatever was accepted obeys every rule
    check_json(value)
    assert json.loads(text) == value


# ------------------------------------------------------------------------------ parse_decimal


@pytest.mark.parametrize("text", ["\u0661", "\u0661\u0662", "\uff11", "1\u0661", "+1", " 1", "1 ", "1_000", "0x10", "", "-0", str(MAX_DECIMAL + 1), "9" * 400, "1\n"])
def test_decimals_are_ascii_digits_within_range(text):
    with pytest.raises(MalformedError, match="ASCII digits"):
        parse_decimal(text, what="the index")


@FAST
@given(st.text(max_size=30))
def test_any_text_is_a_decimal_in_range_or_malformed(text):
    try:
        value = parse_decimal(text, what="n")
    except MalformedError:
        return
    assert text.isascii() and text.isdigit() and 0 <= value <= MAX_DECIMAL and str(value) == text.lstrip("0").rjust(1, "0")


def test_a_negative_minimum_allows_minus_one():
    assert parse_decimal("-1", what="after", minimum=-1) == -1
    with pytest.raises(MalformedError):
        parse_decimal("-2", what="after", minimum=-1)


# ------------------------------------------------------------------------------ subject names


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("myorg/../otherorg", "'..' segment"),
        ("myorg/./x", "'.' segment"),
        ("myorg//x", "empty segment"),
        ("myorg/app/", "empty segment"),
        ("/myorg/app", "empty segment"),
        ("..", "'..' segment"),
        ("", "is empty"),
        ("myorg/a\x00b", "U+0000"),
        ("myorg/a\nb", "U+000A"),
        ("myorg/a\rb", "U+000D"),
        ("myorg/a\x7fb", "U+007F"),
        ("myorg/a\u202eb", "U+202E"),
        ("myorg/a\u200bb", "U+200B"),
        ("x" * (MAX_SUBJECT_NAME_CHARS + 1), "over the limit"),
    ],
)
def test_subject_names_outside_the_grammar_are_refused_naming_the_rule(name, rule):
    with pytest.raises(MalformedError, match="subject name") as info:
        check_subject_name(name)
    assert rule in str(info.value)
    assert "\n" not in str(info.value) and "\x00" not in str(info.value)


@pytest.mark.parametrize("name", ["myorg/app/x", "a.txt", "pkg:npm/%40scope/name@1.0.0", "..a/b..", "ghcr.io/org/img", "x" * MAX_SUBJECT_NAME_CHARS, "ünïcode/名前"])
def test_subject_names_in_the_grammar_are_accepted(name):
    check_subject_name(name)


@FAST
@given(st.text(max_size=60))
def test_accepted_names_have_only_proper_segments(name):
    try:
        check_subject_name(name)
    except MalformedError:
        return
    segments = name.split("/")
    assert all(s not in ("", ".", "..") for s in segments)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)


# ------------------------------------------------------------------------------ statements and envelopes


def _statement(**subject) -> bytes:
    subject = {"name": "myorg/app/x", "digest": {"sha256": "ab" * 32}} | subject
    return json.dumps(
        {"_type": "https://in-toto.io/Statement/v1", "subject": [subject], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}}
    ).encode()


@pytest.mark.parametrize(
    "digest",
    ["ab" * 31 + "a\n", "ab" * 32 + "\n", "AB" * 32, "ab" * 31 + "a", "ab" * 33, "g" * 64, " " + "ab" * 32],
)
def test_sloppy_statement_digests_are_refused(digest):
    with pytest.raises(MalformedError, match="lowercase hex"):
        parse_statement(_statement(digest={"sha256": digest}))


def test_duplicate_subject_keys_in_a_statement_are_refused():
    payload = (
        b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": "p", "predicate": {},'
        b' "subject": [{"name": "otherorg/x", "digest": {"sha256": "' + b"ab" * 32 + b'"}}],'
        b' "subject": [{"name": "myorg/x", "digest": {"sha256": "' + b"ab" * 32 + b'"}}]}'
    )
    with pytest.raises(MalformedError, match='statement repeats the key "subject"'):
        parse_statement(payload)


def test_a_statement_with_a_3000_deep_predicate_is_refused():
    predicate = "[" * 3000 + "]" * 3000
    payload = b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": "p", "subject": [], "predicate": ' + predicate.encode() + b"}"
    with pytest.raises(MalformedError, match="deeper than"):
        parse_statement(payload)


def test_a_lone_surrogate_subject_name_is_refused_by_the_statement_parser():
    payload = _statement().replace(b"myorg/app/x", b"myorg/\\ud800")
    with pytest.raises(MalformedError, match="surrogate"):
        parse_statement(payload)


def test_envelopes_refuse_duplicate_keys_and_surrogates():
    good = {"payload": base64.b64encode(_statement()).decode(), "payloadType": "application/vnd.in-toto+json", "signatures": [{"keyid": "", "sig": "AAAA"}]}
    assert parse_envelope(json.dumps(good)).payload == _statement()
    text = json.dumps(good)
    with pytest.raises(MalformedError, match="repeats the key"):
        parse_envelope(text[:-1] + ', "payloadType": "other"}')
    with pytest.raises(MalformedError, match="surrogate"):
        parse_envelope(text.replace('"keyid": ""', '"keyid": "\\udc00"'))
    with pytest.raises(MalformedError, match="surrogate"):
        parse_envelope(good | {"payloadType": "\udc00"})  # an already decoded object is checked too


@FAST
@given(st.binary(max_size=200))
def test_statement_envelope_receipt_and_leaf_parsers_raise_malformed_only(data):
    for parser in (parse_statement, parse_envelope, parse_receipt, decode_leaf):
        try:
            parser(data)
        except MalformedError:
            pass


@pytest.mark.parametrize("text", ["sha256:" + "ab" * 31 + "a\n", "sha256:" + "AB" * 32, "sha256:" + "ab" * 32 + "\n", " sha256:" + "ab" * 32, "md5:" + "ab" * 16])
def test_parse_digest_is_exact(text):
    with pytest.raises(MalformedError):
        parse_digest(text)
    assert parse_digest("sha256:" + "ab" * 32) == ("sha256", "ab" * 32)

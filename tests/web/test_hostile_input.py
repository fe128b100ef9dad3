"""Hostile input against the served API: every answer is a 4xx naming the rule, nothing is
stored, and honest submitters are not hurt. On SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.records.keys import generate_private_key
from ledger.trust.policy import Grant
from ledger.services.registry import add_key, create_token
from ledger.services.setup import load_admin_key
from tests.fixtures import PREDICATE, envelope_bytes, sign
from web.app import create_app

ENVELOPE_LIMIT = 64 * 1024
REQUEST_LIMIT = 1024 * 1024
HUGE = "9" * 40
HOSTILE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture
def app(store):
    app = create_app(
        {"SETTINGS": store.settings, "TESTING": True, "MAX_ENVELOPE_BYTES": ENVELOPE_LIMIT, "MAX_REQUEST_BYTES": REQUEST_LIMIT}
    )
    app.store = store  # type: ignore[attr-defined]
    yield app
    ext = app.extensions["provledger"]
    ext.sequencer.stop()
    ext.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def _token(store, scope: str = "submit") -> str:
    with store.sessions() as session, session.begin():
        return create_token(session, f"{scope}-token", scope, now=store.clock)


@pytest.fixture
def auth(app):
    return {"Authorization": f"Bearer {_token(app.store)}", "Content-Type": "application/json"}


@pytest.fixture
def key(app):
    """A signer granted only myorg/*/* subjects."""
    key = generate_private_key("ed25519")
    store = app.store
    add_key(store.sessions, store.log, load_admin_key(store.settings), "myorg-ci", key.public_key,
            [Grant((PREDICATE,), subjects=("myorg/*/*",))], now=store.clock)
    return key


def _error(response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def _statement_with(name: str = "myorg/app/x", *, digest: str | None = None, predicate: str | None = None) -> bytes:
    """A statement as text, so that a test can put anything where the predicate goes."""
    predicate = predicate if predicate is not None else '{"builder": {"id": "https://ci.example/builder"}}'
    return (
        '{"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": %s, "digest": {"sha256": %s}}], '
        '"predicateType": %s, "predicate": %s}' % (json.dumps(name), json.dumps(digest or "ab" * 32), json.dumps(PREDICATE), predicate)
    ).encode()


def _signed(key, statement: bytes) -> bytes:
    return envelope_bytes(sign(key, statement))


class Nothing:
    """Asserts that nothing was stored across a block."""

    def __init__(self, store) -> None:
        self.store = store

    def __enter__(self):
        self.before = self.store.state()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            assert self.store.state() == self.before, "something was stored"


# ------------------------------------------------------------------------------ the cases of issue 10


def test_an_honest_record_under_the_grant_is_appended(client, auth, key):
    response = client.post("/api/v1/entries", data=_signed(key, _statement_with("myorg/app/x")), headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/api/v1/entries", "/api/v1/entries/batch"])
def test_ten_thousand_nested_arrays_are_400(client, auth, app, path):
    for body in ("[" * 10_000 + "]" * 10_000, '{"envelopes": ' + "[" * 10_000 + "]" * 10_000 + "}", "[" * 10_000):
        with Nothing(app.store):
            assert "deeper than" in _error(client.post(path, data=body, headers=auth), 400, "malformed")


def test_a_3000_deep_predicate_is_400(client, auth, key, app):
    statement = _statement_with(predicate="[" * 3000 + "]" * 3000)
    with Nothing(app.store):
        assert "deeper than" in _error(client.post("/api/v1/entries", data=_signed(key, statement), headers=auth), 400, "malformed")
        results = client.post("/api/v1/entries/batch", json={"envelopes": [sign(key, statement)]}, headers=auth).get_json()["results"]
        assert results[0]["error"]["code"] == "malformed" and "deeper than" in results[0]["error"]["message"]


def test_batch_items_that_are_not_objects_are_refused_alone(client, auth, key, app):
    good = [sign(key, _statement_with(f"myorg/app/{i}")) for i in range(2)]
    before = app.store.size()
    response = client.post("/api/v1/entries/batch", json={"envelopes": [good[0], 1, "text", [], None, True, 1.5, good[1]]}, headers=auth)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert "index" in results[0] and "index" in results[-1]
    for item in results[1:-1]:
        assert item["error"]["code"] == "malformed" and "not a JSON object" in item["error"]["message"]
    assert app.store.size() == before + 2


@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/entries/{HUGE}",
        f"/api/v1/entries/{'9' * 5000}",
        f"/api/v1/receipt/{HUGE}",
        f"/api/v1/audits/{HUGE}",
        "/api/v1/entries/%D9%A1",
        "/api/v1/receipt/%EF%BC%91",
        f"/api/v1/entries?subject=sha256:{'ab' * 32}&after={HUGE}",
        f"/api/v1/entries?subject=sha256:{'ab' * 32}&limit={HUGE}",
        "/api/v1/entries?subject=sha256:" + "ab" * 32 + "&after=%D9%A1",
        f"/api/v1/checkpoints?after={HUGE}",
        "/api/v1/checkpoints?limit=%D9%A1",
        f"/api/v1/proof/inclusion?index={HUGE}&tree_size=1",
        f"/api/v1/proof/inclusion?index=0&tree_size={HUGE}",
        "/api/v1/proof/inclusion?index=%D9%A1&tree_size=1",
        f"/api/v1/proof/consistency?old=1&new={HUGE}",
        f"/api/v1/search?after={HUGE}",
        "/api/v1/search?limit=%D9%A1",
        f"/api/v1/artifacts/sha256:{'ab' * 32}/chain?at={HUGE}",
        f"/api/v1/artifacts/sha256:{'ab' * 32}/chain?at=%D9%A1",
        "/api/v1/artifacts/sha256:" + "ab" * 31 + "a%0A/chain",
        "/api/v1/artifacts/" + "x" * 5000 + "/chain",
    ],
)
def test_numbers_and_digests_in_paths_and_queries_are_400(client, url):
    message = _error(client.get(url), 400, "malformed")
    assert "ASCII digits" in message or "digest" in message


def test_non_ascii_digits_are_not_indexes_in_the_ui_either(client):
    assert client.get("/entries/%D9%A1").status_code == 400
    assert client.get(f"/entries/{HUGE}").status_code == 400


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin-1", "application/jsonx"],
)
def test_post_bodies_other_than_json_are_415(client, auth, key, app, content_type):
    headers = {"Authorization": auth["Authorization"]}
    if content_type:
        headers["Content-Type"] = content_type
    body = _signed(key, _statement_with())
    with Nothing(app.store):
        for path in ("/api/v1/entries", "/api/v1/entries/batch"):
            _error(client.post(path, data=body, headers=headers), 415, "unsupported_media_type")
    # the token comes first (401), and a charset of utf-8 is fine
    _error(client.post("/api/v1/entries", data=body, headers={"Content-Type": "text/plain"}), 401, "unauthorized")
    ok = client.post("/api/v1/entries", data=body, headers={**headers, "Content-Type": "application/json; charset=UTF-8"})
    assert ok.status_code == 201, ok.get_data(as_text=True)


@pytest.mark.parametrize("audit_id", [2**31 - 1, 2**31, 23863962979, 2**63 - 2, 2**63 - 1])
def test_audit_ids_past_the_column_are_404_on_both_backends(client, audit_id):
    """audits.id is a 32-bit INTEGER: PostgreSQL refused to compare a larger id with it (a 500,
    found by Schemathesis); no audit has such an id."""
    _error(client.get(f"/api/v1/audits/{audit_id}"), 404, "not_found")


def test_audit_requests_with_a_body_must_be_json(client, app):
    headers = {"Authorization": f"Bearer {_token(app.store, 'admin')}", "Content-Type": "text/plain"}
    _error(client.post("/api/v1/audits", data=b'{"shard_size": 4}', headers=headers), 415, "unsupported_media_type")


def test_duplicate_keys_in_a_signed_statement_are_400(client, auth, key, app):
    """The policy would judge the last subject, a reader keeping the first would see another."""
    statement = (
        b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": "' + PREDICATE.encode() + b'", "predicate": {},'
        b' "subject": [{"name": "otherorg/app/x", "digest": {"sha256": "' + b"ab" * 32 + b'"}}],'
        b' "subject": [{"name": "myorg/app/x", "digest": {"sha256": "' + b"ab" * 32 + b'"}}]}'
    )
    with Nothing(app.store):
        assert 'repeats the key "subject"' in _error(client.post("/api/v1/entries", data=_signed(key, statement), headers=auth), 400)
    envelope = _signed(key, _statement_with())
    with Nothing(app.store):
        twice = envelope[:-1] + b', "payloadType": "application/vnd.in-toto+json"}'
        assert "repeats the key" in _error(client.post("/api/v1/entries", data=twice, headers=auth), 400)


def test_a_lone_surrogate_subject_name_is_400_and_neighbours_are_appended(client, auth, key, app):
    statement = _statement_with("myorg/app/x").replace(b'"myorg/app/x"', b'"myorg/app/\\ud800"')
    with Nothing(app.store):
        assert "surrogate" in _error(client.post("/api/v1/entries", data=_signed(key, statement), headers=auth), 400, "malformed")
    batch = [sign(key, _statement_with(f"myorg/app/{i}")) for i in range(5)] + [sign(key, statement)]
    results = client.post("/api/v1/entries/batch", json={"envelopes": batch}, headers=auth).get_json()["results"]
    assert all("index" in r for r in results[:5]) and results[5]["error"]["code"] == "malformed"


@pytest.mark.parametrize(
    "name",
    ["myorg/../otherorg", "myorg/./x", "myorg//x", "myorg/app/", "/myorg/app", "myorg/app/a\x00b", "myorg/app/a\nb", "myorg/a\u202e/x"],
)
def test_names_that_would_escape_a_grant_are_400_naming_the_rule(client, auth, key, app, name):
    with Nothing(app.store):
        message = _error(client.post("/api/v1/entries", data=_signed(key, _statement_with(name)), headers=auth), 400, "malformed")
    assert "subject 0 name" in message and ("segment" in message or "character" in message)


@pytest.mark.parametrize("digest", ["ab" * 31 + "a\n", "AB" * 32, "ab" * 32 + "\n"])
def test_sloppy_digests_are_400(client, auth, key, app, digest):
    with Nothing(app.store):
        assert "lowercase hex" in _error(client.post("/api/v1/entries", data=_signed(key, _statement_with(digest=digest)), headers=auth), 400)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999", str(2**64), "-" + "9" * 400])
def test_numbers_beyond_the_limits_are_400(client, auth, key, app, literal):
    with Nothing(app.store):
        _error(client.post("/api/v1/entries", data=_signed(key, _statement_with(predicate=literal)), headers=auth), 400, "malformed")
        _error(client.post("/api/v1/entries/batch", data='{"envelopes": [], "n": ' + literal + "}", headers=auth), 400, "malformed")


# ------------------------------------------------------------------------------ generated hostile input

_bad_names = st.sampled_from(["myorg/../otherorg", "myorg/./x", "myorg//x", "myorg/app/", "", "myorg/\x00", "myorg/a\nb", "\u2028"])
_fragments = st.sampled_from(["[", "]", "{", "}", '"a":', ",", "1", "NaN", "1e999", str(2**70), '"\\ud800"', '"x"', "null", "\ufeff", "\\"])


@st.composite
def hostile_statements(draw) -> bytes:
    """A statement broken in one of the ways the parser must refuse (the envelope is validly signed)."""
    kind = draw(st.sampled_from(["name", "digest", "duplicate", "surrogate", "depth", "number", "junk"]))
    if kind == "name":
        return _statement_with(draw(_bad_names))
    if kind == "digest":
        return _statement_with(digest=draw(st.sampled_from(["AB" * 32, "ab" * 31 + "a\n", "ab" * 33, "zz" * 32, "x"])))
    if kind == "duplicate":
        field = draw(st.sampled_from(["_type", "subject", "predicateType", "predicate"]))
        statement = _statement_with()
        return statement[:-1] + b', "' + field.encode() + b'": {}}'
    if kind == "surrogate":
        code = draw(st.integers(0xD800, 0xDFFF))
        return _statement_with().replace(b'"myorg/app/x"', b'"myorg/app/\\u%04x"' % code)
    if kind == "depth":
        depth = draw(st.integers(70, 5000))
        return _statement_with(predicate="[" * depth + "]" * depth)
    if kind == "number":
        return _statement_with(predicate=draw(st.sampled_from(["NaN", "-Infinity", "1e400", str(2**64), "9" * 50])))
    return "".join(draw(st.lists(_fragments, max_size=30))).encode()


@HOSTILE
@given(statement=hostile_statements())
def test_generated_hostile_statements_are_4xx_and_store_nothing(client, auth, key, app, statement):
    with Nothing(app.store):
        response = client.post("/api/v1/entries", data=_signed(key, statement), headers=auth)
        assert 400 <= response.status_code < 500, response.get_data(as_text=True)
        results = client.post("/api/v1/entries/batch", json={"envelopes": [sign(key, statement)]}, headers=auth).get_json()["results"]
        assert "error" in results[0]


@HOSTILE
@given(body=st.one_of(st.binary(max_size=400), st.lists(_fragments, max_size=60).map(lambda p: "".join(p).encode())))
def test_generated_hostile_bodies_are_4xx_and_store_nothing(client, auth, app, body):
    with Nothing(app.store):
        for path in ("/api/v1/entries", "/api/v1/entries/batch"):
            response = client.post(path, data=body, headers=auth)
            assert 400 <= response.status_code < 500 or (path.endswith("batch") and response.status_code == 200), response.status_code
            if response.status_code == 200:
                assert all("error" in r for r in response.get_json()["results"])


@HOSTILE
@given(items=st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)), max_size=6))
def test_generated_batch_items_are_refused_each_and_store_nothing(client, auth, app, items):
    with Nothing(app.store):
        response = client.post("/api/v1/entries/batch", json={"envelopes": items}, headers=auth)
        if response.status_code == 400:  # an integer beyond ±(2**64 - 1) refuses the whole body
            assert "outside" in _error(response, 400, "malformed")
            return
        assert response.status_code == 200
        assert [("error" in r) for r in response.get_json()["results"]] == [True] * len(items)


_segment = st.one_of(
    st.text(max_size=12),
    st.sampled_from([HUGE, "9" * 5000, "\u0661", "-1", "0x1", "1e3", "%D9%A1", "%00", "%0A", "..", "sha256:" + "ab" * 32]),
)


@HOSTILE
@given(segment=_segment, value=_segment)
def test_generated_paths_and_queries_never_answer_5xx(client, segment, value):
    from urllib.parse import quote  # noqa: PLC0415

    seg, val = quote(segment, safe="%:"), quote(value, safe="%:")
    for url in (
        f"/api/v1/entries/{seg}",
        f"/api/v1/receipt/{seg}",
        f"/api/v1/audits/{seg}",
        f"/api/v1/artifacts/{seg}/chain?at={val}",
        f"/api/v1/entries?subject={val}&after={val}",
        f"/api/v1/checkpoints?after={val}&limit={val}",
        f"/api/v1/proof/inclusion?index={val}&tree_size={val}",
        f"/api/v1/proof/consistency?old={val}&new={val}",
        f"/api/v1/search?digest={val}&after={val}&since={val}",
        f"/entries/{seg}",
        f"/search?q={val}",
    ):
        response = client.get(url)
        assert response.status_code < 500, (url, response.status_code, response.get_data(as_text=True)[:300])


def test_an_undeclared_method_is_405_with_allow(client):
    response = client.open("/api/v1/signers", method="TRACE")
    _error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def _b64(doc: object) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(json.dumps(doc).encode()).decode()


@pytest.mark.parametrize(
    "envelope",
    [
        {"payload": "e30=", "payloadType": "x" * 50_000, "signatures": [{"sig": "AA=="}]},
        {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}], "k" * 50_000: 1},
        {"payload": _b64({"_type": "t" * 30_000, "subject": [], "predicateType": "x", "predicate": {}}),
         "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}]},
        {"payload": _b64({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "myorg/a/b", "digest": {"sha256": "0" * 64}}],
                          "predicateType": "https://provenance-ledger.dev/hardware-part/v1", "predicate": {"manufacturer": "m" * 30_000}}),
         "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}]},
    ],
    ids=["payloadType", "unknown field", "statement type", "predicate field"],
)
def test_a_refusal_never_echoes_a_huge_value_back(client, auth, app, envelope):
    """Messages that quote a value (payloadType, an unknown field's name, the statement type, a
    schema error) sent it back whole: a 50 KB (or 3 MB) field made a 50 KB (or 3 MB) 400 answer."""
    before = app.store.state()
    for path, body in (("/api/v1/entries", envelope), ("/api/v1/entries/batch", {"envelopes": [envelope]})):
        response = client.post(path, data=json.dumps(body), headers=auth)
        assert response.status_code in (200, 400), response.status_code
        doc = response.get_json()
        message = (doc["results"][0] if path.endswith("batch") else doc)["error"]["message"]
        assert len(message) <= 2_100 and len(response.get_data()) < 4_000, len(message)
    assert app.store.state() == before

"""The HTTP API (/api/v1, /healthz, /metrics) through Flask's test client, on both backends."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from sqlalchemy import func, select

from ledger import merkle
from ledger.db import store as dbstore
from ledger.records.dsse import sign_envelope
from ledger.db.models import Entry
from ledger.records.keys import generate_private_key
from ledger.trust.predicates import KEY_EVENT
from ledger.services.registry import create_token
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE
from ledger.verify import verify_receipt
from tests.fixtures import PREDICATE, envelope_bytes, make_statement, sign
from web.app import create_app

ENVELOPE_LIMIT = 8 * 1024
REQUEST_LIMIT = 64 * 1024


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
    return app.store.add_signer(allow=[PREDICATE])


def _key_events(store) -> int:
    """How many key-event entries the store holds: registering a key is a ledger entry (signed by
    the admin key), and in these tests they all come before the first record. Records start there."""
    with store.sessions() as session:
        return session.execute(select(func.count()).select_from(Entry).where(Entry.predicate_type == KEY_EVENT)).scalar_one()


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["message"]


class ExplodingStream(io.RawIOBase):
    """A request body of ``size`` bytes that fails the test if anyone reads it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the stream with tell/seek
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = self.size + offset if whence == 2 else offset
        return self.position

    def readinto(self, b):  # noqa: ANN001
        raise AssertionError("the body was read")


# ------------------------------------------------------------------------------ POST /entries


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer plt_wrong", "Basic dXNlcjpwYXNz"])
def test_post_without_valid_token_is_401_before_the_body_is_read(client, header):
    headers = {"Authorization": header} if header else {}
    for path in ("/api/v1/entries", "/api/v1/entries/batch"):
        response = client.post(
            path, input_stream=ExplodingStream(10 * REQUEST_LIMIT),
            content_type="application/json", headers=headers,
        )
        _error(response, 401, "unauthorized")


def test_exploding_stream_would_notice_a_read(client, auth):
    """Guards the test above: with a valid token the body is read, and the stream says so."""
    response = client.post("/api/v1/entries", input_stream=ExplodingStream(100), headers=auth)
    assert response.status_code == 500


def test_post_created_then_duplicate(client, auth, key, app):
    env = sign(key)
    first = client.post("/api/v1/entries", data=envelope_bytes(env), headers=auth, content_type="application/json")
    assert first.status_code == 201, first.get_data(as_text=True)
    receipt = first.get_json()
    assert set(receipt) == {"index", "tree_size", "entry", "proof"}
    verify_receipt(receipt, app.store.log.vkey, public_keys=[key.public_key])
    base = _key_events(app.store)
    assert receipt["index"] == base and receipt["tree_size"] == base + 1
    again = client.post("/api/v1/entries", data=envelope_bytes(env), headers=auth, content_type="application/json")
    assert again.status_code == 200
    assert again.get_json()["index"] == receipt["index"]
    assert app.store.size() == base + 1


def test_admin_token_may_submit(client, key, app):
    headers = {"Authorization": f"Bearer {_token(app.store, 'admin')}", "Content-Type": "application/json"}
    response = client.post("/api/v1/entries", data=envelope_bytes(sign(key)), headers=headers)
    assert response.status_code == 201


def test_post_oversized_envelope_is_413_naming_the_limit(client, auth, key, app):
    env = sign(key, make_statement("big" * (ENVELOPE_LIMIT // 3)))
    message = _error(client.post("/api/v1/entries", data=envelope_bytes(env), headers=auth), 413, "too_large")
    assert str(ENVELOPE_LIMIT) in message
    # a declared Content-Length over the limit is refused without reading the body
    response = client.post(
        "/api/v1/entries", input_stream=ExplodingStream(ENVELOPE_LIMIT + 1), headers=auth
    )
    assert str(ENVELOPE_LIMIT) in _error(response, 413, "too_large")
    assert app.store.size() == _key_events(app.store)  # nothing but the signer's key event


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[]", b'{"payload": "***", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}]}'],
    ids=["json", "empty", "array", "base64"],
)
def test_post_malformed_is_400(client, auth, key, body, app):
    _error(client.post("/api/v1/entries", data=body, headers=auth), 400, "malformed")
    assert app.store.size() == _key_events(app.store)  # nothing but the signer's key event


def test_post_wrong_payload_type_and_non_statement_are_400(client, auth, key):
    env = sign_envelope(make_statement(), "text/plain", [key])
    assert "payloadType" in _error(client.post("/api/v1/entries", json=env, headers=auth), 400, "malformed")
    env = sign_envelope(b'{"hello": "world"}', IN_TOTO_PAYLOAD_TYPE, [key])
    assert "statement" in _error(client.post("/api/v1/entries", json=env, headers=auth), 400, "malformed")


def test_post_bad_signature_is_422(client, auth, key, app):
    env = sign(key)
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[-1] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    _error(client.post("/api/v1/entries", json=env, headers=auth), 422, "verification_failed")
    assert app.store.size() == _key_events(app.store)  # nothing but the signer's key event


def test_post_unknown_key_or_outside_grant_is_403(client, auth, key, app):
    _error(client.post("/api/v1/entries", json=sign(generate_private_key()), headers=auth), 403, "not_trusted")
    outside = sign(key, make_statement(predicate_type="https://example.com/vsa/v1"))
    assert "https://example.com/vsa/v1" in _error(client.post("/api/v1/entries", json=outside, headers=auth), 403, "not_trusted")
    assert app.store.size() == _key_events(app.store)  # nothing but the signer's key event


# ------------------------------------------------------------------------------ POST /entries/batch


def test_batch_mixed_results_in_order(client, auth, key, app):
    good = sign(key)
    batch = {
        "envelopes": [
            good,
            {"payload": 1},
            sign(generate_private_key()),
            sign(key, make_statement(predicate_type="https://example.com/other")),
            sign(key),
            good,
        ]
    }
    base = _key_events(app.store)
    assert base == 1
    response = client.post("/api/v1/entries/batch", json=batch, headers=auth)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 6
    assert results[0]["index"] == base
    assert results[1]["error"]["code"] == "malformed"
    assert results[2]["error"]["code"] == "not_trusted"
    assert results[3]["error"]["code"] == "not_trusted"
    assert results[4]["index"] == base + 1
    assert results[5]["index"] == base
    for r in (results[0], results[4], results[5]):
        verify_receipt(r, app.store.log.vkey)
    assert app.store.size() == base + 2


def test_batch_refusals(client, auth, key, app):
    _error(client.post("/api/v1/entries/batch", data=b"{nope", headers=auth), 400, "malformed")
    _error(client.post("/api/v1/entries/batch", json=[sign(key)], headers=auth), 400, "malformed")
    _error(client.post("/api/v1/entries/batch", json={"envelopes": "x"}, headers=auth), 400, "malformed")
    big = {"envelopes": [sign(key, make_statement("x" * 5000)) for _ in range(REQUEST_LIMIT // 5000 + 2)]}
    assert str(REQUEST_LIMIT) in _error(client.post("/api/v1/entries/batch", json=big, headers=auth), 413, "too_large")
    # one envelope over the envelope limit is refused in its place; the rest go in
    results = client.post(
        "/api/v1/entries/batch", json={"envelopes": [sign(key, make_statement("y" * ENVELOPE_LIMIT)), sign(key)]},
        headers=auth,
    ).get_json()["results"]
    assert results[0]["error"]["code"] == "too_large" and str(ENVELOPE_LIMIT) in results[0]["error"]["message"]
    base = _key_events(app.store)
    assert base == 1
    assert results[1]["index"] == base
    assert app.store.size() == base + 1


# ------------------------------------------------------------------------------ reads


@pytest.fixture
def filled(app, key):
    """After the signer's key event (entry 0), three batches: 3 + 4 + 2 records; records 4 and 7
    (entries ``base + 4`` and ``base + 7``, ``base`` = ``st.base``) are about the artifact digest ``SUBJECT``."""
    st = app.store
    st.base = _key_events(st)
    assert st.base == st.size() == 1
    st.append_ok([sign(key) for _ in range(3)])
    st.append_ok([sign(key) for _ in range(1)] + [sign(key, make_statement("special.tar", digest=SUBJECT))]
                 + [sign(key) for _ in range(2)])
    st.append_ok([sign(key, make_statement("special-again.tar", digest=SUBJECT)), sign(key)])
    return st


SUBJECT = "ab" * 32


def test_get_entry(client, filled):
    base = filled.base
    body = client.get(f"/api/v1/entries/{base + 4}").get_json()
    assert set(body) == {"index", "leaf_hash", "chain_hash", "integrated_time", "envelope", "statement"}
    assert body["index"] == base + 4
    assert body["statement"]["subject"][0]["name"] == "special.tar"
    leaves = filled.leaf_hashes()
    assert body["leaf_hash"] == leaves[base + 4].hex()
    assert re.fullmatch(r"[0-9a-f]{64}", body["chain_hash"])
    assert json.loads(base64.b64decode(body["envelope"]["payload"])) == body["statement"]
    _error(client.get(f"/api/v1/entries/{base + 9}"), 404, "not_found")


def test_get_entries_by_subject(client, filled):
    base = filled.base
    body = client.get(f"/api/v1/entries?subject=sha256:{SUBJECT}").get_json()
    assert [e["index"] for e in body["entries"]] == [base + 4, base + 7]
    # digests are exactly 64 lowercase hex digits: upper case or a trailing newline is a 400
    for bad in (SUBJECT.upper(), SUBJECT[:63] + "%0A", SUBJECT + "%0A"):
        assert "lowercase hex" in _error(client.get(f"/api/v1/entries?subject=sha256:{bad}"), 400, "malformed")
    assert body["next"] is None
    page = client.get(f"/api/v1/entries?subject=sha256:{SUBJECT}&limit=1").get_json()
    assert [e["index"] for e in page["entries"]] == [base + 4] and page["next"] == base + 4
    rest = client.get(f"/api/v1/entries?subject=sha256:{SUBJECT}&limit=1&after={base + 4}").get_json()
    assert [e["index"] for e in rest["entries"]] == [base + 7]
    assert client.get("/api/v1/entries?subject=sha256:" + "00" * 32).get_json()["entries"] == []
    _error(client.get("/api/v1/entries"), 400, "malformed")
    _error(client.get("/api/v1/entries?subject=nocolon"), 400, "malformed")
    _error(client.get(f"/api/v1/entries?subject=sha256:{SUBJECT}&limit=0"), 400, "malformed")


def test_get_receipt(client, filled):
    base = filled.base
    receipt = client.get(f"/api/v1/receipt/{base + 2}").get_json()
    assert receipt["index"] == base + 2 and receipt["tree_size"] == base + 9
    verify_receipt(receipt, filled.log.vkey)
    _error(client.get(f"/api/v1/receipt/{base + 9}"), 404, "not_found")


def test_get_checkpoint(client, filled):
    response = client.get("/api/v1/checkpoint")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    with filled.sessions() as session:
        assert response.get_data(as_text=True) == dbstore.latest_checkpoint(session).note
    assert response.get_data(as_text=True).splitlines()[:2] == [filled.log.origin, str(filled.base + 9)]


def test_get_checkpoints_pages_through_all(client, filled):
    sizes, after = [], None
    while True:
        url = "/api/v1/checkpoints?limit=2" + (f"&after={after}" if after is not None else "")
        body = client.get(url).get_json()
        assert set(body) == {"checkpoints", "next"}
        sizes += [c["tree_size"] for c in body["checkpoints"]]
        assert all(set(c) == {"tree_size", "note"} for c in body["checkpoints"])
        after = body["next"]
        if after is None:
            break
    # the empty tree's, the key event's, then one per batch
    expected = [0, filled.base] + [filled.base + n for n in (3, 7, 9)]
    assert sizes == expected
    assert [c["tree_size"] for c in client.get("/api/v1/checkpoints").get_json()["checkpoints"]] == expected


def test_proofs(client, filled):
    leaves = filled.leaf_hashes()
    n = len(leaves)
    assert n == filled.base + 9
    for size in range(1, n + 1):
        for index in range(size):
            body = client.get(f"/api/v1/proof/inclusion?index={index}&tree_size={size}").get_json()
            assert body["index"] == index and body["tree_size"] == size
            assert [base64.b64decode(h) for h in body["hashes"]] == merkle.inclusion_proof(index, leaves[:size])
    for new in range(0, n + 1):
        for old in range(0, new + 1):
            body = client.get(f"/api/v1/proof/consistency?old={old}&new={new}").get_json()
            assert body["old_size"] == old and body["new_size"] == new
            assert [base64.b64decode(h) for h in body["hashes"]] == merkle.consistency_proof(old, leaves[:new])


@pytest.mark.parametrize(
    "query",
    [
        "inclusion", "inclusion?index=0", "inclusion?tree_size=3", "inclusion?index=-1&tree_size=3",
        "inclusion?index=a&tree_size=3", "inclusion?index=3&tree_size=3", "inclusion?index=0&tree_size=0",
        "consistency", "consistency?old=1", "consistency?old=5&new=3", "consistency?old=x&new=3",
    ],
)
def test_proof_bad_parameters_are_400(client, filled, query):
    _error(client.get(f"/api/v1/proof/{query}"), 400, "malformed")


@pytest.mark.parametrize("query", ["inclusion?index=0&tree_size={beyond}", "consistency?old=1&new={beyond}"])
def test_proof_beyond_the_tree_is_404(client, filled, query):
    beyond = filled.size() + 1
    assert beyond == filled.base + 10
    _error(client.get(f"/api/v1/proof/{query.format(beyond=beyond)}"), 404, "not_found")


def test_unknown_route_and_method_use_the_error_shape(client):
    _error(client.get("/api/v1/nothing-here"), 404, "not_found")
    _error(client.get("/api/v1/entries/batch"), 405, "method_not_allowed")


# ------------------------------------------------------------------------------ health, metrics, integrity


def test_healthz_and_metrics(client, auth, key, app):
    base = _key_events(app.store)  # the signer's key event, appended before the app counted anything
    assert base == 1
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["status"] == "ok" and health.get_json()["tree_size"] == base
    env = sign(key)
    client.post("/api/v1/entries", json=env, headers=auth)
    client.post("/api/v1/entries", json=env, headers=auth)
    client.post("/api/v1/entries", json=sign(generate_private_key()), headers=auth)
    client.post("/api/v1/entries/batch", json={"envelopes": [{"x": 1}]}, headers=auth)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    text = metrics.get_data(as_text=True)
    assert f"provledger_tree_size {base + 1}\n" in text
    assert "provledger_compromised 0\n" in text
    assert 'provledger_entries_total{outcome="created"} 1\n' in text
    assert 'provledger_entries_total{outcome="duplicate"} 1\n' in text
    assert 'provledger_entries_total{outcome="refused"} 1\n' in text
    assert client.get("/healthz").get_json()["tree_size"] == base + 1


def test_metrics_count_every_item_of_a_batch(client, auth, key, app):
    """A batch's outcomes are counted once per batch, item by item: new, duplicate (of an earlier
    entry and within the batch), refused (unknown key, not an object)."""
    first = sign(key)
    client.post("/api/v1/entries", json=first, headers=auth)  # created 1
    fresh, stranger = sign(key), sign(generate_private_key())
    response = client.post(
        "/api/v1/entries/batch", json={"envelopes": [first, fresh, fresh, stranger, [1], sign(key)]}, headers=auth
    )
    assert response.status_code == 200
    assert ["index" in r for r in response.get_json()["results"]] == [True, True, True, False, False, True]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'provledger_entries_total{outcome="created"} 3\n' in text, text
    assert 'provledger_entries_total{outcome="duplicate"} 2\n' in text, text
    assert 'provledger_entries_total{outcome="refused"} 2\n' in text, text


def test_integrity_flag_stops_writes_and_shows_on_healthz(client, auth, key, app):
    client.post("/api/v1/entries", json=sign(key), headers=auth)
    app.extensions["provledger"].integrity.flag({"first_bad_index": 0, "message": "entry 0 was altered"})
    response = client.post("/api/v1/entries", json=sign(key), headers=auth)
    assert "first bad index 0" in _error(response, 503, "unavailable")
    _error(client.post("/api/v1/entries/batch", json={"envelopes": [sign(key)]}, headers=auth), 503, "unavailable")
    assert app.store.size() == _key_events(app.store) + 1  # the key event and the one record
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["status"] == "compromised" and health.get_json()["first_bad_index"] == 0
    assert "provledger_compromised 1\n" in client.get("/metrics").get_data(as_text=True)
    # reads still work, so auditors can look at the evidence
    assert client.get("/api/v1/entries/0").status_code == 200


def test_openapi_lists_every_api_route(client, app):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = set(doc["paths"])
    served = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.rule != "/api/v1/openapi.json"
    }
    assert served <= documented, served - documented


def test_batch_preparation_paces_itself_by_the_sequencer(client, auth, key, app):
    """The route hands ``Sequencer.pace`` to the batch's preparation: called before each record
    is parsed and before it is checked (``tests/services/test_sequencer_pace.py``)."""
    calls: list[int] = []
    app.extensions["provledger"].sequencer.pace = lambda: calls.append(1)
    response = client.post("/api/v1/entries/batch", json={"envelopes": [sign(key) for _ in range(3)]}, headers=auth)
    assert response.status_code == 200
    assert all("index" in r for r in response.get_json()["results"])
    assert len(calls) == 6

"""Verdict bundles end to end, on SQLite and PostgreSQL, through the server and offline.

Every scenario gets its bundle two ways — built from the store (what ``verify`` and
``--bundle-out`` use) and fetched from ``GET /api/v1/artifacts/<digest>/bundle`` on the Flask
app — and verifies it with the pure offline verifier, which recomputes the verdict from the
bundle's bytes and the log key alone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import MalformedError, SignatureError, TooLargeError, VerificationError
from ledger.records.keys import generate_private_key
from ledger.tlog.checkpoint import cosign_checkpoint
from ledger.tlog.note import Ed25519CosignatureSigner, generate_signer, parse_vkey, sign_note
from ledger.trust.bundle import (
    MAX_VERDICT_BUNDLE_BYTES,
    Expectations,
    TrustHead,
    format_trust_head_text,
    open_trust_head,
    parse_trust_head_text,
    parse_verdict_bundle,
    sign_trust_head,
)
from ledger.trust.bundle_verify import verify_verdict_bundle
from ledger.trust.policy import Grant
from ledger.trust.predicates import SLSA_V1
from tests.provenance import helpers
from tests.verdict_bundle.helpers import bundle_doc, key_event_positions, raw, supply_chain, without

NOW = 1_760_000_000


@pytest.fixture(params=["offline", "server"])
def fetch(request: pytest.FixtureRequest, store: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """A bundle of an artifact: built from the store, or fetched over the API."""
    if request.param == "offline":
        yield lambda artifact, at=None: bundle_doc(store, artifact, at=at)
        return
    from web.app import create_app  # noqa: PLC0415

    app = create_app({"SETTINGS": store.settings, "TESTING": True})
    client = app.test_client()

    def get(artifact: str, at: int | None = None) -> dict[str, Any]:
        response = client.get(f"/api/v1/artifacts/{artifact}/bundle" + (f"?at={at}" if at is not None else ""))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "application/vnd.provledger.verdict-bundle.v1+json"
        return json.loads(response.get_data())

    try:
        yield get
    finally:
        ext = app.extensions["provledger"]
        ext.sequencer.stop()
        ext.engine.dispose()


def check(store: Any, doc: dict[str, Any], artifact: str, **kwargs: Any):  # type: ignore[no-untyped-def]
    kwargs.setdefault("now", NOW)
    return verify_verdict_bundle(raw(doc), artifact, store.log.vkey, **kwargs)


# ------------------------------------------------------------------------------ verdicts


def test_trusted_chain_verifies_and_names_root_and_weakest_link(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    assert doc["media_type"] == "application/vnd.provledger.verdict-bundle.v1+json" and "verdict" not in doc
    result = check(store, doc, chain.artifact)
    assert result.ok and result.verdict == "trusted"
    assert result.chain["root"]["index"] == chain.indexes["hw"] and result.chain["root"]["kind"] == "hardware-part"
    assert {link["index"] for link in result.chain["links"]} >= set(chain.indexes.values())
    assert len(result.key_events) == 3 and result.head.count == 3
    assert result.signatures >= 6 and result.entries == 6
    from ledger.services import chain as chain_service  # noqa: PLC0415

    with store.sessions() as session:
        assert chain_service.chain(session, chain.artifact, now=NOW) == result.chain


def test_revoked_key_is_untrusted(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    chain.trust.revoke(chain.keys["fw"], compromised_since=store.clock - 100)
    result = check(store, fetch(chain.artifact), chain.artifact)
    assert result.verdict == "untrusted" and not result.ok
    reasons = " ".join(r for link in result.chain["links"] for r in link["reasons"])
    assert "revoked" in reasons
    # the offline verdict is the server's, link for link (one fold, two callers)
    from ledger.services import chain as chain_service  # noqa: PLC0415

    with store.sessions() as session:
        server = chain_service.chain(session, chain.artifact, now=NOW)
    assert server == result.chain


def test_a_ledger_written_in_the_older_forms_still_verifies(store, fetch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Ledgers from before key events named their key once: key events with ``predicate.key_id``,
    a ``key:<id>`` subject and a keyid hint, and leaves whose signers carry their key ids. The
    server's chain, the audit and the offline bundle verdict are the same as for the current forms."""
    from ledger.records.dsse import sign_envelope  # noqa: PLC0415
    from ledger.records.leaf import canonical_strings  # noqa: PLC0415
    from ledger.services import append, audit, registry  # noqa: PLC0415
    from ledger.services import chain as chain_service  # noqa: PLC0415

    def legacy_statement(event):  # type: ignore[no-untyped-def]
        doc = json.loads(original_statement(event))
        if event.key_id is not None and doc["subject"][0]["name"] in ("key", "identity", "tee-root"):
            doc["predicate"]["key_id"] = event.key_id
            doc["subject"][0]["name"] += f":{event.key_id}"
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def legacy_signers(keys):  # type: ignore[no-untyped-def]
        return canonical_strings([{"key_id": k.key_id, "public_key": base64.b64encode(k.spki_der).decode()} for k in keys])

    original_statement = registry.key_event_statement
    monkeypatch.setattr(registry, "key_event_statement", legacy_statement)
    monkeypatch.setattr(registry, "key_event_envelope", lambda admin, event: sign_envelope(legacy_statement(event), "application/vnd.in-toto+json", [admin]))
    monkeypatch.setattr(append, "signers_json", legacy_signers)
    chain = supply_chain(store)
    chain.trust.revoke(chain.keys["fw"], compromised_since=store.clock - 100)
    with store.sessions() as session:
        data = [bytes(d) for (d,) in session.execute(text("SELECT data FROM entries ORDER BY idx"))]
        server = chain_service.chain(session, chain.artifact, now=NOW)
        assert audit.audit(session, store.log).ok
    assert all(b'"key_id":' in d for d in data) and b'"keyid":' in data[0]  # really the older forms
    assert b"key:" in base64.b64decode(json.loads(data[0])["envelope"]["payload"])
    result = check(store, fetch(chain.artifact), chain.artifact)
    assert result.verdict == "untrusted" and result.chain == server and len(result.key_events) == 4
    monkeypatch.undo()  # the current forms land beside the older ones
    chain.trust.reaffirm(chain.keys["ci"], NOW + 10**8)
    result = check(store, fetch(chain.artifact), chain.artifact)
    assert result.verdict == "untrusted" and len(result.key_events) == 5


def test_stale_grant_is_stale(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store, review_by=NOW - 10)
    result = check(store, fetch(chain.artifact), chain.artifact, now=NOW)
    assert result.verdict == "stale" and not result.ok
    fresh = check(store, fetch(chain.artifact), chain.artifact, now=NOW - 20)
    assert fresh.verdict == "trusted"  # the same bytes, judged before review-by
    from ledger.services import chain as chain_service  # noqa: PLC0415

    with store.sessions() as session:
        assert chain_service.chain(session, chain.artifact, now=NOW) == result.chain


def test_missing_input_is_missing(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store, inputs_missing=True)
    result = check(store, fetch(chain.artifact), chain.artifact)
    assert result.verdict == "missing" and not result.ok
    assert any(link["kind"] == "missing" and link["subject"] == f"sha256:{chain.hw}" for link in result.chain["links"])


def test_dependency_cycle_is_not_trusted(store, fetch) -> None:  # type: ignore[no-untyped-def]
    trust = helpers.Trust(store)
    ci = trust.add("ci", Grant((SLSA_V1,)))
    x, y = helpers.digest("x"), helpers.digest("y")
    trust.ok(helpers.statement("x", x, SLSA_V1, _build_predicate([y])), ci)
    trust.ok(helpers.statement("y", y, SLSA_V1, _build_predicate([x])), ci)
    result = check(store, fetch(f"sha256:{x}"), f"sha256:{x}")
    assert result.verdict != "trusted" and not result.ok
    assert any("cycle" in r for link in result.chain["links"] for r in link["reasons"])


def _build_predicate(inputs: list[str]) -> dict[str, Any]:
    return {"buildDefinition": {"buildType": "https://ci.example/t", "externalParameters": {},
                                "resolvedDependencies": [{"uri": f"d{i}", "digest": {"sha256": d}} for i, d in enumerate(inputs)]},
            "runDetails": {"builder": {"id": "https://ci.example"}}}


def test_at_an_earlier_index_judges_before_the_revocation(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    before = chain.indexes["app"]
    chain.trust.revoke(chain.keys["fw"], compromised_since=store.clock - 100)
    doc = fetch(chain.artifact, at=before)
    assert doc["at"] == before
    past = check(store, doc, chain.artifact, at=before)
    assert past.verdict == "trusted" and past.at == before
    # the bundle still holds the whole key history (the revocation too): the fold stops at `at`
    assert past.head.count == 4 and len(past.key_events) == 4
    with pytest.raises(VerificationError, match="as of entry"):
        check(store, doc, chain.artifact, at=before - 1)
    # a bundle "as of" an earlier entry never passes for the current verdict (a replay of the past)
    with pytest.raises(VerificationError, match="not as of the checkpoint"):
        check(store, doc, chain.artifact)
    relabelled = dict(doc, at=None)  # nor does it become current by editing "at": its fold would differ
    assert check(store, relabelled, chain.artifact).verdict == "untrusted"


def test_a_verdict_written_in_the_bundle_is_never_believed(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    chain.trust.revoke(chain.keys["ci"], compromised_since=store.clock - 100)
    doc = fetch(chain.artifact)
    doc.update(verdict="trusted", ok=True, chain={"verdict": "trusted"})
    assert check(store, doc, chain.artifact).verdict == "untrusted"


# ------------------------------------------------------------------------------ tampering


def test_tampered_entry_fails_its_inclusion_proof(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    for position in range(len(doc["entries"])):
        bad = json.loads(json.dumps(doc))
        data = bytearray(base64.b64decode(bad["entries"][position]["entry"]))
        data[len(data) // 2] ^= 0x01
        bad["entries"][position]["entry"] = base64.b64encode(bytes(data)).decode()
        with pytest.raises(VerificationError, match="not in the checkpoint's tree"):
            check(store, bad, chain.artifact)
    bad = json.loads(json.dumps(doc))
    bad["entries"][0]["inclusion"][0] = base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(VerificationError):
        check(store, bad, chain.artifact)


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_a_dropped_key_event_is_caught(store, fetch, which: str) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    chain.trust.revoke(chain.keys["ci"], compromised_since=store.clock - 100)  # the last key event: a revocation
    doc = fetch(chain.artifact)
    positions = key_event_positions(doc)
    assert len(positions) == 4
    position = {"first": positions[0], "middle": positions[1], "last": positions[-1]}[which]
    with pytest.raises(VerificationError, match="key history is incomplete|a key event is missing"):
        check(store, without(doc, position), chain.artifact)


def test_dropping_a_record_never_makes_a_chain_trusted(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    records = [p for p in range(len(doc["entries"])) if p not in key_event_positions(doc)]
    for position in records:
        result = check(store, without(doc, position), chain.artifact)
        assert result.verdict != "trusted"


def test_a_forged_or_mismatched_trust_head_is_refused(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    chain.trust.revoke(chain.keys["ci"], compromised_since=store.clock - 100)
    doc = fetch(chain.artifact)
    head = open_trust_head(doc["trust_head"], parse_vkey(store.log.vkey))
    last = key_event_positions(doc)[-1]
    # a head that leaves the revocation out, signed by some other key under the log's name
    forged_head = TrustHead(head.origin, head.size, head.root, head.admin_key_id, head.count - 1,
                            doc["entries"][key_event_positions(doc)[-2]]["index"], _leaf_hash(doc, key_event_positions(doc)[-2]))
    impostor = generate_signer(head.origin)
    forged = without(doc, last)
    forged["trust_head"] = sign_trust_head(forged_head, impostor).decode()
    with pytest.raises(SignatureError):
        check(store, forged, chain.artifact)
    # the log's real head text, edited: the signature no longer holds
    edited = without(doc, last)
    edited["trust_head"] = doc["trust_head"].replace(f"\n{head.count}\n", f"\n{head.count - 1}\n", 1)
    with pytest.raises(SignatureError):
        check(store, edited, chain.artifact)
    # another root of trust than the one the head names
    other = json.loads(json.dumps(doc))
    admin = generate_private_key()
    other["root_of_trust"] = {"key_id": admin.key_id, "public_key": base64.b64encode(admin.public_key.spki_der).decode()}
    with pytest.raises(VerificationError, match="root of trust"):
        check(store, other, chain.artifact)


def _leaf_hash(doc: dict[str, Any], position: int) -> bytes:
    from ledger.tlog.hashing import leaf_hash  # noqa: PLC0415

    return leaf_hash(base64.b64decode(doc["entries"][position]["entry"]))


def test_wrong_log_key_fails(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    other = generate_signer(store.log.origin)
    with pytest.raises(SignatureError):
        verify_verdict_bundle(raw(doc), chain.artifact, other.vkey, now=NOW)
    elsewhere = generate_signer("other.example/log")
    with pytest.raises(VerificationError):
        verify_verdict_bundle(raw(doc), chain.artifact, elsewhere.vkey, now=NOW)


def test_a_bundle_for_another_artifact_fails(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    with pytest.raises(VerificationError, match="is about"):
        check(store, doc, f"sha256:{chain.fw}")
    relabelled = dict(doc, subject=f"sha256:{chain.fw}")  # the firmware's bundle would hold other records
    result = check(store, relabelled, f"sha256:{chain.fw}")
    assert result.chain["artifact"] == f"sha256:{chain.fw}"  # judged as what it is, from the bytes


def test_witness_threshold(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    witnesses = [Ed25519CosignatureSigner(f"w{i}.example", bytes([70 + i]) * 32) for i in range(2)]
    verifiers = [parse_vkey(w.vkey) for w in witnesses]
    with pytest.raises(VerificationError, match="0 of the required 1"):
        check(store, doc, chain.artifact, witness_verifiers=verifiers, threshold=1)
    doc["checkpoint"] = cosign_checkpoint(doc["checkpoint"], witnesses[0], timestamp=NOW).decode()
    result = check(store, doc, chain.artifact, witness_verifiers=verifiers, threshold=1)
    assert result.ok and result.witnesses == ("w0.example",)
    with pytest.raises(VerificationError, match="1 of the required 2"):
        check(store, doc, chain.artifact, witness_verifiers=verifiers, threshold=2)
    # freshness: only cosignatures carry a time
    assert check(store, doc, chain.artifact, witness_verifiers=verifiers, threshold=1, max_age=60, now=NOW + 30).ok
    with pytest.raises(VerificationError, match="may be stale"):
        check(store, doc, chain.artifact, witness_verifiers=verifiers, threshold=1, max_age=60, now=NOW + 3600)
    with pytest.raises(MalformedError, match="needs a witness policy"):
        check(store, doc, chain.artifact, max_age=60)


def test_expectations(store, fetch) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    doc = fetch(chain.artifact)
    met = check(store, doc, chain.artifact, expectations=Expectations(SLSA_V1, "ci"))
    assert met.ok and all(e.ok for e in met.expectations)
    assert check(store, doc, chain.artifact, expectations=Expectations("https://slsa.dev/provenance/*")).ok
    for expectations in (Expectations(predicate_type="https://example/other"), Expectations(signer="acme-hw"),
                         Expectations(deployment=True)):
        result = check(store, doc, chain.artifact, expectations=expectations)
        assert result.verdict == "trusted" and not result.ok
        assert [e.ok for e in result.expectations] == [False]


# ------------------------------------------------------------------------------ malformed


def test_malformed_bundles_are_malformed(store) -> None:  # type: ignore[no-untyped-def]
    chain = supply_chain(store)
    good = raw(bundle_doc(store, chain.artifact))
    cases: list[bytes] = [
        b"", b"not json", b"[]", good[: len(good) // 2],
        raw({**json.loads(good), "media_type": "application/json"}),
        raw({**json.loads(good), "subject": "sha1:abc"}),
        raw({**json.loads(good), "subject": json.loads(good)["subject"].upper()}),
        raw({**json.loads(good), "entries": "x"}),
        raw({**json.loads(good), "entries": [{"index": -1, "entry": "", "inclusion": []}]}),
        raw({**json.loads(good), "entries": [{"index": 1, "entry": "!!", "inclusion": []}]}),
        raw({**json.loads(good), "entries": [{"index": 1, "entry": "", "inclusion": ["AAAA"]}]}),
        raw({**json.loads(good), "entries": list(reversed(json.loads(good)["entries"]))}),
        raw({**json.loads(good), "checkpoint": 5}),
        raw({**json.loads(good), "root_of_trust": None}),
        # the key id the bundle states must be its public key's, not any value
        raw({**json.loads(good), "root_of_trust": {**json.loads(good)["root_of_trust"], "key_id": "00" * 32}}),
        raw({**json.loads(good), "root_of_trust": {"public_key": json.loads(good)["root_of_trust"]["public_key"]}}),
    ]
    for case in cases:
        with pytest.raises(MalformedError):
            verify_verdict_bundle(case, chain.artifact, store.log.vkey, now=NOW)
    with pytest.raises(TooLargeError):
        parse_verdict_bundle(b" " * (MAX_VERDICT_BUNDLE_BYTES + 1))
    # a checkpoint or trust head that is not a note, and a leaf that is not a leaf
    for field_, value in (("checkpoint", "hello\n"), ("trust_head", "hello\n")):
        with pytest.raises(MalformedError):
            verify_verdict_bundle(raw({**json.loads(good), field_: value}), chain.artifact, store.log.vkey, now=NOW)


def test_trust_head_text_round_trips_and_is_strict() -> None:
    head = TrustHead("log.example", 10, b"\x01" * 32, "ab" * 32, 2, 7, b"\x02" * 32)
    assert parse_trust_head_text(format_trust_head_text(head)) == head
    empty = TrustHead("log.example", 10, b"\x01" * 32, "ab" * 32, 0, None, None)
    assert parse_trust_head_text(format_trust_head_text(empty)) == empty
    text = format_trust_head_text(head)
    for bad in (text.replace("\n10\n", "\n010\n"), text.replace("\n2\n", "\n11\n"), text + "x\n",
                text.replace("\n7\n", "\n-\n"), text.replace(TRUST_HEAD, "c2sp.org/x")):
        with pytest.raises(MalformedError):
            parse_trust_head_text(bad)
    # a checkpoint parser never takes a trust head for a checkpoint
    from ledger.tlog.checkpoint import parse_checkpoint_text  # noqa: PLC0415

    with pytest.raises(MalformedError):
        parse_checkpoint_text(text)
    signer = generate_signer("log.example")
    note = sign_note(text, [signer])
    assert open_trust_head(note, signer.verifier()) == head


TRUST_HEAD = "provenance-ledger/trust-head/v1"


def test_key_history_check_follows_predecessors() -> None:
    """Pure: with ``prev`` links, a gap is caught even where a (wrong) head's count and last
    event match; a legacy (prev-less) event after linked ones is refused."""
    from ledger.trust.bundle_verify import _check_key_history  # noqa: PLC0415

    h = [bytes([i]) * 32 for i in range(4)]
    zero = (-1, b"\0" * 32)
    linked = [(3, h[0], zero), (5, h[1], (3, h[0])), (9, h[2], (5, h[1]))]

    def head(events):  # type: ignore[no-untyped-def]
        return TrustHead("log", 20, b"\1" * 32, "ab" * 32, len(events), events[-1][0], events[-1][1])

    _check_key_history(head(linked), linked)
    gap = [linked[0], linked[2]]
    with pytest.raises(VerificationError, match="a key event is missing"):
        _check_key_history(head(gap), gap)
    with pytest.raises(VerificationError, match="incomplete"):
        _check_key_history(head(linked), linked[:2])
    with pytest.raises(VerificationError, match="names no predecessor"):
        _check_key_history(head(linked + [(11, h[3], None)]), linked + [(11, h[3], None)])

"""Appending, receipts, duplicates, bad inputs and proofs from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest

from ledger import merkle
from ledger.tlog.checkpoint import open_checkpoint
from ledger.db import store as dbstore
from ledger.records.dsse import sign_envelope
from ledger.errors import (
    LedgerError,
    MalformedError,
    NotFoundError,
    NotTrustedError,
    SignatureError,
    TooLargeError,
)
from ledger.tlog.hashing import leaf_hash
from ledger.records.keys import generate_private_key
from ledger.records.leaf import decode_leaf
from ledger.services import receipts
from ledger.services.append import Appended
from ledger.services.audit import audit
from ledger.services.registry import revoke_key
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE
from ledger.verify import verify_receipt
from tests.fixtures import PREDICATE, envelope_bytes, make_statement, sign


def test_append_receipts_verify_offline(store):
    key = store.add_signer()
    base = store.size()  # the signer's key event is an entry too
    assert base == 1
    statements = [make_statement(f"build-{i}.tar") for i in range(5)]
    results = store.append_ok([sign(key, s) for s in statements])
    assert [r.receipt["index"] for r in results] == [base + i for i in range(5)]
    assert all(r.created for r in results)
    for r, statement in zip(results, statements, strict=True):
        verified = verify_receipt(json.dumps(r.receipt), store.log.vkey, public_keys=[key.public_key])
        assert verified.index == r.receipt["index"]
        assert verified.checkpoint.size == base + 5
        assert verified.signer_key_ids == (key.key_id,)
        # the statement bytes are in the leaf unchanged
        assert verified.leaf.envelope.payload == statement
    assert store.size() == base + 5
    # a later batch: its receipts are against its own checkpoint and still verify
    later = store.fill([3])
    assert [r.receipt["tree_size"] for r in later] == [base + 8] * 3
    for r in later:
        verify_receipt(r.receipt, store.log.vkey)


def test_receipt_of_old_entry_against_latest_checkpoint(store):
    store.add_signer()
    base = store.size()
    store.fill([4, 6])
    with store.sessions() as session:
        receipt = receipts.receipt(session, base + 2)
    assert receipt["index"] == base + 2
    assert receipt["tree_size"] == base + 10
    verify_receipt(receipt, store.log.vkey)
    with store.sessions() as session, pytest.raises(NotFoundError):
        receipts.receipt(session, base + 10)


def test_ecdsa_signer_is_accepted(store):
    key = store.add_signer(algorithm="ecdsa-p256")
    (r,) = store.append_ok([sign(key)])
    verify_receipt(r.receipt, store.log.vkey, public_keys=[key.public_key])


def test_ecdsa_p384_signer_is_accepted_and_audits(store):
    """A P-384 key (SHA-384 signatures, as Sigstore's PKIX_ECDSA_P384_SHA_384) is registered,
    signs, is trusted and re-verified by the audit at both levels."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    from ledger.records.keys import PrivateKey  # noqa: PLC0415
    from ledger.services import shards  # noqa: PLC0415

    key = store.add_signer(key=PrivateKey(ec.generate_private_key(ec.SECP384R1())))
    assert key.public_key.algorithm == "ecdsa-p384"
    (r,) = store.append_ok([sign(key)])
    verify_receipt(r.receipt, store.log.vkey, public_keys=[key.public_key])
    with store.sessions() as session:
        report = audit(session, store.log)
        size = report.tree_size
        results = [shards.verify_shard(session, s, vkey=store.log.vkey, origin=store.log.origin) for s in shards.plan_shards(size, 1)]
        combined = shards.combine_shards(session, size, results, vkey=store.log.vkey, origin=store.log.origin)
    assert report.ok and combined.ok, (report.to_json(), combined.to_json())
    # a SHA-256 signature by the same P-384 key is not what the key signs: refused, nothing appended
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    from ledger.records.dsse import pae  # noqa: PLC0415

    env = sign_envelope(make_statement("sha256-instead"), IN_TOTO_PAYLOAD_TYPE, [key])
    payload = base64.b64decode(env["payload"])
    wrong = key._key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))  # noqa: SLF001
    env["signatures"][0]["sig"] = base64.b64encode(wrong).decode()
    before = store.state()
    (refused,) = store.append([json.dumps(env).encode()])
    assert isinstance(refused, SignatureError), refused
    assert store.state() == before


def test_duplicate_returns_same_index_against_latest_checkpoint(store):
    key = store.add_signer()
    base = store.size()
    env = sign(key)
    (first,) = store.append_ok([env])
    store.fill([3])
    before = store.state()
    (again,) = store.append_ok([envelope_bytes(env)])
    assert not again.created
    assert again.receipt["index"] == first.receipt["index"] == base
    assert first.receipt["tree_size"] == base + 1
    assert again.receipt["tree_size"] == base + 4  # the latest checkpoint, not the first one
    assert again.receipt["entry"] == first.receipt["entry"]
    verify_receipt(again.receipt, store.log.vkey)
    assert store.state() == before  # no new entry, no new checkpoint


def test_duplicate_within_one_batch(store):
    key = store.add_signer()
    base = store.size()
    env = sign(key)
    a, b = store.append_ok([env, env])
    assert a.created and not b.created
    assert a.receipt["index"] == b.receipt["index"] == base
    assert store.size() == base + 1


def _unchanged(store, before, results, error):
    assert len(results) == 1 and isinstance(results[0], error), results
    assert store.state() == before


@pytest.fixture
def populated(store):
    store.add_signer(allow=[PREDICATE])
    store.fill([3])
    return store


def test_unknown_key_is_not_trusted(populated):
    before = populated.state()
    stranger = generate_private_key()
    (r,) = populated.append([sign(stranger)])
    _unchanged(populated, before, [r], NotTrustedError)
    assert "not signed by any registered key" in str(r)


def test_bad_signature(populated):
    before = populated.state()
    env = sign(populated.keys[0])
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[0] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    (r,) = populated.append([env])
    _unchanged(populated, before, [r], SignatureError)
    assert not isinstance(r, NotTrustedError)


def test_payload_changed_after_signing(populated):
    before = populated.state()
    env = sign(populated.keys[0])
    env["payload"] = base64.b64encode(make_statement("other")).decode()
    (r,) = populated.append([env])
    _unchanged(populated, before, [r], SignatureError)


def test_wrong_payload_type(populated):
    before = populated.state()
    env = sign_envelope(make_statement(), "application/json", [populated.keys[0]])
    (r,) = populated.append([env])
    _unchanged(populated, before, [r], MalformedError)
    assert "payloadType" in str(r)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"payload": "!!!not base64!!!", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AAAA"}]}',
        b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "***"}]}',
        b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
        b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AAAA"}], "extra": 1}',
        b"\xff\xfe\x00",
    ],
    ids=["json", "empty", "array", "payload-b64", "sig-b64", "no-sigs", "unknown-field", "not-utf8"],
)
def test_malformed_envelopes(populated, raw):
    before = populated.state()
    (r,) = populated.append([raw])
    _unchanged(populated, before, [r], MalformedError)
    assert not isinstance(r, TooLargeError)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b'{"_type": "https://example.com/NotAStatement", "subject": [], "predicateType": "x"}',
        json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": PREDICATE}).encode(),
        json.dumps(
            {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "a", "digest": {"sha256": "abc"}}],
             "predicateType": PREDICATE}
        ).encode(),
    ],
    ids=["not-json", "wrong-type", "no-subjects", "short-digest"],
)
def test_non_statement_payloads(populated, payload):
    before = populated.state()
    env = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [populated.keys[0]])
    (r,) = populated.append([env])
    _unchanged(populated, before, [r], MalformedError)
    assert "statement" in str(r)


def test_oversized_envelope_names_the_limit(populated):
    before = populated.state()
    env = sign(populated.keys[0])
    raw = envelope_bytes(env)
    (r,) = populated.append([raw], limit=len(raw) - 1)
    _unchanged(populated, before, [r], TooLargeError)
    assert str(len(raw) - 1) in str(r)
    # the same envelope as a decoded object (a batch item) is measured too
    (r,) = populated.append([env], limit=len(raw) // 2)
    _unchanged(populated, before, [r], TooLargeError)


def test_predicate_type_outside_allow_list(populated):
    before = populated.state()
    env = sign(populated.keys[0], make_statement(predicate_type="https://example.com/other/v1"))
    (r,) = populated.append([env])
    _unchanged(populated, before, [r], NotTrustedError)
    assert "https://example.com/other/v1" in str(r)


def test_allow_list_globs(store):
    key = store.add_signer(allow=["https://slsa.dev/provenance/*"])
    ok, refused = store.append([
        sign(key, make_statement(predicate_type="https://slsa.dev/provenance/v1")),
        sign(key, make_statement(predicate_type="https://slsa.dev/verification_summary/v1")),
    ])
    assert isinstance(ok, Appended)
    assert isinstance(refused, NotTrustedError)


def test_revoked_key(populated):
    key = populated.keys[0]
    # the revocation is a key event (an entry signed by the admin key), compromised since its time
    revocation = revoke_key(populated.sessions, populated.log, populated.admin, key.key_id, now=populated.clock + 1)
    assert revocation.created
    before = populated.state()
    (r,) = populated.append([sign(key)], now=populated.clock + 5)
    _unchanged(populated, before, [r], NotTrustedError)
    assert "revoked" in str(r)
    # issue 12: a record appended after the revocation is after it, whatever the appender's clock
    # says (a slow clock before the revocation time no longer gets a revoked key's record in)
    before = populated.state()
    (r,) = populated.append([sign(key)], now=populated.clock)
    _unchanged(populated, before, [r], NotTrustedError)


def test_mixed_batch_keeps_order_and_stores_only_the_good(populated):
    key = populated.keys[0]
    base = populated.size()  # the key event and 3 records
    assert base == 4
    good1, good2 = sign(key), sign(key)
    results = populated.append([good1, b"{bad", sign(generate_private_key()), good2])
    assert isinstance(results[0], Appended) and results[0].receipt["index"] == base
    assert isinstance(results[1], MalformedError)
    assert isinstance(results[2], NotTrustedError)
    assert isinstance(results[3], Appended) and results[3].receipt["index"] == base + 1
    assert populated.size() == base + 2


def test_all_bad_batch_issues_no_checkpoint(populated):
    before = populated.state()
    results = populated.append([b"{", b"[]"])
    assert all(isinstance(r, LedgerError) for r in results)
    assert populated.state() == before


def test_proofs_from_store_equal_list_api(store):
    store.fill([1, 2, 5, 8, 3, 13, 7, 1])  # 40 records in 8 batches, after the signer's key event
    leaves = store.leaf_hashes()
    n = len(leaves)
    assert n == 1 + 40
    with store.sessions() as session:
        for size in range(1, n + 1):
            for index in range(size):
                assert receipts.inclusion_proof(session, index, size) == merkle.inclusion_proof(index, leaves[:size]), (
                    index, size)
        for new in range(0, n + 1):
            for old in range(0, new + 1):
                assert receipts.consistency_proof(session, old, new) == merkle.consistency_proof(old, leaves[:new]), (
                    old, new)


def test_proofs_from_store_verify_against_checkpoints(store):
    store.fill([3, 5, 9])
    with store.sessions() as session:
        cps = {c.tree_size: c for c in dbstore.list_checkpoints(session)}
        leaves = store.leaf_hashes()
        for size, cp in cps.items():
            if size == 0:
                continue
            for index in range(size):
                merkle.verify_inclusion(index, size, leaves[index], receipts.inclusion_proof(session, index, size), cp.root_hash)
        for old in cps:
            for new in cps:
                if old <= new:
                    merkle.verify_consistency(
                        old, new, receipts.consistency_proof(session, old, new), cps[old].root_hash, cps[new].root_hash
                    )


def test_proof_bad_parameters(store):
    store.fill([4])
    size = store.size()  # the key event and 4 records
    assert size == 5
    with store.sessions() as session:
        with pytest.raises(MalformedError):
            receipts.inclusion_proof(session, size, size)
        with pytest.raises(MalformedError):
            receipts.inclusion_proof(session, -1, size)
        with pytest.raises(NotFoundError):
            receipts.inclusion_proof(session, 0, size + 1)
        with pytest.raises(MalformedError):
            receipts.consistency_proof(session, 3, 2)
        with pytest.raises(NotFoundError):
            receipts.consistency_proof(session, 2, size + 1)


def test_every_checkpoint_is_kept(store):
    store.add_signer()  # its key event gets a checkpoint of its own
    base = store.size()
    assert base == 1
    store.fill([2, 3, 1, 4])
    with store.sessions() as session:
        cps = dbstore.list_checkpoints(session)
    assert [c.tree_size for c in cps] == [0, base] + [base + n for n in (2, 5, 6, 10)]
    leaves = store.leaf_hashes()
    for c in cps:
        signed = open_checkpoint(c.note.encode(), store.log.verifier, origin=store.log.origin)
        assert signed.size == c.tree_size
        assert signed.root == c.root_hash == merkle.root(leaves[: c.tree_size])


def test_stored_entries_are_consistent(store):
    store.add_signer()
    base = store.size()  # the key event, signed by the administrator key
    store.fill([3, 4])
    with store.sessions() as session:
        for idx, data, leaf, _chain in dbstore.iter_entries(session):
            assert leaf == leaf_hash(data)
            decoded = decode_leaf(data)
            signer = store.admin if idx < base else store.keys[0]
            assert decoded.signers[0].key_id == signer.key_id
        report = audit(session, store.log)
    assert report.ok, report.problems
    assert report.tree_size == base + 7


def test_a_decoded_batch_item_is_measured_as_it_would_arrive_alone():
    """A batch item (already decoded) is sized as compact JSON with ASCII escapes: non-ASCII text
    counts 6 bytes a character there, though its UTF-8 canonical form (the leaf's) is smaller."""
    from ledger.errors import TooLargeError  # noqa: PLC0415
    from ledger.services.append import prepare_envelopes  # noqa: PLC0415
    from ledger.services.trust import TrustRegistry  # noqa: PLC0415

    envelope = sign_envelope(make_statement("pkg/a"), IN_TOTO_PAYLOAD_TYPE, [generate_private_key("ed25519")])
    envelope["signatures"][0]["keyid"] = "\u00e9" * 400  # 800 bytes of UTF-8, 2,400 as escapes
    size = len(json.dumps(envelope, separators=(",", ":")))
    nobody = TrustRegistry({}, None, {})
    (over,) = prepare_envelopes([envelope], nobody, now=1, limit=size - 1)
    assert isinstance(over, TooLargeError) and f"envelope is {size} bytes" in str(over)
    (within,) = prepare_envelopes([envelope], nobody, now=1, limit=size)
    assert not isinstance(within, TooLargeError)  # past the size check (then refused: no such key)

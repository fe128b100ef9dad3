"""Verdict bundles from a log that misbehaves (pure: a log key and a tree made here).

A server cannot get bytes past the inclusion proofs, but the holder of the log key can put
anything in its own tree: the verifier must still refuse what does not parse or is not signed
as the key history demands."""

from __future__ import annotations

import base64
import json

import pytest

from ledger import merkle
from ledger.errors import MalformedError, SignatureError
from ledger.records.dsse import sign_envelope
from ledger.records.keys import generate_private_key
from ledger.records.leaf import encode_leaf
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE
from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.tlog.hashing import leaf_hash
from ledger.tlog.note import generate_signer
from ledger.trust.bundle import TrustHead, sign_trust_head
from ledger.trust.bundle_verify import verify_verdict_bundle
from ledger.trust.policy import GENESIS_PREV, Grant, KeyEvent
from ledger.services.registry import key_event_statement

ORIGIN = "synthetic.example/log"
T = 1_760_000_000


def _bundle(leaves: list[bytes], subject: str, admin_der: bytes, key_events: list[int]) -> bytes:
    log = generate_signer(ORIGIN)
    hashes = [leaf_hash(d) for d in leaves]
    root = merkle.root(hashes)
    note = sign_checkpoint(Checkpoint(ORIGIN, len(leaves), root), log)
    from ledger.records.keys import public_key_from_der  # noqa: PLC0415

    head = TrustHead(ORIGIN, len(leaves), root, public_key_from_der(admin_der).key_id, len(key_events),
                     key_events[-1] if key_events else None, hashes[key_events[-1]] if key_events else None)
    doc = {
        "media_type": "application/vnd.provledger.verdict-bundle.v1+json", "subject": subject, "at": None,
        "checkpoint": note.decode(), "trust_head": sign_trust_head(head, log).decode(),
        "root_of_trust": {"key_id": head.admin_key_id, "public_key": base64.b64encode(admin_der).decode()},
        "entries": [{"index": i, "entry": base64.b64encode(d).decode(),
                     "inclusion": [base64.b64encode(h).decode() for h in merkle.inclusion_proof(i, hashes)]}
                    for i, d in enumerate(leaves)],
    }
    return json.dumps(doc).encode(), log.vkey  # type: ignore[return-value]


def _key_event_leaf(signer, event: KeyEvent, t: int) -> bytes:  # type: ignore[no-untyped-def]
    envelope = sign_envelope(key_event_statement(event), IN_TOTO_PAYLOAD_TYPE, [signer])
    from ledger.records.dsse import parse_envelope  # noqa: PLC0415

    return encode_leaf(parse_envelope(envelope).document, t, [signer.public_key])


def test_a_key_event_not_signed_by_the_root_is_refused() -> None:
    admin, impostor, ci = generate_private_key(), generate_private_key(), generate_private_key()
    event = KeyEvent(action="register", key_id=ci.key_id, principal="ci", public_key=ci.public_key.spki_der,
                     grants=(Grant(("*",)),), issued_at=T, prev=GENESIS_PREV)
    leaves = [_key_event_leaf(impostor, event, T)]
    data, vkey = _bundle(leaves, "sha256:" + "1" * 64, admin.public_key.spki_der, [0])
    with pytest.raises(SignatureError, match="root of trust"):
        verify_verdict_bundle(data, "sha256:" + "1" * 64, vkey, now=T)


def test_a_leaf_nested_past_the_parser_is_malformed_not_a_crash() -> None:
    admin = generate_private_key()
    leaves = [b"[" * 200_000 + b"]" * 200_000]
    data, vkey = _bundle(leaves, "sha256:" + "2" * 64, admin.public_key.spki_der, [])
    with pytest.raises(MalformedError, match="nested too deeply|not JSON|deeper than"):
        verify_verdict_bundle(data, "sha256:" + "2" * 64, vkey, now=T)


def _record_leaf(signer, statement: dict, t: int) -> bytes:  # type: ignore[no-untyped-def,type-arg]
    from ledger.records.dsse import parse_envelope  # noqa: PLC0415

    envelope = sign_envelope(json.dumps(statement).encode(), IN_TOTO_PAYLOAD_TYPE, [signer])
    return encode_leaf(parse_envelope(envelope).document, t, [signer.public_key])


@pytest.mark.parametrize("broken", [
    lambda p: p.pop("nonce"),
    lambda p: p.pop("artifact"),
    lambda p: p.__setitem__("evidence", []),
])
def test_a_deployment_leaf_outside_its_schema_is_malformed_not_a_crash(broken) -> None:  # type: ignore[no-untyped-def]
    """A hostile log signs whatever it likes: the offline verifier checks a deployment's predicate
    against its schema, as the ledger did on entry, before reading it."""
    admin, ci = generate_private_key(), generate_private_key()
    event = KeyEvent(action="register", key_id=ci.key_id, principal="ci", public_key=ci.public_key.spki_der,
                     grants=(Grant(("*",)),), issued_at=T, prev=GENESIS_PREV)
    artifact = "3" * 64
    predicate = {"artifact": {"sha256": artifact}, "host_id": "h", "environment": "prod", "nonce": "00" * 32,
                 "evidence": {"type": "tpm", "encoding": "base64", "data": "AAAA", "endorsements": []}}
    broken(predicate)
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "app", "digest": {"sha256": artifact}}],
                 "predicateType": "https://provenance-ledger.dev/deployment/v1", "predicate": predicate}
    leaves = [_key_event_leaf(admin, event, T), _record_leaf(ci, statement, T + 1)]
    data, vkey = _bundle(leaves, "sha256:" + artifact, admin.public_key.spki_der, [0])
    try:
        result = verify_verdict_bundle(data, "sha256:" + artifact, vkey, now=T + 2)
    except MalformedError:
        return  # refused whole: as good
    text = json.dumps(result.to_json() if hasattr(result, "to_json") else result, default=str)
    # fail closed: the deployment's evidence is untrusted, naming the schema rule it breaks
    assert "does not match its schema" in text and json.loads(text)["verdict"] == "untrusted", text[:2000]


@pytest.mark.parametrize("message", ["x", {"messageDigest": "x"}, {"messageDigest": {"digest": 5}}])
def test_a_bundle_leaf_whose_message_signature_is_mistyped_is_malformed(message: object) -> None:
    from ledger.records.leaf import canonical_json, encode_bundle_leaf  # noqa: PLC0415
    from ledger.trust.fold import leaf_facts  # noqa: PLC0415

    ci = generate_private_key()
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "messageSignature": message}
    signer = {"key_id": ci.key_id, "public_key": base64.b64encode(ci.public_key.spki_der).decode()}
    with pytest.raises(MalformedError, match="message"):
        leaf_facts(0, encode_bundle_leaf(canonical_json(bundle), T, canonical_json(signer)))

"""Generated Sigstore bundles (tests/sigstore/factory.py): v0.1 bundles whose Rekor entry carries
only an inclusion promise (SET), both a promise and a proof, a bad SET or neither; ``intoto/0.0.2``
entries whose body lacks the payload, with right and wrong payload hash, envelope hash, signature
and public key; ``dsse/0.0.1`` still verifying; Rekor v2's ``dsse/0.0.2`` bodies, right and wrong."""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.interop.sigstore import parse_bundle, verify_bundle
from tests.sigstore.factory import INTEGRATED, NOW, World, encode, verify


def _entry(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["verificationMaterial"]["tlogEntries"][0]


def _flip(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


# ------------------------------------------------------------------------------ promise / proof


def test_v01_bundle_with_only_a_promise_is_accepted_as_promised(world: World) -> None:
    doc = world.bundle(promise=True, proof=False)
    assert _entry(doc)["inclusionProof"] is None  # as older npm / cosign bundles write it
    verified = verify(world, doc)
    (entry,) = verified.entries
    assert entry.inclusion == "promised" and entry.checkpoint is None and entry.has_inclusion_promise
    assert verified.inclusion == "promised"
    assert entry.integrated_time == INTEGRATED
    assert [t.source for t in verified.times] == ["tlog"]
    # the key absent altogether is the same bundle
    del _entry(doc)["inclusionProof"]
    assert verify(world, doc).inclusion == "promised"


def test_v01_bundle_with_both_checks_both(world: World) -> None:
    doc = world.bundle(promise=True, proof=True)
    verified = verify(world, doc)
    assert verified.inclusion == "proven" and verified.entries[0].checkpoint is not None
    # a bad proof with a good SET is refused: the proof is checked, not skipped
    bad_proof = copy.deepcopy(doc)
    _entry(bad_proof)["inclusionProof"]["hashes"][0] = _flip(_entry(bad_proof)["inclusionProof"]["hashes"][0])
    with pytest.raises(VerificationError, match="inclusion proof does not lead to the stated root"):
        verify(world, bad_proof)
    # a bad SET with a good proof is refused too
    bad_set = copy.deepcopy(doc)
    promise = _entry(bad_set)["inclusionPromise"]
    promise["signedEntryTimestamp"] = _flip(promise["signedEntryTimestamp"])
    with pytest.raises(SignatureError, match="signed entry timestamp does not verify"):
        verify(world, bad_set)


def test_a_bad_set_is_refused(world: World) -> None:
    doc = world.bundle(promise=True)
    promise = _entry(doc)["inclusionPromise"]
    promise["signedEntryTimestamp"] = _flip(promise["signedEntryTimestamp"])
    with pytest.raises(SignatureError, match="signed entry timestamp does not verify"):
        verify(world, doc)


def test_a_set_by_another_key_is_refused(world: World) -> None:
    doc = world.bundle(promise=True, set_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SignatureError, match="signed entry timestamp does not verify"):
        verify(world, doc)


@pytest.mark.parametrize("field", ["integratedTime", "logIndex"])
def test_what_the_set_signs_cannot_change(world: World, field: str) -> None:
    doc = world.bundle(promise=True)
    _entry(doc)[field] = str(int(_entry(doc)[field]) + 1)
    with pytest.raises(SignatureError, match="signed entry timestamp does not verify"):
        verify(world, doc)


def test_neither_promise_nor_proof_is_refused(world: World) -> None:
    doc = world.bundle(promise=False, proof=False)
    with pytest.raises(VerificationError, match="neither an inclusion proof nor an inclusion promise"):
        verify(world, doc)


def test_the_certificate_must_be_valid_at_the_integrated_time(world: World) -> None:
    # The SET is good, but it says the entry was integrated after the 10-minute certificate expired.
    doc = world.bundle(promise=True, integrated=INTEGRATED + timedelta(minutes=30))
    with pytest.raises(VerificationError, match="does not chain to a trusted Fulcio CA at 2026-05-01T12:30"):
        verify(world, doc)


def test_only_v01_may_omit_the_proof(world: World) -> None:
    doc = world.bundle(promise=True, version="0.2")
    with pytest.raises(VerificationError, match="no inclusion proof"):
        verify(world, doc)


def test_null_promise_parses_as_absent_and_bad_shapes_are_malformed(world: World) -> None:
    doc = world.bundle(promise=False, proof=True)
    assert _entry(doc)["inclusionPromise"] is None
    assert parse_bundle(encode(doc)).tlog_entries[0].signed_entry_timestamp is None
    _entry(doc)["inclusionProof"] = []
    with pytest.raises(MalformedError, match="inclusionProof must be a JSON object"):
        parse_bundle(encode(doc))
    doc = world.bundle()
    _entry(doc)["inclusionPromise"] = {"signedEntryTimestamp": "***"}
    with pytest.raises(MalformedError, match="signedEntryTimestamp is not valid standard base64"):
        parse_bundle(encode(doc))


# ------------------------------------------------------------------------------ intoto/0.0.2


def test_intoto_body_without_the_payload_verifies(world: World) -> None:
    doc = world.bundle(kind="intoto")
    body = json.loads(base64.b64decode(_entry(doc)["canonicalizedBody"]))
    assert "payload" not in body["spec"]["content"]["envelope"]
    assert verify(world, doc).entries[0].kind == "intoto/0.0.2"


def test_intoto_envelope_hash_of_sigstore_js_1_is_accepted(world: World) -> None:
    envelope = world.envelope()
    doc = world.bundle(envelope=envelope, body=world.intoto_body(envelope, with_public_key_in_hash=False))
    assert verify(world, doc).entries[0].kind == "intoto/0.0.2"


def test_intoto_envelope_hash_over_the_pae_is_accepted(world: World) -> None:
    """sigstore-conformance's intoto-canonical-log-entry logs SHA-256(PAE(payloadType, payload))
    as the envelope hash; over another payload's PAE it is refused."""
    import hashlib  # noqa: PLC0415

    from ledger.records.dsse import pae  # noqa: PLC0415

    def pae_hash(envelope: dict[str, Any]) -> str:
        return hashlib.sha256(pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))).hexdigest()

    envelope = world.envelope()
    body = world.intoto_body(envelope)
    _content(body)["hash"]["value"] = pae_hash(envelope)
    assert verify(world, world.bundle(envelope=envelope, body=body)).entries[0].kind == "intoto/0.0.2"
    other = world.envelope({**json.loads(base64.b64decode(envelope["payload"])), "predicateType": "y"})
    _content(body)["hash"]["value"] = pae_hash(other)
    with pytest.raises(VerificationError, match="envelope hash does not match"):
        verify(world, world.bundle(envelope=envelope, body=body))


def _intoto_variant(world: World, change: Any) -> dict[str, Any]:
    envelope = world.envelope()
    body = world.intoto_body(envelope)
    change(body, envelope, world)
    return world.bundle(envelope=envelope, body=body)


def _content(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["content"]


def _other_signature(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    other = world.envelope({"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "x", "predicate": {}})
    _content(body)["envelope"]["signatures"][0]["sig"] = base64.b64encode(other["signatures"][0]["sig"].encode()).decode()


def _other_key(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    pem = world.issue(ec.generate_private_key(ec.SECP256R1())).public_bytes(serialization.Encoding.PEM)
    _content(body)["envelope"]["signatures"][0]["publicKey"] = base64.b64encode(pem).decode()


def _wrong_payload(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    _content(body)["envelope"]["payload"] = base64.b64encode(base64.b64encode(b"{}")).decode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b, e, w: _content(b)["payloadHash"].__setitem__("value", "0" * 64), "payload hash does not match"),
        (lambda b, e, w: _content(b)["payloadHash"].__setitem__("algorithm", "sha512"), "payload hash algorithm"),
        (lambda b, e, w: _content(b).pop("payloadHash"), "has no payloadHash.algorithm"),
        (lambda b, e, w: _content(b)["hash"].__setitem__("value", "0" * 64), "envelope hash does not match"),
        (lambda b, e, w: _content(b)["hash"].__setitem__("algorithm", "md5"), "envelope hash algorithm"),
        (lambda b, e, w: _content(b).pop("hash"), "has no hash.algorithm"),
        (_other_signature, "signature does not match the envelope's signature"),
        (lambda b, e, w: _content(b)["envelope"]["signatures"].append(_content(b)["envelope"]["signatures"][0]), "signatures do not match"),
        (_other_key, "not the bundle's signing certificate"),
        (lambda b, e, w: _content(b)["envelope"].__setitem__("payloadType", "text/plain"), "payloadType does not match"),
        (_wrong_payload, "payload does not match the envelope's payload"),
    ],
    ids=[
        "payload-hash", "payload-hash-alg", "no-payload-hash", "envelope-hash", "envelope-hash-alg", "no-envelope-hash",
        "signature", "extra-signature", "public-key", "payload-type", "payload-present-but-other",
    ],
)
def test_intoto_body_that_is_not_the_envelope_is_refused(world: World, change: Any, reason: str) -> None:
    doc = _intoto_variant(world, change)
    with pytest.raises(VerificationError, match=reason):
        verify(world, doc)


def test_intoto_envelope_hash_over_another_envelope_is_refused(world: World) -> None:
    # The body is consistent in itself, but for another envelope by the same signer.
    other = world.envelope({**json.loads(base64.b64decode(world.envelope()["payload"])), "predicateType": "y"})
    doc = world.bundle(envelope=world.envelope(), body=world.intoto_body(other))
    with pytest.raises(VerificationError, match="payload hash does not match"):
        verify(world, doc)


# ------------------------------------------------------------------------------ dsse/0.0.1


def test_dsse_entry_still_verifies(world: World, own_checks_only: None) -> None:
    # (sigstore-python's cross-check needs a CT log; the generated root has none)
    for options in ({"promise": True}, {"promise": True, "proof": True}):
        verified = verify(world, world.bundle(kind="dsse", **options))
        assert verified.entries[0].kind == "dsse/0.0.1"
        assert verified.inclusion == ("promised" if not options.get("proof") else "proven")


# ------------------------------------------------------------------------------ dsse/0.0.2 (Rekor v2)


def _dsse_v2(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["dsseV002"]


def _v03(world: World, envelope: dict[str, Any], body: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A v0.3 bundle (one ``certificate``, as Rekor v2 clients write them) logging ``body``."""
    # (the factory's proof puts the entry at index 3 of a 6-leaf tree; without a promise the entry says so too)
    doc = world.bundle(version="0.3", envelope=envelope, body=body, log_index=3, **options)
    material = doc["verificationMaterial"]
    material["certificate"] = material.pop("x509CertificateChain")["certificates"][0]
    return doc


def test_a_rekor_v2_dsse_entry_verifies(world: World) -> None:
    envelope = world.envelope()
    # (Rekor v2 issues no SET, its time comes from a TSA; the test log's promise stands in for it)
    doc = _v03(world, envelope, world.dsse_v2_body(envelope), promise=True, proof=True)
    verified = verify(world, doc)
    assert verified.entries[0].kind == "dsse/0.0.2" and verified.inclusion == "proven"
    # without a promise or a timestamp there is no verified time: refused, the body check passing
    with pytest.raises(VerificationError, match="no verified time"):
        verify(world, _v03(world, envelope, world.dsse_v2_body(envelope), promise=False, proof=True))


def test_a_rekor_v2_dsse_body_of_another_api_version_is_refused(world: World) -> None:
    envelope = world.envelope()
    body = world.dsse_v2_body(envelope)
    body["apiVersion"] = "0.0.1"
    doc = _v03(world, envelope, body, promise=True, proof=True)
    _entry(doc)["kindVersion"]["version"] = "0.0.2"
    with pytest.raises(VerificationError, match="body is dsse/0.0.1, but the bundle says dsse/0.0.2"):
        verify(world, doc)


def _other_verifier(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    der = world.issue(ec.generate_private_key(ec.SECP256R1())).public_bytes(serialization.Encoding.DER)
    _dsse_v2(body)["signatures"][0]["verifier"]["x509Certificate"]["rawBytes"] = base64.b64encode(der).decode()


def _a_public_key_verifier(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    spki = world.leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    _dsse_v2(body)["signatures"][0]["verifier"] = {"publicKey": {"rawBytes": base64.b64encode(spki).decode()}}


def _other_envelope_signature(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    other = world.envelope({"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "x", "predicate": {}})
    _dsse_v2(body)["signatures"][0]["content"] = other["signatures"][0]["sig"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b, e, w: _dsse_v2(b)["payloadHash"].__setitem__("digest", base64.b64encode(bytes(32)).decode()), "payload hash does not match"),
        (lambda b, e, w: _dsse_v2(b)["payloadHash"].__setitem__("algorithm", "SHA2_384"), "payload hash algorithm"),
        (lambda b, e, w: _dsse_v2(b)["payloadHash"].__setitem__("digest", "not base64!"), "payload hash is not valid base64"),
        (lambda b, e, w: _dsse_v2(b).pop("payloadHash"), "has no payloadHash.algorithm"),
        (_other_envelope_signature, "signature does not match the envelope's signature"),
        (lambda b, e, w: _dsse_v2(b)["signatures"].append(_dsse_v2(b)["signatures"][0]), "signatures do not match"),
        (lambda b, e, w: _dsse_v2(b).__setitem__("signatures", []), "signatures do not match"),
        (_other_verifier, "not the bundle's signing certificate"),
        (_a_public_key_verifier, "not the bundle's signing certificate"),
        (lambda b, e, w: b["spec"].__setitem__("hashedRekordV002", b["spec"].pop("dsseV002")), "has no spec.dsseV002"),
    ],
    ids=[
        "payload-hash", "payload-hash-alg", "payload-hash-not-base64", "no-payload-hash", "signature", "extra-signature",
        "no-signature", "other-certificate", "public-key-for-a-keyless-bundle", "other-spec",
    ],
)
def test_a_rekor_v2_dsse_body_that_is_not_the_envelope_is_refused(world: World, change: Any, reason: str) -> None:
    envelope = world.envelope()
    body = world.dsse_v2_body(envelope)
    change(body, envelope, world)
    doc = _v03(world, envelope, body, promise=False, proof=True)
    with pytest.raises(VerificationError, match=reason):
        verify(world, doc)


def test_a_rekor_v2_dsse_entry_for_another_envelope_is_refused(world: World) -> None:
    other = world.envelope({**json.loads(base64.b64decode(world.envelope()["payload"])), "predicateType": "y"})
    doc = _v03(world, world.envelope(), world.dsse_v2_body(other), promise=False, proof=True)
    with pytest.raises(VerificationError, match="payload hash does not match"):
        verify(world, doc)


@pytest.mark.parametrize("kind", ["dsse/0.0.1", "dsse/0.0.2", "intoto/0.0.2"])
def test_an_envelope_entry_in_a_message_signature_bundle_is_refused(world: World, own_checks_only: None, kind: str) -> None:
    """A log entry recording a DSSE envelope cannot vouch for a bundle that signs an artifact."""
    import hashlib  # noqa: PLC0415

    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    envelope = world.envelope()
    body = {"dsse/0.0.1": world.dsse_body, "dsse/0.0.2": world.dsse_v2_body, "intoto/0.0.2": world.intoto_body}[kind](envelope)
    doc = world.bundle(envelope=envelope, body=body, promise=True, proof=True, log_index=3)
    artifact = b"an artifact"
    signature = world.signer_key.sign(artifact, ec.ECDSA(hashes.SHA256()))
    del doc["dsseEnvelope"]
    doc["messageSignature"] = {
        "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(hashlib.sha256(artifact).digest()).decode()},
        "signature": base64.b64encode(signature).decode(),
    }
    with pytest.raises(VerificationError, match=rf"\({kind}\) records a DSSE envelope, but the bundle holds a message signature"):
        verify_bundle(parse_bundle(encode(doc)), world.roots(), artifact=artifact, now=NOW)

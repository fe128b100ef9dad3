"""A DSSE bundle whose Rekor v1 entry is ``hashedrekord/0.0.1`` (the Sigstore client spec allows
it; sigstore-go writes it, and sigstore-conformance's ``dsse-with-hashedrekord-*`` cases check it):
the logged digest is SHA-256 of the envelope's PAE, the logged signature the envelope's one
signature, the logged key the signing certificate. Generated with tests/sigstore/factory.py."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.errors import SignatureError, VerificationError
from ledger.interop.sigstore import _sigstore_python, parse_bundle
from tests.sigstore.factory import World, encode, verify


def _bundle(world: World, envelope: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    return world.bundle(envelope=envelope, body=body, promise=True, proof=True, log_index=3)


def test_a_dsse_envelope_logged_as_hashedrekord_verifies(world: World) -> None:
    envelope = world.envelope()
    doc = _bundle(world, envelope, world.hashedrekord_dsse_body(envelope))
    # sigstore-python 4.x takes DSSE only as dsse/0.0.1 or hashedrekord/0.0.2: it is not asked
    assert not _sigstore_python.covers(parse_bundle(encode(doc)))
    verified = verify(world, doc)
    (entry,) = verified.entries
    assert entry.kind == "hashedrekord/0.0.1" and verified.inclusion == "proven"
    assert verified.envelope is not None and verified.envelope.payload == base64.b64decode(envelope["payload"])


def _other_statement(world: World) -> dict[str, Any]:
    return world.envelope({**json.loads(base64.b64decode(world.envelope()["payload"])), "predicateType": "https://example.com/other"})


def _payload_digest(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    """The payload's digest instead of the PAE's (what a hashedrekord of the payload bytes would say)."""
    body["spec"]["data"]["hash"]["value"] = hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()


def _other_envelope(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    body["spec"]["data"]["hash"]["value"] = world.hashedrekord_dsse_body(_other_statement(world))["spec"]["data"]["hash"]["value"]


def _other_signature(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    body["spec"]["signature"]["content"] = _other_statement(world)["signatures"][0]["sig"]


def _other_certificate(body: dict[str, Any], envelope: dict[str, Any], world: World) -> None:
    pem = world.issue(ec.generate_private_key(ec.SECP256R1())).public_bytes(serialization.Encoding.PEM)
    body["spec"]["signature"]["publicKey"]["content"] = base64.b64encode(pem).decode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_payload_digest, "digest does not match the DSSE envelope's PAE"),
        (_other_envelope, "digest does not match the DSSE envelope's PAE"),
        (lambda b, e, w: b["spec"]["data"]["hash"].__setitem__("algorithm", "sha512"), "hash algorithm is not sha256"),
        (_other_signature, "signature does not match the bundle's signature"),
        (_other_certificate, "not the bundle's signing certificate"),
        (lambda b, e, w: b["spec"].pop("data"), "has no spec.data.hash.algorithm"),
    ],
    ids=["payload-digest", "other-envelope", "other-algorithm", "other-signature", "other-certificate", "no-data"],
)
def test_a_hashedrekord_body_that_is_not_this_envelope_is_refused(world: World, change: Any, reason: str) -> None:
    """sigstore-conformance's dsse-with-hashedrekord-mismatch-envelope / -mismatch-sig, and more."""
    envelope = world.envelope()
    body = world.hashedrekord_dsse_body(envelope)
    change(body, envelope, world)
    with pytest.raises(VerificationError, match=reason):
        verify(world, _bundle(world, envelope, body))


def test_an_envelope_whose_signature_does_not_verify_is_refused(world: World) -> None:
    """dsse-with-hashedrekord-invalid-sig: the log recorded this very signature, but it does not
    verify over the envelope's PAE (it was made over other bytes)."""
    envelope = world.envelope()
    bad = world.signer_key.sign(b"other bytes", ec.ECDSA(hashes.SHA256()))
    envelope["signatures"][0]["sig"] = base64.b64encode(bad).decode()
    doc = _bundle(world, envelope, world.hashedrekord_dsse_body(envelope))
    with pytest.raises(SignatureError):
        verify(world, doc)

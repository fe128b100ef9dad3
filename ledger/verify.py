"""Offline verification of receipts: what an auditor runs with no database and no network.

``verify_receipt`` checks, in order:

1. the receipt parses (index, tree_size, entry, proof) and its proof is a c2sp.org/tlog-proof@v1;
2. the leaf hash is SHA-256(0x00 || entry);
3. the checkpoint in the proof is signed by the log key and names the key's origin;
4. the checkpoint is of the receipt's tree size and the inclusion proof leads to its root;
5. the entry is a canonical ledger leaf, and every signer it records signed the DSSE envelope
   it carries (and, if asked, one of the expected public keys did).

For a ``sigstore-bundle`` leaf, step 5 parses the Sigstore bundle the leaf keeps, checks that the
recorded signer key is the bundle's certificate key (or, for a public-key bundle, is the key the
ledger recorded), that the recorded identity is what the certificate says, and re-checks the DSSE
(or message) signature with that key. It does **not** re-check the certificate chain to Fulcio,
the Rekor inclusion proof or the signed entry timestamp (the ledger did, at integration, against
its trusted roots); ``VerifiedReceipt.notes`` says so, and says how to re-check them with
Sigstore's own tools: the bundle is in the entry, byte for byte as JSON.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ledger.tlog.checkpoint import Checkpoint
from ledger.records.dsse import verify_envelope_result
from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.tlog.hashing import leaf_hash
from ledger.records.keys import PublicKey
from ledger.tlog.note import parse_vkey
from ledger.interop.sigstore import parse_bundle
from ledger.interop.sigstore._x509 import certificate_identity
from ledger.records.leaf import LEAF_KIND_BUNDLE, Leaf, canonical_json, decode_leaf
from ledger.records.statement import parse_statement
from ledger.tlog.proof import parse_tlog_proof, verify_tlog_proof
from ledger.untrusted.json import parse_json

__all__ = [
    "BUNDLE_NOTE",
    "MAX_RECEIPT_BYTES",
    "VerifiedReceipt",
    "parse_receipt",
    "verify_bundle_leaf_signature",
    "verify_receipt",
]

MAX_RECEIPT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedReceipt:
    index: int
    checkpoint: Checkpoint
    leaf: Leaf
    signer_key_ids: tuple[str, ...]
    #: what the verification did not cover and how to cover it (bundle leaves), for the output
    notes: tuple[str, ...] = ()


def parse_receipt(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(data, bytes | str):
        if len(data) > MAX_RECEIPT_BYTES:
            raise MalformedError(f"receipt is larger than {MAX_RECEIPT_BYTES} bytes")
        doc = parse_json(data, what="receipt")
    else:
        doc = dict(data)
    if not isinstance(doc, dict) or not {"index", "tree_size", "entry", "proof"} <= set(doc):
        raise MalformedError(
            "this is not a receipt: a receipt is a JSON object with index, tree_size, entry and proof, "
            "as `provledger submit` and `provledger receipt INDEX` print it"
        )
    for name in ("index", "tree_size"):
        if type(doc.get(name)) is not int or doc[name] < 0:
            raise MalformedError(f"receipt {name} must be a non-negative integer")
    for name in ("entry", "proof"):
        if not isinstance(doc.get(name), str):
            raise MalformedError(f"receipt {name} must be a string")
    return doc


def verify_receipt(
    data: bytes | str | Mapping[str, Any],
    log_vkey: str,
    *,
    public_keys: Sequence[PublicKey] = (),
) -> VerifiedReceipt:
    """Verify a receipt against the log's verifier key; raise VerificationError (or Malformed)."""
    # (1) Parse.
    doc = parse_receipt(data)
    try:
        entry = base64.b64decode(doc["entry"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("receipt entry is not valid base64") from exc
    proof = parse_tlog_proof(doc["proof"])
    if proof.index != doc["index"]:
        raise VerificationError(f"receipt index {doc['index']} differs from its proof's index {proof.index}")
    # (2)-(4) The leaf, the log's signature and origin, the inclusion proof.
    log_verifier = parse_vkey(log_vkey)
    checkpoint = verify_tlog_proof(proof, leaf_hash(entry), log_verifier)
    if checkpoint.size != doc["tree_size"]:
        raise VerificationError(
            f"receipt tree_size {doc['tree_size']} differs from its checkpoint's size {checkpoint.size}"
        )
    # (5) The record's own signature.
    leaf = decode_leaf(entry)
    if leaf.kind == LEAF_KIND_BUNDLE:
        return _verify_bundle_leaf(doc["index"], checkpoint, leaf, public_keys)
    if not leaf.signers:
        raise VerificationError("the entry records no signer")
    parse_statement(leaf.envelope.payload)
    result = verify_envelope_result(leaf.envelope, leaf.signers)
    signed = {k.key_id for k in result.keys}
    unsigned = [k.key_id for k in leaf.signers if k.key_id not in signed]
    if unsigned:
        raise SignatureError(f"the envelope is not signed by the recorded signer {unsigned[0]}")
    if public_keys and not signed & {k.key_id for k in public_keys}:
        raise SignatureError("the envelope is not signed by any of the expected public keys")
    return VerifiedReceipt(doc["index"], checkpoint, leaf, tuple(sorted(signed)))


#: what a bundle receipt leaves to Sigstore's tools (printed by ``provledger verify-receipt``)
BUNDLE_NOTE = (
    "checked here: the entry is in the ledger, and the bundle's {what} verifies with its signer's {key}. "
    "Not checked here: the certificate chain to Fulcio, the Rekor inclusion proof and signed entry timestamp "
    "(the ledger checked them when it integrated the entry). To re-check them, extract the bundle "
    "(base64 -d of the receipt's entry, then its \"bundle\" field) and run `sigstore verify` "
    "(or `cosign verify-blob-attestation --bundle`) with the expected identity and trusted root."
)


def _verify_bundle_leaf(index: int, checkpoint: Checkpoint, leaf: Leaf, public_keys: Sequence[PublicKey]) -> VerifiedReceipt:
    """Step 5 for a ``sigstore-bundle`` leaf: signer key, identity and content signature."""
    note = verify_bundle_leaf_signature(leaf)
    (key,) = leaf.signers
    if public_keys and key.key_id not in {k.key_id for k in public_keys}:
        raise SignatureError("the bundle is not signed by any of the expected public keys")
    return VerifiedReceipt(index, checkpoint, leaf, (key.key_id,), (note,))


def verify_bundle_leaf_signature(leaf: Leaf) -> str:
    """Re-check a decoded ``sigstore-bundle`` leaf on its own: the recorded signer key is the
    bundle's certificate key (keyless) and the recorded identity is the certificate's, and the
    DSSE (or message) signature verifies with that key.

    Returns the note saying what this did not check (certificate chain, Rekor) and how to.

    Raises:
        VerificationError (SignatureError for a bad signature), MalformedError.
    """
    if leaf.kind != LEAF_KIND_BUNDLE or leaf.bundle is None or leaf.signer is None:
        raise ValueError("not a sigstore-bundle leaf")
    bundle = parse_bundle(canonical_json(leaf.bundle))
    (key,) = leaf.signers
    cert = bundle.signing_certificate
    if cert is not None:
        der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if der != key.spki_der:
            raise VerificationError("the entry's recorded signer key is not the bundle certificate's key")
        # the whole record (SAN, issuer and the Fulcio claims such as the source repository),
        # since the audit matches registered identities against it
        if leaf.signer.get("identity") != certificate_identity(cert).to_record():
            raise VerificationError("the entry's recorded signer identity is not the bundle certificate's identity")
    elif "identity" in leaf.signer:
        raise VerificationError("the entry records a certificate identity, but the bundle is signed with a managed key")
    if bundle.envelope is not None:
        parse_statement(bundle.envelope.payload)
        if not key.verify(bundle.signature, bundle.envelope.pae()):
            raise SignatureError(f"the bundle's DSSE envelope is not signed by the recorded signer {key.key_id}")
        what = "DSSE envelope signature"
    else:
        message = bundle.message_signature
        assert message is not None
        loaded = serialization.load_der_public_key(key.spki_der)
        if message.digest is None or message.digest_algorithm != "SHA2_256" or not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise VerificationError("the bundle's message signature cannot be checked without the artifact")
        try:
            loaded.verify(message.signature, message.digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError(f"the bundle's message signature is not by the recorded signer {key.key_id}") from exc
        what = "message signature (over the artifact's SHA-256 digest)"
    return BUNDLE_NOTE.format(what=what, key="certificate key" if cert is not None else "public key")

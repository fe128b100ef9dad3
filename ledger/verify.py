"""Offline verification of receipts: what an auditor runs with no database and no network.

``verify_receipt`` checks, in order:

1. the receipt parses (index, tree_size, entry, proof) and its proof is a c2sp.org/tlog-proof@v1;
2. the leaf hash is SHA-256(0x00 || entry);
3. the checkpoint in the proof is signed by the log key and names the key's origin;
4. the checkpoint is of the receipt's tree size and the inclusion proof leads to its root;
5. the entry is a canonical ledger leaf, and every signer it records signed the DSSE envelope
   it carries (and, if asked, one of the expected public keys did).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.dsse import verify_envelope_result
from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.hashing import leaf_hash
from ledger.keys import PublicKey
from ledger.note import parse_vkey
from ledger.records import Leaf, decode_leaf
from ledger.statement import parse_statement
from ledger.tlog_proof import parse_tlog_proof, verify_tlog_proof

__all__ = ["MAX_RECEIPT_BYTES", "VerifiedReceipt", "parse_receipt", "verify_receipt"]

MAX_RECEIPT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedReceipt:
    index: int
    checkpoint: Checkpoint
    leaf: Leaf
    signer_key_ids: tuple[str, ...]


def parse_receipt(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(data, bytes | str):
        if len(data) > MAX_RECEIPT_BYTES:
            raise MalformedError(f"receipt is larger than {MAX_RECEIPT_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedError(f"receipt is not valid JSON: {exc}") from exc
    else:
        doc = dict(data)
    if not isinstance(doc, dict):
        raise MalformedError("receipt must be a JSON object")
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

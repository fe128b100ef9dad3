"""Re-verifying the DSSE signatures a leaf holds, with the signers the leaf records."""

from __future__ import annotations

from typing import Any

from ledger.errors import LedgerError
from ledger.records.dsse import verify_envelope_result
from ledger.records.leaf import LEAF_KIND_BUNDLE, Leaf, decode_leaf

__all__ = ["check_decoded_signatures", "check_leaf_signatures"]


def check_leaf_signatures(data: bytes) -> tuple[str, str] | None:
    """Re-verify the DSSE envelope in leaf ``data`` with the signers the leaf records.

    Returns None when every recorded signer's signature verifies, else (problem kind, message).
    The leaf is read by ``ledger.records.leaf.decode_leaf``, whose common shape (one signature,
    one signer) costs a pattern match and base64, and whose signer keys are decoded once per
    process: the Ed25519 check is most of the cost.
    """
    try:
        leaf = decode_leaf(data)
    except LedgerError as exc:
        return "leaf_data", exc.diagnostics()
    return check_decoded_signatures(leaf)


def check_decoded_signatures(leaf: Leaf) -> tuple[str, str] | None:
    """:func:`check_leaf_signatures` for a leaf already decoded by ``decode_leaf``."""
    if leaf.kind == LEAF_KIND_BUNDLE:
        return _check_bundle_leaf(leaf)
    keys = leaf.signers
    if not keys:
        return "signature", "its leaf records no signer"
    assert leaf.envelope is not None
    verified = {k.key_id for k in verify_envelope_result(leaf.envelope, keys).keys}
    for key in keys:
        if key.key_id not in verified:
            return "signature", f"no signature in its envelope verifies with its recorded signer {key.key_id}"
    return None


def _check_bundle_leaf(leaf: Any) -> tuple[str, str] | None:
    """A Sigstore-bundle leaf: its content signature by its recorded signer, as an offline
    verifier of its receipt checks it (``ledger.verify``). The certificate chain and transparency
    entries inside the bundle are Sigstore's to re-check (the ledger checked them on entry)."""
    from ledger.verify import verify_bundle_leaf_signature  # noqa: PLC0415

    try:
        verify_bundle_leaf_signature(leaf)
    except LedgerError as exc:
        return "signature", exc.diagnostics()
    return None

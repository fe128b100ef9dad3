"""The ledger's witness policy: which witnesses must cosign its checkpoints, and how many.

The server's policy is its witnesses' keys (``PROVLEDGER_WITNESS_URLS``, ``VKEY=URL`` pairs:
cosignature/v1 keys, type 0x04, or Ed25519 note keys, type 0x01) and
``PROVLEDGER_WITNESS_THRESHOLD``, how many distinct witnesses must cosign (default: all of them)
(``ledger.services.cosign.witness_config_from_env``). It is applied offline by ``verify-receipt --witness VKEY… --threshold K``
(:func:`verify_receipt_with_witnesses`). Witnesses are counted by name, so two keys of one
witness count once. An empty policy is "no witness policy", never "any zero witnesses".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.tlog.checkpoint import verify_cosignatures
from ledger.errors import MalformedError
from ledger.records.keys import PublicKey
from ledger.tlog.note import (
    CosignatureV1Verifier,
    Ed25519Verifier,
    Verifier,
    append_signatures,
    parse_note,
    parse_vkey,
    verify_note_result,
)
from ledger.tlog.proof import parse_tlog_proof
from ledger.verify import VerifiedReceipt, parse_receipt, verify_receipt

__all__ = [
    "WitnessPolicy",
    "WitnessedReceipt",
    "merge_cosignatures",
    "parse_witness_policy",
    "verify_receipt_with_witnesses",
]

ENV_THRESHOLD = "PROVLEDGER_WITNESS_THRESHOLD"


@dataclass(frozen=True)
class WitnessPolicy:
    """``threshold`` of the distinct witnesses named by ``verifiers`` must cosign."""

    verifiers: tuple[Verifier, ...]
    threshold: int

    @property
    def names(self) -> list[str]:
        return sorted({v.name for v in self.verifiers})

    def verify(self, checkpoint_note: bytes | str) -> list[str]:
        """Apply the policy to a cosigned checkpoint; return the witnesses that cosigned.

        Raises:
            SignatureError: a configured witness's cosignature is bad.
            VerificationError: fewer than ``threshold`` witnesses cosigned.
        """
        return verify_cosignatures(checkpoint_note, self.verifiers, self.threshold)


def parse_witness_policy(
    vkeys: Sequence[str] | str, threshold: int | str | None = None
) -> WitnessPolicy | None:
    """A policy from witness vkeys (a sequence, or one space-separated string) and a threshold.

    Returns None when no witness is named (no policy), unless a threshold was asked for. In a
    sequence every item must be a key: an empty one is refused, never skipped.

    Raises:
        MalformedError: a vkey does not parse or is not a witness key type, or the threshold is
            not an integer between 1 and the number of distinct witnesses.
    """
    if not isinstance(vkeys, str) and any(not isinstance(v, str) or not v.strip() for v in vkeys):
        # each item was meant to be a key: an empty one (an unset variable) must not drop the policy
        raise MalformedError("a witness key is empty: give each witness's verifier key")
    items = vkeys.split() if isinstance(vkeys, str) else list(vkeys)
    if isinstance(threshold, str):
        threshold = threshold.strip() or None
        if threshold is not None:
            if not threshold.isdigit():
                raise MalformedError(f"the witness threshold {threshold[:20]!r} is not an integer")
            threshold = int(threshold)
    if not items:
        if threshold:
            raise MalformedError(f"a witness threshold of {threshold} needs witness keys")
        return None
    verifiers: list[Verifier] = []
    for vkey in items:
        verifier = parse_vkey(vkey)
        if not isinstance(verifier, CosignatureV1Verifier | Ed25519Verifier):
            raise MalformedError(
                f"witness key {verifier.name} is not a cosignature/v1 (0x04) or Ed25519 (0x01) key"
            )
        verifiers.append(verifier)
    names = {v.name for v in verifiers}
    k = len(names) if threshold is None else threshold
    if type(k) is not int or not 1 <= k <= len(names):
        raise MalformedError(f"the witness threshold must be between 1 and {len(names)}, got {k}")
    return WitnessPolicy(tuple(verifiers), k)


@dataclass(frozen=True)
class WitnessedReceipt:
    receipt: VerifiedReceipt
    #: names of the witnesses whose cosignatures verified (empty without a policy)
    witnesses: tuple[str, ...]


def verify_receipt_with_witnesses(
    data: bytes | str | Mapping[str, Any],
    log_vkey: str,
    *,
    witness_vkeys: Sequence[str] = (),
    threshold: int | None = None,
    public_keys: Sequence[PublicKey] = (),
) -> WitnessedReceipt:
    """:func:`ledger.verify.verify_receipt`, then a k-of-n witness policy on its checkpoint.

    Args:
        data: the receipt.
        log_vkey: the log's verifier key.
        witness_vkeys: the witnesses' verifier keys (none: no witness policy).
        threshold: how many distinct witnesses must cosign (default: all of them).
        public_keys: as for ``verify_receipt``.

    Raises:
        MalformedError: the receipt, a witness key or the threshold is malformed.
        SignatureError: the log's signature, the record's, or a witness's cosignature is bad.
        VerificationError: anything else that does not verify, or too few cosignatures.
    """
    policy = parse_witness_policy(list(witness_vkeys), threshold)
    verified = verify_receipt(data, log_vkey, public_keys=public_keys)
    if policy is None:
        return WitnessedReceipt(verified, ())
    proof = parse_tlog_proof(parse_receipt(data)["proof"])
    return WitnessedReceipt(verified, tuple(policy.verify(proof.checkpoint)))


def merge_cosignatures(
    checkpoint_note: bytes | str, response_body: bytes, witness_verifiers: Sequence[Verifier]
) -> bytes:
    """The checkpoint with a witness's ``add-checkpoint`` reply lines that verify appended.

    C2SP tlog-witness: the client concatenates the reply to the checkpoint and verifies it with
    the witness keys it trusts; cosignatures of unknown keys are dropped.

    Raises:
        MalformedError: the reply is not signature lines.
        SignatureError: a trusted witness's cosignature is bad, or none verifies.
    """
    note = (
        checkpoint_note.encode("utf-8")
        if isinstance(checkpoint_note, str)
        else bytes(checkpoint_note)
    )
    try:
        reply = response_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("the witness reply is not UTF-8") from exc
    text = parse_note(note).text
    result = verify_note_result(
        text.encode("utf-8") + b"\n" + reply.encode("utf-8"), witness_verifiers
    )
    result.raise_for_failure()
    return append_signatures(note, [item.signature for item in result.verified])

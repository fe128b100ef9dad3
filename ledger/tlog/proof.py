"""Offline proofs of inclusion (c2sp.org/tlog-proof@v1, file extension ``.tlog-proof``).

::

    c2sp.org/tlog-proof@v1\\n
    [extra <base64>\\n]
    index <decimal>\\n
    <base64 hash>\\n ...          (inclusion proof, leaf's sibling first, up to the root's child)
    \\n
    <signed checkpoint, with the log signature and any cosignatures>

The extra data is not authenticated: nothing may trust it implicitly.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger import merkle
from ledger.tlog.checkpoint import (
    Checkpoint,
    open_checkpoint,
    parse_checkpoint_text,
    verify_cosignatures,
)
from ledger.errors import MalformedError, TooLargeError
from ledger.tlog.hashing import HASH_SIZE, check_hash
from ledger.tlog.note import MAX_NOTE_BYTES, Verifier, b64decode_canonical, parse_note

__all__ = [
    "MAX_PROOF_HASHES",
    "MAX_TLOG_PROOF_BYTES",
    "TLOG_PROOF_HEADER",
    "TlogProof",
    "format_tlog_proof",
    "format_tlog_proofs",
    "parse_tlog_proof",
    "verify_tlog_proof",
]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
#: An inclusion proof in a tree of at most 2**64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64
#: The checkpoint note cap plus room for the header, the extra data and the proof lines.
MAX_TLOG_PROOF_BYTES = 2 * MAX_NOTE_BYTES

_MAX_INDEX = (1 << 64) - 1
_INDEX_LINE = re.compile(r"index (0|[1-9][0-9]{0,19})")


@dataclass
class TlogProof:
    """An entry's index, its inclusion proof and the signed checkpoint the proof leads to."""

    index: int
    hashes: list[bytes] = field(default_factory=list)
    #: the signed checkpoint note, verbatim
    checkpoint: bytes = b""
    #: opaque, unauthenticated application data
    extra: bytes | None = None


def format_tlog_proof(p: TlogProof) -> str:
    """The text of ``p``.

    Raises:
        MalformedError: a hash is not 32 bytes, or the checkpoint is not a signed checkpoint.
        ValueError: the index is negative, the extra data is empty, or there are too many hashes.
    """
    _check_checkpoint_note(p.checkpoint)
    return _format(p)


def format_tlog_proofs(proofs: Sequence[tuple[int, Sequence[bytes]]], checkpoint: bytes, *, signed_here: bool = False) -> list[str]:
    """The texts of many proofs against one checkpoint, which is checked once (receipts in bulk).

    ``signed_here``: the log has just formatted and signed ``checkpoint`` itself (the sequencer's
    fresh checkpoint), so parsing it back would only repeat what made it."""
    if not signed_here:
        _check_checkpoint_note(checkpoint)
    encoded: dict[bytes, str] = {}  # the proofs of a batch share most of their hashes
    return [_format(TlogProof(index=i, hashes=list(h), checkpoint=checkpoint), encoded) for i, h in proofs]


def _check_checkpoint_note(checkpoint: bytes) -> None:
    note = parse_note(checkpoint)  # also refuses a checkpoint that is not UTF-8
    parse_checkpoint_text(note.text)


def _b64_hash(h: bytes) -> str:
    return base64.b64encode(check_hash(h, "inclusion proof hash")).decode("ascii")


def _format(p: TlogProof, encoded: dict[bytes, str] | None = None) -> str:
    if not 0 <= p.index <= _MAX_INDEX:
        raise ValueError(f"proof index {p.index} is not a uint64")
    if p.extra is not None and not p.extra:
        raise ValueError("extra data, when present, must not be empty")
    if len(p.hashes) > MAX_PROOF_HASHES:
        raise ValueError(f"an inclusion proof has at most {MAX_PROOF_HASHES} hashes")
    lines = [TLOG_PROOF_HEADER]
    if p.extra is not None:
        lines.append("extra " + base64.b64encode(p.extra).decode("ascii"))
    lines.append(f"index {p.index}")
    if encoded is None:
        lines.extend(_b64_hash(h) for h in p.hashes)
    else:
        for h in p.hashes:
            text = encoded.get(h)
            if text is None:
                text = encoded[h] = _b64_hash(h)
            lines.append(text)
    return "".join(line + "\n" for line in lines) + "\n" + p.checkpoint.decode("utf-8")


def parse_tlog_proof(text: str | bytes) -> TlogProof:
    """Parse a c2sp.org/tlog-proof@v1 text (strict: one accepted encoding).

    The checkpoint is parsed (as a signed note with a checkpoint text) but not verified.

    Raises:
        TooLargeError: the text is over ``MAX_TLOG_PROOF_BYTES``.
        MalformedError: anything else that is not a well-formed proof.
    """
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_TLOG_PROOF_BYTES:
            raise TooLargeError(f"proof is over the limit of {MAX_TLOG_PROOF_BYTES} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError("proof is not valid UTF-8") from exc
    elif len(text) > MAX_TLOG_PROOF_BYTES:
        raise TooLargeError(f"proof is over the limit of {MAX_TLOG_PROOF_BYTES} bytes")

    def next_line(pos: int, what: str) -> tuple[str, int]:
        end = text.find("\n", pos)
        if end < 0:
            raise MalformedError(f"proof ends before its {what}")
        return text[pos:end], end + 1

    line, pos = next_line(0, "header line")
    if line != TLOG_PROOF_HEADER:
        raise MalformedError(f"proof does not start with {TLOG_PROOF_HEADER!r}")

    extra: bytes | None = None
    line, pos = next_line(pos, "index line")
    if line.startswith("extra "):
        extra = b64decode_canonical(line[len("extra ") :], "proof extra data")
        if not extra:
            raise MalformedError("proof extra line carries no data")
        line, pos = next_line(pos, "index line")
    match = _INDEX_LINE.fullmatch(line)
    if match is None:
        raise MalformedError(f"proof line {line[:40]!r} is not 'index <decimal>'")
    index = int(match.group(1))
    if index > _MAX_INDEX:
        raise MalformedError("proof index does not fit in 64 bits")

    hashes: list[bytes] = []
    while True:
        line, pos = next_line(pos, "blank line before the checkpoint")
        if not line:
            break
        if len(hashes) == MAX_PROOF_HASHES:
            raise MalformedError(f"proof has more than {MAX_PROOF_HASHES} hashes")
        value = b64decode_canonical(line, f"proof hash {len(hashes)}")
        if len(value) != HASH_SIZE:
            raise MalformedError(f"proof hash {len(hashes)} is {len(value)} bytes, not {HASH_SIZE}")
        hashes.append(value)

    checkpoint = text[pos:].encode("utf-8")
    note = parse_note(checkpoint)
    parse_checkpoint_text(note.text)
    return TlogProof(index=index, hashes=hashes, checkpoint=checkpoint, extra=extra)


def verify_tlog_proof(
    proof: TlogProof,
    leaf_hash: bytes,
    log_verifier: Verifier,
    *,
    origin: str | None = None,
    witness_verifiers: Sequence[Verifier] = (),
    threshold: int = 0,
) -> Checkpoint:
    """Verify that the leaf ``leaf_hash`` is at ``proof.index`` in a checkpoint the log signed.

    Args:
        proof: a parsed proof.
        leaf_hash: SHA-256(0x00 || entry), computed by the caller from the entry itself.
        log_verifier: the log's key.
        origin: the expected origin; by default the log key's name.
        witness_verifiers: the witnesses' keys for a k-of-n policy.
        threshold: how many witnesses must cosign (0: no witness policy).

    Returns:
        The verified checkpoint.

    Raises:
        MalformedError: the checkpoint does not parse.
        SignatureError: the log signature (or a known witness's) is bad or missing.
        VerificationError: wrong origin, too few cosignatures, or the inclusion proof fails.
    """
    # (1) The checkpoint's origin and the log's signature.
    cp = open_checkpoint(proof.checkpoint, log_verifier, origin=origin)
    # (2) The witness policy.
    if threshold:
        verify_cosignatures(proof.checkpoint, witness_verifiers, threshold)
    # (3) The inclusion proof against the checkpoint's root.
    merkle.verify_inclusion(proof.index, cp.size, leaf_hash, proof.hashes, cp.root)
    return cp

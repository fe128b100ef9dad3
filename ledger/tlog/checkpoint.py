"""C2SP checkpoints (c2sp.org/tlog-checkpoint) and witness cosignatures (c2sp.org/tlog-cosignature).

A checkpoint is a signed note whose text is::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <root hash, standard base64>\\n
    [<non-empty extension line>\\n ...]

The log signs it with a key whose name SHOULD equal the origin; witnesses add cosignatures.
Parsing accepts exactly one encoding of each field.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import MalformedError, SignatureError, VerificationError
from ledger.tlog.hashing import HASH_SIZE
from ledger.tlog.note import (
    Ed25519CosignatureSigner,
    NoteSigner,
    Verifier,
    append_signatures,
    parse_note,
    sign_note,
    verify_note,
    verify_note_result,
)

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CosignatureResult",
    "cosign_checkpoint",
    "cosignatures_result",
    "format_checkpoint_text",
    "open_checkpoint",
    "parse_checkpoint_text",
    "sign_checkpoint",
    "verify_cosignatures",
]

#: Tree sizes are uint64.
MAX_TREE_SIZE = (1 << 64) - 1

#: canonical decimal of at most 20 digits (every uint64): int() never meets a huge literal
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_MIN_LINES = 3


@dataclass(frozen=True)
class Checkpoint:
    """A log's commitment to its tree of ``size`` leaves with Merkle root ``root``."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or self.origin != self.origin.strip():
            raise MalformedError(
                f"checkpoint origin {self.origin!r} must be one non-empty line "
                "without surrounding spaces"
            )
        if _CONTROL.search(self.origin):
            raise MalformedError("checkpoint origin contains a control character")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise MalformedError("checkpoint size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedError(f"checkpoint size {self.size} is not a uint64")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise MalformedError(f"checkpoint root must be {HASH_SIZE} bytes")
        for line in self.extensions:
            if not line or "\n" in line or _CONTROL.search(line):
                raise MalformedError("checkpoint extension lines must be non-empty single lines")


def format_checkpoint_text(cp: Checkpoint) -> str:
    """The note text of ``cp``: origin, size, base64 root and extension lines, each + LF."""
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root).decode("ascii"), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse a checkpoint's note text (not the signed note: see :func:`open_checkpoint`).

    Raises:
        MalformedError: fewer than three lines, an empty origin, a size that is not canonical
            decimal, a root that is not 32 bytes of canonical base64, or an empty extension line.
    """
    if not text.endswith("\n"):
        raise MalformedError("checkpoint text does not end in a newline")
    if _CONTROL.search(text):
        raise MalformedError("checkpoint text contains a control character other than newline")
    lines = text[:-1].split("\n")
    if len(lines) < _MIN_LINES:
        raise MalformedError("checkpoint text has fewer than three lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise MalformedError("checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise MalformedError(f"checkpoint size {size_text[:30]!r} is not canonical decimal")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise MalformedError("checkpoint size does not fit in 64 bits")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("checkpoint root is not valid standard base64") from exc
    if base64.b64encode(root).decode("ascii") != root_text:
        raise MalformedError("checkpoint root is not canonical base64")
    if len(root) != HASH_SIZE:
        raise MalformedError(f"checkpoint root is {len(root)} bytes, not {HASH_SIZE}")
    if any(not line for line in extensions):
        raise MalformedError("checkpoint has an empty extension line")
    return Checkpoint(origin=origin, size=size, root=root, extensions=tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> bytes:
    """The signed note of ``cp`` with the log's signature (the key name SHOULD be the origin)."""
    return sign_note(format_checkpoint_text(cp), [signer])


def open_checkpoint(
    note_bytes: bytes | str, verifier: Verifier, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with the log's key and return it.

    Other signatures (witness cosignatures) are ignored here; see :func:`verify_cosignatures`.

    Args:
        note_bytes: the signed note.
        verifier: the log's verifier.
        origin: the expected origin line; by default the verifier's key name.

    Raises:
        MalformedError: the note or its checkpoint text does not parse.
        SignatureError: the log's signature is missing or bad.
        VerificationError: the origin is not the expected one.
    """
    # (1) The note parses and the log's key verifies it (C2SP signed-note rules).
    note = verify_note(note_bytes, [verifier])
    # (2) Its text is a checkpoint.
    cp = parse_checkpoint_text(note.text)
    # (3) It is the expected log's checkpoint: the key's signature alone does not say which log.
    expected = verifier.name if origin is None else origin
    if cp.origin != expected:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the expected origin {expected!r}"
        )
    return cp


def cosign_checkpoint(
    note_bytes: bytes | str, cosigner: Ed25519CosignatureSigner, *, timestamp: int
) -> bytes:
    """``note_bytes`` with a cosignature/v1 line added at ``timestamp`` (Unix seconds).

    This only signs: a witness verifies the log signature and consistency before calling it.

    Raises:
        MalformedError: the note or its checkpoint text does not parse.
    """
    note = parse_note(note_bytes)
    parse_checkpoint_text(note.text)
    return append_signatures(note_bytes, [cosigner.sign(note.text, timestamp=timestamp)])


@dataclass(frozen=True)
class CosignatureResult:
    """Which witnesses cosigned a checkpoint, and when (for UIs and policies)."""

    checkpoint: Checkpoint
    #: witness name -> cosignature timestamp (None for a plain note signature), first wins
    witnesses: dict[str, int | None]
    #: ``name+hexid`` of witness keys whose signature was bad
    failed: tuple[str, ...]
    threshold: int

    @property
    def ok(self) -> bool:
        return not self.failed and len(self.witnesses) >= self.threshold

    def __bool__(self) -> bool:
        return self.ok


def cosignatures_result(
    note_bytes: bytes | str, witness_verifiers: Sequence[Verifier], threshold: int
) -> CosignatureResult:
    """Check a k-of-n witness policy on a checkpoint without raising for failed signatures.

    The log's own signature is not checked here (use :func:`open_checkpoint` for it). Witnesses
    are counted by name, so two keys of one witness count once.

    Raises:
        MalformedError: the note or its checkpoint text does not parse.
        ValueError: ``threshold`` is not between 1 and the number of distinct witness names.
    """
    names = {verifier.name for verifier in witness_verifiers}
    if not 1 <= threshold <= len(names):
        raise ValueError(
            f"witness threshold {threshold} must be between 1 and the {len(names)} witnesses"
        )
    result = verify_note_result(note_bytes, witness_verifiers)
    cp = parse_checkpoint_text(result.note.text)
    witnesses: dict[str, int | None] = {}
    for item in result.verified:
        witnesses.setdefault(item.name, item.timestamp)
    failed = tuple(sig.key_label for sig in result.failed)
    return CosignatureResult(cp, witnesses, failed, threshold)


def verify_cosignatures(
    note_bytes: bytes | str, witness_verifiers: Sequence[Verifier], threshold: int
) -> list[str]:
    """Apply a k-of-n witness policy; return the names of the witnesses that cosigned.

    Raises:
        MalformedError: the note or its checkpoint text does not parse.
        SignatureError: a known witness key's signature is bad (C2SP: the note is invalid).
        VerificationError: fewer than ``threshold`` witnesses cosigned.
        ValueError: ``threshold`` is not between 1 and the number of witnesses.
    """
    result = cosignatures_result(note_bytes, witness_verifiers, threshold)
    if result.failed:
        raise SignatureError(f"invalid cosignature for key {', '.join(result.failed)}")
    if len(result.witnesses) < threshold:
        raise VerificationError(
            f"{len(result.witnesses)} of the required {threshold} witness cosignatures verified"
        )
    return list(result.witnesses)

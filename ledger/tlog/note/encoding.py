"""The signed-note text format (c2sp.org/signed-note): values, strict codecs, parse and format.

Pure and strict: every input that is not in the one accepted encoding raises
:class:`~ledger.errors.MalformedError`. Key names and key ids are defined here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from ledger.errors import MalformedError, TooLargeError

MAX_NOTE_BYTES = 1 << 20
#: Most signature lines accepted (golang.org/x/mod caps at 100; C2SP requires at least 16).
MAX_NOTE_SIGNATURES = 100

SIG_ED25519 = 0x01
SIG_ECDSA = 0x02
SIG_COSIGNATURE_V1 = 0x04
SIG_RFC6962 = 0x05

_SIG_PREFIX = "\u2014 "  # em dash, space
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_TIMESTAMP_SIZE = 8
_MIN_SIGNATURE_BYTES = 5  # a 4-byte key id and at least one signature byte
_MAX_UINT64 = (1 << 64) - 1

# Every C0 control character except LF (golang.org/x/mod rejects the same set).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
#: canonical decimal of at most 20 digits (every uint64): int() never meets a huge literal
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key id and the signature bytes after it."""

    name: str
    key_id: int
    signature: bytes

    @property
    def key_label(self) -> str:
        """``name+hexid``, how errors and UIs name the key."""
        return f"{self.name}+{self.key_id:08x}"


@dataclass
class Note:
    """A parsed signed note: its text (ending in LF) and its signature lines in order."""

    text: str
    signatures: list[Signature]


# --------------------------------------------------------------------------------------------
# Small strict codecs


def b64decode_canonical(value: str, what: str) -> bytes:
    """Standard base64 with padding, in its one canonical form (MalformedError otherwise).

    The one strict decoder for the text formats: notes, tlog-proof, witness requests.
    """
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} is not valid standard base64") from exc
    if base64.b64encode(decoded).decode("ascii") != value:
        raise MalformedError(f"{what} is not canonical base64")
    return decoded


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """A key name is non-empty and contains no Unicode space, no ``+`` and no control character."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _CONTROL.search(name) is None
    )


def _check_key_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}: it must be non-empty with no space or '+'")


def _key_id(name: str, sig_type: int, key: bytes) -> int:
    """SHA-256(name || LF || type || key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + key).digest()
    return int.from_bytes(digest[:4], "big")


def _to_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


# --------------------------------------------------------------------------------------------
# Parse and format


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note without verifying it.

    Args:
        data: the note as bytes (or str).

    Returns:
        The note's text and its signatures, in order (duplicates kept).

    Raises:
        TooLargeError: the note is over ``MAX_NOTE_BYTES``.
        MalformedError: anything else that is not a well-formed signed note.
    """
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedError("note is not valid UTF-8") from exc
    else:
        raw = bytes(data)
    if len(raw) > MAX_NOTE_BYTES:
        raise TooLargeError(f"note is {len(raw)} bytes, over the limit of {MAX_NOTE_BYTES}")
    try:
        message = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("note is not valid UTF-8") from exc
    if _CONTROL.search(message):
        raise MalformedError("note contains a control character other than newline")

    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedError("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block:
        raise MalformedError("note has no signature lines")
    if not block.endswith("\n"):
        raise MalformedError("note's last signature line does not end in a newline")

    lines = block[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise MalformedError(
            f"note has {len(lines)} signature lines, over the limit of {MAX_NOTE_SIGNATURES}"
        )
    return Note(text=text, signatures=[_parse_signature_line(line) for line in lines])


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedError(f"note signature line does not start with an em dash: {line[:40]!r}")
    name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not encoded:
        raise MalformedError("note signature line has no signature after the key name")
    if not is_valid_key_name(name):
        raise MalformedError(f"note signature line has an invalid key name {name!r}")
    raw = b64decode_canonical(encoded, f"signature of {name}")
    if len(raw) < _MIN_SIGNATURE_BYTES:
        raise MalformedError(f"signature of {name} is {len(raw)} bytes, shorter than 5")
    return Signature(name=name, key_id=int.from_bytes(raw[:4], "big"), signature=raw[4:])


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise ValueError("note text must end in a newline")
    if _CONTROL.search(text):
        raise ValueError("note text contains a control character other than newline")


def format_note(note: Note) -> bytes:
    """The signed-note bytes of ``note`` (the inverse of :func:`parse_note`).

    Raises:
        ValueError: the text does not end in a newline, a name is invalid, a key id is out of
            range, or there are no (or too many) signatures.
    """
    _check_text(note.text)
    if not note.signatures:
        raise ValueError("a signed note needs at least one signature")
    if len(note.signatures) > MAX_NOTE_SIGNATURES:
        raise ValueError(f"a signed note carries at most {MAX_NOTE_SIGNATURES} signatures")
    lines = [note.text, "\n"]
    for sig in note.signatures:
        _check_key_name(sig.name)
        if not 0 <= sig.key_id <= 0xFFFFFFFF:
            raise ValueError(f"key id {sig.key_id} of {sig.name} is not a uint32")
        if not sig.signature:
            raise ValueError(f"signature of {sig.name} is empty")
        encoded = _b64encode(sig.key_id.to_bytes(4, "big") + sig.signature)
        lines.append(f"{_SIG_PREFIX}{sig.name} {encoded}\n")
    return "".join(lines).encode("utf-8")

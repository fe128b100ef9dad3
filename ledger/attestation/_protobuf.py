"""A minimal protobuf wire-format reader (enough for go-tpm-tools' ``attest.Attestation``).

Only the wire format is decoded: each message becomes a list of ``(field number, wire type,
value)`` where value is an ``int`` (varint, fixed32, fixed64) or ``bytes`` (length-delimited).
The schema lives with the caller. Groups (wire types 3/4) are refused.
"""

from __future__ import annotations

from ledger.errors import MalformedError

__all__ = ["fields"]

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if offset >= len(data):
            msg = f"{what}: truncated varint"
            raise MalformedError(msg)
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= 1 << 64:
                msg = f"{what}: varint longer than 64 bits"
                raise MalformedError(msg)
            return value, offset
    msg = f"{what}: varint longer than 10 bytes"
    raise MalformedError(msg)


def fields(data: bytes, what: str) -> list[tuple[int, int, int | bytes]]:
    """Decode one message's fields in order.

    Raises:
        MalformedError: truncated input, a bad wire type, or field number 0.
    """
    out: list[tuple[int, int, int | bytes]] = []
    offset = 0
    while offset < len(data):
        key, offset = _varint(data, offset, what)
        number, wire = key >> 3, key & 7
        if number == 0:
            msg = f"{what}: field number 0"
            raise MalformedError(msg)
        value: int | bytes
        if wire == VARINT:
            value, offset = _varint(data, offset, what)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if offset + size > len(data):
                msg = f"{what}: truncated fixed-width field {number}"
                raise MalformedError(msg)
            value = int.from_bytes(data[offset : offset + size], "little")
            offset += size
        elif wire == LENGTH_DELIMITED:
            length, offset = _varint(data, offset, what)
            if offset + length > len(data):
                msg = f"{what}: field {number} runs past the end ({length} bytes)"
                raise MalformedError(msg)
            value = bytes(data[offset : offset + length])
            offset += length
        else:
            msg = f"{what}: unsupported wire type {wire} in field {number}"
            raise MalformedError(msg)
        out.append((number, wire, value))
    return out

"""A minimal DER reader for the Intel SGX PCK certificate extension (OID 1.2.840.113741.1.13.1).

``cryptography`` hands an unknown extension over as raw DER and (before its experimental
``hazmat.asn1`` module) exposes no generic DER decoder, so the few TLVs of this extension —
SEQUENCE, OBJECT IDENTIFIER, INTEGER, ENUMERATED, OCTET STRING — are read here, bounds-checked,
definite lengths only (DER forbids the indefinite form).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import MalformedError

__all__ = ["SEQUENCE", "Tlv", "decode_integer", "decode_oid", "read_all"]

INTEGER, OCTET_STRING, OID, ENUMERATED, SEQUENCE = 0x02, 0x04, 0x06, 0x0A, 0x30
#: nesting and size bounds: the PCK extension is a few hundred bytes, three levels deep
MAX_DEPTH = 8
MAX_LENGTH = 1 << 16


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes

    def children(self, what: str, depth: int = 0) -> list[Tlv]:
        if self.tag != SEQUENCE:
            msg = f"{what} is not a SEQUENCE (tag {self.tag:#x})"
            raise MalformedError(msg)
        if depth > MAX_DEPTH:
            msg = f"{what} is nested too deeply"
            raise MalformedError(msg)
        return read_all(self.value, what)


def _read_one(data: bytes, offset: int, what: str) -> tuple[Tlv, int]:
    if offset + 2 > len(data):
        msg = f"{what} is truncated at byte {offset}"
        raise MalformedError(msg)
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        msg = f"{what} uses a multi-byte tag, which this extension never does"
        raise MalformedError(msg)
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or offset + count > len(data):
            msg = f"{what} has an invalid length field"
            raise MalformedError(msg)
        length = int.from_bytes(data[offset : offset + count], "big")
        if length < 0x80 or data[offset] == 0:
            msg = f"{what} has a non-minimal (not DER) length"
            raise MalformedError(msg)
        offset += count
    if length > MAX_LENGTH or offset + length > len(data):
        msg = f"{what} is truncated: a value of {length} bytes at byte {offset}"
        raise MalformedError(msg)
    return Tlv(tag, data[offset : offset + length]), offset + length


def read_all(data: bytes, what: str) -> list[Tlv]:
    """Every TLV in ``data`` (which must hold nothing else)."""
    out = []
    offset = 0
    while offset < len(data):
        tlv, offset = _read_one(data, offset, what)
        out.append(tlv)
    return out


def decode_oid(tlv: Tlv, what: str) -> str:
    if tlv.tag != OID or not tlv.value or tlv.value[-1] & 0x80:
        msg = f"{what} is not an OBJECT IDENTIFIER"
        raise MalformedError(msg)
    arcs: list[int] = []
    value = 0
    for byte in tlv.value:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_integer(tlv: Tlv, what: str) -> int:
    if tlv.tag not in (INTEGER, ENUMERATED) or not 1 <= len(tlv.value) <= 8:
        msg = f"{what} is not a small INTEGER"
        raise MalformedError(msg)
    return int.from_bytes(tlv.value, "big", signed=True)

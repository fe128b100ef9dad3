"""A bounds-checked reader for the fixed binary layouts of TEE evidence.

Every read past the end raises :class:`~ledger.errors.MalformedError` naming the structure and
field, so parsers never leak ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import struct

from ledger.errors import MalformedError

__all__ = ["Reader"]


class Reader:
    """Sequential reads from ``data``; ``what`` names the structure in error messages."""

    def __init__(self, data: bytes, what: str, *, big_endian: bool = False) -> None:
        self.data = memoryview(data)
        self.what = what
        self.offset = 0
        self._order = ">" if big_endian else "<"

    def remaining(self) -> int:
        return len(self.data) - self.offset

    def bytes(self, size: int, field: str) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            msg = (
                f"{self.what} is truncated: {field} needs {size} bytes at offset "
                f"{self.offset:#x}, {max(self.remaining(), 0)} left"
            )
            raise MalformedError(msg)
        out = bytes(self.data[self.offset : self.offset + size])
        self.offset += size
        return out

    def _int(self, fmt: str, size: int, field: str) -> int:
        value: int = struct.unpack(self._order + fmt, self.bytes(size, field))[0]
        return value

    def u8(self, field: str) -> int:
        return self._int("B", 1, field)

    def u16(self, field: str) -> int:
        return self._int("H", 2, field)

    def u32(self, field: str) -> int:
        return self._int("I", 4, field)

    def u64(self, field: str) -> int:
        return self._int("Q", 8, field)

    def sized(self, length_size: int, field: str) -> bytes:
        """A length-prefixed byte string (TPM2B style) with a ``length_size``-byte length."""
        length = {1: self.u8, 2: self.u16, 4: self.u32}[length_size](f"{field} length")
        return self.bytes(length, field)

    def end(self) -> None:
        if self.remaining():
            msg = f"{self.what} has {self.remaining()} unexpected trailing bytes"
            raise MalformedError(msg)

"""RFC 9162 §2.1 hashing: leaf and node hashes with their domain-separation prefixes."""

from __future__ import annotations

import hashlib

from ledger.errors import MalformedError

__all__ = ["CHAIN_SEED", "EMPTY_ROOT", "HASH_SIZE", "chain_hash", "check_hash", "leaf_hash", "node_hash"]

HASH_SIZE = 32
#: MTH({}) = SHA-256 of the empty string: the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: The chain hash before the first entry.
CHAIN_SEED = bytes(HASH_SIZE)

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    """SHA-256(previous chain_hash || leaf_hash): the entries' hash chain (CHAIN_SEED before entry 0)."""
    return _sha256(previous + leaf).digest()


def check_hash(value: object, what: str = "hash") -> bytes:
    """Return ``value`` if it is exactly 32 bytes; raise MalformedError otherwise."""
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise MalformedError(f"{what} must be {HASH_SIZE} bytes, got {size}")
    return bytes(value)

"""Shared fixtures of the Merkle conformance tests: distinct leaves, the RFC-literal reference
tree over them, and small helpers (bit flips, refusals, the expected subtrees and frontier)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings

from ledger.errors import VerificationError
from tests.unit.merkle_reference import ReferenceTree, rfc_leaf_hash

#: Exhaustive sweeps cover every tree up to this size (every power-of-two boundary up to 128, and
#: a few sizes past it).
SWEEP_MAX = 130
#: Property tests draw sizes up to this.
PROPERTY_MAX = 5000

# Distinct leaves, so that a proof for one position cannot verify for another by accident.
LEAVES = [rfc_leaf_hash(b"leaf %d" % i) for i in range(PROPERTY_MAX)]
REF = ReferenceTree(LEAVES)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with one bit flipped (bit counted from the first byte's most significant bit)."""
    changed = bytearray(value)
    changed[(bit // 8) % len(changed)] ^= 0x80 >> (bit % 8)
    return bytes(changed)


def rejects(verify: Callable[..., None], *args: Any) -> bool:
    """True when ``verify`` refuses with a VerificationError; any other exception propagates."""
    try:
        verify(*args)
    except VerificationError:
        return True
    return False


def complete_subtrees(size: int) -> dict[tuple[int, int], bytes]:
    """Every complete subtree (level, index) within the first ``size`` leaves (reference hashes)."""
    nodes = {}
    level = 0
    while (1 << level) <= size:
        for index in range(size >> level):
            nodes[(level, index)] = REF.subtree(level, index)
        level += 1
    return nodes


def expected_frontier(size: int) -> list[tuple[int, int]]:
    """One complete subtree per set bit of size, biggest (leftmost) first."""
    nodes, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


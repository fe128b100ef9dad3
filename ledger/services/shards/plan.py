"""Planning an audit: the tree cut into shards, each one complete subtree (RFC 9162 §2.1).

The aligned ranges ``[k * 2**s, (k + 1) * 2**s)``, then the decomposition of the tail into
smaller complete subtrees (``ledger.merkle.range_nodes``). A shard is one such subtree, so it
owns every interior hash inside it and hands on exactly one root.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import MalformedError
from ledger.merkle import NodeId, range_nodes

__all__ = [
    "AUTO_MAX_LEVEL",
    "AUTO_MIN_LEVEL",
    "MAX_SHARD_LEVEL",
    "TARGET_SHARDS",
    "Shard",
    "plan_shards",
    "shard_level_for",
]


#: Shards per audit the automatic choice aims at: enough to keep a few workers busy to the end.
TARGET_SHARDS = 64
#: The automatic shard size stays within 2**10 .. 2**16 entries.
AUTO_MIN_LEVEL = 10
AUTO_MAX_LEVEL = 16
#: A requested shard size may be at most 2**20 entries (one shard must fit a worker's time limit).
MAX_SHARD_LEVEL = 20


@dataclass(frozen=True)
class Shard:
    """The complete subtree ``(level, start >> level)``: leaves ``[start, end)``."""

    number: int
    level: int
    start: int

    @property
    def end(self) -> int:
        return self.start + (1 << self.level)

    @property
    def node(self) -> NodeId:
        return (self.level, self.start >> self.level)


def shard_level_for(size: int, *, target_shards: int = TARGET_SHARDS) -> int:
    """The shard level (shards of 2**level entries) that cuts ``size`` into about ``target_shards``."""
    if size <= 0:
        return AUTO_MIN_LEVEL
    wanted = max(1, -(-size // target_shards))
    level = (wanted - 1).bit_length()
    return min(max(level, AUTO_MIN_LEVEL), AUTO_MAX_LEVEL)


def plan_shards(size: int, level: int) -> list[Shard]:
    """Full subtrees of 2**level leaves, then the tail's complete subtrees, left to right."""
    if size < 0:
        raise MalformedError(f"a tree size cannot be negative, got {size}")
    if not 0 <= level <= MAX_SHARD_LEVEL:
        raise MalformedError(f"a shard level must be between 0 and {MAX_SHARD_LEVEL}, got {level}")
    full = size >> level
    shards = [Shard(k, level, k << level) for k in range(full)]
    for node_level, node_index in range_nodes(full << level, size):
        shards.append(Shard(len(shards), node_level, node_index << node_level))
    return shards

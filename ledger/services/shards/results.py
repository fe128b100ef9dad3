"""What a shard finds (``ShardResult``, stored as JSON in ``audit_shards``) and the combined
verdict (``DistributedReport``: ``provledger audit --json``'s shape plus the first bad shard)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.services.audit import MAX_PROBLEMS, Problem
from ledger.services.shards.plan import Shard

__all__ = ["DistributedReport", "ShardResult"]


def _order(p: Problem) -> tuple[bool, int]:
    return (p.index is None, p.index or 0)


@dataclass
class _Problems:
    """At most MAX_PROBLEMS problems: the ones with the lowest indexes, whatever order they come in
    (an interior hash is found after the entries it covers, and must not be the one dropped)."""

    _items: list[Problem] = field(default_factory=list)
    truncated: bool = False

    def add(self, index: int | None, kind: str, message: str) -> None:
        self._items.append(Problem(index, kind, message))
        if len(self._items) > 2 * MAX_PROBLEMS:
            self._items = self.items
            self.truncated = True

    @property
    def items(self) -> list[Problem]:
        ordered = sorted(self._items, key=_order)
        if len(ordered) > MAX_PROBLEMS:
            self.truncated = True
        return ordered[:MAX_PROBLEMS]


@dataclass
class ShardResult:
    """What one shard found, and what the combiner needs from it (JSON in ``audit_shards``)."""

    shard: int
    level: int
    start: int
    end: int
    #: the subtree root's stored hash (hex); None when entries are missing
    root: str | None
    #: the stored right edge before ``start`` the checkpoints were checked against (hex);
    #: None when a node of it is missing
    frontier_before: list[str] | None
    #: whether the root's stored hash disagrees with its stored children
    root_flagged: bool = False
    #: [size, local root, signed root] of checkpoints left for the combiner (no right edge)
    deferred: list[list[Any]] = field(default_factory=list)
    entries: int = 0
    signatures: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "level": self.level,
            "start": self.start,
            "end": self.end,
            "root": self.root,
            "root_flagged": self.root_flagged,
            "frontier_before": self.frontier_before,
            "deferred": self.deferred,
            "entries": self.entries,
            "signatures": self.signatures,
            "checkpoints": self.checkpoints,
            "problems": [_problem_json(p) for p in self.problems],
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ShardResult:
        return cls(
            shard=doc["shard"],
            level=doc["level"],
            start=doc["start"],
            end=doc["end"],
            root=doc["root"],
            frontier_before=doc["frontier_before"],
            root_flagged=doc["root_flagged"],
            deferred=doc["deferred"],
            entries=doc["entries"],
            signatures=doc["signatures"],
            checkpoints=doc["checkpoints"],
            problems=[Problem(p["index"], p["kind"], p["message"]) for p in doc["problems"]],
            truncated=doc["truncated"],
        )


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"index": p.index, "kind": p.kind, "message": p.message}


@dataclass
class DistributedReport:
    """The combined verdict: ``provledger audit --json``'s shape plus the shard of the first bad index."""

    tree_size: int
    problems: list[Problem]
    checkpoints_checked: int
    shards: list[Shard]
    truncated: bool = False
    signatures_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        indexes = [p.index for p in self.problems if p.index is not None]
        return min(indexes) if indexes else None

    def shard_of(self, index: int | None) -> Shard | None:
        if index is None:
            return None
        for shard in self.shards:
            if shard.start <= index < shard.end:
                return shard
        return None

    def to_json(self) -> dict[str, Any]:
        shard = self.shard_of(self.first_bad_index)
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "first_bad_index": self.first_bad_index,
            "problems": [_problem_json(p) for p in self.problems],
            "shard": None if shard is None else {"number": shard.number, "start": shard.start, "end": shard.end},
        }

    def checked(self) -> dict[str, Any]:
        """How much was re-measured (shown beside the report, not in it)."""
        return {
            "shards": len(self.shards),
            "entries": self.tree_size,
            "signatures": self.signatures_checked,
            "checkpoints": self.checkpoints_checked,
            "problems_truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, report: dict[str, Any], checked: dict[str, Any], shards: list[Shard]) -> DistributedReport:
        return cls(
            tree_size=report["tree_size"],
            problems=[Problem(p["index"], p["kind"], p["message"]) for p in report["problems"]],
            checkpoints_checked=checked["checkpoints"],
            shards=shards,
            truncated=checked["problems_truncated"],
            signatures_checked=checked["signatures"],
        )

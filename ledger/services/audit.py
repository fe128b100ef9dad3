"""Re-measure the whole ledger: the tamper-evidence check behind ``audit`` and ``serve``.

One pass over two ordered streams (entries and interior hashes), memory flat in n:

1. each entry's leaf hash is recomputed from its stored bytes and compared with the stored one;
2. the hash chain is recomputed link by link from the stored leaf hashes;
3. every stored interior hash is recomputed from the leaf hashes below it;
4. every stored checkpoint's signature is verified with the log key, and its root is compared
   with the root recomputed at its size;
5. the sequencer's size, the entry count and the latest checkpoint must agree.

``first_bad_index`` is the lowest entry index whose bytes, chain hash, covering interior hash
or covering checkpoint is wrong (a wrong checkpoint of size s names s - 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from itertools import chain
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ledger.checkpoint import open_checkpoint
from ledger.db import store
from ledger.errors import LedgerError
from ledger.hashing import CHAIN_SEED, EMPTY_ROOT, node_hash
from ledger.services.log import LogIdentity

__all__ = ["AuditReport", "Problem", "audit"]

#: Stop listing problems past this many (the first bad index is what matters).
MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    index: int | None
    kind: str
    message: str


@dataclass
class AuditReport:
    tree_size: int
    problems: list[Problem] = field(default_factory=list)
    checkpoints_checked: int = 0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        indexes = [p.index for p in self.problems if p.index is not None]
        return min(indexes) if indexes else None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "first_bad_index": self.first_bad_index,
            "problems": [asdict(p) for p in self.problems],
        }


class _Problems:
    def __init__(self, report: AuditReport) -> None:
        self.report = report

    def add(self, index: int | None, kind: str, message: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(index, kind, message))
        else:
            self.report.truncated = True


def audit(
    session: Session,
    log: LogIdentity,
    *,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 100_000,  # noqa: ARG001 - kept for callers; progress is per chunk
) -> AuditReport:
    """Re-measure everything in the store; never raises for what it finds, only reports it."""
    declared = store.current_size(session)
    report = AuditReport(tree_size=declared)
    problems = _Problems(report)
    info = store.log_info(session)
    if info.origin != log.origin or info.vkey != log.vkey:
        problems.add(None, "log_identity", f"the store belongs to log {info.vkey}, not to {log.vkey}")

    sha256 = hashlib.sha256
    # The right edge of the tree as (stored hash, whether that node was found inconsistent),
    # one per set bit of the size, lowest level last. Each stored interior hash is checked
    # against its two STORED children, so damage is named at the node where it is; a parent
    # whose child is already inconsistent is not reported again.
    edge: list[tuple[bytes, bool]] = []
    head = CHAIN_SEED
    expected = 0
    position = 0
    hashes = chain.from_iterable(store.stream_chunks(session, "tree_hashes", ("position", "hash")))
    pending = next(hashes, None)
    checkpoints = iter([(c.tree_size, c.root_hash, c.note) for c in page] for page in _checkpoint_pages(session))
    cps = chain.from_iterable(checkpoints)
    cp = next(cps, None)
    next_cp = cp[0] if cp is not None else -1

    def check_checkpoints(size: int) -> None:
        nonlocal cp, next_cp
        while cp is not None and cp[0] <= size:
            if cp[0] == size:
                _check_checkpoint(cp, _root(edge), log, problems)
            else:
                problems.add(max(cp[0] - 1, 0), "checkpoint", f"checkpoint of size {cp[0]} covers missing entries")
            report.checkpoints_checked += 1
            cp = next(cps, None)
        next_cp = cp[0] if cp is not None else -1

    check_checkpoints(0)
    for rows in store.stream_chunks(session, "entries", ("idx", "data", "leaf_hash", "chain_hash")):
        for idx, data, leaf, stored_chain in rows:
            if idx != expected:
                problems.add(expected, "missing_entry", f"entries {expected}..{idx - 1} are missing")
                expected = idx  # re-measure the rest as stored
            if sha256(b"\x00" + data).digest() != leaf:
                problems.add(idx, "leaf_hash", f"entry {idx}: its bytes do not hash to its stored leaf hash")
            # The chain and the tree are re-measured from the STORED leaf hashes, so that each
            # kind of damage is named where it is: altered bytes at their entry (above), an
            # altered leaf hash where the chain breaks, an altered interior hash where it is.
            head = sha256(head + leaf).digest()
            if head != stored_chain:
                problems.add(idx, "chain_hash", f"entry {idx}: the hash chain breaks here")
                head = stored_chain  # re-synchronise so that one break is reported once
            if idx & 1:
                acc, flagged, level, node_index = leaf, False, 0, idx
                while (idx >> level) & 1:
                    left, left_flagged = edge.pop()
                    computed = sha256(b"\x01" + left + acc).digest()
                    level += 1
                    node_index >>= 1
                    while pending is not None and pending[0] < position:
                        pending = next(hashes, None)
                    if pending is None or pending[0] != position:
                        stored, bad = computed, True
                        problems.add(node_index << level, "interior_hash", f"interior hash ({level}, {node_index}) is missing")
                    else:
                        stored = pending[1]
                        bad = stored != computed
                        if bad and not (flagged or left_flagged):
                            problems.add(
                                node_index << level,
                                "interior_hash",
                                f"interior hash ({level}, {node_index}) over entries {node_index << level}.."
                                f"{((node_index + 1) << level) - 1} does not match the hashes below it",
                            )
                        pending = next(hashes, None)
                    acc, flagged = stored, bad
                    position += 1
                edge.append((acc, flagged))
            else:
                edge.append((leaf, False))
            expected = idx + 1
            if expected == next_cp:
                check_checkpoints(expected)
        if progress is not None:
            progress(expected, declared)
        if cp is not None and next_cp < expected:
            check_checkpoints(expected)

    entries = expected
    if entries != declared:
        first_missing = min(entries, declared)
        problems.add(
            first_missing if entries < declared else declared,
            "size",
            f"the sequencer says {declared} entries but the store holds {entries}",
        )
    while pending is not None:
        if pending[0] >= position:
            problems.add(None, "interior_hash", f"interior hash at position {pending[0]} belongs to no entry")
            break
        pending = next(hashes, None)
    while cp is not None:
        problems.add(max(cp[0] - 1, 0), "checkpoint", f"checkpoint of size {cp[0]} covers entries the store does not hold")
        cp = next(cps, None)
    latest = store.latest_checkpoint(session)
    if latest is None or latest.tree_size != declared:
        problems.add(
            max(declared - 1, 0),
            "checkpoint",
            f"the latest checkpoint is of size {latest.tree_size if latest else 'none'}, the tree of size {declared}",
        )
    if progress is not None:
        progress(entries, declared)
    return report


def _checkpoint_pages(session: Session) -> Iterator[list[Any]]:
    after = -1
    while page := store.list_checkpoints(session, after=after, limit=5000):
        yield page
        after = page[-1].tree_size


def _root(edge: list[tuple[bytes, bool]]) -> bytes:
    if not edge:
        return EMPTY_ROOT
    acc = edge[-1][0]
    for h, _ in reversed(edge[:-1]):
        acc = node_hash(h, acc)
    return acc


def _check_checkpoint(cp: tuple[int, bytes, str], root: bytes, log: LogIdentity, problems: _Problems) -> None:
    tree_size, root_hash, note = cp
    index = max(tree_size - 1, 0)
    try:
        signed = open_checkpoint(note.encode("utf-8"), log.verifier, origin=log.origin)
    except LedgerError as exc:
        problems.add(index, "checkpoint", f"checkpoint of size {tree_size}: {exc.diagnostics()}")
        return
    if signed.size != tree_size or signed.root != root_hash:
        problems.add(index, "checkpoint", f"checkpoint of size {tree_size}: its note and its row disagree")
    elif signed.root != root:
        problems.add(index, "checkpoint", f"checkpoint of size {tree_size}: its root does not match the entries")

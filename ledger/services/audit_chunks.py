"""The hash-level audit's unit of work: one aligned complete subtree of the log, checked wholesale.

``check_subtree`` reads the entries of leaves [start, start + 2**level), the stored interior
hashes their appends created and the checkpoints whose size falls inside, and re-measures them
with list comprehensions (C-speed compares): every leaf hash from the stored bytes, every chain
link from the stored chain hash before the subtree, every interior hash of the subtree from its
two stored children, and every checkpoint's signature. It needs no state from earlier subtrees,
so the audit runs subtrees on every core (``ledger.services.audit``) and folds the results in
order; anything that disagrees makes the result ``ok=False`` and the audit re-measures that
subtree entry by entry to name the damage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from ledger.db import store
from ledger.errors import LedgerError
from ledger.merkle import range_nodes
from ledger.tlog.checkpoint import open_checkpoint
from ledger.tlog.hashing import CHAIN_SEED

__all__ = [
    "CheckpointSeen",
    "SubtreeResult",
    "check_subtree",
    "extra_levels",
    "interior_position",
    "measure_on_every_core",
    "plan_subtrees",
]


@dataclass(frozen=True)
class CheckpointSeen:
    """A checkpoint inside a subtree: its signature checked, and what its root must be made of."""

    tree_size: int
    #: why the note does not open with the log key (None: it opens)
    error: str | None
    #: the note's size or root differs from its row's
    disagrees: bool
    signed_root: bytes | None
    #: the hashes of the complete subtrees of [start, tree_size), left to right
    partial: tuple[bytes, ...]


@dataclass(frozen=True)
class SubtreeResult:
    start: int
    level: int
    ok: bool
    #: the subtree's hash (its top interior hash, or its leaf hash at level 0)
    root: bytes = b""
    #: the stored chain hash of entry start - 1 the links were checked from (the seed at 0)
    prev_chain: bytes = b""
    last_chain: bytes = b""
    #: the stored interior hashes the last append created ABOVE the subtree (checked by the caller,
    #: which holds the left siblings)
    extra: tuple[bytes, ...] = ()
    checkpoints: tuple[CheckpointSeen, ...] = ()


def interior_position(index: int) -> int:
    """The stored position of the first interior hash that appending leaf ``index`` creates: leaf
    j creates one per trailing one bit of j, and over all j < index those add up to
    index - popcount(index)."""
    return index - bin(index).count("1")


def extra_levels(start: int, level: int) -> int:
    """How many interior hashes above an aligned subtree complete at its last leaf."""
    x = start >> level
    return (x ^ (x + 1)).bit_length() - 1


def plan_subtrees(size: int, chunk_level: int, min_level: int) -> list[tuple[int, int]]:
    """(start, level) of the aligned complete subtrees that tile [0, size): full chunks of
    2**chunk_level, then the tail in ever smaller subtrees down to 2**min_level leaves. Leaves
    past the last subtree (fewer than 2**min_level) are left to the entry-by-entry path."""
    plan: list[tuple[int, int]] = []
    start = 0
    while size - start >= 1 << chunk_level:
        plan.append((start, chunk_level))
        start += 1 << chunk_level
    for level in range(chunk_level - 1, min_level - 1, -1):
        if size - start >= 1 << level:
            plan.append((start, level))
            start += 1 << level
    return plan


@lru_cache(maxsize=16)
def _pattern(k: int) -> tuple[tuple[int, ...], ...]:
    """For an aligned subtree of 2**k leaves: the offsets, among the interior hashes its appends
    create (in creation order), of each level's nodes by node index (level 0 unused)."""
    offsets: list[list[int]] = [[] for _ in range(k + 1)]
    position = 0
    for j in range(1 << k):
        level = 0
        while (j >> level) & 1 and level < k:
            level += 1
            offsets[level].append(position)
            position += 1
    return tuple(tuple(o) for o in offsets)


def check_subtree(session: Session, start: int, level: int, verifier: Any, origin: str) -> SubtreeResult:
    """Re-measure leaves [start, start + 2**level) wholesale (see the module docstring)."""
    n = 1 << level
    bad = SubtreeResult(start, level, False)
    first = max(start - 1, 0)
    rows = next(iter(store.stream_chunks(session, "entries", ("idx", "data", "leaf_hash", "chain_hash"),
                                         start=first, end=start + n, chunk=n + 1)), [])
    if start > 0:
        if not rows or rows[0][0] != start - 1:
            return bad
        prev_chain = rows[0][3]
        rows = rows[1:]
    else:
        prev_chain = CHAIN_SEED
    if [r[0] for r in rows] != list(range(start, start + n)):  # every index, as the slow path sees them
        return bad
    sha256 = hashlib.sha256
    leaves = [r[2] for r in rows]  # bytes from both drivers (sqlite3 BLOB, psycopg bytea)
    if [sha256(b"\x00" + r[1]).digest() for r in rows] != leaves:
        return bad
    chains = [r[3] for r in rows]
    # Each stored link from the stored link before it: they all hold exactly when the chain
    # recomputed from prev_chain equals the stored one (by induction), without a call per link.
    if [sha256(h + leaf).digest() for h, leaf in zip([prev_chain, *chains[:-1]], leaves)] != chains:
        return bad
    extra = extra_levels(start, level)
    need = n - 1 + extra
    position = interior_position(start)
    nodes = []
    if need:
        nodes = next(iter(store.stream_chunks(session, "tree_hashes", ("position", "hash"),
                                              start=position, end=position + need, chunk=need)), [])
        if len(nodes) != need or nodes[0][0] != position or nodes[-1][0] != position + need - 1:
            return bad
    stored = [h for _, h in nodes]
    pattern = _pattern(level)
    levels: list[list[bytes]] = [list(leaves)]
    below = levels[0]
    for lv in range(1, level + 1):
        mine = [stored[i] for i in pattern[lv]]
        if [sha256(b"\x01" + x + y).digest() for x, y in zip(below[0::2], below[1::2])] != mine:
            return bad
        levels.append(mine)
        below = mine
    seen = []
    for tree_size, root_hash, note in next(iter(store.stream_chunks(
        session, "checkpoints", ("tree_size", "root_hash", "note"), start=start + 1, end=start + n + 1, chunk=n
    )), []):
        error, disagrees, signed_root = None, False, None
        try:
            signed = open_checkpoint(note.encode("utf-8"), verifier, origin=origin)
        except LedgerError as exc:
            error = f"checkpoint of size {tree_size}: {exc.diagnostics()}"
        else:
            signed_root = signed.root
            disagrees = signed.size != tree_size or signed.root != root_hash
        partial = tuple(levels[lv][i - (start >> lv)] for lv, i in range_nodes(start, tree_size))
        seen.append(CheckpointSeen(tree_size, error, disagrees, signed_root, partial))
    return SubtreeResult(
        start, level, True, root=levels[level][0], prev_chain=prev_chain, last_chain=chains[-1],
        extra=tuple(stored[n - 1 :]), checkpoints=tuple(seen),
    )


# ---------------------------------------------------------------- on every core


def measure_on_every_core(session: Session, plan: list[tuple[int, int]], verifier: Any, origin: str,
                          workers: int) -> Iterator[SubtreeResult]:
    """Each planned subtree re-measured, yielded in plan order, on this process and ``workers - 1``
    forked helpers (fork only from a process without other threads).

    Every process claims the next unmeasured subtree from one shared counter, so a process slowed
    by other load on the machine simply takes fewer; a helper sends each result back on its own
    pipe as soon as it is done (a result is a few hashes, so that costs little). A subtree a helper
    claimed but never sent (it died) is re-measured here, so a helper's failure costs time, never
    a check.
    """
    import multiprocessing  # noqa: PLC0415
    from multiprocessing.connection import wait  # noqa: PLC0415

    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)
    engine = session.get_bind()
    url = engine.url.render_as_string(hide_password=False)
    helpers = []
    for _ in range(workers - 1):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_helper, args=(send, counter, plan, url, verifier, origin, engine), daemon=True)
        process.start()
        send.close()
        helpers.append((process, receive))
    done: dict[int, SubtreeResult] = {}
    listening = [receive for _, receive in helpers]

    def collect(timeout: float | None) -> None:
        for receive in wait(listening, timeout):
            try:
                i, result = receive.recv()
            except EOFError:
                listening.remove(receive)
            else:
                done[i] = result

    following = 0
    try:
        while (i := _claim(counter)) < len(plan):
            start, level = plan[i]
            done[i] = check_subtree(session, start, level, verifier, origin)
            if listening:
                collect(0)
            while following in done:
                yield done.pop(following)
                following += 1
        while following < len(plan):
            if following not in done and listening:
                collect(None)
                continue
            if following not in done:  # claimed by a helper that ended without sending it
                start, level = plan[following]
                done[following] = check_subtree(session, start, level, verifier, origin)
            yield done.pop(following)
            following += 1
    finally:
        for process, receive in helpers:
            receive.close()
            if process.is_alive():
                process.terminate()
            process.join()


def _claim(counter: Any) -> int:
    with counter.get_lock():
        claimed = int(counter.value)
        counter.value = claimed + 1
    return claimed


def _helper(send: Any, counter: Any, plan: list[tuple[int, int]], url: str, verifier: Any, origin: str,
            inherited: Any) -> None:
    """A forked helper: its own engine and connection (it never touches the parent's), then
    subtrees until none is left."""
    from ledger.db.engine import make_engine, make_session_factory  # noqa: PLC0415

    inherited.dispose(close=False)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            while (i := _claim(counter)) < len(plan):
                start, level = plan[i]
                send.send((i, check_subtree(session, start, level, verifier, origin)))
    finally:
        send.close()
        engine.dispose()

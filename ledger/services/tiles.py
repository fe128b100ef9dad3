"""Tiles and entry bundles (c2sp.org/tlog-tiles) read from the store.

Level-0 tiles are ``entries.leaf_hash``; a level-``l`` tile (l > 0) holds the hashes of complete
``256**l``-leaf subtrees, which the store already keeps as interior nodes at tree level ``8 * l``
(``tree_hashes``); entry bundles are ``entries.data``. Nothing is computed that the store does
not hold, so a tile costs one indexed range read.

Everything served lies inside the latest signed checkpoint, so every tile a client fetches is
committed to by a checkpoint it can verify (and, being a prefix of an append-only tree, never
changes).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.tlog import tiles
from ledger.db import store
from ledger.db.models import Entry
from ledger.errors import ConfigurationError, IntegrityError, NotFoundError
from ledger.tlog.tiles import TileRef

__all__ = ["latest_checkpoint_note", "read_tile", "served_size"]


def latest_checkpoint_note(session: Session) -> str:
    cp = store.latest_checkpoint(session)
    if cp is None:
        raise ConfigurationError("the store has no checkpoint: run `provledger init`")
    return cp.note


def served_size(session: Session) -> int:
    """The tree size tiles are served for: the latest checkpoint's."""
    cp = store.latest_checkpoint(session)
    if cp is None:
        raise ConfigurationError("the store has no checkpoint: run `provledger init`")
    return cp.tree_size


def read_tile(session: Session, ref: TileRef, *, size: int | None = None) -> bytes:
    """The bytes of a tile or entry bundle.

    Args:
        ref: the tile (``parse_tile_path`` of the request path).
        size: serve as of this tree size (default: the latest checkpoint's).

    Raises:
        NotFoundError: the tree is not (yet) big enough to hold the tile at that width; a
            full tile is not served while only a partial one exists.
        TooLargeError: an entry bundle would hold an entry of more than 65,535 bytes.
        IntegrityError: the store is missing rows it must have.
    """
    size = served_size(session) if size is None else size
    if ref.end > size:
        raise NotFoundError(
            f"{tiles.tile_path(ref)} is beyond the tree (the latest checkpoint has {size} entries)"
        )
    if ref.entries:
        return tiles.format_entry_bundle(_entry_rows(session, ref, Entry.data))
    if ref.level == 0:
        return tiles.format_tile(_entry_rows(session, ref, Entry.leaf_hash))
    nodes = tiles.tile_nodes(ref)
    hashes = store.read_nodes(session, nodes)
    return tiles.format_tile([hashes[n] for n in nodes])


def _entry_rows(session: Session, ref: TileRef, column: object) -> list[bytes]:
    first = ref.index * tiles.TILE_WIDTH
    rows = session.execute(
        select(Entry.idx, column)  # type: ignore[call-overload]
        .where(Entry.idx >= first, Entry.idx < first + ref.width)
        .order_by(Entry.idx)
    ).all()
    present = {idx for idx, _ in rows}
    missing = [i for i in range(first, first + ref.width) if i not in present]
    if missing:
        raise IntegrityError(
            f"the store is missing entry {missing[0]} below its checkpoint's size",
            first_bad_index=missing[0],
        )
    return [value for _, value in rows]

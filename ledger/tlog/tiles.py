"""Tiled transparency logs (c2sp.org/tlog-tiles): tile paths, tile contents, entry bundles.

A tile is a run of up to 256 consecutive Merkle Tree Hashes at one *tile level*. Hash ``i`` of
tile ``n`` at level ``l`` is::

    MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l])

that is, the complete subtree at tree level ``8 * l`` with index ``n * 256 + i``
(``NodeId(8 * l, n * 256 + i)`` in :mod:`ledger.merkle`). Level 0 holds the leaf hashes.
A full tile has 256 hashes (8192 bytes); the rightmost tile of a level may be *partial*, of
width ``floor(size / 256**l) mod 256``, and is served at ``<N>.p/<W>``.

Entry bundles (``tile/entries/<N>[.p/<W>]``) hold the entries behind level-0 tile ``N``, each
as ``u16 big-endian length || entry``; an entry of more than 65,535 bytes cannot be bundled.

The tile index ``N`` is written in zero-padded 3-digit groups, every group but the last prefixed
with ``x``: 1234067 is ``x001/x234/067``. Parsing accepts exactly that one encoding.

This module is pure: it formats and parses bytes and paths. ``ledger.services.tiles`` reads
tiles from the store; :class:`TileHashReader` is the client side (recompute roots and proofs
from fetched tiles).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledger import merkle
from ledger.errors import MalformedError, TooLargeError, VerificationError
from ledger.tlog.hashing import HASH_SIZE, leaf_hash
from ledger.merkle import NodeId

__all__ = [
    "MAX_BUNDLE_ENTRY_BYTES",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileHashReader",
    "TileLevel",
    "TileRef",
    "format_entry_bundle",
    "format_tile",
    "format_tile_index",
    "parse_entry_bundle",
    "parse_tile",
    "parse_tile_index",
    "parse_tile_path",
    "root_from_tiles",
    "tile_for_node",
    "tile_nodes",
    "tile_path",
    "tiles_for_size",
    "verify_entry_bundle",
]

#: A tile spans 8 tree levels …
TILE_HEIGHT = 8
#: … so a full tile holds 2**8 hashes.
TILE_WIDTH = 1 << TILE_HEIGHT
#: Tile levels are 0..63 (C2SP).
MAX_TILE_LEVEL = 63
#: An entry bundle prefixes each entry with a u16 length.
MAX_BUNDLE_ENTRY_BYTES = 0xFFFF
_MAX_SIZE = 1 << 64

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"[0-9]{3}")


@dataclass(frozen=True)
class TileRef:
    """One tile (or entry bundle, ``entries=True``): its level, index and width (256 = full)."""

    level: int
    index: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL or (self.entries and self.level != 0):
            raise ValueError(f"tile level {self.level} is not in 0..{MAX_TILE_LEVEL}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile width {self.width} is not in 1..{TILE_WIDTH}")
        if self.index < 0 or self.start >= _MAX_SIZE:
            raise ValueError(f"tile index {self.index} is outside a tree of 2**64 leaves")

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def start(self) -> int:
        """The first leaf index the tile spans (C2SP *start index*)."""
        return self.index << (TILE_HEIGHT * (self.level + 1))

    @property
    def end(self) -> int:
        """One past the last leaf its hashes span: the smallest tree size that holds it."""
        return (self.index * TILE_WIDTH + self.width) << (TILE_HEIGHT * self.level)

    @property
    def path(self) -> str:
        return tile_path(self)


@dataclass(frozen=True)
class TileLevel:
    """How a tree of some size is tiled at one level."""

    level: int
    full_tiles: int
    partial_width: int


# --------------------------------------------------------------------------------------------
# Paths


def format_tile_index(index: int) -> str:
    """``N`` as zero-padded 3-digit groups, all but the last prefixed ``x``: 1234067 → x001/x234/067."""
    if index < 0:
        raise ValueError(f"tile index {index} is negative")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def parse_tile_index(text: str) -> int:
    """The inverse of :func:`format_tile_index`; refuses any other spelling (``x000/001``)."""
    parts = text.split("/")
    value = 0
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        digits = part if last else part[1:]
        if (not last and not part.startswith("x")) or not _GROUP.fullmatch(digits):
            raise MalformedError(f"tile index {text[:60]!r} is not in x001/x234/067 form")
        value = value * 1000 + int(digits)
    if len(parts) > 1 and parts[0] == "x000":
        raise MalformedError(f"tile index {text[:60]!r} has a leading zero group")
    return value


def tile_path(ref: TileRef) -> str:
    """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (without the log's prefix)."""
    head = "tile/entries" if ref.entries else f"tile/{ref.level}"
    tail = f".p/{ref.width}" if ref.is_partial else ""
    return f"{head}/{format_tile_index(ref.index)}{tail}"


def parse_tile_path(path: str) -> TileRef:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` strictly.

    Raises:
        MalformedError: anything but the one canonical spelling of a tile in a 2**64-leaf tree.
    """
    if len(path) > 200:  # noqa: PLR2004 - far longer than any canonical tile path
        raise MalformedError("tile path is too long")
    if not path.startswith("tile/"):
        raise MalformedError(f"tile path {path[:60]!r} does not start with tile/")
    level_text, sep, rest = path[len("tile/") :].partition("/")
    if not sep:
        raise MalformedError(f"tile path {path[:60]!r} has no tile index")
    entries = level_text == "entries"
    if not entries and not _LEVEL.fullmatch(level_text):
        raise MalformedError(f"tile level {level_text[:10]!r} is not a decimal 0..63")
    level = 0 if entries else int(level_text)
    width = TILE_WIDTH
    index_text, dot, width_text = rest.partition(".p/")
    if dot:
        if not _WIDTH.fullmatch(width_text) or int(width_text) >= TILE_WIDTH:
            raise MalformedError(f"partial tile width {width_text[:10]!r} is not a decimal 1..255")
        width = int(width_text)
    index = parse_tile_index(index_text)
    try:
        return TileRef(level, index, width, entries)
    except ValueError as exc:
        raise MalformedError(f"tile path {path[:60]!r}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Which hashes a tree has, and where


def tiles_for_size(size: int) -> list[TileLevel]:
    """The full tiles and the partial width at each level of a tree of ``size`` leaves."""
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"tree size {size} is not in [0, 2**64]")
    levels = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        levels.append(TileLevel(level, hashes >> TILE_HEIGHT, hashes % TILE_WIDTH))
        level += 1
    return levels


def tile_nodes(ref: TileRef) -> list[NodeId]:
    """The tree nodes whose hashes the tile holds, in order."""
    height = TILE_HEIGHT * ref.level
    first = ref.index * TILE_WIDTH
    return [(height, first + i) for i in range(ref.width)]


def tile_for_node(node: NodeId, size: int) -> tuple[TileRef, int, int]:
    """The tile of a tree of ``size`` that holds complete subtree ``node``, and the slice of it.

    Returns ``(ref, offset, count)``: the node's hash is the MTH of ``count`` (a power of two
    below 256) consecutive hashes of the tile, starting at ``offset``.
    """
    height, index = node
    if (index + 1) << height > size:
        raise ValueError(f"node {node} is not a complete subtree of a tree of size {size}")
    level, within = divmod(height, TILE_HEIGHT)
    first = index << within  # the node's first hash at tile level `level`
    tile_index = first >> TILE_HEIGHT
    available = (size >> (TILE_HEIGHT * level)) - tile_index * TILE_WIDTH
    ref = TileRef(level, tile_index, min(TILE_WIDTH, available))
    return ref, first % TILE_WIDTH, 1 << within


# --------------------------------------------------------------------------------------------
# Contents


def format_tile(hashes: Sequence[bytes]) -> bytes:
    """The tile bytes: the hashes concatenated (1..256 hashes of 32 bytes)."""
    if not 1 <= len(hashes) <= TILE_WIDTH:
        raise ValueError(f"a tile holds 1..{TILE_WIDTH} hashes, got {len(hashes)}")
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ValueError(f"a tile hash must be {HASH_SIZE} bytes, got {len(h)}")
    return b"".join(hashes)


def parse_tile(data: bytes, width: int = TILE_WIDTH) -> list[bytes]:
    """The hashes of a tile of ``width`` hashes.

    Raises:
        MalformedError: the tile is not exactly ``width * 32`` bytes.
    """
    if len(data) != width * HASH_SIZE:
        raise MalformedError(
            f"a tile of width {width} is {width * HASH_SIZE} bytes, got {len(data)}"
        )
    return [bytes(data[i : i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)]


def format_entry_bundle(entries: Iterable[bytes]) -> bytes:
    """``u16 BE length || entry`` for each entry.

    Raises:
        TooLargeError: an entry is over ``MAX_BUNDLE_ENTRY_BYTES`` (the u16 cannot say its length).
        ValueError: the bundle would hold no entry or more than 256.
    """
    out = bytearray()
    count = 0
    for entry in entries:
        if len(entry) > MAX_BUNDLE_ENTRY_BYTES:
            raise TooLargeError(
                f"an entry of {len(entry)} bytes is over the {MAX_BUNDLE_ENTRY_BYTES}-byte limit "
                "of tlog-tiles entry bundles"
            )
        out += len(entry).to_bytes(2, "big") + entry
        count += 1
    if not 1 <= count <= TILE_WIDTH:
        raise ValueError(f"an entry bundle holds 1..{TILE_WIDTH} entries, got {count}")
    return bytes(out)


def parse_entry_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle (exactly ``width`` of them when given).

    Raises:
        MalformedError: a truncated entry, trailing bytes, or the wrong number of entries.
    """
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:  # noqa: PLR2004
            raise MalformedError(f"entry bundle ends inside the length of entry {len(entries)}")
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if len(data) - pos < length:
            raise MalformedError(f"entry bundle ends inside entry {len(entries)}")
        entries.append(bytes(data[pos : pos + length]))
        pos += length
        if len(entries) > TILE_WIDTH:
            raise MalformedError(f"entry bundle holds more than {TILE_WIDTH} entries")
    if width is not None and len(entries) != width:
        raise MalformedError(f"entry bundle holds {len(entries)} entries, expected {width}")
    if not entries:
        raise MalformedError("entry bundle is empty")
    return entries


def verify_entry_bundle(entries: Sequence[bytes], level0_tile: Sequence[bytes]) -> None:
    """Check that each entry hashes to the matching leaf hash of the level-0 tile."""
    if len(entries) != len(level0_tile):
        raise VerificationError(
            f"entry bundle holds {len(entries)} entries but its tile {len(level0_tile)} hashes"
        )
    for i, (entry, expected) in enumerate(zip(entries, level0_tile, strict=True)):
        if leaf_hash(entry) != expected:
            raise VerificationError(
                f"entry {i} of the bundle does not hash to its tile's leaf hash"
            )


# --------------------------------------------------------------------------------------------
# Client side: node hashes from fetched tiles


class TileHashReader(Mapping[NodeId, bytes]):
    """Hashes of complete subtrees of a tree of ``size``, computed from tiles ``fetch`` returns.

    ``fetch(ref)`` returns the tile's bytes (from a server, a mirror, a disk); each tile is
    fetched once. Use it as the ``hashes`` mapping of :func:`ledger.merkle.proof_from_plan`
    to build any inclusion or consistency proof from tiles alone.
    """

    def __init__(self, size: int, fetch: Callable[[TileRef], bytes]) -> None:
        self.size = size
        self._fetch = fetch
        self._tiles: dict[TileRef, list[bytes]] = {}

    def tile(self, ref: TileRef) -> list[bytes]:
        if ref not in self._tiles:
            self._tiles[ref] = parse_tile(self._fetch(ref), ref.width)
        return self._tiles[ref]

    def __getitem__(self, node: NodeId) -> bytes:
        try:
            ref, offset, count = tile_for_node(node, self.size)
        except ValueError as exc:
            raise KeyError(node) from exc
        return merkle.root(self.tile(ref)[offset : offset + count])

    def __iter__(self):  # pragma: no cover - Mapping protocol only
        raise TypeError("a TileHashReader is not iterable")

    def __len__(self) -> int:  # pragma: no cover - Mapping protocol only
        raise TypeError("a TileHashReader has no length")

    def root(self) -> bytes:
        """The tree's root: its right edge, each node read from the tiles."""
        if self.size == 0:
            return merkle.EMPTY_ROOT
        nodes = merkle.frontier_nodes(self.size)
        return merkle.range_hash(nodes, {n: self[n] for n in nodes})


def root_from_tiles(size: int, fetch: Callable[[TileRef], bytes]) -> bytes:
    """The root of the tree of ``size`` from its tiles (compare it with a checkpoint's root)."""
    return TileHashReader(size, fetch).root()

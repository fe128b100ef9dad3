"""ledger.tlog.tiles: byte-exact tiles and entry bundles against the tlog-tiles layout vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import MalformedError, TooLargeError, VerificationError
from ledger.tlog.hashing import leaf_hash
from ledger.tlog.tiles import (
    MAX_BUNDLE_ENTRY_BYTES,
    TILE_WIDTH,
    TileHashReader,
    TileRef,
    format_entry_bundle,
    format_tile,
    format_tile_index,
    parse_entry_bundle,
    parse_tile,
    parse_tile_index,
    parse_tile_path,
    root_from_tiles,
    tile_for_node,
    tile_nodes,
    tile_path,
    tiles_for_size,
    verify_entry_bundle,
)
from tests.conftest import load_vector

pytestmark = pytest.mark.vectors


@pytest.fixture(scope="module")
def layout() -> dict:
    return load_vector("merkle/tlog_tiles_layout_vectors.json")


def _small_log(layout: dict) -> list[bytes]:
    assert layout["small_log"]["entry_rule"] == "entry i = ('entry-%d' % i).encode('ascii')"
    return [f"entry-{i}".encode("ascii") for i in range(layout["small_log"]["size"])]


def _tile_bytes(entries: list[bytes], ref: TileRef) -> bytes:
    """The tile as a server that holds every entry in memory would build it (pure layer)."""
    leaves = [leaf_hash(e) for e in entries]
    if ref.entries:
        first = ref.index * TILE_WIDTH
        return format_entry_bundle(entries[first : first + ref.width])
    hashes = []
    for level, index in tile_nodes(ref):
        hashes.append(merkle.root(leaves[index << level : (index + 1) << level]))
    return format_tile(hashes)


# ------------------------------------------------------------------------------ paths


def test_index_paths_match_the_spec_examples(layout: dict) -> None:
    for index, path in layout["index_path_examples"].items():
        assert format_tile_index(int(index)) == path
        assert parse_tile_index(path) == int(index)
    assert format_tile_index(1234067) == layout["spec_example_1234067"] == "x001/x234/067"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1",
        "01",
        "0001",
        "x001",
        "001/002",
        "x001/02",
        "x01/002",
        "X001/002",
        "x000/001",
        "x001//002",
        "x001/002/",
        "/001",
        "x-01/002",
        "x001/0a2",
        "x001/x002/1234",
    ],
)
def test_non_canonical_index_paths_are_refused(bad: str) -> None:
    with pytest.raises(MalformedError):
        parse_tile_index(bad)


@given(st.integers(min_value=0, max_value=(1 << 56) - 1))
def test_index_round_trip(index: int) -> None:
    assert parse_tile_index(format_tile_index(index)) == index


@pytest.mark.parametrize(
    ("path", "ref"),
    [
        ("tile/0/000", TileRef(0, 0)),
        ("tile/0/001.p/44", TileRef(0, 1, 44)),
        ("tile/1/000.p/1", TileRef(1, 0, 1)),
        ("tile/63/000.p/1", TileRef(63, 0, 1)),
        ("tile/2/x001/x234/067", TileRef(2, 1234067)),
        ("tile/entries/000", TileRef(0, 0, entries=True)),
        ("tile/entries/001.p/44", TileRef(0, 1, 44, entries=True)),
        ("tile/0/x001/000.p/255", TileRef(0, 1000, 255)),
    ],
)
def test_tile_paths_round_trip(path: str, ref: TileRef) -> None:
    assert parse_tile_path(path) == ref
    assert tile_path(ref) == path


@pytest.mark.parametrize(
    "bad",
    [
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/a/000",
        "tile//000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/044",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.p/1/2",
        "tile/0/000.q/1",
        "tiles/0/000",
        "tile/0",
        "tile/entries",
        "tile/entries/000.p/300",
        "tile/8/001",  # 256**9 * 1 > 2**64: outside any tree
        "tile/0/" + "x999/" * 10 + "999",
        "tile/0/000 ",
        "tile/0/000\n",
    ],
)
def test_bad_tile_paths_are_refused(bad: str) -> None:
    with pytest.raises(MalformedError):
        parse_tile_path(bad)


def test_tiles_for_size_matches_the_vectors(layout: dict) -> None:
    for size, expected in layout["tiles_for_size"].items():
        got = [
            {"level": t.level, "full_tiles": t.full_tiles, "partial_width": t.partial_width}
            for t in tiles_for_size(int(size))
        ]
        assert got == expected, size
    assert tiles_for_size(0) == []


# ------------------------------------------------------------------------------ contents


def test_small_log_tiles_are_byte_exact(layout: dict) -> None:
    entries = _small_log(layout)
    resources = layout["small_log"]["resources"]
    assert set(resources) == {
        "tile/0/000",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/44",
    }
    for path, want in resources.items():
        got = _tile_bytes(entries, parse_tile_path(path))
        assert len(got) == want["bytes"], path
        if "hex" in want:
            assert got.hex() == want["hex"], path
        if "sha256" in want:
            assert hashlib.sha256(got).hexdigest() == want["sha256"], path
        if "first_hash_hex" in want:
            assert got[:32].hex() == want["first_hash_hex"]
            assert got[-32:].hex() == want["last_hash_hex"]
        if "first_16_bytes_hex" in want:
            assert got[:16].hex() == want["first_16_bytes_hex"]


def test_small_log_root_from_tiles(layout: dict) -> None:
    """A tile client recomputes the vector's root from the tiles alone."""
    entries = _small_log(layout)
    fetched: list[str] = []

    def fetch(ref: TileRef) -> bytes:
        fetched.append(tile_path(ref))
        return _tile_bytes(entries, ref)

    root = root_from_tiles(len(entries), fetch)
    assert root.hex() == layout["small_log"]["root_hash_hex"]
    # The vector's own recipe: SHA256(0x01 || tile/1/000.p/1[0] || MTH(tile/0/001.p/44)).
    assert sorted(fetched) == ["tile/0/001.p/44", "tile/1/000.p/1"]
    level1 = fetch(TileRef(1, 0, 1))
    partial = parse_tile(fetch(TileRef(0, 1, 44)), 44)
    assert merkle.node_hash(level1, merkle.root(partial)) == root


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 300, 511, 512, 513, 1000])
def test_proofs_from_tiles_equal_the_merkle_core(size: int) -> None:
    entries = [f"e{i}".encode() for i in range(size)]
    leaves = [leaf_hash(e) for e in entries]
    reader = TileHashReader(size, lambda ref: _tile_bytes(entries, ref))
    assert reader.root() == merkle.root(leaves)
    for index in {0, size // 2, size - 1}:
        plan = merkle.inclusion_proof_plan(index, size)
        assert merkle.proof_from_plan(plan, reader) == merkle.inclusion_proof(index, leaves)
    for old in {1, size // 3, size - 1}:
        if 0 < old < size:
            plan = merkle.consistency_proof_plan(old, size)
            assert merkle.proof_from_plan(plan, reader) == merkle.consistency_proof(old, leaves)


def test_tile_for_node_stays_inside_the_tree() -> None:
    ref, offset, count = tile_for_node((8, 0), 256)
    assert (ref, offset, count) == (TileRef(1, 0, 1), 0, 1)
    ref, offset, count = tile_for_node((3, 33), 300)
    assert (ref, offset, count) == (TileRef(0, 1, 44), 8, 8)
    with pytest.raises(ValueError, match="not a complete subtree"):
        tile_for_node((8, 1), 300)


def test_entry_bundle_round_trip_and_limits() -> None:
    entries = [b"", b"a", b"x" * MAX_BUNDLE_ENTRY_BYTES]
    data = format_entry_bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a" and data[5:7] == b"\xff\xff"
    assert parse_entry_bundle(data) == entries
    assert parse_entry_bundle(data, 3) == entries
    with pytest.raises(TooLargeError, match="65535"):
        format_entry_bundle([b"x" * (MAX_BUNDLE_ENTRY_BYTES + 1)])
    with pytest.raises(ValueError, match="1..256"):
        format_entry_bundle([])
    with pytest.raises(ValueError, match="1..256"):
        format_entry_bundle([b"e"] * 257)


@pytest.mark.parametrize(
    ("data", "width", "message"),
    [
        (b"", None, "empty"),
        (b"\x00", None, "length of entry 0"),
        (b"\x00\x05abc", None, "inside entry 0"),
        (b"\x00\x01a\x00", None, "length of entry 1"),
        (b"\x00\x01a", 2, "expected 2"),
        (b"\x00\x00" * 257, None, "more than 256"),
    ],
)
def test_bad_entry_bundles_are_refused(data: bytes, width: int | None, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        parse_entry_bundle(data, width)


def test_entry_bundle_must_hash_to_its_tile(layout: dict) -> None:
    entries = _small_log(layout)
    bundle = parse_entry_bundle(_tile_bytes(entries, TileRef(0, 1, 44, entries=True)), 44)
    tile = parse_tile(_tile_bytes(entries, TileRef(0, 1, 44)), 44)
    verify_entry_bundle(bundle, tile)
    bundle[7] = bundle[7][:-1] + bytes([bundle[7][-1] ^ 1])
    with pytest.raises(VerificationError, match="entry 7"):
        verify_entry_bundle(bundle, tile)
    with pytest.raises(VerificationError, match="44 hashes"):
        verify_entry_bundle(bundle[:-1], tile)


def test_bad_tiles_are_refused() -> None:
    with pytest.raises(MalformedError, match="8192"):
        parse_tile(bytes(8191))
    with pytest.raises(MalformedError, match="width 2"):
        parse_tile(bytes(96), 2)
    with pytest.raises(ValueError, match="32 bytes"):
        format_tile([bytes(31)])
    with pytest.raises(ValueError, match="1..256"):
        format_tile([])

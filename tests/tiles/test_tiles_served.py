"""The tlog-tiles API of a real ledger (SQLite and PostgreSQL): a tile client mirrors and verifies it.

The ledger's entries are canonical JSON leaves, so the byte-exact vector checks live in
test_tiles_layout.py; here the served bytes must agree with the store, with each other (entry
bundles hash to level-0 tiles) and with the signed checkpoint (the root recomputed from tiles).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from ledger import merkle
from ledger.tlog.checkpoint import open_checkpoint
from ledger.errors import IntegrityError, NotFoundError, TooLargeError
from ledger.services import receipts
from ledger.services import tiles as tile_service
from ledger.tlog.tiles import (
    TileHashReader,
    TileRef,
    parse_entry_bundle,
    parse_tile,
    tile_path,
    tiles_for_size,
    verify_entry_bundle,
)
from ledger.verify import verify_receipt
from tests.fixtures import StoreHandle, make_statement, sign
from web.api import tiles as tiles_api
from web.app import create_app

IMMUTABLE = "public, max-age=31536000, immutable"


_apps: list[Flask] = []


def _app(store: StoreHandle, prefix: str = "/tlog") -> Flask:
    app = create_app({"SETTINGS": store.settings, "TESTING": True})
    _apps.append(app)
    if "tlog_tiles" not in app.blueprints:  # until web/app.py registers it
        app.register_blueprint(tiles_api.bp, url_prefix=prefix)
    return app


@pytest.fixture(autouse=True)
def _dispose_apps() -> Iterator[None]:
    """Close each app's connection pool before the test's database is dropped."""
    yield
    while _apps:
        _apps.pop().extensions["provledger"].engine.dispose()


class TileClient:
    """What a standard tile client does: fetch the checkpoint, then tiles, and verify."""

    def __init__(self, client: Any, prefix: str = "/tlog") -> None:
        self.client = client
        self.prefix = prefix
        self.fetched: list[str] = []

    def get(self, path: str, **kwargs: Any) -> Any:
        self.fetched.append(path)
        return self.client.get(f"{self.prefix}/{path}", **kwargs)

    def fetch(self, ref: TileRef) -> bytes:
        response = self.get(tile_path(ref))
        assert response.status_code == 200, (tile_path(ref), response.get_data())
        assert response.content_type == "application/octet-stream"
        return response.get_data()


@pytest.fixture
def ledger_300(store: StoreHandle) -> StoreHandle:
    """300 entries: the signer's key event (entry 0, its own checkpoint) and three batches of
    records (three checkpoints, at 100, 256 and 300), crossing the first full tile."""
    store.add_signer()
    assert store.size() == 1
    store.fill([99, 156, 44])
    assert store.size() == 300
    return store


def test_client_recomputes_the_checkpoint_root_from_served_tiles(ledger_300: StoreHandle) -> None:
    store = ledger_300
    with _app(store).test_client() as http:
        client = TileClient(http)
        response = client.get("checkpoint")
        assert response.status_code == 200
        assert response.content_type == "text/plain; charset=utf-8"
        assert "immutable" not in response.headers["Cache-Control"]
        cp = open_checkpoint(response.get_data(), store.log.verifier)
        assert cp.size == 300
        reader = TileHashReader(cp.size, client.fetch)
        assert reader.root() == cp.root
        assert sorted(client.fetched[1:]) == ["tile/0/001.p/44", "tile/1/000.p/1"]
        # Every leaf hash is in the level-0 tiles, and every entry bundle hashes to its tile.
        leaves = store.leaf_hashes()
        for level in tiles_for_size(cp.size):
            assert level.level in (0, 1)
        full = parse_tile(client.fetch(TileRef(0, 0)))
        partial = parse_tile(client.fetch(TileRef(0, 1, 44)), 44)
        assert full + partial == leaves
        for ref in (TileRef(0, 0, entries=True), TileRef(0, 1, 44, entries=True)):
            bundle = parse_entry_bundle(client.fetch(ref), ref.width)
            verify_entry_bundle(bundle, full if ref.index == 0 else partial)
        # The level-1 hash is the MTH of the full level-0 tile.
        assert client.fetch(TileRef(1, 0, 1)) == merkle.root(full)
        # Inclusion proofs built from tiles verify against the checkpoint.
        for index in (0, 255, 256, 299):
            proof = merkle.proof_from_plan(merkle.inclusion_proof_plan(index, cp.size), reader)
            merkle.verify_inclusion(index, cp.size, leaves[index], proof, cp.root)


def test_tiles_agree_with_receipts_and_earlier_checkpoints(ledger_300: StoreHandle) -> None:
    """A client holding an older checkpoint checks consistency from tiles alone."""
    store = ledger_300
    with store.sessions() as session:
        first_note = tile_service.latest_checkpoint_note(session)
    with _app(store).test_client() as http:
        client = TileClient(http)
        cp = open_checkpoint(client.get("checkpoint").get_data(), store.log.verifier)
        assert cp.size == 300 and first_note.startswith(store.log.origin)
        reader = TileHashReader(cp.size, client.fetch)
        for old in (100, 256):
            old_root = TileHashReader(old, client.fetch).root()
            proof = merkle.proof_from_plan(merkle.consistency_proof_plan(old, cp.size), reader)
            merkle.verify_consistency(old, cp.size, proof, old_root, cp.root)
        # The entry bytes served are the receipt's entry: the record re-verifies offline.
        bundle = parse_entry_bundle(client.fetch(TileRef(0, 1, 44, entries=True)), 44)
        with store.sessions() as session:
            receipt = receipts.receipt(session, 299)
        assert base64.b64decode(receipt["entry"]) == bundle[43]
        verify_receipt(receipt, store.log.vkey)


def test_cache_headers_and_gzip(ledger_300: StoreHandle) -> None:
    with _app(ledger_300).test_client() as http:
        full = http.get("/tlog/tile/0/000")
        assert full.headers["Cache-Control"] == IMMUTABLE
        assert len(full.get_data()) == 8192
        partial = http.get("/tlog/tile/0/001.p/44")
        assert "immutable" not in partial.headers["Cache-Control"]
        assert "max-age=60" in partial.headers["Cache-Control"]
        plain = http.get("/tlog/tile/entries/000")
        assert "Content-Encoding" not in plain.headers
        assert plain.headers["Cache-Control"] == IMMUTABLE
        zipped = http.get("/tlog/tile/entries/000", headers={"Accept-Encoding": "gzip, identity"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in zipped.headers["Vary"]
        assert gzip.decompress(zipped.get_data()) == plain.get_data()


REFUSED = [
    ("tile/0/001", 404),  # only a partial tile of width 44 exists
    ("tile/0/001.p/45", 404),  # wider than the tree
    ("tile/0/002.p/1", 404),
    ("tile/1/000", 404),
    ("tile/2/000.p/1", 404),
    ("tile/entries/001", 404),
    ("tile/0/01", 400),
    ("tile/0/000.p/0", 400),
    ("tile/00/000", 400),
    ("tile/entries/000.p/256", 400),
]


def test_tiles_beyond_the_tree_or_malformed_are_refused(ledger_300: StoreHandle) -> None:
    with _app(ledger_300).test_client() as http:
        for path, status in REFUSED:
            response = http.get(f"/tlog/{path}")
            assert response.status_code == status, (path, response.get_data())
            assert response.is_json
            assert "immutable" not in response.headers.get("Cache-Control", "")


def test_a_partial_tile_narrower_than_the_tree_is_a_prefix(ledger_300: StoreHandle) -> None:
    with _app(ledger_300).test_client() as http:
        narrow = http.get("/tlog/tile/0/000.p/100").get_data()
        assert narrow == http.get("/tlog/tile/0/000").get_data()[: 100 * 32]


def test_only_checkpointed_entries_are_served(sqlite_store: StoreHandle) -> None:
    store = sqlite_store
    store.add_signer()  # its key event is entry 0
    store.fill([3])
    n = store.size()
    assert n == 4
    with store.sessions() as session:
        assert tile_service.served_size(session) == n
        assert len(tile_service.read_tile(session, TileRef(0, 0, n))) == 32 * n
        with pytest.raises(NotFoundError, match="beyond the tree"):
            tile_service.read_tile(session, TileRef(0, 0, n + 1))
        # As of an older tree size, the newer entries are not served.
        with pytest.raises(NotFoundError):
            tile_service.read_tile(session, TileRef(0, 0, n), size=n - 1)


def test_empty_ledger_serves_its_checkpoint_and_no_tile(sqlite_store: StoreHandle) -> None:
    with _app(sqlite_store).test_client() as http:
        cp = open_checkpoint(http.get("/tlog/checkpoint").get_data(), sqlite_store.log.verifier)
        assert cp.size == 0
        assert http.get("/tlog/tile/0/000.p/1").status_code == 404


def test_prefix_is_configurable(sqlite_store: StoreHandle) -> None:
    sqlite_store.fill([2])
    n = sqlite_store.size()  # the signer's key event and 2 records
    assert n == 3
    app = create_app(
        {"SETTINGS": sqlite_store.settings, "TESTING": True, "TLOG_PREFIX": "/logs/main"}
    )
    _apps.append(app)
    if "tlog_tiles" not in app.blueprints:  # until web/app.py registers it at TLOG_PREFIX
        app.register_blueprint(tiles_api.bp, url_prefix="/logs/main")
    with app.test_client() as http:
        data = http.get(f"/logs/main/tile/0/000.p/{n}").get_data()
        assert parse_tile(data, n) == sqlite_store.leaf_hashes()
        assert http.get(f"/tlog/tile/0/000.p/{n}").status_code == 404


def test_an_entry_over_the_bundle_limit_is_refused_clearly(sqlite_store: StoreHandle) -> None:
    """Entry bundles cannot hold an entry over 65,535 bytes (u16 length): say so, serve nothing."""
    store = sqlite_store
    key = store.add_signer()
    statement = json.loads(make_statement())
    statement["predicate"]["padding"] = "x" * 70_000
    base = store.size()  # the signer's key event: a bundle of it alone is fine
    store.append_ok([sign(key, json.dumps(statement).encode())])
    n = store.size()
    assert n == base + 1
    with store.sessions() as session:
        assert len(tile_service.read_tile(session, TileRef(0, 0, n))) == 32 * n
        tile_service.read_tile(session, TileRef(0, 0, base, entries=True))
        with pytest.raises(TooLargeError, match="65535"):
            tile_service.read_tile(session, TileRef(0, 0, n, entries=True))


def test_a_store_missing_an_entry_serves_no_tile(store: StoreHandle) -> None:
    """Tiles come from the store as it is: a deleted row is an integrity failure, never a short tile."""
    store.fill([5])
    n = store.size()  # the signer's key event and 5 records
    assert n == 6
    with store.tamper() as conn:
        # the attacker also removes the rows that reference the entry (foreign keys)
        for table in ("entry_subjects", "entry_signers", "entry_edges", "entry_contents"):
            conn.execute(text(f"DELETE FROM {table} WHERE entry_idx = 3"))
        conn.execute(text("DELETE FROM entries WHERE idx = 3"))
    with store.sessions() as session:
        for ref in (TileRef(0, 0, n), TileRef(0, 0, n, entries=True)):
            with pytest.raises(IntegrityError, match="missing entry 3") as info:
                tile_service.read_tile(session, ref)
            assert info.value.first_bad_index == 3

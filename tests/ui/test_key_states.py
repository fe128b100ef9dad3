"""One vocabulary for keys and grants — active, stale, expired, revoked, rotated — said alike by
the signers page, an entry's signer table, ``GET /api/v1/signers`` and ``provledger keys list``,
and consistent with the chain: a key whose only grant is past its review-by is *stale* (never
"trusted active"), a revoked key's grant is *revoked* (never "(active)")."""

from __future__ import annotations

import json
import re
import time

import pytest

from ledger.records.keys import generate_private_key
from ledger.services import registry
from ledger.services.setup import load_admin_key
from ledger.trust.policy import STATES, Grant
from tests.fixtures import PREDICATE, make_statement, sign
from tests.cli.conftest import cli  # noqa: F401 - provledger in-process on the test store
from tests.ui.conftest import close_app, make_app

DAY = 86400


@pytest.fixture
def world(store):
    """Four principals, one per state the clock and the key events give them."""
    now = int(time.time())
    admin = load_admin_key(store.settings)
    keys = {}

    def add(name: str, grant: Grant) -> str:
        key = generate_private_key()
        registry.add_key(store.sessions, store.log, admin, name, key.public_key, [grant], now=store.tick())
        keys[name] = key
        return key.key_id

    ids = {
        "fresh": add("fresh", Grant((PREDICATE,), review_by=now + 30 * DAY)),
        "stale": add("stale", Grant((PREDICATE,), review_by=now - DAY)),
        "expired": add("expired", Grant((PREDICATE,), not_after=now - DAY)),
        "revoked": add("revoked", Grant((PREDICATE,))),
        "old": add("old", Grant((PREDICATE,))),
    }
    store.append_ok([json.dumps(sign(keys["fresh"], make_statement()))])
    registry.revoke_key(store.sessions, store.log, admin, ids["revoked"], now=store.tick())
    new = generate_private_key()
    registry.rotate_key(store.sessions, store.log, admin, ids["old"], new.public_key, now=store.tick())
    expected = {ids["fresh"]: "active", ids["stale"]: "stale", ids["expired"]: "expired", ids["revoked"]: "revoked",
                ids["old"]: "rotated", new.key_id: "active"}
    return store, expected


def test_api_cli_and_pages_say_the_same_word(world, cli) -> None:
    store, expected = world
    app = make_app(store)
    try:
        client = app.test_client()
        listing = client.get("/api/v1/signers").get_json()["signers"]
        api = {s["key_id"]: s["state"] for s in listing}
        for s in listing:
            assert s["state"] in STATES
            for g in s["grants"]:
                assert g["state"] in STATES
                if s["state"] in ("revoked", "rotated"):
                    assert g["state"] == s["state"], "a revoked or rotated key's grant is not active"
        assert {k: api[k] for k in expected} == expected

        code, out, _ = cli("keys", "list")
        assert code == 0
        for key_id, word in expected.items():
            line = next(l for l in out.splitlines() if l.startswith(key_id))
            assert f"  {word}" in line, line

        page = client.get("/signers").get_data(as_text=True)
        for key_id, word in expected.items():
            row = page[page.index(f'id="key-{key_id}"') :]
            row = row[: row.index("</tr>")]
            assert re.search(rf'data-state="{word}"', row), (key_id, word)
            assert "✔ trusted" not in row and "(active)" not in row or word == "active"
    finally:
        close_app(app)

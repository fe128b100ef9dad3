"""Migration 0008 upgrades an existing ledger: every entry gets its content hash, backfilled from
its leaf bytes (SQLite and PostgreSQL), and a resubmission with another keyid hint then returns
the first entry's receipt."""

from __future__ import annotations

import copy

from alembic import command
from sqlalchemy import text

from ledger.db.migrate import alembic_config
from ledger.services.append import Appended
from ledger.services.audit import audit
from ledger.trust.fold import leaf_facts
from tests.fixtures import sign


def test_0008_backfills_the_content_hash_of_every_entry(store) -> None:  # type: ignore[no-untyped-def]
    key = store.add_signer()
    envelope = sign(key)
    (first,) = store.append_ok([envelope])
    store.append_ok([sign(key) for _ in range(3)])
    cfg = alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with store.sessions() as session:
        rows = session.execute(text("SELECT e.idx, e.data, c.content_hash FROM entries e JOIN entry_contents c ON c.entry_idx = e.idx ORDER BY e.idx")).all()
        assert [r[0] for r in rows] == list(range(store.size()))
        for idx, data, content in rows:
            assert bytes(content) == leaf_facts(idx, bytes(data)).content_hash
        assert audit(session, store.log).ok
    hinted = copy.deepcopy(envelope)
    hinted["signatures"][0]["keyid"] = "a" * 64
    (again,) = store.append([hinted])
    assert isinstance(again, Appended) and not again.created and again.receipt["index"] == first.receipt["index"]

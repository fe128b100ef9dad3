"""Bulk import (``provledger import`` / ``ledger.services.bulk``): every signature checked on a
pool of processes, batches integrated in order, refusals listed and nothing half-written."""

from __future__ import annotations

import json
import subprocess

import pytest

from ledger.errors import MalformedError, NotTrustedError, SignatureError
from ledger.records.keys import generate_private_key
from ledger.services.audit import audit
from ledger.services import bulk
from ledger.services.bulk import import_envelopes
from ledger.verify import verify_receipt
from ledger.services.receipts import receipt
from tests.fixtures import PROVLEDGER, envelope_bytes, make_statement, sign


def _corrupt_signature(env: dict) -> dict:
    env = json.loads(json.dumps(env))
    sig = bytearray(env["signatures"][0]["sig"].encode())
    sig[5] = ord("A") if sig[5] != ord("A") else ord("B")
    env["signatures"][0]["sig"] = sig.decode()
    return env


@pytest.mark.parametrize("workers, pool_only", [(1, False), (2, False), (2, True)])
def test_import_appends_in_order_and_lists_refusals(store, workers, pool_only, monkeypatch):
    if pool_only:  # every batch through the pool processes (none checked here while it starts)
        monkeypatch.setattr(bulk, "CHECK_WHILE_STARTING", False)
    key = store.add_signer()
    base = store.size()  # the signer's key event
    assert base == 1
    stranger = generate_private_key()
    good = [sign(key, make_statement(f"pkg/{i}")) for i in range(25)]
    raws = [envelope_bytes(e) for e in good[:10]]
    raws.append(b"{not json")  # position 10
    raws.append(envelope_bytes(sign(stranger, make_statement("pkg/x"))))  # 11: unknown key
    raws.append(envelope_bytes(_corrupt_signature(good[10])))  # 12: bad signature by a known key
    raws += [envelope_bytes(e) for e in good[10:]]
    raws.append(envelope_bytes(good[0]))  # a duplicate of the first

    summary = import_envelopes(store.sessions, raws, store.log, workers=workers, batch_size=7)

    assert (summary.created, summary.duplicates, summary.refused) == (25, 1, 3)
    assert [p for p, _ in summary.errors] == [10, 11, 12]
    kinds = [type(e) for _, e in summary.errors]
    assert kinds == [MalformedError, NotTrustedError, SignatureError]
    assert summary.tree_size == base + 25 and store.size() == base + 25
    with store.sessions() as session:
        assert audit(session, store.log).ok
        # input order is kept: good[i] is entry base + i
        for i in (0, 9, 10, 24):
            r = receipt(session, base + i)
            verified = verify_receipt(r, store.log.vkey)
            assert verified.leaf.envelope.document == good[i]


def test_import_command(sqlite_store, tmp_path):
    key = sqlite_store.add_signer()
    base = sqlite_store.size()  # the signer's key event
    assert base == 1
    lines = [json.dumps(sign(key, make_statement(f"cli/{i}"))) for i in range(12)]
    (tmp_path / "many.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "one.json").write_text(json.dumps(sign(key, make_statement("cli/single"))))
    ok = subprocess.run(
        [PROVLEDGER, "import", str(tmp_path / "many.jsonl"), str(tmp_path / "one.json"), "--workers", "1"],
        env=sqlite_store.env, capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(f"tree size {base + 13}")
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n" + "garbage\n")
    bad = subprocess.run([PROVLEDGER, "import", str(tmp_path / "bad.jsonl")], env=sqlite_store.env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "refused envelope 1" in bad.stderr
    assert "1 duplicates, 1 refused" in bad.stdout
    missing = subprocess.run([PROVLEDGER, "import", str(tmp_path / "nope.json")], env=sqlite_store.env, capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr

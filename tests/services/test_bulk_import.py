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
    for value in ("0", "-1", "99999999999999999999", "x"):  # a batch size is 1 to 1,000,000
        odd = subprocess.run([PROVLEDGER, "import", "--batch", value, str(tmp_path / "one.json")],
                             env=sqlite_store.env, capture_output=True, text=True)
        assert odd.returncode == 2 and "--batch" in odd.stderr and "Traceback" not in odd.stderr, odd.stderr


@pytest.mark.parametrize("workers, pool_only", [(1, False), (2, True)])
def test_import_judges_each_line_by_the_trust_state_before_it(store, workers, pool_only, monkeypatch):
    """The trust state is a fold over the log: a key event in the file changes how every later
    line is judged, as it would for lines submitted one by one (here: a registration in the file
    lets its key sign later lines; a revocation in the file stops the revoked key's later lines)."""
    from ledger.services import registry  # noqa: PLC0415
    from ledger.trust.policy import Grant, KeyEvent  # noqa: PLC0415

    if pool_only:  # every batch through the pool processes, prepared before the key events land
        monkeypatch.setattr(bulk, "CHECK_WHILE_STARTING", False)
    old = store.add_signer()
    new = generate_private_key()
    with store.sessions() as session:
        prev = registry.next_prev(session)
    register = registry.key_event_envelope(store.admin, KeyEvent(
        action="register", key_id=new.public_key.key_id, principal="new", public_key=new.public_key.spki_der,
        grants=(Grant(("*",)),), issued_at=store.tick(), prev=prev))
    before = [sign(old, make_statement(f"pkg/before-{i}")) for i in range(5)]
    by_new = [sign(new, make_statement(f"pkg/new-{i}")) for i in range(5)]
    raws = [envelope_bytes(e) for e in before] + [envelope_bytes(register)] + [envelope_bytes(e) for e in by_new]

    summary = import_envelopes(store.sessions, raws, store.log, workers=workers, batch_size=4)
    assert (summary.created, summary.refused) == (11, 0), summary.errors

    with store.sessions() as session:
        prev = registry.next_prev(session)
    revoke = registry.key_event_envelope(store.admin, KeyEvent(
        action="revoke", key_id=old.public_key.key_id, compromised_since=0, issued_at=store.tick(), prev=prev))
    after = [sign(old, make_statement(f"pkg/after-{i}")) for i in range(5)]
    still = [sign(new, make_statement(f"pkg/still-{i}")) for i in range(3)]
    raws = [envelope_bytes(revoke)] + [envelope_bytes(e) for e in after] + [envelope_bytes(e) for e in still]
    size = store.size()

    summary = import_envelopes(store.sessions, raws, store.log, workers=workers, batch_size=4)
    assert (summary.created, summary.refused) == (4, 5)
    assert [p for p, _ in summary.errors] == [1, 2, 3, 4, 5]
    assert all(isinstance(e, NotTrustedError) and "revoked" in str(e) for _, e in summary.errors)
    assert store.size() == size + 4
    with store.sessions() as session:
        assert audit(session, store.log).ok


def test_import_refuses_a_batch_size_below_one(store):
    with pytest.raises(ValueError, match="batch_size"):
        import_envelopes(store.sessions, [], store.log, workers=1, batch_size=0)

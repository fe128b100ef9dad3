"""Tamper evidence (issue 2, "done when"): an attacker with database access bypasses the
append-only triggers and rewrites the store; ``audit`` must report the first bad index, the
``provledger audit`` command must exit 1, and ``serve`` must refuse to start.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import text

from ledger import merkle
from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.cli.main import main
from ledger.db.store import stored_position
from ledger.errors import IntegrityError
from ledger.tlog.note import generate_signer
from ledger.services.audit import audit
from web.server import check_at_start
from tests.fixtures import PROVLEDGER

BATCHES = [7, 13, 20]  # 40 records after the signer's key event (entry 0): checkpoints at 0, 1, 8, 21, 41
SIZE = sum(BATCHES)
LAST = -1  # edit_byte(LAST): the store's last entry, whatever its size


def delete_entry_rows(conn, k):
    """Everything that hangs off entry ``k`` (foreign keys), then the entry itself."""
    for table in ("entry_subjects", "entry_signers", "entry_edges", "entry_contents"):
        conn.execute(text(f"DELETE FROM {table} WHERE entry_idx = :k"), {"k": k})
    conn.execute(text("DELETE FROM entries WHERE idx = :k"), {"k": k})


def delete_checkpoint_rows(conn, tree_size):
    """A checkpoint row and the witness cosignatures that hang off it (foreign key)."""
    conn.execute(text("DELETE FROM checkpoint_cosignatures WHERE tree_size = :s"), {"s": tree_size})
    deleted = conn.execute(text("DELETE FROM checkpoints WHERE tree_size = :s"), {"s": tree_size}).rowcount
    assert deleted == 1, f"no checkpoint of size {tree_size} to replace"


def edit_byte(k):
    def run(st):
        idx = st.size() - 1 if k == LAST else k
        with st.tamper() as conn:
            data = bytearray(conn.execute(text("SELECT data FROM entries WHERE idx = :k"), {"k": idx}).scalar_one())
            data[len(data) // 2] ^= 0x01
            conn.execute(text("UPDATE entries SET data = :d WHERE idx = :k"), {"d": bytes(data), "k": idx})
        return idx
    return run


def delete_last(st):
    last = st.size() - 1
    with st.tamper() as conn:
        delete_entry_rows(conn, last)
    return last


def swap(i, j):
    def run(st):
        with st.tamper() as conn:
            rows = {
                idx: (data, leaf, chain)
                for idx, data, leaf, chain in conn.execute(
                    text("SELECT idx, data, leaf_hash, chain_hash FROM entries WHERE idx IN (:i, :j)"), {"i": i, "j": j}
                )
            }
            for a, b in ((i, j), (j, i)):
                data, leaf, chain = rows[b]
                conn.execute(
                    text("UPDATE entries SET data = :d, leaf_hash = :l, chain_hash = :c WHERE idx = :a"),
                    {"d": data, "l": leaf, "c": chain, "a": a},
                )
        return min(i, j)
    return run


def edit_interior(level, index):
    def run(st):
        position = stored_position(level, index)
        with st.tamper() as conn:
            h = bytearray(conn.execute(text("SELECT hash FROM tree_hashes WHERE position = :p"), {"p": position}).scalar_one())
            h[0] ^= 0x80
            conn.execute(text("UPDATE tree_hashes SET hash = :h WHERE position = :p"), {"h": bytes(h), "p": position})
        return index << level
    return run


def replace_latest_checkpoint(st):
    """A checkpoint of the same size, for another root, signed by the attacker's key."""
    size = st.size()
    forger = generate_signer(st.log.origin)
    fake_root = merkle.leaf_hash(b"attacker")
    note = sign_checkpoint(Checkpoint(st.log.origin, size, fake_root), forger).decode()
    with st.tamper() as conn:
        delete_checkpoint_rows(conn, size)
        conn.execute(
            text("INSERT INTO checkpoints (tree_size, root_hash, note, issued_at) VALUES (:s, :r, :n, 0)"),
            {"s": size, "r": fake_root, "n": note},
        )
    return size - 1


def replay_old_checkpoint_as_latest(st):
    """The latest checkpoint row replaced by a genuine, older signed note (a rollback)."""
    size = st.size()
    with st.tamper() as conn:
        # the checkpoint before the latest one (after the second batch)
        old = conn.execute(
            text("SELECT tree_size, note, root_hash FROM checkpoints WHERE tree_size < :s ORDER BY tree_size DESC LIMIT 1"),
            {"s": size},
        ).one()
        assert old.tree_size == size - BATCHES[-1]
        delete_checkpoint_rows(conn, size)
        conn.execute(
            text("INSERT INTO checkpoints (tree_size, root_hash, note, issued_at) VALUES (:s, :r, :n, 0)"),
            {"s": size, "r": old.root_hash, "n": old.note},
        )
    return size - 1


CASES = {
    "edit-byte-entry-0": edit_byte(0),
    "edit-byte-entry-5": edit_byte(5),
    "edit-byte-entry-22": edit_byte(22),
    "edit-byte-last-entry": edit_byte(LAST),
    "delete-last-entry": delete_last,
    "swap-entries-10-25": swap(10, 25),
    "swap-adjacent-entries-32-33": swap(32, 33),
    "edit-interior-hash-(1,3)": edit_interior(1, 3),
    "edit-interior-hash-(2,3)": edit_interior(2, 3),
    "edit-interior-hash-(5,0)": edit_interior(5, 0),
    "replace-latest-checkpoint": replace_latest_checkpoint,
    "replay-old-checkpoint-as-latest": replay_old_checkpoint_as_latest,
}


@pytest.fixture
def ledger40(store):
    store.add_signer()  # its key event is entry 0
    store.fill(BATCHES)
    assert store.size() == 1 + SIZE
    with store.sessions() as session:
        assert audit(session, store.log).ok
    return store


@pytest.mark.parametrize("case", list(CASES))
def test_audit_names_first_bad_index(ledger40, case):
    first_bad = CASES[case](ledger40)
    with ledger40.sessions() as session:
        report = audit(session, ledger40.log)
    assert not report.ok
    assert report.first_bad_index == first_bad, report.to_json()
    assert any(p.index == first_bad for p in report.problems), report.to_json()


@pytest.mark.parametrize("case", list(CASES))
def test_audit_command_exits_1(ledger40, case, monkeypatch, capsys):
    first_bad = CASES[case](ledger40)
    for name, value in ledger40.env.items():
        if name.startswith("PROVLEDGER_"):
            monkeypatch.setenv(name, value)
    assert main(["audit", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"ok", "tree_size", "first_bad_index", "problems"}
    assert report["ok"] is False
    assert report["first_bad_index"] == first_bad
    assert main(["audit"]) == 1
    assert f"first bad index {first_bad}" in capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES))
def test_serve_refuses_to_start(ledger40, case):
    first_bad = CASES[case](ledger40)
    with pytest.raises(IntegrityError) as caught:
        check_at_start(ledger40.settings)
    assert caught.value.first_bad_index == first_bad
    assert f"index {first_bad}" in str(caught.value)


FAST_CHECK_CASES = [
    "edit-byte-entry-22", "edit-byte-last-entry", "delete-last-entry", "swap-entries-10-25",
    "replace-latest-checkpoint", "replay-old-checkpoint-as-latest",
]


@pytest.mark.parametrize("case", FAST_CHECK_CASES)
def test_fast_start_up_check_also_refuses(ledger40, case, monkeypatch):
    """A ledger too large for a full start-up audit (limit forced to 0) starts on the fast check."""
    monkeypatch.setenv("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", "0")
    CASES[case](ledger40)
    with pytest.raises(IntegrityError):
        check_at_start(ledger40.settings)


def test_untampered_store_passes_start_up_checks(ledger40, monkeypatch):
    state, background = check_at_start(ledger40.settings)
    assert not background and state.compromised is None
    monkeypatch.setenv("PROVLEDGER_STARTUP_FULL_AUDIT_LIMIT", "0")
    state, background = check_at_start(ledger40.settings)
    assert background and state.background_audit_running


def test_rewritten_entry_with_consistent_hashes_is_still_caught(ledger40):
    """A careful attacker also rewrites the leaf hash and the chain from the edited entry on: the
    stored interior hashes and the signed checkpoints still expose it."""
    from ledger.tlog.hashing import CHAIN_SEED, chain_hash, leaf_hash  # noqa: PLC0415

    k = 22
    with ledger40.tamper() as conn:
        rows = conn.execute(text("SELECT idx, data, chain_hash FROM entries ORDER BY idx")).all()
        head = CHAIN_SEED if k == 0 else rows[k - 1].chain_hash
        for idx, data, _ in rows[k:]:
            if idx == k:
                data = data.replace(b'"integrated_time":', b'"integrated_time":1', 1)
            leaf = leaf_hash(data)
            head = chain_hash(head, leaf)
            conn.execute(
                text("UPDATE entries SET data = :d, leaf_hash = :l, chain_hash = :c WHERE idx = :i"),
                {"d": data, "l": leaf, "c": head, "i": idx},
            )
    with ledger40.sessions() as session:
        report = audit(session, ledger40.log)
    assert not report.ok
    assert report.first_bad_index is not None and report.first_bad_index <= k
    with pytest.raises(IntegrityError):
        check_at_start(ledger40.settings)


def test_real_serve_process_refuses_to_start(sqlite_store):
    sqlite_store.fill(BATCHES)
    first_bad = edit_byte(22)(sqlite_store)
    proc = subprocess.run(
        [PROVLEDGER, "serve", "--port", "0"],
        env=sqlite_store.env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "refusing to start" in proc.stderr
    assert f"index {first_bad}" in proc.stderr

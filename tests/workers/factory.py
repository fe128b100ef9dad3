"""Rows written straight into a store with the store functions, past the append path: correct
leaf, chain and interior hashes and signed checkpoints (so the ledger is consistent), but
nothing stops a test from writing what the append path would refuse (a forged signature), or
from growing the tree without a checkpoint.
"""

from __future__ import annotations


from ledger.tlog.checkpoint import Checkpoint, sign_checkpoint
from ledger.db import store as dbstore
from ledger.tlog.hashing import chain_hash, leaf_hash
from ledger.records.keys import generate_private_key
from ledger.records.leaf import encode_leaf
from ledger.trust.fold import leaf_facts
from tests.fixtures import StoreHandle, sign


def bulk_ledger_into(
    st: StoreHandle,
    size: int,
    *,
    checkpoint_every: int = 1000,
    final_checkpoint: bool = True,
    corrupt_signature_at: int | None = None,
) -> None:
    """Grow ``st`` to ``size`` entries; a signed checkpoint every ``checkpoint_every`` entries
    and (unless ``final_checkpoint`` is False) at ``size``. Entry ``corrupt_signature_at`` gets
    a signature that does not verify, with every hash consistent."""
    # the audit re-verifies signatures with the signers a leaf records; registering the key is
    # the append path's business, not needed here
    key = st.keys[0] if st.keys else generate_private_key()
    with st.sessions() as session, session.begin():
        current = dbstore.lock_sequencer(session)
        tree = dbstore.read_frontier(session, current)
        head = dbstore.chain_head(session, current)
        rows, nodes, derived = [], [], []
        for index in range(current, size):
            envelope = sign(key)
            if index == corrupt_signature_at:
                sig = envelope["signatures"][0]["sig"]
                envelope["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
            data = encode_leaf(envelope, st.clock + index, [key.public_key])
            facts = leaf_facts(index, data)  # the derived rows the append path writes (audit rebuilds them)
            derived.append(facts)
            leaf = leaf_hash(data)
            head = chain_hash(head, leaf)
            for level, node_index, h in tree.append(leaf):
                nodes.append((dbstore.stored_position(level, node_index), h))
            rows.append(
                dbstore.EntryRow(
                    idx=index,
                    leaf_hash=leaf,
                    chain_hash=head,
                    data=data,
                    envelope_hash=facts.content_hash,
                    integrated_time=st.clock + index,
                    predicate_type=facts.predicate_type,
                    key_id=key.key_id,
                    subjects=list(facts.subjects),
                )
            )
            if tree.size % checkpoint_every == 0 or (final_checkpoint and tree.size == size):
                root = tree.root()
                note = sign_checkpoint(Checkpoint(st.log.origin, tree.size, root), st.log.signer).decode()
                dbstore.insert_entries(session, rows, nodes)
                _insert_derived(session, derived)
                rows, nodes, derived = [], [], []
                dbstore.insert_checkpoint(session, tree.size, root, note, st.clock)
        dbstore.insert_entries(session, rows, nodes)
        _insert_derived(session, derived)
        dbstore.advance_sequencer(session, size)


def _insert_derived(session, facts) -> None:  # type: ignore[no-untyped-def]
    """entry_contents, entry_signers and entry_edges of fresh entries, as the append path writes them."""
    if not facts:
        return
    mark = "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"
    conn = session.connection()
    conn.exec_driver_sql(f"INSERT INTO entry_contents (entry_idx, content_hash) VALUES ({mark}, {mark})",
                         [(f.index, f.content_hash) for f in facts])
    signers = [(f.index, k) for f in facts for k in dict.fromkeys(f.signers)]
    if signers:
        conn.exec_driver_sql(f"INSERT INTO entry_signers (entry_idx, key_id) VALUES ({mark}, {mark})", signers)
    edges = [(f.index, i, *e) for f in facts for i, e in enumerate(f.edges)]
    if edges:
        conn.exec_driver_sql(
            f"INSERT INTO entry_edges (entry_idx, position, kind, algorithm, digest) VALUES ({mark}, {mark}, {mark}, {mark}, {mark})",
            edges,
        )


def ledger_like_batches(st: StoreHandle, batches: list[int]) -> None:
    """The entries and checkpoints ``st.fill(batches)`` makes (a checkpoint after each batch),
    written directly: the tamper cases of tests/services/test_tamper.py apply unchanged."""
    size = 0
    for n in batches:
        size += n
        bulk_ledger_into(st, size, checkpoint_every=10**9)

"""The distributed audit's pure parts, called directly: planning, one shard, the combiner,
the audit-run records and the checkpoint duty — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select, text

from ledger.db import store as dbstore
from ledger.db.models import AuditShard
from ledger.errors import MalformedError, NotFoundError
from ledger.records.keys import generate_private_key
from ledger.merkle import range_nodes
from ledger.records.leaf import decode_leaf, encode_leaf
from ledger.services import audit, shards
from ledger.services.shards.results import _Problems
from ledger.records.leaf import COMMON_DSSE_LEAF as _COMMON_LEAF
from tests.fixtures import sign
from tests.services.test_tamper import BATCHES, CASES, SIZE
from tests.workers.factory import bulk_ledger_into, ledger_like_batches


def distributed(st, level: int | None) -> dict:
    """Plan, run every shard and combine, in this process (what the workers do)."""
    with st.sessions() as session, session.begin():
        audit_id = shards.create_audit(session, st.log, now=st.tick(), source="cli", shard_level=level).id
    with st.sessions() as session:
        rows = session.execute(
            select(AuditShard.shard, AuditShard.start_index, AuditShard.end_index).where(AuditShard.audit_id == audit_id)
        ).all()
    for number, start, end in rows:
        shards.run_shard(st.sessions, audit_id, number, start, end)
    report = shards.finish_audit(st.sessions, audit_id)
    assert report is not None
    assert set(report) == {"ok", "tree_size", "first_bad_index", "problems", "shard"}  # audit --json, plus "shard"
    with st.sessions() as session:
        report["checked"] = shards.audit_json(session, audit_id)["checked"]
    return report


def single(st) -> audit.AuditReport:
    with st.sessions() as session:
        return audit.audit(session, st.log)


# ------------------------------------------------------------------------------ planning


@pytest.mark.parametrize("level", [0, 1, 2, 3, 5])
def test_shards_are_complete_subtrees_covering_the_tree(level):
    for size in range(0, 140):
        plan = shards.plan_shards(size, level)
        assert [s.number for s in plan] == list(range(len(plan)))
        position = 0
        for s in plan:
            assert s.start == position
            assert s.start % (1 << s.level) == 0, "a shard is an aligned complete subtree"
            assert s.level <= level
            position = s.end
        assert position == size
        full = size >> level
        assert all(s.level == level for s in plan[:full])
        assert [s.node for s in plan[full:]] == range_nodes(full << level, size)


def test_automatic_shard_size_stays_in_bounds():
    assert shards.shard_level_for(0) == shards.AUTO_MIN_LEVEL
    assert shards.shard_level_for(10) == shards.AUTO_MIN_LEVEL
    assert shards.shard_level_for(1_000_000) == 14  # 62 shards of 16384 for 1M entries
    assert shards.shard_level_for(10**12) == shards.AUTO_MAX_LEVEL


@pytest.mark.parametrize("size, level", [(-1, 2), (10, -1), (10, shards.MAX_SHARD_LEVEL + 1)])
def test_bad_plans_are_refused(size, level):
    with pytest.raises(MalformedError):
        shards.plan_shards(size, level)


# ------------------------------------------------------------------------------ verdicts


@pytest.fixture
def ledger40(store):
    ledger_like_batches(store, BATCHES)  # checkpoints at 0, 7, 20, 40
    assert single(store).ok
    return store


@pytest.mark.parametrize("level", [0, 2, 3, None])
def test_intact_ledger_passes(ledger40, level):
    report = distributed(ledger40, level)
    assert report["ok"] is True, report
    assert report["first_bad_index"] is None and report["shard"] is None
    assert report["tree_size"] == SIZE
    assert report["checked"]["signatures"] == SIZE
    # checkpoints at 0, 7, 20 and 40: every one is checked
    assert report["checked"]["checkpoints"] == 4


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_tampering_names_the_same_first_bad_index_as_the_single_process_audit(ledger40, case, level):
    first_bad = CASES[case](ledger40)
    expected = single(ledger40)
    report = distributed(ledger40, level)
    assert not expected.ok and report["ok"] is False
    assert report["first_bad_index"] == expected.first_bad_index == first_bad, report
    shard = report["shard"]
    assert shard["start"] <= first_bad < shard["end"]
    assert any(p["index"] == first_bad for p in report["problems"])


def test_a_forged_signature_with_consistent_hashes_is_caught(store):
    """Rows written past the append path with every hash right but one envelope's signature
    wrong: only re-verifying the signatures sees it (the single-process audit does not)."""
    bulk_ledger_into(store, 50, checkpoint_every=8, corrupt_signature_at=21)
    report = distributed(store, 2)
    assert report["ok"] is False
    assert report["first_bad_index"] == 21
    assert report["problems"][0]["kind"] == "signature"
    assert report["shard"] == {"number": 5, "start": 20, "end": 24}
    assert report["checked"]["signatures"] == 49


def test_leaf_bytes_that_do_not_decode_are_named(store):
    bulk_ledger_into(store, 6)
    with store.tamper() as conn:
        data = conn.execute(text("SELECT data FROM entries WHERE idx = 4")).scalar_one()
        spaced = data.replace(b'"kind":"dsse"', b'"kind": "dsse"')
        conn.execute(text("UPDATE entries SET data = :d WHERE idx = 4"), {"d": spaced})
    report = distributed(store, 1)
    kinds = {(p["index"], p["kind"]) for p in report["problems"]}
    assert (4, "leaf_hash") in kinds and (4, "leaf_data") in kinds
    assert report["first_bad_index"] == 4


# ------------------------------------------------------------------------------ leaf decoding


def test_fast_and_exact_leaf_decoding_agree():
    key = generate_private_key()
    envelope = sign(key)
    data = encode_leaf(envelope, 1_750_000_000, [key.public_key])
    assert shards.check_leaf_signatures(data) is None
    # an extra (canonical) member takes the exact path: the verdict is decode_leaf's
    doc = json.loads(data)
    doc["note"] = "x"
    extra = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    try:
        decode_leaf(extra)
    except MalformedError:
        assert shards.check_leaf_signatures(extra)[0] == "leaf_data"
    else:
        assert shards.check_leaf_signatures(extra) is None
    # not canonical: refused on either path
    assert shards.check_leaf_signatures(data.replace(b",", b", ", 1))[0] == "leaf_data"
    # a signer key id that does not match its key
    other = generate_private_key()
    doc = json.loads(data)
    doc["signers"][0]["key_id"] = other.key_id
    assert shards.check_leaf_signatures(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())[0] == "leaf_data"
    # recorded signer that did not sign
    wrong = encode_leaf(envelope, 1_750_000_000, [other.public_key])
    kind, message = shards.check_leaf_signatures(wrong)
    assert kind == "signature" and other.key_id in message
    # no signer recorded
    assert shards.check_leaf_signatures(encode_leaf(envelope, 1, []))[0] == "signature"
    # truncated and not JSON at all
    assert shards.check_leaf_signatures(data[:-5])[0] == "leaf_data"
    assert shards.check_leaf_signatures(b"\xff\xfe")[0] == "leaf_data"
    # unpadded base64 (DSSE accepts it): not the byte-matched shape, the same verdict
    unpadded = dict(envelope, payload=envelope["payload"].rstrip("="))
    if unpadded["payload"] != envelope["payload"]:
        assert shards.check_leaf_signatures(encode_leaf(unpadded, 1, [key.public_key])) is None
    # older leaves name each signer's key id; key events carry no keyid hint: both still verify
    # on the byte-matched path (and a wrong signature under either form does not)
    legacy = json.loads(data)
    legacy["signers"][0]["key_id"] = key.key_id
    legacy_data = json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()
    no_hint = encode_leaf(dict(envelope, signatures=[{"sig": envelope["signatures"][0]["sig"]}]), 1, [key.public_key])
    for form in (legacy_data, no_hint):
        assert _COMMON_LEAF.fullmatch(form) is not None
        assert shards.check_leaf_signatures(form) is None and decode_leaf(form).signers[0].key_id == key.key_id
    assert shards.check_leaf_signatures(encode_leaf(dict(envelope, signatures=[{"sig": sign(other)["signatures"][0]["sig"]}]), 1, [key.public_key]))[0] == "signature"
    # a flipped signature bit
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    flipped = dict(envelope, signatures=[{"keyid": key.key_id, "sig": base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()}])
    assert shards.check_leaf_signatures(encode_leaf(flipped, 1, [key.public_key]))[0] == "signature"


# ------------------------------------------------------------------------------ audit runs


def test_shard_runs_are_idempotent_and_refuse_bad_arguments(ledger40):
    with ledger40.sessions() as session, session.begin():
        audit_id = shards.create_audit(session, ledger40.log, now=1, source="api", shard_level=3).id
    first = shards.run_shard(ledger40.sessions, audit_id, 1, 8, 16)
    again = shards.run_shard(ledger40.sessions, audit_id, 1, 8, 16)
    assert first == again == {"audit": audit_id, "shard": 1, "state": "done", "problems": 0}
    with ledger40.sessions() as session:
        assert session.get(AuditShard, (audit_id, 1)).attempts == 1  # the second run did nothing
    assert shards.finish_audit(ledger40.sessions, audit_id) is None  # other shards are not done
    with pytest.raises(MalformedError, match=r"covers entries \[16, 24\)"):
        shards.run_shard(ledger40.sessions, audit_id, 2, 16, 32)  # a range that is not the shard's
    for bad in (("1", 0, 0, 8), (audit_id, 0, -1, 8), (audit_id, 0, 0, 8.0), (audit_id, None, 0, 8)):
        with pytest.raises(MalformedError):
            shards.run_shard(ledger40.sessions, *bad)
    with pytest.raises(NotFoundError):
        shards.run_shard(ledger40.sessions, audit_id + 99, 0, 0, 8)
    with pytest.raises(NotFoundError):
        shards.run_shard(ledger40.sessions, audit_id, 99, 0, 8)
    # a shard that keeps dying is refused once it has been started max_attempts times
    with ledger40.tamper() as conn:
        conn.execute(text("UPDATE audit_shards SET attempts = 3 WHERE audit_id = :a AND shard = 0"), {"a": audit_id})
    with pytest.raises(MalformedError, match="started 3 times"):
        shards.run_shard(ledger40.sessions, audit_id, 0, 0, 8, max_attempts=3)


def test_audit_json_shows_progress_and_the_report(ledger40):
    with ledger40.sessions() as session, session.begin():
        audit_id = shards.create_audit(session, ledger40.log, now=5, source="api", shard_level=4).id
    with ledger40.sessions() as session:
        doc = shards.audit_json(session, audit_id)
    assert doc["state"] == "queued" and doc["result"] is None
    assert doc["progress"] == {"entries_done": 0, "entries_total": SIZE, "shards_done": 0, "shards_total": 3}
    shards.run_shard(ledger40.sessions, audit_id, 0, 0, 16)
    with ledger40.sessions() as session:
        doc = shards.audit_json(session, audit_id)
    assert doc["state"] == "running" and doc["progress"]["entries_done"] == 16 and doc["progress"]["shards_done"] == 1
    shards.run_shard(ledger40.sessions, audit_id, 1, 16, 32)
    shards.run_shard(ledger40.sessions, audit_id, 2, 32, 40)
    report = shards.finish_audit(ledger40.sessions, audit_id)
    assert shards.finish_audit(ledger40.sessions, audit_id) == report  # idempotent
    with ledger40.sessions() as session:
        doc = shards.audit_json(session, audit_id)
    assert doc["state"] == "done" and doc["result"] == report and doc["progress"]["entries_done"] == SIZE
    shards.fail_audit(ledger40.sessions, audit_id, "too late")  # a finished audit stays finished
    with ledger40.sessions() as session:
        assert shards.audit_json(session, audit_id)["state"] == "done"
        with pytest.raises(NotFoundError):
            shards.audit_json(session, audit_id + 1)
        with pytest.raises(MalformedError):
            shards.get_audit(session, 0)


def test_an_empty_ledger_audits_with_no_shards(store):
    with store.sessions() as session, session.begin():
        run = shards.create_audit(session, store.log, now=1, source="cli")
        assert run.shard_count == 0
    report = shards.finish_audit(store.sessions, run.id)
    assert report["ok"] is True
    with store.sessions() as session:
        assert shards.audit_json(session, run.id)["checked"]["checkpoints"] == 1


def test_problems_keep_the_lowest_indexes():
    problems = _Problems()
    for i in range(500, 0, -1):
        problems.add(i, "leaf_hash", "x")
    problems.add(None, "log_identity", "y")
    kept = problems.items
    assert len(kept) == audit.MAX_PROBLEMS and problems.truncated
    assert [p.index for p in kept[:3]] == [1, 2, 3]


# ------------------------------------------------------------------------------ checkpoint duty


def test_publish_checkpoint_is_a_no_op_when_covered_and_signs_when_grown(store):
    bulk_ledger_into(store, 5)
    with store.sessions() as session, session.begin():
        assert shards.publish_checkpoint(session, store.log, now=9) is None
    # the tree grows without a checkpoint (rows written past the append path)
    bulk_ledger_into(store, 12, checkpoint_every=10**9, final_checkpoint=False)
    with store.sessions() as session, session.begin():
        assert shards.publish_checkpoint(session, store.log, now=9) == 12
    with store.sessions() as session, session.begin():
        assert shards.publish_checkpoint(session, store.log, now=10) is None
    with store.sessions() as session:
        latest = dbstore.latest_checkpoint(session)
        assert latest.tree_size == 12
    assert single(store).ok

"""Issue 12 through the real append path, on SQLite and PostgreSQL: key events are ordered and
unique, a submission is its signed content, time only moves forward, audit rebuilds every cache."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import text

from ledger.db.engine import make_engine, make_session_factory
from ledger.errors import ConflictError, IntegrityError, SignatureError, NotTrustedError
from ledger.records.keys import generate_private_key
from ledger.services import registry, shards
from ledger.services.append import Appended, prepare
from ledger.services.audit import audit
from ledger.services.policy import fold_key_events
from ledger.services.sequencer import Sequencer
from ledger.services.trust import load_table_state, trust_fold
from ledger.trust.policy import Grant, KeyEvent
from ledger.trust.predicates import FIRMWARE_IMAGE, SLSA_V1
from tests.provenance.helpers import Trust, build, envelope, firmware_image


@pytest.fixture
def trust(store) -> Trust:  # type: ignore[no-untyped-def]
    return Trust(store)


def _prev(trust: Trust) -> tuple[int, str]:
    with trust.store.sessions() as session:
        return registry.next_prev(session)


def _threshold_envelope(trust: Trust, n: int, prev: tuple[int, str]) -> dict:  # type: ignore[type-arg]
    event = KeyEvent("threshold", predicate_type=FIRMWARE_IMAGE, threshold=n, issued_at=trust.store.tick(), prev=prev)
    return registry.key_event_envelope(trust.admin, event)


# ------------------------------------------------------------------------------ 1. ordered, unique


def test_a_replayed_key_event_with_another_hint_is_refused_and_the_state_does_not_roll_back(trust: Trust) -> None:
    trust.add("vendor", Grant((FIRMWARE_IMAGE,)))
    old = _threshold_envelope(trust, 1, _prev(trust))
    (first,) = trust.store.append([old])
    assert isinstance(first, Appended)
    (second,) = trust.store.append([_threshold_envelope(trust, 2, _prev(trust))])
    assert isinstance(second, Appended)
    size = trust.store.size()
    replay = copy.deepcopy(old)
    replay["signatures"][0]["keyid"] = "0" * 64  # only the unsigned hint changes
    for attempt in (old, replay):
        (result,) = trust.store.append([attempt])
        assert isinstance(result, ConflictError) and result.http_status == 409, result
    assert trust.store.size() == size
    with trust.store.sessions() as session:
        assert trust_fold(session).state.threshold_for(FIRMWARE_IMAGE) == 2
        report = audit(session, trust.store.log)
    assert report.ok, report.problems


def test_a_fork_and_an_event_without_prev_are_refused(trust: Trust) -> None:
    prev = _prev(trust)
    a, b = _threshold_envelope(trust, 2, prev), _threshold_envelope(trust, 3, prev)
    assert isinstance(trust.store.append([a])[0], Appended)
    (fork,) = trust.store.append([b])
    assert isinstance(fork, ConflictError) and "forked" in str(fork)
    bare = registry.key_event_envelope(trust.admin, KeyEvent("threshold", predicate_type=SLSA_V1, threshold=2, issued_at=1))
    (refused,) = trust.store.append([bare])
    assert isinstance(refused, ConflictError) and "predecessor" in str(refused)
    # both in one batch: prepared against the same state, the second is refused under the lock
    prev = _prev(trust)
    c, d = _threshold_envelope(trust, 4, prev), _threshold_envelope(trust, 5, prev)
    results = trust.store.append([c, d])
    assert isinstance(results[0], Appended) and isinstance(results[1], ConflictError)


# ------------------------------------------------------------------------------ 2. signed content


def test_duplicates_are_judged_by_signed_content_and_junk_signatures_are_refused(trust: Trust) -> None:
    ci = trust.add("ci", Grant((SLSA_V1,)))
    stmt = build("pkg/app")[0]
    env = envelope(stmt, ci)
    (first,) = trust.store.append([env])
    assert isinstance(first, Appended) and first.created
    hinted = copy.deepcopy(env)
    hinted["signatures"][0]["keyid"] = "f" * 64
    (again,) = trust.store.append([hinted])
    assert isinstance(again, Appended) and not again.created and again.receipt["index"] == first.receipt["index"]
    size = trust.store.size()
    junk = copy.deepcopy(env)
    junk["signatures"].append(envelope(stmt, generate_private_key())["signatures"][0])  # verifies under no registered key
    (refused,) = trust.store.append([junk])
    assert isinstance(refused, SignatureError) and refused.http_status == 422 and "does not verify with any registered key" in str(refused)
    garbage = copy.deepcopy(env)
    garbage["signatures"].append({"keyid": "", "sig": "AAAA"})
    assert isinstance(trust.store.append([garbage])[0], SignatureError)
    assert trust.store.size() == size
    with trust.store.sessions() as session:
        stored = session.execute(text("SELECT data FROM entries WHERE idx = :i"), {"i": first.receipt["index"]}).scalar_one()
    assert len(json.loads(stored)["envelope"]["signatures"]) == 1


# ------------------------------------------------------------------------------ 3. time moves forward


def test_integrated_time_never_goes_backwards_and_revoked_keys_sign_nothing_new(trust: Trust) -> None:
    ci, other = trust.add("ci", Grant((SLSA_V1,))), trust.add("other", Grant((SLSA_V1,)))
    t = trust.store.clock
    fast = trust.ok(build("pkg/one")[0], ci, now=t + 300)
    slow = trust.ok(build("pkg/two")[0], ci, now=t + 1)  # a process whose clock is 5 minutes behind
    with trust.store.sessions() as session:
        times = dict(session.execute(text("SELECT idx, integrated_time FROM entries WHERE idx IN (:a, :b)"), {"a": fast, "b": slow}).all())
    assert times[slow] == times[fast] == t + 300
    trust.revoke(ci, now=t + 400)
    result = trust.submit(build("pkg/three")[0], ci, now=t + 2)  # the slow clock before the revocation time
    assert isinstance(result, NotTrustedError) and "revoked" in str(result)
    assert isinstance(trust.submit(build("pkg/four")[0], other, now=t + 2), Appended)


def test_two_sequencers_with_clocks_apart_on_one_database(trust: Trust) -> None:
    """Two appenders (each its own engine, sequencer and clock) on one store."""
    ci = trust.add("ci", Grant((SLSA_V1,)))
    t = trust.store.clock
    engine_a = make_engine(trust.store.settings.database_url)
    engine_b = make_engine(trust.store.settings.database_url)
    try:
        sessions_a, sessions_b = make_session_factory(engine_a), make_session_factory(engine_b)
        seq_a = Sequencer(sessions_a, trust.store.log, clock=lambda: t + 300)
        seq_b = Sequencer(sessions_b, trust.store.log, clock=lambda: t)
        with sessions_a() as session:
            pa = prepare(session, envelope(build("pkg/a")[0], ci), now=t + 300)
        with sessions_b() as session:
            pb = prepare(session, envelope(build("pkg/b")[0], ci), now=t)
        (ra,) = seq_a.submit([pa])
        (rb,) = seq_b.submit([pb])
        assert isinstance(ra, Appended) and isinstance(rb, Appended)
        assert rb.receipt["index"] > ra.receipt["index"]
        with sessions_b() as session:
            rows = session.execute(text("SELECT integrated_time FROM entries ORDER BY idx")).scalars().all()
        assert rows == sorted(rows) and rows[-1] == t + 300
        seq_a.stop()
        seq_b.stop()
    finally:
        engine_a.dispose()
        engine_b.dispose()


# ------------------------------------------------------------------------------ 9. audit rebuilds every cache


EDITS = {
    "entries.predicate_type": "UPDATE entries SET predicate_type = 'https://example.com/other' WHERE idx = {rev}",
    "entries.key_id": "UPDATE entries SET key_id = '{zeros}' WHERE idx = {rec}",
    "entries.integrated_time": "UPDATE entries SET integrated_time = integrated_time - 1000 WHERE idx = {rec}",
    "entry_subjects": "UPDATE entry_subjects SET digest = '{zeros}' WHERE entry_idx = {rec}",
    "entry_edges": "DELETE FROM entry_edges WHERE entry_idx = {rec}",
    "entry_signers": "DELETE FROM entry_signers WHERE entry_idx = {rec}",
    "entry_contents": "UPDATE entry_contents SET content_hash = :junk WHERE entry_idx = {rec}",
    "trust_keys": "UPDATE trust_keys SET revoked_index = NULL, compromised_since = NULL, revoked_at = NULL",
    "trust_thresholds": "INSERT INTO trust_thresholds (pattern, threshold, set_index) VALUES ('x/*', 1, {rev})",
}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_audit_recomputes_each_derived_table_from_the_leaves(trust: Trust, what: str) -> None:
    ci = trust.add("ci", Grant((SLSA_V1,)))
    fw = trust.add("fw", Grant((FIRMWARE_IMAGE,)))
    fw_index = trust.ok(firmware_image("acme/bios")[0], fw)
    rec = trust.ok(build("pkg/app", inputs=[firmware_image("acme/bios")[1]])[0], ci)
    rev = trust.revoke(fw).receipt["index"]
    with trust.store.sessions() as session:
        assert audit(session, trust.store.log).ok
    with trust.store.tamper() as conn:
        conn.execute(text(EDITS[what].format(rec=rec, rev=rev, zeros="0" * 64)), {"junk": b"\x01" * 32})
    with trust.store.sessions() as session:
        report = audit(session, trust.store.log)
    assert not report.ok, what
    expected = {"entries.predicate_type": rev, "trust_keys": rev, "trust_thresholds": rev}.get(what, rec)
    assert report.first_bad_index == expected, (what, report.problems)
    # the workers' audit (shards of 2 entries, then combined) finds the same first bad index
    with trust.store.sessions() as session:
        log = trust.store.log
        results = [shards.verify_shard(session, s, vkey=log.vkey, origin=log.origin)
                   for s in shards.plan_shards(report.tree_size, 1)]
        combined = shards.combine_shards(session, report.tree_size, results, vkey=log.vkey, origin=log.origin)
    assert combined.first_bad_index == expected, (what, combined.problems)
    from web.server import check_at_start  # noqa: PLC0415

    with pytest.raises(IntegrityError, match=f"at index {expected}"):
        check_at_start(trust.store.settings)
    del fw_index


# ------------------------------------------------------------------------------ 11. incremental = from scratch


def test_the_incremental_fold_and_the_from_scratch_fold_agree(trust: Trust) -> None:
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: PLC0415

    keys: list = []  # type: ignore[type-arg]

    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(["add", "revoke", "reaffirm", "rotate", "threshold"]), st.integers(0, 50)), min_size=1, max_size=6))
    def run(steps: list[tuple[str, int]]) -> None:
        for action, n in steps:
            now = trust.store.tick()
            try:
                if action == "add" or not keys:
                    keys.append(trust.add(f"p{n % 3}", Grant((SLSA_V1,), review_by=now + n)))
                elif action == "revoke":
                    trust.revoke(keys[n % len(keys)], compromised_since=now - n)
                elif action == "reaffirm":
                    trust.reaffirm(keys[n % len(keys)], now + 100 + n)
                elif action == "rotate":
                    new = generate_private_key()
                    registry.rotate_key(trust.store.sessions, trust.store.log, trust.admin, keys[n % len(keys)].key_id, new.public_key, now=now)
                    keys.append(new)
                else:
                    trust.threshold(f"https://slsa.dev/{n % 2}/*", 1 + n % 3)
            except ConflictError:
                pass  # an event that cannot apply (rotating a revoked key) is refused, not appended
            with trust.store.sessions() as session:
                incremental = trust_fold(session)
                scratch = fold_key_events(session)
                tables = load_table_state(session)
                assert incremental.state.keys == scratch.state.keys == tables.keys
                assert incremental.state.thresholds == scratch.state.thresholds == tables.thresholds
                assert incremental.last_key_event == scratch.last_key_event
                assert incremental.state.threshold_history == scratch.state.threshold_history

    run()


# ------------------------------------------------------------------------------ 10. why, and stale shown alike


def test_trusted_links_say_why_and_stale_shows_the_same_everywhere(trust: Trust) -> None:
    from ledger.services import chain as chain_service  # noqa: PLC0415
    from ledger.services.trust import signer_listing  # noqa: PLC0415

    t = trust.store.clock
    ci = trust.add("ci", Grant((SLSA_V1,), review_by=t + 50))
    stmt, digest = build("pkg/app")
    index = trust.ok(stmt, ci)
    with trust.store.sessions() as session:
        fresh = chain_service.chain(session, f"sha256:{digest}", now=t + 10)
        stale = chain_service.chain(session, f"sha256:{digest}", now=t + 100)
        listed = {k["key_id"]: k for k in signer_listing(session, now=t + 100)}
    link = fresh["links"][0]
    assert fresh["verdict"] == "trusted" and link["index"] == index
    assert link["why"]["principals"] == ["ci"] and link["why"]["signers"] == [ci.key_id]
    assert (link["why"]["k"], link["why"]["n"]) == (1, 1) and link["why"]["review_by"] is not None
    assert fresh["weakest_link"]["index"] == index and "review-by" in fresh["weakest_link"]["weakest_because"]
    assert stale["verdict"] == "stale" and stale["links"][0]["stale"] is True
    assert listed[ci.key_id]["stale"] is True and listed[ci.key_id]["stale_since"] == stale["links"][0]["why"]["review_by"]


def test_concurrent_administrators_each_follow_the_last_key_event(trust: Trust) -> None:
    """Key events racing: each is either appended after the one before it or signed again (never
    two events following the same predecessor)."""
    import threading  # noqa: PLC0415

    errors: list[BaseException] = []
    keys = [generate_private_key() for _ in range(4)]

    def add(i: int) -> None:
        try:
            registry.add_key(trust.store.sessions, trust.store.log, trust.admin, f"p{i}", keys[i].public_key,
                             [Grant((SLSA_V1,))], now=trust.store.clock + i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with trust.store.sessions() as session:
        state = trust_fold(session).state
        report = audit(session, trust.store.log)
        prevs = [f.key_event.prev for f in (
            __import__("ledger.trust.fold", fromlist=["leaf_facts"]).leaf_facts(i, bytes(d))
            for i, d in session.execute(text("SELECT idx, data FROM entries ORDER BY idx")).all())]
    assert report.ok, report.problems
    assert len(set(prevs)) == len(prevs)  # a chain, no fork
    assert errors == [] and all(k.key_id in state.keys for k in keys)  # the losers signed again


def test_audit_checks_the_cosignature_index_against_its_lines(trust: Trust) -> None:
    import base64  # noqa: PLC0415

    ci = trust.add("ci", Grant((SLSA_V1,)))
    trust.ok(build("pkg/app")[0], ci)
    size = trust.store.size()
    line = "\u2014 witness.example " + base64.b64encode(bytes.fromhex("0a0b0c0d") + b"\x00" * 64).decode()
    with trust.store.tamper() as conn:  # an index row that its own line contradicts
        conn.execute(text("INSERT INTO checkpoint_cosignatures (tree_size, witness, key_id, line, received_at) "
                          "VALUES (:s, 'witness.example', 'ffffffff', :l, 0)"), {"s": size, "l": line})
    with trust.store.sessions() as session:
        report = audit(session, trust.store.log)
    assert not report.ok and report.first_bad_index == size - 1
    assert any("cosignature index" in p.message for p in report.problems)
    # the signature-level audits (shards, then the combiner) check it too
    with trust.store.sessions() as session:
        log = trust.store.log
        results = [shards.verify_shard(session, s, vkey=log.vkey, origin=log.origin) for s in shards.plan_shards(size, 1)]
        combined = shards.combine_shards(session, size, results, vkey=log.vkey, origin=log.origin)
    assert not combined.ok and combined.first_bad_index == size - 1
    assert any("cosignature index" in p["message"] if isinstance(p, dict) else "cosignature index" in p.message for p in combined.problems)


def test_audit_reverifies_stored_cosignatures_with_the_configured_witness_keys(trust: Trust, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.tlog.note import Ed25519CosignatureSigner, format_note, parse_note  # noqa: PLC0415
    from ledger.tlog.note.encoding import Note  # noqa: PLC0415

    ci = trust.add("ci", Grant((SLSA_V1,)))
    trust.ok(build("pkg/app")[0], ci)
    older = trust.store.size()
    trust.ok(build("pkg/lib")[0], ci)
    size = trust.store.size()
    witness = Ed25519CosignatureSigner("witness.example", b"\x07" * 32)
    monkeypatch.setenv("PROVLEDGER_WITNESS_URLS", f"{witness.vkey}=https://witness.example")
    with trust.store.sessions() as session:
        notes = dict(session.execute(text("SELECT tree_size, note FROM checkpoints")).all())

    def line_over(tree_size: int) -> str:
        body = parse_note(notes[tree_size]).text
        return format_note(Note(body, [witness.sign(body, timestamp=1_700_000_000)])).decode().rstrip("\n").rsplit("\n", 1)[1]

    good = line_over(size)
    with trust.store.tamper() as conn:
        conn.execute(text("INSERT INTO checkpoint_cosignatures (tree_size, witness, key_id, line, received_at) "
                          "VALUES (:s, 'witness.example', :k, :l, 0)"), {"s": size, "k": f"{witness.key_id:08x}", "l": good})
    with trust.store.sessions() as session:
        report = audit(session, trust.store.log)
    assert report.ok, report.problems

    blob = bytearray(__import__("base64").b64decode(good.split(" ")[2]))
    blob[-1] ^= 1
    flipped = good.rsplit(" ", 1)[0] + " " + __import__("base64").b64encode(bytes(blob)).decode()
    # a flipped bit, and a genuine line of an older checkpoint moved onto this one
    for forged in (flipped, line_over(older)):
        with trust.store.tamper() as conn:
            conn.execute(text("UPDATE checkpoint_cosignatures SET line = :l WHERE tree_size = :s"), {"s": size, "l": forged})
        with trust.store.sessions() as session:
            report = audit(session, trust.store.log)
            log = trust.store.log
            results = [shards.verify_shard(session, s, vkey=log.vkey, origin=log.origin) for s in shards.plan_shards(size, 1)]
            combined = shards.combine_shards(session, size, results, vkey=log.vkey, origin=log.origin)
        assert not report.ok and report.first_bad_index == size - 1
        assert [p.kind for p in report.problems] == ["cosignature"], report.problems
        assert "does not verify with that witness's key" in report.problems[0].message
        assert not combined.ok and combined.first_bad_index == size - 1

    # a witness no longer configured: its line cannot be re-verified, only its shape is checked
    monkeypatch.delenv("PROVLEDGER_WITNESS_URLS")
    with trust.store.sessions() as session:
        assert audit(session, trust.store.log).ok

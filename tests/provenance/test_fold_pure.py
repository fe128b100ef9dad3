"""The trust fold and the verdicts as pure functions of (entries, index) — issue 12.

No database: leaves are encoded here exactly as the ledger encodes them, then folded.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from ledger.errors import ConflictError
from ledger.records.dsse import parse_envelope, sign_envelope
from ledger.records.keys import PrivateKey, generate_private_key
from ledger.records.leaf import encode_leaf
from ledger.records.statement import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1
from ledger.services.registry import key_event_statement
from ledger.trust.chain import RecordInfo
from ledger.trust.fold import GENESIS, TrustFold, content_hash, fold, leaf_facts
from ledger.trust.judge import judge
from ledger.trust.policy import Grant, KeyEvent, TrustState
from ledger.trust.predicates import FIRMWARE_IMAGE, HARDWARE_PART, SLSA_V1
from ledger.trust.verdict import chain_verdict, reachable, record_info

T0 = 1_750_000_000


def d(i: int) -> str:
    return f"{i:064x}"


class Log:
    """A ledger in memory: leaves encoded as the append path encodes them."""

    def __init__(self) -> None:
        self.admin = generate_private_key()
        self.leaves: list[bytes] = []
        self.last: tuple[int, str] | None = None

    def key_event(self, event: KeyEvent, t: int, *, prev: object = "auto") -> int:
        if prev == "auto":
            event = KeyEvent(**{**event.__dict__, "prev": self.last or GENESIS})
        elif prev is not None:
            event = KeyEvent(**{**event.__dict__, "prev": prev})
        env = sign_envelope(key_event_statement(event), IN_TOTO_PAYLOAD_TYPE, [self.admin])
        return self.raw(env, t, [self.admin.public_key], key_event=True)

    def raw(self, env: dict, t: int, signers: list, *, key_event: bool = False) -> int:  # type: ignore[type-arg]
        data = encode_leaf(parse_envelope(env).document, t, signers)
        self.leaves.append(data)
        index = len(self.leaves) - 1
        if key_event:
            self.last = (index, hashlib.sha256(b"\x00" + data).hexdigest())
        return index

    def record(self, name: str, subject: int, ptype: str, inputs: list[int], t: int, *keys: PrivateKey, edge: str = "input") -> int:
        if ptype == SLSA_V1:
            predicate = {"buildDefinition": {"buildType": "t", "externalParameters": {},
                                             "resolvedDependencies": [{"digest": {"sha256": d(i)}} for i in inputs]},
                         "runDetails": {"builder": {"id": "ci"}}}
        elif ptype == FIRMWARE_IMAGE:
            predicate = {"vendor": "v", "name": "bios", "version": "1", "hardware": [{"digest": {"sha256": d(i)}} for i in inputs]}
        else:
            predicate = {"manufacturer": "m", "model": "x", "children": [{"digest": {"sha256": d(i)}} for i in inputs]}
        stmt = {"_type": STATEMENT_V1, "subject": [{"name": name, "digest": {"sha256": d(subject)}}],
                "predicateType": ptype, "predicate": predicate}
        env = sign_envelope(json.dumps(stmt).encode(), IN_TOTO_PAYLOAD_TYPE, list(keys))
        return self.raw(env, t, [k.public_key for k in keys])

    def fold(self) -> TrustFold:
        return fold(self.admin.public_key.spki_der, enumerate(self.leaves))

    def records(self) -> dict[int, RecordInfo]:
        return {i: record_info(leaf_facts(i, data)) for i, data in enumerate(self.leaves)}


def register(log: Log, key: PrivateKey, principal: str, *grants: Grant, t: int = T0) -> int:
    return log.key_event(KeyEvent("register", key.key_id, principal, key.public_key.spki_der, grants or (Grant(("*",)),), issued_at=t), t)


# ------------------------------------------------------------------------------ facts


def test_content_hash_ignores_hints_and_names_the_verifying_keys() -> None:
    key = generate_private_key()
    payload = json.dumps({"_type": STATEMENT_V1, "subject": [{"name": "a", "digest": {"sha256": d(1)}}],
                          "predicateType": SLSA_V1, "predicate": {}}).encode()
    env = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [key])
    hinted = json.loads(json.dumps(env))
    hinted["signatures"][0]["keyid"] = "f" * 64
    a = encode_leaf(parse_envelope(env).document, T0, [key.public_key])
    b = encode_leaf(parse_envelope(hinted).document, T0 + 5, [key.public_key])
    assert a != b
    fa, fb = leaf_facts(0, a), leaf_facts(1, b)
    assert fa.content_hash == fb.content_hash == content_hash(IN_TOTO_PAYLOAD_TYPE, payload, [key.key_id])
    assert content_hash(IN_TOTO_PAYLOAD_TYPE, payload, [key.key_id, "e" * 64]) != fa.content_hash


# ------------------------------------------------------------------------------ key events


def test_key_events_chain_and_replays_forks_and_gaps_are_refused() -> None:
    log = Log()
    ci = generate_private_key()
    register(log, ci, "ci")
    one = log.key_event(KeyEvent("threshold", predicate_type=SLSA_V1, threshold=1, issued_at=T0 + 1), T0 + 1)
    first_prev = leaf_facts(one, log.leaves[one]).key_event.prev  # type: ignore[union-attr]
    log.key_event(KeyEvent("threshold", predicate_type=SLSA_V1, threshold=2, issued_at=T0 + 2), T0 + 2)
    folded = log.fold()
    assert folded.problems == [] and folded.state.threshold_for(SLSA_V1) == 2
    # a replay of the threshold-1 event (same prev as when it was first made) changes nothing
    log.leaves.append(log.leaves[one])
    replayed = log.fold()
    assert replayed.state.threshold_for(SLSA_V1) == 2
    assert any("replayed or forked" in m for _, m in replayed.problems)
    # the append path refuses it, and a fork (same prev as the last applied one's predecessor)
    with pytest.raises(ConflictError, match="replayed"):
        folded.admit(KeyEvent("threshold", predicate_type=SLSA_V1, threshold=1, prev=first_prev))
    fork = (folded.last_key_event[0], "ab" * 32)  # type: ignore[index]
    with pytest.raises(ConflictError, match="a fork"):
        folded.admit(KeyEvent("threshold", predicate_type=SLSA_V1, threshold=1, prev=fork))
    with pytest.raises(ConflictError, match="out of order"):
        folded.admit(KeyEvent("threshold", predicate_type=SLSA_V1, threshold=1, prev=(folded.last_key_event[0] + 5, "ab" * 32)))  # type: ignore[index]
    with pytest.raises(ConflictError, match="commit to its predecessor"):
        folded.admit(KeyEvent("threshold", predicate_type=SLSA_V1, threshold=1))


def test_legacy_events_without_prev_count_only_before_the_chain_starts() -> None:
    log = Log()
    a, b = generate_private_key(), generate_private_key()
    log.key_event(KeyEvent("register", a.key_id, "a", a.public_key.spki_der, (Grant(("*",)),)), T0, prev=None)
    log.key_event(KeyEvent("register", b.key_id, "b", b.public_key.spki_der, (Grant(("*",)),)), T0, prev="auto")
    c = generate_private_key()
    log.key_event(KeyEvent("register", c.key_id, "c", c.public_key.spki_der, (Grant(("*",)),)), T0, prev=None)
    folded = log.fold()
    assert set(folded.state.keys) == {a.key_id, b.key_id}
    assert "does not commit to its predecessor" in folded.problems[0][1]


def test_a_key_event_not_signed_by_the_root_changes_nothing() -> None:
    log = Log()
    mallory = generate_private_key()
    event = KeyEvent("register", mallory.key_id, "m", mallory.public_key.spki_der, (Grant(("*",)),), prev=GENESIS)
    env = sign_envelope(key_event_statement(event), IN_TOTO_PAYLOAD_TYPE, [mallory])
    log.raw(env, T0, [mallory.public_key])
    folded = log.fold()
    assert folded.state.keys == {} and "not signed by the administrator key" in folded.problems[0][1]


def test_time_going_backwards_is_a_problem_and_the_fold_is_incremental() -> None:
    log = Log()
    ci = generate_private_key()
    register(log, ci, "ci")
    log.record("pkg/a", 1, SLSA_V1, [], T0 + 10, ci)
    log.record("pkg/b", 2, SLSA_V1, [], T0 + 5, ci)
    folded = log.fold()
    assert folded.problems == [(2, "entry 2's integrated time 1750000005 is before its predecessor's 1750000010")]
    incremental = TrustFold(log.admin.public_key.spki_der)
    for i, data in enumerate(log.leaves):
        incremental = incremental.copy()
        incremental.feed(i, data)
    assert incremental.state == folded.state and incremental.last_key_event == folded.last_key_event


# ------------------------------------------------------------------------------ one time rule


def test_thresholds_are_judged_at_the_records_index_and_revocation_reaches_back() -> None:
    log = Log()
    vendor = generate_private_key()
    register(log, vendor, "vendor")
    fw = log.record("acme/bios", 1, FIRMWARE_IMAGE, [], T0 + 10, vendor)
    log.key_event(KeyEvent("threshold", predicate_type=FIRMWARE_IMAGE, threshold=2, issued_at=T0 + 20), T0 + 20)
    later = log.record("acme/bios2", 2, FIRMWARE_IMAGE, [], T0 + 30, vendor)
    state = log.fold().state
    records = log.records()
    assert chain_verdict(("sha256", d(1)), records, state, as_of_time=T0 + 40)["verdict"] == "trusted"
    assert chain_verdict(("sha256", d(2)), records, state, as_of_time=T0 + 40)["verdict"] == "untrusted"
    # a later revocation with compromised-since before the record does condemn it
    log.key_event(KeyEvent("revoke", vendor.key_id, compromised_since=T0 + 5, issued_at=T0 + 50), T0 + 50)
    state = log.fold().state
    chain = chain_verdict(("sha256", d(1)), log.records(), state, as_of_time=T0 + 60)
    assert chain["verdict"] == "untrusted" and "compromised since" in chain["links"][0]["reasons"][0]
    del fw, later


def test_revocation_condemns_later_indexes_even_with_an_earlier_time() -> None:
    state = TrustState(root_key_id="r" * 64)
    k = generate_private_key()
    state.apply(KeyEvent("register", k.key_id, "ci", k.public_key.spki_der, (Grant(("*",)),)), 0, T0)
    state.apply(KeyEvent("revoke", k.key_id), 5, T0 + 300)  # compromised since its own time
    kw = dict(predicate_type=SLSA_V1, subject_names=["a"], key_ids=[k.key_id], time=T0 + 1)
    assert judge(state, index=3, **kw).verdict == "trusted"  # before the revocation, before T
    assert judge(state, index=6, **kw).verdict == "untrusted"  # after it, whatever its clock said


# ------------------------------------------------------------------------------ links, poisoning, cycles


def _supply_chain() -> tuple[Log, dict[str, PrivateKey]]:
    log = Log()
    keys = {n: generate_private_key() for n in ("hw", "vendor", "ci", "other")}
    register(log, keys["hw"], "hw", Grant((HARDWARE_PART,)))
    register(log, keys["vendor"], "vendor", Grant((FIRMWARE_IMAGE,), ("acme/*",)))
    register(log, keys["ci"], "ci", Grant((SLSA_V1,)))
    register(log, keys["other"], "other", Grant(("*",), ("other/*",)))
    log.record("acme/chip", 1, HARDWARE_PART, [], T0 + 10, keys["hw"], edge="child")
    log.record("acme/bios", 2, FIRMWARE_IMAGE, [1], T0 + 11, keys["vendor"])
    log.record("app/os", 3, SLSA_V1, [2], T0 + 12, keys["ci"])
    return log, keys


def test_an_untrusted_record_about_a_digest_never_pulls_it_down() -> None:
    log, keys = _supply_chain()
    poison = log.record("other/bios-notes", 2, FIRMWARE_IMAGE, [], T0 + 13, keys["other"])
    log.key_event(KeyEvent("revoke", keys["other"].key_id, compromised_since=T0, issued_at=T0 + 20), T0 + 20)
    chain = chain_verdict(("sha256", d(3)), log.records(), log.fold().state, as_of_time=T0 + 30)
    assert chain["verdict"] == "trusted"
    firmware = next(l for l in chain["links"] if l["kind"] == "firmware-image")
    assert firmware["rests_on"] == 5 and [s["index"] for s in firmware["set_aside"]] == [poison]
    assert any(f"entry {poison}" in r and "untrusted" in r for r in firmware["reasons"])
    assert chain["roots"]["hardware"] == [4] and chain["root"]["kind"] == "hardware-part"
    assert set(chain["roots"]["keys"]) == {keys["hw"].key_id, keys["vendor"].key_id, keys["ci"].key_id}
    assert chain["weakest_link"]["why"]["k"] == 1 and "least margin" in chain["weakest_link"]["weakest_because"]


def test_reattestation_and_a_new_build_restore_trust() -> None:
    log, keys = _supply_chain()
    log.key_event(KeyEvent("revoke", keys["vendor"].key_id, compromised_since=T0, issued_at=T0 + 20), T0 + 20)
    state = log.fold().state
    broken = chain_verdict(("sha256", d(3)), log.records(), state, as_of_time=T0 + 30)
    assert broken["verdict"] == "untrusted" and broken["weakest_link"]["kind"] == "firmware-image"
    vendor2 = generate_private_key()
    register(log, vendor2, "vendor", Grant((FIRMWARE_IMAGE,), ("acme/*",)), t=T0 + 40)
    again = log.record("acme/bios", 2, FIRMWARE_IMAGE, [1], T0 + 41, vendor2)
    chain = chain_verdict(("sha256", d(3)), log.records(), log.fold().state, as_of_time=T0 + 50)
    assert chain["verdict"] == "trusted"
    assert next(l for l in chain["links"] if l["kind"] == "firmware-image")["index"] == again
    # the CI key revoked too: the pipeline records the build again with its new key
    ci2 = generate_private_key()
    log.key_event(KeyEvent("revoke", keys["ci"].key_id, compromised_since=T0, issued_at=T0 + 60), T0 + 60)
    assert chain_verdict(("sha256", d(3)), log.records(), log.fold().state, as_of_time=T0 + 61)["verdict"] == "untrusted"
    register(log, ci2, "ci", Grant((SLSA_V1,)), t=T0 + 62)
    rebuilt = log.record("app/os", 3, SLSA_V1, [2], T0 + 63, ci2)
    chain = chain_verdict(("sha256", d(3)), log.records(), log.fold().state, as_of_time=T0 + 70)
    assert chain["verdict"] == "trusted" and chain["links"][0]["index"] == rebuilt


def test_a_cycle_has_no_bottom_turtle_and_its_dependants_are_untrusted() -> None:
    log = Log()
    ci = generate_private_key()
    register(log, ci, "ci")
    x = log.record("x", 1, SLSA_V1, [2], T0 + 1, ci)
    y = log.record("y", 2, SLSA_V1, [1], T0 + 2, ci)
    top = log.record("top", 3, SLSA_V1, [1], T0 + 3, ci)
    chain = chain_verdict(("sha256", d(3)), log.records(), log.fold().state, as_of_time=T0 + 10)
    links = {l["index"]: l for l in chain["links"]}
    assert chain["verdict"] == "untrusted"
    assert all(any(f"dependency cycle through entries [{x}, {y}]" in r for r in links[i]["reasons"]) for i in (x, y))
    assert links[top]["verdict"] == "untrusted" and any("depends on untrusted entry" in r for r in links[top]["reasons"])
    # a record that grounds the cycle's digest gives it a bottom turtle
    ground = log.record("y", 2, SLSA_V1, [], T0 + 4, ci)
    chain = chain_verdict(("sha256", d(3)), log.records(), log.fold().state, as_of_time=T0 + 10)
    assert chain["verdict"] == "trusted" and ground in {l["index"] for l in chain["links"]}


def test_reachable_is_the_offline_twin_of_the_store_walk() -> None:
    log, _ = _supply_chain()
    log.record("unrelated", 9, SLSA_V1, [], T0 + 20, log_keys := generate_private_key())  # unsigned by a registered key: still a record
    del log_keys
    assert reachable(("sha256", d(3)), log.records()) == {4, 5, 6}


# ------------------------------------------------------------------------------ decay and its remedy


def test_reaffirming_a_key_covers_its_rotated_predecessors_and_revoked_keys_before_compromise() -> None:
    log = Log()
    old, new = generate_private_key(), generate_private_key()
    register(log, old, "ci", Grant((SLSA_V1,), review_by=T0 + 100))
    signed = log.record("pkg/a", 1, SLSA_V1, [], T0 + 10, old)
    log.key_event(KeyEvent("rotate", new.key_id, public_key=new.public_key.spki_der, replaces=old.key_id, issued_at=T0 + 20), T0 + 20)
    assert chain_verdict(("sha256", d(1)), log.records(), log.fold().state, as_of_time=T0 + 200)["verdict"] == "stale"
    log.key_event(KeyEvent("reaffirm", new.key_id, review_by=T0 + 1000, issued_at=T0 + 210), T0 + 210)
    chain = chain_verdict(("sha256", d(1)), log.records(), log.fold().state, as_of_time=T0 + 220)
    assert chain["verdict"] == "trusted" and chain["links"][0]["index"] == signed
    # a revoked key's records from before compromised-since decay too, and can be re-affirmed
    log.key_event(KeyEvent("revoke", old.key_id, compromised_since=T0 + 15, issued_at=T0 + 230), T0 + 230)
    assert chain_verdict(("sha256", d(1)), log.records(), log.fold().state, as_of_time=T0 + 2000)["verdict"] == "stale"
    log.key_event(KeyEvent("reaffirm", old.key_id, review_by=T0 + 5000, issued_at=T0 + 2001), T0 + 2001)
    assert chain_verdict(("sha256", d(1)), log.records(), log.fold().state, as_of_time=T0 + 2002)["verdict"] == "trusted"


def test_state_at_is_the_fold_of_a_prefix() -> None:
    log = Log()
    ci = generate_private_key()
    register(log, ci, "ci")
    log.record("a", 1, SLSA_V1, [], T0 + 1, ci)
    log.key_event(KeyEvent("revoke", ci.key_id, issued_at=T0 + 2), T0 + 2)
    full = log.fold()
    assert full.state_at(1).keys[ci.key_id].status == "active"
    assert full.state_at(2).keys[ci.key_id].status == "revoked"
    assert full.state_at(1) == fold(log.admin.public_key.spki_der, enumerate(log.leaves[:2])).state

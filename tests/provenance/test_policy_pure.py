"""The trust policy on its own: globs per segment, windows, review-by, revocation, thresholds."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger.errors import MalformedError
from ledger.records.keys import generate_private_key
from ledger.trust.policy import (
    Grant,
    KeyEvent,
    TrustState,
    format_time,
    matches_subject,
    parse_key_event,
)
from ledger.trust.judge import judge

SLSA = "https://slsa.dev/provenance/v1"
T0 = 1_750_000_000


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("pkg/*", "pkg/a", True),
        ("pkg/*", "pkg/a/b", False),  # * never crosses /
        ("*", "pkg/a", False),
        ("pkg/*/*", "pkg/a/b", True),
        ("pkg/a-*", "pkg/a-1", True),
        ("pkg/a-*", "pkg/b-1", False),
        ("pkg/[ab]", "pkg/b", True),
        ("pkg/?", "pkg/ab", False),
        ("*.example/*", "registry.example/img", True),
    ],
)
def test_subject_globs_match_per_segment(pattern: str, name: str, expected: bool) -> None:
    assert matches_subject(pattern, name) is expected


def _state(*grants: Grant, principal: str = "ci") -> tuple[TrustState, str]:
    key = generate_private_key()
    state = TrustState(root_key_id="r" * 64)
    event = KeyEvent("register", key.key_id, principal, key.public_key.spki_der, tuple(grants))
    assert state.apply(event, 0, T0) is None
    return state, key.key_id


def _judge(state: TrustState, key_ids, *, ptype=SLSA, names=("pkg/a",), time=T0 + 10, as_of=None):  # type: ignore[no-untyped-def]
    return judge(state, predicate_type=ptype, subject_names=list(names), key_ids=list(key_ids), time=time, as_of=as_of)


def test_grant_scopes_type_and_subject() -> None:
    state, k = _state(Grant(("https://slsa.dev/*",), ("pkg/*",)))
    assert _judge(state, [k]).verdict == "trusted"
    wrong_type = _judge(state, [k], ptype="https://cyclonedx.org/bom")
    assert wrong_type.verdict == "untrusted"
    assert "no grant for predicate type 'https://cyclonedx.org/bom'" in wrong_type.message()
    assert "https://slsa.dev/*" in wrong_type.message()  # names the grant it has
    out_of_scope = _judge(state, [k], names=("pkg/a", "other/b"))
    assert out_of_scope.verdict == "untrusted" and "subject 'other/b'" in out_of_scope.message()


def test_unknown_key_is_not_trusted() -> None:
    state, _ = _state(Grant(("*",)))
    assert "is not registered" in _judge(state, ["f" * 64]).message()


def test_windows_and_review_by() -> None:
    state, k = _state(Grant((SLSA,), not_before=T0 + 5, not_after=T0 + 100, review_by=T0 + 50))
    assert _judge(state, [k], time=T0 + 1).verdict == "untrusted"  # not yet valid
    assert _judge(state, [k], time=T0 + 101).verdict == "untrusted"  # expired
    assert _judge(state, [k], time=T0 + 20).verdict == "trusted"
    stale = _judge(state, [k], time=T0 + 20, as_of=T0 + 60)  # judged after review_by: decayed
    assert stale.verdict == "stale" and "re-affirm" in stale.message()
    state.apply(KeyEvent("reaffirm", k, review_by=T0 + 1000), 1, T0 + 55)
    assert _judge(state, [k], time=T0 + 20, as_of=T0 + 60).verdict == "trusted"


def test_revocation_cuts_at_compromised_since() -> None:
    state, k = _state(Grant((SLSA,)))
    state.apply(KeyEvent("revoke", k, compromised_since=T0 + 30), 1, T0 + 100)
    assert _judge(state, [k], time=T0 + 29).verdict == "trusted"
    late = _judge(state, [k], time=T0 + 30)
    assert late.verdict == "untrusted" and "compromised since" in late.message()
    # a later revocation can only move compromised_since earlier
    state.apply(KeyEvent("revoke", k, compromised_since=T0 + 60), 2, T0 + 200)
    assert state.keys[k].compromised_since == T0 + 30


def test_threshold_counts_distinct_principals() -> None:
    state, vendor = _state(Grant(("*",)), principal="vendor")
    lab, vendor2 = generate_private_key(), generate_private_key()
    state.apply(KeyEvent("register", lab.key_id, "lab", lab.public_key.spki_der, (Grant(("*",)),)), 1, T0)
    state.apply(KeyEvent("register", vendor2.key_id, "vendor", vendor2.public_key.spki_der, (Grant(("*",)),)), 2, T0)
    state.apply(KeyEvent("threshold", predicate_type="https://slsa.dev/*", threshold=2), 3, T0)
    one = _judge(state, [vendor])
    assert one.verdict == "untrusted" and "needs signatures by 2 distinct principals" in one.message()
    same_principal = _judge(state, [vendor, vendor2.key_id])
    assert same_principal.verdict == "untrusted" and "trusted signers: 1 (vendor)" in same_principal.message()
    assert _judge(state, [vendor, lab.key_id]).verdict == "trusted"
    assert state.threshold_for("https://cyclonedx.org/bom") == 1


def test_rotation_keeps_history() -> None:
    state, old = _state(Grant((SLSA,)))
    new = generate_private_key()
    assert state.apply(KeyEvent("rotate", new.key_id, public_key=new.public_key.spki_der, replaces=old), 1, T0 + 50) is None
    assert _judge(state, [old], time=T0 + 49).verdict == "trusted"
    assert "rotated out" in _judge(state, [old], time=T0 + 50).message()
    assert _judge(state, [new.key_id], time=T0 + 60).verdict == "trusted"
    assert state.keys[new.key_id].principal == "ci"


def test_events_that_cannot_apply_change_nothing() -> None:
    state, k = _state(Grant((SLSA,)))
    before = dict(state.keys)
    assert "already registered" in (state.apply(KeyEvent("register", k, "x", state.keys[k].public_key, (Grant(("*",)),)), 5, T0) or "")
    assert "no key" in (state.apply(KeyEvent("revoke", "e" * 64), 6, T0) or "")
    assert state.keys == before and state.last_event_index == 6


def test_parse_key_event_checks_key_id_and_subject() -> None:
    key = generate_private_key()
    predicate = {"action": "register", "key_id": key.key_id, "principal": "ci",
                 "public_key": base64.b64encode(key.public_key.spki_der).decode(),
                 "grants": [{"predicate_types": ["*"], "review_by": format_time(T0)}]}
    subject = [(f"key:{key.key_id}", {"sha256": key.key_id})]
    event = parse_key_event(predicate, subject)
    assert event.grants == (Grant(("*",), review_by=T0),)
    with pytest.raises(MalformedError, match="exactly one subject"):
        parse_key_event(predicate, [("key:other", {"sha256": key.key_id})])
    with pytest.raises(MalformedError, match="not the SHA-256"):
        parse_key_event({**predicate, "key_id": hashlib.sha256(b"x").hexdigest()}, subject)


def test_key_event_key_id_is_its_subject_digest() -> None:
    """Current key events leave ``predicate.key_id`` out (the subject digest is the key id) and name
    the subject ``key``; older ones, with both, still parse to the same event."""
    key, other = generate_private_key(), generate_private_key()
    predicate = {"action": "register", "principal": "ci", "public_key": base64.b64encode(key.public_key.spki_der).decode(),
                 "grants": [{"predicate_types": ["*"]}]}
    event = parse_key_event(predicate, [("key", {"sha256": key.key_id})])
    legacy = parse_key_event({**predicate, "key_id": key.key_id}, [(f"key:{key.key_id}", {"sha256": key.key_id})])
    assert event == legacy and event.key_id == key.key_id
    assert "key_id" not in event.to_predicate() and event.subject() == {"name": "key", "digest": {"sha256": key.key_id}}
    with pytest.raises(MalformedError, match="not the SHA-256"):  # the digest names another key
        parse_key_event(predicate, [("key", {"sha256": other.key_id})])
    with pytest.raises(MalformedError, match="exactly one subject"):  # predicate.key_id and the digest disagree
        parse_key_event({**predicate, "key_id": key.key_id}, [("key", {"sha256": other.key_id})])
    for subjects in ([], [("key", {"sha256": key.key_id})] * 2, [("key", {"sha512": "ab" * 64})], [("key", {"sha256": "AB" * 32})]):
        with pytest.raises(MalformedError, match="exactly one subject"):
            parse_key_event(predicate, subjects)
    with pytest.raises(MalformedError, match="exactly one subject"):  # a name for another kind of event
        parse_key_event(predicate, [("identity", {"sha256": key.key_id})])
    revoke = parse_key_event({"action": "revoke"}, [("key", {"sha256": other.key_id})])
    assert revoke.key_id == other.key_id


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"])
def test_a_time_whose_offset_leaves_the_calendar_is_refused(text: str) -> None:
    """Valid RFC 3339, but in UTC before year 1 or after 9999: it could never be written back, so
    a key event carrying it is malformed (it would otherwise break every page that shows it)."""
    from ledger.trust.policy import MAX_TIME, MIN_TIME, parse_time  # noqa: PLC0415

    with pytest.raises(MalformedError, match="years 1 to 9999"):
        parse_time(text)
    assert format_time(parse_time("0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00Z"
    assert format_time(parse_time("9999-12-31T23:59:59Z")) == "9999-12-31T23:59:59Z"
    assert format_time(MIN_TIME - 1) == f"{MIN_TIME - 1} s since the epoch"  # never raises
    assert format_time(MAX_TIME + 1) == f"{MAX_TIME + 1} s since the epoch"
    key = generate_private_key()
    der = base64.b64encode(key.public_key.spki_der).decode()
    predicate = {"action": "register", "principal": "ci", "public_key": der, "review_by": text,
                 "grants": [{"predicate_types": ["*"]}]}
    with pytest.raises(MalformedError, match="years 1 to 9999"):
        parse_key_event(predicate, [("key", {"sha256": key.key_id})])

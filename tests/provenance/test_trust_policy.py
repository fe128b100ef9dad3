"""Every policy rule through the real append path (SQLite and PostgreSQL): one case that
passes, one that is refused; key history in the ledger; chains as of an index; tampering."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from ledger.errors import ConflictError, MalformedError, NotFoundError, NotTrustedError, SignatureError
from ledger.records.keys import generate_private_key
from ledger.trust.policy import Grant
from ledger.trust.predicates import FIRMWARE_IMAGE, HARDWARE_PART, KEY_EVENT, SLSA_V1
from ledger.services import chain as chain_service
from ledger.services import registry
from ledger.services.append import Appended
from ledger.services.audit import audit
from ledger.services.policy import state_at, verify_trust_state
from ledger.services.trust import load_state
from tests.provenance.helpers import Trust, build, envelope, firmware_image, hardware_part


@pytest.fixture
def trust(store) -> Trust:  # type: ignore[no-untyped-def]
    return Trust(store)


def _refused(result: object, error: type, match: str) -> None:
    assert isinstance(result, error), f"expected {error.__name__}, got {result!r}"
    assert match in str(result), str(result)


def test_unknown_key_is_refused(trust: Trust) -> None:
    trust.add("ci", Grant((SLSA_V1,)))
    stranger = generate_private_key()
    _refused(trust.submit(build("pkg/a")[0], stranger), NotTrustedError, "not signed by any registered key")


def test_out_of_scope_predicate_type(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,)))
    trust.ok(build("pkg/a")[0], key)
    result = trust.submit(hardware_part("acme/board")[0], key)
    _refused(result, NotTrustedError, f"has no grant for predicate type '{HARDWARE_PART}'")
    assert "its grants: [predicate types https://slsa.dev/provenance/v1; any subject]" in str(result)
    assert result.http_status == 403  # type: ignore[union-attr]


def test_out_of_scope_subject(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,), ("pkg/*",)))
    trust.ok(build("pkg/a")[0], key)
    _refused(trust.submit(build("pkg/a/b")[0], key), NotTrustedError, "has no grant for subject 'pkg/a/b'")
    _refused(trust.submit(build("other/a")[0], key), NotTrustedError, "subjects pkg/*")


def test_expired_and_not_yet_valid_grant(trust: Trust) -> None:
    t = trust.store.clock
    key = trust.add("ci", Grant((SLSA_V1,), not_before=t + 10, not_after=t + 100))
    _refused(trust.submit(build("pkg/early")[0], key, now=t + 5), NotTrustedError, "is not valid at")
    trust.ok(build("pkg/a")[0], key, now=t + 50)
    _refused(trust.submit(build("pkg/late")[0], key, now=t + 101), NotTrustedError, "expired or not yet valid")


def test_stale_grant_is_refused_until_reaffirmed(trust: Trust) -> None:
    t = trust.store.clock
    key = trust.add("ci", Grant((SLSA_V1,), review_by=t + 100))
    first = trust.ok(build("pkg/a")[0], key, now=t + 50)
    _refused(trust.submit(build("pkg/b")[0], key, now=t + 150), NotTrustedError, "past its review-by date")
    with trust.store.sessions() as session:  # the earlier record decays too
        chain = chain_service.chain(session, f"sha256:{build('pkg/a')[1]}", now=t + 150)
    assert chain["verdict"] == "stale" and chain["weakest_link"]["index"] == first
    trust.reaffirm(key, t + 1000, now=t + 160)
    trust.ok(build("pkg/b")[0], key, now=t + 170)
    with trust.store.sessions() as session:
        assert chain_service.chain(session, f"sha256:{build('pkg/a')[1]}", now=t + 170)["verdict"] == "trusted"


def test_revocation_before_and_after_compromised_since(trust: Trust) -> None:
    t = trust.store.clock
    key = trust.add("ci", Grant((SLSA_V1,)))
    before = trust.ok(build("pkg/before")[0], key, now=t + 10)
    after = trust.ok(build("pkg/after", inputs=[build("pkg/before")[1]])[0], key, now=t + 30)
    top = trust.ok(build("pkg/top", inputs=[build("pkg/after")[1]])[0], trust.add("other", Grant((SLSA_V1,))), now=t + 40)
    trust.revoke(key, compromised_since=t + 20, now=t + 50)
    _refused(trust.submit(build("pkg/new")[0], key, now=t + 60), NotTrustedError, "was revoked")
    with trust.store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{build('pkg/top')[1]}", now=t + 60)
    links = {l["index"]: l for l in chain["links"]}
    assert links[before]["verdict"] == "trusted"  # signed before compromised_since
    assert links[after]["verdict"] == "untrusted" and "compromised since" in links[after]["reasons"][0]
    assert links[top]["verdict"] == "untrusted"  # downstream: rebuild from the layer below
    assert chain["weakest_link"]["index"] == after
    # as of the index before the revocation, the same chain was trusted
    with trust.store.sessions() as session:
        then = chain_service.chain(session, f"sha256:{build('pkg/top')[1]}", at=top)
    assert then["verdict"] == "trusted"


def test_threshold_and_same_principal(trust: Trust) -> None:
    vendor = trust.add("vendor", Grant((FIRMWARE_IMAGE,)))
    vendor2 = trust.add("vendor-2", Grant((FIRMWARE_IMAGE,)))
    # a second key of the same principal "vendor"
    vendor_again = generate_private_key()
    registry.add_key(trust.store.sessions, trust.store.log, trust.admin, "vendor", vendor_again.public_key,
                     [Grant((FIRMWARE_IMAGE,))], now=trust.store.tick())
    lab = trust.add("lab", Grant((FIRMWARE_IMAGE,)))
    trust.threshold(FIRMWARE_IMAGE, 2)
    _refused(trust.submit(firmware_image("fw/1")[0], vendor), NotTrustedError, "needs signatures by 2 distinct principals")
    _refused(trust.submit(firmware_image("fw/2")[0], vendor, vendor_again), NotTrustedError, "trusted signers: 1 (vendor)")
    trust.ok(firmware_image("fw/3")[0], vendor, lab)
    trust.ok(firmware_image("fw/4")[0], vendor2, lab)


def test_malformed_predicate_is_a_400_naming_the_field(trust: Trust) -> None:
    key = trust.add("hw", Grant((HARDWARE_PART,)))
    stmt = hardware_part("acme/board")[0].replace(b'"serial"', b'"serial_no"')
    result = trust.submit(stmt, key)
    assert isinstance(result, MalformedError) and result.http_status == 400
    assert "predicate" in str(result) and "serial" in str(result)


def test_wrong_signature_by_a_registered_key(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,)))
    env = envelope(build("pkg/a")[0], key)
    env["signatures"][0]["sig"] = env["signatures"][0]["sig"][:-4] + "AAA="
    (result,) = trust.store.append([env])
    assert isinstance(result, SignatureError)


def test_key_events_need_the_admin_key(trust: Trust) -> None:
    key = trust.add("ci", Grant(("*",)))
    forged = registry.key_event_envelope(key, registry.KeyEvent("threshold", predicate_type="*", threshold=1))  # type: ignore[attr-defined]
    (result,) = trust.store.append([forged])
    _refused(result, NotTrustedError, "must be signed by the ledger's administrator key")
    with pytest.raises(ConflictError, match="already registered"):
        trust.add("again", key=key)
    with pytest.raises(NotFoundError, match="no key"):
        registry.revoke_key(trust.store.sessions, trust.store.log, trust.admin, "e" * 64, now=trust.store.tick())
    with pytest.raises(MalformedError, match="not a key id"):
        registry.revoke_key(trust.store.sessions, trust.store.log, trust.admin, "nope", now=trust.store.tick())


def test_key_history_is_in_the_ledger_and_recomputable(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,), ("pkg/*",)))
    new = generate_private_key()
    rotated = registry.rotate_key(trust.store.sessions, trust.store.log, trust.admin, key.key_id, new.public_key, now=trust.store.tick())
    trust.revoke(new)
    with trust.store.sessions() as session:
        events, _ = chain_service.search(session, predicate_type=KEY_EVENT)
        assert [e["index"] for e in events] == [0, 1, 2]
        assert state_at(session).keys == load_state(session).keys
        then = state_at(session, rotated.receipt["index"])
        assert then.keys[new.key_id].status == "active" and then.keys[key.key_id].status == "rotated"
        assert load_state(session).keys[new.key_id].status == "revoked"
        assert verify_trust_state(session, trust.store.log) == []


def test_tampered_trust_table_is_caught_by_audit(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,), ("pkg/*",)))
    trust.revoke(key)
    with trust.store.engine.begin() as conn:  # widen the grant and un-revoke, in the table only
        conn.execute(text("UPDATE trust_keys SET grants = :g, revoked_index = NULL, compromised_since = NULL"),
                     {"g": '[{"predicate_types": ["*"], "subjects": null, "not_after": null, "not_before": null, "review_by": null}]'})
    with trust.store.sessions() as session:
        problems = verify_trust_state(session, trust.store.log)
    assert problems and problems[0].kind == "trust_state"
    assert "grants" in problems[0].message and "revoked_index" in problems[0].message
    # and a key inserted behind the ledger's back
    with trust.store.engine.begin() as conn:
        conn.execute(text("INSERT INTO trust_keys (key_id, principal, algorithm, public_key, grants, registered_index, registered_at, last_event_index) "
                          "VALUES (:k, 'mallory', 'ed25519', :pk, '[]', 0, 0, 0)"), {"k": "f" * 64, "pk": b"x"})
    with trust.store.sessions() as session:
        assert any("no key-event entry registers it" in p.message for p in verify_trust_state(session, trust.store.log))


def test_tampered_key_event_entry_is_caught_by_audit(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,), ("pkg/*",)))
    with trust.store.sessions() as session:
        data = session.execute(text("SELECT data FROM entries WHERE idx = 0")).scalar_one()
    forged = bytes(data).replace(b'"public_key"', b'"public_kez"', 1)  # its recorded signer
    assert forged != bytes(data)
    with trust.store.tamper() as conn:
        conn.execute(text("UPDATE entries SET data = :d WHERE idx = 0"), {"d": forged})
    with trust.store.sessions() as session:
        report = audit(session, trust.store.log)
        problems = verify_trust_state(session, trust.store.log)
    assert not report.ok and report.first_bad_index == 0
    assert any(p.kind == "key_event" and p.index == 0 for p in problems)
    del key


def test_records_then_chain_part_firmware_build_sbom(trust: Trust) -> None:
    from tests.provenance.helpers import cyclonedx  # noqa: PLC0415

    hw = trust.add("hw", Grant((HARDWARE_PART,)))
    fw = trust.add("fw", Grant((FIRMWARE_IMAGE,)))
    ci = trust.add("ci", Grant(("https://slsa.dev/*", "https://cyclonedx.org/*")))
    chip_stmt, chip = hardware_part("acme/chip")
    board_stmt, board = hardware_part("acme/board", children=[chip])
    fw_stmt, fw_digest = firmware_image("acme/bios", hardware=[board])
    b_stmt, artifact = build("appliance/os", inputs=[fw_digest])
    indexes = [trust.ok(chip_stmt, hw), trust.ok(board_stmt, hw), trust.ok(fw_stmt, fw), trust.ok(b_stmt, ci),
               trust.ok(cyclonedx("appliance/os", artifact, [fw_digest]), ci)]
    with trust.store.sessions() as session:
        chain = chain_service.chain(session, f"sha256:{artifact}")
    assert chain["verdict"] == "trusted"
    # a link is a digest held up by its best record: the build holds the artifact up, the SBOM
    # about the same digest is listed beside it (issue 12)
    assert sorted(l["index"] for l in chain["links"]) == sorted(indexes[:4])
    top = next(l for l in chain["links"] if l["index"] == indexes[3])
    assert [(s["index"], s["verdict"]) for s in top["set_aside"]] == [(indexes[4], "trusted")]
    assert chain["root"]["index"] == indexes[0] and chain["root"]["kind"] == "hardware-part"
    with trust.store.sessions() as session:
        with pytest.raises(NotFoundError):
            chain_service.chain(session, f"sha256:{artifact}", at=10_000)
        with pytest.raises(MalformedError):
            chain_service.chain(session, "sha256:xyz")


def test_search(trust: Trust) -> None:
    ci = trust.add("ci", Grant((SLSA_V1,)))
    t = trust.store.clock
    for i in range(5):
        trust.ok(build(f"pkg/svc-{i}/app")[0], ci, now=t + 10 + i)
    with trust.store.sessions() as session:
        page, after = chain_service.search(session, signer="ci", limit=2)
        assert [e["index"] for e in page] == [1, 2] and after == 2
        page, after = chain_service.search(session, signer=ci.key_id, after=after, limit=2)
        assert [e["index"] for e in page] == [3, 4]
        assert [e["index"] for e in chain_service.search(session, name="pkg/*/app")[0]] == [1, 2, 3, 4, 5]
        assert chain_service.search(session, name="pkg/*")[0] == []  # * never crosses /
        assert [e["index"] for e in chain_service.search(session, name="pkg/svc-3")[0]] == [4]
        assert len(chain_service.search(session, predicate_type="https://slsa.dev/*")[0]) == 5
        assert [e["index"] for e in chain_service.search(session, since=t + 12, until=t + 13)[0]] == [3, 4]
        digest = build("pkg/svc-0/app")[1]
        (entry,) = chain_service.search(session, digest=f"sha256:{digest}")[0]
        assert entry["signers"] == [{"key_id": ci.key_id, "principal": "ci"}]
        with pytest.raises(MalformedError):
            chain_service.search(session)


def test_duplicate_key_event_is_not_applied_twice(trust: Trust) -> None:
    key = trust.add("ci", Grant((SLSA_V1,)))
    with trust.store.sessions() as session:
        prev = registry.next_prev(session)
    env = registry.key_event_envelope(trust.admin, registry.KeyEvent("revoke", key.key_id, issued_at=1, prev=prev))  # type: ignore[attr-defined]
    first, again = trust.store.append([env]), trust.store.append([env])
    assert isinstance(first[0], Appended) and first[0].created
    # issue 12: a replayed key event no longer follows the last key event: 409, not appended
    assert isinstance(again[0], ConflictError) and "replayed" in str(again[0])
    size = trust.store.size()
    assert isinstance(trust.store.append([env])[0], ConflictError) and trust.store.size() == size
    with trust.store.sessions() as session:
        assert verify_trust_state(session, trust.store.log) == []

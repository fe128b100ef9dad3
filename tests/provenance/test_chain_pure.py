"""Chain evaluation on its own: diamonds, cycles, missing nodes, untrusted flowing up, the root."""

from __future__ import annotations

from ledger.records.keys import generate_private_key
from ledger.trust.chain import RecordInfo
from ledger.trust.verdict import chain_verdict as evaluate_chain
from ledger.trust.policy import Grant, KeyEvent, TrustState

SLSA = "https://slsa.dev/provenance/v1"
PART = "https://provenance-ledger.dev/hardware-part/v1"
T0 = 1_750_000_000


def d(i: int) -> str:
    return f"{i:064x}"


def _state() -> tuple[TrustState, str, str]:
    good, bad = generate_private_key(), generate_private_key()
    s = TrustState(root_key_id="r" * 64)
    s.apply(KeyEvent("register", good.key_id, "ci", good.public_key.spki_der, (Grant(("*",)),)), 0, T0)
    s.apply(KeyEvent("register", bad.key_id, "mallory", bad.public_key.spki_der, (Grant(("*",)),)), 1, T0)
    s.apply(KeyEvent("revoke", bad.key_id, compromised_since=T0), 2, T0)
    return s, good.key_id, bad.key_id


def rec(index: int, subject: int, inputs: list[int], key: str, ptype: str = SLSA) -> RecordInfo:
    edge = "child" if ptype == PART else "input"
    return RecordInfo(index, T0 + 10, ptype, (("sha256", d(subject), f"pkg/{subject}"),), (key,),
                      tuple((edge, "sha256", d(i)) for i in inputs))


def _links(chain):  # type: ignore[no-untyped-def]
    return {link["index"]: link for link in chain["links"] if link["index"] is not None}


def test_diamond_is_walked_once_and_trusted() -> None:
    state, good, _ = _state()
    records = {10: rec(10, 1, [2, 3], good), 11: rec(11, 2, [4], good), 12: rec(12, 3, [4], good), 13: rec(13, 4, [], good, PART)}
    chain = evaluate_chain(("sha256", d(1)), records, state, as_of_time=T0 + 20)
    assert chain["verdict"] == "trusted"
    assert [l["index"] for l in chain["links"]] == [10, 11, 12, 13]
    assert _links(chain)[10]["depends_on"] == [11, 12]
    assert chain["root"]["index"] == 13 and chain["root"]["kind"] == "hardware-part"


def test_missing_nodes_are_links() -> None:
    state, good, _ = _state()
    chain = evaluate_chain(("sha256", d(1)), {10: rec(10, 1, [2], good)}, state, as_of_time=T0)
    assert chain["verdict"] == "missing"
    missing = chain["weakest_link"]
    assert missing["index"] is None and missing["subject"] == f"sha256:{d(2)}"
    assert "input of entry 10" in missing["reasons"][0]
    assert chain["root"] == missing  # the walk ends there


def test_unknown_artifact_is_missing() -> None:
    state, _, _ = _state()
    chain = evaluate_chain(("sha256", d(9)), {}, state, as_of_time=T0)
    assert chain["verdict"] == "missing" and len(chain["links"]) == 1


def test_cycle_is_shown_not_followed_forever() -> None:
    state, good, _ = _state()
    records = {10: rec(10, 1, [2], good), 11: rec(11, 2, [3], good), 12: rec(12, 3, [1], good)}
    chain = evaluate_chain(("sha256", d(1)), records, state, as_of_time=T0 + 20)
    assert len(chain["links"]) == 3
    for link in chain["links"]:
        assert any("dependency cycle through entries [10, 11, 12]" in r for r in link["reasons"])


def test_untrusted_flows_up_not_down() -> None:
    state, good, bad = _state()
    # 10 -> 11 (signed by the revoked key) -> 12 ; 10 -> 13
    records = {10: rec(10, 1, [2, 4], good), 11: rec(11, 2, [3], bad), 12: rec(12, 3, [], good), 13: rec(13, 4, [], good)}
    chain = evaluate_chain(("sha256", d(1)), records, state, as_of_time=T0 + 20)
    links = _links(chain)
    assert links[11]["verdict"] == "untrusted"
    assert links[10]["verdict"] == "untrusted"
    assert any("rebuild from the layer below" in r for r in links[10]["reasons"])
    assert links[12]["verdict"] == "trusted"  # below the bad link: not tainted
    assert links[13]["verdict"] == "trusted"  # a sibling: not tainted
    assert chain["weakest_link"]["index"] == 11  # the deepest untrusted link: where the damage starts
    assert chain["verdict"] == "untrusted"


def test_untrusted_inside_a_cycle_terminates() -> None:
    state, good, bad = _state()
    records = {10: rec(10, 1, [2], good), 11: rec(11, 2, [1], bad)}
    chain = evaluate_chain(("sha256", d(1)), records, state, as_of_time=T0 + 20)
    assert {l["verdict"] for l in chain["links"]} == {"untrusted"}


def test_large_fan_in_is_capped() -> None:
    state, good, _ = _state()
    records = {10: rec(10, 1, list(range(2, 50)), good)}
    chain = evaluate_chain(("sha256", d(1)), records, state, as_of_time=T0, max_links=10)
    assert len(chain["links"]) <= 11
    assert any("more than 10 links" in r for l in chain["links"] for r in l["reasons"])

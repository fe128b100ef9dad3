"""Conformance of ``ledger.merkle`` with RFC 9162 §2.1.

Three independent sources of truth are used:

* the RFC-literal recursive reference in ``merkle_reference.py`` (MTH, PATH, PROOF/SUBPROOF and
  the §2.1.3.2 / §2.1.4.2 verifiers transcribed step by step);
* the public vectors in ../shared/vectors/merkle (known answers from RFC 6962 implementations and
  every transparency-dev/merkle verification probe);
* one-bit flips and other mutations, which must always be refused.

The ledger's own rules on top of the RFC (docs/tlog-formats.md §1, GUIDE "Details the checks rely
on") are tested where they make the ledger differ from transparency-dev: hashes are exactly 32 bytes
everywhere, and a consistency proof from size 0 is the C2SP witness rule (empty proof, empty root).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import LedgerError, RootMismatchError, VerificationError
from tests.conftest import load_vector
from tests.unit.merkle_reference import (
    EMPTY_ROOT,
    ReferenceTree,
    UniformReferenceTree,
    rfc_leaf_hash,
    rfc_node_hash,
    rfc_verify_consistency,
    rfc_verify_inclusion,
)

#: Exhaustive sweeps cover every tree up to this size (every power-of-two boundary up to 128, and
#: a few sizes past it).
SWEEP_MAX = 130
#: Property tests draw sizes up to this.
PROPERTY_MAX = 5000

# Distinct leaves, so that a proof for one position cannot verify for another by accident.
LEAVES = [rfc_leaf_hash(b"leaf %d" % i) for i in range(PROPERTY_MAX)]
REF = ReferenceTree(LEAVES)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with one bit flipped (bit counted from the first byte's most significant bit)."""
    changed = bytearray(value)
    changed[(bit // 8) % len(changed)] ^= 0x80 >> (bit % 8)
    return bytes(changed)


def rejects(verify: Callable[..., None], *args: Any) -> bool:
    """True when ``verify`` refuses with a VerificationError; any other exception propagates."""
    try:
        verify(*args)
    except VerificationError:
        return True
    return False


def complete_subtrees(size: int) -> dict[tuple[int, int], bytes]:
    """Every complete subtree (level, index) within the first ``size`` leaves (reference hashes)."""
    nodes = {}
    level = 0
    while (1 << level) <= size:
        for index in range(size >> level):
            nodes[(level, index)] = REF.subtree(level, index)
        level += 1
    return nodes


def expected_frontier(size: int) -> list[tuple[int, int]]:
    """One complete subtree per set bit of size, biggest (leftmost) first."""
    nodes, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# ------------------------------------------------------------------------------------------------
# The reference agrees with itself (so that agreeing with it means something)


def test_reference_verifiers_accept_reference_proofs() -> None:
    for size in range(1, 40):
        for index in range(size):
            assert rfc_verify_inclusion(
                index, size, LEAVES[index], REF.path(index, size), REF.root(size)
            )
        for old in range(1, size + 1):
            assert rfc_verify_consistency(
                old, size, REF.proof(old, size), REF.root(old), REF.root(size)
            )


def test_uniform_reference_matches_reference_on_uniform_leaves() -> None:
    leaf = LEAVES[7]
    uniform = UniformReferenceTree(leaf)
    plain = ReferenceTree([leaf] * 40)
    for size in range(1, 41):
        assert uniform.root(size) == plain.root(size)
        assert uniform.path(size // 3, size) == plain.path(size // 3, size)
        assert uniform.proof((size + 1) // 2, size) == plain.proof((size + 1) // 2, size)


# ------------------------------------------------------------------------------------------------
# Public vectors


@pytest.mark.vectors
def test_hasher_vectors() -> None:
    vector = load_vector("merkle/rfc6962_hasher_vectors.json")
    assert merkle.EMPTY_ROOT == bytes.fromhex(vector["empty_tree_root"])
    assert merkle.root([]) == bytes.fromhex(vector["empty_tree_root"])
    assert vector["leaves"] and vector["nodes"]
    for case in vector["leaves"]:
        assert merkle.leaf_hash(bytes.fromhex(case["input_hex"])) == bytes.fromhex(
            case["leaf_hash"]
        )
    for case in vector["nodes"]:
        # One transparency-dev vector has children that are not 32 bytes: the hasher only
        # concatenates. (Verification is what refuses hashes of other lengths.)
        left, right = bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"])
        assert merkle.node_hash(left, right) == bytes.fromhex(case["node_hash"])


@pytest.mark.vectors
def test_reference_tree_vectors() -> None:
    vector = load_vector("merkle/rfc6962_reference_tree.json")
    leaves = [merkle.leaf_hash(bytes.fromhex(d)) for d in vector["leaf_inputs_hex"]]
    levels = [hexes(level) for level in vector["node_hashes_by_level"]]
    assert leaves == levels[0]
    for size_text, want in vector["root_hashes_by_size"].items():
        size = int(size_text)
        assert merkle.root(leaves[:size]) == bytes.fromhex(want), size

    # Every complete subtree, as CompactRange reports it while appending.
    appended: dict[tuple[int, int], bytes] = {}
    compact = merkle.CompactRange.empty()
    for leaf in leaves:
        appended.update({(level, index): h for level, index, h in compact.append(leaf)})
    for level, hashes in enumerate(levels[1:], start=1):
        for index, want in enumerate(hashes):
            assert appended[(level, index)] == want

    assert vector["inclusion_proofs"]
    for case in vector["inclusion_proofs"]:
        index, size = case["leaf_index"], case["tree_size"]
        path, root = hexes(case["path"]), bytes.fromhex(case["root"])
        assert merkle.inclusion_proof(index, leaves[:size]) == path
        merkle.verify_inclusion(index, size, bytes.fromhex(case["leaf_hash"]), path, root)

    assert vector["consistency_proofs"]
    for case in vector["consistency_proofs"]:
        old, new = case["size1"], case["size2"]
        proof = hexes(case["proof"])
        assert merkle.consistency_proof(old, leaves[:new]) == proof
        merkle.verify_consistency(
            old, new, proof, bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
        )


@pytest.mark.vectors
def test_derived_byte_leaf_vectors() -> None:
    vector = load_vector("merkle/derived_rfc6962_byte_leaves_0_to_64.json")
    leaves = hexes(vector["leaf_hashes"])
    assert leaves == [merkle.leaf_hash(bytes([i])) for i in range(len(leaves))]
    assert len(vector["root_hashes_by_size"]) == len(leaves) + 1
    for size_text, want in vector["root_hashes_by_size"].items():
        assert merkle.root(leaves[: int(size_text)]) == bytes.fromhex(want), size_text
    roots = {int(k): bytes.fromhex(v) for k, v in vector["root_hashes_by_size"].items()}

    cases = vector["inclusion_proofs_all_sizes_1_to_16"]
    assert len(cases) == sum(range(1, 17))
    for case in cases:
        index, size, proof = case["leaf_index"], case["tree_size"], hexes(case["proof"])
        assert merkle.inclusion_proof(index, leaves[:size]) == proof, (index, size)
        merkle.verify_inclusion(index, size, leaves[index], proof, roots[size])

    cases = vector["consistency_proofs_all_1_le_size1_le_size2_le_16"]
    assert len(cases) == sum(range(1, 17))
    for case in cases:
        old, new, proof = case["size1"], case["size2"], hexes(case["proof"])
        assert merkle.consistency_proof(old, leaves[:new]) == proof, (old, new)
        merkle.verify_consistency(old, new, proof, roots[old], roots[new])


def _inclusion_probe(case: Mapping[str, Any]) -> tuple[Any, ...]:
    proof = [b64(p) for p in case["proof"] or []]  # null means an empty proof
    return case["leafIdx"], case["treeSize"], b64(case["leafHash"]), proof, b64(case["root"])


def _consistency_probe(case: Mapping[str, Any]) -> tuple[Any, ...]:
    proof = [b64(p) for p in case["proof"] or []]
    return case["size1"], case["size2"], proof, b64(case["root1"]), b64(case["root2"])


#: Probes where the ledger deliberately gives the opposite verdict to transparency-dev/merkle.
DELIBERATE_DIFFERENCES = {
    # Equal sizes, empty proof, equal roots -> transparency-dev accepts. But the roots are the
    # 12-byte string "don't care 2", and the ledger refuses any hash that is not exactly 32 bytes
    # (GUIDE: "Hashes are exactly 32 bytes: anything else is refused"): a 12-byte value cannot be a
    # SHA-256 tree head, so "matching" it would vouch for something that is not a checkpoint root.
    "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
}


@pytest.mark.vectors
def test_transparency_dev_inclusion_probes() -> None:
    vector = load_vector("merkle/transparency-dev-merkle_inclusion_probes.json")
    assert len(vector["cases"]) == vector["count"] > 0
    wrong = []
    for case in vector["cases"]:
        refused = rejects(merkle.verify_inclusion, *_inclusion_probe(case))
        if refused != case["wantErr"]:
            wrong.append(f"{case['_file']} ({case['desc']}): wantErr={case['wantErr']}")
    assert not wrong, "verdicts differ from transparency-dev:\n" + "\n".join(wrong)


@pytest.mark.vectors
def test_transparency_dev_consistency_probes() -> None:
    vector = load_vector("merkle/transparency-dev-merkle_consistency_probes.json")
    assert len(vector["cases"]) == vector["count"] > 0
    wrong, differences_seen = [], set()
    for case in vector["cases"]:
        refused = rejects(merkle.verify_consistency, *_consistency_probe(case))
        want_refused = case["wantErr"]
        if case["_file"] in DELIBERATE_DIFFERENCES:
            differences_seen.add(case["_file"])
            assert not case["wantErr"], (
                "a deliberate difference is a probe transparency-dev accepts"
            )
            want_refused = True
        if refused != want_refused:
            wrong.append(f"{case['_file']} ({case['desc']}): want refused={want_refused}")
    assert not wrong, "verdicts differ:\n" + "\n".join(wrong)
    # The exemption must keep pointing at a real probe, or it silently exempts nothing.
    assert differences_seen == DELIBERATE_DIFFERENCES


@pytest.mark.vectors
def test_twelve_byte_roots_probe_is_accepted_with_real_roots() -> None:
    """The deliberate difference is only about hash length: with 32-byte roots we agree."""
    vector = load_vector("merkle/transparency-dev-merkle_consistency_probes.json")
    (case,) = [c for c in vector["cases"] if c["_file"] in DELIBERATE_DIFFERENCES]
    old, new, proof, old_root, new_root = _consistency_probe(case)
    assert len(old_root) == len(new_root) == 12 and old_root == new_root and not proof
    with pytest.raises(VerificationError, match="32 bytes"):
        merkle.verify_consistency(old, new, proof, old_root, new_root)
    merkle.verify_consistency(old, new, proof, REF.root(old), REF.root(new))


@pytest.mark.vectors
def test_size_zero_probes_follow_the_c2sp_witness_rule() -> None:
    """transparency-dev refuses every consistency proof from size 0; we refuse these probes too,
    but for what is wrong with them under the C2SP rule (a non-empty proof, or a root that is
    not 32 bytes), and the same sizes with an empty proof and SHA-256("") as old root verify."""
    vector = load_vector("merkle/transparency-dev-merkle_consistency_probes.json")
    from_empty = [c for c in vector["cases"] if c["size1"] == 0 and c["size2"] > 0]
    assert len([c for c in from_empty if "additional" in c["_file"]]) == 3
    for case in from_empty:
        old, new, proof, old_root, new_root = _consistency_probe(case)
        assert case["wantErr"]
        assert rejects(merkle.verify_consistency, old, new, proof, old_root, new_root), case[
            "_file"
        ]
        if len(new_root) != 32:
            new_root = REF.root(new)
        # Our rule: an empty proof from the empty tree's root accepts any 32-byte new root...
        merkle.verify_consistency(0, new, [], EMPTY_ROOT, new_root)
        # ...and a non-empty proof (the probe's, or the new root itself) is refused.
        for bad_proof in (proof or [new_root], [new_root]):
            assert rejects(merkle.verify_consistency, 0, new, bad_proof, EMPTY_ROOT, new_root)
        # The old root of size 0 can only be SHA-256("").
        assert rejects(merkle.verify_consistency, 0, new, [], flip(EMPTY_ROOT, 0), new_root)


@pytest.mark.vectors
def test_reference_verifiers_agree_with_transparency_dev() -> None:
    """The RFC transcription gets every probe right whose hashes are all 32 bytes (the RFC
    algorithms know nothing of hash lengths: they "match" an empty leaf hash to an empty root).
    It refuses size 0 like transparency-dev, as RFC 9162 defines no proof from an empty tree."""

    def all_32_bytes(*hashes: bytes) -> bool:
        return all(len(h) == 32 for h in hashes)

    checked = 0
    inclusion = load_vector("merkle/transparency-dev-merkle_inclusion_probes.json")
    for case in inclusion["cases"]:
        index, size, leaf, proof, root = _inclusion_probe(case)
        if all_32_bytes(leaf, root, *proof):
            checked += 1
            assert rfc_verify_inclusion(index, size, leaf, proof, root) != case["wantErr"], case[
                "_file"
            ]
    consistency = load_vector("merkle/transparency-dev-merkle_consistency_probes.json")
    for case in consistency["cases"]:
        old, new, proof, old_root, new_root = _consistency_probe(case)
        if all_32_bytes(old_root, new_root, *proof):
            checked += 1
            verdict = rfc_verify_consistency(old, new, proof, old_root, new_root)
            assert verdict != case["wantErr"], case["_file"]
    assert checked > 100  # 143 of the 196 probes at the pinned commit


# ------------------------------------------------------------------------------------------------
# Exhaustive sweeps against the reference


def test_root_matches_reference_for_every_small_size() -> None:
    for size in range(SWEEP_MAX + 1):
        assert merkle.root(LEAVES[:size]) == REF.root(size), size


def test_root_accepts_any_sequence() -> None:
    assert merkle.root(tuple(LEAVES[:13])) == REF.root(13)


@pytest.mark.slow
def test_inclusion_sweep() -> None:
    for size in range(1, SWEEP_MAX + 1):
        leaves, root = LEAVES[:size], REF.root(size)
        for index in range(size):
            where = f"index {index}, size {size}"
            proof = merkle.inclusion_proof(index, leaves)
            assert proof == REF.path(index, size), where
            merkle.verify_inclusion(index, size, LEAVES[index], proof, root)
            assert merkle.root_from_inclusion_proof(index, size, LEAVES[index], proof) == root

            for i, element in enumerate(proof):
                bad = [*proof[:i], flip(element, i * 37 + index), *proof[i + 1 :]]
                assert rejects(merkle.verify_inclusion, index, size, LEAVES[index], bad, root), (
                    where
                )
            bit = size + index
            assert rejects(
                merkle.verify_inclusion, index, size, flip(LEAVES[index], bit), proof, root
            )
            assert rejects(
                merkle.verify_inclusion, index, size, LEAVES[index], proof, flip(root, bit)
            )
            # Another leaf, or this leaf at a neighbouring index, is not what the proof shows.
            for other in {index - 1, index + 1} & set(range(size)):
                assert rejects(merkle.verify_inclusion, index, size, LEAVES[other], proof, root)
                assert rejects(merkle.verify_inclusion, other, size, LEAVES[index], proof, root)
            # A hash too many or too few.
            assert rejects(
                merkle.verify_inclusion, index, size, LEAVES[index], [*proof, root], root
            )
            if proof:
                assert rejects(
                    merkle.verify_inclusion, index, size, LEAVES[index], proof[:-1], root
                )
                assert rejects(merkle.verify_inclusion, index, size, LEAVES[index], proof[1:], root)


def test_inclusion_paths_match_the_reference_and_need_only_what_a_batch_holds() -> None:
    for size in range(1, SWEEP_MAX + 1):
        every = complete_subtrees(size)
        assert merkle.inclusion_paths(range(size), size, every) == [REF.path(i, size) for i in range(size)]
        for old in range(size):
            # what the sequencer holds after appending leaves old..size-1: the old right edge and
            # every subtree those appends completed
            held = {n: every[n] for n in expected_frontier(old)}
            held.update({(lv, i): h for (lv, i), h in every.items() if ((i + 1) << lv) > old})
            batch = list(range(old, size))
            assert merkle.inclusion_paths(batch, size, held) == [REF.path(i, size) for i in batch], (old, size)
    with pytest.raises(KeyError):
        merkle.inclusion_paths([0], 4, {(0, 1): LEAVES[1]})  # (1, 1) is missing
    with pytest.raises(ValueError):
        merkle.inclusion_paths([4], 4, complete_subtrees(4))


@pytest.mark.slow
def test_consistency_sweep() -> None:
    for new in range(1, SWEEP_MAX + 1):
        leaves, new_root = LEAVES[:new], REF.root(new)
        for old in range(1, new + 1):
            where = f"old {old}, new {new}"
            old_root = REF.root(old)
            proof = merkle.consistency_proof(old, leaves)
            assert proof == REF.proof(old, new), where
            merkle.verify_consistency(old, new, proof, old_root, new_root)
            assert merkle.root_from_consistency_proof(old, new, proof, old_root) == new_root

            for i, element in enumerate(proof):
                bad = [*proof[:i], flip(element, i * 37 + old), *proof[i + 1 :]]
                assert rejects(merkle.verify_consistency, old, new, bad, old_root, new_root), where
            bit = old + new
            assert rejects(
                merkle.verify_consistency, old, new, proof, flip(old_root, bit), new_root
            )
            assert rejects(
                merkle.verify_consistency, old, new, proof, old_root, flip(new_root, bit)
            )
            assert rejects(
                merkle.verify_consistency, old, new, [*proof, new_root], old_root, new_root
            )
            if proof:
                assert rejects(merkle.verify_consistency, old, new, proof[:-1], old_root, new_root)
                assert rejects(merkle.verify_consistency, old, new, proof[1:], old_root, new_root)
            if old != new:
                # Swapped roots: the new tree does not extend into the old one.
                assert rejects(merkle.verify_consistency, old, new, proof, new_root, old_root), (
                    where
                )


# ------------------------------------------------------------------------------------------------
# The size-0 rule and the empty tree


def test_consistency_from_empty_tree() -> None:
    merkle.verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    for new in (1, 2, 3, 8, 130):
        merkle.verify_consistency(0, new, [], EMPTY_ROOT, REF.root(new))
        with pytest.raises(VerificationError, match="empty"):
            merkle.verify_consistency(0, new, [REF.root(new)], EMPTY_ROOT, REF.root(new))
        assert rejects(merkle.verify_consistency, 0, new, [], flip(EMPTY_ROOT, 3), REF.root(new))
        assert rejects(merkle.verify_consistency, 0, new, [], REF.root(new), REF.root(new))
        assert rejects(merkle.verify_consistency, 0, new, [], EMPTY_ROOT, REF.root(new)[:12])
    # (0, 0): both roots must be the empty tree's.
    assert rejects(merkle.verify_consistency, 0, 0, [], EMPTY_ROOT, REF.root(1))
    assert rejects(merkle.verify_consistency, 0, 0, [], REF.root(1), EMPTY_ROOT)
    assert rejects(merkle.verify_consistency, 0, 0, [], REF.root(1), REF.root(1))
    assert rejects(merkle.verify_consistency, 0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)


def test_no_inclusion_in_the_empty_tree() -> None:
    assert rejects(merkle.verify_inclusion, 0, 0, LEAVES[0], [], EMPTY_ROOT)
    assert rejects(merkle.verify_inclusion, 0, 0, EMPTY_ROOT, [], EMPTY_ROOT)


# ------------------------------------------------------------------------------------------------
# Bad inputs: always VerificationError, never a bare exception


GOOD_INCLUSION = (5, 13, LEAVES[5], REF.path(5, 13), REF.root(13))
GOOD_CONSISTENCY = (5, 13, REF.proof(5, 13), REF.root(5), REF.root(13))
NOT_BYTES: list[Any] = [
    None,
    0,
    "",
    "ab" * 16,
    REF.root(13).hex(),
    bytearray(REF.root(13)),
    [REF.root(13)],
]
WRONG_LENGTH = [b"", b"\x00", REF.root(13)[:31], REF.root(13) + b"\x00", REF.root(13) * 2]
NOT_SIZES: list[Any] = [-1, -(2**64), 2**64 + 1, 2**200, None, "5", 5.0, True]


def test_good_inputs_verify() -> None:
    merkle.verify_inclusion(*GOOD_INCLUSION)
    merkle.verify_consistency(*GOOD_CONSISTENCY)


@pytest.mark.parametrize("position", [2, 4])
@pytest.mark.parametrize("value", NOT_BYTES + WRONG_LENGTH, ids=repr)
def test_inclusion_refuses_hash_that_is_not_32_bytes(position: int, value: Any) -> None:
    args = list(GOOD_INCLUSION)
    args[position] = value
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("position", [3, 4])
@pytest.mark.parametrize("value", NOT_BYTES + WRONG_LENGTH, ids=repr)
def test_consistency_refuses_root_that_is_not_32_bytes(position: int, value: Any) -> None:
    args = list(GOOD_CONSISTENCY)
    args[position] = value
    with pytest.raises(VerificationError):
        merkle.verify_consistency(*args)


@pytest.mark.parametrize("value", NOT_BYTES + WRONG_LENGTH, ids=repr)
def test_proof_elements_must_be_32_bytes(value: Any) -> None:
    index, size, leaf, proof, root = GOOD_INCLUSION
    old, new, cproof, old_root, new_root = GOOD_CONSISTENCY
    for i in range(len(proof)):
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(index, size, leaf, [*proof[:i], value, *proof[i + 1 :]], root)
    for i in range(len(cproof)):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                old, new, [*cproof[:i], value, *cproof[i + 1 :]], old_root, new_root
            )
    # Also where the ledger might skip the proof: equal sizes and the empty tree.
    with pytest.raises(VerificationError):
        merkle.verify_consistency(old, old, [value], old_root, old_root)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(0, new, [value], EMPTY_ROOT, new_root)


@pytest.mark.parametrize("proof", [None, b"", REF.root(13), "proof", 3, {REF.root(13)}], ids=repr)
def test_proof_must_be_a_list(proof: Any) -> None:
    index, size, leaf, _, root = GOOD_INCLUSION
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(index, size, leaf, proof, root)
    old, new, _, old_root, new_root = GOOD_CONSISTENCY
    with pytest.raises(VerificationError):
        merkle.verify_consistency(old, new, proof, old_root, new_root)


def test_proof_as_tuple_is_accepted() -> None:
    index, size, leaf, proof, root = GOOD_INCLUSION
    merkle.verify_inclusion(index, size, leaf, tuple(proof), root)


@pytest.mark.parametrize("position", [0, 1])
@pytest.mark.parametrize("value", NOT_SIZES, ids=repr)
def test_index_and_sizes_must_be_sane_integers(position: int, value: Any) -> None:
    args = list(GOOD_INCLUSION)
    args[position] = value
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(*args)
    with pytest.raises(VerificationError):
        merkle.root_from_inclusion_proof(*args[:4])
    args = list(GOOD_CONSISTENCY)
    args[position] = value
    with pytest.raises(VerificationError):
        merkle.verify_consistency(*args)
    with pytest.raises(VerificationError):
        merkle.root_from_consistency_proof(*args[:4])


@pytest.mark.parametrize("index", [13, 14, 2**63, 2**64 - 1])
def test_index_at_or_past_size_is_refused(index: int) -> None:
    _, size, leaf, proof, root = GOOD_INCLUSION
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(index, size, leaf, proof, root)


def test_old_size_past_new_size_is_refused() -> None:
    _, _, proof, old_root, new_root = GOOD_CONSISTENCY
    with pytest.raises(VerificationError):
        merkle.verify_consistency(13, 5, proof, new_root, old_root)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(14, 13, [], new_root, new_root)


def test_absurd_proof_length_is_refused_quickly() -> None:
    index, size, leaf, proof, root = GOOD_INCLUSION
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(index, size, leaf, proof * 100_000, root)
    old, new, cproof, old_root, new_root = GOOD_CONSISTENCY
    with pytest.raises(VerificationError):
        merkle.verify_consistency(old, new, cproof * 100_000, old_root, new_root)


def test_root_mismatch_is_reported_as_such() -> None:
    index, size, leaf, proof, root = GOOD_INCLUSION
    with pytest.raises(RootMismatchError) as caught:
        merkle.verify_inclusion(index, size, leaf, proof, REF.root(12))
    assert caught.value.expected == REF.root(12) and caught.value.calculated == root
    old, new, cproof, old_root, new_root = GOOD_CONSISTENCY
    with pytest.raises(RootMismatchError):
        merkle.verify_consistency(old, new, cproof, old_root, REF.root(12))


def test_equal_sizes_need_equal_roots_and_an_empty_proof() -> None:
    for size in (1, 2, 7, 8):
        merkle.verify_consistency(size, size, [], REF.root(size), REF.root(size))
        assert merkle.root_from_consistency_proof(size, size, [], REF.root(size)) == REF.root(size)
        assert rejects(
            merkle.verify_consistency, size, size, [], REF.root(size), REF.root(size + 1)
        )
        assert rejects(
            merkle.verify_consistency, size, size, [REF.root(size)], REF.root(size), REF.root(size)
        )


@given(
    index=st.one_of(st.integers(-3, 70), st.integers(), st.none()),
    size=st.one_of(st.integers(-3, 70), st.integers(), st.none()),
    leaf=st.one_of(st.binary(min_size=0, max_size=40), st.sampled_from(LEAVES[:70]), st.none()),
    proof=st.one_of(
        st.lists(
            st.one_of(st.binary(min_size=30, max_size=33), st.sampled_from(LEAVES[:70])),
            max_size=70,
        ),
        st.none(),
        st.text(max_size=3),
    ),
    root=st.one_of(
        st.binary(min_size=0, max_size=40), st.sampled_from([REF.root(n) for n in range(70)])
    ),
)
@PROPERTY_SETTINGS
def test_garbage_never_escapes_as_a_bare_exception(
    index: Any, size: Any, leaf: Any, proof: Any, root: Any
) -> None:
    for verify, args in (
        (merkle.verify_inclusion, (index, size, leaf, proof, root)),
        (merkle.verify_consistency, (index, size, proof, leaf, root)),
    ):
        try:
            verify(*args)
        except VerificationError:
            pass
        else:
            # Accepting garbage is only possible where it is not garbage.
            assert isinstance(size, int) and 0 <= index <= size


# ------------------------------------------------------------------------------------------------
# Huge trees: sizes up to 2**64, built from identical leaves so that any size is cheap


UNIFORM = UniformReferenceTree(LEAVES[0])


class UniformSubtrees(Mapping[tuple[int, int], bytes]):
    """The hash of every complete subtree of a tree whose leaves are all ``LEAVES[0]``."""

    def __getitem__(self, node: tuple[int, int]) -> bytes:
        level, _ = node
        return UNIFORM.mth(0, 1 << level)

    def __iter__(self):  # pragma: no cover - never iterated
        raise TypeError

    def __len__(self) -> int:  # pragma: no cover
        raise TypeError


HUGE_SIZES = [2**32 + 5, 2**40 + 12345, 2**63 - 1, 2**63, 2**63 + 3, 2**64 - 1, 2**64]


@pytest.mark.parametrize("size", HUGE_SIZES)
def test_inclusion_in_huge_trees(size: int) -> None:
    root = UNIFORM.root(size)
    assert merkle.proof_from_plan([merkle.frontier_nodes(size)], UniformSubtrees()) == [root]
    for index in (0, 1, size // 3, size - 2, size - 1):
        proof = merkle.proof_from_plan(merkle.inclusion_proof_plan(index, size), UniformSubtrees())
        assert proof == UNIFORM.path(index, size)
        merkle.verify_inclusion(index, size, LEAVES[0], proof, root)
    assert rejects(merkle.verify_inclusion, size, size, LEAVES[0], proof, root)


@pytest.mark.parametrize("new", HUGE_SIZES)
def test_consistency_in_huge_trees(new: int) -> None:
    """Every size up to 2**64 is accepted, so every proof for those sizes must be too.

    Trees over 2**63 leaves have valid consistency proofs of 65 hashes (depth 64, plus the
    old root's own node), e.g. PROOF(5, D[2**63 + 3]).
    """
    new_root = UNIFORM.root(new)
    for old in (1, 3, 5, new // 2 + 1, new - 1, new):
        proof = merkle.proof_from_plan(merkle.consistency_proof_plan(old, new), UniformSubtrees())
        assert proof == UNIFORM.proof(old, new), old
        merkle.verify_consistency(old, new, proof, UNIFORM.root(old), new_root)


def test_sizes_past_two_to_the_64_are_refused() -> None:
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(0, 2**64 + 1, LEAVES[0], [LEAVES[0]] * 64, LEAVES[0])
    with pytest.raises(VerificationError):
        merkle.verify_consistency(1, 2**64 + 1, [LEAVES[0]] * 64, LEAVES[0], LEAVES[0])


# ------------------------------------------------------------------------------------------------
# The storage helpers: node ids, the compact range and proof plans


def test_frontier_nodes() -> None:
    assert merkle.frontier_nodes(0) == []
    assert merkle.frontier_nodes(1) == [(0, 0)]
    assert merkle.frontier_nodes(6) == [(2, 0), (1, 2)]
    assert merkle.frontier_nodes(13) == [(3, 0), (2, 2), (0, 12)]
    for size in range(SWEEP_MAX + 1):
        assert merkle.frontier_nodes(size) == expected_frontier(size)


def test_compact_range_by_appending() -> None:
    compact = merkle.CompactRange.empty()
    assert compact.size == 0 and compact.root() == EMPTY_ROOT
    for index in range(SWEEP_MAX):
        created = compact.append(LEAVES[index])
        size = index + 1
        assert compact.size == size
        assert compact.root() == REF.root(size), size
        # The append completes exactly the subtrees whose last leaf is this one (level >= 1).
        want = [
            (level, (size >> level) - 1, REF.subtree(level, (size >> level) - 1))
            for level in range(1, size.bit_length())
            if size % (1 << level) == 0
        ]
        assert sorted(created) == want, size


def test_compact_range_rebuilt_from_its_frontier_continues() -> None:
    for size in range(SWEEP_MAX + 1):
        hashes = [REF.subtree(level, index) for level, index in merkle.frontier_nodes(size)]
        compact = merkle.CompactRange(size, hashes)
        assert compact.size == size and compact.root() == REF.root(size)
        for index in range(size, min(size + 40, SWEEP_MAX)):
            compact.append(LEAVES[index])
            assert compact.root() == REF.root(index + 1), (size, index)


def test_compact_range_rebuilt_wrongly_is_refused() -> None:
    # Two hashes for a size with one set bit cannot be a frontier.
    with pytest.raises((ValueError, LedgerError)):
        merkle.CompactRange(8, [REF.root(8), REF.root(8)])


def test_range_nodes_cover_every_rfc_subtree_range() -> None:
    for size in range(1, SWEEP_MAX + 1):
        for start, end in REF.split_ranges(size):
            nodes = merkle.range_nodes(start, end)
            # Complete subtrees, left to right, biggest first, tiling [start, end) exactly.
            position = start
            for level, index in nodes:
                assert index << level == position, (start, end, nodes)
                position += 1 << level
            assert position == end
            assert [level for level, _ in nodes] == sorted((lv for lv, _ in nodes), reverse=True)
            # Their right fold is MTH(D[start:end]).
            folded = REF.subtree(*nodes[-1])
            for node in reversed(nodes[:-1]):
                folded = rfc_node_hash(REF.subtree(*node), folded)
            assert folded == REF.mth(start, end), (start, end)


def _check_plan(plan: list[list[tuple[int, int]]], size: int) -> None:
    nodes = {node for element in plan for node in element}
    # O(log n) reads, and never a node the tree of ``size`` does not have yet.
    assert len(nodes) <= 2 * size.bit_length() + 2, (size, plan)
    for level, index in nodes:
        assert (index + 1) << level <= size, (size, plan)
    assert all(element for element in plan)


@pytest.mark.slow
def test_plans_give_the_same_proofs_from_stored_subtrees() -> None:
    stored = complete_subtrees(SWEEP_MAX)
    for size in range(1, SWEEP_MAX + 1):
        leaves = LEAVES[:size]
        for index in range(size):
            plan = merkle.inclusion_proof_plan(index, size)
            _check_plan(plan, size)
            assert merkle.proof_from_plan(plan, stored) == merkle.inclusion_proof(index, leaves)
        for old in range(1, size + 1):
            plan = merkle.consistency_proof_plan(old, size)
            _check_plan(plan, size)
            assert merkle.proof_from_plan(plan, stored) == merkle.consistency_proof(old, leaves)


def test_plans_stay_small_for_big_trees() -> None:
    for size in (1000, 2**20 + 1, 2**40 - 1, 2**63 + 5):
        for index in (0, size // 2, size - 1):
            _check_plan(merkle.inclusion_proof_plan(index, size), size)
        for old in (1, size // 3 + 1, size - 1):
            _check_plan(merkle.consistency_proof_plan(old, size), size)


# ------------------------------------------------------------------------------------------------
# Property tests over bigger trees


@given(size=st.integers(0, PROPERTY_MAX))
@PROPERTY_SETTINGS
def test_root_property(size: int) -> None:
    assert merkle.root(LEAVES[:size]) == REF.root(size)


@given(data=st.data(), size=st.integers(1, PROPERTY_MAX))
@PROPERTY_SETTINGS
def test_inclusion_property(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    root = REF.root(size)
    proof = merkle.inclusion_proof(index, LEAVES[:size])
    assert proof == REF.path(index, size)
    merkle.verify_inclusion(index, size, LEAVES[index], proof, root)

    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert rejects(merkle.verify_inclusion, index, size, LEAVES[index], bad, root)
    assert rejects(merkle.verify_inclusion, index, size, flip(LEAVES[index], bit), proof, root)


@given(data=st.data(), new=st.integers(1, PROPERTY_MAX))
@PROPERTY_SETTINGS
def test_consistency_property(data: st.DataObject, new: int) -> None:
    old = data.draw(st.integers(1, new), label="old")
    old_root, new_root = REF.root(old), REF.root(new)
    proof = merkle.consistency_proof(old, LEAVES[:new])
    assert proof == REF.proof(old, new)
    merkle.verify_consistency(old, new, proof, old_root, new_root)

    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert rejects(merkle.verify_consistency, old, new, bad, old_root, new_root)
    assert rejects(merkle.verify_consistency, old, new, proof, flip(old_root, bit), new_root)


@given(data=st.data(), size=st.integers(1, PROPERTY_MAX))
@PROPERTY_SETTINGS
def test_compact_range_property(data: st.DataObject, size: int) -> None:
    """A frontier read from stored subtrees, extended by a few appends, gives the reference root."""
    hashes = [REF.subtree(level, index) for level, index in merkle.frontier_nodes(size)]
    compact = merkle.CompactRange(size, hashes)
    extra = data.draw(st.integers(0, min(40, PROPERTY_MAX - size)), label="appends")
    for index in range(size, size + extra):
        for level, node_index, node in compact.append(LEAVES[index]):
            assert node == REF.subtree(level, node_index)
    assert compact.root() == REF.root(size + extra)


def test_leaf_and_node_hash_match_the_rfc() -> None:
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.node_hash(LEAVES[0], LEAVES[1]) == rfc_node_hash(LEAVES[0], LEAVES[1])

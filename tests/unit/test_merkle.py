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

from collections.abc import Mapping
from typing import Any

import pytest

from ledger import merkle
from ledger.errors import VerificationError
from tests.conftest import load_vector
from tests.unit.merkle_cases import (
    LEAVES,
    REF,
    SWEEP_MAX,
    b64,
    complete_subtrees,
    expected_frontier,
    flip,
    hexes,
    rejects,
)
from tests.unit.merkle_reference import (
    EMPTY_ROOT,
    ReferenceTree,
    UniformReferenceTree,
    rfc_verify_consistency,
    rfc_verify_inclusion,
)


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

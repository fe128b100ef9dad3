"""``ledger.merkle`` at its limits: bad inputs are always a VerificationError (never a bare
exception), sizes up to 2**64 work and past it are refused, and the storage helpers (node ids,
the compact range, proof plans) agree with the RFC 9162 reference."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import LedgerError, RootMismatchError, VerificationError
from tests.unit.merkle_cases import (
    LEAVES,
    PROPERTY_MAX,
    PROPERTY_SETTINGS,
    REF,
    SWEEP_MAX,
    complete_subtrees,
    expected_frontier,
    flip,
    rejects,
)
from tests.unit.merkle_reference import (
    EMPTY_ROOT,
    UniformReferenceTree,
    rfc_node_hash,
)


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

"""Judging one record under a trust state (pure): the verdict, the reasons, and why it holds.

**One time rule.** A record is judged as of its own index and integrated time: a signer key
must have been registered before it, the grant's window (not-before / not-after) must hold at
its integrated time, and the threshold is the one in force at its index (a threshold set later
never condemns what was accepted before). Two things reach back: a revocation with
``compromised_since = T`` condemns the key's records integrated at or after T, and every record
after the revocation's own index; and review-by (staleness) is judged at the time of judging
(``as_of``), so evidence decays until the key (or, for a rotated key, its successor) is
re-affirmed. A rotation retires the old key for records after the rotation's index.

Times are seconds since the epoch; the ledger's integrated time (monotonic in the index) is the
trusted clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.trust.policy import IDENTITY_ALGORITHM, KeyState, TrustState, format_time

__all__ = ["APPENDING", "Judgement", "judge"]

#: the ``index`` of a record being appended now: after every event of any state
APPENDING = 1 << 62


@dataclass(frozen=True)
class Judgement:
    """A record's verdict under a trust state: trusted, stale or untrusted, with the reasons."""

    verdict: str
    reasons: tuple[str, ...]
    #: signer keys that count (trusted or, for a stale verdict, stale)
    key_ids: tuple[str, ...]
    principals: tuple[str, ...]
    #: why it holds (trusted or stale): principals, signers that counted, k of n, the grants that
    #: counted, the soonest review-by and not-after, and the margins (``margin_seconds``: time
    #: left before the first of those; ``threshold_margin``: k - n)
    why: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def trusted(self) -> bool:
        return self.verdict == "trusted"

    def message(self) -> str:
        return "; ".join(self.reasons)


def _key_label(key: KeyState) -> str:
    if key.algorithm == IDENTITY_ALGORITHM:
        return f"identity {key.key_id} ({key.principal})"
    return f"key {key.key_id} ({key.principal})"


def _condemned(state: TrustState, key: KeyState, index: int | None, time: int) -> str | None:
    """Why revocation or rotation rules the key out for a record at (index, time), or None."""
    if key.revoked_index is not None:
        after = index is not None and index > key.revoked_index
        since = key.compromised_since if key.compromised_since is not None else key.revoked_at
        if after or (since is not None and time >= since):
            return (
                f"{_key_label(key)} was revoked (entry {key.revoked_index}) as compromised since "
                f"{format_time(since)}, and the record was integrated at {format_time(time)}"
                + (f" (entry {index})" if index is not None and index != APPENDING else "")
            )
    retired = state.retired_index(key)
    if retired is not None and (index > retired if index is not None else key.retired_at is not None and time >= key.retired_at):
        return f"{_key_label(key)} was rotated out at {format_time(key.retired_at)} (entry {retired}, replaced by {key.replaced_by})"
    return None


def judge(
    state: TrustState,
    *,
    predicate_type: str,
    subject_names: Sequence[str],
    key_ids: Sequence[str],
    time: int,
    as_of: int | None = None,
    index: int | None = None,
    explain: bool = True,
) -> Judgement:
    """Judge a record at ``index``, integrated at ``time``, signed by ``key_ids``, as of ``as_of``
    (default ``time``). A record being appended is after every event of ``state``: pass
    ``APPENDING`` (a revoked or rotated key signs nothing new). ``index`` None judges by time alone (revocation at
    compromised-since, rotation at its time, the latest thresholds). ``explain=False`` leaves
    ``why`` empty (the verdict and reasons are the same): for callers that only act on the verdict."""
    as_of = time if as_of is None else as_of
    trusted: dict[str, str] = {}  # key id → principal
    stale: dict[str, str] = {}
    counted_grants: dict[str, Any] = {}
    reasons: list[str] = []
    for key_id in dict.fromkeys(key_ids):
        key = state.keys.get(key_id)
        if key is None or key.is_tee_root or (index is not None and index != APPENDING and key.registered_index >= index):
            reasons.append(f"key {key_id} is not registered" + (f" before entry {index}" if key is not None else ""))
            continue
        why_not = _condemned(state, key, index, time)
        if why_not is not None:
            reasons.append(why_not)
            continue
        scoped = [g for g in key.grants if g.covers_type(predicate_type)]
        if not scoped:
            reasons.append(
                f"{_key_label(key)} has no grant for predicate type {predicate_type!r} "
                f"(its grants: {', '.join(g.describe() for g in key.grants)})"
            )
            continue
        covering = [g for g in scoped if all(g.covers_subject(n) for n in subject_names)]
        if not covering:
            outside = [n for n in subject_names if not any(g.covers_subject(n) for g in scoped)] or list(subject_names)
            reasons.append(
                f"{_key_label(key)} has no grant for subject {outside[0]!r} with predicate type {predicate_type!r} "
                f"(its grants: {', '.join(g.describe() for g in scoped)})"
            )
            continue
        in_window = [g for g in covering if g.valid_at(time)]
        if not in_window:
            reasons.append(
                f"{_key_label(key)}'s grant {covering[0].describe()} is not valid at {format_time(time)} (expired or not yet valid)"
            )
            continue
        fresh = [g for g in in_window if not g.stale_at(as_of)]
        if fresh:
            trusted[key.key_id] = key.principal
            counted_grants[key.key_id] = fresh[0]
        else:
            stale[key.key_id] = key.principal
            counted_grants[key.key_id] = in_window[0]
            reasons.append(
                f"{_key_label(key)}'s grant {in_window[0].describe()} is past its review-by date "
                f"{format_time(in_window[0].review_by)}: re-affirm it (provledger keys reaffirm)"
            )
    needed = state.threshold_for(predicate_type, None if index == APPENDING else index)
    principals = set(trusted.values())
    if len(principals) >= needed:
        return Judgement("trusted", (), tuple(trusted), tuple(sorted(principals)),
                         _why(trusted, counted_grants, needed, as_of) if explain else {})
    with_stale = principals | set(stale.values())
    if len(with_stale) >= needed and stale:
        both = {**trusted, **stale}
        return Judgement("stale", tuple(reasons), tuple(both), tuple(sorted(with_stale)),
                         _why(both, counted_grants, needed, as_of) if explain else {})
    if needed > 1:
        have = ", ".join(sorted(principals)) or "none"
        reasons.append(
            f"predicate type {predicate_type!r} needs signatures by {needed} distinct principals; "
            f"trusted signers: {len(principals)} ({have})"
        )
    if not key_ids:
        reasons.append("the record has no verified signature")
    return Judgement("untrusted", tuple(reasons), tuple(trusted), tuple(sorted(principals)))


def _why(counted: dict[str, str], grants: dict[str, Any], needed: int, as_of: int) -> dict[str, Any]:
    review = [g.review_by for k, g in grants.items() if k in counted and g.review_by is not None]
    ends = [g.not_after for k, g in grants.items() if k in counted and g.not_after is not None]
    deadline = min(review + ends, default=None)
    k = len(set(counted.values()))
    return {
        "principals": sorted(set(counted.values())),
        "signers": sorted(counted),
        "k": k,
        "n": needed,
        "threshold_margin": k - needed,
        "grants": {key_id: grants[key_id].describe() for key_id in sorted(counted)},
        "review_by": format_time(min(review)) if review else None,
        "not_after": format_time(min(ends)) if ends else None,
        "margin_seconds": None if deadline is None else deadline - as_of,
    }

"""Keyless (Sigstore certificate) signers under a trust state (pure).

A keyless entry's leaf records the identity its Fulcio certificate names (SAN, OIDC issuer and
the Fulcio claims), not a registered key. Its signers are the identities registered before it
whose SAN glob, issuer and pinned source repository that identity matches, and of those the
ones whose grants counted when it was appended. The append path judges with
``identity_matches``; ``entry_signers`` stores what ``keyless_signers`` recomputes from the leaf,
so the audit can rebuild it and the offline verifier, which has only the leaves, can judge the
entry exactly as the server does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.interop.sigstore._x509 import CertificateIdentity
from ledger.interop.sigstore.identity import IdentityPolicy
from ledger.trust.judge import APPENDING, judge
from ledger.trust.policy import IDENTITY_ALGORITHM, TrustState

__all__ = ["identity_matches", "keyless_signers"]


def identity_matches(state: TrustState, certified: CertificateIdentity, *, before: int = APPENDING) -> tuple[list[str], list[str]]:
    """The ids of the identities registered before entry ``before`` that ``certified`` matches,
    and, for the near misses (an identity of the same issuer), why each does not."""
    matched: list[str] = []
    misses: list[str] = []
    for key in state.keys.values():
        if key.algorithm != IDENTITY_ALGORITHM or key.registered_index >= before:
            continue
        pinned = key.identity
        assert pinned is not None
        result = IdentityPolicy(pinned.san, pinned.issuer, pinned.source_repository).result_for(certified)
        if result.ok:
            matched.append(key.key_id)
        elif pinned.issuer == certified.issuer:
            misses.append(f"identity {key.key_id} ({key.principal}): {result.reason}")
    return matched, misses


def keyless_signers(
    state: TrustState, record: Mapping[str, Any] | None, *, predicate_type: str, subject_names: Sequence[str], time: int,
    index: int,
) -> tuple[str, ...]:
    """The signers of keyless entry ``index`` (integrated at ``time``) as its append stored them:
    under ``state``, the trust state just before it, the identities its leaf's certificate
    identity ``record`` matches whose grants count; all of them when none counts; none for a
    record that is not of the leaf's shape."""
    certified = CertificateIdentity.from_record(record)
    if certified is None:
        return ()
    matched, _ = identity_matches(state, certified, before=index)
    verdict = judge(
        state, predicate_type=predicate_type, subject_names=subject_names, key_ids=matched, time=time, index=APPENDING,
        explain=False,
    )
    return verdict.key_ids if verdict.trusted else tuple(matched)

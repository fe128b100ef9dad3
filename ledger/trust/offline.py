"""The trust fold and the chain verdict as the offline verifier runs them (pure).

The verifier has no fold of its own: it feeds the bundle's leaves to ``ledger.trust.fold``
(``TrustFold``: the code the append path and ``audit`` run) and judges the chain with
``ledger.trust.verdict.chain_verdict`` (the code ``chain`` and the API run). Two things the
server reads from its own tables are recomputed here from the leaves, with the pure code the
server ran when it stored them:

- a deployment's TEE appraisal (``ledger.trust.deployment.judge_deployment``: the evidence at
  the entry's integrated time, against the vendor roots pinned in code, the policy of its
  environment, the TDX collateral and the TPM roots the key history set, then its match to a
  firmware-image record before it in the bundle whose signers were trusted): under the state
  before the entry for the ``firmware`` edge the server stored at submission, and under the
  state after the last key event, when one came after the entry, for the appraisal the chain
  shows (the server's re-judged row, ``ledger.services.reappraisal.chain_appraisals``);
- a keyless (Sigstore certificate) entry's signers: the registered identities its certificate
  identity matched and whose grants counted, as the append judged them
  (``ledger.trust.keyless``), where the leaf records only the certificate's key;
- nothing else: subjects, the other signers and edges come from ``leaf_facts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ledger.errors import LedgerError, VerificationError
from ledger.records.keys import PublicKey
from ledger.records.leaf import LEAF_KIND_BUNDLE
from ledger.trust import deployment as pure
from ledger.trust.chain import RecordInfo, TeeInfo, parse_digest
from ledger.trust.fold import GENESIS, LeafFacts, TrustFold, leaf_facts
from ledger.trust.policy import TrustState
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, validate_predicate
from ledger.trust.verdict import chain_verdict, judge_record, reachable, record_info

__all__ = ["GENESIS_PREV", "leaf_facts", "prev_of", "recompute_chain"]

#: the predecessor the first key event names: (-1, 32 zero bytes)
GENESIS_PREV: tuple[int, bytes] = (GENESIS[0], bytes.fromhex(GENESIS[1]))


def prev_of(facts: LeafFacts) -> tuple[int, bytes] | None:
    """The predecessor a key event names, as (index, leaf hash bytes); None for a legacy event."""
    event = facts.key_event
    if event is None:
        raise VerificationError(f"key-event entry {facts.index} does not parse: {facts.key_event_error}")
    if event.prev is None:
        return None
    return int(event.prev[0]), bytes.fromhex(event.prev[1])


def _firmware_measurements(facts: Sequence[LeafFacts]) -> dict[int, Any]:
    """Each firmware image's measurements (or the error its predicate raises), read once for every
    deployment that may match it; the predicate is checked against its schema first, as the
    ledger checked it on entry (a bundle's leaves are anyone's bytes)."""
    out: dict[int, Any] = {}
    for fw in facts:
        if fw.predicate_type != FIRMWARE_IMAGE:
            continue
        predicate = (fw.statement or {}).get("predicate")
        try:
            validate_predicate(FIRMWARE_IMAGE, predicate)
            out[fw.index] = pure.firmware_measurements(predicate)
        except LedgerError as exc:
            out[fw.index] = exc
    return out


def _record(f: LeafFacts, fold: TrustFold) -> RecordInfo:
    """The chain's view of entry ``f``: ``record_info``, with a keyless entry's signers resolved."""
    record = record_info(f)
    if f.kind != LEAF_KIND_BUNDLE or f.identity is None:
        return record
    from ledger.trust.keyless import keyless_signers  # noqa: PLC0415 - loads the Sigstore reader, for keyless entries only

    signers = keyless_signers(
        fold.state_at(f.index - 1), f.identity, predicate_type=f.predicate_type, subject_names=[n for _, _, n in f.subjects],
        time=f.integrated_time, index=f.index,
    )
    return replace(record, signers=tuple(sorted(set(signers))))


def _appraise(
    f: LeafFacts, deployment: pure.Deployment, facts: Sequence[LeafFacts], fold: TrustFold, firmware_measurements: dict[int, Any],
    state: TrustState, *, rejudging: bool = False,
) -> tuple[dict[str, Any], pure.FirmwareCandidate | None]:
    """Deployment ``f``'s appraisal under ``state`` (``pure.judge_deployment``, as the server
    runs it), its candidates the firmware records before it in the bundle, judged under ``state``."""

    def candidates(kind: str, claims: Any) -> list[pure.FirmwareCandidate]:
        out = []
        for fw in facts:
            if fw.index >= f.index or fw.index not in firmware_measurements:
                continue
            measurements = firmware_measurements[fw.index]
            if isinstance(measurements, LedgerError):
                raise measurements
            if kind not in measurements or not pure.measurement_matches(kind, measurements[kind], claims):
                continue
            verdict = judge_record(state, _record(fw, fold), as_of=f.integrated_time)
            because = None if verdict.trusted else f"{verdict.verdict}: {verdict.message() or 'no trusted signer'}"
            name = fw.subjects[0][2] if fw.subjects else ""
            out.append(pure.FirmwareCandidate(fw.index, name, measurements, because))
        return out

    return pure.judge_deployment(deployment, state, integrated_time=f.integrated_time, candidates=candidates, rejudging=rejudging)


def _reappraise(
    f: LeafFacts, facts: Sequence[LeafFacts], fold: TrustFold, firmware_measurements: dict[int, Any]
) -> tuple[TeeInfo, tuple[tuple[str, str, str], ...]]:
    """A deployment's appraisal and firmware edge as the server's chain shows them: the edge of
    its submission appraisal (under the state before it, as ``complete_appraisals`` made it), and
    the appraisal judged under the state after the last key event, when one came after it (as
    ``ledger.services.reappraisal`` re-judges it)."""
    statement = f.statement or {}
    # the predicates as the ledger checked them on entry: a bundle's leaves are anyone's bytes
    validate_predicate(DEPLOYMENT, statement.get("predicate"))
    deployment = pure.parse_deployment(statement.get("predicate") or {}, f.subjects)
    document, firmware = _appraise(f, deployment, facts, fold, firmware_measurements, fold.state_at(f.index - 1))
    edges: tuple[tuple[str, str, str], ...] = ()
    if firmware is not None:
        matched = next(x for x in facts if x.index == firmware.index)
        edges = tuple(("firmware", alg, digest) for alg, digest in dict.fromkeys((a, d) for a, d, _ in matched.subjects))
    last_event = fold.events[-1][0] if fold.events else -1
    if last_event > f.index:
        try:
            document, _ = _appraise(f, deployment, facts, fold, firmware_measurements, fold.state_at(last_event), rejudging=True)
        except LedgerError as exc:  # evidence that no longer parses: refused, as the re-judging does
            document = pure.unappraisable_document(exc.diagnostics())
    return TeeInfo.from_document(document), edges


def recompute_chain(
    artifact: str,
    facts: Sequence[LeafFacts],
    root: PublicKey,
    *,
    as_of_time: int,
) -> tuple[dict[str, Any], dict[int, str]]:
    """The chain JSON of ``artifact`` from ``facts`` (ascending, every one up to the index judged
    at, with every key event among them, their signatures already verified)."""
    fold = TrustFold(root.spki_der)
    for f in facts:
        if f.index > fold.size:
            fold.skip_to(f.index, fold.last_time)  # the bundle holds every key event: none in between
        # step 6 checked every recorded signer's signature (key events: the root's), so the fold
        # need not decode the leaf again to re-check the root's (``data=None``)
        fold.feed_facts(f, None)
    damaged = [(i, why) for i, why in fold.problems if why.startswith("key-event")]
    if damaged:
        raise VerificationError(f"the log's key history is damaged at entry {damaged[0][0]}: {damaged[0][1]}")
    records: dict[int, RecordInfo] = {}
    firmware = _firmware_measurements(facts) if any(f.predicate_type == DEPLOYMENT for f in facts) else {}
    for f in facts:  # key events too: the server's walk finds them by their subjects like any record
        record = _record(f, fold)
        if f.predicate_type == DEPLOYMENT:
            try:
                tee, extra = _reappraise(f, facts, fold, firmware)
            except LedgerError as exc:  # evidence the ledger accepted no longer appraises: fail closed
                tee, extra = TeeInfo("", "", "reject", None, None, (f"appraisal: {exc.diagnostics()}",)), ()
            record = replace(record, tee=tee, edges=tuple(dict.fromkeys(record.edges + extra)))
        records[f.index] = record
    digest = parse_digest(artifact)
    picked = reachable(digest, records)
    chain = chain_verdict(digest, {i: records[i] for i in picked}, fold.state, as_of_time=as_of_time)
    return chain, {i: r.predicate_type for i, r in records.items()}

"""Re-judging deployments when the trust state changes (a revocation, new TDX collateral, a policy).

A deployment's evidence was appraised when it was submitted (``appraisals``, never changed). When
the admin's key events change what that evidence would be judged against, the deployment is
appraised again — at its own integrated time (the evidence does not change, certificates and
collateral are judged at that time), under the trust state after the last key event
``trust_index`` (the policy of its environment, the TDX collateral, the keys that make its firmware
record trusted) — and the result is stored as a ``tee_reappraisals`` row. A row is a function of
the log: :func:`verify_reappraisals` recomputes every row and reports the ones that differ, and
the chain of trust shows the latest row in place of the submission appraisal.

Large batches run on the Celery workers (``workers.tasks.reappraise_batch``), one task per
:data:`BATCH` deployments; :func:`pending` tells whether the current trust state was applied yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ledger.errors import LedgerError, MalformedError
from ledger.records.leaf import canonical_json, decode_leaf
from ledger.services import deployment as tee
from ledger.services.policy import state_at
from ledger.trust import deployment as pure
from ledger.trust.policy import TrustState

__all__ = [
    "BATCH", "Reappraised", "chain_appraisals", "deployment_indexes", "pending", "reappraise", "trust_index", "verify_appraisals", "verify_reappraisals",
]

#: deployments per worker task
BATCH = 200


@dataclass(frozen=True)
class Reappraised:
    index: int
    trust_index: int
    verdict: str
    previous: str | None  # the verdict of the row before (submission appraisal or earlier re-judging)


def _mark(session: Session) -> str:
    return "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"


def trust_index(session: Session) -> int:
    """The index of the last key event (-1: none): re-judged rows are keyed on it."""
    row = session.connection().exec_driver_sql(
        "SELECT MAX(idx) FROM entries WHERE predicate_type = " + _mark(session), (pure_key_event(),)
    ).first()
    return -1 if row is None or row[0] is None else int(row[0])


def pure_key_event() -> str:
    from ledger.trust.predicates import KEY_EVENT  # noqa: PLC0415

    return KEY_EVENT


def deployment_indexes(session: Session, *, before: int | None = None) -> list[int]:
    """The deployment entries (with a submission appraisal) before index ``before``, in order.
    Deployments after the last key event were appraised under the current state already."""
    limit = "" if before is None else f" WHERE entry_idx < {int(before)}"
    rows = session.connection().exec_driver_sql(f"SELECT entry_idx FROM appraisals{limit} ORDER BY entry_idx").fetchall()
    return [int(r[0]) for r in rows]


def pending(session: Session) -> bool:
    """Whether some deployment has not been re-judged under the latest trust state."""
    index = trust_index(session)
    if index < 0:
        return False
    mark = _mark(session)
    done = session.connection().exec_driver_sql(
        f"SELECT COUNT(*) FROM tee_reappraisals WHERE trust_index = {mark}", (index,)
    ).scalar_one()
    return int(done) < len(deployment_indexes(session, before=index))


def _judge(session: Session, index: int, state: TrustState, at_index: int, *, rejudging: bool = True) -> dict[str, Any]:
    """The appraisal document of deployment ``index`` under ``state`` (the state after ``at_index``):
    a re-judging, or with ``rejudging=False`` its submission's (``state`` the one before it)."""
    mark = _mark(session)
    row = session.connection().exec_driver_sql(
        f"SELECT data, integrated_time FROM entries WHERE idx = {mark}", (index,)
    ).first()
    if row is None:
        raise MalformedError(f"entry {index} does not exist")
    data, integrated_time = bytes(row[0]), int(row[1])
    leaf = decode_leaf(data)
    statement = json.loads(leaf.envelope.payload)
    subjects = [
        (alg, str(value).lower(), str(s.get("name", "")))
        for s in statement.get("subject") or ()
        for alg, value in (s.get("digest") or {}).items()
    ]
    record = pure.parse_deployment(statement["predicate"], subjects)

    def candidates(kind: str, claims: Any) -> list[pure.FirmwareCandidate]:
        # the firmware records before the deployment (what it could refer to), judged under state
        return tee._candidates(session, kind, claims, integrated_time, state, before=index)  # noqa: SLF001

    doc, _ = pure.judge_deployment(record, state, integrated_time=integrated_time, candidates=candidates, rejudging=rejudging)
    doc["trust_index"] = at_index
    return doc


def _rejudged(session: Session, index: int, state: TrustState, at_index: int) -> dict[str, Any]:
    """``_judge``, or for evidence that once passed but no longer parses, a refusal saying why."""
    try:
        return _judge(session, index, state, at_index)
    except LedgerError as exc:
        return {**pure.unappraisable_document(exc.diagnostics()), "trust_index": at_index}


def chain_appraisals(session: Session, deployments: Sequence[int], *, at: int) -> dict[int, dict[str, Any]]:
    """The appraisal a chain judged as of entry ``at`` shows for each deployment: under the trust
    state after the last key event up to ``at`` (its re-judged row, or recomputed now when the
    workers have not stored it yet), or the submission's when no key event came after the
    deployment. The offline verifier computes the same from a bundle's leaves
    (``ledger.trust.offline``), so the two verdicts agree whether or not re-judging has run."""
    out = tee.appraisals_of(session, list(deployments), rejudged=False)
    mark = _mark(session)
    row = session.connection().exec_driver_sql(
        f"SELECT MAX(idx) FROM entries WHERE predicate_type = {mark} AND idx <= {mark}", (pure_key_event(), at)
    ).first()
    last_event = -1 if row is None or row[0] is None else int(row[0])
    later = [d for d in out if d < last_event]
    if not later:
        return out
    stored: dict[int, dict[str, Any]] = {}
    conn = session.connection()
    for start in range(0, len(later), tee.CHUNK):
        chunk = tuple(later[start : start + tee.CHUNK])
        marks = ", ".join([mark] * len(chunk))
        for entry, document in conn.exec_driver_sql(
            f"SELECT entry_idx, document FROM tee_reappraisals WHERE trust_index = {mark} AND entry_idx IN ({marks})",
            (last_event, *chunk),
        ).fetchall():
            stored[int(entry)] = json.loads(document)
    state = None
    for d in later:
        if d not in stored:
            state = state if state is not None else state_at(session, last_event)
            stored[d] = _rejudged(session, d, state, last_event)
        out[d] = stored[d]
    return out


def _latest(session: Session, indexes: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for index, document in tee.appraisals_of(session, list(indexes)).items():
        out[index] = document["verdict"]
    return out


def reappraise(session: Session, indexes: Sequence[int] | None = None, *, at: int | None = None) -> list[Reappraised]:
    """Re-judge deployments (all when ``indexes`` is None) under the trust state after key event
    ``at`` (default: the latest); stores a row per deployment not yet re-judged under it (idempotent).
    The caller commits."""
    index = trust_index(session) if at is None else at
    if index < 0:
        return []
    state = state_at(session, index)
    wanted = deployment_indexes(session, before=index) if indexes is None else sorted(set(indexes))
    mark = _mark(session)
    conn = session.connection()
    previous = _latest(session, wanted)
    out = []
    for entry in wanted:
        exists = conn.exec_driver_sql(
            f"SELECT verdict FROM tee_reappraisals WHERE entry_idx = {mark} AND trust_index = {mark}", (entry, index)
        ).first()
        if exists is not None:
            out.append(Reappraised(entry, index, str(exists[0]), previous.get(entry)))
            continue
        document = _rejudged(session, entry, state, index)
        conn.exec_driver_sql(
            f"INSERT INTO tee_reappraisals (entry_idx, trust_index, verdict, document) VALUES ({mark}, {mark}, {mark}, {mark})",
            (entry, index, document["verdict"], canonical_json(document).decode("utf-8")),
        )
        out.append(Reappraised(entry, index, document["verdict"], previous.get(entry)))
    session.flush()
    return out


def verify_appraisals(session: Session) -> list[tuple[int, str]]:
    """Re-run each deployment's submission appraisal from its leaf bytes, at its integrated time,
    under the trust state it was appended in; (entry, why) of each stored one whose verdict or
    named checks differ. The reasons are not compared: they quote times and a recomputation at
    the integrated time may word a validity window a second apart from the submission's."""
    rows = session.connection().exec_driver_sql("SELECT entry_idx, document FROM appraisals ORDER BY entry_idx").fetchall()
    problems = []
    for entry, stored in rows:
        try:
            doc = json.loads(stored)
            expected = _judge(session, int(entry), state_at(session, int(entry)), int(entry), rejudging=False)
        except (LedgerError, ValueError, KeyError, TypeError) as exc:
            problems.append((int(entry), f"its appraisal cannot be recomputed from the log: {exc}"))
            continue
        if not isinstance(doc, dict):
            problems.append((int(entry), "its stored appraisal is not a JSON object"))
            continue

        def outcome(d: dict[str, Any]) -> tuple[Any, list[tuple[Any, Any]]]:
            return d.get("verdict"), [(c.get("name"), c.get("ok")) for c in d.get("checks") or () if isinstance(c, dict)]

        if outcome(doc) != outcome(expected):
            problems.append((int(entry), f"its stored appraisal ({doc.get('verdict')}) differs from a recomputation from the log ({expected.get('verdict')})"))
    return problems


def verify_reappraisals(session: Session) -> list[tuple[int, int, str]]:
    """Recompute every stored row from the log; (entry, trust index, why) of each that differs."""
    rows = session.connection().exec_driver_sql(
        "SELECT entry_idx, trust_index, document FROM tee_reappraisals ORDER BY trust_index, entry_idx"
    ).fetchall()
    problems = []
    states: dict[int, TrustState] = {}
    for entry, index, stored in rows:
        state = states.get(index)
        if state is None:
            state = states[index] = state_at(session, int(index))
        try:
            expected = canonical_json(_judge(session, int(entry), state, int(index))).decode("utf-8")
        except LedgerError as exc:
            expected = canonical_json({"verdict": "reject", "trust_index": int(index), "checks": [
                {"name": "evidence_parses", "ok": False, "reason": exc.diagnostics()}]}).decode("utf-8")
        if expected != stored:
            problems.append((int(entry), int(index), "the re-judged appraisal differs from a recomputation from the log"))
    return problems

"""Deployment records at submission: appraise the TEE evidence, match the firmware, store the result.

``complete_appraisals`` runs after ``ledger.services.append.prepare_envelopes`` (which checked the
envelope, the signer's grant and the predicate's schema) and before integration, in the caller's
read transaction:

1. the evidence is appraised by ``ledger.trust.deployment.appraise_deployment`` at the
   submission time, to the vendor roots pinned in code or, for TPM quotes, to the CA certificates
   of the trust folder (``PROVLEDGER_TEE_TRUST_DIR``, default ``$PROVLEDGER_HOME/tee-trust/``:
   every ``*.pem``/``*.crt`` file in it);
2. ``firmware_measurement_matches``: the evidence's measurement must equal that of a
   firmware-image entry already in the ledger whose signers are trusted for it now
   (``ledger.trust.policy.judge``); when only this check fails and a firmware-image record
   earlier in the same batch measures the claims, the deployment is marked
   ``appraise_in_sequence`` and the sequencer appraises it under its lock, that record included;
3. any failed check refuses the record (``NotTrustedError``, 403, naming every failed check);
   a passing one carries its appraisal document and a ``firmware`` edge to the matched image
   into integration, where ``insert_appraisals`` stores the document in ``appraisals``.

Certificate-chain signature checks are cached by ``ledger.attestation``; the trust folder is read
again only when its listing changes.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from ledger.attestation.policy_document import PolicyDocument
from ledger.config import Settings
from ledger.errors import ConfigurationError, LedgerError, MalformedError, NotTrustedError, UnavailableError
from ledger.trust import deployment as pure
from ledger.trust.judge import judge
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE
from ledger.records.leaf import canonical_json
from ledger.services.prepared import Prepared
from ledger.services.trust import load_keys
from ledger.trust import tee_jobs
from ledger.trust.tee_events import TeeState
from ledger.untrusted.x509 import load_der_certificate, load_pem_certificates


__all__ = [
    "TRUST_DIR_VARIABLE",
    "appraisal_of",
    "appraisals_of",
    "complete_appraisals",
    "firmware_candidate_indexes",
    "insert_appraisals",
    "load_tpm_roots",
    "register_job_runner",
    "trust_dir",
]

TRUST_DIR_VARIABLE = "PROVLEDGER_TEE_TRUST_DIR"
#: certificate files read from the trust folder
TRUST_SUFFIXES = (".pem", ".crt")
#: firmware-image entries whose data is read per query at most
CHUNK = 500
#: firmware-image measurements kept in memory at most (then the cache starts over)
MAX_CACHED_FIRMWARE = 100_000

#: (folder, its listing) → the DER certificates it held
_ROOTS_CACHE: dict[str, tuple[tuple[Any, ...], tuple[bytes, ...]]] = {}
#: leaf hash → the firmware-image predicate's measurements (entries never change)
_MEASUREMENTS: dict[bytes, tuple[dict[str, Any], str]] = {}


def trust_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The TPM trust folder: ``PROVLEDGER_TEE_TRUST_DIR``, else ``$PROVLEDGER_HOME/tee-trust``."""
    env = os.environ if environ is None else environ
    configured = env.get(TRUST_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Settings.from_env(dict(env)).home / "tee-trust"


def load_tpm_roots(directory: Path) -> tuple[bytes, ...]:
    """DER of every certificate in the folder's PEM/DER files (none when the folder is absent).

    Raises:
        ConfigurationError: a file in the folder is not a certificate.
    """
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in TRUST_SUFFIXES and p.is_file())
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the TEE trust folder {directory}: {exc.strerror or exc}") from exc
    listing = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    key = str(directory.resolve())
    cached = _ROOTS_CACHE.get(key)
    if cached is not None and cached[0] == listing:
        return cached[1]
    roots: list[bytes] = []
    for path in files:
        blob = path.read_bytes()
        try:
            if b"-----BEGIN" in blob:
                certs = load_pem_certificates(blob)
            else:
                certs = [load_der_certificate(blob)]
        except MalformedError as exc:
            raise ConfigurationError(f"{path} in the TEE trust folder is not a certificate: {exc}") from exc
        roots.extend(c.public_bytes(Encoding.DER) for c in certs)
    found = tuple(dict.fromkeys(roots))
    _ROOTS_CACHE[key] = (listing, found)
    return found


def tpm_roots_of(session: Session) -> tuple[bytes, ...]:
    """The TPM roots that count: the ``tee-root:tpm`` roots in the key history that are not
    revoked. The trust folder is only an import path (``provledger keys import-tee-roots``)."""
    from ledger.services.trust import load_state  # noqa: PLC0415

    return pure.tpm_roots_in(load_state(session))


def _statement_of(canonical: bytes) -> dict[str, Any]:
    """The statement of a prepared submission: a DSSE envelope, or a Sigstore bundle's."""
    try:
        doc = json.loads(canonical)
        envelope = doc["dsseEnvelope"] if "dsseEnvelope" in doc else doc
        statement = json.loads(base64.b64decode(envelope["payload"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError("a deployment record must be an in-toto statement in a DSSE envelope") from exc
    if not isinstance(statement, dict) or not isinstance(statement.get("predicate"), dict):
        raise MalformedError("a deployment record must be an in-toto statement with a predicate object")
    return statement


def _mark(session: Session) -> str:
    return "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"


def _firmware_matches(
    session: Session, kind: str, claims: Mapping[str, Any], before: int | None = None
) -> list[tuple[int, int, str, dict[str, Any]]]:
    """(index, integrated time, subject name, measurements) of the firmware-image entries (before
    entry ``before``, when given) whose measurement for ``kind`` equals the claims."""
    conn = session.connection()
    mark = _mark(session)
    below = "" if before is None else f" AND idx < {int(before)}"
    rows = conn.exec_driver_sql(
        f"SELECT idx, integrated_time, leaf_hash FROM entries WHERE predicate_type = {mark}{below} ORDER BY idx",
        (FIRMWARE_IMAGE,),
    ).fetchall()
    if len(_MEASUREMENTS) > MAX_CACHED_FIRMWARE:
        _MEASUREMENTS.clear()
    unknown = [idx for idx, _, leaf in rows if bytes(leaf) not in _MEASUREMENTS]
    for start in range(0, len(unknown), CHUNK):
        chunk = unknown[start : start + CHUNK]
        marks = ", ".join([mark] * len(chunk))
        for leaf, data in conn.exec_driver_sql(
            f"SELECT leaf_hash, data FROM entries WHERE idx IN ({marks})", tuple(chunk)
        ).fetchall():
            try:
                leaf_doc = json.loads(bytes(data))
                envelope = leaf_doc["envelope"] if "envelope" in leaf_doc else leaf_doc["bundle"]["dsseEnvelope"]
                statement = json.loads(base64.b64decode(envelope["payload"]))
                measurements = pure.firmware_measurements(statement.get("predicate"))
                name = str((statement.get("subject") or [{}])[0].get("name", ""))
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                measurements, name = {}, ""  # not a DSSE leaf we can read: it measures nothing
            _MEASUREMENTS[bytes(leaf)] = (measurements, name)
    out = []
    for idx, integrated_time, leaf in rows:
        measurements, name = _MEASUREMENTS[bytes(leaf)]
        if kind in measurements and pure.measurement_matches(kind, measurements[kind], claims):
            out.append((idx, integrated_time, name, measurements))
    return out


def firmware_candidate_indexes(session: Session, entries: Sequence[int]) -> set[int]:
    """The firmware-image entries the deployments among ``entries`` could be matched to: for
    each, the records before it whose measurement for its evidence type equals its claims (from
    its submission appraisal). A verdict bundle holds them, so that the offline verifier matches
    a re-judged deployment to the same record as the server does (``judge_deployment``)."""
    out: set[int] = set()
    matches: dict[tuple[str, str], list[int]] = {}  # deployments of one firmware share their claims: one read
    for entry, document in appraisals_of(session, list(entries), rejudged=False).items():
        kind, claims = document.get("evidence_type"), document.get("claims")
        if isinstance(kind, str) and isinstance(claims, dict):
            key = (kind, json.dumps(claims, sort_keys=True))
            if key not in matches:
                matches[key] = [match[0] for match in _firmware_matches(session, kind, claims)]
            out.update(index for index in matches[key] if index < entry)
    return out


def _pending_candidates(
    session: Session, pending: Sequence[tuple[int, Prepared]], kind: str, claims: Mapping[str, Any], now: int
) -> list[pure.FirmwareCandidate]:
    """``_candidates`` for firmware records of the batch being appended (integrated at ``now``)."""
    out = []
    state = None
    for index, firmware in pending:
        measured = _measuring(firmware, kind, claims)
        if measured is None:
            continue
        name, measurements = measured
        state = state if state is not None else load_keys(session).state()
        verdict = judge(
            state, predicate_type=FIRMWARE_IMAGE, subject_names=[n for _, _, n in firmware.subjects],
            key_ids=sorted({s.key_id for s in firmware.signers}), time=now, as_of=now, index=index,
        )
        because = None if verdict.trusted else f"{verdict.verdict}: {verdict.message() or 'no trusted signer'}"
        out.append(pure.FirmwareCandidate(index, name, measurements, because))
    return out


def _measuring(firmware: Prepared, kind: str, claims: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A firmware-image record's first subject name and measurements, when its measurement for
    ``kind`` equals ``claims``; None otherwise (or when it measures nothing)."""
    try:
        statement = _statement_of(firmware.canonical)
        measurements = pure.firmware_measurements(statement.get("predicate"))
        name = str((statement.get("subject") or [{}])[0].get("name", ""))
    except (LedgerError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # it measures nothing
    if kind not in measurements or not pure.measurement_matches(kind, measurements[kind], claims):
        return None
    return name, measurements


def _candidates(
    session: Session, kind: str, claims: Mapping[str, Any], now: int, state: Any = None, before: int | None = None
) -> list[pure.FirmwareCandidate]:
    """The matching firmware records (before entry ``before``, when given: what a deployment
    could refer to), each judged (as of ``now``) for the firmware-image grant."""
    matches = _firmware_matches(session, kind, claims, before)
    if not matches:
        return []
    conn = session.connection()
    mark = _mark(session)
    indexes = tuple(m[0] for m in matches)
    marks = ", ".join([mark] * len(indexes))
    names: dict[int, list[str]] = {}
    for idx, name in conn.exec_driver_sql(
        f"SELECT entry_idx, name FROM entry_subjects WHERE entry_idx IN ({marks}) ORDER BY entry_idx, position", indexes
    ).fetchall():
        names.setdefault(idx, []).append(name)
    signers: dict[int, list[str]] = {}
    for idx, key_id in conn.exec_driver_sql(
        f"SELECT entry_idx, key_id FROM entry_signers WHERE entry_idx IN ({marks})", indexes
    ).fetchall():
        signers.setdefault(idx, []).append(key_id)
    state = state if state is not None else load_keys(session).state()
    out = []
    for idx, integrated_time, name, measurements in matches:
        verdict = judge(
            state,
            predicate_type=FIRMWARE_IMAGE,
            subject_names=names.get(idx, []),
            key_ids=sorted(signers.get(idx, [])),
            time=integrated_time,
            as_of=now,
            index=idx,
        )
        because = None if verdict.trusted else f"{verdict.verdict}: {verdict.message() or 'no trusted signer'}"
        out.append(pure.FirmwareCandidate(idx, name, measurements, because))
    return out


def tee_state(session: Session, at: int | None = None) -> TeeState:
    """The TEE policies and collateral the admin's key events set (up to index ``at``)."""
    from ledger.services.policy import state_at  # noqa: PLC0415 - policy imports this module's users

    return state_at(session, at).tee


def _subject_digests(session: Session, index: int) -> list[tuple[str, str]]:
    mark = _mark(session)
    rows = session.connection().exec_driver_sql(
        f"SELECT algorithm, digest FROM entry_subjects WHERE entry_idx = {mark} ORDER BY position", (index,)
    ).fetchall()
    return list(dict.fromkeys((alg, digest) for alg, digest in rows))


def complete_appraisals(
    session: Session,
    prepared: Sequence[Prepared | LedgerError],
    *,
    now: int,
    tpm_roots: Sequence[bytes] | None = None,
    pending: Sequence[tuple[int, Prepared]] = (),
) -> list[Prepared | LedgerError]:
    """Appraise every prepared deployment record; the others pass through unchanged.

    ``pending``: firmware-image records (index, prepared) the sequencer is appending before these
    in the same transaction, not yet in the tables: candidates for the firmware match too.

    Args:
        session: a session for reading the firmware records and the trust state.
        prepared: what ``prepare_envelopes`` returned.
        now: the submission time (epoch seconds): certificates must be valid then.
        tpm_roots: DER of the trusted TPM CAs (default: the trust folder's).

    Returns:
        The list in the same order: a deployment that passed carries its appraisal and its
        ``firmware`` edge; one that did not is replaced by its error (MalformedError for
        evidence that does not parse, NotTrustedError naming every failed check).
    """
    results: dict[int, Prepared | LedgerError] = {}
    roots: Sequence[bytes] | None = tpm_roots
    tee: TeeState | None = None
    # 1. What each appraisal depends on, as a JSON job (run here or, for a large batch, on workers).
    jobs: list[tuple[int, Prepared, pure.Deployment, PolicyDocument, int | None, dict[str, Any]]] = []
    for position, item in enumerate(prepared):
        if isinstance(item, LedgerError) or item.predicate_type != DEPLOYMENT or item.appraisal is not None:
            continue
        try:
            statement = _statement_of(item.canonical)
            record = pure.parse_deployment(statement["predicate"], item.subjects)
        except LedgerError as exc:
            results[position] = exc
            continue
        if record.evidence_type == "tpm" and roots is None:
            roots = tpm_roots_of(session)
        if tee is None:
            tee = tee_state(session)
        policy_document, policy_index = tee.policy_document(record.environment)
        collateral = tee.tdx_collateral() if record.evidence_type == "tdx" else None
        job = tee_jobs.appraisal_job(
            record, now=now, tpm_roots=roots or () if record.evidence_type == "tpm" else (),
            policy_document=policy_document, collateral=collateral,
        )
        jobs.append((position, item, record, policy_document, policy_index, job))
    outcomes = _run_jobs(session, [j[-1] for j in jobs])
    # 2. The firmware match (reads the ledger) and the verdict, here.
    for (position, item, record, policy_document, policy_index, _), outcome in zip(jobs, outcomes, strict=True):
        try:
            appraisal, root = tee_jobs.appraisal_from_result(outcome)
            candidates = _candidates(session, record.evidence_type, appraisal.claims, now)
            if pending:
                candidates += _pending_candidates(session, pending, record.evidence_type, appraisal.claims, now)
            ok, reason, firmware = pure.match_firmware(record.evidence_type, appraisal.claims, candidates)
            if not ok and appraisal and _measured_earlier(prepared[:position], record.evidence_type, appraisal.claims):
                # every other check passed, and a record earlier in this batch measures the claims:
                # the sequencer matches it once it has an index (and judges its signers then)
                results[position] = replace(item, appraise_in_sequence=True)
                continue
            appraisal.add(pure.FIRMWARE_CHECK, ok, reason)
            assert tee is not None
            document = pure.appraisal_document(
                record, appraisal, root, appraised_at=now, firmware=firmware,
                policy=pure.policy_info(policy_document, policy_index, tee),
            )
            if document["verdict"] != "accept":
                raise NotTrustedError(pure.refusal_message(document))
        except LedgerError as exc:
            results[position] = exc
            continue
        assert firmware is not None  # an accepted appraisal passed the firmware check
        batch_firmware = dict(pending).get(firmware.index)
        digests = (
            list(dict.fromkeys((alg, digest) for alg, digest, _ in batch_firmware.subjects)) if batch_firmware is not None
            else _subject_digests(session, firmware.index)
        )
        edges = tuple(item.edges) + tuple(("firmware", alg, digest) for alg, digest in digests)
        results[position] = replace(item, appraisal=canonical_json(document).decode("utf-8"), edges=edges)
    return [results.get(position, item) for position, item in enumerate(prepared)]


def _measured_earlier(earlier: Sequence[Prepared | LedgerError], kind: str, claims: Mapping[str, Any]) -> bool:
    return any(
        isinstance(p, Prepared) and p.predicate_type == FIRMWARE_IMAGE and _measuring(p, kind, claims) is not None
        for p in earlier
    )


#: database URL → a function running appraisal jobs elsewhere (the workers), set by the web app
#: or the command line when Redis is configured; batches smaller than this stay in process
_JOB_RUNNERS: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {}
MIN_WORKER_BATCH = 16


def register_job_runner(database_url: str, runner: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None) -> None:
    """Run large batches of appraisal jobs through ``runner`` for the store at ``database_url``
    (None: in process again). The runner returns one result per job, in order, or raises
    UnavailableError, and then the batch is appraised in process (same function, same result)."""
    if runner is None:
        _JOB_RUNNERS.pop(database_url, None)
    else:
        _JOB_RUNNERS[database_url] = runner


def _run_jobs(session: Session, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runner = _JOB_RUNNERS.get(session.get_bind().url.render_as_string(hide_password=False))
    if runner is not None and len(jobs) >= MIN_WORKER_BATCH:
        try:
            results = runner(jobs)
        except UnavailableError:
            results = None
        if results is not None and len(results) == len(jobs):
            return results
    return [tee_jobs.run_appraisal_job(job) for job in jobs]


def insert_appraisals(session: Session, created: Sequence[tuple[int, Prepared]]) -> None:
    """Store the appraisal of each new deployment entry, in the entry's transaction.

    Raises:
        NotTrustedError: a deployment reached integration without an appraisal (a submission
            path that skipped ``complete_appraisals``): fail closed, the batch is rolled back.
    """
    rows = []
    for index, item in created:
        if item.predicate_type != DEPLOYMENT:
            continue
        if item.appraisal is None:
            raise NotTrustedError(
                "a deployment record reached integration without its TEE appraisal "
                "(ledger.services.deployment.complete_appraisals was not run): refused"
            )
        doc = json.loads(item.appraisal)
        root = doc.get("root") or {}
        rows.append(
            (index, doc["evidence_type"], doc["verdict"], root.get("fingerprint"), doc.get("firmware_entry"), item.appraisal)
        )
    if rows:
        mark = _mark(session)
        session.connection().exec_driver_sql(
            "INSERT INTO appraisals (entry_idx, evidence_type, verdict, root_fingerprint, firmware_idx, document) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
            rows,
        )


def appraisal_of(session: Session, index: int) -> dict[str, Any] | None:
    """The stored appraisal document of entry ``index`` (None: not a deployment entry)."""
    mark = _mark(session)
    row = session.connection().exec_driver_sql(
        f"SELECT document FROM appraisals WHERE entry_idx = {mark}", (index,)
    ).first()
    return None if row is None else json.loads(row[0])


def appraisals_of(session: Session, indexes: Sequence[int], *, rejudged: bool = True) -> dict[int, dict[str, Any]]:
    """The appraisal documents of the given entries that have one: the latest re-judged one
    (``ledger.services.reappraisal``) when there is one and ``rejudged``, else the submission's."""
    out: dict[int, dict[str, Any]] = {}
    mark = _mark(session)
    conn = session.connection()
    for start in range(0, len(indexes), CHUNK):
        chunk = tuple(indexes[start : start + CHUNK])
        marks = ", ".join([mark] * len(chunk))
        for idx, document in conn.exec_driver_sql(
            f"SELECT entry_idx, document FROM appraisals WHERE entry_idx IN ({marks})", chunk
        ).fetchall():
            out[idx] = json.loads(document)
        if rejudged:
            for idx, document in conn.exec_driver_sql(
                f"SELECT entry_idx, document FROM tee_reappraisals WHERE entry_idx IN ({marks}) ORDER BY trust_index", chunk
            ).fetchall():
                out[idx] = json.loads(document)  # ascending trust index: the latest wins
    return out

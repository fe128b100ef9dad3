"""Audit every cache of the log: each derived table and column, recomputed from the leaf bytes.

Beside the leaves, tree hashes and checkpoints, every table is a cache of the trust fold
(``ledger.trust.fold``): ``entries.predicate_type``, ``entries.key_id``,
``entries.integrated_time``, ``entry_subjects``, ``entry_edges``, ``entry_signers``,
``entry_contents`` (the duplicate identity), ``appraisals`` (one per deployment, consistent with
its entry and its matched firmware), ``trust_keys`` and ``trust_thresholds`` (the fold's state),
and ``checkpoint_cosignatures`` (each line must belong to a checkpoint the log signed). An edit of
any of them behind the ledger's back (triggers dropped, leaf bytes untouched) is named at the
first index whose derived rows differ. Integrated time must never go backwards (from the leaf
bytes, not the column).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ledger.db import store
from ledger.errors import LedgerError
from ledger.interop.sigstore import CertificateIdentity, IdentityPolicy
from ledger.records.leaf import LEAF_KIND_BUNDLE, Leaf, canonical_strings, decode_leaf
from ledger.tlog.note import Verifier, parse_note, verify_note_result
from ledger.trust.fold import LeafFacts, TrustFold, leaf_facts
from ledger.trust.keyless import identity_matches, keyless_signers
from ledger.trust.policy import IDENTITY_ALGORITHM
from ledger.trust.predicates import DEPLOYMENT, FIRMWARE_IMAGE, KEY_EVENT

__all__ = ["ENTRY_COLUMNS", "DerivedChecker", "DerivedProblem", "check_cosignatures", "check_derived", "range_checker"]

CHUNK = 2000


@dataclass(frozen=True)
class DerivedProblem:
    index: int | None
    kind: str
    message: str


def _rows_by_entry(session: Session, sql: str, start: int, end: int) -> dict[int, list[tuple[Any, ...]]]:
    out: dict[int, list[tuple[Any, ...]]] = {}
    for row in session.connection().exec_driver_sql(sql.format(start=int(start), end=int(end))).fetchall():
        out.setdefault(row[0], []).append(tuple(row[1:]))
    return out


_SUBJECTS = "SELECT entry_idx, position, algorithm, digest, name FROM entry_subjects WHERE entry_idx >= {start} AND entry_idx < {end} ORDER BY entry_idx, position"
_EDGES = "SELECT entry_idx, position, kind, algorithm, digest FROM entry_edges WHERE entry_idx >= {start} AND entry_idx < {end} ORDER BY entry_idx, position"
_SIGNERS = "SELECT entry_idx, key_id FROM entry_signers WHERE entry_idx >= {start} AND entry_idx < {end}"
_CONTENTS = "SELECT entry_idx, content_hash FROM entry_contents WHERE entry_idx >= {start} AND entry_idx < {end}"
_APPRAISALS = "SELECT entry_idx, evidence_type, verdict, root_fingerprint, firmware_idx, document FROM appraisals WHERE entry_idx >= {start} AND entry_idx < {end}"


def _legacy_envelope_hash(data: bytes) -> bytes | None:
    leaf = decode_leaf(data)
    if leaf.envelope is None:
        return None
    return hashlib.sha256(canonical_strings(leaf.envelope.document)).digest()


class DerivedChecker:
    """One pass over a range of entries, comparing each entry's derived rows with its facts."""

    def __init__(self, session: Session, fold: TrustFold | None, add: Callable[[int | None, str, str], None]) -> None:
        self.session = session
        self.fold = fold
        self.add = add
        self.firmware_subjects: dict[int, list[tuple[str, str]]] = {}
        self.last_time: int | None = None
        self.deployed: set[str] = set()
        self._fold: Any = None  # a shard's whole-log fold of the key events (_whole_fold)

    def check_chunk(self, rows: Sequence[tuple[Any, ...]], leaves: Sequence[Leaf | LedgerError] | None = None) -> None:
        """Entries ``rows`` (idx, data, predicate_type, key_id, envelope_hash, integrated_time),
        in order; ``leaves``: each one's ``decode_leaf(data)`` or the error it raised, when the
        caller has decoded them already."""
        if not rows:
            return
        start, end = rows[0][0], rows[-1][0] + 1
        subjects = _rows_by_entry(self.session, _SUBJECTS, start, end)
        edges = _rows_by_entry(self.session, _EDGES, start, end)
        signers = _rows_by_entry(self.session, _SIGNERS, start, end)
        contents = _rows_by_entry(self.session, _CONTENTS, start, end)
        appraisals = _rows_by_entry(self.session, _APPRAISALS, start, end)
        for i, (idx, data, ptype, key_id, envelope_hash, itime) in enumerate(rows):
            data = bytes(data)
            try:
                leaf = None if leaves is None else leaves[i]
                if isinstance(leaf, LedgerError):
                    raise leaf
                facts = leaf_facts(idx, data, leaf)
            except LedgerError as exc:
                self.add(idx, "derived", f"entry {idx}: its leaf bytes do not decode ({exc}); its derived rows cannot be checked")
                continue
            if self.fold is not None:
                if self.fold.size < idx:
                    self.fold.skip_to(idx, self.fold.last_time)
                before = len(self.fold.problems)
                self.fold.feed_facts(facts, data)
                for index, message in self.fold.problems[before:]:
                    kind = "integrated_time" if "integrated time" in message else "key_event"
                    self.add(index, kind, message)
            elif self.last_time is not None and facts.integrated_time < self.last_time:
                self.add(idx, "integrated_time", f"entry {idx}'s integrated time {facts.integrated_time} is before its predecessor's {self.last_time}")
            self.last_time = max(self.last_time or 0, facts.integrated_time)
            self._check_entry(facts, data, ptype, key_id, bytes(envelope_hash), itime, subjects.get(idx, []),
                              edges.get(idx, []), signers.get(idx, []), contents.get(idx, []), appraisals.get(idx, []))

    def _check_entry(self, f: LeafFacts, data: bytes, ptype: str, key_id: str, envelope_hash: bytes, itime: int,
                     subjects: list[Any], edges: list[Any], signers: list[Any], contents: list[Any], appraisals: list[Any]) -> None:
        idx = f.index
        wrong: list[str] = []
        if ptype != f.predicate_type:
            wrong.append(f"entries.predicate_type is {ptype!r}, the leaf's is {f.predicate_type!r}")
        if itime != f.integrated_time:
            wrong.append(f"entries.integrated_time is {itime}, the leaf's is {f.integrated_time}")
        if [(p, a, d, n) for p, a, d, n in subjects] != [(i, a, d, n) for i, (a, d, n) in enumerate(f.subjects)]:
            wrong.append("entry_subjects differ from the statement's subjects")
        stored_signers = {k for (k,) in signers}
        keyless = f.kind == LEAF_KIND_BUNDLE and f.identity is not None
        if keyless:
            wrong.extend(self._keyless_signers(f, stored_signers, key_id))
        else:
            if stored_signers != set(f.signers):
                wrong.append(f"entry_signers {sorted(stored_signers)} differ from the leaf's signers {sorted(f.signers)}")
            if f.signers and key_id != f.signers[0]:
                wrong.append(f"entries.key_id is {key_id}, the leaf's first signer is {f.signers[0]}")
        if [c for (c,) in contents] != [f.content_hash]:
            wrong.append("entry_contents does not hold the entry's content hash (its duplicate identity)")
        if envelope_hash != f.content_hash and envelope_hash != _legacy_envelope_hash(data):
            wrong.append("entries.envelope_hash is neither its content hash nor its envelope's hash")
        expected_edges = list(f.edges)
        self.deployed = {f"{a}:{d}" for a, d, _ in f.subjects}
        if f.predicate_type == DEPLOYMENT:
            expected_edges += self._deployment(idx, appraisals, wrong)
        elif appraisals:
            wrong.append("an appraisal is stored for an entry that is not a deployment")
        if [(k, a, d) for _, k, a, d in edges] != expected_edges or [p for p, *_ in edges] != list(range(len(edges))):
            wrong.append("entry_edges differ from the edges its statement names")
        if f.predicate_type == FIRMWARE_IMAGE:
            self.firmware_subjects[idx] = [(a, d) for a, d, _ in f.subjects]
        if f.predicate_type == KEY_EVENT and f.key_event is None and f.kind != LEAF_KIND_BUNDLE:
            wrong.append(f"its key event does not parse: {f.key_event_error}")
        if wrong:
            self.add(idx, "derived", f"entry {idx}: " + "; ".join(wrong))

    def _keyless_signers(self, f: LeafFacts, stored: set[str], key_id: str) -> list[str]:
        """entry_signers of a keyless entry, rebuilt: the identities registered before it that
        the certificate identity its leaf records (which the signature check holds to the
        certificate) matches, and whose grants counted (``ledger.trust.keyless``)."""
        idx = f.index
        out = []
        if not stored:
            out.append("entry_signers is empty for a keyless bundle")
        if key_id not in stored:
            out.append(f"entries.key_id {key_id} is not among its entry_signers")
        certified = CertificateIdentity.from_record(f.identity)
        if certified is None:
            return [*out, "its leaf's certificate identity record is malformed"]
        # the full audit's fold stands at this entry (not a key event: the state before it); a
        # shard has no fold of its own and reads the whole log's key events once
        state = self.fold.state if self.fold is not None else self._whole_fold().state_at(idx - 1)
        matched, _ = identity_matches(state, certified, before=idx)
        for k in sorted(stored):
            identity = state.keys.get(k)
            if identity is None or identity.algorithm != IDENTITY_ALGORITHM or identity.registered_index >= idx:
                out.append(f"entry_signers names {k}, which is not an identity registered before entry {idx}")
            elif k not in matched:
                pinned = identity.identity
                assert pinned is not None
                reason = IdentityPolicy(pinned.san, pinned.issuer, pinned.source_repository).result_for(certified).reason
                out.append(f"entry_signers names identity {k}, which its certificate does not match: {reason}")
        if not out:
            expected = set(keyless_signers(
                state, f.identity, predicate_type=f.predicate_type, subject_names=[n for _, _, n in f.subjects],
                time=f.integrated_time, index=idx,
            ))
            if stored != expected:
                out.append(f"entry_signers {sorted(stored)} are not the identities its certificate matched whose grants "
                           f"counted {sorted(expected)}")
        return out

    def _whole_fold(self) -> Any:
        if self._fold is None:
            from ledger.services.policy import fold_key_events  # noqa: PLC0415 - policy imports this module's neighbours

            self._fold = fold_key_events(self.session)
        return self._fold

    def _deployment(self, idx: int, appraisals: list[Any], wrong: list[str]) -> list[tuple[str, str, str]]:
        if len(appraisals) != 1:
            wrong.append("a deployment entry has no stored appraisal")
            return []
        evidence_type, verdict, fingerprint, firmware_idx, document = appraisals[0]
        try:
            doc = json.loads(document)
        except ValueError:
            wrong.append("its appraisal document is not JSON")
            return []
        root = doc.get("root") or {}
        if (
            doc.get("verdict") != verdict or verdict != "accept" or doc.get("evidence_type") != evidence_type
            or root.get("fingerprint") != fingerprint
        ):
            wrong.append("its appraisals row disagrees with its appraisal document (verdict, evidence type or root)")
        if doc.get("firmware_entry") != firmware_idx:
            wrong.append(f"appraisals.firmware_idx is {firmware_idx}, its document names entry {doc.get('firmware_entry')}")
        if doc.get("artifact") not in self.deployed:
            wrong.append(f"its appraisal document is about {doc.get('artifact')}, not the deployment's subject")
        if firmware_idx is None:
            return []
        subjects = self.firmware_subjects.get(firmware_idx)
        if subjects is None and self.fold is None and firmware_idx < idx:
            subjects = self._firmware_before(firmware_idx)  # a shard: the firmware is in an earlier one
        if subjects is None:
            wrong.append(f"its appraisal names entry {firmware_idx}, which is not an earlier firmware image")
            return []
        return [("firmware", a, d) for a, d in subjects]

    def _firmware_before(self, index: int) -> list[tuple[str, str]] | None:
        data = self.session.connection().exec_driver_sql(f"SELECT data FROM entries WHERE idx = {int(index)}").scalar()
        if data is None:
            return None
        try:
            facts = leaf_facts(index, bytes(data))
        except LedgerError:
            return None
        if facts.predicate_type != FIRMWARE_IMAGE:
            return None
        self.firmware_subjects[index] = [(a, d) for a, d, _ in facts.subjects]
        return self.firmware_subjects[index]


def _entries(session: Session, start: int, end: int | None) -> Iterator[list[tuple[Any, ...]]]:
    return store.stream_chunks(session, "entries", ENTRY_COLUMNS, start=start, end=end, chunk=CHUNK)


#: the entry columns a derived-row check reads (``DerivedChecker.check_chunk``)
ENTRY_COLUMNS = ("idx", "data", "predicate_type", "key_id", "envelope_hash", "integrated_time")


def range_checker(session: Session, start: int, add: Callable[[int | None, str, str], None]) -> DerivedChecker:
    """A checker of the per-entry derived rows from entry ``start`` on (a worker's shard; no
    trust fold): feed it the shard's entries in order with ``check_chunk``."""
    checker = DerivedChecker(session, None, add)
    if start > 0:  # integrated time across the shard boundary, from the previous leaf's bytes
        data = session.connection().exec_driver_sql(f"SELECT data FROM entries WHERE idx = {int(start) - 1}").scalar()
        try:
            checker.last_time = leaf_facts(start - 1, bytes(data)).integrated_time if data is not None else None
        except LedgerError:
            checker.last_time = None
    return checker


def check_derived(session: Session, add: Callable[[int | None, str, str], None]) -> TrustFold:
    """Every derived row of every entry, and the trust fold from scratch (whose state the trust
    tables must equal: ``ledger.services.policy.compare_trust_tables``). Returns the fold."""
    from ledger.services.policy import root_der  # noqa: PLC0415

    fold = TrustFold(root_der(session))
    checker = DerivedChecker(session, fold, add)
    for rows in _entries(session, 0, None):
        checker.check_chunk(rows)
    check_cosignatures(session, add)
    return fold


def check_cosignatures(
    session: Session, add: Callable[[int | None, str, str], None], witnesses: Sequence[Verifier] | None = None
) -> None:
    """Each stored cosignature belongs to a checkpoint the log signed, names its witness, and,
    where that witness's key is known, verifies with it over that checkpoint's text.

    ``witnesses`` are the witness keys to re-verify with; by default the ones configured for this
    ledger (``PROVLEDGER_WITNESS_URLS``, ``ledger.services.cosign``). A line by a witness that is
    not among them (one configured once and since dropped) is checked for its shape only: nothing
    here could verify it.
    """
    if witnesses is None:
        from ledger.services.cosign import witness_config_from_env  # noqa: PLC0415 - cosign imports the store's neighbours

        config = witness_config_from_env()
        witnesses = [] if config is None else [w.verifier for w in config.witnesses]
    known = {(v.name, f"{v.key_id:08x}"): v for v in witnesses}
    rows = session.connection().exec_driver_sql(
        "SELECT c.tree_size, c.witness, c.key_id, c.line, k.note FROM checkpoint_cosignatures c "
        "LEFT JOIN checkpoints k ON k.tree_size = c.tree_size ORDER BY c.tree_size"
    ).fetchall()
    for tree_size, witness, key_id, line, note in rows:
        index = max(int(tree_size) - 1, 0)
        if note is None:
            add(index, "derived", f"a cosignature by {witness} names checkpoint {tree_size}, which the log never signed")
            continue
        parts = str(line).split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != witness:
            add(index, "derived", f"the cosignature of checkpoint {tree_size} by {witness} is not that witness's signature line")
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            add(index, "derived", f"the cosignature of checkpoint {tree_size} by {witness} is not base64")
            continue
        if blob[:4].hex() != key_id:
            add(index, "derived", f"the cosignature index of checkpoint {tree_size} by {witness} names key {key_id}, its line {blob[:4].hex()}")
            continue
        verifier = known.get((witness, key_id))
        if verifier is not None and not _cosignature_verifies(str(note), str(line), verifier):
            add(index, "cosignature", f"the cosignature of checkpoint {tree_size} by {witness}+{key_id} does not verify with that witness's key")


def _cosignature_verifies(note: str, line: str, verifier: Verifier) -> bool:
    """Whether ``line`` is ``verifier``'s valid signature over the text of checkpoint ``note``."""
    try:
        return verify_note_result(parse_note(note).text + "\n" + line + "\n", [verifier]).ok
    except (LedgerError, ValueError):
        return False

"""SQLAlchemy 2 models of the store.

Append-only tables (``entries``, ``entry_subjects``, ``tree_hashes``, ``checkpoints``) are guarded
by database triggers that refuse UPDATE and DELETE (see the first Alembic migration). The one
mutable row of the log is ``sequencer``: the lock that every appender takes, in every process.

``tree_hashes`` keeps the hash of every complete subtree above the leaves, keyed by the order in
which appends create them (``ledger.db.store.stored_position``), so appending is a pure append
and an audit reads entries and interior hashes as two ordered streams.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AdminSession",
    "ApiToken",
    "Base",
    "CheckpointCosignature",
    "DeploymentAppraisal",
    "EntryContent",
    "EntryEdge",
    "EntrySigner",
    "TrustKey",
    "TrustRoot",
    "TrustThreshold",
    "Checkpoint",
    "Entry",
    "EntrySubject",
    "LogInfo",
    "Sequencer",
    "SignerKey",
    "TreeHash",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class LogInfo(Base):
    """The log's identity, fixed at ``init``: a store never changes origin or key silently."""

    __tablename__ = "log_info"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(255))
    vkey: Mapped[str] = mapped_column(String(512))


class Sequencer(Base):
    """The single lock row appenders serialise on (SELECT … FOR UPDATE / BEGIN IMMEDIATE)."""

    __tablename__ = "sequencer"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class Entry(Base):
    __tablename__ = "entries"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    envelope_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    integrated_time: Mapped[int] = mapped_column(BigInteger)
    predicate_type: Mapped[str] = mapped_column(String(512))
    key_id: Mapped[str] = mapped_column(String(64), index=True)

    __table_args__ = (Index("ix_entries_predicate_type_idx", "predicate_type", "idx"),)


class EntrySubject(Base):
    __tablename__ = "entry_subjects"
    entry_idx: Mapped[int] = mapped_column(ForeignKey("entries.idx"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_entry_subjects_digest", "algorithm", "digest", "entry_idx"),
        Index("ix_entry_subjects_name", "name", "entry_idx"),
    )


class TreeHash(Base):
    __tablename__ = "tree_hashes"
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[int] = mapped_column(BigInteger)


class SignerKey(Base):
    __tablename__ = "signer_keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    algorithm: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: JSON list of predicate-type glob patterns this key may sign
    allow: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AdminSession(Base):
    """A server-side admin login (``ledger.services.sessions``): only the id's SHA-256 is stored."""

    __tablename__ = "admin_sessions"
    id_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    ended_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AuditRun(Base):
    """One audit of the ledger as it stood at ``tree_size``, run shard by shard on the workers.

    Not append-only: its state, progress and result change as the run goes. ``vkey`` and
    ``origin`` are the log identity the requester expects, so that workers verify checkpoints
    without holding the log's private key.
    """

    __tablename__ = "audits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: queued | running | done | failed
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: who asked: api | cli | schedule
    source: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    shard_level: Mapped[int] = mapped_column(Integer)
    shard_count: Mapped[int] = mapped_column(Integer)
    #: entries re-measured so far (the sum of the shards' progress)
    progress: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(String(255))
    vkey: Mapped[str] = mapped_column(String(512))
    #: the report as JSON (the shape of ``provledger audit --json`` plus "shard"), once done
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: why the run itself failed (not what it found), once failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditShard(Base):
    """One complete subtree of an audit: leaves [start_index, end_index), 2**level of them."""

    __tablename__ = "audit_shards"
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    level: Mapped[int] = mapped_column(Integer)
    start_index: Mapped[int] = mapped_column(BigInteger)
    end_index: Mapped[int] = mapped_column(BigInteger)
    #: pending | done
    state: Mapped[str] = mapped_column(String(16))
    #: how many times a worker started it (more than 1: it was redelivered or retried)
    attempts: Mapped[int] = mapped_column(Integer)
    progress: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


# ------------------------------------------------------------------------------ provenance (issue 3)


class EntryEdge(Base):
    """What an entry depends on, by digest (build inputs, SBOM components, part children, …).

    Append-only, written with the entry in the same transaction: chain walks are indexed
    lookups. ``kind`` is one of ``ledger.trust.graph.EDGE_KINDS``.
    """

    __tablename__ = "entry_edges"
    entry_idx: Mapped[int] = mapped_column(ForeignKey("entries.idx"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(256))

    __table_args__ = (Index("ix_entry_edges_digest", "algorithm", "digest", "entry_idx"),)


class EntryContent(Base):
    """Each entry's duplicate identity: its signed content and the keys whose signatures verify
    (``ledger.trust.fold.content_hash``; append-only, migration 0008)."""

    __tablename__ = "entry_contents"
    entry_idx: Mapped[int] = mapped_column(ForeignKey("entries.idx"), primary_key=True, autoincrement=False)
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (Index("ix_entry_contents_content_hash", "content_hash", "entry_idx"),)


class EntrySigner(Base):
    """Every key the ledger verified an entry's signatures with (append-only)."""

    __tablename__ = "entry_signers"
    entry_idx: Mapped[int] = mapped_column(ForeignKey("entries.idx"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_entry_signers_key_id", "key_id", "entry_idx"),)


class TrustRoot(Base):
    """The ledger's root of trust: the administrator key that signs key events (set at init)."""

    __tablename__ = "trust_root"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)


class TrustKey(Base):
    """A signer key as the key-event entries left it (materialised; audit recomputes it)."""

    __tablename__ = "trust_keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal: Mapped[str] = mapped_column(String(255), index=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: JSON list of grants (``ledger.trust.policy.Grant.to_json``, epoch seconds)
    grants: Mapped[str] = mapped_column(Text)
    registered_index: Mapped[int] = mapped_column(BigInteger)
    registered_at: Mapped[int] = mapped_column(BigInteger)
    last_event_index: Mapped[int] = mapped_column(BigInteger)
    revoked_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    compromised_since: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    replaced_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    retired_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    replaces: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TrustThreshold(Base):
    """How many distinct principals must sign a predicate type (materialised from key events)."""

    __tablename__ = "trust_thresholds"
    pattern: Mapped[str] = mapped_column(String(512), primary_key=True)
    threshold: Mapped[int] = mapped_column(Integer)
    set_index: Mapped[int] = mapped_column(BigInteger)


# ------------------------------------------------------------------------------ witness cosignatures (issue 7)


class CheckpointCosignature(Base):
    """A witness's cosignature of one of the log's checkpoints (append-only; migration 0004).

    ``line`` is the signature line as the witness sent it (``— <name> <base64>``, no newline),
    stored only after it verified with the configured witness key over that checkpoint's text.
    Key ids are scoped by key name (C2SP signed-note), so one witness's cosignature of a
    checkpoint is identified by (tree_size, witness, key_id).
    """

    __tablename__ = "checkpoint_cosignatures"
    tree_size: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("checkpoints.tree_size"), primary_key=True, autoincrement=False
    )
    #: the witness's key name (its name in the signature line)
    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: the 4-byte signed-note key id, 8 lowercase hex digits
    key_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_checkpoint_cosignatures_witness", "witness", "key_id", "tree_size"),
    )


# ------------------------------------------------------------------------------ TEE appraisals (issue 5)


class DeploymentAppraisal(Base):
    """The appraisal a deployment entry passed when it was accepted (append-only; migration 0006).

    ``document`` is the EAR-like JSON of ``ledger.trust.deployment.appraisal_document``:
    verdict, every check with ``ok`` and ``reason``, the claims, the vendor root and the matched
    firmware entry. Written in the entry's transaction, never changed.
    """

    __tablename__ = "appraisals"
    entry_idx: Mapped[int] = mapped_column(ForeignKey("entries.idx"), primary_key=True, autoincrement=False)
    evidence_type: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    root_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    firmware_idx: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    document: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_appraisals_firmware_idx", "firmware_idx"),)


class TeeReappraisal(Base):
    """A deployment's appraisal re-run under the trust state after key event ``trust_index``
    (migration 0007): a cache that ``ledger.services.reappraisal`` writes and audit rebuilds."""

    __tablename__ = "tee_reappraisals"
    entry_idx: Mapped[int] = mapped_column(ForeignKey("entries.idx"), primary_key=True, autoincrement=False)
    trust_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    verdict: Mapped[str] = mapped_column(String(16))
    document: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_tee_reappraisals_trust_index", "trust_index"),)

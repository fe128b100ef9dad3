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
    "ApiToken",
    "Base",
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
    predicate_type: Mapped[str] = mapped_column(String(512), index=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)


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

"""A submission is its signed content (issue 12): the duplicate identity of every entry.

``entry_contents`` maps each entry to its content hash: for a DSSE leaf, SHA-256 of
``"provledger-content/v1\\n" || payloadType || "\\n" || hex(SHA-256(payload)) || "\\n" ||
",".join(sorted key ids of the leaf's signers)`` — the signed content and the set of keys whose
signatures verify, never keyid hints; for a Sigstore-bundle leaf, the SHA-256 of the bundle's
RFC 8785 bytes (the ``envelope_hash`` it was stored with). Append-only; existing entries are
backfilled from their leaf bytes (entries that were appended twice under different keyid hints
share one content hash: a later resubmission returns the first one's receipt).

Key events that commit to their predecessor (``prev``) need no schema change: they are checked
against the fold of the log. Events of older ledgers carry no ``prev`` and stay valid as the
history before the first event that does.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import base64
import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APPEND_ONLY = ("entry_contents",)
DOMAIN = b"provledger-content/v1\n"


def _content_hash(data: bytes, envelope_hash: bytes) -> bytes:
    doc = json.loads(data)
    if doc.get("kind") != "dsse":
        return bytes(envelope_hash)
    envelope = doc["envelope"]
    payload = base64.b64decode(envelope["payload"])
    # a signer's key id is the SHA-256 of its DER SPKI (later leaves leave the key_id member out)
    key_ids = sorted({s.get("key_id") or hashlib.sha256(base64.b64decode(s["public_key"])).hexdigest() for s in doc.get("signers") or ()})
    text = b"".join(
        (
            DOMAIN,
            envelope["payloadType"].encode("utf-8"),
            b"\n",
            hashlib.sha256(payload).hexdigest().encode("ascii"),
            b"\n",
            ",".join(key_ids).encode("ascii"),
        )
    )
    return hashlib.sha256(text).digest()


def upgrade() -> None:
    op.create_table(
        "entry_contents",
        sa.Column(
            "entry_idx",
            sa.BigInteger,
            sa.ForeignKey("entries.idx", name="fk_entry_contents_entry_idx_entries"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("content_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_entry_contents_content_hash", "entry_contents", ["content_hash", "entry_idx"])
    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT idx, data, envelope_hash FROM entries WHERE idx > :after ORDER BY idx LIMIT 2000"),
            {"after": after},
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text("INSERT INTO entry_contents (entry_idx, content_hash) VALUES (:idx, :h)"),
            [{"idx": idx, "h": _content_hash(bytes(data), bytes(eh))} for idx, data, eh in rows],
        )
        after = rows[-1][0]
    _install_append_only_triggers()


def _install_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )
        elif dialect == "postgresql":
            # provledger_refuse_change() is the function of the first migration
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION provledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION provledger_refuse_change()"
            )
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise RuntimeError(f"unsupported database {dialect}: append-only triggers need SQLite or PostgreSQL")


def downgrade() -> None:
    op.drop_table("entry_contents")

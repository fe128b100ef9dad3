"""Provenance and trust: entry edges and signers (append-only), the root of trust, and the
materialised trust state (keys, grants, thresholds) that key-event entries build.

Entries appended before this revision get their edges and signers back-filled from their leaf
data. Keys registered in the old ``signer_keys`` table are not carried over: trust now comes
only from key-event entries signed by the administrator key (fail closed) — register them
again with ``provledger keys add``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import base64
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("entry_edges", "entry_signers")
BACKFILL_CHUNK = 2000


def upgrade() -> None:
    op.create_table(
        "entry_edges",
        sa.Column("entry_idx", sa.BigInteger, sa.ForeignKey("entries.idx", name="fk_entry_edges_entry_idx_entries"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(256), nullable=False),
    )
    op.create_index("ix_entry_edges_digest", "entry_edges", ["algorithm", "digest", "entry_idx"])
    op.create_table(
        "entry_signers",
        sa.Column("entry_idx", sa.BigInteger, sa.ForeignKey("entries.idx", name="fk_entry_signers_entry_idx_entries"), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_entry_signers_key_id", "entry_signers", ["key_id", "entry_idx"])
    op.create_table(
        "trust_root",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "trust_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("principal", sa.String(255), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("grants", sa.Text, nullable=False),
        sa.Column("registered_index", sa.BigInteger, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
        sa.Column("last_event_index", sa.BigInteger, nullable=False),
        sa.Column("revoked_index", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("compromised_since", sa.BigInteger, nullable=True),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("retired_at", sa.BigInteger, nullable=True),
        sa.Column("replaces", sa.String(64), nullable=True),
    )
    op.create_index("ix_trust_keys_principal", "trust_keys", ["principal"])
    op.create_table(
        "trust_thresholds",
        sa.Column("pattern", sa.String(512), primary_key=True),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("set_index", sa.BigInteger, nullable=False),
    )
    _backfill()
    _install_append_only_triggers()


def _backfill() -> None:
    """Edges and signers of the entries appended before this revision."""
    from ledger.provenance.graph import edges_of  # noqa: PLC0415

    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT idx, data FROM entries WHERE idx > :after ORDER BY idx LIMIT :n"),
            {"after": after, "n": BACKFILL_CHUNK},
        ).all()
        if not rows:
            return
        edges, signers = [], []
        for idx, data in rows:
            leaf = json.loads(bytes(data))
            for s in leaf.get("signers") or ():
                signers.append({"entry_idx": idx, "key_id": s["key_id"]})
            try:
                statement = json.loads(base64.b64decode(leaf["envelope"]["payload"]))
                subjects = [(a, v) for s in statement.get("subject", []) for a, v in (s.get("digest") or {}).items()]
                found = edges_of(statement.get("predicateType", ""), statement.get("predicate"), subjects)
            except (ValueError, KeyError, TypeError, AttributeError):
                found = ()
            edges.extend(
                {"entry_idx": idx, "position": i, "kind": k, "algorithm": a, "digest": d}
                for i, (k, a, d) in enumerate(found)
            )
        if signers:
            conn.execute(sa.text("INSERT INTO entry_signers (entry_idx, key_id) VALUES (:entry_idx, :key_id)"), signers)
        if edges:
            conn.execute(
                sa.text(
                    "INSERT INTO entry_edges (entry_idx, position, kind, algorithm, digest) "
                    "VALUES (:entry_idx, :position, :kind, :algorithm, :digest)"
                ),
                edges,
            )
        after = rows[-1][0]


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
        else:  # pragma: no cover
            raise RuntimeError(f"unsupported database {dialect}")


def downgrade() -> None:
    # Everything here is derived from the entries (which stay): an upgrade rebuilds edges and
    # signers; the trust state must then be re-registered (the key events are still entries).
    for table in ("trust_thresholds", "trust_keys", "trust_root", "entry_signers", "entry_edges"):
        op.drop_table(table)

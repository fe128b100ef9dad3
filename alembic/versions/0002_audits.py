"""Audit runs for the Celery workers: ``audits`` and their ``audit_shards``.

Unlike the ledger's own tables these are mutable (state, progress, result): they record the
work of re-measuring the ledger, not the ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("shard_level", sa.Integer, nullable=False),
        sa.Column("shard_count", sa.Integer, nullable=False),
        sa.Column("progress", sa.BigInteger, nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("vkey", sa.String(512), nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_audits_state", "audits", ["state"])
    op.create_table(
        "audit_shards",
        sa.Column(
            "audit_id",
            sa.Integer,
            sa.ForeignKey("audits.id", name="fk_audit_shards_audit_id_audits"),
            primary_key=True,
        ),
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("start_index", sa.BigInteger, nullable=False),
        sa.Column("end_index", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("progress", sa.BigInteger, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_shards")
    op.drop_index("ix_audits_state", table_name="audits")
    op.drop_table("audits")

"""Witness cosignatures of the log's checkpoints (c2sp.org/tlog-cosignature), append-only.

A row is one witness key's cosignature line for one checkpoint, stored only after it verified.
Checkpoints are served with their stored cosignatures merged in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APPEND_ONLY = ("checkpoint_cosignatures",)


def upgrade() -> None:
    op.create_table(
        "checkpoint_cosignatures",
        sa.Column(
            "tree_size",
            sa.BigInteger,
            sa.ForeignKey("checkpoints.tree_size", name="fk_checkpoint_cosignatures_tree_size_checkpoints"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("witness", sa.String(255), primary_key=True),
        sa.Column("key_id", sa.String(8), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_checkpoint_cosignatures_witness", "checkpoint_cosignatures", ["witness", "key_id", "tree_size"]
    )
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
    # The cosignatures already served live on in the receipts that carry them; the witnesses
    # cosign the latest checkpoint again after an upgrade. Older ones are not collected again.
    op.drop_table("checkpoint_cosignatures")

"""TEE appraisals of deployment records (issue 5), append-only.

A row is the appraisal a deployment entry passed when it was accepted: the EAR-like JSON document
(verdict, every check with its reason, the claims read from the evidence), the vendor root its
evidence verified to, and the firmware-image entry its measurement matched. It is written in the
entry's own transaction and never changes (the evidence was appraised at its submission time).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY = ("appraisals",)


def upgrade() -> None:
    op.create_table(
        "appraisals",
        sa.Column(
            "entry_idx",
            sa.BigInteger,
            sa.ForeignKey("entries.idx", name="fk_appraisals_entry_idx_entries"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("evidence_type", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("root_fingerprint", sa.String(64), nullable=True),
        sa.Column("firmware_idx", sa.BigInteger, nullable=True),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_index("ix_appraisals_firmware_idx", "appraisals", ["firmware_idx"])
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
    # The deployments stay as entries; their appraisals cannot be recomputed later (certificates
    # expire, the trust state moves on), so a downgrade loses them.
    op.drop_table("appraisals")

"""Re-judged TEE appraisals (issue 14): a cache, rebuilt from the log.

A row is the appraisal of a deployment entry re-run under the trust state after key event
``trust_index`` (the TEE policy of its environment, the TDX collateral, the keys): the same
EAR-like document as ``appraisals``. Rows are a function of the log (``audit`` can rebuild and
compare them); they are only ever added.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tee_reappraisals",
        sa.Column("entry_idx", sa.BigInteger, sa.ForeignKey("entries.idx", name="fk_tee_reappraisals_entry_idx_entries"),
                  primary_key=True, autoincrement=False),
        sa.Column("trust_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_index("ix_tee_reappraisals_trust_index", "tee_reappraisals", ["trust_index"])


def downgrade() -> None:
    op.drop_index("ix_tee_reappraisals_trust_index", table_name="tee_reappraisals")
    op.drop_table("tee_reappraisals")

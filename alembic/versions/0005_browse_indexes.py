"""Browse indexes: entries by predicate type in index order (keyset search pages).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_entries_predicate_type_idx", "entries", ["predicate_type", "idx"])
    op.drop_index("ix_entries_predicate_type", table_name="entries")


def downgrade() -> None:
    op.create_index("ix_entries_predicate_type", "entries", ["predicate_type"])
    op.drop_index("ix_entries_predicate_type_idx", table_name="entries")

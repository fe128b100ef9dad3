"""Server-side admin sessions; API tokens that can be revoked and show when they were last used.

An admin login stores a row here: the SHA-256 of the session id (the browser holds the id in
its signed cookie), the admin token it was opened with, and its expiry. Logout or expiry ends
it; revoking the token ends it too (checked on every request).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("last_used_at", sa.BigInteger, nullable=True))
    op.add_column("api_tokens", sa.Column("revoked_at", sa.BigInteger, nullable=True))
    op.create_table(
        "admin_sessions",
        sa.Column("id_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column(
            "token_id",
            sa.Integer,
            sa.ForeignKey("api_tokens.id", name="fk_admin_sessions_token_id_api_tokens"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_admin_sessions_token_id", "admin_sessions", ["token_id"])


def downgrade() -> None:
    op.drop_index("ix_admin_sessions_token_id", table_name="admin_sessions")
    op.drop_table("admin_sessions")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")

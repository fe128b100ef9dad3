"""The ledger core: entries, subjects, interior hashes, checkpoints, sequencer, keys, tokens.

Append-only tables get triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL):
the database enforces what the code promises.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("entries", "entry_subjects", "tree_hashes", "checkpoints")


def upgrade() -> None:
    op.create_table(
        "log_info",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("vkey", sa.String(512), nullable=False),
    )
    op.create_table(
        "sequencer",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO sequencer (id, size) VALUES (1, 0)")
    op.create_table(
        "entries",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("envelope_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("integrated_time", sa.BigInteger, nullable=False),
        sa.Column("predicate_type", sa.String(512), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.UniqueConstraint("envelope_hash", name="uq_entries_envelope_hash"),
    )
    op.create_index("ix_entries_predicate_type", "entries", ["predicate_type"])
    op.create_index("ix_entries_key_id", "entries", ["key_id"])
    op.create_table(
        "entry_subjects",
        sa.Column("entry_idx", sa.BigInteger, sa.ForeignKey("entries.idx", name="fk_entry_subjects_entry_idx_entries"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("algorithm", sa.String(32), primary_key=True),
        sa.Column("digest", sa.String(256), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_index("ix_entry_subjects_digest", "entry_subjects", ["algorithm", "digest", "entry_idx"])
    op.create_index("ix_entry_subjects_name", "entry_subjects", ["name", "entry_idx"])
    op.create_table(
        "tree_hashes",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "signer_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("allow", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    _install_append_only_triggers()


def _install_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION provledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        for table in APPEND_ONLY:
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
    raise RuntimeError("the ledger's first migration cannot be undone: the log is append-only")

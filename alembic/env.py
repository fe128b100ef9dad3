"""Alembic environment: migrations target ledger.db.models' metadata.

The URL comes from the Alembic config (``provledger init`` sets it) or PROVLEDGER_DATABASE_URL.
"""

from __future__ import annotations

from alembic import context

from ledger.config import Settings
from ledger.db.engine import make_engine
from ledger.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()

"""Alembic environment: runs against the engine the application hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from idp_mcp.store.tables import metadata

config = context.config
engine: Engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas (or workers) starting together on one database: one migrates, the others wait here and
            # then find the schema up to date. The lock ends with the transaction.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7311235880)")
        context.run_migrations()
    connection.commit()

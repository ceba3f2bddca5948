"""The suite runs on SQLite (default) or PostgreSQL: ``IDP_MCP_TEST_DB=postgresql``.

On PostgreSQL each test gets a schema of its own in the ``test`` database, selected through ``search_path``,
so tests never see each other's rows and nothing is mocked.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

DB_KIND = os.environ.get("IDP_MCP_TEST_DB", "sqlite")
PG_URL = os.environ.get("IDP_MCP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_database_url(directory: Path) -> Iterator[str]:
    if DB_KIND == "sqlite":
        yield f"sqlite:///{directory / 'idp-mcp.db'}"
        return
    if DB_KIND != "postgresql":
        raise RuntimeError(f"IDP_MCP_TEST_DB must be sqlite or postgresql, not {DB_KIND!r}")
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

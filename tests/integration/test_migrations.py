"""Migrations: a fresh database reaches the head, an older one is upgraded, and an up-to-date one starts without
importing Alembic (its import costs ~0.1 s and ~9 MB of every start)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from idp_mcp.store.db import Database, alembic_config, create_db_engine, head_revisions, stored_revisions


def _database(url: str) -> Database:
    return Database(create_db_engine(url))


def test_the_head_read_from_the_scripts_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(alembic_config(create_db_engine("sqlite://")))

    assert head_revisions() == frozenset(script.get_heads())


def test_the_migrations_form_one_line() -> None:
    # Two revisions on one parent (work merged from two branches) would leave two heads and an order no one chose.
    script = ScriptDirectory.from_config(alembic_config(create_db_engine("sqlite://")))

    assert len(script.get_heads()) == 1, script.get_heads()


def test_a_fresh_database_is_migrated_to_the_head(database_url: str) -> None:
    db = _database(database_url)
    try:
        assert stored_revisions(db.engine) is None

        db.migrate()

        assert stored_revisions(db.engine) == head_revisions()
        assert inspect(db.engine).has_table("rate_limit_counters")
    finally:
        db.dispose()


def test_a_database_at_an_older_revision_is_upgraded(database_url: str) -> None:
    db = _database(database_url)
    try:
        command.upgrade(alembic_config(db.engine), "0003")
        assert stored_revisions(db.engine) == {"0003"}
        assert not inspect(db.engine).has_table("rate_limit_counters")

        db.migrate()

        assert stored_revisions(db.engine) == head_revisions()
        assert inspect(db.engine).has_table("rate_limit_counters")
    finally:
        db.dispose()


def test_migrating_an_up_to_date_database_again_changes_nothing(database_url: str) -> None:
    db = _database(database_url)
    try:
        db.migrate()
        db.migrate()

        assert stored_revisions(db.engine) == head_revisions()
    finally:
        db.dispose()


def test_an_up_to_date_database_starts_without_importing_alembic(database_url: str, tmp_path: Path) -> None:
    db = _database(database_url)
    db.migrate()
    db.dispose()
    program = textwrap.dedent(
        """
        import sys
        from idp_mcp.app import create_app
        app = create_app()
        app.state.core.close()
        print(sorted(name for name in sys.modules if name.split(".")[0] in ("alembic", "mako")))
        """
    )
    env = {**os.environ, "IDP_MCP_DATABASE_URL": database_url, "IDP_MCP_DATA_DIR": str(tmp_path)}

    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_fresh_database_started_through_the_app_is_migrated(database_url: str, tmp_path: Path) -> None:
    program = "from idp_mcp.app import create_app; create_app().state.core.close()"
    env = {**os.environ, "IDP_MCP_DATABASE_URL": database_url, "IDP_MCP_DATA_DIR": str(tmp_path)}

    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    db = _database(database_url)
    try:
        assert stored_revisions(db.engine) == head_revisions()
    finally:
        db.dispose()

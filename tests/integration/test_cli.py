"""The command line: migrate, admin create, tenant create (exit codes and messages a script relies on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp_mcp.cli import main


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> None:
    monkeypatch.setenv("IDP_MCP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IDP_MCP_DATABASE_URL", database_url)


def test_migrate_brings_an_empty_database_up_to_date_and_is_repeatable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_admin_create_succeeds_once_then_refuses_a_duplicate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create", "--email", "Ada@Example.com", "--password", "a long passphrase"]) == 0
    assert "administrator ada@example.com created" in capsys.readouterr().out

    assert main(["admin", "create", "--email", "ada@example.com", "--password", "another passphrase"]) == 1
    assert "exists already" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("password", "message"),
    [("short", "at least 8 characters"), ("password123", "common password")],
)
def test_admin_create_refuses_a_weak_password_with_what_to_change(
    capsys: pytest.CaptureFixture[str], password: str, message: str
) -> None:
    assert main(["admin", "create", "--email", "ada@example.com", "--password", password]) == 1
    assert message in capsys.readouterr().err


def test_admin_create_refuses_an_invalid_email(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create", "--email", "not-an-email", "--password", "a long passphrase"]) == 1
    assert "not a valid email" in capsys.readouterr().err


def test_tenant_create_needs_an_existing_administrator_and_a_valid_new_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "ada@example.com"]) == 1
    assert "no administrator" in capsys.readouterr().err

    assert main(["admin", "create", "--email", "ada@example.com", "--password", "a long passphrase"]) == 0
    assert main(["tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "ada@example.com"]) == 0
    assert "tenant acme (Acme) created" in capsys.readouterr().out

    assert main(["tenant", "create", "--id", "acme", "--name", "Again", "--admin", "ada@example.com"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["tenant", "create", "--id", "Bad Id", "--name", "X", "--admin", "ada@example.com"]) == 1
    assert "lowercase letters" in capsys.readouterr().err
    assert main(["tenant", "create", "--id", "admin", "--name", "X", "--admin", "ada@example.com"]) == 1

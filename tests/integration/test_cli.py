"""The command line: migrate, admin create, tenant create, tenant add-member (exit codes and messages a script relies
on, and which tenant and role an administrator gets)."""

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
    assert "administrator ada@example.com created: owner of tenant default" in capsys.readouterr().out

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
    assert "tenant acme (Acme) created, administered by ada@example.com (role owner)" in capsys.readouterr().out

    assert main(["tenant", "create", "--id", "acme", "--name", "Again", "--admin", "ada@example.com"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["tenant", "create", "--id", "Bad Id", "--name", "X", "--admin", "ada@example.com"]) == 1
    assert "lowercase letters" in capsys.readouterr().err
    assert main(["tenant", "create", "--id", "admin", "--name", "X", "--admin", "ada@example.com"]) == 1


def test_a_later_administrator_belongs_to_no_tenant_until_added_and_the_output_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["admin", "create", "--email", "ada@example.com", "--password", "a long passphrase"]) == 0
    capsys.readouterr()

    assert main(["admin", "create", "--email", "bob@example.com", "--password", "a long passphrase"]) == 0
    out = capsys.readouterr().out
    assert "administrator bob@example.com created: a member of no tenant yet" in out
    assert "idp-mcp tenant add-member --tenant <id> --admin bob@example.com --role admin" in out

    assert main(["tenant", "add-member", "--tenant", "default", "--admin", "bob@example.com", "--role", "admin"]) == 0
    assert "bob@example.com is admin of tenant default" in capsys.readouterr().out
    args = ["tenant", "add-member", "--tenant", "default", "--admin", "bob@example.com", "--role", "read-only"]
    assert main(args) == 0
    assert "bob@example.com is read-only of tenant default (was admin)" in capsys.readouterr().out


def test_admin_create_into_a_tenant_with_a_role(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create", "--email", "ada@example.com", "--password", "a long passphrase"]) == 0
    assert main(["tenant", "create", "--id", "acme", "--name", "Acme", "--admin", "ada@example.com"]) == 0
    capsys.readouterr()

    args = ["--email", "cy@example.com", "--password", "a long passphrase", "--tenant", "acme", "--role", "read-only"]
    assert main(["admin", "create", *args]) == 0
    assert "administrator cy@example.com created: read-only of tenant acme" in capsys.readouterr().out

    assert (
        main(["admin", "create", "--email", "di@example.com", "--password", "a long passphrase", "--tenant", "acme"])
        == 0
    )
    assert "administrator di@example.com created: admin of tenant acme" in capsys.readouterr().out


def test_membership_mistakes_are_refused_with_what_to_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create", "--email", "ada@example.com", "--password", "a long passphrase"]) == 0
    capsys.readouterr()

    assert (
        main(["admin", "create", "--email", "b@example.com", "--password", "a long passphrase", "--tenant", "nope"])
        == 1
    )
    assert "Tenant 'nope' does not exist" in capsys.readouterr().err
    assert (
        main(["admin", "create", "--email", "b@example.com", "--password", "a long passphrase", "--role", "admin"]) == 1
    )
    assert "name the tenant" in capsys.readouterr().err
    args = ["tenant", "add-member", "--tenant", "default", "--admin", "ada@example.com", "--role", "admin"]
    assert main(args) == 1
    assert "last owner" in capsys.readouterr().err
    assert main(["tenant", "add-member", "--tenant", "default", "--admin", "x@example.com", "--role", "admin"]) == 1
    assert "no administrator with the email x@example.com" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tenant", "add-member", "--tenant", "default", "--admin", "ada@example.com", "--role", "root"])

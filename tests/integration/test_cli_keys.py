"""`idp-mcp keys rotate|retire|list` and the checks `idp-mcp serve --workers` makes before it starts anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idp_mcp.cli import main
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> None:
    monkeypatch.setenv("IDP_MCP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IDP_MCP_DATABASE_URL", database_url)


def listed(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, tuple[str, str]]:
    """kid → (tenant, status) from `keys list`."""
    assert main(["keys", "list", *args]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    return {row.split()[1]: (row.split()[0], row.split()[3]) for row in rows}


def test_keys_rotate_adds_a_signing_key_and_keeps_the_previous_one_published(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = listed(capsys)
    assert sorted(tenant for tenant, _ in before.values()) == ["admin", "default"]
    assert {status for _, status in before.values()} == {"signing"}

    assert main(["keys", "rotate"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"key (\S+) \(ES256\) now signs for tenant admin", out)
    assert match, out
    assert "idp-mcp keys retire --tenant admin" in out

    after = listed(capsys, "--tenant", "admin")
    old_admin = next(kid for kid, (tenant, _) in before.items() if tenant == "admin")
    assert after == {old_admin: ("admin", "published"), match.group(1): ("admin", "signing")}


def test_keys_rotate_for_a_tenant_and_with_rs256(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "rotate", "--tenant", "default", "--alg", "RS256"]) == 0
    assert "(RS256) now signs for tenant default" in capsys.readouterr().out
    assert main(["keys", "rotate", "--tenant", "nope"]) == 1
    assert "Tenant 'nope' does not exist" in capsys.readouterr().err


def test_keys_retire_waits_for_old_tokens_to_expire_unless_forced(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "retire"]) == 0
    assert "no published key besides the ones that sign" in capsys.readouterr().out

    old = next(kid for kid, (tenant, _) in listed(capsys).items() if tenant == "admin")
    assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    assert main(["keys", "retire"]) == 1
    assert "may be valid until" in capsys.readouterr().err
    assert main(["keys", "retire", f"--kid={old}", "--force"]) == 0
    assert f"key {old} (ES256) of tenant admin retired" in capsys.readouterr().out
    assert listed(capsys)[old] == ("admin", "retired")

    signing = next(kid for kid, (tenant, status) in listed(capsys).items() if status == "signing" and tenant == "admin")
    assert main(["keys", "retire", f"--kid={signing}", "--force"]) == 1
    assert "Rotate first" in capsys.readouterr().err

    core = IdentityCore.from_settings(Settings())
    try:
        actions = [entry.action for entry in core.audit.recent("admin")]
        names = {entry.actor_client_name for entry in core.audit.recent("admin") if entry.action.startswith("key.")}
    finally:
        core.close()
    assert "key.rotate" in actions and "key.retire" in actions
    assert names == {"idp-mcp command line"}


def test_serve_with_several_workers_needs_stateless_mcp(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDP_MCP_MCP_STATELESS", raising=False)
    assert main(["serve", "--workers", "2", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--workers 2 needs IDP_MCP_MCP_STATELESS=true" in err
    assert "sticky routing" in err

"""The MFA tools over /mcp with a real token: getSignInExperience shows the policy, updateMfaPolicy changes it
(partially, validated, audited), getUser lists a user's factors without secrets, and resetUserMfa removes them only
once the user confirmed, audited without secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from idp_mcp.settings import Settings
from idp_mcp.store.repos import mfa as mfa_repo
from tests.support.inprocess import PUBLIC_URL
from tests.support.mcp_http import McpSession, text_of
from tests.support.smtp import SENDER
from tests.support.tokens import obtain_access_token

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
SEALED = "sealed-secret-value-never-shown"


@pytest.fixture
def smtp_configured() -> bool:
    return False


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_configured: bool) -> Settings:
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": 2525, "smtp_from": SENDER} if smtp_configured else {}
    return Settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, **smtp)  # type: ignore[arg-type]


@pytest.fixture
def session(client: TestClient) -> McpSession:
    mcp = McpSession(client, obtain_access_token(client, client_name="Claude Test").access_token)
    mcp.initialize()
    return mcp


@pytest.fixture
def carol(core: IdentityCore) -> User:
    user = anyio.run(
        lambda: core.tenant_users.create(
            TENANT, email="carol@example.com", password="violet staple horizon 7", actor=ACTOR
        )
    )
    now = core.clock()
    with core.db.transaction() as conn:  # an enrolled authenticator app, as the hosted page leaves it
        mfa_repo.insert_factor(
            conn,
            {"id": "f1", "tenant_id": TENANT, "user_id": user.id, "kind": "totp", "secret": SEALED,
             "last_step": None, "created_at": now, "confirmed_at": now, "last_used_at": None},
        )  # fmt: skip
    core.mfa.new_backup_codes(TENANT, user.id)
    return user


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def refused(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    return text_of(result)


def test_the_policy_is_off_by_default_and_updates_merge_and_are_audited(
    session: McpSession, core: IdentityCore
) -> None:
    assert ok(session.call_tool("getSignInExperience", {}))["mfa"] == {
        "policy": "off", "factors": ["totp"], "passkeyFirst": False,
    }  # fmt: skip
    updated = ok(session.call_tool("updateMfaPolicy", {"policy": "required"}))
    assert updated["mfa"]["policy"] == "required" and updated["changed"] == ["mfa.policy"]
    assert "policy off → required" in updated["summary"]
    both = ok(session.call_tool("updateMfaPolicy", {"factors": ["totp", "passkey"], "passkeyFirst": True}))
    assert both["mfa"] == {"policy": "required", "factors": ["totp", "passkey"], "passkeyFirst": True}
    assert core.sign_in_experiences.get(TENANT).mfa.passkey_first is True
    audited = [e.details for e in core.audit.recent(TENANT, limit=50) if e.action == "sign_in_experience.update"]
    assert audited[0]["changed"] == ["mfa.factors", "mfa.passkeyFirst"]


def test_an_impossible_policy_is_an_actionable_error_that_writes_nothing(
    session: McpSession, core: IdentityCore
) -> None:
    assert "SMTP" in refused(session.call_tool("updateMfaPolicy", {"factors": ["email"]}))
    assert "at least one factor" in refused(session.call_tool("updateMfaPolicy", {"policy": "optional", "factors": []}))
    assert "passkeyFirst needs 'passkey'" in refused(session.call_tool("updateMfaPolicy", {"passkeyFirst": True}))
    assert "at least one field" in refused(session.call_tool("updateMfaPolicy", {}))
    assert refused(session.call_tool("updateMfaPolicy", {"policy": "always"}))
    assert core.sign_in_experiences.get(TENANT).version == 0


def test_get_user_lists_factors_without_secrets(session: McpSession, carol: User) -> None:
    result = session.call_tool("getUser", {"userId": carol.id})
    details = ok(result)
    kinds = {factor["kind"]: factor for factor in details["mfaFactors"]}
    assert set(kinds) == {"totp", "backup_codes"} and kinds["backup_codes"]["remaining"] == 10
    assert kinds["totp"]["createdAt"] and kinds["totp"]["lastUsedAt"] is None
    assert SEALED not in json.dumps(result)


def test_reset_user_mfa_needs_confirmation_then_removes_factors_and_is_audited(
    session: McpSession, core: IdentityCore, carol: User
) -> None:
    asked = refused(session.call_tool("resetUserMfa", {"userId": carol.id}))
    assert "confirm: true" in asked and "carol@example.com" in asked
    assert len(core.mfa.factors(TENANT, carol.id)) == 2

    done = ok(session.call_tool("resetUserMfa", {"userId": carol.id, "confirm": True}))
    assert done["factorsRemoved"] == 1 and done["userId"] == carol.id
    assert core.mfa.factors(TENANT, carol.id) == []
    assert ok(session.call_tool("getUser", {"userId": carol.id}))["mfaFactors"] == []
    [entry] = [e for e in core.audit.recent(TENANT, limit=50) if e.action == "user.reset_mfa"]
    assert entry.target_id == carol.id and entry.details == {"factors_removed": 1, "backup_codes_removed": 10}
    assert "No user" in refused(session.call_tool("resetUserMfa", {"userId": "nobody", "confirm": True}))

"""Passkeys through the MCP tools: getUser lists them among the factors (kind and dates, never the credential id or
the public key), and resetUserMfa removes them with the other factors."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from tests.support.mcp_http import McpSession, text_of
from tests.support.soft_authenticator import SoftAuthenticator
from tests.support.tokens import obtain_access_token

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


@pytest.fixture
def session(client: TestClient) -> McpSession:
    mcp = McpSession(client, obtain_access_token(client, client_name="Claude Test").access_token)
    mcp.initialize()
    return mcp


@pytest.fixture
def dana(core: IdentityCore) -> User:
    return anyio.run(
        lambda: core.tenant_users.create(
            TENANT, email="dana@example.com", password="violet staple horizon 7", actor=ACTOR
        )
    )


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def test_get_user_lists_passkeys_and_reset_user_mfa_removes_them(
    session: McpSession, core: IdentityCore, dana: User
) -> None:
    authenticator = SoftAuthenticator(rp_id=core.passkeys.rp_id, origin=core.passkeys.origin)
    options = core.passkeys.registration_options(TENANT, dana.id, "setup")
    core.passkeys.register(TENANT, dana.id, "setup", authenticator.register(options), "Dana's laptop")
    stored = core.passkeys.of_user(TENANT, dana.id)[0]

    result = session.call_tool("getUser", {"userId": dana.id})
    [factor] = ok(result)["mfaFactors"]
    assert factor["kind"] == "passkey" and factor["createdAt"] and factor["lastUsedAt"] is None
    with core.db.read() as conn:
        row = conn.exec_driver_sql("SELECT credential_id, public_key FROM passkeys").one()
    assert row.credential_id not in json.dumps(result) and row.public_key not in json.dumps(result)
    assert stored.name == "Dana's laptop"

    done = ok(session.call_tool("resetUserMfa", {"userId": dana.id, "confirm": True}))
    assert done["factorsRemoved"] == 1
    assert core.passkeys.of_user(TENANT, dana.id) == []
    assert ok(session.call_tool("getUser", {"userId": dana.id}))["mfaFactors"] == []

"""Property: whatever arguments an agent sends to a tool, through a real MCP session, the answer is a CallToolResult
(never a JSON-RPC error, never a 5xx), and a result with isError changed nothing in the database (nor did any
read-only tool)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.mcp_server.registry import ToolRegistry
from idp_mcp.mcp_server.tools import all_tools
from idp_mcp.settings import Settings
from tests.support.databases import fresh_database_url
from tests.support.fuzz import FUZZ_SETTINGS, snapshot, tool_arguments
from tests.support.inprocess import PUBLIC_URL
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mcp_http import McpSession, messages_of
from tests.support.tokens import obtain_access_token

pytestmark = pytest.mark.fuzz

REGISTRY = ToolRegistry(all_tools())
TOOL_NAMES = REGISTRY.names()

#: What tools may write. Not audit_log (every call is audited, refused or not), nor what sign-in itself keeps
#: (sessions, interactions, rate-limit counters).
WATCHED_TABLES = [
    "tenants",
    "tenant_members",
    "users",
    "clients",
    "client_secrets",
    "grants",
    "refresh_tokens",
    "revoked_families",
    "signing_keys",
    "sign_in_experiences",
    "verification_codes",
    "connectors",
    "connector_secrets",
    "user_identities",
    "api_resources",
    "api_permissions",
    "roles",
    "role_permissions",
    "user_roles",
    "application_roles",
]


@dataclass
class FuzzTarget:
    client: TestClient
    core: IdentityCore
    session: McpSession
    tools: dict[str, dict[str, Any]]
    hints: list[str]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """One app for every tool's examples, with an application and a user to aim at, and one MCP session."""
    directory = tmp_path_factory.mktemp("fuzz-mcp")
    with fresh_database_url(directory) as database_url:
        settings = Settings(public_url=PUBLIC_URL, data_dir=directory, database_url=database_url)
        core = IdentityCore.from_settings(settings)
        core.bootstrap()
        anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
        with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
            issued = obtain_access_token(client)
            session = McpSession(client, issued.access_token)
            session.initialize()
            tools = {tool["name"]: tool for tool in session.list_tools()}
            hints = seed(session)
            yield FuzzTarget(client, core, session, tools, hints)
        core.close()


def seed(session: McpSession) -> list[str]:
    """Things to aim at (the ids of an application of each kind and of a user, guide ids), so that examples get
    past "not found"."""
    hints: list[str] = []
    for kind, uris in (("traditional", ["https://app.example.com/callback"]), ("spa", ["http://127.0.0.1:5173/cb"])):
        created = session.call_tool("createApplication", {"name": f"Seed {kind}", "type": kind, "redirectUris": uris})
        hints.append(created["structuredContent"]["applicationId"])
    m2m = session.call_tool("createApplication", {"name": "Seed m2m", "type": "m2m"})
    hints.append(m2m["structuredContent"]["applicationId"])
    # The secrets' ids (each confidential application got a temporary secret), for revokeSecret.
    for application_id in (hints[0], hints[-1]):
        got = session.call_tool("getApplication", {"applicationId": application_id})
        hints += [secret["secretId"] for secret in got["structuredContent"]["secrets"]]
    user = session.call_tool("createUser", {"email": "seed@example.com", "password": "a long passphrase 42"})
    hints.append(user["structuredContent"]["userId"])
    # An issuer on a non-public address: without the tests-only setting, testConnector is refused before any fetch.
    connector = session.call_tool(
        "createConnector", {"kind": "oidc", "name": "Seed", "clientId": "seed", "issuer": "https://127.0.0.1:9"}
    )
    hints.append(connector["structuredContent"]["connectorId"])
    api = session.call_tool(
        "createApiResource",
        {"name": "Seed API", "identifier": "https://api.example.com",
         "permissions": [{"name": "read:seed"}, {"name": "write:seed"}]},
    )["structuredContent"]  # fmt: skip
    hints += [api["apiResourceId"], api["identifier"], "read:seed", "write:seed", "user", "m2m"]
    for role_type in ("user", "m2m"):
        role = session.call_tool(
            "createRole",
            {"name": f"Seed {role_type}", "type": role_type,
             "permissions": [{"resource": "https://api.example.com", "permission": "read:seed"}]},
        )["structuredContent"]  # fmt: skip
        hints.append(role["roleId"])
    guides = session.call_tool("listInstructions", {})
    hints += [guide["id"] for guide in guides["structuredContent"]["guides"]]
    return hints


def call(session: McpSession, name: str, arguments: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = session.post(message)
    if response.status_code >= 500:
        return response.status_code, []
    return response.status_code, messages_of(response)


@pytest.mark.parametrize("tool_name", TOOL_NAMES)
def test_any_arguments_give_a_tool_result_and_a_refusal_writes_nothing(target: FuzzTarget, tool_name: str) -> None:
    tool = target.tools[tool_name]
    spec = REGISTRY.get(tool_name)
    assert spec is not None

    @FUZZ_SETTINGS
    @given(arguments=tool_arguments(tool["inputSchema"], target.hints) | st.just({}))
    def property_holds(arguments: dict[str, Any]) -> None:
        before = snapshot(target.core.db, WATCHED_TABLES)
        status, messages = call(target.session, tool_name, arguments)
        assert status == 200, f"HTTP {status} for {arguments!r}"
        responses = [m for m in messages if m.get("id") == 7]
        assert len(responses) == 1, messages
        assert "error" not in responses[0], f"JSON-RPC error {responses[0]['error']} for {arguments!r}"
        result = responses[0]["result"]
        assert isinstance(result.get("content"), list) and result["content"], result
        assert all(item.get("type") == "text" for item in result["content"]), result
        if result.get("isError") or spec.read_only:
            after = snapshot(target.core.db, WATCHED_TABLES)
            changed = [name for name in before if before[name] != after.get(name)]
            what = "a refused call" if result.get("isError") else "a read-only tool"
            assert not changed, f"{what} changed {changed} for {arguments!r}: {result['content'][0]['text']}"
        else:
            assert isinstance(result.get("structuredContent"), dict), result

    property_holds()


def test_a_nul_character_in_any_argument_is_a_tool_error_that_says_so(target: FuzzTarget) -> None:
    """Found by the property above on PostgreSQL (a JSON-RPC error carrying the SQL); the same on every database."""
    for name, arguments in (
        ("updateTenant", {"name": "\x00"}),
        ("listUsers", {"search": "a\x00"}),
        ("getUser", {"\x00": 1}),
    ):
        status, messages = call(target.session, name, arguments)
        assert status == 200
        result = next(m for m in messages if m.get("id") == 7)["result"]
        assert result["isError"] is True
        assert "NUL" in result["content"][0]["text"]

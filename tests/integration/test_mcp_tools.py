"""The MCP session with a real token from the code flow: initialize, the tool list by consent, tool results,
bad input as tool errors, and the audit trail of a change."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.audit import FLUSH_INTERVAL_SECONDS
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from idp_mcp.store.tables import audit_log
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL, authorize, exchange_code
from tests.support.live_server import ADMIN_EMAIL
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import IssuedToken, obtain_access_token

READ_TOOLS = {
    "getTenantInfo", "listInstructions", "getInstructions", "searchDocs", "listApplications", "getApplication",
    "listUsers", "getUser", "getSignInExperience", "listAuditEvents", "listApiResources", "getApiResource",
    "listRoles", "getRole", "listConnectors", "getConnector", "testConnector",
}  # fmt: skip
WRITE_TOOLS = {
    "updateTenant", "createApplication", "updateApplication", "deleteApplication", "createTemporarySecret",
    "revokeTemporarySecrets", "revokeSecret", "createUser", "updateUser", "deleteUser", "updateBranding",
    "updateSignInMethod", "updateSignUpMethod", "createApiResource", "updateApiResource", "deleteApiResource",
    "createRole", "updateRole", "deleteRole", "assignRoles", "removeRoles", "createConnector", "updateConnector",
    "deleteConnector", "unlinkIdentity", "setUserPassword", "sendPasswordReset", "updateMfaPolicy", "resetUserMfa",
}  # fmt: skip
ALL_TOOLS = READ_TOOLS | WRITE_TOOLS


def tenant_name(core: IdentityCore) -> str:
    return core.tenants.get("default").name


def actions(core: IdentityCore) -> list[str]:
    return [entry.action for entry in core.audit.recent("default", limit=500)]


def committed_actions(core: IdentityCore) -> list[str]:
    """What the database holds right now, read past AuditLog (which would commit its queue first)."""
    with core.db.read() as conn:
        return list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())


# --- initialize -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_initialize_negotiates_the_protocol_version_the_client_asked_for(
    client: TestClient, issued: IssuedToken, version: str
) -> None:
    mcp = McpSession(client, issued.access_token)

    result = mcp.initialize(version)

    assert result["protocolVersion"] == version
    assert result["serverInfo"]["name"] == "idp-mcp"
    assert "tools" in result["capabilities"]
    assert mcp.session_id
    # The session works with the negotiated version in MCP-Protocol-Version.
    assert {tool["name"] for tool in mcp.list_tools()} == ALL_TOOLS


def test_initialize_with_an_unknown_version_gets_a_supported_one(client: TestClient, issued: IssuedToken) -> None:
    result = McpSession(client, issued.access_token).initialize("1999-01-01")

    assert result["protocolVersion"] in {"2025-06-18", "2025-11-25"}


def test_request_with_an_unknown_session_id_is_refused(client: TestClient, session: McpSession) -> None:
    session.session_id = "no-such-session"

    response = session.post({"jsonrpc": "2.0", "id": 99, "method": "tools/list"})

    assert response.status_code == 404


# --- tools/list -----------------------------------------------------------------------------------------


def test_tools_list_with_full_consent_has_every_tool(session: McpSession) -> None:
    assert {tool["name"] for tool in session.list_tools()} == ALL_TOOLS


def test_every_tool_declares_hints_and_input_and_output_schemas(session: McpSession) -> None:
    tools = {tool["name"]: tool for tool in session.list_tools()}

    for tool in tools.values():
        assert isinstance(tool["annotations"]["readOnlyHint"], bool), tool["name"]
        assert tool["inputSchema"]["type"] == "object", tool["name"]
        assert tool["outputSchema"]["type"] == "object", tool["name"]
        assert tool["description"], tool["name"]
    assert all(tools[name]["annotations"]["readOnlyHint"] is False for name in WRITE_TOOLS)
    assert all(tools[name]["annotations"]["readOnlyHint"] for name in READ_TOOLS)
    destructive = {name for name, tool in tools.items() if tool["annotations"]["destructiveHint"]}
    # Deletes, revocations and updates that replace a list (MCP: "may perform destructive updates").
    assert destructive == {
        "deleteApplication", "deleteUser", "deleteApiResource", "deleteRole", "deleteConnector", "revokeSecret",
        "revokeTemporarySecrets", "removeRoles", "unlinkIdentity", "updateApplication", "updateSignInMethod",
        "updateSignUpMethod", "updateApiResource", "updateRole", "updateConnector", "setUserPassword",
        "updateMfaPolicy", "resetUserMfa",
    }  # fmt: skip
    # Calling again with the same arguments changes nothing more: every read, update, delete and revocation; no create,
    # and not what acts on the user again (another reset email, another sign-out everywhere).
    not_idempotent = {name for name, tool in tools.items() if not tool["annotations"]["idempotentHint"]}
    assert not_idempotent == {name for name in tools if name.startswith("create")} | {
        "setUserPassword", "sendPasswordReset",
    }  # fmt: skip


def test_read_only_consent_hides_write_tools(read_only_session: McpSession) -> None:
    names = {tool["name"] for tool in read_only_session.list_tools()}

    assert names == READ_TOOLS


def test_tool_lists_of_different_scopes_on_one_server_stay_apart(client: TestClient, session: McpSession) -> None:
    # The list is described once per set of scopes: a read-only connection after a full one, and a full one after
    # that, each still see exactly their own tools.
    assert {tool["name"] for tool in session.list_tools()} == ALL_TOOLS
    read_only = McpSession(client, obtain_access_token(client, allow_write=False).access_token)
    read_only.initialize()
    assert {tool["name"] for tool in read_only.list_tools()} == READ_TOOLS
    assert {tool["name"] for tool in session.list_tools()} == ALL_TOOLS


def test_a_listing_kept_in_memory_is_the_one_the_sdk_shaped_for_each_protocol_version(
    client: TestClient, issued: IssuedToken
) -> None:
    # The first tools/list of a (scopes, version) pair goes through the SDK's whole path; later ones are answered from
    # memory (ToolListAnswers). Same bytes for the same version, and each version keeps its own shape.
    for version in ("2025-06-18", "2025-11-25"):
        first, second = McpSession(client, issued.access_token), McpSession(client, issued.access_token)
        first.initialize(version)
        second.initialize(version)
        shaped = first.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        kept = second.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        assert shaped.status_code == kept.status_code == 200
        assert kept.text == shaped.text
        assert {tool["name"] for tool in second.list_tools()} == ALL_TOOLS


def test_write_tool_called_on_a_read_only_connection_asks_to_reconnect_and_changes_nothing(
    read_only_session: McpSession, core: IdentityCore
) -> None:
    before = tenant_name(core)

    result = read_only_session.call_tool("updateTenant", {"name": "Renamed without permission"})

    assert result["isError"] is True
    text = text_of(result).lower()
    assert "reconnect" in text and "write access" in text
    assert tenant_name(core) == before
    assert "tenant.update" not in actions(core)


# --- tool results ---------------------------------------------------------------------------------------


def test_get_tenant_info_describes_the_tenant_the_human_and_the_agent(session: McpSession, issued: IssuedToken) -> None:
    result = session.call_tool("getTenantInfo", {})

    assert result.get("isError") is not True
    info = result["structuredContent"]
    assert info["tenantId"] == "default"
    assert info["signedInAs"] == ADMIN_EMAIL
    assert info["agent"] == issued.client_name == "Claude Test"
    assert info["readOnly"] is False
    assert info["authorizationServer"] == PUBLIC_URL
    assert info["mcpServerUrl"] == f"{PUBLIC_URL}/mcp"
    assert info["consoleUrl"] == f"{PUBLIC_URL}/console/t/default/applications"
    assert set(info["availableTools"]) == ALL_TOOLS
    # The text content carries the same result for clients that ignore structuredContent.
    assert json.loads(text_of(result)) == info


def test_get_tenant_info_on_a_read_only_connection_says_read_only(read_only_session: McpSession) -> None:
    info = read_only_session.call_tool("getTenantInfo")["structuredContent"]

    assert info["readOnly"] is True
    assert "updateTenant" not in info["availableTools"]


def test_guides_are_listed_and_readable(session: McpSession) -> None:
    guides = session.call_tool("listInstructions")["structuredContent"]["guides"]
    assert guides

    result = session.call_tool("getInstructions", {"topic": guides[0]["id"]})

    assert result.get("isError") is not True
    assert result["structuredContent"]["id"] == guides[0]["id"]
    assert result["structuredContent"]["markdown"].strip()


# --- bad input is a tool error, never a protocol error --------------------------------------------------

BAD_CALLS: dict[str, tuple[str, dict[str, Any] | None, str]] = {
    "unknown_tool": ("deleteEverything", {}, "unknown tool 'deleteeverything'"),
    "missing_topic": ("getInstructions", {}, "'topic'"),
    "extra_argument": ("getInstructions", {"topic": "using-this-server", "verbose": True}, "'verbose'"),
    "wrong_type": ("getInstructions", {"topic": 42}, "'topic'"),
    "name_too_long": ("updateTenant", {"name": "x" * 500}, "'name'"),
    "empty_name": ("updateTenant", {"name": ""}, "'name'"),
    "blank_name": ("updateTenant", {"name": "   "}, "1 to 128 characters"),
    "extra_argument_to_a_write_tool": ("updateTenant", {"name": "Ok", "tenantId": "admin"}, "'tenantid'"),
}


@pytest.mark.parametrize(("tool", "arguments", "explanation"), BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_call_is_an_error_result_that_explains_and_writes_nothing(
    session: McpSession, core: IdentityCore, tool: str, arguments: dict[str, Any] | None, explanation: str
) -> None:
    before = tenant_name(core)

    result = session.call_tool(tool, arguments)

    assert result["isError"] is True
    text = text_of(result)
    assert explanation in text.lower()
    assert "x" * 200 not in text  # argument values are not echoed back
    assert tenant_name(core) == before
    assert "tenant.update" not in actions(core)


def test_unknown_guide_lists_the_valid_ids(session: McpSession) -> None:
    ids = [guide["id"] for guide in session.call_tool("listInstructions")["structuredContent"]["guides"]]

    result = session.call_tool("getInstructions", {"topic": "no-such-guide"})

    assert result["isError"] is True
    text = text_of(result)
    assert "no-such-guide" in text
    assert ids and all(guide_id in text for guide_id in ids)


# --- a change, and its audit trail ----------------------------------------------------------------------


def test_update_tenant_renames_the_tenant(session: McpSession, core: IdentityCore) -> None:
    result = session.call_tool("updateTenant", {"name": "  Acme   Corp "})

    assert result.get("isError") is not True
    assert result["structuredContent"] == {"tenantId": "default", "tenantName": "Acme Corp"}
    assert tenant_name(core) == "Acme Corp"
    assert session.call_tool("getTenantInfo")["structuredContent"]["tenantName"] == "Acme Corp"


def test_update_tenant_is_audited_with_the_human_and_the_agent(
    session: McpSession, core: IdentityCore, issued: IssuedToken
) -> None:
    session.call_tool("updateTenant", {"name": "Acme Corp"})

    entries = core.audit.recent("default", limit=500)
    by_action = {entry.action: entry for entry in entries}
    assert {"tenant.update", "tool.updateTenant"} <= set(by_action)
    for action in ("tenant.update", "tool.updateTenant"):
        entry = by_action[action]
        assert entry.outcome == "success"
        assert entry.actor_sub == issued.user_id
        assert entry.actor_client_id == issued.client_id
        assert entry.actor_client_name == "Claude Test"
    assert by_action["tenant.update"].details["name"] == {"from": "Default", "to": "Acme Corp"}
    assert by_action["tool.updateTenant"].details["arguments"] == {"name": "Acme Corp"}


def test_no_token_appears_in_the_audit_log(session: McpSession, core: IdentityCore, issued: IssuedToken) -> None:
    session.call_tool("updateTenant", {"name": "Acme Corp"})
    session.call_tool("updateTenant", {"name": "x" * 500})
    session.call_tool("getTenantInfo")

    entries = [*core.audit.recent("default", limit=500), *core.audit.recent("admin", limit=500)]
    assert any(entry.action == "tool.updateTenant" for entry in entries)
    assert issued.refresh_token
    for entry in entries:
        details = json.dumps(entry.details)
        assert issued.access_token not in details, entry.action
        assert issued.refresh_token not in details, entry.action
        # Nor any part of the JWT (its signature, say) on its own.
        assert all(part not in details for part in issued.access_token.split(".")), entry.action


def test_read_tool_call_is_audited_with_the_human_and_the_agent(
    session: McpSession, core: IdentityCore, issued: IssuedToken
) -> None:
    session.call_tool("getTenantInfo")
    session.call_tool("listInstructions")

    entries = {entry.action: entry for entry in core.audit.recent("default", limit=500)}
    for action in ("tool.getTenantInfo", "tool.listInstructions"):
        entry = entries[action]
        assert entry.outcome == "success"
        assert entry.actor_sub == issued.user_id
        assert entry.actor_client_id == issued.client_id
        assert entry.actor_client_name == "Claude Test"


def test_refused_tool_calls_are_audited_with_the_human_the_agent_and_the_reason(
    client: TestClient, core: IdentityCore
) -> None:
    issued = obtain_access_token(client, client_name="Read-only agent", allow_write=False)
    mcp = McpSession(client, issued.access_token)
    mcp.initialize()

    assert mcp.call_tool("updateTenant", {"name": "No"})["isError"] is True
    assert mcp.call_tool("noSuchTool", {"password": "hunter2"})["isError"] is True
    assert mcp.call_tool("getTenantInfo", {"unexpected": 1})["isError"] is True

    entries = [entry for entry in core.audit.recent("default", limit=500) if entry.action.startswith("tool.")]
    errors = {entry.action: entry.details["error"] for entry in entries}
    assert errors == {
        "tool.updateTenant": "auth.insufficient_scope",
        "tool.noSuchTool": "tool.unknown",
        "tool.getTenantInfo": "request.invalid",
    }
    for entry in entries:
        assert entry.outcome == "failure"
        assert (entry.actor_sub, entry.actor_client_id) == (issued.user_id, issued.client_id)
        assert entry.actor_client_name == "Read-only agent"
        assert "hunter2" not in json.dumps(entry.details)  # refused calls keep argument names only


def test_a_read_tool_calls_row_is_committed_within_the_flush_interval_without_anyone_asking(
    session: McpSession, core: IdentityCore
) -> None:
    session.call_tool("getTenantInfo")

    deadline = time.monotonic() + FLUSH_INTERVAL_SECONDS + 5  # the interval, plus room for a busy machine
    while "tool.getTenantInfo" not in committed_actions(core):
        assert time.monotonic() < deadline, "the queued row was not committed"
        time.sleep(FLUSH_INTERVAL_SECONDS / 5)


# Rows that may be queued wait an hour: only a row committed before the answer can be seen below.
@pytest.mark.parametrize("settings", [{"audit_flush_interval": 3600.0}], indirect=True)
def test_a_write_tool_calls_row_is_committed_before_its_answer(
    client: TestClient, core: IdentityCore, issued: IssuedToken, clock: Clock
) -> None:
    mcp = McpSession(client, issued.access_token)
    mcp.initialize()

    mcp.call_tool("getTenantInfo")
    clock.advance(1)  # the log orders rows by the time of the call
    assert mcp.call_tool("updateTenant", {"name": "Acme Corp"}).get("isError") is not True

    committed = committed_actions(core)
    # The write's own row commits with its change, in the change's transaction (the tally holds the call to one), and
    # takes the read's row queued before it along: no row is committed after a later call's.
    assert {"tenant.update", "tool.updateTenant", "tool.getTenantInfo"} <= set(committed)
    assert committed.index("tool.getTenantInfo") < committed.index("tool.updateTenant")
    assert [a for a in actions(core) if a.startswith("tool.")][:2] == ["tool.updateTenant", "tool.getTenantInfo"]


# Rows that may be queued wait an hour: only a row committed before the answer can be seen below.
@pytest.mark.parametrize("settings", [{"audit_flush_interval": 3600.0}], indirect=True)
def test_a_write_tool_that_changes_nothing_commits_its_calls_row_in_its_one_transaction(
    client: TestClient, core: IdentityCore, issued: IssuedToken
) -> None:
    mcp = McpSession(client, issued.access_token)
    mcp.initialize()
    created = mcp.call_tool("createApplication", {"name": "Same", "type": "m2m"})["structuredContent"]

    unchanged = mcp.call_tool("updateApplication", {"applicationId": created["applicationId"], "name": "Same"})

    assert unchanged["structuredContent"]["changed"] == []
    # The call's row commits with the update's (empty) transaction: the tally saw one transaction, not two.
    assert committed_actions(core).count("tool.updateApplication") == 1


# The writer thread would not commit the queued rows in this test's lifetime.
@pytest.mark.parametrize("settings", [{"audit_flush_interval": 3600.0}], indirect=True)
def test_queued_rows_are_committed_when_the_app_shuts_down(settings: Settings, core: IdentityCore) -> None:
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
        mcp = McpSession(client, obtain_access_token(client).access_token)
        mcp.initialize()
        mcp.call_tool("listInstructions")
        assert "tool.listInstructions" not in committed_actions(core)

    assert "tool.listInstructions" in committed_actions(core)


def test_failed_tool_call_is_audited_as_a_failure(session: McpSession, core: IdentityCore) -> None:
    session.call_tool("updateTenant", {"name": "   "})

    failures = [entry for entry in core.audit.recent("default") if entry.action == "tool.updateTenant"]
    assert [entry.outcome for entry in failures] == ["failure"]
    assert tenant_name(core) == "Default"


def test_session_cannot_be_continued_with_another_agents_token(client: TestClient, session: McpSession) -> None:
    other = obtain_access_token(client, client_name="Other agent")
    hijacker = McpSession(client, other.access_token)
    hijacker.session_id = session.session_id
    hijacker.protocol_version = session.protocol_version

    response = hijacker.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "getTenantInfo"}})

    assert response.status_code == 404, response.text  # as if the session did not exist
    assert "structuredContent" not in response.text


def test_tools_follow_the_scopes_of_the_token_on_each_request_not_those_that_opened_the_session(
    client: TestClient, core: IdentityCore, session: McpSession, issued: IssuedToken
) -> None:
    """The same agent and human, reconnected with read-only consent, keep their session but lose the write tool."""
    result = authorize(client, issued.client_id, allow_write=False)
    response = exchange_code(client, issued.client_id, result)
    assert response.status_code == 200, response.text
    assert response.json()["scope"].split() == ["idp:read", "offline_access"]
    session.access_token = response.json()["access_token"]

    assert "updateTenant" not in {tool["name"] for tool in session.list_tools()}
    assert session.call_tool("updateTenant", {"name": "Renamed"})["isError"] is True
    assert tenant_name(core) == "Default"

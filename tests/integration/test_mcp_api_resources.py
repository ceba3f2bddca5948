"""The API resource and role tools over /mcp with a real token: each tool's effect in the core and its audit row,
bad input as an actionable tool error that writes nothing, confirmation of deletes, getUser / getApplication showing
roles and permissions, and tenant isolation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from idp_mcp.errors import NotFound
from idp_mcp.settings import Settings
from tests.support.elicitation import eliciting_client, serve_in_thread
from tests.support.live_server import ADMIN_EMAIL
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import obtain_access_token

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
API = "https://api.example.com/invoices"
PERMISSIONS = [{"name": "read:invoices", "description": "Read invoices"}, {"name": "delete:invoices"}]


@pytest.fixture
def bob(core: IdentityCore) -> User:
    return anyio.run(
        lambda: core.tenant_users.create(TENANT, email="bob@example.com", password="violet staple 7", actor=ACTOR)
    )


@pytest.fixture
def service(core: IdentityCore) -> Application:
    return core.applications.create(TENANT, name="Billing job", app_type="m2m", actor=ACTOR)


@pytest.fixture
def spa(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Web", app_type="spa", actor=ACTOR, redirect_uris=["http://127.0.0.1:5173/cb"]
    )


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def state(core: IdentityCore, tenant: str = TENANT) -> tuple[Any, ...]:
    """Everything these tools could write: resources, roles with their holders, and audit rows (tool calls aside)."""
    roles = core.roles.list(tenant)
    holders = [core.roles.with_holders(tenant, role.id)[1] for role in roles]
    changes = [entry.action for entry in core.audit.recent(tenant, limit=500) if not entry.action.startswith("tool.")]
    return core.api_resources.list(tenant), roles, holders, changes


def audited(core: IdentityCore) -> list[str]:
    return state(core)[3]


@pytest.fixture
def api(session: McpSession) -> dict[str, Any]:
    return ok(
        session.call_tool("createApiResource", {"name": "Invoices", "identifier": API, "permissions": PERMISSIONS})
    )


def make_role(session: McpSession, name: str, role_type: str, *permissions: str) -> dict[str, Any]:
    return ok(
        session.call_tool(
            "createRole",
            {"name": name, "type": role_type, "permissions": [{"resource": API, "permission": p} for p in permissions]},
        )
    )


# --- API resources ------------------------------------------------------------------------------------------


def test_create_api_resource(session: McpSession, core: IdentityCore, api: dict[str, Any]) -> None:
    assert api["identifier"] == API and api["name"] == "Invoices" and api["accessTokenTtl"] is None
    assert api["permissions"] == [
        {"name": "read:invoices", "description": "Read invoices"},
        {"name": "delete:invoices", "description": ""},
    ]
    assert api["issuer"].endswith("/t/default/oidc") and "resource=<identifier>" in api["next"]
    stored = core.api_resources.get(TENANT, api["apiResourceId"])
    assert [p.name for p in stored.permissions] == ["read:invoices", "delete:invoices"]
    assert "api_resource.create" in audited(core)


def test_list_and_get_api_resources(session: McpSession, api: dict[str, Any]) -> None:
    listed = ok(session.call_tool("listApiResources", {}))["apiResources"]
    assert [item["apiResourceId"] for item in listed] == [api["apiResourceId"]]
    got = ok(session.call_tool("getApiResource", {"apiResourceId": api["apiResourceId"]}))
    assert {key: got[key] for key in api if key != "next"} == {key: api[key] for key in api if key != "next"}


def test_update_api_resource_replaces_the_permissions_and_names_the_roles_that_lose_one(
    session: McpSession, core: IdentityCore, api: dict[str, Any]
) -> None:
    admin = make_role(session, "Admin", "user", "read:invoices", "delete:invoices")
    updated = ok(
        session.call_tool(
            "updateApiResource",
            {"apiResourceId": api["apiResourceId"], "name": "Billing",
             "permissions": [{"name": "read:invoices", "description": "Read"}, {"name": "write:invoices"}],
             "accessTokenTtl": 600},
        )
    )  # fmt: skip
    assert updated["changed"] == ["access_token_ttl", "name", "permissions"]
    assert updated["addedPermissions"] == ["write:invoices"]
    assert updated["removedPermissions"] == [
        {"permission": "delete:invoices", "rolesThatLostIt": [{"roleId": admin["roleId"], "name": "Admin"}]}
    ]
    assert updated["accessTokenTtl"] == 600
    # The kept permission stays granted; the removed one is gone from the role.
    role = core.roles.get(TENANT, admin["roleId"])
    assert [(g.permission, g.description) for g in role.permissions] == [("read:invoices", "Read")]
    assert "api_resource.update" in audited(core)


def test_the_identifier_cannot_change(session: McpSession, core: IdentityCore, api: dict[str, Any]) -> None:
    before = state(core)
    result = session.call_tool("updateApiResource", {"apiResourceId": api["apiResourceId"], "identifier": "https://x"})
    assert result["isError"] is True and "'identifier' is not an argument" in text_of(result).lower()
    assert state(core) == before


def test_delete_api_resource_asks_first_then_deletes_and_says_which_roles_are_affected(
    session: McpSession, core: IdentityCore, api: dict[str, Any]
) -> None:
    make_role(session, "Reader", "user", "read:invoices")
    before = state(core)
    asked = session.call_tool("deleteApiResource", {"apiResourceId": api["apiResourceId"]})
    assert asked["isError"] is True and "confirm: true" in text_of(asked) and API in text_of(asked)
    assert state(core) == before

    deleted = ok(session.call_tool("deleteApiResource", {"apiResourceId": api["apiResourceId"], "confirm": True}))
    assert deleted == {"apiResourceId": api["apiResourceId"], "identifier": API, "deleted": True,
                       "rolesAffected": ["Reader"]}  # fmt: skip
    with pytest.raises(NotFound):
        core.api_resources.get(TENANT, api["apiResourceId"])
    assert core.roles.list(TENANT)[0].permissions == ()
    assert "api_resource.delete" in audited(core)


# --- roles --------------------------------------------------------------------------------------------------


def test_create_get_update_and_list_roles(session: McpSession, core: IdentityCore, api: dict[str, Any]) -> None:
    role = make_role(session, "Reader", "user", "read:invoices")
    assert role["type"] == "user" and "assignRoles" in role["next"]
    assert role["permissions"] == [
        {"resource": API, "resourceName": "Invoices", "permission": "read:invoices", "description": "Read invoices"}
    ]
    assert "role.create" in audited(core)

    updated = ok(
        session.call_tool(
            "updateRole",
            {"roleId": role["roleId"], "name": "Invoice admin", "description": "Finance team",
             "permissions": [{"resource": API, "permission": "delete:invoices"}]},
        )
    )  # fmt: skip
    assert updated["changed"] == ["description", "name", "permissions"]
    assert [g["permission"] for g in updated["permissions"]] == ["delete:invoices"]
    listed = ok(session.call_tool("listRoles", {}))["roles"]
    assert [(r["roleId"], r["name"]) for r in listed] == [(role["roleId"], "Invoice admin")]
    assert "role.update" in audited(core)


def test_assign_and_remove_roles_and_get_user_and_get_application_show_them(
    session: McpSession, core: IdentityCore, api: dict[str, Any], bob: User, service: Application, spa: Application
) -> None:
    reader = make_role(session, "Reader", "user", "read:invoices")
    admin = make_role(session, "Admin", "user", "read:invoices", "delete:invoices")
    job = make_role(session, "Job", "m2m", "delete:invoices")

    given = ok(session.call_tool("assignRoles", {"roleIds": [reader["roleId"], admin["roleId"]], "userId": bob.id}))
    assert given["userId"] == bob.id and given["applicationId"] is None
    assert sorted(given["changed"]) == sorted([reader["roleId"], admin["roleId"]]) and given["unchanged"] == []
    assert given["permissions"] == [
        {"resource": API, "permission": "delete:invoices"},
        {"resource": API, "permission": "read:invoices"},
    ]
    again = ok(session.call_tool("assignRoles", {"roleIds": [reader["roleId"]], "userId": bob.id}))
    assert again["changed"] == [] and again["unchanged"] == [reader["roleId"]]
    assert "role.assign" in audited(core)

    user = ok(session.call_tool("getUser", {"userId": bob.id}))
    assert [r["name"] for r in user["roles"]] == ["Admin", "Reader"] and len(user["permissions"]) == 2

    ok(session.call_tool("assignRoles", {"roleIds": [job["roleId"]], "applicationId": service.id}))
    app = ok(session.call_tool("getApplication", {"applicationId": service.id}))
    assert app["roles"] == [{"roleId": job["roleId"], "name": "Job", "type": "m2m"}]
    assert app["permissions"] == [{"resource": API, "permission": "delete:invoices"}]
    assert ok(session.call_tool("getApplication", {"applicationId": spa.id}))["roles"] == []

    holders = ok(session.call_tool("getRole", {"roleId": reader["roleId"]}))
    assert holders["users"] == [{"userId": bob.id, "email": "bob@example.com", "username": None}]
    assert (holders["userCount"], holders["applicationCount"]) == (1, 0)

    removed = ok(session.call_tool("removeRoles", {"roleIds": [admin["roleId"]], "userId": bob.id}))
    assert removed["changed"] == [admin["roleId"]]
    assert removed["permissions"] == [{"resource": API, "permission": "read:invoices"}]
    assert "role.remove" in audited(core)


def test_delete_role_asks_first_then_deletes(
    session: McpSession, core: IdentityCore, api: dict[str, Any], bob: User
) -> None:
    role = make_role(session, "Reader", "user", "read:invoices")
    ok(session.call_tool("assignRoles", {"roleIds": [role["roleId"]], "userId": bob.id}))
    before = state(core)
    asked = session.call_tool("deleteRole", {"roleId": role["roleId"]})
    assert asked["isError"] is True and "Reader" in text_of(asked) and "1 users" in text_of(asked)
    assert state(core) == before
    deleted = ok(session.call_tool("deleteRole", {"roleId": role["roleId"], "confirm": True}))
    assert deleted == {"roleId": role["roleId"], "name": "Reader", "deleted": True, "usersAffected": 1,
                       "applicationsAffected": 0}  # fmt: skip
    assert core.roles.list(TENANT) == [] and core.roles.of_subject(TENANT, "user", bob.id).roles == ()
    assert "role.delete" in audited(core)


# --- bad input: an actionable error, nothing written --------------------------------------------------------

BAD_CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "identifier_not_https": ("createApiResource", {"name": "X", "identifier": "http://api.example.com"}, "https"),
    "identifier_relative": ("createApiResource", {"name": "X", "identifier": "/invoices"}, "absolute https uri"),
    "identifier_with_fragment": ("createApiResource", {"name": "X", "identifier": "https://a.example#x"}, "fragment"),
    "identifier_with_space": ("createApiResource", {"name": "X", "identifier": "https://a.example/a b"}, "spaces"),
    "identifier_is_the_issuer": (
        "createApiResource",
        {"name": "X", "identifier": "http://127.0.0.1:8000/t/default/oidc"},
        "own address",
    ),
    "identifier_taken": ("createApiResource", {"name": "X", "identifier": API}, "exists already"),
    "bad_permission_name": (
        "createApiResource",
        {"name": "X", "identifier": "https://b.example", "permissions": [{"name": "read all"}]},
        "not valid",
    ),
    "permission_twice": (
        "createApiResource",
        {"name": "X", "identifier": "https://b.example", "permissions": [{"name": "a"}, {"name": "a"}]},
        "listed twice",
    ),
    "permission_named_openid": (
        "createApiResource",
        {"name": "X", "identifier": "https://b.example", "permissions": [{"name": "openid"}]},
        "openid connect scope",
    ),
    "ttl_too_short": (
        "createApiResource",
        {"name": "X", "identifier": "https://b.example", "accessTokenTtl": 5},
        "ttl",
    ),
    "get_unknown_resource": ("getApiResource", {"apiResourceId": "nope"}, "no api resource 'nope'"),
    "update_without_changes": ("updateApiResource", {"apiResourceId": "{api}"}, "at least one field"),
    "update_bad_permission": (
        "updateApiResource",
        {"apiResourceId": "{api}", "permissions": [{"name": "ok"}, {"name": "not ok"}]},
        "not valid",
    ),
    "delete_unknown_resource": ("deleteApiResource", {"apiResourceId": "nope", "confirm": True}, "no api resource"),
    "role_without_type": ("createRole", {"name": "R"}, "'type'"),
    "role_bad_type": ("createRole", {"name": "R", "type": "admin"}, "'type'"),
    "role_name_taken": ("createRole", {"name": "Reader", "type": "user"}, "exists already"),
    "role_unknown_resource": (
        "createRole",
        {
            "name": "R",
            "type": "user",
            "permissions": [{"resource": "https://no.example", "permission": "read:invoices"}],
        },
        "no api resource with the identifier",
    ),
    "role_unknown_permission": (
        "createRole",
        {"name": "R", "type": "user", "permissions": [{"resource": API, "permission": "write:x"}]},
        "has no permission 'write:x'",
    ),
    "update_role_to_a_taken_name": ("updateRole", {"roleId": "{m2m_role}", "name": "Reader"}, "another role"),
    "update_role_unknown_permission": (
        "updateRole",
        {"roleId": "{user_role}", "permissions": [{"resource": API, "permission": "nope"}]},
        "has no permission",
    ),
    "update_role_without_changes": ("updateRole", {"roleId": "{user_role}"}, "at least one field"),
    "get_unknown_role": ("getRole", {"roleId": "nope"}, "no role 'nope'"),
    "delete_unknown_role": ("deleteRole", {"roleId": "nope", "confirm": True}, "no role"),
    "assign_neither_user_nor_app": ("assignRoles", {"roleIds": ["{user_role}"]}, "exactly one of userid"),
    "assign_both_user_and_app": (
        "assignRoles",
        {"roleIds": ["{user_role}"], "userId": "{bob}", "applicationId": "{service}"},
        "exactly one",
    ),
    "assign_user_role_to_m2m_app": (
        "assignRoles",
        {"roleIds": ["{user_role}"], "applicationId": "{service}"},
        "is a user role",
    ),
    "assign_m2m_role_to_user": ("assignRoles", {"roleIds": ["{m2m_role}"], "userId": "{bob}"}, "is an m2m role"),
    "assign_role_to_spa": (
        "assignRoles",
        {"roleIds": ["{m2m_role}"], "applicationId": "{spa}"},
        "only machine-to-machine",
    ),
    "assign_unknown_role_with_a_good_one": (
        "assignRoles",
        {"roleIds": ["{user_role}", "nope"], "userId": "{bob}"},
        "no role 'nope'",
    ),
    "assign_to_unknown_user": ("assignRoles", {"roleIds": ["{user_role}"], "userId": "nope"}, "no user 'nope'"),
    "assign_no_roles": ("assignRoles", {"roleIds": [], "userId": "{bob}"}, "'roleids'"),
    "remove_both": (
        "removeRoles",
        {"roleIds": ["{user_role}"], "userId": "{bob}", "applicationId": "{service}"},
        "exactly one",
    ),
    "remove_m2m_role_from_user": ("removeRoles", {"roleIds": ["{m2m_role}"], "userId": "{bob}"}, "is an m2m role"),
}


@pytest.mark.parametrize(("tool", "arguments", "explanation"), BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_call_is_an_error_that_explains_and_writes_nothing(
    session: McpSession, core: IdentityCore, api: dict[str, Any], bob: User, service: Application, spa: Application,
    tool: str, arguments: dict[str, Any], explanation: str,
) -> None:  # fmt: skip
    ids = {
        "{api}": api["apiResourceId"], "{bob}": bob.id, "{service}": service.id, "{spa}": spa.id,
        "{user_role}": make_role(session, "Reader", "user", "read:invoices")["roleId"],
        "{m2m_role}": make_role(session, "Job", "m2m", "read:invoices")["roleId"],
    }  # fmt: skip

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(item) for item in value]
        return ids.get(value, value) if isinstance(value, str) else value

    before = state(core)
    result = session.call_tool(tool, {key: fill(value) for key, value in arguments.items()})
    assert result["isError"] is True, result
    assert explanation in text_of(result).lower()
    assert state(core) == before


# --- tenant isolation, read-only connections ----------------------------------------------------------------


def test_no_tool_reaches_another_tenants_resources_or_roles(
    session: McpSession, core: IdentityCore, api: dict[str, Any], bob: User
) -> None:
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    core.tenants.create("acme", "Acme", owner_user_id=admin.id, actor=Actor(tenant_id="admin", sub=admin.id))
    # The same identifier may be used by another tenant.
    acme_api = core.api_resources.create(
        "acme", name="Acme", identifier=API, actor=ACTOR, permissions=[("read:invoices", "")]
    )
    acme_role = core.roles.create(
        "acme", name="Acme reader", description="", role_type="user", actor=ACTOR,
        permissions=[(API, "read:invoices")],
    )  # fmt: skip
    before = state(core, "acme")
    for tool, arguments in (
        ("getApiResource", {"apiResourceId": acme_api.id}),
        ("updateApiResource", {"apiResourceId": acme_api.id, "name": "Mine"}),
        ("deleteApiResource", {"apiResourceId": acme_api.id, "confirm": True}),
        ("getRole", {"roleId": acme_role.id}),
        ("updateRole", {"roleId": acme_role.id, "name": "Mine"}),
        ("deleteRole", {"roleId": acme_role.id, "confirm": True}),
        ("assignRoles", {"roleIds": [acme_role.id], "userId": bob.id}),
    ):
        result = session.call_tool(tool, arguments)
        assert result["isError"] is True and "in this tenant" in text_of(result), (tool, text_of(result))
    assert state(core, "acme") == before
    assert [r["apiResourceId"] for r in ok(session.call_tool("listApiResources", {}))["apiResources"]] == [
        api["apiResourceId"]
    ]
    assert ok(session.call_tool("listRoles", {}))["roles"] == []


def test_a_read_only_connection_may_list_but_not_change(client: TestClient, core: IdentityCore) -> None:
    mcp = McpSession(client, obtain_access_token(client, allow_write=False).access_token)
    mcp.initialize()
    names = {tool["name"] for tool in mcp.list_tools()}
    assert {"listApiResources", "getApiResource", "listRoles", "getRole"} <= names
    assert not names & {"createApiResource", "updateApiResource", "deleteApiResource", "createRole", "assignRoles"}
    result = mcp.call_tool("createApiResource", {"name": "X", "identifier": "https://x.example"})
    assert result["isError"] is True and core.api_resources.list(TENANT) == []


def test_deleting_a_holder_takes_it_off_its_roles(
    session: McpSession, core: IdentityCore, api: dict[str, Any], bob: User, service: Application
) -> None:
    reader = make_role(session, "Reader", "user", "read:invoices")
    job = make_role(session, "Job", "m2m", "read:invoices")
    ok(session.call_tool("assignRoles", {"roleIds": [reader["roleId"]], "userId": bob.id}))
    ok(session.call_tool("assignRoles", {"roleIds": [job["roleId"]], "applicationId": service.id}))
    ok(session.call_tool("deleteUser", {"userId": bob.id, "confirm": True}))
    ok(session.call_tool("deleteApplication", {"applicationId": service.id, "confirm": True}))
    assert ok(session.call_tool("getRole", {"roleId": reader["roleId"]}))["userCount"] == 0
    assert ok(session.call_tool("getRole", {"roleId": job["roleId"]}))["applicationCount"] == 0


@pytest.fixture
def served(settings: Settings, core: IdentityCore) -> Iterator[str]:
    with serve_in_thread(create_app(settings, core)) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.parametrize("confirmed", [True, False], ids=["user_confirms", "user_declines"])
async def test_delete_role_and_api_resource_ask_the_user_through_elicitation(
    served: str, client: TestClient, core: IdentityCore, confirmed: bool
) -> None:
    # The database work of the test itself runs in a worker thread too: the loop guard refuses it on the loop.
    resource = await anyio.to_thread.run_sync(
        lambda: core.api_resources.create(TENANT, name="Invoices", identifier=API, actor=ACTOR, permissions=[("r", "")])
    )
    role = await anyio.to_thread.run_sync(
        lambda: core.roles.create(
            TENANT, name="Reader", description="", role_type="user", actor=ACTOR, permissions=[(API, "r")]
        )
    )
    questions: list[str] = []

    async def ask_user(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        questions.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": confirmed})

    token = obtain_access_token(client).access_token
    with anyio.fail_after(30):
        async with eliciting_client(served, token, ask_user) as mcp:
            deleted_role = await mcp.call_tool("deleteRole", {"roleId": role.id, "confirm": True})
            deleted_api = await mcp.call_tool("deleteApiResource", {"apiResourceId": resource.id, "confirm": True})

    assert len(questions) == 2 and "Reader" in questions[0] and API in questions[1]
    assert deleted_role.is_error is not confirmed and deleted_api.is_error is not confirmed
    assert (await anyio.to_thread.run_sync(core.roles.list, TENANT) == []) is confirmed
    assert (await anyio.to_thread.run_sync(core.api_resources.list, TENANT) == []) is confirmed

"""The user tools over /mcp with a real token: each tool's effect in the core, bad input as an actionable tool error
that writes nothing, confirmation of deletes, tenant isolation, read-only connections, and no password anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import Actor, User
from idp_mcp.errors import NotFound
from idp_mcp.settings import Settings
from tests.support.elicitation import eliciting_client, serve_in_thread
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import IssuedToken

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "violet staple horizon 7"


def make_user(core: IdentityCore, tenant: str = TENANT, **fields: Any) -> User:
    values = {"email": "bob@example.com", "username": "bob", "name": "Bob", **fields}
    return anyio.run(lambda: core.tenant_users.create(tenant, password=PASSWORD, actor=ACTOR, **values))


@pytest.fixture
def bob(core: IdentityCore) -> User:
    return make_user(core)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def state(core: IdentityCore, tenant: str = TENANT) -> tuple[Any, ...]:
    """Everything a user tool could write: the users, and audit rows (tool calls aside)."""
    users = core.tenant_users.list(tenant, query=None, page=1, page_size=100)
    changes = [entry.action for entry in core.audit.recent(tenant, limit=500) if not entry.action.startswith("tool.")]
    return users, changes


USER_FIELDS = {"userId", "email", "username", "name", "emailVerified", "suspended", "createdAt"}


# --- createUser -----------------------------------------------------------------------------------------


def test_create_user_with_email_username_and_name(session: McpSession, core: IdentityCore) -> None:
    result = session.call_tool(
        "createUser",
        {"email": "Alice@Example.com", "username": "alice", "password": PASSWORD, "name": " Alice  Liddell "},
    )

    created = ok(result)
    assert set(created) == USER_FIELDS
    user = core.tenant_users.get(TENANT, created["userId"])
    assert (user.email, user.username, user.name, user.suspended) == (
        "alice@example.com",
        "alice",
        "Alice Liddell",
        False,
    )
    assert created["email"] == "alice@example.com" and created["name"] == "Alice Liddell"
    assert created["suspended"] is False and created["createdAt"].endswith("Z")
    assert created["emailVerified"] is False and user.email_verified is False  # unproven unless said otherwise
    serialised = json.dumps(result)
    assert PASSWORD not in serialised and "argon2" not in serialised and "password" not in serialised.lower()
    # The password works: the user can sign in with it.
    assert anyio.run(core.users.authenticate, TENANT, "alice", PASSWORD).id == user.id


def test_create_user_with_an_email_the_administrator_vouches_for(session: McpSession, core: IdentityCore) -> None:
    created = ok(
        session.call_tool("createUser", {"email": "vera@example.com", "password": PASSWORD, "emailVerified": True})
    )

    assert created["emailVerified"] is True
    assert core.tenant_users.get(TENANT, created["userId"]).email_verified is True


def test_create_user_marked_verified_without_an_email_is_refused(session: McpSession, core: IdentityCore) -> None:
    before = state(core)

    result = session.call_tool("createUser", {"username": "nomail", "password": PASSWORD, "emailVerified": True})

    assert result["isError"] is True and "emailVerified needs an email address" in text_of(result)
    assert state(core) == before


def test_create_user_with_a_username_only(session: McpSession, core: IdentityCore) -> None:
    created = ok(session.call_tool("createUser", {"username": "carol", "password": PASSWORD}))

    user = core.tenant_users.get(TENANT, created["userId"])
    assert (user.email, user.username, user.name) == (None, "carol", None)


# --- listUsers, getUser ---------------------------------------------------------------------------------


def test_list_users_pages_and_searches(session: McpSession, core: IdentityCore) -> None:
    users = [make_user(core, email=f"user{i}@example.com", username=f"user{i}", name=f"User {i}") for i in range(3)]
    make_user(core, email="zed@other.org", username="zed", name="Zed")

    first = ok(session.call_tool("listUsers", {"pageSize": 2}))
    second = ok(session.call_tool("listUsers", {"page": 2, "pageSize": 2}))
    found = ok(session.call_tool("listUsers", {"query": "other.org"}))

    assert (first["total"], first["page"], first["pageSize"], first["hasMore"]) == (4, 1, 2, True)
    assert (second["total"], second["hasMore"]) == (4, False)
    listed = [user["userId"] for user in first["users"] + second["users"]]
    everyone, total = core.tenant_users.list(TENANT, query=None, page=1, page_size=100)
    assert listed == [user.id for user in everyone] and total == 4
    assert {user.id for user in users} < set(listed)
    assert [user["username"] for user in found["users"]] == ["zed"] and found["total"] == 1
    assert all(set(user) == USER_FIELDS for user in first["users"])


def test_get_user(session: McpSession, bob: User) -> None:
    got = ok(session.call_tool("getUser", {"userId": bob.id}))

    assert got["userId"] == bob.id
    assert (got["email"], got["username"], got["name"], got["suspended"]) == ("bob@example.com", "bob", "Bob", False)
    assert got["emailVerified"] is False


def test_update_user_marks_the_email_verified_and_unverified(
    session: McpSession, core: IdentityCore, bob: User
) -> None:
    verified = ok(session.call_tool("updateUser", {"userId": bob.id, "emailVerified": True}))

    assert verified["changed"] == ["emailVerified"] and verified["emailVerified"] is True
    assert core.tenant_users.get(TENANT, bob.id).email_verified is True
    assert ok(session.call_tool("getUser", {"userId": bob.id}))["emailVerified"] is True

    unverified = ok(session.call_tool("updateUser", {"userId": bob.id, "emailVerified": False}))

    assert unverified["changed"] == ["emailVerified"]
    assert core.tenant_users.get(TENANT, bob.id).email_verified is False


# --- updateUser -----------------------------------------------------------------------------------------


def test_update_user_suspends_and_renames(session: McpSession, core: IdentityCore, bob: User) -> None:
    updated = ok(session.call_tool("updateUser", {"userId": bob.id, "name": "Robert", "suspended": True}))

    user = core.tenant_users.get(TENANT, bob.id)
    assert (user.name, user.suspended) == ("Robert", True)
    assert updated["changed"] == ["name", "suspended"]
    assert updated["suspended"] is True and updated["name"] == "Robert"
    assert "user.update" in state(core)[1]


def test_update_user_reactivates(session: McpSession, core: IdentityCore, bob: User) -> None:
    core.tenant_users.update(TENANT, bob.id, UserChanges(suspended=True), ACTOR)

    updated = ok(session.call_tool("updateUser", {"userId": bob.id, "suspended": False}))

    assert updated["changed"] == ["suspended"]
    assert core.tenant_users.get(TENANT, bob.id).suspended is False


def test_update_user_with_the_same_values_changes_nothing(session: McpSession, core: IdentityCore, bob: User) -> None:
    before = state(core)

    updated = ok(session.call_tool("updateUser", {"userId": bob.id, "name": "Bob", "suspended": False}))

    assert updated["changed"] == []
    assert state(core) == before


# --- deleteUser -----------------------------------------------------------------------------------------


def test_delete_user_without_confirm_asks_for_confirmation_and_deletes_nothing(
    session: McpSession, core: IdentityCore, bob: User
) -> None:
    before = state(core)

    result = session.call_tool("deleteUser", {"userId": bob.id})

    assert result["isError"] is True
    text = text_of(result)
    assert "confirm: true" in text and "bob@example.com" in text and "ask the user" in text.lower()
    assert state(core) == before


def test_delete_user_with_confirm_deletes_them(session: McpSession, core: IdentityCore, bob: User) -> None:
    deleted = ok(session.call_tool("deleteUser", {"userId": bob.id, "confirm": True}))

    assert deleted == {"userId": bob.id, "deleted": True}
    with pytest.raises(NotFound):
        core.tenant_users.get(TENANT, bob.id)
    assert "user.delete" in state(core)[1]


@pytest.fixture
def served(settings: Settings, core: IdentityCore) -> Iterator[str]:
    with serve_in_thread(create_app(settings, core)) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.parametrize("confirmed", [True, False], ids=["user_confirms", "user_declines"])
async def test_delete_user_asks_the_user_through_elicitation(
    served: str, issued: IssuedToken, core: IdentityCore, bob: User, confirmed: bool
) -> None:
    questions: list[str] = []

    async def ask_user(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        questions.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": confirmed})

    with anyio.fail_after(30):
        async with eliciting_client(served, issued.access_token, ask_user) as mcp:
            result = await mcp.call_tool("deleteUser", {"userId": bob.id, "confirm": True})

    assert len(questions) == 1 and "bob@example.com" in questions[0]
    listed, _total = await anyio.to_thread.run_sync(
        lambda: core.tenant_users.list(TENANT, query=None, page=1, page_size=100)
    )
    remaining = {user.id for user in listed}
    assert result.is_error is not confirmed
    assert (bob.id in remaining) is not confirmed


# --- bad input: an actionable error, nothing written -----------------------------------------------------

BAD_CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "no_email_and_no_username": ("createUser", {"password": PASSWORD, "name": "Nobody"}, "an email, a username"),
    "bad_email": ("createUser", {"email": "not-an-email", "password": PASSWORD}, "not a valid email address"),
    "short_password": ("createUser", {"username": "dave", "password": "short"}, "at least 8 characters"),
    "long_password": ("createUser", {"username": "dave", "password": "p" * 300}, "at most 256 characters"),
    "common_password": ("createUser", {"username": "dave", "password": "password123"}, "common password"),
    "password_with_the_username": (
        "createUser",
        {"username": "dave", "password": "dave-is-great-1"},
        "must not contain your email or username",
    ),
    # The agent learns who has it already, so it can use that user instead of guessing.
    "taken_email": ("createUser", {"email": "BOB@example.com", "password": PASSWORD}, "user {bob} has this email"),
    "taken_username": (
        "createUser",
        {"username": "bob", "password": PASSWORD},
        "user {bob} has this email or username",
    ),
    "bad_username": ("createUser", {"username": "9lives", "password": PASSWORD}, "starting with a letter"),
    "email_too_long": ("createUser", {"email": "x" * 300 + "@example.com", "password": PASSWORD}, "'email'"),
    "name_too_long": ("createUser", {"username": "dave", "password": PASSWORD, "name": "x" * 129}, "'name'"),
    "password_hash_as_an_argument": (
        "createUser",
        {"username": "dave", "password": PASSWORD, "passwordHash": "$argon2id$"},
        "'passwordhash' is not an argument",
    ),
    "page_zero": ("listUsers", {"page": 0}, "'page'"),
    "page_size_too_big": ("listUsers", {"pageSize": 101}, "'pagesize'"),
    "query_too_long": ("listUsers", {"query": "x" * 101}, "'query'"),
    "get_unknown_user": ("getUser", {"userId": "nope"}, "no user 'nope'"),
    "get_with_a_too_long_id": ("getUser", {"userId": "x" * 65}, "'userid'"),
    "update_unknown_user": ("updateUser", {"userId": "nope", "suspended": True}, "no user"),
    "update_without_changes": ("updateUser", {"userId": "{bob}"}, "at least one field"),
    "update_name_too_long": ("updateUser", {"userId": "{bob}", "name": "x" * 129}, "'name'"),
    "update_the_email": ("updateUser", {"userId": "{bob}", "email": "b@example.com"}, "'email' is not an argument"),
    "delete_unknown_user": ("deleteUser", {"userId": "nope", "confirm": True}, "no user"),
}


@pytest.mark.parametrize(("tool", "arguments", "explanation"), BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_call_is_an_error_that_explains_and_writes_nothing(
    session: McpSession, core: IdentityCore, bob: User, tool: str, arguments: dict[str, Any], explanation: str
) -> None:
    arguments = {key: bob.id if value == "{bob}" else value for key, value in arguments.items()}
    explanation = explanation.replace("{bob}", bob.id)
    before = state(core)

    result = session.call_tool(tool, arguments)

    assert result["isError"] is True
    text = text_of(result)
    assert explanation in text.lower(), text
    assert "x" * 100 not in text and "p" * 100 not in text  # long values are not echoed back
    assert PASSWORD not in text
    assert state(core) == before


# --- tenant isolation, read-only connections, audit -----------------------------------------------------


@pytest.fixture
def acme_user(core: IdentityCore) -> User:
    admin = core.users.find_administrator("ada@example.com")
    assert admin is not None
    core.tenants.create("acme", "Acme", owner_user_id=admin.id, actor=Actor(tenant_id="admin", sub=admin.id))
    return make_user(core, "acme", email="eve@acme.example", username="eve", name="Eve")


ISOLATION_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "get": ("getUser", {}),
    "update": ("updateUser", {"name": "Taken over", "suspended": True}),
    "delete": ("deleteUser", {"confirm": True}),
}


@pytest.mark.parametrize(("tool", "arguments"), ISOLATION_CALLS.values(), ids=ISOLATION_CALLS.keys())
def test_a_token_for_one_tenant_cannot_reach_another_tenants_user(
    session: McpSession, core: IdentityCore, acme_user: User, tool: str, arguments: dict[str, Any]
) -> None:
    before = state(core, "acme")

    result = session.call_tool(tool, {"userId": acme_user.id, **arguments})

    assert result["isError"] is True
    assert f"no user '{acme_user.id}' in this tenant" in text_of(result).lower()
    assert state(core, "acme") == before
    assert core.tenant_users.get("acme", acme_user.id) == acme_user


def test_list_users_shows_only_the_tenant_of_the_token(session: McpSession, acme_user: User, bob: User) -> None:
    listed = ok(session.call_tool("listUsers", {"query": "e"}))

    assert [user["userId"] for user in listed["users"]] == [bob.id]


def test_read_only_connection_sees_and_may_call_only_the_read_tools(
    read_only_session: McpSession, core: IdentityCore, bob: User
) -> None:
    names = {tool["name"] for tool in read_only_session.list_tools()}
    assert {"listUsers", "getUser"} <= names
    assert not names & {"createUser", "updateUser", "deleteUser"}
    before = state(core)

    result = read_only_session.call_tool("updateUser", {"userId": bob.id, "suspended": True})

    assert result["isError"] is True and "write access" in text_of(result)
    assert ok(read_only_session.call_tool("getUser", {"userId": bob.id}))["suspended"] is False
    assert state(core) == before


def test_no_password_appears_in_the_audit_log(session: McpSession, core: IdentityCore, issued: IssuedToken) -> None:
    created = ok(session.call_tool("createUser", {"email": "frank@example.com", "password": PASSWORD}))
    session.call_tool("createUser", {"username": "gina", "password": "password123"})  # refused as common
    ok(session.call_tool("updateUser", {"userId": created["userId"], "suspended": True}))
    ok(session.call_tool("deleteUser", {"userId": created["userId"], "confirm": True}))

    entries = [*core.audit.recent(TENANT, limit=500), *core.audit.recent("admin", limit=500)]
    by_action = {entry.action: entry for entry in entries}
    assert {"user.create", "user.update", "user.delete", "tool.createUser"} <= set(by_action)
    create = by_action["user.create"]
    assert (create.actor_sub, create.actor_client_id, create.actor_client_name) == (
        issued.user_id,
        issued.client_id,
        "Claude Test",
    )
    serialised = json.dumps([[entry.action, entry.target_id, entry.details] for entry in entries])
    assert PASSWORD not in serialised and "password123" not in serialised and "$argon2" not in serialised

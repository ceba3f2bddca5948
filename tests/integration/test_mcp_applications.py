"""The application tools over /mcp with a real token: each tool's effect in the core, bad input as an actionable
tool error that writes nothing, confirmation of deletes (argument and elicitation), tenant isolation, read-only
connections, and no secret value in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import anyio
import mcp_types as types
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.errors import NotFound
from idp_mcp.settings import Settings
from tests.support.elicitation import eliciting_client, serve_in_thread
from tests.support.inprocess import PUBLIC_URL
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import IssuedToken

TENANT = "default"
ISSUER = f"{PUBLIC_URL}/t/{TENANT}/oidc"
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
CALLBACK = "https://app.example.com/callback"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


def console_url(application_id: str, tenant: str = TENANT) -> str:
    return f"{PUBLIC_URL}/console/t/{tenant}/applications/{application_id}"


@pytest.fixture
def web_app(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Web shop", app_type="traditional", actor=ACTOR, redirect_uris=[CALLBACK]
    )


@pytest.fixture
def spa(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Dashboard", app_type="spa", actor=ACTOR, redirect_uris=["https://dash.example.com/cb"]
    )


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def state(core: IdentityCore, tenant: str = TENANT) -> tuple[Any, ...]:
    """Everything an application tool could write: applications, their secrets, and audit rows (tool calls aside)."""
    apps = core.applications.list(tenant)
    secrets = {app.id: core.secrets.list(tenant, app.id) for app in apps}
    changes = [entry.action for entry in core.audit.recent(tenant, limit=500) if not entry.action.startswith("tool.")]
    return apps, secrets, changes


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- createApplication ----------------------------------------------------------------------------------


def test_create_traditional_application_returns_ids_urls_and_a_temporary_secret(
    session: McpSession, core: IdentityCore, settings: Any
) -> None:
    before = datetime.now().astimezone()

    created = ok(
        session.call_tool(
            "createApplication",
            {
                "name": "Web shop",
                "type": "traditional",
                "description": "The storefront",
                "redirectUris": [CALLBACK],
                "postLogoutRedirectUris": ["https://app.example.com/"],
            },
        )
    )

    app = core.applications.get(TENANT, created["applicationId"])
    assert created["clientId"] == created["applicationId"] == app.id
    assert (created["name"], created["type"], created["description"]) == ("Web shop", "traditional", "The storefront")
    assert app.redirect_uris == (CALLBACK,) and created["redirectUris"] == [CALLBACK]
    assert app.post_logout_redirect_uris == ("https://app.example.com/",)
    assert created["corsOrigins"] == []
    assert created["idTokenAlg"] == app.id_token_alg == "ES256"
    assert created["issuer"] == ISSUER
    assert created["discoveryUrl"] == DISCOVERY
    assert created["consoleUrl"] == console_url(app.id)
    secret = created["temporarySecret"]
    expires_at = parse_time(secret["expiresAt"])
    assert expires_at.tzinfo is not None
    assert before < expires_at <= before + timedelta(seconds=settings.temporary_secret_ttl + 60)
    assert core.secrets.verify(TENANT, app.id, secret["value"])
    [stored] = core.secrets.list(TENANT, app.id)
    assert (stored.kind, stored.active, stored.last_four) == ("temporary", True, secret["value"][-4:])
    hint = created["next"]
    assert "environment variable" in hint and "never in source code" in hint
    assert console_url(app.id) in hint and "production secret" in hint


def test_create_spa_has_no_secret_and_keeps_cors_origins(session: McpSession, core: IdentityCore) -> None:
    created = ok(
        session.call_tool(
            "createApplication",
            {
                "name": "Dashboard",
                "type": "spa",
                "redirectUris": ["https://dash.example.com/cb", "http://localhost:5173/cb"],
                "corsOrigins": ["https://dash.example.com"],
                "idTokenAlg": "RS256",
            },
        )
    )

    app = core.applications.get(TENANT, created["applicationId"])
    assert app.type == "spa" and app.id_token_alg == "RS256"
    assert app.cors_origins == ("https://dash.example.com",)
    assert created["temporarySecret"] is None
    assert core.secrets.list(TENANT, app.id) == []
    assert "PKCE" in created["next"]


def test_create_m2m_has_a_secret_and_no_redirect_uris(session: McpSession, core: IdentityCore) -> None:
    created = ok(session.call_tool("createApplication", {"name": "Nightly job", "type": "m2m"}))

    app = core.applications.get(TENANT, created["applicationId"])
    assert app.type == "m2m" and app.redirect_uris == ()
    assert core.secrets.verify(TENANT, app.id, created["temporarySecret"]["value"])
    assert "client_credentials" in created["next"]


def test_create_native_app_with_a_private_use_scheme(session: McpSession, core: IdentityCore) -> None:
    created = ok(
        session.call_tool(
            "createApplication",
            {"name": "Phone app", "type": "native", "redirectUris": ["com.example.app:/oauth/callback"]},
        )
    )

    app = core.applications.get(TENANT, created["applicationId"])
    assert app.type == "native" and app.redirect_uris == ("com.example.app:/oauth/callback",)
    assert created["temporarySecret"] is None


# --- listApplications, getApplication ---------------------------------------------------------------------


def test_list_applications_lists_the_tenants_applications_without_secrets(
    session: McpSession, core: IdentityCore, spa: Application
) -> None:
    created = ok(session.call_tool("createApplication", {"name": "Job", "type": "m2m"}))

    result = session.call_tool("listApplications", {})

    listed = ok(result)["applications"]
    assert {app["applicationId"] for app in listed} == {app.id for app in core.applications.list(TENANT)}
    assert {app["applicationId"] for app in listed} == {spa.id, created["applicationId"]}
    by_id = {app["applicationId"]: app for app in listed}
    assert by_id[spa.id]["consoleUrl"] == console_url(spa.id)
    assert by_id[spa.id]["discoveryUrl"] == DISCOVERY
    assert created["temporarySecret"]["value"] not in json.dumps(result)


def test_get_application_describes_secrets_without_their_values(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    issued = core.secrets.create(TENANT, web_app.id, "temporary", ACTOR)

    result = session.call_tool("getApplication", {"applicationId": web_app.id})

    got = ok(result)
    assert got["applicationId"] == web_app.id and got["name"] == "Web shop"
    assert got["redirectUris"] == [CALLBACK]
    assert got["consoleUrl"] == console_url(web_app.id)
    [secret] = got["secrets"]
    assert set(secret) == {"secretId", "kind", "lastFour", "createdAt", "expiresAt", "revokedAt", "active"}
    assert secret["secretId"] == issued.id and secret["revokedAt"] is None
    assert secret["kind"] == "temporary" and secret["active"] is True
    assert secret["lastFour"] == issued.value[-4:]
    assert issued.expires_at is not None and parse_time(secret["expiresAt"]) == issued.expires_at
    assert issued.value not in json.dumps(result)


def test_get_application_of_a_public_client_has_no_secrets(session: McpSession, spa: Application) -> None:
    assert ok(session.call_tool("getApplication", {"applicationId": spa.id}))["secrets"] == []


# --- updateApplication ----------------------------------------------------------------------------------


def test_update_application_changes_only_the_fields_given(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    new_uris = [CALLBACK, "https://app.example.com/other"]

    updated = ok(
        session.call_tool(
            "updateApplication", {"applicationId": web_app.id, "name": "Web shop 2", "redirectUris": new_uris}
        )
    )

    app = core.applications.get(TENANT, web_app.id)
    assert app.name == "Web shop 2" and list(app.redirect_uris) == new_uris
    assert app.type == "traditional" and app.id_token_alg == web_app.id_token_alg
    assert updated["name"] == "Web shop 2" and updated["redirectUris"] == new_uris
    assert updated["changed"] == ["name", "redirectUris"]
    assert "application.update" in state(core)[2]


def test_update_application_with_the_same_values_changes_nothing(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    before = state(core)

    updated = ok(session.call_tool("updateApplication", {"applicationId": web_app.id, "name": "Web shop"}))

    assert updated["changed"] == []
    assert state(core) == before


# --- deleteApplication ----------------------------------------------------------------------------------


def test_delete_application_without_confirm_asks_for_confirmation_and_deletes_nothing(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    before = state(core)

    result = session.call_tool("deleteApplication", {"applicationId": web_app.id})

    assert result["isError"] is True
    text = text_of(result)
    assert "confirm: true" in text and "Web shop" in text and "ask the user" in text.lower()
    assert state(core) == before
    assert core.applications.get(TENANT, web_app.id) == web_app


def test_delete_application_with_confirm_deletes_it_and_its_secrets(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    core.secrets.create(TENANT, web_app.id, "temporary", ACTOR)

    deleted = ok(session.call_tool("deleteApplication", {"applicationId": web_app.id, "confirm": True}))

    assert deleted == {"applicationId": web_app.id, "name": "Web shop", "deleted": True}
    with pytest.raises(NotFound):
        core.applications.get(TENANT, web_app.id)
    assert core.secrets.list(TENANT, web_app.id) == []
    assert "application.delete" in state(core)[2]


# --- deleteApplication with a client that can ask its user (form elicitation) ----------------------------


@pytest.fixture
def served(settings: Settings, core: IdentityCore) -> Iterator[str]:
    with serve_in_thread(create_app(settings, core)) as url:
        yield url


NO_UI = types.ErrorData(code=types.INVALID_REQUEST, message="No way to ask the user here")
ANSWERS: dict[str, tuple[types.ElicitResult | types.ErrorData, dict[str, Any], str | None]] = {
    "user_confirms": (types.ElicitResult(action="accept", content={"confirm": True}), {}, None),
    "user_declines_though_the_agent_confirmed": (types.ElicitResult(action="decline"), {"confirm": True}, "did not"),
    "user_cancels": (types.ElicitResult(action="cancel"), {}, "did not confirm"),
    "user_submits_without_ticking": (types.ElicitResult(action="accept", content={"confirm": False}), {}, "did not"),
    # A client that declared elicitation but answers with an error: the agent's confirm argument decides.
    "client_cannot_ask_and_the_agent_confirmed": (NO_UI, {"confirm": True}, None),
    "client_cannot_ask_and_the_agent_did_not_confirm": (NO_UI, {}, "confirm: true"),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("answer", "arguments", "refusal"), ANSWERS.values(), ids=ANSWERS.keys())
async def test_delete_application_asks_the_user_through_elicitation(
    served: str,
    issued: IssuedToken,
    core: IdentityCore,
    web_app: Application,
    answer: types.ElicitResult | types.ErrorData,
    arguments: dict[str, Any],
    refusal: str | None,
) -> None:
    questions: list[types.ElicitRequestParams] = []

    async def ask_user(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        questions.append(params)
        return answer

    with anyio.fail_after(30):
        async with eliciting_client(served, issued.access_token, ask_user) as mcp:
            result = await mcp.call_tool("deleteApplication", {"applicationId": web_app.id, **arguments})

    [question] = questions
    assert isinstance(question, types.ElicitRequestFormParams)
    assert "Web shop" in question.message and web_app.id in question.message
    assert question.requested_schema["properties"]["confirm"]["type"] == "boolean"
    remaining = {app.id for app in await anyio.to_thread.run_sync(core.applications.list, TENANT)}
    if refusal is None:
        assert result.is_error is False, result.content
        assert result.structured_content == {"applicationId": web_app.id, "name": "Web shop", "deleted": True}
        assert web_app.id not in remaining
    else:
        assert result.is_error is True
        text = " ".join(item.text for item in result.content if isinstance(item, types.TextContent))
        assert refusal in text and "nothing was changed" in text
        assert web_app.id in remaining
        assert "application.delete" not in (await anyio.to_thread.run_sync(state, core))[2]


# --- temporary secrets ----------------------------------------------------------------------------------


def test_create_temporary_secret_adds_a_working_secret(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    first = core.secrets.create(TENANT, web_app.id, "temporary", ACTOR)

    created = ok(session.call_tool("createTemporarySecret", {"applicationId": web_app.id}))

    assert created["applicationId"] == web_app.id
    assert created["value"] != first.value
    assert core.secrets.verify(TENANT, web_app.id, created["value"])
    assert core.secrets.verify(TENANT, web_app.id, first.value)  # the earlier one still works until it expires
    assert parse_time(created["expiresAt"]) > datetime.now().astimezone()
    assert len(core.secrets.list(TENANT, web_app.id)) == 2
    assert "environment variable" in created["next"] and console_url(web_app.id) in created["next"]


def test_revoke_temporary_secrets_stops_every_one_now(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    secrets = [core.secrets.create(TENANT, web_app.id, "temporary", ACTOR) for _ in range(2)]
    production = core.secrets.create(TENANT, web_app.id, "production", ACTOR)

    revoked = ok(session.call_tool("revokeTemporarySecrets", {"applicationId": web_app.id}))

    assert revoked == {"applicationId": web_app.id, "revoked": 2}
    assert not any(core.secrets.verify(TENANT, web_app.id, secret.value) for secret in secrets)
    assert core.secrets.verify(TENANT, web_app.id, production.value)
    active = {(secret.kind, secret.active) for secret in core.secrets.list(TENANT, web_app.id)}
    assert active == {("temporary", False), ("production", True)}


def test_revoke_secret_stops_that_one_temporary_secret_now_and_names_it_in_the_audit(
    client: TestClient, session: McpSession, core: IdentityCore
) -> None:
    job = core.applications.create(TENANT, name="Job", app_type="m2m", actor=ACTOR)
    gone, kept = (core.secrets.create(TENANT, job.id, "temporary", ACTOR) for _ in range(2))
    listed = ok(session.call_tool("getApplication", {"applicationId": job.id}))["secrets"]
    assert {secret["secretId"] for secret in listed} == {gone.id, kept.id}

    def token(secret: str) -> int:
        response = client.post(
            f"/t/{TENANT}/oidc/token", data={"grant_type": "client_credentials"}, auth=(job.id, secret)
        )
        return response.status_code

    assert token(gone.value) == 200
    revoked = ok(session.call_tool("revokeSecret", {"applicationId": job.id, "secretId": gone.id}))

    assert revoked["secretId"] == gone.id and revoked["applicationId"] == job.id
    assert revoked["active"] is False and revoked["revokedAt"] and revoked["alreadyRevoked"] is False
    assert token(gone.value) == 401  # at once: secrets are read on every token request
    assert token(kept.value) == 200
    [entry] = [e for e in core.audit.recent(TENANT, limit=500) if e.action == "application.secret.revoke"]
    assert entry.details == {"secret_id": gone.id, "kind": "temporary"} and entry.target_id == job.id
    assert gone.value not in json.dumps([e.details for e in core.audit.recent(TENANT, limit=500)])

    again = ok(session.call_tool("revokeSecret", {"applicationId": job.id, "secretId": gone.id}))
    assert again["alreadyRevoked"] is True
    assert len([e for e in core.audit.recent(TENANT, limit=500) if e.action == "application.secret.revoke"]) == 1


def test_revoke_secret_refuses_a_production_secret_with_the_console_link(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    production = core.secrets.create(TENANT, web_app.id, "production", ACTOR)
    before = state(core)

    result = session.call_tool("revokeSecret", {"applicationId": web_app.id, "secretId": production.id})

    assert result["isError"] is True
    text = text_of(result)
    assert "production secret" in text and console_url(web_app.id) in text
    assert state(core) == before
    assert core.secrets.verify(TENANT, web_app.id, production.value)


@pytest.mark.parametrize("whose", ["unknown", "another_application", "another_tenant"])
def test_revoke_secret_refuses_a_secret_that_is_not_this_applications(
    session: McpSession, core: IdentityCore, web_app: Application, whose: str
) -> None:
    if whose == "unknown":
        secret_id, check = "0123456789abcdef", None
    elif whose == "another_application":
        other = core.applications.create(TENANT, name="Other", app_type="m2m", actor=ACTOR)
        issued = core.secrets.create(TENANT, other.id, "temporary", ACTOR)
        secret_id, check = issued.id, (TENANT, other.id, issued.value)
    else:
        admin = core.users.find_administrator("ada@example.com")
        assert admin is not None
        core.tenants.create("acme", "Acme", owner_user_id=admin.id, actor=Actor(tenant_id="admin", sub=admin.id))
        acme = core.applications.create("acme", name="Acme", app_type="m2m", actor=ACTOR)
        issued = core.secrets.create("acme", acme.id, "temporary", ACTOR)
        secret_id, check = issued.id, ("acme", acme.id, issued.value)
    before = state(core), state(core, "acme")

    result = session.call_tool("revokeSecret", {"applicationId": web_app.id, "secretId": secret_id})

    assert result["isError"] is True
    assert f"no secret '{secret_id}' for this application" in text_of(result).lower()
    assert "getapplication" in text_of(result).lower()
    assert (state(core), state(core, "acme")) == before
    if check is not None:
        assert core.secrets.verify(*check)


# --- bad input: an actionable error, nothing written -----------------------------------------------------

TOO_LONG = "x" * 2001
BAD_CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "unknown_type": ("createApplication", {"name": "A", "type": "webapp", "redirectUris": [CALLBACK]}, "'type'"),
    "http_redirect_on_a_traditional_app": (
        "createApplication",
        {"name": "A", "type": "traditional", "redirectUris": ["http://example.com/cb"]},
        "use https",
    ),
    "redirect_with_a_fragment": (
        "createApplication",
        {"name": "A", "type": "traditional", "redirectUris": ["https://app.example.com/cb#top"]},
        "must not contain a fragment",
    ),
    "javascript_redirect": (
        "createApplication",
        {"name": "A", "type": "spa", "redirectUris": ["javascript:alert(1)"]},
        "scheme 'javascript' is not allowed",
    ),
    "private_scheme_on_a_confidential_app": (
        "createApplication",
        {"name": "A", "type": "traditional", "redirectUris": ["com.example.app:/cb"]},
        "private-use scheme",
    ),
    "m2m_with_redirect_uris": (
        "createApplication",
        {"name": "A", "type": "m2m", "redirectUris": [CALLBACK]},
        "machine-to-machine applications have no redirect uris",
    ),
    "spa_without_redirect_uris": ("createApplication", {"name": "A", "type": "spa"}, "at least one redirect uri"),
    "cors_on_a_traditional_app": (
        "createApplication",
        {"name": "A", "type": "traditional", "redirectUris": [CALLBACK], "corsOrigins": ["https://app.example.com"]},
        "single-page apps only",
    ),
    "cors_origin_with_a_path": (
        "createApplication",
        {"name": "A", "type": "spa", "redirectUris": [CALLBACK], "corsOrigins": ["https://app.example.com/x"]},
        "is not an origin",
    ),
    "name_too_long": ("createApplication", {"name": "x" * 500, "type": "m2m"}, "'name'"),
    "blank_name": ("createApplication", {"name": "   ", "type": "m2m"}, "name must not be empty"),
    "description_too_long": (
        "createApplication",
        {"name": "A", "type": "m2m", "description": "x" * 1001},
        "'description'",
    ),
    "redirect_uri_too_long": (
        "createApplication",
        {"name": "A", "type": "traditional", "redirectUris": [f"https://a.example.com/{TOO_LONG}"]},
        "'redirecturis.0'",
    ),
    "too_many_redirect_uris": (
        "createApplication",
        {"name": "A", "type": "traditional", "redirectUris": [f"https://a.example.com/{i}" for i in range(21)]},
        "'redirecturis'",
    ),
    "unknown_id_token_alg": ("createApplication", {"name": "A", "type": "m2m", "idTokenAlg": "HS256"}, "'idtokenalg'"),
    "secret_as_an_argument": (
        "createApplication",
        {"name": "A", "type": "m2m", "clientSecret": "mine"},
        "'clientsecret' is not an argument",
    ),
    "get_unknown_application": ("getApplication", {"applicationId": "nope"}, "no application 'nope'"),
    "get_with_a_too_long_id": ("getApplication", {"applicationId": "x" * 65}, "'applicationid'"),
    "update_unknown_application": ("updateApplication", {"applicationId": "nope", "name": "B"}, "no application"),
    "update_without_changes": ("updateApplication", {"applicationId": "{web}"}, "at least one field"),
    "update_to_a_javascript_redirect": (
        "updateApplication",
        {"applicationId": "{web}", "name": "Renamed", "redirectUris": ["javascript:alert(1)"]},
        "scheme 'javascript' is not allowed",
    ),
    "update_to_no_redirect_uris": (
        "updateApplication",
        {"applicationId": "{web}", "redirectUris": []},
        "at least one redirect uri",
    ),
    "update_cors_on_a_traditional_app": (
        "updateApplication",
        {"applicationId": "{web}", "corsOrigins": ["https://app.example.com"]},
        "single-page apps only",
    ),
    "update_name_too_long": ("updateApplication", {"applicationId": "{web}", "name": "x" * 129}, "'name'"),
    "update_the_type": ("updateApplication", {"applicationId": "{web}", "type": "spa"}, "'type' is not an argument"),
    "delete_unknown_application": (
        "deleteApplication",
        {"applicationId": "nope", "confirm": True},
        "no application",
    ),
    "secret_for_an_spa": ("createTemporarySecret", {"applicationId": "{spa}"}, "only confidential applications"),
    "secret_for_an_unknown_application": ("createTemporarySecret", {"applicationId": "nope"}, "no application"),
    "revoke_for_an_unknown_application": ("revokeTemporarySecrets", {"applicationId": "nope"}, "no application"),
    "revoke_one_for_an_unknown_application": (
        "revokeSecret",
        {"applicationId": "nope", "secretId": "0123456789abcdef"},
        "no application",
    ),
    "revoke_one_without_its_id": ("revokeSecret", {"applicationId": "{web}"}, "'secretid'"),
    "revoke_one_by_a_too_long_id": ("revokeSecret", {"applicationId": "{web}", "secretId": "x" * 33}, "'secretid'"),
}


@pytest.mark.parametrize(("tool", "arguments", "explanation"), BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_call_is_an_error_that_explains_and_writes_nothing(
    session: McpSession,
    core: IdentityCore,
    web_app: Application,
    spa: Application,
    tool: str,
    arguments: dict[str, Any],
    explanation: str,
) -> None:
    ids = {"{web}": web_app.id, "{spa}": spa.id}
    arguments = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in arguments.items()}
    before = state(core)

    result = session.call_tool(tool, arguments)

    assert result["isError"] is True
    text = text_of(result)
    assert explanation in text.lower(), text
    assert "x" * 200 not in text  # long values are not echoed back
    assert state(core) == before
    # Calls that reach the tool are audited as failures; malformed arguments are refused before that.
    audited = [entry.outcome for entry in core.audit.recent(TENANT, limit=500) if entry.action == f"tool.{tool}"]
    assert audited in ([], ["failure"])


# --- tenant isolation -----------------------------------------------------------------------------------


@pytest.fixture
def acme_app(core: IdentityCore) -> Application:
    admin = core.users.find_administrator("ada@example.com")
    assert admin is not None
    core.tenants.create("acme", "Acme", owner_user_id=admin.id, actor=Actor(tenant_id="admin", sub=admin.id))
    app = core.applications.create(
        "acme", name="Acme portal", app_type="traditional", actor=ACTOR, redirect_uris=[CALLBACK]
    )
    core.secrets.create("acme", app.id, "temporary", ACTOR)
    return app


ISOLATION_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "get": ("getApplication", {}),
    "update": ("updateApplication", {"name": "Taken over", "redirectUris": ["https://evil.example.com/cb"]}),
    "delete": ("deleteApplication", {"confirm": True}),
    "create_secret": ("createTemporarySecret", {}),
    "revoke_secrets": ("revokeTemporarySecrets", {}),
    "revoke_one_secret": ("revokeSecret", {"secretId": "0123456789abcdef"}),
}


@pytest.mark.parametrize(("tool", "arguments"), ISOLATION_CALLS.values(), ids=ISOLATION_CALLS.keys())
def test_a_token_for_one_tenant_cannot_reach_another_tenants_application(
    session: McpSession, core: IdentityCore, acme_app: Application, tool: str, arguments: dict[str, Any]
) -> None:
    before = state(core, "acme")

    result = session.call_tool(tool, {"applicationId": acme_app.id, **arguments})

    assert result["isError"] is True
    assert f"no application '{acme_app.id}' in this tenant" in text_of(result).lower()
    assert state(core, "acme") == before
    assert core.applications.get("acme", acme_app.id) == acme_app


def test_list_applications_shows_only_the_tenant_of_the_token(
    session: McpSession, acme_app: Application, web_app: Application
) -> None:
    listed = ok(session.call_tool("listApplications", {}))["applications"]

    assert [app["applicationId"] for app in listed] == [web_app.id]


# --- read-only connections, audit -----------------------------------------------------------------------

WRITE_TOOLS = {
    "createApplication", "updateApplication", "deleteApplication", "createTemporarySecret", "revokeTemporarySecrets",
    "revokeSecret",
}  # fmt: skip


def test_read_only_connection_sees_and_may_call_only_the_read_tools(
    read_only_session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    names = {tool["name"] for tool in read_only_session.list_tools()}
    assert {"listApplications", "getApplication"} <= names
    assert not names & WRITE_TOOLS
    before = state(core)

    result = read_only_session.call_tool("createApplication", {"name": "A", "type": "m2m"})

    assert result["isError"] is True and "write access" in text_of(result)
    assert ok(read_only_session.call_tool("getApplication", {"applicationId": web_app.id}))["name"] == "Web shop"
    assert state(core) == before


def test_changes_are_audited_with_the_human_and_the_agent(
    session: McpSession, core: IdentityCore, issued: IssuedToken
) -> None:
    created = ok(session.call_tool("createApplication", {"name": "Job", "type": "m2m"}))

    entries = {entry.action: entry for entry in core.audit.recent(TENANT, limit=500)}
    for action in ("application.create", "application.secret.create_temporary", "tool.createApplication"):
        entry = entries[action]
        assert entry.outcome == "success", action
        assert (entry.actor_sub, entry.actor_client_id, entry.actor_client_name) == (
            issued.user_id,
            issued.client_id,
            "Claude Test",
        ), action
    assert entries["application.create"].target_id == created["applicationId"]


def test_no_secret_value_appears_in_the_audit_log(
    session: McpSession, core: IdentityCore, web_app: Application
) -> None:
    values = [ok(session.call_tool("createApplication", {"name": "Job", "type": "m2m"}))["temporarySecret"]["value"]]
    values.append(ok(session.call_tool("createTemporarySecret", {"applicationId": web_app.id}))["value"])
    ok(session.call_tool("getApplication", {"applicationId": web_app.id}))
    ok(session.call_tool("revokeTemporarySecrets", {"applicationId": web_app.id}))
    ok(session.call_tool("deleteApplication", {"applicationId": web_app.id, "confirm": True}))

    entries = [*core.audit.recent(TENANT, limit=500), *core.audit.recent("admin", limit=500)]
    assert len(entries) > 8
    serialised = json.dumps([[entry.action, entry.target_id, entry.details] for entry in entries])
    for value in values:
        assert value not in serialised

"""The connector tools over /mcp with a real token: what each answers (callbackUrl, secretUrl, waitingForSecret,
never a secret), refusals that say what to fix and write nothing, confirmed deletes, testConnector against a real
provider on a loopback port, social buttons, identities in getUser and unlinkIdentity that keeps a way in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.connectors import ConnectorInput, UpstreamProfile
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support.elicitation import eliciting_client, serve_in_thread
from tests.support.inprocess import PUBLIC_URL
from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import obtain_access_token
from tests.support.upstream import CLIENT_ID, CLIENT_SECRET, FakeProvider, run_provider

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "violet staple horizon 7"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, cimd_allow_private_addresses=True
    )


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with run_provider() as upstream:
        yield upstream


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def refused(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    return text_of(result)


def written(core: IdentityCore) -> tuple[Any, ...]:
    changes = [e.action for e in core.audit.recent(TENANT, limit=500) if not e.action.startswith("tool.")]
    return tuple(core.connectors.list(TENANT)), tuple(changes)


def test_create_a_google_connector_gives_the_callback_and_a_secret_link(
    session: McpSession, core: IdentityCore
) -> None:
    created = ok(session.call_tool("createConnector", {"preset": "google", "name": "Google", "clientId": "g-123"}))

    connector_id = created["connectorId"]
    assert created["kind"] == "oidc" and created["issuer"] == "https://accounts.google.com"
    assert created["scopes"] == ["openid", "email", "profile"] and created["label"] == "Google"
    assert created["callbackUrl"] == f"{PUBLIC_URL}/t/default/oidc/connectors/{connector_id}/callback"
    assert created["secretUrl"].startswith(f"{PUBLIC_URL}/console/t/default/connectors/{connector_id}/secret?expires=")
    assert created["waitingForSecret"] is True and created["secretSet"] is False
    assert "never in this chat" in created["next"]
    got = ok(session.call_tool("getConnector", {"connectorId": connector_id}))
    assert got["waitingForSecret"] is True and got["callbackUrl"] == created["callbackUrl"]
    listed = ok(session.call_tool("listConnectors", {}))
    assert [c["connectorId"] for c in listed["connectors"]] == [connector_id] and "github" in listed["presets"]
    [row] = [e for e in core.audit.recent(TENANT, limit=50) if e.action == "connector.create"]
    assert row.target_id == connector_id and row.details["client_id"] == "g-123"


def test_the_secret_never_appears_in_a_tool_result_or_audit_row(session: McpSession, core: IdentityCore) -> None:
    created = ok(session.call_tool("createConnector", {"preset": "github", "name": "GitHub", "clientId": "gh"}))
    core.connectors.set_secret(TENANT, created["connectorId"], "gh-secret-value-1234", ACTOR)

    results = [
        session.call_tool("getConnector", {"connectorId": created["connectorId"]}),
        session.call_tool("listConnectors", {}),
        session.call_tool("updateConnector", {"connectorId": created["connectorId"], "name": "GitHub SSO"}),
    ]

    shown = json.dumps(results) + json.dumps([(e.action, e.details) for e in core.audit.recent(TENANT, limit=100)])
    assert "gh-secret-value" not in shown
    assert ok(results[0])["secretSet"] is True and ok(results[0])["secretLastFour"] == "1234"
    assert ok(results[0])["waitingForSecret"] is False


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"kind": "oidc", "name": "X", "clientId": "x"}, "needs issuer"),
        ({"kind": "oidc", "name": "X", "clientId": "x", "issuer": "ftp://example.com"}, "https URL"),
        ({"kind": "oauth2", "name": "X", "clientId": "x", "endpoints": {"authorization": "https://a.example/auth"}},
         "needs endpoints.token"),
        ({"preset": "google", "kind": "oauth2", "name": "X", "clientId": "x"}, "leave kind out"),
        ({"kind": "oidc", "name": "X", "clientId": "x", "issuer": "https://a.example", "emailDomains": ["no domain"]},
         "is not an email domain"),
        ({"kind": "oidc", "name": "X", "clientId": "x", "issuer": "https://a.example", "scopes": ['bad"scope']},
         "not a valid scope"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_what_to_fix_and_writes_nothing(
    session: McpSession, core: IdentityCore, arguments: dict[str, Any], says: str
) -> None:
    before = written(core)
    assert says in refused(session.call_tool("createConnector", arguments))
    assert written(core) == before


def test_an_email_domain_goes_to_one_connector_only(session: McpSession, core: IdentityCore) -> None:
    base = {"kind": "oidc", "clientId": "x", "issuer": "https://idp.acme.example"}
    first = ok(session.call_tool("createConnector", {**base, "name": "Acme", "emailDomains": ["acme.com"]}))
    second = ok(session.call_tool("createConnector", {**base, "name": "Other"}))
    before = written(core)

    message = refused(
        session.call_tool("updateConnector", {"connectorId": second["connectorId"], "emailDomains": ["ACME.com"]})
    )

    assert "acme.com already goes to the connector 'Acme'" in message and first["connectorId"] in message
    assert written(core) == before


def test_update_says_what_changed(session: McpSession) -> None:
    created = ok(session.call_tool("createConnector", {"preset": "gitlab", "name": "GitLab", "clientId": "gl"}))

    updated = ok(
        session.call_tool(
            "updateConnector", {"connectorId": created["connectorId"], "linkByEmail": True, "scopes": ["email"]}
        )
    )

    assert updated["linkByEmail"] is True and updated["scopes"] == ["openid", "email"]
    assert updated["changed"] == ["options", "scopes"]
    same = ok(session.call_tool("updateConnector", {"connectorId": created["connectorId"], "linkByEmail": True}))
    assert same["changed"] == []


def test_delete_needs_confirmation_and_takes_identities_with_it(session: McpSession, core: IdentityCore) -> None:
    created = ok(session.call_tool("createConnector", {"preset": "google", "name": "Google", "clientId": "g"}))
    ok(session.call_tool("updateSignInMethod", {"social": [created["connectorId"]]}))
    before = written(core)

    assert "confirm: true" in refused(session.call_tool("deleteConnector", {"connectorId": created["connectorId"]}))
    assert written(core) == before
    deleted = ok(session.call_tool("deleteConnector", {"connectorId": created["connectorId"], "confirm": True}))

    assert deleted == {"connectorId": created["connectorId"], "name": "Google", "deleted": True, "identitiesRemoved": 0}
    assert core.connectors.list(TENANT) == []
    assert core.sign_in_experiences.get(TENANT).social == ()  # its button went with it
    assert "No connector" in refused(session.call_tool("getConnector", {"connectorId": created["connectorId"]}))


def test_test_connector_reports_a_working_provider(session: McpSession, provider: FakeProvider) -> None:
    created = ok(
        session.call_tool(
            "createConnector", {"kind": "oidc", "name": "Up", "clientId": CLIENT_ID, "issuer": provider.issuer}
        )
    )

    report = ok(session.call_tool("testConnector", {"connectorId": created["connectorId"]}))

    assert report["jwksUri"] == f"{provider.issuer}/jwks" and report["signingKeys"] == 1
    assert report["tokenEndpoint"] == f"{provider.issuer}/token"
    assert report["ok"] is False and report["problems"] == [
        "The client secret is not set yet: open secretUrl in a browser to set it."
    ]


def test_test_connector_reports_an_issuer_mismatch_and_an_unreachable_provider(
    session: McpSession, provider: FakeProvider
) -> None:
    provider.discovery_issuer = "https://someone-else.example"
    base = {"kind": "oidc", "name": "Up", "clientId": CLIENT_ID, "tokenAuth": "none"}
    mismatched = ok(session.call_tool("createConnector", {**base, "issuer": provider.issuer}))
    with run_provider() as gone:
        unreachable = ok(session.call_tool("createConnector", {**base, "issuer": gone.issuer}))

    first = ok(session.call_tool("testConnector", {"connectorId": mismatched["connectorId"]}))
    second = ok(session.call_tool("testConnector", {"connectorId": unreachable["connectorId"]}))

    assert first["ok"] is False and "Issuer mismatch" in first["problems"][0]
    assert second["ok"] is False and "refused the connection" in second["problems"][0]


def test_social_buttons_name_existing_connectors(session: McpSession, core: IdentityCore) -> None:
    created = ok(session.call_tool("createConnector", {"preset": "google", "name": "Google", "clientId": "g"}))
    before = written(core)

    assert "not a connector of this tenant" in refused(session.call_tool("updateSignInMethod", {"social": ["nope"]}))
    assert written(core) == before
    updated = ok(session.call_tool("updateSignInMethod", {"social": [created["connectorId"]]}))

    assert updated["signIn"]["social"] == [created["connectorId"]] and updated["changed"] == ["signIn.social"]
    assert len(updated["signIn"]["methods"]) == 2  # the methods were left as they were


def test_get_user_shows_identities_and_unlink_keeps_a_way_in(
    session: McpSession, core: IdentityCore, provider: FakeProvider
) -> None:
    connector = core.connectors.create(
        TENANT,
        ConnectorInput(kind="oidc", name="Up", client_id=CLIENT_ID, issuer=provider.issuer, link_by_email=True),
        ACTOR,
    )
    core.connectors.set_secret(TENANT, connector.id, CLIENT_SECRET, ACTOR)
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    profile = UpstreamProfile("sub-1", "zoe@example.com", True, "Zoe", "https://pics.example/zoe.png")
    user = core.connectors.resolve_user(TENANT, connector.id, profile).user

    got = ok(session.call_tool("getUser", {"userId": user.id}))
    [identity] = got["identities"]
    assert identity["connectorId"] == connector.id and identity["subject"] == "sub-1"
    assert identity["emailVerified"] is True and identity["picture"] == "https://pics.example/zoe.png"

    before = written(core)
    message = refused(session.call_tool("unlinkIdentity", {"userId": user.id, "connectorId": connector.id}))
    assert "only way to sign in" in message and written(core) == before

    # A user with a password keeps it as a way in: their identity can go.
    yan = anyio.run(lambda: core.tenant_users.create(TENANT, password=PASSWORD, actor=ACTOR, email="yan@example.com"))
    linked = core.connectors.resolve_user(
        TENANT, connector.id, UpstreamProfile("sub-2", "yan@example.com", True, None, None)
    )
    assert linked.linked and linked.user.id == yan.id
    unlinked = ok(session.call_tool("unlinkIdentity", {"userId": yan.id, "connectorId": connector.id}))
    assert unlinked == {"userId": yan.id, "connectorId": connector.id, "removed": True}
    assert core.connectors.identities(TENANT, yan.id) == []
    assert "no identity" in refused(
        session.call_tool("unlinkIdentity", {"userId": yan.id, "connectorId": connector.id})
    )
    assert any(e.action == "user.identity.unlink" for e in core.audit.recent(TENANT, limit=50))


@pytest.fixture
def served(settings: Settings, core: IdentityCore) -> Iterator[str]:
    with serve_in_thread(create_app(settings, core)) as url:
        yield url


@pytest.mark.anyio
async def test_create_connector_sends_the_user_to_the_secret_page_through_url_elicitation(
    served: str, client: TestClient
) -> None:
    token = obtain_access_token(client, client_name="Claude Test").access_token
    asked: list[types.ElicitRequestParams] = []

    async def user_opens(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept")

    with anyio.fail_after(30):
        async with eliciting_client(served, token, user_opens) as mcp:
            result = await mcp.call_tool("createConnector", {"preset": "google", "name": "Google", "clientId": "g"})

    assert not result.is_error and result.structured_content is not None
    [params] = asked
    assert isinstance(params, types.ElicitRequestURLParams) and params.url == result.structured_content["secretUrl"]
    assert "client secret" in params.message
    assert result.structured_content["next"].startswith("The user was sent to secretUrl")


def test_two_first_sign_ins_of_one_identity_at_once_make_one_user(core: IdentityCore, provider: FakeProvider) -> None:
    connector = core.connectors.create(
        TENANT, ConnectorInput(kind="oidc", name="Up", client_id=CLIENT_ID, issuer=provider.issuer), ACTOR
    )
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    profile = UpstreamProfile("same-sub", "sam@example.com", True, "Sam", None)
    results: list[str] = []

    def sign_in() -> None:
        results.append(core.connectors.resolve_user(TENANT, connector.id, profile).user.id)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(sign_in) for _ in range(4)]:
            future.result()

    assert len(set(results)) == 1
    assert len(core.tenant_users.list(TENANT, query=None, page=1, page_size=10)[0]) == 1

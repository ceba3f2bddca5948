"""The guide tools over /mcp with a real token: getInstructions fills a guide in with the tenant's and an
application's values (never a secret), and searchDocs answers with passages whose citations resolve to headings
of the /docs pages. Bad queries are tool errors with a sentence, never protocol errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support.inprocess import PUBLIC_URL
from tests.support.live_server import ADMIN_EMAIL
from tests.support.mcp_http import McpSession, text_of

FIXTURE_GUIDES = Path(__file__).parents[1] / "fixtures" / "guides"
TENANT = "default"
ISSUER = f"{PUBLIC_URL}/t/{TENANT}/oidc"
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")


@pytest.fixture
def client(settings: Settings, core: IdentityCore, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app serving the test-only guides in tests/fixtures/guides, which use every placeholder."""
    monkeypatch.setattr("idp_mcp.app.default_directory", lambda: FIXTURE_GUIDES)
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as test_client:
        yield test_client


@pytest.fixture
def web_app(core: IdentityCore) -> Application:
    return core.applications.create(
        TENANT, name="Web shop", app_type="traditional", actor=ACTOR,
        redirect_uris=["https://shop.example.com/callback", "https://shop.example.com/other"],
        post_logout_redirect_uris=["https://shop.example.com/bye"],
    )  # fmt: skip


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def error(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    return text_of(result)


# --- getInstructions ---------------------------------------------------------------------------------------------


def test_guide_for_an_application_has_its_values_filled_in(
    session: McpSession, web_app: Application, core: IdentityCore
) -> None:
    guide = ok(session.call_tool("getInstructions", {"topic": "sample-web-app", "applicationId": web_app.id}))

    markdown = guide["markdown"]
    assert f'CLIENT_ID = "{web_app.id}"' in markdown
    assert 'REDIRECT_URI = "https://shop.example.com/callback"' in markdown  # the first one
    assert 'POST_LOGOUT_REDIRECT_URI = "https://shop.example.com/bye"' in markdown
    assert f'ISSUER = "{ISSUER}"' in markdown
    assert f'DISCOVERY_URL = "{DISCOVERY}"' in markdown
    assert f"Your tenant is {TENANT} on {PUBLIC_URL}." in markdown
    assert "{{" not in markdown and "<your" not in markdown
    assert 'CLIENT_SECRET = os.environ["IDP_CLIENT_SECRET"]' in markdown
    assert guide["applicationId"] == web_app.id
    assert guide["unfilled"] == []
    assert guide["url"] == f"{PUBLIC_URL}/docs/sample-web-app"
    # Nothing secret is ever in a guide, and reading one creates none.
    assert core.secrets.list(TENANT, web_app.id) == []


def test_guide_without_an_application_fills_the_tenant_and_shows_placeholders_for_the_rest(
    session: McpSession,
) -> None:
    guide = ok(session.call_tool("getInstructions", {"topic": "sample-web-app"}))

    markdown = guide["markdown"]
    assert f'ISSUER = "{ISSUER}"' in markdown and f'DISCOVERY_URL = "{DISCOVERY}"' in markdown
    assert f"Your tenant is {TENANT} on {PUBLIC_URL}." in markdown
    assert 'CLIENT_ID = "<your client id>"' in markdown
    assert 'REDIRECT_URI = "<your redirect URI>"' in markdown
    assert 'POST_LOGOUT_REDIRECT_URI = "<your post-logout redirect URI>"' in markdown
    assert "{{" not in markdown
    assert guide["applicationId"] is None
    assert guide["unfilled"] == ["CLIENT_ID", "REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI"]


def test_application_without_redirect_uris_leaves_those_placeholders(session: McpSession, core: IdentityCore) -> None:
    job = core.applications.create(TENANT, name="Nightly job", app_type="m2m", actor=ACTOR)

    guide = ok(session.call_tool("getInstructions", {"topic": "sample-web-app", "applicationId": job.id}))

    assert f'CLIENT_ID = "{job.id}"' in guide["markdown"]
    assert 'REDIRECT_URI = "<your redirect URI>"' in guide["markdown"]
    assert guide["unfilled"] == ["REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI"]


def test_unknown_application_is_a_tool_error_that_says_how_to_find_ids(session: McpSession) -> None:
    text = error(session.call_tool("getInstructions", {"topic": "sample-web-app", "applicationId": "nope"}))
    assert "No application 'nope' in this tenant" in text
    assert "listApplications" in text


def test_application_of_another_tenant_is_not_found(session: McpSession, core: IdentityCore) -> None:
    # The same administrator runs both tenants; this connection acts on "default" only.
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    core.tenants.create("acme", "Acme", owner_user_id=admin.id, actor=Actor(tenant_id="admin", sub=admin.id))
    theirs = core.applications.create(
        "acme", name="Theirs", app_type="traditional", actor=ACTOR, redirect_uris=["https://acme.example.com/cb"]
    )

    text = error(session.call_tool("getInstructions", {"topic": "sample-web-app", "applicationId": theirs.id}))

    assert "listApplications" in text and "acme.example.com" not in text


def test_unknown_topic_with_an_application_is_still_an_unknown_topic(session: McpSession, web_app: Application) -> None:
    text = error(session.call_tool("getInstructions", {"topic": "nope", "applicationId": web_app.id}))
    assert "There is no guide 'nope'" in text and "sample-web-app" in text


# --- searchDocs --------------------------------------------------------------------------------------------------


def test_search_returns_passages_with_citations_that_resolve_to_headings(
    session: McpSession, client: TestClient
) -> None:
    found = ok(session.call_tool("searchDocs", {"query": "refresh token rotation"}))

    first = found["results"][0]
    assert first["citation"] == {
        "guideId": "sample-tokens",
        "heading": "Refresh token rotation",
        "url": f"{PUBLIC_URL}/docs/sample-tokens#refresh-token-rotation",
    }
    assert first["guideTitle"] == "Tokens in the sample"
    assert first["passage"].startswith("Every refresh returns a new refresh token")
    assert f"Read the issuer at {ISSUER}." in first["passage"]  # placeholders filled as for getInstructions
    assert "getInstructions" in found["next"]
    for result in found["results"]:
        url = urlsplit(result["citation"]["url"])
        page = client.get(url.path)
        assert page.status_code == 200
        assert f'id="{url.fragment}"' in page.text


def test_search_passages_show_placeholders_for_application_values(session: McpSession) -> None:
    found = ok(session.call_tool("searchDocs", {"query": "signing out end session"}))
    first = found["results"][0]
    assert first["citation"]["heading"] == "Signing out"
    assert "back to <your post-logout redirect URI>." in first["passage"]


def test_search_respects_the_limit(session: McpSession) -> None:
    assert len(ok(session.call_tool("searchDocs", {"query": "guide", "limit": 1}))["results"]) == 1


def test_search_without_a_match_says_what_to_do(session: McpSession) -> None:
    found = ok(session.call_tool("searchDocs", {"query": "kubernetes helm chart"}))
    assert found["results"] == []
    assert "listInstructions" in found["next"]


@pytest.mark.parametrize(
    ("arguments", "explanation"),
    [
        ({"query": "   "}, "no words to search for"),
        ({"query": "?? !! --"}, "no words to search for"),
        ({"query": ""}, "'query'"),
        ({"query": "x" * 201}, "'query'"),
        ({}, "'query'"),
        ({"query": "token", "limit": 0}, "'limit'"),
        ({"query": "token", "limit": 500}, "'limit'"),
        ({"query": "token", "where": "title"}, "'where'"),
    ],
)
def test_bad_query_is_a_tool_error_with_a_sentence(
    session: McpSession, arguments: dict[str, Any], explanation: str
) -> None:
    assert explanation in error(session.call_tool("searchDocs", arguments)).lower()


@pytest.mark.parametrize(
    "query", ['NEAR("refresh" "token")', "refresh AND", "(token", "title:refresh", "token*", '"unbalanced', "^x -y"]
)
def test_fts5_syntax_in_a_query_never_becomes_a_protocol_error(session: McpSession, query: str) -> None:
    # call_tool itself fails the test on a JSON-RPC error; a result (hits or none) is the expected outcome.
    result = session.call_tool("searchDocs", {"query": query})
    assert result.get("isError") is not True, text_of(result)


# --- the API identifier -----------------------------------------------------------------------------------------


def test_the_api_identifier_is_filled_in_where_it_is_clear(session: McpSession, core: IdentityCore) -> None:
    def guide(**arguments: str) -> dict[str, Any]:
        return ok(session.call_tool("getInstructions", {"topic": "sample-api", **arguments}))

    first = guide()
    assert 'API_IDENTIFIER = "<your API identifier>"' in first["markdown"] and first["unfilled"] == ["API_IDENTIFIER"]

    # The tenant's only API resource.
    core.api_resources.create(
        TENANT, name="A", identifier="https://a.example.com", actor=ACTOR, permissions=[("x", "")]
    )
    assert 'API_IDENTIFIER = "https://a.example.com"' in guide()["markdown"]

    # Two: not clear without an application; with an m2m application, the API its roles grant permissions on.
    core.api_resources.create(
        TENANT, name="B", identifier="https://b.example.com", actor=ACTOR, permissions=[("y", "")]
    )
    assert guide()["unfilled"] == ["API_IDENTIFIER"]
    job = core.applications.create(TENANT, name="Job", app_type="m2m", actor=ACTOR)
    role = core.roles.create(
        TENANT, name="Job", description="", role_type="m2m", actor=ACTOR, permissions=[("https://b.example.com", "y")]
    )
    core.roles.assign(TENANT, [role.id], actor=ACTOR, application_id=job.id)
    filled = guide(applicationId=job.id)
    assert 'API_IDENTIFIER = "https://b.example.com"' in filled["markdown"] and filled["unfilled"] == []

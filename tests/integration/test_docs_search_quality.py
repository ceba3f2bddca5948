"""searchDocs over the shipped guides (the real instructions/ folder) puts the right guide first for the questions
developers actually ask, and its citations lead to real headings on the /docs pages.

Each case names the guides that may rightly come first. Until one of them is written, the case is skipped and says
which file it waits for.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from idp_mcp.guides import default_directory
from tests.support.mcp_http import McpSession, text_of

# query -> guide ids that may rightly come first (the first id is the one the case was written for)
REALISTIC_QUERIES: dict[str, tuple[str, ...]] = {
    "refresh token rotation": ("tokens-and-sessions",),
    "machine to machine": ("machine-to-machine",),
    "Next.js middleware": ("integrate-nextjs",),
    "sign users in to a FastAPI app": ("integrate-fastapi",),
    "create an application": ("create-an-application",),
    "client credentials grant": ("machine-to-machine", "integrate-machine-to-machine"),
    "validate access token in my API": ("protect-an-api",),
    "check the permission a route needs, 401 or 403": ("protect-an-api",),
    "roles for admins and members": ("roles-and-permissions",),
    "give a service an m2m role": ("roles-and-permissions", "machine-to-machine"),
    "custom logo colors": ("branding",),
    "django": ("integrate-django",),
    "Google sign-in": ("social-sign-in",),
    "single sign-on with the company identity provider": ("enterprise-sso",),
}


def search(session: McpSession, query: str, limit: int = 5) -> list[dict[str, Any]]:
    result = session.call_tool("searchDocs", {"query": query, "limit": limit})
    assert result.get("isError") is not True, text_of(result)
    results: list[dict[str, Any]] = result["structuredContent"]["results"]
    return results


def assert_citations_resolve(client: TestClient, results: list[dict[str, Any]]) -> None:
    for result in results:
        url = urlsplit(result["citation"]["url"])
        page = client.get(url.path)
        assert page.status_code == 200, result["citation"]
        if url.fragment:
            assert f'id="{url.fragment}"' in page.text, result["citation"]


@pytest.mark.parametrize(("query", "expected"), REALISTIC_QUERIES.items(), ids=REALISTIC_QUERIES.keys())
def test_realistic_query_finds_the_right_guide_first(
    session: McpSession, client: TestClient, query: str, expected: tuple[str, ...]
) -> None:
    written = [guide_id for guide_id in expected if (default_directory() / f"{guide_id}.md").exists()]
    assert written == list(expected), f"the query names guides that do not exist: {expected}"

    results = search(session, query)

    assert results, f"no result for {query!r}"
    assert results[0]["citation"]["guideId"] in written, [r["citation"] for r in results]
    assert_citations_resolve(client, results)


def test_every_citation_of_a_broad_query_resolves_to_a_heading(session: McpSession, client: TestClient) -> None:
    results = search(session, "secret token application user", limit=20)
    assert results
    assert_citations_resolve(client, results)


def test_the_guide_for_agents_is_found_by_its_own_words(session: McpSession, client: TestClient) -> None:
    results = search(session, "read-only write access reconnect")
    assert results[0]["citation"]["guideId"] == "using-this-server"
    assert_citations_resolve(client, results)

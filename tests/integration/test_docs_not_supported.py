"""searchDocs answers a question about something this server does not do with the guide section that says so
plainly, so an agent tells the person "not supported" instead of guessing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support.mcp_http import McpSession, text_of
from tests.support.tokens import obtain_access_token

QUESTIONS = ["SAML single sign-on", "sign in with a phone number by SMS", "webhooks for new users",
             "custom domain for the tenant", "device authorization grant", "organizations inside a tenant"]  # fmt: skip


@pytest.fixture
def session(client: TestClient) -> McpSession:
    mcp = McpSession(client, obtain_access_token(client).access_token)
    mcp.initialize()
    return mcp


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_question_about_what_is_not_supported_finds_the_section_that_says_so(
    session: McpSession, client: TestClient, question: str
) -> None:
    result = session.call_tool("searchDocs", {"query": question, "limit": 3})
    assert result.get("isError") is not True, text_of(result)
    results: list[dict[str, Any]] = result["structuredContent"]["results"]
    cited = [(r["citation"]["guideId"], r["citation"]["url"].rsplit("#", 1)[-1]) for r in results]
    assert ("using-this-server", "5-what-this-server-does-not-do") in cited, cited
    page = client.get("/docs/using-this-server")
    assert 'id="5-what-this-server-does-not-do"' in page.text

"""An address no route serves: a styled page for a browser, the plain answer for API and MCP clients."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("path", ["/no-such-page", "/console/t", "/t/nope/nothing-here"])
def test_a_browser_gets_a_styled_404_with_the_way_back(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text and '<link rel="stylesheet" href="/static/app.css">' in response.text
    for link in ("/", "/console", "/docs"):
        assert f'href="{link}"' in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_a_tenants_missing_page_is_in_its_branding_without_the_administrators_links(client: TestClient) -> None:
    response = client.get("/t/default/nothing-here", headers={"accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert "Page not found" in response.text and 'href="/t/default/branding.css?v=' in response.text
    assert 'href="/console"' not in response.text


def test_markup_in_the_address_is_never_echoed(client: TestClient) -> None:
    response = client.get("/%3Cscript%3Ealert(1)%3C/script%3E", headers={"accept": BROWSER_ACCEPT})
    assert response.status_code == 404 and "<script>" not in response.text


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_other_clients_keep_the_plain_answer(client: TestClient, accept: str | None) -> None:
    headers = {"accept": accept} if accept else {}
    for path in ("/no-such-page", "/oauth/no-such-endpoint", "/.well-known/nothing"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404
        assert response.text == "Not Found"

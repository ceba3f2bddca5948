"""The public /docs pages: every shipped guide renders with the heading ids searchDocs cites, guides cannot inject
markup, links between guides work, unknown guides are a 404 page, and no sign-in or cookie is involved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.guides import GuideLibrary, default_directory
from idp_mcp.mcp_server.tools import all_tools
from idp_mcp.settings import Settings
from tests.support.inprocess import PUBLIC_URL

FIXTURE_GUIDES = Path(__file__).parents[1] / "fixtures" / "guides"


@pytest.fixture
def fixture_client(settings: Settings, core: IdentityCore, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr("idp_mcp.app.default_directory", lambda: FIXTURE_GUIDES)
    with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as test_client:
        yield test_client


def shipped() -> GuideLibrary:
    return GuideLibrary.load(default_directory(), [tool.name for tool in all_tools()])


# --- the shipped guides ------------------------------------------------------------------------------------------


def test_index_lists_every_guide_without_signing_in(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for guide in shipped().all():
        assert f'href="/docs/{guide.id}"' in page.text
        assert guide.title.replace("'", "&#39;") in page.text
    assert "set-cookie" not in page.headers
    assert page.headers["x-frame-options"] == "DENY"


def test_every_shipped_guide_renders_with_an_id_for_every_heading(client: TestClient) -> None:
    library = shipped()
    for guide in library.all():
        page = client.get(f"/docs/{guide.id}")
        assert page.status_code == 200, guide.id
        ids = set(re.findall(r'<h[1-6] id="([^"]+)"', page.text))
        assert ids == library.anchors(guide.id), guide.id
        assert {s.anchor for s in library.sections(guide.id) if s.anchor} <= ids
        assert "{{" not in page.text, f"{guide.id}: a placeholder was not filled"
        assert "set-cookie" not in page.headers


@pytest.mark.parametrize("path", ["/docs/no-such-guide", "/docs/Using-This-Server", "/docs/using-this-server.md"])
def test_unknown_guide_is_a_404_page_that_lists_the_guides(client: TestClient, path: str) -> None:
    page = client.get(path)

    assert page.status_code == 404
    assert "No such guide" in page.text
    assert 'href="/docs/using-this-server"' in page.text


# --- rendering (test-only guides) ---------------------------------------------------------------------------------


def test_guide_page_fills_the_server_url_and_shows_readable_placeholders(fixture_client: TestClient) -> None:
    page = fixture_client.get("/docs/sample-web-app")

    assert page.status_code == 200
    assert f"on {PUBLIC_URL}." in page.text
    assert "Your tenant is &lt;your tenant id&gt;" in page.text
    assert "CLIENT_ID = &quot;&lt;your client id&gt;&quot;" in page.text
    assert "{{" not in page.text


def test_raw_html_in_a_guide_is_text_on_the_page(fixture_client: TestClient) -> None:
    page = fixture_client.get("/docs/sample-web-app")

    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(&quot;guide&quot;)&lt;/script&gt;" in page.text


def test_links_between_guides_lead_to_the_heading_on_the_other_page(fixture_client: TestClient) -> None:
    page = fixture_client.get("/docs/sample-web-app")

    assert 'href="/docs/sample-tokens#refresh-token-rotation"' in page.text
    target = fixture_client.get("/docs/sample-tokens")
    assert '<h2 id="refresh-token-rotation">' in target.text


def test_guide_that_does_not_start_with_a_title_gets_the_front_matter_title(fixture_client: TestClient) -> None:
    page = fixture_client.get("/docs/sample-untitled")

    assert "<h1>A guide without a heading of its own</h1>" in page.text
    assert '<h2 id="only-section">' in page.text
    assert 'href="/docs/sample-web-app"' in page.text


def test_guide_that_starts_with_a_title_shows_it_once(fixture_client: TestClient) -> None:
    page = fixture_client.get("/docs/sample-web-app")
    assert page.text.count("<h1") == 1
    assert '<h1 id="sign-users-in-to-a-sample-web-app">' in page.text

"""The console edits an application's settings as the updateApplication tool does: the same checks and refusals
(with the values as typed kept), one audit row naming the person, and the new redirect URI usable at once; read-only
members and other tenants' administrators change nothing."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.audit import AuditQuery
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor
from tests.support.console import (
    READER_EMAIL,
    READER_PASSWORD,
    STRANGER_EMAIL,
    STRANGER_PASSWORD,
    XSS,
    Cast,
    cast,
    csrf,
    signed_in,
    text_of,
)
from tests.support.inprocess import pkce_pair

CALLBACK = "https://shop.example.com/callback"
NEW = "https://shop.example.com/auth/callback"


@pytest.fixture
def people(core: IdentityCore) -> Cast:
    return cast(core)


@pytest.fixture
def app(core: IdentityCore, people: Cast) -> Application:
    actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub="test")
    return core.applications.create(
        DEFAULT_TENANT_ID, name="Web shop", app_type="spa", actor=actor, redirect_uris=[CALLBACK]
    )


def _page(app: Application) -> str:
    return f"/console/t/{DEFAULT_TENANT_ID}/applications/{app.id}"


def _save(client: TestClient, app: Application, token: str | None, **fields: str) -> tuple[int, str]:
    form = {
        "name": app.name, "description": "", "redirect_uris": "\r\n".join(app.redirect_uris),
        "post_logout_redirect_uris": "", "cors_origins": "", "id_token_alg": "ES256", **fields,
    } | ({"csrf_token": token} if token is not None else {})  # fmt: skip
    response = client.post(f"{_page(app)}/settings", data=form, follow_redirects=False)
    return response.status_code, response.headers.get("location") or response.text


def _authorize(client: TestClient, app: Application, redirect_uri: str) -> int:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": app.id, "redirect_uri": redirect_uri, "scope": "openid",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    return client.get(f"/t/{DEFAULT_TENANT_ID}/oidc/authorize", params=params, follow_redirects=False).status_code


def test_adding_a_redirect_uri_in_the_console_lets_the_application_use_it_at_once(
    client: TestClient, core: IdentityCore, app: Application, people: Cast
) -> None:
    assert _authorize(client, app, NEW) == 400
    signed_in(client)
    page = client.get(_page(app)).text
    assert "Edit settings" in page and f">{CALLBACK}</textarea>" in page
    status, location = _save(
        client, app, csrf(client, _page(app)), name="Web shop 2", description="The shop\r\nfront",
        redirect_uris=f"{CALLBACK}\r\n{NEW}\r\n", cors_origins="https://shop.example.com", id_token_alg="RS256",
    )  # fmt: skip
    assert (status, location) == (303, f"{_page(app)}?saved=1")
    changed = core.applications.get(DEFAULT_TENANT_ID, app.id)
    assert changed.name == "Web shop 2" and changed.description == "The shop\nfront"
    assert changed.redirect_uris == (CALLBACK, NEW) and changed.cors_origins == ("https://shop.example.com",)
    assert changed.id_token_alg == "RS256"
    (row,) = core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="application.update"))
    assert row.actor_sub == people.owner_id and row.actor_client_id is None
    assert row.details["changed"] == ["cors_origins", "description", "id_token_alg", "name", "redirect_uris"]
    assert "Saved." in text_of(client.get(f"{_page(app)}?saved=1").text)
    assert _authorize(client, app, NEW) == 302


def test_a_refused_change_shows_the_cores_sentence_keeps_what_was_typed_and_writes_nothing(
    client: TestClient, core: IdentityCore, app: Application, people: Cast
) -> None:
    signed_in(client)
    status, body = _save(client, app, csrf(client, _page(app)), name="Renamed", redirect_uris="")
    assert status == 400 and "needs at least one redirect URI" in text_of(body)
    assert (
        'id="settings-error"' in body and 'value="Renamed"' in body and '<details class="edit-settings" open>' in body
    )
    status, body = _save(client, app, csrf(client, _page(app)), redirect_uris="not a uri")
    assert status == 400 and 'id="settings-error"' in body and ">not a uri</textarea>" in body
    assert core.applications.get(DEFAULT_TENANT_ID, app.id) == app
    assert not core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="application.update"))


def test_markup_in_settings_is_shown_as_text(client: TestClient, core: IdentityCore, app: Application) -> None:
    signed_in(client)
    assert _save(client, app, csrf(client, _page(app)), name=XSS)[0] == 303
    page = client.get(_page(app)).text
    assert XSS not in page and "&lt;script&gt;" in page


def test_read_only_members_strangers_and_forged_posts_change_nothing(
    client: TestClient, core: IdentityCore, app: Application, people: Cast
) -> None:
    signed_in(client, READER_EMAIL, READER_PASSWORD)
    page = client.get(_page(app)).text
    assert "Edit settings" not in page and "an owner or admin changes the settings" in page
    assert _save(client, app, csrf(client, _page(app)), name="Mallory")[0] == 403
    signed_in(client, STRANGER_EMAIL, STRANGER_PASSWORD)
    assert _save(client, app, csrf(client, "/console/t/acme/applications"), name="Mallory")[0] == 403
    signed_in(client)
    assert _save(client, app, None, name="Mallory")[0] == 403
    assert _save(client, app, "forged", name="Mallory")[0] == 403
    assert core.applications.get(DEFAULT_TENANT_ID, app.id).name == "Web shop"


def test_only_the_new_secrets_page_may_run_a_script_and_only_from_this_origin(
    client: TestClient, core: IdentityCore, people: Cast
) -> None:
    actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub="test")
    backend = core.applications.create(DEFAULT_TENANT_ID, name="Backend", app_type="m2m", actor=actor)
    signed_in(client)
    page = _page(backend)
    created = client.post(f"{page}/secrets", data={"csrf_token": csrf(client, page)})
    assert created.status_code == 200 and created.url.path.endswith("/reveal")
    policy = created.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert '<script src="/static/copy.js" defer></script>' in created.text and "<script>" not in created.text
    script = client.get("/static/copy.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for other in (page, f"/console/t/{DEFAULT_TENANT_ID}/users", "/sign-in"):
        assert "script-src" not in client.get(other).headers["content-security-policy"], other

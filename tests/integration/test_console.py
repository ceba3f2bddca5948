"""The administrators' web console: tenant isolation, application settings, production secrets shown once."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from tests.support.inprocess import PUBLIC_URL, csrf_from, sign_in
from tests.support.live_server import ADMIN_EMAIL

OTHER_EMAIL = "grace@example.com"
OTHER_PASSWORD = "a different long passphrase"
REDIRECT = "https://app.example.com/callback"


@dataclass
class World:
    admin_id: str
    other_id: str
    web: Application  # traditional, in the default tenant
    spa: Application  # in the default tenant
    acme_app: Application  # traditional, in tenant acme, which only the other administrator administers


@pytest.fixture
def world(core: IdentityCore) -> World:
    admin = core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    other = anyio.run(
        lambda: core.users.create_administrator(OTHER_EMAIL, OTHER_PASSWORD, tenant_id=DEFAULT_TENANT_ID, role="admin")
    )
    core.tenants.create("acme", "Acme", owner_user_id=other.id, actor=Actor(tenant_id=ADMIN_TENANT_ID, sub=other.id))
    actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub=admin.id)
    web = core.applications.create(
        DEFAULT_TENANT_ID, name="Storefront", app_type="traditional", actor=actor, redirect_uris=[REDIRECT],
        post_logout_redirect_uris=["https://app.example.com/bye"],
    )  # fmt: skip
    spa = core.applications.create(
        DEFAULT_TENANT_ID, name="Dashboard", app_type="spa", actor=actor, redirect_uris=[REDIRECT],
        cors_origins=["https://app.example.com"],
    )  # fmt: skip
    acme_app = core.applications.create(
        "acme", name="Acme Billing", app_type="traditional", redirect_uris=["https://acme.example.com/cb"],
        actor=Actor(tenant_id="acme", sub=other.id),
    )  # fmt: skip
    return World(admin.id, other.id, web, spa, acme_app)


def _app_url(tenant: str, application_id: str) -> str:
    return f"/console/t/{tenant}/applications/{application_id}"


def _signed_in(client: TestClient, email: str = ADMIN_EMAIL, password: str | None = None) -> TestClient:
    response = sign_in(client, "/console", email, password) if password else sign_in(client, "/console")
    assert response.status_code == 303, response.text
    return client


def _create_secret(client: TestClient, tenant: str, application_id: str) -> tuple[int, str]:
    """POST the create-secret form with a valid CSRF token (taken from a page the administrator may see)."""
    token = csrf_from(client.get(f"/console/t/{DEFAULT_TENANT_ID}/applications").text)
    response = client.post(f"{_app_url(tenant, application_id)}/secrets", data={"csrf_token": token})
    return response.status_code, response.text


def _shown_secret(html: str) -> str:
    match = re.search(r'<textarea id="secret-value"[^>]*>([^<]+)</textarea>', html)
    assert match, "no secret value on the page"
    return match.group(1)


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient, world: World) -> None:
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/console"
    page = _app_url(DEFAULT_TENANT_ID, world.web.id)
    response = client.get(page, follow_redirects=False)
    assert response.headers["location"] == f"/sign-in?next={page}"


def test_sign_in_returns_to_the_console_and_the_home_page_links_to_it(client: TestClient, world: World) -> None:
    response = sign_in(client, "/console")
    assert response.headers["location"] == "/console"
    assert 'href="/console"' in client.get("/").text


def test_one_tenant_goes_straight_to_its_applications_and_no_other_tenants(client: TestClient, world: World) -> None:
    _signed_in(client)
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/t/{DEFAULT_TENANT_ID}/applications"
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    for app in (world.web, world.spa):
        assert app.name in page.text
        assert app.id in page.text
        assert f'href="{_app_url(DEFAULT_TENANT_ID, app.id)}"' in page.text
    assert "Traditional web app" in page.text and "Single-page app" in page.text
    assert world.acme_app.name not in page.text
    assert world.acme_app.id not in page.text
    assert 'action="/sign-out"' in page.text
    assert 'href=""' not in page.text


def test_an_administrator_of_several_tenants_chooses_one(client: TestClient, world: World) -> None:
    _signed_in(client, OTHER_EMAIL, OTHER_PASSWORD)
    page = client.get("/console")
    assert page.status_code == 200
    assert 'href="/console/t/default/applications"' in page.text
    assert 'href="/console/t/acme/applications"' in page.text
    assert world.acme_app.name in client.get("/console/t/acme/applications").text


def test_the_application_page_shows_settings_and_never_a_secret_value(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    issued = core.secrets.create(
        DEFAULT_TENANT_ID, world.web.id, "temporary", Actor(tenant_id=DEFAULT_TENANT_ID, sub=world.admin_id)
    )
    _signed_in(client)
    page = client.get(_app_url(DEFAULT_TENANT_ID, world.web.id))
    assert page.status_code == 200
    issuer = f"{PUBLIC_URL}/t/{DEFAULT_TENANT_ID}/oidc"
    for expected in (
        world.web.id, REDIRECT, "https://app.example.com/bye", "ES256", "Traditional web app",
        issuer, f"{issuer}/.well-known/openid-configuration", "Temporary", f"••••{issued.value[-4:]}",
        "Create production secret",
    ):  # fmt: skip
        assert expected in page.text, expected
    assert issued.value not in page.text
    assert f'href="/console/t/{DEFAULT_TENANT_ID}/applications"' in page.text  # the breadcrumb back


def test_a_production_secret_is_shown_once_and_then_only_its_last_four(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    _signed_in(client)
    status, html = _create_secret(client, DEFAULT_TENANT_ID, world.web.id)
    assert status == 200, html
    value = _shown_secret(html)
    assert "it will not be shown again" in html
    assert core.secrets.verify(DEFAULT_TENANT_ID, world.web.id, value) is True
    [secret] = core.secrets.list(DEFAULT_TENANT_ID, world.web.id)
    assert secret.kind == "production" and secret.expires_at is None and secret.active

    again = client.get(_app_url(DEFAULT_TENANT_ID, world.web.id))
    assert f"••••{value[-4:]}" in again.text
    assert value not in again.text
    assert "Production" in again.text and "Never" in again.text


def test_the_secret_page_is_not_cached(client: TestClient, world: World) -> None:
    _signed_in(client)
    page = client.get(_app_url(DEFAULT_TENANT_ID, world.web.id))
    response = client.post(
        f"{_app_url(DEFAULT_TENANT_ID, world.web.id)}/secrets", data={"csrf_token": csrf_from(page.text)}
    )
    assert response.headers["cache-control"] == "no-store"


def test_the_audit_row_names_the_human_no_agent_and_no_secret(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    _signed_in(client)
    _status, html = _create_secret(client, DEFAULT_TENANT_ID, world.web.id)
    value = _shown_secret(html)
    [row] = [e for e in core.audit.recent(DEFAULT_TENANT_ID) if e.action == "application.secret.create_production"]
    assert row.actor_sub == world.admin_id
    assert row.actor_client_id is None and row.actor_client_name is None
    assert row.target_id == world.web.id
    assert value not in json.dumps(row.details)


@pytest.mark.parametrize("form", [{}, {"csrf_token": "forged-value-0000000000000"}])
def test_creating_a_secret_without_the_csrf_token_is_refused(
    client: TestClient, core: IdentityCore, world: World, form: dict[str, str]
) -> None:
    _signed_in(client)
    client.get(_app_url(DEFAULT_TENANT_ID, world.web.id))  # the CSRF cookie is set
    response = client.post(f"{_app_url(DEFAULT_TENANT_ID, world.web.id)}/secrets", data=form)
    assert response.status_code == 403
    assert "session.csrf_failed" in response.text
    assert core.secrets.list(DEFAULT_TENANT_ID, world.web.id) == []


def test_a_tenant_the_administrator_does_not_administer_is_closed(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    _signed_in(client)
    listing = client.get("/console/t/acme/applications")
    assert listing.status_code == 403
    assert world.acme_app.name not in listing.text
    page = client.get(_app_url("acme", world.acme_app.id))
    assert page.status_code == 403
    assert world.acme_app.name not in page.text
    status, html = _create_secret(client, "acme", world.acme_app.id)
    assert status == 403
    assert 'id="secret-value"' not in html
    assert core.secrets.list("acme", world.acme_app.id) == []
    assert client.get("/console/t/nowhere/applications").status_code == 403


def test_another_tenants_application_is_not_found_under_ones_own_tenant(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    _signed_in(client)
    page = client.get(_app_url(DEFAULT_TENANT_ID, world.acme_app.id))
    assert page.status_code == 404
    assert world.acme_app.name not in page.text
    status, _html = _create_secret(client, DEFAULT_TENANT_ID, world.acme_app.id)
    assert status == 404
    assert core.secrets.list("acme", world.acme_app.id) == []
    assert client.get(_app_url(DEFAULT_TENANT_ID, "no-such-app")).status_code == 404


def test_a_single_page_app_has_no_secret_to_create(client: TestClient, core: IdentityCore, world: World) -> None:
    _signed_in(client)
    page = client.get(_app_url(DEFAULT_TENANT_ID, world.spa.id))
    assert page.status_code == 200
    assert "https://app.example.com" in page.text  # its CORS origin
    assert "Create production secret" not in page.text
    response = client.post(
        f"{_app_url(DEFAULT_TENANT_ID, world.spa.id)}/secrets", data={"csrf_token": csrf_from(page.text)}
    )
    assert response.status_code == 400
    assert "Something went wrong" in response.text
    assert core.secrets.list(DEFAULT_TENANT_ID, world.spa.id) == []


def test_signing_out_from_the_console_closes_it(client: TestClient, world: World) -> None:
    _signed_in(client)
    page = client.get(f"/console/t/{DEFAULT_TENANT_ID}/applications")
    response = client.post("/sign-out", data={"csrf_token": csrf_from(page.text), "next": "/"}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/console", follow_redirects=False).headers["location"] == "/sign-in?next=/console"

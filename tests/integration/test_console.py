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
from tests.support.clock import Clock
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


# --- production secrets: shown once (POST-redirect-GET), revoked and rotated by id ------------------------------


def _create_secret_id(client: TestClient, tenant: str, application_id: str) -> tuple[str, str]:
    """POST the create form without following the redirect: (the secret's id, the reveal page's path)."""
    token = csrf_from(client.get(f"/console/t/{DEFAULT_TENANT_ID}/applications").text)
    response = client.post(
        f"{_app_url(tenant, application_id)}/secrets", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    match = re.fullmatch(rf"{_app_url(tenant, application_id)}/secrets/([0-9a-f]+)/reveal", location)
    assert match, location
    return match.group(1), location


def _m2m(core: IdentityCore, world: World) -> Application:
    return core.applications.create(
        DEFAULT_TENANT_ID, name="Nightly job", app_type="m2m", actor=Actor(tenant_id=DEFAULT_TENANT_ID, sub="t")
    )


def _client_credentials(client: TestClient, client_id: str, secret: str) -> int:
    response = client.post(
        f"/t/{DEFAULT_TENANT_ID}/oidc/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return response.status_code


def _revoke(client: TestClient, tenant: str, application_id: str, secret_id: str, **form: str) -> tuple[int, str]:
    url = f"{_app_url(tenant, application_id)}/secrets/{secret_id}/revoke"
    if "csrf_token" not in form:
        form["csrf_token"] = csrf_from(client.get(f"/console/t/{DEFAULT_TENANT_ID}/applications").text)
    response = client.post(url, data=form, follow_redirects=False)
    return response.status_code, response.headers.get("location", response.text)


def test_reloading_the_reveal_page_does_not_create_a_second_secret_nor_show_it_again(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    _signed_in(client)
    secret_id, reveal = _create_secret_id(client, DEFAULT_TENANT_ID, world.web.id)
    first = client.get(reveal)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    value = _shown_secret(first.text)
    assert secret_id in first.text
    assert core.secrets.verify(DEFAULT_TENANT_ID, world.web.id, value)

    again = client.get(reveal)
    assert again.status_code == 200 and again.headers["cache-control"] == "no-store"
    assert 'id="secret-value"' not in again.text and value not in again.text
    assert "not shown again" in again.text
    assert [secret.id for secret in core.secrets.list(DEFAULT_TENANT_ID, world.web.id)] == [secret_id]


def test_the_waiting_value_is_sealed_for_the_creating_session_only(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    from sqlalchemy import select

    from idp_mcp.store.tables import secret_reveals

    _signed_in(client)
    secret_id, reveal = _create_secret_id(client, DEFAULT_TENANT_ID, world.web.id)
    with core.db.read() as conn:
        [row] = conn.execute(select(secret_reveals)).all()
    # Another browser of the same administrator (another session) gets nothing, and does not use it up.
    with TestClient(client.app, base_url=PUBLIC_URL) as other:
        _signed_in(other)
        assert 'id="secret-value"' not in other.get(reveal).text
    value = _shown_secret(client.get(reveal).text)
    assert all(value not in str(column) for column in row)
    assert row.secret_id == secret_id
    with core.db.read() as conn:
        assert conn.execute(select(secret_reveals)).all() == []  # shown, so gone


def test_a_secret_not_revealed_within_ten_minutes_is_not_shown(
    client: TestClient, core: IdentityCore, world: World, clock: Clock
) -> None:
    _signed_in(client)
    _secret_id, reveal = _create_secret_id(client, DEFAULT_TENANT_ID, world.web.id)
    clock.advance(601)
    assert 'id="secret-value"' not in client.get(reveal).text


def test_rotation_a_second_production_secret_works_alongside_the_first_until_it_is_revoked(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    app = _m2m(core, world)
    _signed_in(client)
    old_id, reveal = _create_secret_id(client, DEFAULT_TENANT_ID, app.id)
    old = _shown_secret(client.get(reveal).text)
    new_id, reveal = _create_secret_id(client, DEFAULT_TENANT_ID, app.id)
    new = _shown_secret(client.get(reveal).text)
    assert _client_credentials(client, app.id, old) == 200
    assert _client_credentials(client, app.id, new) == 200

    page = client.get(_app_url(DEFAULT_TENANT_ID, app.id)).text
    for expected in (old_id, new_id, f"••••{old[-4:]}", f"••••{new[-4:]}", f"/secrets/{old_id}/revoke"):
        assert expected in page, expected
    confirm = client.get(f"{_app_url(DEFAULT_TENANT_ID, app.id)}/secrets/{old_id}/revoke")
    assert (
        confirm.status_code == 200 and f"Revoke secret {old_id}" in confirm.text and f"••••{old[-4:]}" in confirm.text
    )

    status, location = _revoke(client, DEFAULT_TENANT_ID, app.id, old_id)
    assert (status, location) == (303, _app_url(DEFAULT_TENANT_ID, app.id))
    assert _client_credentials(client, app.id, old) == 401  # at once: secrets are read on every request
    assert _client_credentials(client, app.id, new) == 200
    states = {secret.id: secret.active for secret in core.secrets.list(DEFAULT_TENANT_ID, app.id)}
    assert states == {old_id: False, new_id: True}
    page = client.get(_app_url(DEFAULT_TENANT_ID, app.id)).text
    assert "Revoked" in page and f"/secrets/{old_id}/revoke" not in page and f"/secrets/{new_id}/revoke" in page

    [row] = [e for e in core.audit.recent(DEFAULT_TENANT_ID) if e.action == "application.secret.revoke"]
    assert row.details == {"secret_id": old_id, "kind": "production"}
    assert (row.actor_sub, row.actor_client_id, row.target_id) == (world.admin_id, None, app.id)
    created = [e for e in core.audit.recent(DEFAULT_TENANT_ID) if e.action == "application.secret.create_production"]
    assert {e.details["secret_id"] for e in created} == {old_id, new_id}
    assert old not in json.dumps([e.details for e in core.audit.recent(DEFAULT_TENANT_ID, limit=500)])


def test_the_console_revokes_temporary_secrets_too(client: TestClient, core: IdentityCore, world: World) -> None:
    actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub=world.admin_id)
    temporary = core.secrets.create(DEFAULT_TENANT_ID, world.web.id, "temporary", actor)
    _signed_in(client)
    assert _revoke(client, DEFAULT_TENANT_ID, world.web.id, temporary.id)[0] == 303
    assert not core.secrets.verify(DEFAULT_TENANT_ID, world.web.id, temporary.value)


def test_revoking_needs_the_csrf_token_and_the_right_application_and_tenant(
    client: TestClient, core: IdentityCore, world: World
) -> None:
    actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub=world.admin_id)
    mine = core.secrets.create(DEFAULT_TENANT_ID, world.web.id, "production", actor)
    theirs = core.secrets.create("acme", world.acme_app.id, "production", Actor(tenant_id="acme", sub=world.other_id))
    _signed_in(client)
    before = [e.id for e in core.audit.recent(DEFAULT_TENANT_ID, limit=500)]

    assert _revoke(client, DEFAULT_TENANT_ID, world.web.id, mine.id, csrf_token="forged-value-0000000000000")[0] == 403
    # Another application of the same tenant, by its id: no such secret there.
    assert _revoke(client, DEFAULT_TENANT_ID, world.spa.id, mine.id)[0] == 404
    assert _revoke(client, DEFAULT_TENANT_ID, world.web.id, "0123456789abcdef")[0] == 404
    assert client.get(f"{_app_url(DEFAULT_TENANT_ID, world.web.id)}/secrets/nope/revoke").status_code == 404
    assert _revoke(client, DEFAULT_TENANT_ID, world.web.id, "%00")[0] == 404  # NUL: PostgreSQL would refuse it
    assert 'id="secret-value"' not in client.get(f"{_app_url(DEFAULT_TENANT_ID, world.web.id)}/secrets/%00/reveal").text
    # Another tenant's secret, through its own tenant (not administered) or through one's own application.
    assert _revoke(client, "acme", world.acme_app.id, theirs.id)[0] == 403
    assert _revoke(client, DEFAULT_TENANT_ID, world.web.id, theirs.id)[0] == 404

    assert core.secrets.verify(DEFAULT_TENANT_ID, world.web.id, mine.value)
    assert core.secrets.verify("acme", world.acme_app.id, theirs.value)
    assert [e.id for e in core.audit.recent(DEFAULT_TENANT_ID, limit=500)] == before
    assert not [e for e in core.audit.recent("acme", limit=500) if e.action == "application.secret.revoke"]

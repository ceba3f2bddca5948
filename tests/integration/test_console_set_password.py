"""The console's "Set password" form on a user's page: the same use case as setUserPassword (the sign-up rules, the
user's access ended, an audit row without the value), POST-redirect-GET with a notice, and the CSRF, role and tenant
checks; a refused password changes nothing and is not echoed back."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor, User
from idp_mcp.errors import InvalidCredentials
from tests.support.console import READER_EMAIL, READER_PASSWORD, STRANGER_EMAIL, STRANGER_PASSWORD, Cast, cast, csrf
from tests.support.console import signed_in as admin_signed_in
from tests.support.tokens import obtain_tenant_token

USERS = f"/console/t/{DEFAULT_TENANT_ID}/users"
OLD = "a user's long passphrase"
NEW = "the console set this 12"


@pytest.fixture
def people(core: IdentityCore) -> Cast:
    return cast(core)


@pytest.fixture
def linus(core: IdentityCore, people: Cast) -> User:
    actor = Actor(tenant_id=DEFAULT_TENANT_ID, sub="test")
    return anyio.run(
        lambda: core.tenant_users.create(
            DEFAULT_TENANT_ID, email="linus@example.com", username="linus", password=OLD, actor=actor
        )
    )


def works(core: IdentityCore, password: str) -> bool:
    try:
        core.users.authenticate_sync(DEFAULT_TENANT_ID, "linus", password)
    except InvalidCredentials:
        return False
    return True


def post(client: TestClient, path: str, token: str | None, password: str, confirm: str | None = None) -> Any:
    data = {"password": password, "password_confirm": password if confirm is None else confirm}
    return client.post(path, data=data | ({"csrf_token": token} if token else {}), follow_redirects=False)


def test_setting_a_password_ends_the_users_access_and_says_so(
    client: TestClient, core: IdentityCore, linus: User
) -> None:
    token = obtain_tenant_token(client, core, identifier="linus", password=OLD)
    admin_signed_in(client)
    page = f"{USERS}/{linus.id}"
    response = post(client, f"{page}/password", csrf(client, page), NEW)

    assert response.status_code == 303 and response.headers["location"] == f"{page}?password=set#password"
    shown = client.get(f"{page}?password=set").text
    assert "Password set." in shown and "No active session" in shown and "No standing consent." in shown
    assert works(core, NEW) and not works(core, OLD)
    refused = client.post(
        f"/t/{DEFAULT_TENANT_ID}/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token.refresh_token, "client_id": token.client_id},
    )
    assert refused.status_code == 400
    entries = core.audit.recent(DEFAULT_TENANT_ID, limit=50)
    entry = next(e for e in entries if e.action == "user.set_password")
    assert entry.target_id == linus.id and entry.actor_sub is not None and entry.details == {"revoked_grants": 1}
    assert NEW not in json.dumps([e.details for e in entries])


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [("short", None, "at least 8 characters"), ("linus-forever", None, "must not contain your email or username"),
     (NEW, NEW + "x", "not the same")],
)  # fmt: skip
def test_a_refused_password_changes_nothing_and_is_not_echoed(
    client: TestClient, core: IdentityCore, linus: User, password: str, confirm: str | None, message: str
) -> None:
    admin_signed_in(client)
    page = f"{USERS}/{linus.id}"
    response = post(client, f"{page}/password", csrf(client, page), password, confirm)
    assert response.status_code == 400 and message in response.text
    assert f'value="{password}"' not in response.text
    assert works(core, OLD)


def test_csrf_role_and_tenant_are_checked_before_anything_changes(
    client: TestClient, core: IdentityCore, linus: User
) -> None:
    page = f"{USERS}/{linus.id}"
    admin_signed_in(client)
    assert post(client, f"{page}/password", None, NEW).status_code == 403
    admin_signed_in(client, READER_EMAIL, READER_PASSWORD)
    assert "Set password" not in client.get(page).text
    assert post(client, f"{page}/password", csrf(client, page), NEW).status_code == 403
    admin_signed_in(client, STRANGER_EMAIL, STRANGER_PASSWORD)
    token = csrf(client, "/console/t/acme/users")
    assert post(client, f"{page}/password", token, NEW).status_code == 403
    admin_signed_in(client)
    missing = post(client, f"{USERS}/nobody/password", csrf(client, page), NEW)
    assert missing.status_code == 404
    assert works(core, OLD)

"""The console's users pages: list and search, create, one user's sessions and consents, suspend, reactivate and
delete (confirmed), with the CSRF, role and tenant checks, and markup shown as text."""

from __future__ import annotations

import re

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.audit import AuditQuery
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import DEFAULT_TENANT_ID, Actor, User
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
from tests.support.tokens import obtain_tenant_token

USERS = f"/console/t/{DEFAULT_TENANT_ID}/users"
PASSWORD = "a user's long passphrase"


@pytest.fixture
def people(core: IdentityCore) -> Cast:
    return cast(core)


def _create(core: IdentityCore, tenant_id: str = DEFAULT_TENANT_ID, **fields: str) -> User:
    actor = Actor(tenant_id=tenant_id, sub="test")
    return anyio.run(lambda: core.tenant_users.create(tenant_id, password=PASSWORD, actor=actor, **fields))


@pytest.fixture
def linus(core: IdentityCore, people: Cast) -> User:
    return _create(core, email="linus@example.com", username="linus", name="Linus")


def _post(client: TestClient, path: str, token: str | None, **data: str) -> int:
    form = data | ({"csrf_token": token} if token is not None else {})
    return client.post(path, data=form, follow_redirects=False).status_code


def test_the_list_shows_users_and_searches_them(client: TestClient, core: IdentityCore, linus: User) -> None:
    _create(core, email="grace@example.com", name="Grace Hopper")
    signed_in(client)
    page = client.get(USERS)
    assert page.status_code == 200
    assert "linus@example.com" in page.text and "grace@example.com" in page.text
    assert f'href="{USERS}/{linus.id}"' in page.text
    assert 'aria-current="page">Users' in page.text
    found = client.get(f"{USERS}?q=hopper").text
    assert "grace@example.com" in found and "linus@example.com" not in found
    assert "No user matches this search." in client.get(f"{USERS}?q=nobody").text


def test_the_list_pages_on(client: TestClient, core: IdentityCore, people: Cast) -> None:
    for number in range(26):
        _create(core, username=f"user{number:02d}")
    signed_in(client)
    first = client.get(USERS).text
    assert "26 users" in text_of(first) and "Previous page" not in first
    more = re.search(r'href="([^"]+)">Next page', first)
    assert more
    second = client.get(more.group(1).replace("&amp;", "&")).text
    assert "Previous page" in second and "Next page" not in second
    on_first, on_second = (re.findall(r'<td class="mono">(user\d\d)</td>', page) for page in (first, second))
    assert len(on_first) == 25 and len(on_second) == 1
    assert sorted(on_first + on_second) == [f"user{number:02d}" for number in range(26)]


def test_creating_a_user_opens_their_page_and_is_audited(client: TestClient, core: IdentityCore, people: Cast) -> None:
    signed_in(client)
    response = client.post(
        USERS, data={"csrf_token": csrf(client, USERS), "email": "Ada.L@Example.com", "username": "adal",
                     "name": "Ada L", "password": PASSWORD},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "ada.l@example.com" in page.text and "adal" in page.text and "Active" in page.text
    assert "(not verified)" in page.text  # only when the administrator says so, as with createUser
    (row,) = core.audit.search(DEFAULT_TENANT_ID, AuditQuery(action="user.create"))
    assert row.actor_sub == people.owner_id and row.actor_client_id is None
    assert PASSWORD not in str(row.details)


def test_an_administrator_may_vouch_for_the_email_address(client: TestClient, core: IdentityCore, people: Cast) -> None:
    signed_in(client)
    form = {"csrf_token": csrf(client, USERS), "email": "v@example.com", "password": PASSWORD, "emailVerified": "true"}
    response = client.post(USERS, data=form, follow_redirects=False)
    assert response.status_code == 303
    assert "(verified)" in client.get(response.headers["location"]).text
    no_email = client.post(USERS, data=form | {"email": "", "username": "nomail"})
    assert no_email.status_code == 400 and "emailVerified needs an email address." in no_email.text


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"email": "linus@example.com"}, 409, "has this email or username already"),
        ({"email": "new@example.com", "password": "short"}, 400, "password"),
        ({"username": "1bad"}, 400, "A username is 3 to 64"),
        ({}, 400, "Give the user an email, a username, or both."),
    ],
)
def test_a_refused_user_keeps_the_form_and_says_why(
    client: TestClient, core: IdentityCore, linus: User, fields: dict[str, str], status: int, message: str
) -> None:
    signed_in(client)
    form = {"csrf_token": csrf(client, USERS), "password": PASSWORD} | fields
    response = client.post(USERS, data=form)
    assert response.status_code == status
    assert message in response.text
    assert form["password"] not in response.text
    for value in fields.values():
        if value != form["password"]:
            assert f'value="{value}"' in response.text
    assert core.tenant_users.list(DEFAULT_TENANT_ID, query=None, page=1, page_size=10)[1] == 1


def test_a_user_s_page_shows_their_sessions_and_consents(client: TestClient, core: IdentityCore, linus: User) -> None:
    obtain_tenant_token(client, core, identifier="linus", password=PASSWORD)  # signs in at the hosted page
    signed_in(client)
    page = text_of(client.get(f"{USERS}/{linus.id}").text)
    assert "Signed in" in page and "No active session" not in page
    assert "App " in page and "openid profile email offline_access" in page
    assert "Set password" in page and "New password again" in page


def test_suspending_ends_access_and_reactivating_lets_them_back(
    client: TestClient, core: IdentityCore, linus: User
) -> None:
    obtain_tenant_token(client, core, identifier="linus", password=PASSWORD)
    signed_in(client)
    page = f"{USERS}/{linus.id}"
    assert _post(client, f"{page}/suspension", csrf(client, page), action="suspend") == 303
    assert core.tenant_users.get(DEFAULT_TENANT_ID, linus.id).suspended
    text = text_of(client.get(page).text)
    assert "Suspended" in text and "No standing consent." in text and "No active session" in text
    assert "Reactivate user" in text
    assert _post(client, f"{page}/suspension", csrf(client, page), action="reactivate") == 303
    assert not core.tenant_users.get(DEFAULT_TENANT_ID, linus.id).suspended
    assert _post(client, f"{page}/suspension", csrf(client, page), action="explode") == 400


def test_deleting_asks_first_then_deletes(client: TestClient, core: IdentityCore, linus: User) -> None:
    signed_in(client)
    page = f"{USERS}/{linus.id}"
    confirm = client.get(f"{page}/delete")
    assert confirm.status_code == 200 and "Delete linus@example.com?" in confirm.text
    assert core.tenant_users.list(DEFAULT_TENANT_ID, query=None, page=1, page_size=10)[1] == 1  # asking deletes nothing
    assert _post(client, f"{page}/delete", csrf(client, page)) == 303
    assert client.get(page).status_code == 404
    assert core.tenant_users.list(DEFAULT_TENANT_ID, query=None, page=1, page_size=10)[1] == 0


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_posts_without_the_right_csrf_token_are_refused_and_change_nothing(
    client: TestClient, core: IdentityCore, linus: User, token: str | None
) -> None:
    signed_in(client)
    page = f"{USERS}/{linus.id}"
    assert _post(client, USERS, token, username="mallory", password=PASSWORD) == 403
    assert _post(client, f"{page}/suspension", token, action="suspend") == 403
    assert _post(client, f"{page}/delete", token) == 403
    users, total = core.tenant_users.list(DEFAULT_TENANT_ID, query=None, page=1, page_size=10)
    assert total == 1 and not users[0].suspended


def test_a_read_only_member_sees_users_but_cannot_change_them(
    client: TestClient, core: IdentityCore, linus: User
) -> None:
    signed_in(client, READER_EMAIL, READER_PASSWORD)
    page = f"{USERS}/{linus.id}"
    listing, detail = client.get(USERS), client.get(page)
    assert listing.status_code == 200 and "linus@example.com" in listing.text and "Create user" not in listing.text
    assert detail.status_code == 200 and "Suspend user" not in detail.text and "Delete user" not in detail.text
    token = csrf(client, USERS)
    assert _post(client, USERS, token, username="mallory", password=PASSWORD) == 403
    assert _post(client, f"{page}/suspension", token, action="suspend") == 403
    assert _post(client, f"{page}/delete", token) == 403
    users, total = core.tenant_users.list(DEFAULT_TENANT_ID, query=None, page=1, page_size=10)
    assert total == 1 and not users[0].suspended


def test_an_administrator_of_another_tenant_gets_403_and_changes_nothing(
    client: TestClient, core: IdentityCore, linus: User
) -> None:
    acme_user = _create(core, "acme", username="acmeuser")
    signed_in(client, STRANGER_EMAIL, STRANGER_PASSWORD)
    page = f"{USERS}/{linus.id}"
    for path in (USERS, page, f"{page}/delete"):
        response = client.get(path)
        assert response.status_code == 403 and "linus" not in response.text
    token = csrf(client, "/console/t/acme/users")
    assert _post(client, f"{page}/delete", token) == 403
    assert _post(client, f"{page}/suspension", token, action="suspend") == 403
    assert not core.tenant_users.get(DEFAULT_TENANT_ID, linus.id).suspended
    # A user of its own tenant is not reachable through the default tenant's pages.
    signed_in(client)
    assert client.get(f"{USERS}/{acme_user.id}").status_code == 404


def test_markup_in_a_user_s_name_is_shown_as_text(client: TestClient, core: IdentityCore, people: Cast) -> None:
    hostile = _create(core, username="hostile", name=XSS)
    signed_in(client)
    for path in (USERS, f"{USERS}/{hostile.id}"):
        html = client.get(path).text
        assert XSS not in html and "&lt;script&gt;" in html

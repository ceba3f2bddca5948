"""Console test helpers: an owner, a read-only member and a stranger (administrator of another tenant only), and
signing each of them in on the in-process app."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import anyio
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from tests.support.inprocess import csrf_from, sign_in
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD

READER_EMAIL = "reader@example.com"
READER_PASSWORD = "a read-only member's passphrase"
STRANGER_EMAIL = "stranger@example.com"
STRANGER_PASSWORD = "another tenant's passphrase"
XSS = '<script>alert("x")</script>'


@dataclass(frozen=True)
class Cast:
    owner_id: str  # ada: owner of the default tenant
    reader_id: str  # read-only member of the default tenant
    stranger_id: str  # owner of tenant "acme" only


def cast(core: IdentityCore) -> Cast:
    owner = core.users.find_administrator(ADMIN_EMAIL)
    assert owner is not None
    reader = anyio.run(
        lambda: core.users.create_administrator(
            READER_EMAIL, READER_PASSWORD, tenant_id=DEFAULT_TENANT_ID, role="read-only"
        )
    )
    stranger = anyio.run(lambda: core.users.create_administrator(STRANGER_EMAIL, STRANGER_PASSWORD))
    core.tenants.create(
        "acme", "Acme", owner_user_id=stranger.id, actor=Actor(tenant_id=ADMIN_TENANT_ID, sub=stranger.id)
    )
    return Cast(owner.id, reader.id, stranger.id)


def signed_in(client: TestClient, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> TestClient:
    """Sign ``client`` in as this administrator (after signing out whoever was)."""
    client.cookies.clear()
    response = sign_in(client, "/console", email, password)
    assert response.status_code == 303, response.text
    return client


def csrf(client: TestClient, page: str = "/console") -> str:
    """A valid CSRF token for the signed-in browser, from a console page."""
    return csrf_from(client.get(page).text)


def text_of(page: str) -> str:
    """The page's text without tags, whitespace folded: what a reader sees."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())

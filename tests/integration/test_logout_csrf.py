"""RP-initiated logout at a tenant's end-session endpoint without logout CSRF: a bare link (or an image) must not
sign the user out. Without a valid ``id_token_hint`` (signed by this tenant, for the signed-in user) the user
confirms on a page (a form posted with the page's CSRF token); with one, logout proceeds at once."""

from __future__ import annotations

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from tests.support.inprocess import csrf_from
from tests.support.tokens import TENANT_CALLBACK, obtain_access_token, obtain_tenant_token, tenant_issuer

END_SESSION = "/t/default/oidc/end-session"
BYE = "http://127.0.0.1:7777/bye"
PASSWORD = "user passphrase 42"
ACTOR = Actor("default", "test")


@pytest.fixture
def app_id(core: IdentityCore) -> str:
    for email in ("bob@example.com", "eve@example.com"):
        anyio.run(lambda e=email: core.tenant_users.create("default", email=e, password=PASSWORD, actor=ACTOR))
    application = core.applications.create(
        "default", name="SPA", app_type="spa", actor=ACTOR, redirect_uris=[TENANT_CALLBACK],
        post_logout_redirect_uris=[BYE],
    )  # fmt: skip
    return application.id


def _signed_in_as_bob(client: TestClient, core: IdentityCore, app_id: str) -> str:
    """Sign bob in through the hosted page; his ID token."""
    issued = obtain_tenant_token(
        client, core, identifier="bob@example.com", password=PASSWORD, scope="openid", client_id=app_id
    )
    assert issued.id_token and _session_alive(client, core)
    return issued.id_token


def _session_alive(client: TestClient, core: IdentityCore) -> bool:
    raw = client.cookies.get("idp_session_default")
    return raw is not None and core.sessions.get(raw) is not None


def _logout(client: TestClient, app_id: str, **extra: str) -> dict[str, str]:
    return {"client_id": app_id, "post_logout_redirect_uri": BYE, "state": "s1", **extra}


def test_a_bare_get_asks_for_confirmation_and_keeps_the_session(
    client: TestClient, core: IdentityCore, app_id: str
) -> None:
    _signed_in_as_bob(client, core, app_id)

    page = client.get(END_SESSION, params=_logout(client, app_id), follow_redirects=False)

    assert page.status_code == 200 and "Sign out?" in page.text
    assert "location" not in page.headers
    assert _session_alive(client, core)
    assert 'name="csrf_token"' in page.text and f'value="{BYE}"' in page.text


def test_confirming_on_the_page_signs_out_and_returns_to_the_registered_uri(
    client: TestClient, core: IdentityCore, app_id: str
) -> None:
    _signed_in_as_bob(client, core, app_id)
    page = client.get(END_SESSION, params=_logout(client, app_id))

    done = client.post(
        END_SESSION,
        data={**_logout(client, app_id), "confirm": "yes", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )

    assert done.status_code == 303 and done.headers["location"] == f"{BYE}?state=s1"
    assert not _session_alive(client, core)


def test_a_confirmation_posted_without_the_csrf_token_is_refused(
    client: TestClient, core: IdentityCore, app_id: str
) -> None:
    _signed_in_as_bob(client, core, app_id)
    client.get(END_SESSION, params=_logout(client, app_id))  # the CSRF cookie exists; the form field is missing

    for data in ({"confirm": "yes"}, {"confirm": "yes", "csrf_token": "x" * 43}):
        refused = client.post(END_SESSION, data={**_logout(client, app_id), **data}, follow_redirects=False)
        assert refused.status_code == 403 and "location" not in refused.headers
    assert _session_alive(client, core)


def test_a_valid_id_token_hint_signs_out_at_once(client: TestClient, core: IdentityCore, app_id: str) -> None:
    id_token = _signed_in_as_bob(client, core, app_id)

    done = client.get(
        END_SESSION,
        params={"id_token_hint": id_token, "post_logout_redirect_uri": BYE, "state": "s1"},
        follow_redirects=False,
    )

    assert done.status_code == 303 and done.headers["location"] == f"{BYE}?state=s1"
    assert not _session_alive(client, core)


def _forged(issuer: str, subject: str, audience: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": 1, "exp": 4_000_000_000}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "forged"})


def test_a_forged_foreign_or_other_users_hint_counts_as_none(
    client: TestClient, core: IdentityCore, app_id: str
) -> None:
    bob_token = _signed_in_as_bob(client, core, app_id)
    bob = jwt.decode(bob_token, options={"verify_signature": False})["sub"]
    admin_issuer_token = obtain_access_token(client, scope="openid idp:read").id_token  # the MCP issuer signed it
    assert admin_issuer_token
    eve_browser = TestClient(client.app, base_url=str(client.base_url))
    eve_token = obtain_tenant_token(
        eve_browser, core, identifier="eve@example.com", password=PASSWORD, scope="openid", client_id=app_id
    ).id_token
    assert eve_token
    hints = {
        "forged": _forged(tenant_issuer("default"), bob, app_id),
        "other issuer": admin_issuer_token,
        "other user": eve_token,
        "garbage": "not-a-jwt",
    }
    for name, hint in hints.items():
        page = client.get(END_SESSION, params=_logout(client, app_id, id_token_hint=hint), follow_redirects=False)
        assert page.status_code == 200 and "Sign out?" in page.text, name
        assert _session_alive(client, core), name

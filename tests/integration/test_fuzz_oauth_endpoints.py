"""Property: whatever parameters a client sends to the OAuth endpoints, the answer is never a 5xx; errors are
RFC 6749-style JSON (an HTML error page or a redirect for /authorize), and a refused request writes nothing (no
client row from a refused registration, no token from a refused token request)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support.databases import fresh_database_url
from tests.support.fuzz import FUZZ_SETTINGS, form_fields, json_values, objects, snapshot, strings
from tests.support.inprocess import PUBLIC_URL, REDIRECT_URI, csrf_from, pkce_pair
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.tokens import obtain_access_token

pytestmark = pytest.mark.fuzz

#: Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750, RFC 7009, RFC 7591 and RFC 8707. Not server_error.
OAUTH_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "unsupported_response_type",
    "invalid_scope",
    "access_denied",
    "invalid_target",
    "invalid_token",
    "insufficient_scope",
    "unsupported_token_type",
    "invalid_redirect_uri",
    "invalid_client_metadata",
    "invalid_software_statement",
    "unapproved_software_statement",
    "temporarily_unavailable",
}
#: Rows a refused request must not add or change.
WATCHED_TABLES = ["clients", "client_secrets", "grants", "authorization_codes", "refresh_tokens", "users", "tenants"]
TENANT = "/t/default/oidc"
ACTOR = Actor(tenant_id="default", sub="fuzz-admin")


@dataclass
class Target:
    client: TestClient
    core: IdentityCore
    hints: list[str]
    basic: list[str]  # Authorization header values: real credentials, and near misses


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("fuzz-oauth")
    with fresh_database_url(directory) as database_url:
        settings = Settings(public_url=PUBLIC_URL, data_dir=directory, database_url=database_url)
        core = IdentityCore.from_settings(settings)
        core.bootstrap()
        anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
        with TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
            issued = obtain_access_token(client)
            web = core.applications.create(
                "default", name="Web", app_type="traditional", actor=ACTOR, redirect_uris=[REDIRECT_URI]
            )
            m2m = core.applications.create("default", name="Worker", app_type="m2m", actor=ACTOR, redirect_uris=[])
            web_secret = core.secrets.create("default", web.id, "temporary", ACTOR).value
            m2m_secret = core.secrets.create("default", m2m.id, "temporary", ACTOR).value
            _, challenge = pkce_pair()
            hints = [
                issued.client_id,
                issued.access_token,
                issued.refresh_token or "",
                web.id,
                m2m.id,
                web_secret,
                REDIRECT_URI,
                f"{PUBLIC_URL}/mcp",
                f"{PUBLIC_URL}{TENANT}",
                challenge,
                "S256",
                "plain",
                "code",
                "token",
                "id_token",
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "access_token",
                "urn:ietf:params:oauth:grant-type:device_code",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ]
            basic = [
                _basic(m2m.id, m2m_secret),
                _basic(web.id, web_secret),
                _basic(web.id, "wrong"),
                _basic(issued.client_id, ""),
                _basic(web.id + "\x00", web_secret),
                _basic("\x00", "\x00"),
                "Basic !!!not-base64",
                "Basic " + base64.b64encode(b"no-colon").decode(),
                "Bearer " + issued.access_token,
                "Bearer ",
            ]
            yield Target(client, core, hints, basic)
        core.close()


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


TOKEN_FIELDS = [
    "grant_type",
    "code",
    "redirect_uri",
    "client_id",
    "client_secret",
    "code_verifier",
    "refresh_token",
    "scope",
    "resource",
    "username",
    "password",
    "assertion",
    "client_assertion",
    "client_assertion_type",
]
REVOKE_FIELDS = ["token", "token_type_hint", "client_id", "client_secret"]
AUTHORIZE_FIELDS = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "nonce",
    "prompt",
    "max_age",
    "id_token_hint",
    "request",
    "request_uri",
    "response_mode",
    "login_hint",
]
DCR_SCHEMA: dict[str, Any] = {
    "properties": {
        "client_name": {"type": "string"},
        "redirect_uris": {"type": "array", "items": {"type": "string"}},
        "grant_types": {"type": "array", "items": {"enum": ["authorization_code", "refresh_token", "implicit"]}},
        "response_types": {"type": "array", "items": {"enum": ["code", "token"]}},
        "token_endpoint_auth_method": {"enum": ["none", "client_secret_basic", "client_secret_post"]},
        "scope": {"type": "string"},
        "client_uri": {"type": "string"},
        "logo_uri": {"type": "string"},
        "jwks_uri": {"type": "string"},
        "jwks": {"type": "object"},
        "software_id": {"type": "string"},
        "software_statement": {"type": "string"},
        "contacts": {"type": "array", "items": {"type": "string"}},
    }
}


def headers_strategy(target: Target) -> st.SearchStrategy[dict[str, str]]:
    sendable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)  # what HTTP can carry
    return st.fixed_dictionaries({}, optional={"Authorization": st.sampled_from(target.basic) | sendable})


def assert_oauth_json_error_or_success(response: Any, what: Any) -> dict[str, Any]:
    assert response.status_code < 500, f"HTTP {response.status_code} for {what!r}: {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith("application/json"), (what, response.text[:300])
    body = response.json()
    assert isinstance(body, dict), body
    if response.status_code >= 400:
        assert body.get("error") in OAUTH_ERRORS, f"{body} for {what!r}"
        assert isinstance(body.get("error_description", ""), str)
    return body


def assert_unchanged(target: Target, before: dict[str, Any], what: Any) -> None:
    after = snapshot(target.core.db, WATCHED_TABLES)
    changed = [name for name in before if before[name] != after.get(name)]
    assert not changed, f"a refused request changed {changed}: {what!r}"


def post_form(target: Target, path: str, form: dict[str, str], headers: dict[str, str]) -> Any:
    return target.client.post(path, content=urlencode(form), headers={**headers, **FORM})


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("path", ["/oauth/token", f"{TENANT}/token"])
def test_token_endpoint_answers_any_form_with_tokens_or_an_oauth_error(target: Target, path: str) -> None:
    @FUZZ_SETTINGS
    @given(
        form=form_fields({name: strings(target.hints) for name in TOKEN_FIELDS}),
        headers=headers_strategy(target),
    )
    def property_holds(form: dict[str, str], headers: dict[str, str]) -> None:
        before = snapshot(target.core.db, WATCHED_TABLES)
        response = post_form(target, path, form, headers)
        body = assert_oauth_json_error_or_success(response, (form, headers))
        if response.status_code == 200:
            assert body.get("token_type", "").lower() == "bearer" and body.get("access_token"), body
        else:
            # Presenting a rotated refresh token revokes its grant: the one write a refused request may make.
            before.pop("grants", None)
            assert_unchanged(target, before, (form, headers))

    property_holds()


@pytest.mark.parametrize("path", ["/oauth/revoke", f"{TENANT}/revoke", f"{TENANT}/introspect"])
def test_revocation_and_introspection_answer_any_form_with_json(target: Target, path: str) -> None:
    @FUZZ_SETTINGS
    @given(
        form=form_fields({name: strings(target.hints) for name in REVOKE_FIELDS}),
        headers=headers_strategy(target),
        content_type=st.sampled_from([FORM["Content-Type"]] * 4 + ["application/json", "text/plain", ""]),
    )
    def property_holds(form: dict[str, str], headers: dict[str, str], content_type: str) -> None:
        response = target.client.post(path, content=urlencode(form), headers={**headers, "Content-Type": content_type})
        if response.status_code == 200 and not response.content:
            return  # RFC 7009 §2.2: revocation may answer 200 with an empty body
        body = assert_oauth_json_error_or_success(response, (form, headers, content_type))
        if path.endswith("/introspect") and response.status_code == 200:
            assert isinstance(body.get("active"), bool), body

    property_holds()


def test_registration_answers_any_body_with_a_client_or_an_error_and_writes_nothing_when_refused(
    target: Target,
) -> None:
    bodies = st.one_of(
        objects(DCR_SCHEMA, {}, target.hints).map(json.dumps),
        json_values.map(json.dumps),
        st.binary(max_size=200),
        st.text(max_size=200),
    )

    @FUZZ_SETTINGS
    @given(body=bodies, content_type=st.sampled_from(["application/json"] * 5 + [FORM["Content-Type"], ""]))
    def property_holds(body: str | bytes, content_type: str) -> None:
        before = snapshot(target.core.db, WATCHED_TABLES)
        response = target.client.post("/oauth/register", content=body, headers={"Content-Type": content_type})
        result = assert_oauth_json_error_or_success(response, (body, content_type))
        if response.status_code == 201:
            assert result.get("client_id"), result
            assert target.core.clients.get("admin", result["client_id"]) is not None
        else:
            assert response.status_code == 400, response.text
            assert_unchanged(target, before, body)

    property_holds()


@pytest.mark.parametrize("path", ["/oauth/authorize", f"{TENANT}/authorize"])
def test_authorization_endpoint_answers_any_query_with_a_redirect_or_an_html_error_page(
    target: Target, path: str
) -> None:
    @FUZZ_SETTINGS
    @given(
        query=form_fields({name: strings(target.hints) for name in AUTHORIZE_FIELDS}),
        method=st.sampled_from(["GET", "GET", "POST"]),
    )
    def property_holds(query: dict[str, str], method: str) -> None:
        before = snapshot(target.core.db, WATCHED_TABLES)
        if method == "GET":
            response = target.client.get(f"{path}?{urlencode(query)}", follow_redirects=False)
        else:
            response = target.client.post(path, content=urlencode(query), headers=FORM, follow_redirects=False)
        assert response.status_code < 500, f"HTTP {response.status_code} for {query!r}: {response.text[:300]}"
        if response.status_code in (302, 303):
            assert response.headers.get("location"), response.headers
        else:
            assert 400 <= response.status_code < 500, (response.status_code, query)
            assert response.headers.get("content-type", "").startswith("text/html"), (query, response.text[:300])
        # Starting an authorization writes no client, code or token: that happens after sign-in and consent.
        assert_unchanged(target, before, query)

    property_holds()


def test_userinfo_answers_any_authorization_with_claims_or_invalid_token(target: Target) -> None:
    @FUZZ_SETTINGS
    @given(
        authorization=st.sampled_from(target.basic) | strings(target.hints).map(lambda t: f"Bearer {t}"),
        method=st.sampled_from(["GET", "POST"]),
    )
    def property_holds(authorization: str, method: str) -> None:
        headers = {"Authorization": authorization} if "\n" not in authorization else {}
        try:
            response = target.client.request(method, f"{TENANT}/userinfo", headers=headers)
        except (UnicodeEncodeError, ValueError):
            return  # not sendable as an HTTP header at all
        body = assert_oauth_json_error_or_success(response, authorization)
        if response.status_code == 401:
            assert body["error"] == "invalid_token"
            assert response.headers["www-authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 200 and body.get("sub"), body

    property_holds()


def test_nul_characters_are_refused_before_they_reach_the_database(target: Target) -> None:
    """Found by the properties above on PostgreSQL, which refuses NUL in text even as a query parameter: each of
    these was a 500. Kept as plain examples so they run every time."""
    web_id = target.hints[3]
    forms = [
        ("/oauth/token", {"grant_type": "authorization_code", "client_id": "\x00", "code": "x"}, {}),
        (f"{TENANT}/token", {"grant_type": "client_credentials", "client_id": "a\x00", "client_secret": "x"}, {}),
        (f"{TENANT}/token", {"grant_type": "client_credentials"}, {"Authorization": _basic(web_id + "\x00", "x")}),
        ("/oauth/revoke", {"token": "\x00", "client_id": "\x00"}, {}),
        (f"{TENANT}/introspect", {"token": "x"}, {"Authorization": _basic("\x00", "x")}),
    ]
    for path, form, headers in forms:
        response = post_form(target, path, form, headers)
        assert response.status_code in (400, 401), (path, form, response.text)
        assert response.json()["error"] in ("invalid_request", "invalid_client"), (path, form, response.text)

    registered = target.client.post(
        "/oauth/register",
        json={"client_name": "a\x00b", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
    )
    assert registered.status_code == 400 and registered.json()["error"] == "invalid_client_metadata"

    query = urlencode({"client_id": "x\x00", "response_type": "code"})
    for path in ("/oauth/authorize", f"{TENANT}/authorize"):
        page = target.client.get(f"{path}?{query}")
        assert page.status_code == 400 and page.headers["content-type"].startswith("text/html"), page.text[:200]

    assert target.client.get("/t/def%00ault/oidc/jwks").status_code == 404
    ended = target.client.get(f"{TENANT}/end-session?client_id=%00&post_logout_redirect_uri=x", follow_redirects=False)
    assert ended.status_code == 400
    page = target.client.get("/sign-in")
    signed_in = target.client.post(
        "/sign-in",
        data={"csrf_token": csrf_from(page.text), "identifier": "a\x00@example.com", "password": "x\x00", "next": "/"},
        follow_redirects=False,
    )
    assert signed_in.status_code in (400, 401), signed_in.status_code

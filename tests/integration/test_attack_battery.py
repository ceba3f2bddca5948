"""Forged and misdirected bearer tokens against both protected resources: /mcp (the admin issuer's MCP resource) and
a tenant's userinfo endpoint (/t/default/oidc/userinfo). Every case is refused with 401 and ``invalid_token``.

Each case builds its token for the target under attack (the target's own issuer, audience and key, so the case
differs from an accepted token in one respect only); the controls at the end prove such tokens are accepted.

Audience: a token is accepted only when ``aud`` is exactly the resource, as a single string. RFC 9068 §4 asks only
that ``aud`` contain the resource, so a list holding it plus another would pass there; this server never issues a
token for several audiences (RFC 8707 binds each token to one resource), so such a token is forged or meant for
another resource as well, and it is refused (PyJWT's ``strict_aud``). A list of just the resource goes the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.crypto import new_id
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from idp_mcp.settings import Settings
from idp_mcp.store.repos import clients as clients_repo
from tests.support.databases import fresh_database_url
from tests.support.inprocess import PUBLIC_URL, sign_in
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mcp_http import McpSession
from tests.support.tokens import (
    MCP_RESOURCE,
    IssuedToken,
    hmac_token,
    mint_token,
    obtain_access_token,
    obtain_tenant_token,
    public_jwk_json,
    public_pem,
    tamper,
    tamper_header,
    tenant_issuer,
    tenant_token_claims,
    token_claims,
    unsigned_token,
)

USER_PASSWORD = "user passphrase 42"
ACTOR = Actor(DEFAULT_TENANT_ID, "test")
USERINFO = "/t/default/oidc/userinfo"


@dataclass
class World:
    client: TestClient
    app: Starlette
    core: IdentityCore
    admin: IssuedToken  # a real /mcp token, with an ID token (openid asked for)
    user: IssuedToken  # a real userinfo token of the default tenant, with an ID token and a refresh token
    m2m: str  # a client-credentials token of the default tenant
    targets: dict[str, Target] = field(default_factory=dict)


@dataclass
class Target:
    """One protected resource and what an accepted token for it looks like."""

    name: str
    world: World
    signing_tenant: str
    issuer: str
    audience: str
    narrow_scope: str  # a scope the token may have ...
    wide_scope: str  # ... and one it may not be stretched to

    @property
    def real(self) -> IssuedToken:
        return self.world.admin if self.name == "mcp" else self.world.user

    @property
    def other(self) -> Target:
        return self.world.targets["userinfo" if self.name == "mcp" else "mcp"]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        real = self.real
        if self.name == "mcp":
            return token_claims(real.user_id, real.client_id, **overrides)
        return tenant_token_claims(real.user_id, real.client_id, **overrides)

    def mint(self, **overrides: Any) -> str:
        return mint_token(self.world.core, self.claims(**overrides), signing_tenant=self.signing_tenant)

    def fresh_token(self, *, new_user: bool = False) -> tuple[IssuedToken, str]:
        """A real token never presented before (the verifier caches revocation and subject checks for a few
        seconds), for a brand-new user when asked; and that user's id."""
        world = self.world
        email = f"u{new_id(4)}@example.com"
        if self.name == "mcp":
            browser = world.client
            if new_user:
                anyio.run(
                    lambda: world.core.users.create_administrator(
                        email, ADMIN_PASSWORD, tenant_id=DEFAULT_TENANT_ID, role="admin"
                    )
                )
                browser = TestClient(world.app, base_url=PUBLIC_URL)
                assert sign_in(browser, "/", email=email).status_code == 303
            issued = obtain_access_token(browser, client_name=f"Agent {new_id(3)}")
            return issued, issued.user_id
        identifier = "bob@example.com"
        if new_user:
            anyio.run(
                lambda: world.core.tenant_users.create(
                    DEFAULT_TENANT_ID, email=email, password=USER_PASSWORD, actor=ACTOR
                )
            )
            identifier = email
        issued = obtain_tenant_token(world.client, world.core, identifier=identifier, password=USER_PASSWORD)
        return issued, issued.user_id

    def present(self, authorization: str | None, *, query: dict[str, str] | None = None,
                form: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        headers = {"Authorization": authorization} if authorization is not None else {}
        client = self.world.client
        if self.name == "userinfo":
            if form is not None:
                return client.post(USERINFO, data=form, headers=headers, params=query)
            return client.get(USERINFO, headers=headers, params=query)
        if form is not None:
            return client.post("/mcp", data=form, headers={**headers, "Accept": "application/json, text/event-stream"})
        session = McpSession(client, None)
        path = "/mcp" + (f"?{httpx.QueryParams(query)}" if query else "")
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
        return client.post(path, json=body, headers=session.headers(headers))

    def bearer(self, token: str) -> httpx.Response:
        return self.present(f"Bearer {token}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("attack-battery")
    with fresh_database_url(directory) as database_url:
        settings = Settings(public_url=PUBLIC_URL, data_dir=directory, database_url=database_url)
        core = IdentityCore.from_settings(settings)
        core.bootstrap()
        anyio.run(core.users.create_administrator, ADMIN_EMAIL, ADMIN_PASSWORD)
        anyio.run(
            lambda: core.tenant_users.create(
                DEFAULT_TENANT_ID, email="bob@example.com", password=USER_PASSWORD, actor=ACTOR
            )
        )
        app = create_app(settings, core)
        with TestClient(app, base_url=PUBLIC_URL) as client:
            admin = obtain_access_token(client, scope="idp:read idp:write offline_access openid")
            user = obtain_tenant_token(client, core, identifier="bob@example.com", password=USER_PASSWORD)
            m2m_app = core.applications.create(DEFAULT_TENANT_ID, name="Worker", app_type="m2m", actor=ACTOR)
            secret = core.secrets.create(DEFAULT_TENANT_ID, m2m_app.id, "temporary", ACTOR)
            m2m = client.post(
                f"/t/{DEFAULT_TENANT_ID}/oidc/token",
                data={"grant_type": "client_credentials"},
                auth=(m2m_app.id, secret.value),
            )
            assert m2m.status_code == 200, m2m.text
            world = World(client, app, core, admin, user, m2m.json()["access_token"])
            world.targets = {
                "mcp": Target(
                    "mcp", world, ADMIN_TENANT_ID, PUBLIC_URL, MCP_RESOURCE, "idp:read", "idp:read idp:write"
                ),
                "userinfo": Target(
                    "userinfo",
                    world,
                    DEFAULT_TENANT_ID,
                    tenant_issuer(),
                    tenant_issuer(),
                    "openid",
                    "openid email profile",
                ),
            }
            yield world
        core.close()


@pytest.fixture(params=["mcp", "userinfo"])
def target(request: pytest.FixtureRequest, world: World) -> Target:
    return world.targets[request.param]


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.lower().startswith("bearer")
    assert 'error="invalid_token"' in challenge
    assert "mcp-session-id" not in response.headers


def _now(offset: int = 0) -> int:
    return int(time.time()) + offset


def _swap_signature(target: Target) -> str:
    one, other = target.mint(), target.mint(jti="another")
    return ".".join([*one.split(".")[:2], other.split(".")[2]])


def _attacker_key_with_embedded_jwk(target: Target) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return mint_token(target.world.core, target.claims(), key=key, headers={"kid": "attacker-key", "jwk": jwk})


def _suspended_user(target: Target) -> str:
    issued, user_id = target.fresh_token(new_user=True)
    tenant = ADMIN_TENANT_ID if target.name == "mcp" else DEFAULT_TENANT_ID
    target.world.core.tenant_users.update(tenant, user_id, UserChanges(suspended=True), ACTOR)
    return issued.access_token


def _deleted_user(target: Target) -> str:
    issued, user_id = target.fresh_token(new_user=True)
    tenant = ADMIN_TENANT_ID if target.name == "mcp" else DEFAULT_TENANT_ID
    target.world.core.tenant_users.delete(tenant, user_id, ACTOR)
    return issued.access_token


def _deleted_client(target: Target) -> str:
    issued, _ = target.fresh_token()
    core = target.world.core
    if target.name == "mcp":  # an agent's registration has no delete tool: remove it as an operator would
        with core.db.transaction() as conn:
            clients_repo.delete_client(conn, ADMIN_TENANT_ID, issued.client_id)
    else:
        core.applications.delete(DEFAULT_TENANT_ID, issued.client_id, ACTOR)
    return issued.access_token


def _revoked_grant(target: Target) -> str:
    issued, _ = target.fresh_token()
    tenant = ADMIN_TENANT_ID if target.name == "mcp" else DEFAULT_TENANT_ID
    target.world.core.grants.revoke_family(tenant, issued.grant_id, reason="test", client_id=issued.client_id)
    return issued.access_token


def _id_token(target: Target) -> str:
    token = target.real.id_token
    assert token, "the flow asked for openid: an ID token was issued"
    return token


def _refresh_token(target: Target) -> str:
    token = target.real.refresh_token
    assert token
    return token


Case = Callable[[Target], str]

# Tokens presented as ``Authorization: Bearer <token>``.
FORGED: dict[str, Case] = {
    # --- the signature and the key ---------------------------------------------------------------------------
    "alg_none": lambda t: unsigned_token(t.world.core, t.claims(), signing_tenant=t.signing_tenant),
    "alg_None_capitalised": lambda t: unsigned_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, alg="None"
    ),
    "hs256_keyed_with_the_public_key_as_pem": lambda t: hmac_token(
        t.world.core, t.claims(), public_pem(t.world.core, t.signing_tenant), signing_tenant=t.signing_tenant
    ),
    "hs256_keyed_with_the_public_key_as_jwk": lambda t: hmac_token(
        t.world.core, t.claims(), public_jwk_json(t.world.core, t.signing_tenant), signing_tenant=t.signing_tenant
    ),
    "rs256_header_on_the_es256_kid_signed_by_an_rsa_key": lambda t: mint_token(
        t.world.core,
        t.claims(),
        signing_tenant=t.signing_tenant,
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
    ),
    "signed_by_an_unknown_key_under_the_servers_kid": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, key=ec.generate_private_key(ec.SECP256R1())
    ),
    "unknown_kid": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, headers={"kid": "no-such-kid"}
    ),
    "kid_with_path_traversal": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, headers={"kid": "../../../../dev/null"}
    ),
    "kid_with_sql_injection": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, headers={"kid": "' OR '1'='1"}
    ),
    "kid_that_is_not_a_string": lambda t: tamper_header(t.mint(), kid=1),
    "missing_kid": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, headers={"kid": None}
    ),
    "kid_and_key_of_the_other_issuer": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.other.signing_tenant
    ),
    "attackers_key_embedded_in_a_jwk_header": _attacker_key_with_embedded_jwk,
    "attackers_key_named_by_a_jku_header": lambda t: mint_token(
        t.world.core,
        t.claims(),
        key=ec.generate_private_key(ec.SECP256R1()),
        headers={"kid": "attacker", "jku": "https://attacker.example/jwks.json"},
    ),
    "truncated_signature": lambda t: t.mint()[:-8],
    "empty_signature": lambda t: t.mint().rsplit(".", 1)[0] + ".",
    "signature_of_another_token": _swap_signature,
    "tampered_payload_scope_escalation": lambda t: tamper(t.mint(scope=t.narrow_scope), scope=t.wide_scope),
    "tampered_payload_other_subject": lambda t: tamper(t.real.access_token, sub="someone-else"),
    "tampered_header": lambda t: tamper_header(t.mint(), cty="JWT"),
    "typ_jwt_instead_of_at_jwt": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, headers={"typ": "JWT"}
    ),
    "missing_typ": lambda t: mint_token(
        t.world.core, t.claims(), signing_tenant=t.signing_tenant, headers={"typ": None}
    ),
    # --- issuer ---------------------------------------------------------------------------------------------
    "wrong_iss": lambda t: t.mint(iss="https://evil.example"),
    "iss_with_a_trailing_slash": lambda t: t.mint(iss=f"{t.issuer}/"),
    "iss_of_the_other_issuer": lambda t: t.mint(iss=t.other.issuer),
    "missing_iss": lambda t: t.mint(iss=None),
    # --- audience -------------------------------------------------------------------------------------------
    "wrong_aud": lambda t: t.mint(aud="https://other.example/api"),
    "aud_of_the_other_resource": lambda t: t.mint(aud=t.other.audience),
    "missing_aud": lambda t: t.mint(aud=None),
    "aud_list_with_the_right_one_and_another": lambda t: t.mint(aud=[t.audience, "https://other.example/api"]),
    "aud_list_of_only_the_right_one": lambda t: t.mint(aud=[t.audience]),
    "aud_with_a_trailing_slash": lambda t: t.mint(aud=f"{t.audience}/"),
    # --- time -----------------------------------------------------------------------------------------------
    "expired": lambda t: t.mint(iat=_now(-600), nbf=_now(-600), exp=_now(-60)),
    "nbf_in_the_future": lambda t: t.mint(nbf=_now(600), exp=_now(900)),
    "iat_far_in_the_future": lambda t: t.mint(iat=_now(86400), nbf=None, exp=_now(86400 + 300)),
    "exp_not_a_number": lambda t: t.mint(exp="tomorrow"),
    "missing_exp": lambda t: t.mint(exp=None),
    # --- state on the server --------------------------------------------------------------------------------
    "revoked_grant": _revoked_grant,
    "deleted_client": _deleted_client,
    "suspended_user": _suspended_user,
    "deleted_user": _deleted_user,
    # --- the wrong kind of token ----------------------------------------------------------------------------
    "id_token_as_access_token": _id_token,
    "refresh_token_as_bearer": _refresh_token,
    "real_access_token_of_the_other_issuer": lambda t: t.other.real.access_token,
    "client_credentials_token_of_the_tenant": lambda t: t.world.m2m,
    "garbage": lambda t: "this-is-not-a-jwt",
    "two_segments": lambda t: ".".join(t.mint().split(".")[:2]),
}


@pytest.mark.parametrize("case", FORGED.values(), ids=FORGED.keys())
def test_forged_or_misdirected_token_is_refused(target: Target, case: Case) -> None:
    assert_refused(target.bearer(case(target)))


def test_the_battery_has_at_least_25_cases_for_each_resource() -> None:
    assert len(FORGED) >= 25


# --- how the token is presented --------------------------------------------------------------------------


def test_a_valid_token_in_the_query_string_is_ignored(target: Target) -> None:
    assert_refused(target.present(None, query={"access_token": target.mint()}))


def test_a_valid_token_in_a_form_body_is_ignored(target: Target) -> None:
    assert_refused(target.present(None, form={"access_token": target.mint()}))


def test_a_valid_token_under_another_scheme_is_ignored(target: Target) -> None:
    assert_refused(target.present(f"Basic {target.mint()}"))


def test_an_empty_bearer_is_refused(target: Target) -> None:
    assert_refused(target.present("Bearer"))


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(target: Target, scheme: str) -> None:
    """RFC 6750 §2.1 with RFC 9110 §11.1: the auth scheme is case-insensitive."""
    response = target.present(f"{scheme} {target.mint()}")

    assert response.status_code == 200, response.text


# --- controls: what each refusal differs from -------------------------------------------------------------


def test_the_real_token_is_accepted(target: Target) -> None:
    assert target.bearer(target.real.access_token).status_code == 200


def test_a_minted_token_with_every_claim_right_is_accepted(target: Target) -> None:
    assert target.bearer(target.mint()).status_code == 200


# --- /mcp only: the administrator must still administer the tenant ---------------------------------------


def test_mcp_refuses_a_token_acting_on_a_tenant_the_administrator_does_not_administer(world: World) -> None:
    admin = world.core.users.find_administrator(ADMIN_EMAIL)
    assert admin is not None
    world.core.tenants.create("elsewhere", "Elsewhere", owner_user_id="someone-else", actor=Actor("admin", "x"))
    mcp = world.targets["mcp"]

    assert_refused(mcp.bearer(mcp.mint(tenant="elsewhere")))

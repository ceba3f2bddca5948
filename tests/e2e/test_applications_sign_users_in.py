"""The headline: an agent creates an application through MCP, and the developer's app (authlib's OIDC
client) really signs a user in through the tenant's hosted sign-in page in Chromium."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from playwright.async_api import Page

from tests.support.app_server import AppServer
from tests.support.browser import BrowserAuthorizer
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, run_live_server
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

USER_EMAIL = "carol@example.com"
USER_PASSWORD = "a long secret passphrase 7"


async def _get_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return dict((await http.get(url)).json())


async def _sign_in_at_hosted_page(page: Page, url: str, app: AppServer) -> str:
    """The user signs in on the tenant's page and lands back on the application with a code."""
    await page.goto(url)
    await page.fill("input[name=identifier]", USER_EMAIL)
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{app.callback}**")
    assert app.received, "the application never received the callback"
    return app.received[-1]


def _verify_id_token(id_token: str, jwks: dict[str, Any], issuer: str, client_id: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))
    return dict(jwt.decode(id_token, key.key, algorithms=[key.algorithm_name], audience=client_id, issuer=issuer))


async def test_agent_creates_a_traditional_app_that_signs_a_real_user_in(
    live_server: LiveServer, page: Page, callback_uri: str, app_server: AppServer
) -> None:
    secrets_seen: list[str] = [ADMIN_PASSWORD, USER_PASSWORD]
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    storage = MemoryTokenStorage()
    with anyio.fail_after(90):
        async with connect(live_server.mcp_url, authorizer, storage, redirect_uri=callback_uri) as mcp:
            app = await call_ok(
                mcp,
                "createApplication",
                {"name": "Carol's shop", "type": "traditional", "redirectUris": [app_server.callback]},
            )
            await call_ok(mcp, "createUser", {"email": USER_EMAIL, "password": USER_PASSWORD, "name": "Carol"})
        secret = app["temporarySecret"]["value"]
        secrets_seen.append(secret)
        assert storage.tokens is not None
        secrets_seen += [storage.tokens.access_token, storage.tokens.refresh_token or ""]

        # The developer's app: authlib's OIDC client, configured from the tool's result only.
        async with AsyncOAuth2Client(
            client_id=app["clientId"],
            client_secret=secret,
            redirect_uri=app_server.callback,
            scope="openid profile email offline_access",
            code_challenge_method="S256",
        ) as oidc:
            discovery = await _get_json(app["discoveryUrl"])
            assert discovery["issuer"] == app["issuer"]
            verifier, nonce = generate_token(48), generate_token(16)
            url, state = oidc.create_authorization_url(
                discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce
            )
            callback = await _sign_in_at_hosted_page(page, url, app_server)
            token = await oidc.fetch_token(
                discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
            )
            secrets_seen += [token["access_token"], token["refresh_token"], token["id_token"]]

            jwks = await _get_json(discovery["jwks_uri"])
            claims = _verify_id_token(token["id_token"], jwks, app["issuer"], app["clientId"])
            assert claims["nonce"] == nonce and claims["email"] == USER_EMAIL

            userinfo = (await oidc.get(discovery["userinfo_endpoint"])).json()
            assert userinfo["sub"] == claims["sub"] and userinfo["email"] == USER_EMAIL and userinfo["name"] == "Carol"

            first_refresh = token["refresh_token"]
            rotated = await oidc.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
            assert rotated["refresh_token"] != first_refresh
            secrets_seen += [rotated["access_token"], rotated["refresh_token"]]
            with pytest.raises(OAuthError) as refused:
                await oidc.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
            assert refused.value.error == "invalid_grant"

    logs = live_server.logs()
    leaked = [value[:12] + "…" for value in secrets_seen if value and value in logs]
    assert not leaked, f"secrets in the server log: {leaked}"


async def test_spa_signs_a_user_in_with_pkce_and_no_secret(
    live_server: LiveServer, page: Page, callback_uri: str, app_server: AppServer
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(90):
        async with connect(live_server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            app = await call_ok(
                mcp,
                "createApplication",
                {"name": "Carol's SPA", "type": "spa", "redirectUris": [app_server.callback],
                 "corsOrigins": [app_server.base_url]},
            )  # fmt: skip
            assert app.get("temporarySecret") is None
            await call_ok(mcp, "createUser", {"email": USER_EMAIL, "password": USER_PASSWORD})

        async with AsyncOAuth2Client(
            client_id=app["clientId"],
            redirect_uri=app_server.callback,
            scope="openid email",
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        ) as oidc:
            discovery = await _get_json(app["discoveryUrl"])
            verifier, nonce = generate_token(48), generate_token(16)
            url, state = oidc.create_authorization_url(
                discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce
            )
            callback = await _sign_in_at_hosted_page(page, url, app_server)
            token = await oidc.fetch_token(
                discovery["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state,
                headers={"Origin": app_server.base_url},
            )  # fmt: skip
            jwks = await _get_json(discovery["jwks_uri"])
            assert _verify_id_token(token["id_token"], jwks, app["issuer"], app["clientId"])["nonce"] == nonce


async def test_m2m_temporary_secret_works_until_its_ttl_and_stops_at_once_when_revoked(
    tmp_path: Path, database_url: str, page: Page, callback_uri: str
) -> None:
    with run_live_server(tmp_path / "server", database_url, extra_env={"IDP_MCP_TEMPORARY_SECRET_TTL": "3"}) as server:
        assert server.cli("admin", "create", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD).returncode == 0
        authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
        with anyio.fail_after(90):
            async with connect(server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
                app = await call_ok(
                    mcp, "createApplication", {"name": "Nightly job", "type": "m2m", "redirectUris": []}
                )
                token_endpoint = f"{app['issuer']}/token"

                async def client_credentials(secret: str) -> dict[str, Any]:
                    async with AsyncOAuth2Client(client_id=app["clientId"], client_secret=secret) as m2m:
                        try:
                            return dict(await m2m.fetch_token(token_endpoint, grant_type="client_credentials"))
                        except OAuthError as error:
                            return {"error": error.error}

                first = app["temporarySecret"]["value"]
                assert "access_token" in await client_credentials(first)
                await asyncio.sleep(3.5)
                assert (await client_credentials(first))["error"] == "invalid_client"

                second = await call_ok(mcp, "createTemporarySecret", {"applicationId": app["applicationId"]})
                assert "access_token" in await client_credentials(second["value"])
                revoked = await call_ok(mcp, "revokeTemporarySecrets", {"applicationId": app["applicationId"]})
                assert revoked["revoked"] >= 1
                assert (await client_credentials(second["value"]))["error"] == "invalid_client"

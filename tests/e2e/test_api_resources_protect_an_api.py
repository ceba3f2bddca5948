"""The headline of API resources: an agent registers an API, its permissions and roles through MCP; the protect-an-api
guide's FastAPI code (read through getInstructions, so the real renderer fills it in) runs under uvicorn as the API;
tokens from the real server decide what it answers.

- An m2m application holding an m2m role with both permissions gets a token (``resource``, no scope) that the API
  accepts on both routes; one without the role gets no permission and the API answers 403.
- A user signs in through the hosted page in Chromium (authlib's client) asking for both permissions with
  ``resource``: the token holds only the one their user role grants; after ``removeRoles`` the next refresh holds
  none.
- A token for API A is refused (401) by the same code checking API B, and the other way round.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from markdown_it import MarkdownIt
from playwright.async_api import Page

from tests.support.app_server import AppServer
from tests.support.browser import BrowserAuthorizer
from tests.support.guide_code import run_uvicorn_app
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

GUIDE_ID = "protect-an-api"
API_FILE_MARKER = "# file: api.py"
API_A = "https://api.example.com/invoices"
API_B = "https://reports.example.com"
USER_EMAIL = "erin@example.com"
USER_PASSWORD = "a long secret passphrase 11"


def api_code(markdown: str) -> str:
    """The guide's complete API: exactly one ```python block whose first line is ``# file: api.py``."""
    blocks = [
        token.content
        for token in MarkdownIt("commonmark").parse(markdown)
        if token.type == "fence"
        and token.info.strip().split(" ")[0] == "python"
        and token.content.split("\n", 1)[0].strip() == API_FILE_MARKER
    ]
    assert len(blocks) == 1, f"{GUIDE_ID}.md must hold exactly one ```python block starting '{API_FILE_MARKER}'"
    return blocks[0]


def run_api(folder: Path, env: dict[str, str]) -> contextlib.AbstractContextManager[str]:
    """``python -m uvicorn api:app`` in ``folder``, as the guide says to run it; yields its base URL."""
    return run_uvicorn_app(folder, "api", free_port(), env)


async def _client_credentials(token_endpoint: str, app: dict[str, Any], resource: str) -> str:
    async with AsyncOAuth2Client(client_id=app["clientId"], client_secret=app["temporarySecret"]["value"]) as m2m:
        token = await m2m.fetch_token(token_endpoint, grant_type="client_credentials", resource=resource)
    return str(token["access_token"])


async def _status(method: str, url: str, token: str) -> int:
    async with httpx.AsyncClient() as http:
        response = await http.request(method, url, headers={"Authorization": f"Bearer {token}"} if token else {})
    return response.status_code


def _scope(token: str) -> set[str]:
    return set(str(jwt.decode(token, options={"verify_signature": False})["scope"]).split())


async def test_the_guides_api_enforces_roles_and_permissions_from_real_tokens(
    live_server: LiveServer, page: Page, callback_uri: str, app_server: AppServer, tmp_path: Path
) -> None:
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(240):
        async with connect(live_server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            permissions = [{"name": "read:invoices", "description": "Read invoices"},
                           {"name": "delete:invoices", "description": "Delete invoices"}]  # fmt: skip
            await call_ok(
                mcp, "createApiResource", {"name": "Invoices", "identifier": API_A, "permissions": permissions}
            )
            both = [{"resource": API_A, "permission": p["name"]} for p in permissions]
            reader = await call_ok(mcp, "createRole", {"name": "Reader", "type": "user", "permissions": both[:1]})
            service = await call_ok(mcp, "createRole", {"name": "Invoice service", "type": "m2m", "permissions": both})

            job = await call_ok(mcp, "createApplication", {"name": "Billing job", "type": "m2m"})
            plain = await call_ok(mcp, "createApplication", {"name": "Other job", "type": "m2m"})
            web = await call_ok(
                mcp, "createApplication", {"name": "Erin's web app", "type": "traditional",
                                           "redirectUris": [app_server.callback]},
            )  # fmt: skip
            await call_ok(mcp, "assignRoles", {"roleIds": [service["roleId"]], "applicationId": job["applicationId"]})
            user = await call_ok(mcp, "createUser", {"email": USER_EMAIL, "password": USER_PASSWORD})
            await call_ok(mcp, "assignRoles", {"roleIds": [reader["roleId"]], "userId": user["userId"]})
            shown = await call_ok(mcp, "getUser", {"userId": user["userId"]})
            assert shown["permissions"] == [{"resource": API_A, "permission": "read:invoices"}]

            guide = await call_ok(mcp, "getInstructions", {"topic": GUIDE_ID, "applicationId": job["applicationId"]})
            code = api_code(guide["markdown"])
            assert f'"{API_A}"' in code and f'"{job["issuer"]}"' in code
            assert "{{" not in code and "<your" not in code, "the guide's API has a placeholder left"

            # A second API of the tenant, for the audience check.
            await call_ok(
                mcp, "createApiResource", {"name": "Reports", "identifier": API_B, "permissions": permissions}
            )

            folder = tmp_path / "guide-api"
            folder.mkdir()
            (folder / "api.py").write_text(code, encoding="utf-8")
            token_endpoint = f"{job['issuer']}/token"

            with run_api(folder, {}) as api_a, run_api(folder, {"API_IDENTIFIER": API_B}) as api_b:
                # The m2m application with the role: every permission, both routes.
                service_token = await _client_credentials(token_endpoint, job, API_A)
                assert _scope(service_token) == {"read:invoices", "delete:invoices"}
                assert await _status("GET", f"{api_a}/invoices", service_token) == 200
                assert await _status("DELETE", f"{api_a}/invoices/42", service_token) == 200
                # Without the role: a valid token for the API with no permission, so 403, not 401.
                plain_token = await _client_credentials(token_endpoint, plain, API_A)
                assert _scope(plain_token) == set()
                assert await _status("GET", f"{api_a}/invoices", plain_token) == 403
                # No token, or a token for another API: 401.
                assert await _status("GET", f"{api_a}/invoices", "") == 401
                assert await _status("GET", f"{api_b}/invoices", service_token) == 401
                other_token = await _client_credentials(token_endpoint, job, API_B)
                assert await _status("GET", f"{api_a}/invoices", other_token) == 401

                # A user signs in asking for both permissions: the token holds the one their role grants.
                async with AsyncOAuth2Client(
                    client_id=web["clientId"], client_secret=web["temporarySecret"]["value"],
                    redirect_uri=app_server.callback, scope="openid offline_access read:invoices delete:invoices",
                    code_challenge_method="S256",
                ) as oidc:  # fmt: skip
                    verifier = generate_token(48)
                    url, state = oidc.create_authorization_url(
                        f"{web['issuer']}/authorize", code_verifier=verifier, resource=API_A
                    )
                    await page.goto(url)
                    await page.fill("input[name=identifier]", USER_EMAIL)
                    await page.fill("input[name=password]", USER_PASSWORD)
                    await page.click("button[type=submit]")
                    await page.wait_for_url(f"{app_server.callback}**")
                    token = await oidc.fetch_token(
                        token_endpoint, authorization_response=app_server.received[-1], code_verifier=verifier,
                        state=state,
                    )  # fmt: skip
                    assert _scope(token["access_token"]) == {"read:invoices"}
                    assert await _status("GET", f"{api_a}/invoices", token["access_token"]) == 200
                    assert await _status("DELETE", f"{api_a}/invoices/42", token["access_token"]) == 403

                    removed = await call_ok(
                        mcp, "removeRoles", {"roleIds": [reader["roleId"]], "userId": user["userId"]}
                    )
                    assert removed["permissions"] == []
                    refreshed = await oidc.refresh_token(token_endpoint, refresh_token=token["refresh_token"])
                    assert _scope(refreshed["access_token"]) == set()
                    assert await _status("GET", f"{api_a}/invoices", refreshed["access_token"]) == 403

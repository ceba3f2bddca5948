"""The FastAPI guide's code really signs a user in.

An agent reads instructions/integrate-fastapi.md through getInstructions with the applicationId it just created, so
the real renderer fills in the placeholders. The test takes the guide's one complete app (the ```python block whose
first line is ``# file: app.py``), writes it to a temporary folder, runs it under uvicorn as a developer would
(the temporary secret only in IDP_CLIENT_SECRET), and Chromium signs a user in through it: /login → the tenant's
hosted sign-in page → /callback → / shows the user's email. The guide's "Check how the user signed in (amr)" snippet
is appended to that app, as the guide says: /payments refuses a password-only sign-in, /login-mfa asks for a second
factor with acr_values (the user sets up an authenticator app), and /payments then opens.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pyotp
import pytest
from markdown_it import MarkdownIt
from playwright.async_api import Page

from tests.support.browser import BrowserAuthorizer
from tests.support.guide_code import run_uvicorn_app
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, free_port
from tests.support.mcp_client import MemoryTokenStorage, call_ok, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

GUIDE_ID = "integrate-fastapi"
APP_FILE_MARKER = "# file: app.py"
AMR_HEADING = "Check how the user signed in (amr)"
USER_EMAIL = "dora@example.com"
USER_PASSWORD = "a long secret passphrase 9"


def app_code(markdown: str) -> str:
    """The guide's complete app: exactly one ```python block whose first line is ``# file: app.py``."""
    blocks = [
        token.content
        for token in MarkdownIt("commonmark").parse(markdown)
        if token.type == "fence"
        and token.info.strip().split(" ")[0] == "python"
        and token.content.split("\n", 1)[0].strip() == APP_FILE_MARKER
    ]
    assert len(blocks) == 1, f"{GUIDE_ID}.md must hold exactly one ```python block starting '{APP_FILE_MARKER}'"
    return blocks[0]


def amr_snippet(markdown: str) -> str:
    """The first ```python block under the guide's "Check how the user signed in (amr)" heading."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    starts = [i for i, token in enumerate(tokens) if token.type == "inline" and token.content == AMR_HEADING]
    assert len(starts) == 1, f"{GUIDE_ID}.md must have one heading '{AMR_HEADING}'"
    for token in tokens[starts[0] :]:
        if token.type == "heading_open" and token.tag == "h2" and token is not tokens[starts[0] - 1]:
            break
        if token.type == "fence" and token.info.strip().split(" ")[0] == "python":
            return token.content
    raise AssertionError(f"no ```python block under '{AMR_HEADING}' in {GUIDE_ID}.md")


async def test_fastapi_guide_code_signs_a_real_user_in(
    live_server: LiveServer, page: Page, callback_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    authorizer = BrowserAuthorizer(page, callback_uri, ADMIN_EMAIL, ADMIN_PASSWORD)
    with anyio.fail_after(150):
        async with connect(live_server.mcp_url, authorizer, MemoryTokenStorage(), redirect_uri=callback_uri) as mcp:
            app = await call_ok(
                mcp,
                "createApplication",
                {"name": "Dora's FastAPI app", "type": "traditional", "redirectUris": [f"http://127.0.0.1:{port}/callback"]},
            )  # fmt: skip
            await call_ok(mcp, "createUser", {"email": USER_EMAIL, "password": USER_PASSWORD, "name": "Dora"})
            guide = await call_ok(mcp, "getInstructions", {"topic": GUIDE_ID, "applicationId": app["applicationId"]})
        secret = app["temporarySecret"]["value"]

        code = app_code(guide["markdown"])
        assert app["clientId"] in code, "the guide's app does not use the application's client id"
        assert "{{" not in code and "<your" not in code, "the guide's app has a placeholder left"
        assert secret not in guide["markdown"]
        assert "IDP_CLIENT_SECRET" in code, "the guide's app must read its secret from IDP_CLIENT_SECRET"

        folder = tmp_path / "guide-app"
        folder.mkdir()
        (folder / "app.py").write_text(code + "\n\n" + amr_snippet(guide["markdown"]), encoding="utf-8")

        with run_uvicorn_app(
            folder, "app", port, {"IDP_CLIENT_SECRET": secret, "APP_BASE_URL": f"http://127.0.0.1:{port}"}
        ) as base_url:
            await page.goto(f"{base_url}/login")
            await page.wait_for_selector("input[name=identifier]")
            assert page.url.startswith(f"{live_server.url}/t/"), f"/login did not lead to the hosted page: {page.url}"
            await page.fill("input[name=identifier]", USER_EMAIL)
            await page.fill("input[name=password]", USER_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base_url}/**")
            await page.wait_for_load_state()

            await page.goto(f"{base_url}/")
            home = await page.content()
            assert USER_EMAIL in home, (
                f"/ does not show the user after sign-in:\n{home[:2000]}\n"
                + (folder / f"uvicorn-{port}.log").read_text()[-4000:]
            )

            # The amr section: a password-only sign-in is refused on /payments ...
            response = await page.goto(f"{base_url}/payments")
            assert response is not None and response.status == 403
            assert "needs a second factor" in await page.content()
            # ... /login-mfa sends acr_values, so the signed-in user is asked to set up a second factor ...
            await page.get_by_role("link", name="Confirm with a second factor").click()
            await page.get_by_role("heading", name="Set up an authenticator app").wait_for()
            secret = (await page.locator("#totp-secret").inner_text()).strip()
            await page.fill("input[name=code]", pyotp.TOTP(secret).now())
            await page.get_by_role("button", name="Turn on").click()
            await page.get_by_role("button", name="I saved them, continue").click()
            await page.wait_for_url(f"{base_url}/**")
            # ... and the new ID token's amr, kept by /callback, opens /payments.
            response = await page.goto(f"{base_url}/payments")
            assert response is not None and response.status == 200, (
                await page.content() + (folder / f"uvicorn-{port}.log").read_text()[-4000:]
            )
            assert "otp, mfa" in await page.content()

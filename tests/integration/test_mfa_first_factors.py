"""Every first factor meets the MFA policy, in process: a connector sign-in (against a real OpenID provider on
loopback), an email sign-in code and a sign-up confirmed by email (through a real SMTP server) all lead to the
enrollment under ``required``, and the ID token's amr names the first factor, then otp and mfa. The session of
such a user starts only once the second factor is proven."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import jwt
import pyotp
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.applications import Application
from idp_mcp.core.connectors import ConnectorInput
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support import hosted
from tests.support.clock import Clock
from tests.support.hosted import HostedRequest
from tests.support.inprocess import PUBLIC_URL
from tests.support.smtp import SmtpSink, code_in, run_smtp_server
from tests.support.upstream import CLIENT_ID, CLIENT_SECRET, FakeProvider, run_provider

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "violet staple horizon 7"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with run_smtp_server() as sink:
        yield sink


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Settings:
    # Loopback fetches (the provider runs on 127.0.0.1) are a tests-only switch.
    return smtp.settings(
        public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, cimd_allow_private_addresses=True,
        connector_timeout=2,
    )  # fmt: skip


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with run_provider() as upstream:
        yield upstream


@pytest.fixture
def app(core: IdentityCore) -> Application:
    core.sign_in_experiences.update_mfa(TENANT, {"policy": "required", "factors": ["totp"]}, ACTOR)
    return core.applications.create(TENANT, name="Shop", app_type="spa", actor=ACTOR, redirect_uris=[hosted.CALLBACK])


def enroll_and_claims(
    client: TestClient, request: HostedRequest, app: Application, response: Any, clock: Clock
) -> dict[str, Any]:
    """From the first factor's answer: the enrollment page, a first code, the backup codes, the ID token."""
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{request.path}/mfa"
    assert "idp_session_default" not in client.cookies  # no session before the second factor
    page = client.get(response.headers["location"])
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert secret, page.text
    codes = request.post("mfa/enroll", {"code": pyotp.TOTP(secret.group(1)).at(clock().timestamp())}, page.text)
    done = request.post("mfa/continue", {}, codes.text)
    query = hosted.redirected_with_code(done)
    tokens = client.post(
        f"/t/{TENANT}/oidc/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": hosted.CALLBACK,
              "code_verifier": request.verifier, "client_id": app.id},
    )  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    return dict(jwt.decode(tokens.json()["id_token"], options={"verify_signature": False}))


def test_a_connector_sign_in_is_a_first_factor(
    client: TestClient, core: IdentityCore, provider: FakeProvider, app: Application, clock: Clock
) -> None:
    connector = core.connectors.create(
        TENANT, ConnectorInput(kind="oidc", name="Upstream", client_id=CLIENT_ID, issuer=provider.issuer), ACTOR
    )
    core.connectors.set_secret(TENANT, connector.id, CLIENT_SECRET, ACTOR)
    core.sign_in_experiences.update_sign_in(TENANT, {"social": [connector.id]}, ACTOR)
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    request = hosted.start(client, app.id)
    page = request.page()
    started = request.post(f"connectors/{connector.id}/start", {}, page.text)
    back = client.get(provider.authorize(started.headers["location"]), follow_redirects=False)
    assert enroll_and_claims(client, request, app, back, clock)["amr"] == ["fed", "otp", "mfa"]


def test_an_email_sign_in_code_is_a_first_factor(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink, clock: Clock
) -> None:
    core.sign_in_experiences.update_sign_in(
        TENANT, {"methods": [{"identifier": "email", "verificationCode": True, "password": True}]}, ACTOR
    )
    anyio.run(lambda: core.tenant_users.create(TENANT, email="bob@example.com", password=PASSWORD, actor=ACTOR))
    request = hosted.start(client, app.id)
    sent = request.post("sign-in/code", {"email": "bob@example.com"}, request.page().text)
    code = code_in(smtp.wait_for("bob@example.com"))
    answer = request.post("sign-in/code/verify", {"email": "bob@example.com", "code": code}, sent.text)
    assert enroll_and_claims(client, request, app, answer, clock)["amr"] == ["email", "otp", "mfa"]


def test_a_sign_up_confirmed_by_email_enrolls_before_the_app_gets_a_code(
    client: TestClient, core: IdentityCore, app: Application, smtp: SmtpSink, clock: Clock
) -> None:
    core.sign_in_experiences.update_sign_in(
        TENANT, {"methods": [{"identifier": "email", "verificationCode": True, "password": True}]}, ACTOR
    )
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True, "verifyEmail": True}, ACTOR)
    request = hosted.start(client, app.id)
    form = client.get(f"{request.path}/sign-up")
    sent = request.post("sign-up", {"email": "erin@example.com", "password": PASSWORD}, form.text)
    code = code_in(smtp.wait_for("erin@example.com"))
    answer = request.post("sign-up/verify", {"email": "erin@example.com", "code": code}, sent.text)
    assert urlsplit(answer.headers["location"]).path.endswith("/mfa")
    assert enroll_and_claims(client, request, app, answer, clock)["amr"] == ["email", "otp", "mfa"]

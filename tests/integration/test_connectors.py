"""Sign-in through connectors, in process against a real OpenID provider on a loopback port (tests/support/upstream):
the first sign-in creates the user, the next finds them, a verified email links when the connector allows it and an
unverified one never does; every failure (access_denied, a state from another browser, a replayed callback, a wrong
iss/aud/nonce, a foreign signature, a provider that is down or slow) ends on a clear page with nothing created; a slow
provider does not hold up other requests; enterprise email domains go straight to their provider."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.applications import Application
from idp_mcp.core.connectors import Connector, ConnectorInput
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor, User
from idp_mcp.settings import Settings
from tests.support import hosted
from tests.support.hosted import HostedRequest
from tests.support.inprocess import PUBLIC_URL
from tests.support.upstream import CLIENT_ID, CLIENT_SECRET, Account, FakeProvider, run_provider

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
PASSWORD = "violet staple horizon 7"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The tests-only switch that lets fetches reach loopback (and plain http there): the provider runs on 127.0.0.1.
    return Settings(
        public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url, cimd_allow_private_addresses=True,
        connector_timeout=2,
    )  # fmt: skip


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with run_provider() as upstream:
        yield upstream


@pytest.fixture
def app(core: IdentityCore) -> Application:
    return core.applications.create(TENANT, name="Shop", app_type="spa", actor=ACTOR, redirect_uris=[hosted.CALLBACK])


def make_connector(core: IdentityCore, provider: FakeProvider, *, secret: bool = True, **fields: Any) -> Connector:
    values = {"kind": "oidc", "name": "Upstream", "client_id": CLIENT_ID, "issuer": provider.issuer, **fields}
    given = ConnectorInput(**values)
    connector = core.connectors.create(TENANT, given, ACTOR)
    if secret:
        connector = core.connectors.set_secret(TENANT, connector.id, CLIENT_SECRET, ACTOR)
    return connector


@pytest.fixture
def connector(core: IdentityCore, provider: FakeProvider) -> Connector:
    made = make_connector(core, provider, link_by_email=True)
    core.sign_in_experiences.update_sign_in(TENANT, {"social": [made.id]}, ACTOR)
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    return made


def users(core: IdentityCore) -> list[User]:
    return core.tenant_users.list(TENANT, query=None, page=1, page_size=100)[0]


def go_upstream(request: HostedRequest, connector_id: str) -> Any:
    page = request.page()
    return request.post(f"connectors/{connector_id}/start", {}, page.text)


def continue_with(request: HostedRequest, connector: Connector, provider: FakeProvider) -> Any:
    """Click "Continue with …", let the provider answer, and bring its answer back to the callback."""
    started = go_upstream(request, connector.id)
    assert started.status_code == 303, started.text
    back = provider.authorize(started.headers["location"])
    return request.client.get(back, follow_redirects=False)


def subject_of(client: TestClient, request: HostedRequest, app: Application, response: Any) -> str:
    query = hosted.redirected_with_code(response)
    tokens = client.post(
        "/t/default/oidc/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": hosted.CALLBACK,
              "code_verifier": request.verifier, "client_id": app.id},
    )  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    return str(jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})["sub"])


# --- the happy paths --------------------------------------------------------------------------------------------


def test_the_hosted_page_shows_the_connector_buttons_in_order(
    client: TestClient, core: IdentityCore, provider: FakeProvider, app: Application
) -> None:
    first = make_connector(core, provider, name="Zeta")
    second = make_connector(core, provider, name="Alpha")
    waiting = make_connector(core, provider, name="Waiting", secret=False)
    core.sign_in_experiences.update_sign_in(TENANT, {"social": [second.id, first.id, waiting.id]}, ACTOR)

    page = hosted.start(client, app.id).page().text

    assert page.index("Continue with Alpha") < page.index("Continue with Zeta")
    assert "Continue with Waiting" not in page  # no secret yet: not usable, so no button


def test_first_sign_in_creates_the_user_and_the_next_finds_them(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application
) -> None:
    request = hosted.start(client, app.id)
    first = subject_of(client, request, app, continue_with(request, connector, provider))

    created = core.tenant_users.get(TENANT, first)
    assert created.email == "alice@example.com" and created.name == "Alice"
    assert created.email_verified  # the provider proved the address
    sent = provider.requests[-1]
    assert (
        sent["code_challenge_method"] == "S256"
        and sent["nonce"]
        and sent["state"]
        and sent["scope"].split()[0] == "openid"
    )
    assert sent["redirect_uri"] == f"{PUBLIC_URL}/t/default/oidc/connectors/{connector.id}/callback"
    [identity] = core.connectors.identities(TENANT, first)
    assert (identity.subject, identity.email_verified) == ("alice-sub", True)

    client.cookies.clear()  # another day, a new browser session
    again = hosted.start(client, app.id)
    assert subject_of(client, again, app, continue_with(again, connector, provider)) == first
    assert len(users(core)) == 1
    actions = [entry.action for entry in core.audit.recent(TENANT, limit=50)]
    assert actions.count("user.sign_up") == 1 and actions.count("session.sign_in") >= 2


def test_a_verified_email_links_to_the_existing_user(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application
) -> None:
    alice = anyio.run(
        lambda: core.tenant_users.create(TENANT, password=PASSWORD, actor=ACTOR, email="alice@example.com")
    )

    assert not alice.email_verified

    request = hosted.start(client, app.id)
    assert subject_of(client, request, app, continue_with(request, connector, provider)) == alice.id
    assert len(users(core)) == 1
    assert core.tenant_users.get(TENANT, alice.id).email_verified  # proven by the provider now
    assert any(entry.action == "user.identity.link" for entry in core.audit.recent(TENANT, limit=50))


def test_an_unverified_email_never_links(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application
) -> None:
    alice = anyio.run(
        lambda: core.tenant_users.create(TENANT, password=PASSWORD, actor=ACTOR, email="alice@example.com")
    )
    provider.account = Account("mallory-sub", "alice@example.com", email_verified=False, name="Mallory")

    request = hosted.start(client, app.id)
    subject = subject_of(client, request, app, continue_with(request, connector, provider))

    assert subject != alice.id
    newcomer = core.tenant_users.get(TENANT, subject)
    assert newcomer.email is None and not newcomer.email_verified  # an unverified address is not given to the account
    assert not core.tenant_users.get(TENANT, alice.id).email_verified
    assert [i.email_verified for i in core.connectors.identities(TENANT, subject)] == [False]


def test_a_verified_email_does_not_link_when_the_connector_does_not_allow_it(
    client: TestClient, core: IdentityCore, provider: FakeProvider, app: Application
) -> None:
    connector = make_connector(core, provider, link_by_email=False)
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    anyio.run(lambda: core.tenant_users.create(TENANT, password=PASSWORD, actor=ACTOR, email="alice@example.com"))

    request = hosted.start(client, app.id)
    answer = continue_with(request, connector, provider)

    assert answer.status_code == 403 and "not connected to" in answer.text
    assert len(users(core)) == 1


def test_no_account_page_when_sign_up_is_off(
    client: TestClient, core: IdentityCore, provider: FakeProvider, app: Application
) -> None:
    connector = make_connector(core, provider)

    request = hosted.start(client, app.id)
    answer = continue_with(request, connector, provider)

    assert answer.status_code == 403 and "no account here" in answer.text
    assert users(core) == []


def test_an_email_of_an_enterprise_domain_goes_to_its_provider(
    client: TestClient, core: IdentityCore, provider: FakeProvider, app: Application
) -> None:
    connector = make_connector(core, provider, email_domains=["acme.com"])
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    request = hosted.start(client, app.id)
    page = request.page()

    sent = request.post("sign-in", {"identifier": "Someone@ACME.com", "password": ""}, page.text)

    assert sent.status_code == 303 and sent.headers["location"].startswith(f"{provider.issuer}/authorize?")
    back = request.client.get(provider.authorize(sent.headers["location"]), follow_redirects=False)
    assert core.connectors.identities(TENANT, subject_of(client, request, app, back))[0].connector_id == connector.id
    # Another domain still signs in with a password.
    client.cookies.clear()
    again = hosted.start(client, app.id)
    other = again.post("sign-in", {"identifier": "someone@example.com", "password": "nope"}, again.page().text)
    assert other.status_code == 401


# --- failures end on a clear page, with nothing created ---------------------------------------------------------


def nothing_created(core: IdentityCore) -> None:
    assert users(core) == []
    assert not any(entry.action == "user.sign_up" for entry in core.audit.recent(TENANT, limit=100))


def test_access_denied_upstream_returns_to_the_sign_in_page(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application
) -> None:
    provider.authorize_error = "access_denied"
    request = hosted.start(client, app.id)

    answer = continue_with(request, connector, provider)

    assert answer.status_code == 400 and "was cancelled" in answer.text and 'name="identifier"' in answer.text
    nothing_created(core)


def test_a_callback_from_another_browser_is_refused(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application
) -> None:
    request = hosted.start(client, app.id)
    started = go_upstream(request, connector.id)
    back = provider.authorize(started.headers["location"])
    client.cookies.clear()  # the victim's browser: it never started this sign-in

    answer = client.get(back, follow_redirects=False)

    assert answer.status_code == 400 and "does not belong to a sign-in started in this browser" in answer.text
    nothing_created(core)


def test_a_replayed_callback_is_refused(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application
) -> None:
    request = hosted.start(client, app.id)
    started = go_upstream(request, connector.id)
    state_cookie = {name: value for name, value in client.cookies.items() if name.startswith("idp_upstream_")}
    back = provider.authorize(started.headers["location"])
    assert client.get(back, follow_redirects=False).status_code == 303
    before = users(core)

    client.cookies.update(state_cookie)
    replayed = client.get(back, follow_redirects=False)

    assert replayed.status_code == 400 and "expired or was already used" in replayed.text
    assert users(core) == before


@pytest.mark.parametrize(
    ("overrides", "foreign_key"),
    [
        ({"iss": "https://evil.example"}, False),
        ({"aud": "someone-else"}, False),
        ({"nonce": "another-nonce"}, False),
        ({"exp": int(time.time()) - 3600}, False),
        ({}, True),
    ],
    ids=["wrong-iss", "wrong-aud", "wrong-nonce", "expired", "foreign-signature"],
)
def test_an_id_token_that_fails_a_check_signs_nobody_in(
    client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector, app: Application,
    overrides: dict[str, Any], foreign_key: bool,
) -> None:  # fmt: skip
    provider.id_token_overrides = overrides
    provider.foreign_key = foreign_key
    request = hosted.start(client, app.id)

    answer = continue_with(request, connector, provider)

    assert answer.status_code == 400 and "did not pass the checks" in answer.text
    nothing_created(core)
    failure = next(e for e in core.audit.recent(TENANT, limit=20) if e.outcome == "failure")
    assert failure.details == {"method": "connector", "reason": "connector.sign_in_failed"}


def test_a_provider_that_is_down_gives_a_clear_page(client: TestClient, core: IdentityCore, app: Application) -> None:
    with run_provider() as gone:
        connector = make_connector(core, gone)
    core.sign_in_experiences.update_sign_in(TENANT, {"social": [connector.id]}, ACTOR)
    request = hosted.start(client, app.id)

    answer = go_upstream(request, connector.id)

    assert answer.status_code == 502 and "is not possible right now" in answer.text
    nothing_created(core)


def test_a_slow_provider_does_not_hold_up_other_requests(
    settings: Settings, client: TestClient, core: IdentityCore, provider: FakeProvider, connector: Connector,
    app: Application,
) -> None:  # fmt: skip
    request = hosted.start(client, app.id)
    started = go_upstream(request, connector.id)
    back = provider.authorize(started.headers["location"])
    provider.token_delay = 4  # longer than connector_timeout (2 s)
    asgi = create_app(settings, core)

    async def race() -> tuple[Any, float, float]:
        transport = httpx.ASGITransport(app=asgi)
        async with (
            httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL, cookies=dict(client.cookies)) as http,
        ):
            begun = time.monotonic()
            slow_answer: dict[str, Any] = {}

            async def slow() -> None:
                slow_answer["response"] = await http.get(back)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as group:
                    group.start_soon(slow)
                    await anyio.sleep(0.2)
                    health = await http.get("/healthz")
                    assert health.status_code == 200
                    quick = time.monotonic() - begun
            return slow_answer["response"], quick, time.monotonic() - begun

    response, quick, total = anyio.run(race)

    assert quick < 1.5, "a request waited for the slow provider"
    assert response.status_code == 502 and "did not answer within 2 s" in response.text
    assert total < 4
    nothing_created(core)


# --- the secret page ----------------------------------------------------------------------------------------------


def secret_path(core: IdentityCore, connector: Connector, tenant: str = TENANT) -> str:
    expires, signature = core.connectors.secret_link(tenant, connector.id)
    return f"/console/t/{tenant}/connectors/{connector.id}/secret?expires={expires}&sig={signature}"


def test_an_administrator_sets_the_secret_and_it_is_never_shown_or_audited(
    client: TestClient, core: IdentityCore, provider: FakeProvider
) -> None:
    from tests.support.inprocess import csrf_from, sign_in

    connector = make_connector(core, provider, secret=False)
    assert core.connectors.get(TENANT, connector.id).waiting_for_secret
    path = secret_path(core, connector)

    assert client.get(path, follow_redirects=False).headers["location"].startswith("/sign-in?next=")
    sign_in(client)
    page = client.get(path)
    assert page.status_code == 200 and 'name="clientSecret"' in page.text and connector.id in page.text
    saved = client.post(path, data={"csrf_token": csrf_from(page.text), "clientSecret": "s3cr3t-value-WXYZ"})

    assert saved.status_code == 200 and "Saved" in saved.text and "s3cr3t-value-WXYZ" not in saved.text
    stored = core.connectors.get(TENANT, connector.id)
    assert not stored.waiting_for_secret and stored.secret_last_four == "WXYZ"
    assert core.connectors.client_secret(TENANT, connector.id) == "s3cr3t-value-WXYZ"
    audit = json.dumps([(e.action, e.details) for e in core.audit.recent(TENANT, limit=100)])
    assert "connector.secret.set" in audit and "s3cr3t-value" not in audit
    # Without the CSRF token, nothing changes.
    refused = client.post(path, data={"clientSecret": "another-one"})
    assert refused.status_code == 403 and core.connectors.client_secret(TENANT, connector.id) == "s3cr3t-value-WXYZ"


def test_the_secret_page_needs_a_valid_link_and_an_administrator_of_that_tenant(
    client: TestClient, core: IdentityCore, provider: FakeProvider
) -> None:
    from tests.support.inprocess import sign_in

    connector = make_connector(core, provider, secret=False)
    outsider = anyio.run(core.users.create_administrator, "eve@example.com", PASSWORD)
    core.tenants.create("other", "Other", owner_user_id=outsider.id, actor=ACTOR)
    with core.db.transaction() as conn:  # Eve administers only "other"
        from idp_mcp.store.tables import tenant_members

        conn.execute(tenant_members.delete().where(tenant_members.c.admin_user_id == outsider.id,
                                                   tenant_members.c.tenant_id == TENANT))  # fmt: skip
    good = secret_path(core, connector)

    sign_in(client, email="eve@example.com", password=PASSWORD)
    assert client.get(good).status_code == 403
    client.cookies.clear()
    sign_in(client)
    assert client.get(good.replace("sig=", "sig=0")).status_code == 403
    assert client.get(good.split("?")[0]).status_code == 403
    assert client.get(good).status_code == 200

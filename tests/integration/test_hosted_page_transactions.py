"""The hosted sign-in page of a pending authorization request is one use case: one read transaction for the tenant,
its sign-in experience, the interaction, the application's name and the browser's session (it used to be about seven
transactions, the experience read twice). The preview and the sign-up page likewise. Transactions are recorded with
SQLAlchemy's events on the app's own engine (tests/support/transactions.py), nothing mocked."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.applications import Application
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.settings import Settings
from tests.support import hosted
from tests.support.hops import HopCounter
from tests.support.inprocess import PUBLIC_URL
from tests.support.transactions import TransactionRecorder, of_requests, summary

TENANT = "default"
ACTOR = Actor(tenant_id=TENANT, sub="test-admin")
DORA = "dora@example.com"
PASSWORD = "violet staple horizon 7"


@pytest.fixture
def recorder(core: IdentityCore) -> Iterator[TransactionRecorder]:
    recorder = TransactionRecorder(core.db.engine)
    yield recorder
    recorder.close()


@pytest.fixture
def app(core: IdentityCore) -> Application:
    core.sign_in_experiences.update_branding(TENANT, {"displayName": "Shop"}, ACTOR)
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, ACTOR)
    return core.applications.create(
        TENANT, name="Shop app", app_type="traditional", actor=ACTOR, redirect_uris=[hosted.CALLBACK]
    )


def one_read(recorder: TransactionRecorder, core: IdentityCore, client: TestClient, path: str) -> str:
    core.audit.flush()  # queued audit rows of earlier requests: not this request's work
    with recorder.recording() as transactions:
        response = client.get(path)
    assert response.status_code == 200, response.text
    transactions = of_requests(transactions)
    assert len(transactions) == 1 and transactions[0].read_only, summary(transactions)
    assert transactions[0].writes == 0, summary(transactions)
    return str(response.text)


def test_the_hosted_sign_in_page_is_one_read_transaction(
    client: TestClient, core: IdentityCore, app: Application, recorder: TransactionRecorder
) -> None:
    request = hosted.start(client, app.id)
    html = one_read(recorder, core, client, request.path)
    assert "Shop" in html and 'name="identifier"' in html and "Shop app" in html
    assert f"/t/{TENANT}/interaction/{request.interaction_id}/sign-up" in html
    # The same again (nothing cached that would hide a second transaction the first time only).
    one_read(recorder, core, client, request.path)


def test_the_hosted_sign_in_page_is_one_thread_hop(
    settings: Settings, core: IdentityCore, app: Application, recorder: TransactionRecorder
) -> None:
    """Hops counted by the interpreter's profiling hook on anyio's worker threads (tests/support/hops.py)."""
    counter = HopCounter()
    with counter.installed(), TestClient(create_app(settings, core), base_url=PUBLIC_URL) as client:
        request = hosted.start(client, app.id)
        request.page()  # the first render of this app (templates compiled): still counted below on its own
        for _ in range(2):
            with counter.counting():
                html = one_read(recorder, core, client, request.path)
            assert "Shop app" in html
            assert counter.hops == 1, counter.hops
        with counter.counting():  # the counter does see hops: the authorization request makes several
            hosted.start(client, app.id)
        assert counter.hops >= 1


def test_the_sign_up_page_the_preview_and_the_stylesheet_are_one_read_transaction_each(
    client: TestClient, core: IdentityCore, app: Application, recorder: TransactionRecorder
) -> None:
    request = hosted.start(client, app.id)
    assert 'name="password"' in one_read(recorder, core, client, f"{request.path}/sign-up")
    assert "Shop" in one_read(recorder, core, client, f"/t/{TENANT}/preview")
    assert "--primary" in one_read(recorder, core, client, f"/t/{TENANT}/branding.css")


def test_a_signed_in_browser_still_goes_on_to_the_application(
    client: TestClient, core: IdentityCore, app: Application
) -> None:
    """The page reads the session in its one transaction; a signed-in browser is sent back with a code."""
    anyio.run(lambda: core.tenant_users.create(TENANT, email=DORA, password=PASSWORD, actor=ACTOR))
    request = hosted.start(client, app.id)
    signed_in = request.post("sign-in", {"identifier": DORA, "password": PASSWORD}, request.page().text)
    hosted.redirected_with_code(signed_in)
    again = hosted.start(client, app.id)
    hosted.redirected_with_code(client.get(again.path, follow_redirects=False))


def test_unknown_tenants_and_expired_requests_get_their_pages(client: TestClient, app: Application) -> None:
    assert client.get("/t/nope/interaction/abc").status_code == 404
    assert client.get("/t/admin/interaction/abc").status_code == 404
    assert client.get("/t/default/interaction/abc").status_code == 410
    assert client.get("/t/nope/preview").status_code == 404
    assert client.get("/t/default/interaction/abc/sign-up").status_code == 410


def test_a_password_sign_in_records_the_sign_in_only_with_its_session(
    client: TestClient, core: IdentityCore, app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sign-in's audit row and the session commit in one transaction, after the Argon2id check: when the
    session cannot start, no sign-in is recorded (it used to be committed before the session was attempted)."""
    dora = anyio.run(lambda: core.tenant_users.create(TENANT, email=DORA, password=PASSWORD, actor=ACTOR))
    request = hosted.start(client, app.id)
    page = request.page().text

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the session store is down")

    monkeypatch.setattr(core.sessions, "start_in", broken)
    with pytest.raises(RuntimeError):
        request.post("sign-in", {"identifier": DORA, "password": PASSWORD}, page)
    signed_in = [
        entry for entry in core.audit.recent(TENANT) if entry.action == "session.sign_in" and entry.target_id == dora.id
    ]
    assert signed_in == []

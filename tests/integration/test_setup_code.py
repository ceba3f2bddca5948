"""The first-administrator page on a server reachable from the network asks for the one-time setup code printed
on the console at start (as Jupyter and Grafana do); from this machine, on a server whose public URL is a loopback
one, it does not. Only the code's digest is stored, and no code works once an administrator exists."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.logs import RedactSecrets
from idp_mcp.settings import Settings
from idp_mcp.store.tables import server_secrets
from tests.support.inprocess import PUBLIC_URL, csrf_from

FORM = {"email": "owner@example.com", "password": "a long passphrase", "password_confirm": "a long passphrase"}


@pytest.fixture
def fresh(tmp_path: Path, database_url: str) -> Iterator[tuple[IdentityCore, Settings]]:
    """A server without any administrator."""
    settings = Settings(public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url)
    core = IdentityCore.from_settings(settings)
    core.bootstrap()
    yield core, settings
    core.close()


def _browser(core: IdentityCore, settings: Settings, address: str) -> TestClient:
    return TestClient(create_app(settings, core), base_url=settings.public_url, client=(address, 50000))


def _set_up(browser: TestClient, **extra: str) -> Any:
    page = browser.get("/setup")
    assert page.status_code == 200, page.text
    data = {**FORM, "csrf_token": csrf_from(page.text), **extra}
    return browser.post("/setup", data=data, follow_redirects=False)


def test_from_the_network_the_setup_code_is_required(fresh: tuple[IdentityCore, Settings]) -> None:
    core, settings = fresh
    browser = _browser(core, settings, "203.0.113.9")
    assert 'name="setup_code"' in browser.get("/setup").text

    for extra in ({}, {"setup_code": ""}, {"setup_code": "AAAA-BBBB-CCCC"}):
        refused = _set_up(browser, **extra)
        assert refused.status_code == 403, extra
        assert "setup code" in refused.text
    assert not core.users.administrators_exist()

    code = core.setup_codes.issue()
    assert code is not None
    done = _set_up(browser, setup_code=code.lower().replace("-", " "))  # typed loosely
    assert done.status_code == 303 and core.users.administrators_exist()


def test_no_code_works_once_an_administrator_exists(fresh: tuple[IdentityCore, Settings]) -> None:
    core, settings = fresh
    code = core.setup_codes.issue()
    assert code is not None
    with core.db.read() as conn:
        stored = [row.value for row in conn.execute(select(server_secrets)).all()]
    assert code.replace("-", "") not in " ".join(stored)  # only a digest is kept

    assert _set_up(_browser(core, settings, "203.0.113.9"), setup_code=code).status_code == 303

    assert not core.setup_codes.verify(code)
    assert core.setup_codes.issue() is None  # no code announced at the next start either
    late = TestClient(create_app(settings, core), base_url=PUBLIC_URL, client=("198.51.100.4", 50000))
    page = late.get("/sign-in")
    form = {**FORM, "email": "late@example.com", "setup_code": code, "csrf_token": csrf_from(page.text)}
    refused = late.post("/setup", data=form)
    assert refused.status_code == 409 and not core.users.find_administrator("late@example.com")


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
def test_from_this_machine_on_a_loopback_server_no_code_is_needed(
    fresh: tuple[IdentityCore, Settings], address: str
) -> None:
    core, settings = fresh
    browser = _browser(core, settings, address)
    assert 'name="setup_code"' not in browser.get("/setup").text
    assert _set_up(browser).status_code == 303


def test_a_local_request_to_a_server_with_a_public_url_still_needs_the_code(
    fresh: tuple[IdentityCore, Settings],
) -> None:
    """A reverse proxy on this machine makes every visitor look local: a non-loopback public URL says one may be."""
    core, settings = fresh
    behind_proxy = IdentityCore.from_settings(settings.model_copy(update={"public_url": "https://id.example.com"}))
    try:
        refused = _set_up(_browser(behind_proxy, behind_proxy.settings, "127.0.0.1"))
        assert refused.status_code == 403 and "setup code" in refused.text
        assert not core.users.administrators_exist()
    finally:
        behind_proxy.close()


def test_the_code_is_announced_on_the_console_at_start(
    fresh: tuple[IdentityCore, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    core, settings = fresh
    with caplog.at_level(logging.WARNING, logger="idp_mcp.app"):
        create_app(settings, core)
    records = [record for record in caplog.records if "setup code" in record.getMessage()]
    assert len(records) == 1
    RedactSecrets().filter(records[0])  # the console's secret filter leaves this one message readable
    announced = [records[0].getMessage()]
    match = re.search(r"([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})", announced[0])
    assert match and core.setup_codes.verify(match.group(1))

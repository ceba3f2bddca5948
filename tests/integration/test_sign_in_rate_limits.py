"""Brute-force protection of password sign-in, on the admin sign-in page and on a tenant's hosted sign-in page:
failures counted per identifier (known or not) and per client address, in the database; past a limit the password
is not even checked, the answer is 429 with how long to wait, and the refusal is audited. A browser the account
signed in from before (a known device) counts against an allowance of its own instead of the identifier's, so an
attacker who uses up the identifier's allowance does not lock the owner out of their own browser."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core import users as users_module
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.rate_limits import Limit, RateLimits, address_key
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from idp_mcp.settings import Settings
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL, csrf_from, pkce_pair
from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD

PER_IDENTIFIER = 3
PER_ADDRESS = 5
WINDOW = 600
CALLBACK = "http://127.0.0.1:7777/callback"
USER_EMAIL = "bob@example.com"
USER_PASSWORD = "user passphrase 42"
WRONG = "not the passphrase"
INVALID = "The email or password is incorrect."


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Small limits, so a test reaches them with few (Argon2-priced) attempts."""
    return Settings(
        public_url=PUBLIC_URL,
        data_dir=tmp_path,
        database_url=database_url,
        sign_in_max_failures_per_identifier=PER_IDENTIFIER,
        sign_in_max_failures_per_address=PER_ADDRESS,
        sign_in_failure_window=WINDOW,
    )


@pytest.fixture
def app(settings: Settings, core: IdentityCore) -> Starlette:
    anyio.run(
        lambda: core.tenant_users.create(
            DEFAULT_TENANT_ID, email=USER_EMAIL, password=USER_PASSWORD, actor=Actor(DEFAULT_TENANT_ID, "test")
        )
    )
    return create_app(settings, core)


@dataclass
class SignInPage:
    """One of the two password sign-in pages, seen from one client address."""

    tenant_id: str
    email: str
    password: str
    submit: Callable[[TestClient, str, str], httpx.Response]


def _admin_submit(client: TestClient, identifier: str, password: str) -> httpx.Response:
    page = client.get("/sign-in")
    return client.post(
        "/sign-in",
        data={"csrf_token": csrf_from(page.text), "identifier": identifier, "password": password, "next": "/"},
        follow_redirects=False,
    )


def _hosted_submit(core: IdentityCore) -> Callable[[TestClient, str, str], httpx.Response]:
    application = core.applications.create(
        DEFAULT_TENANT_ID,
        name="Web app",
        app_type="spa",
        actor=Actor(DEFAULT_TENANT_ID, "test"),
        redirect_uris=[CALLBACK],
    )

    def submit(client: TestClient, identifier: str, password: str) -> httpx.Response:
        _, challenge = pkce_pair()
        start = client.get(
            "/t/default/oidc/authorize",
            params={
                "response_type": "code", "client_id": application.id, "redirect_uri": CALLBACK, "scope": "openid",
                "state": "st", "code_challenge": challenge, "code_challenge_method": "S256", "prompt": "login",
            },
            follow_redirects=False,
        )  # fmt: skip
        page = client.get(urlsplit(start.headers["location"]).path)
        interaction = re.search(r'name="interaction" value="([^"]+)"', page.text)
        assert interaction, page.text
        return client.post(
            "/t/default/sign-in",
            data={
                "csrf_token": csrf_from(page.text), "interaction": interaction.group(1), "identifier": identifier,
                "password": password,
            },
            follow_redirects=False,
        )  # fmt: skip

    return submit


@pytest.fixture(params=["admin", "tenant"])
def page(request: pytest.FixtureRequest, core: IdentityCore, app: Starlette) -> SignInPage:
    if request.param == "admin":
        return SignInPage(ADMIN_TENANT_ID, ADMIN_EMAIL, ADMIN_PASSWORD, _admin_submit)
    return SignInPage(DEFAULT_TENANT_ID, USER_EMAIL, USER_PASSWORD, _hosted_submit(core))


@pytest.fixture
def from_address(app: Starlette) -> Iterator[Callable[[str], TestClient]]:
    """A browser at a client address of the test's choosing (what uvicorn puts in request.client)."""
    clients: list[TestClient] = []

    def make(address: str) -> TestClient:
        client = TestClient(app, base_url=PUBLIC_URL, client=(address, 50000))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the core checks (so a test can prove a throttled attempt checked none)."""
    checked: list[str] = []
    real = users_module.passwords.verify_password

    async def spy(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return await real(password_hash, password)

    monkeypatch.setattr(users_module.passwords, "verify_password", spy)
    return checked


def assert_refused(response: httpx.Response) -> None:
    """The answer to a wrong password and to an unknown identifier alike."""
    assert response.status_code == 401, response.text
    assert INVALID in response.text
    assert "Too many attempts" not in response.text


def assert_throttled(response: httpx.Response, minutes: int = WINDOW // 60) -> None:
    assert response.status_code == 429, response.text
    assert f"Too many attempts; try again in {minutes} minutes." in response.text
    assert "location" not in response.headers
    assert not [value for name, value in response.headers.multi_items() if name == "set-cookie" and "session" in value]


def fail(page: SignInPage, client: TestClient, times: int, identifier: str | None = None) -> None:
    for _ in range(times):
        assert_refused(page.submit(client, identifier or page.email, WRONG))


def throttle_audits(core: IdentityCore, tenant_id: str) -> list[Any]:
    return [entry for entry in core.audit.recent(tenant_id, 200) if entry.action == "session.sign_in_throttled"]


# --- per identifier ------------------------------------------------------------------------------------------


def test_identifier_is_throttled_after_its_failures_and_even_the_right_password_is_not_checked(
    page: SignInPage, from_address: Callable[[str], TestClient], password_checks: list[str]
) -> None:
    client = from_address("198.51.100.1")
    fail(page, client, PER_IDENTIFIER)
    checked_before = len(password_checks)

    response = page.submit(client, page.email, page.password)

    assert_throttled(response)
    assert len(password_checks) == checked_before, "a throttled attempt must not reach the password hash"


def test_identifier_limit_holds_from_every_address(page: SignInPage, from_address: Callable[[str], TestClient]) -> None:
    fail(page, from_address("198.51.100.1"), PER_IDENTIFIER)

    assert_throttled(page.submit(from_address("203.0.113.9"), page.email, WRONG))


def test_identifier_spellings_share_one_count(page: SignInPage, from_address: Callable[[str], TestClient]) -> None:
    client = from_address("198.51.100.1")
    for spelling in (page.email.upper(), f"  {page.email}", page.email.capitalize())[:PER_IDENTIFIER]:
        assert_refused(page.submit(client, spelling, WRONG))

    assert_throttled(page.submit(client, page.email, page.password))


def test_unknown_identifier_is_counted_and_answered_exactly_like_a_known_one(
    page: SignInPage, from_address: Callable[[str], TestClient]
) -> None:
    known_client, unknown_client = from_address("198.51.100.1"), from_address("198.51.100.2")
    unknown = "nobody-here@example.com"
    known = [page.submit(known_client, page.email, WRONG) for _ in range(PER_IDENTIFIER + 1)]
    unknown_answers = [page.submit(unknown_client, unknown, WRONG) for _ in range(PER_IDENTIFIER + 1)]

    for a, b in zip(known, unknown_answers, strict=True):
        assert a.status_code == b.status_code
        assert _message(a) == _message(b)
    assert [r.status_code for r in known] == [401] * PER_IDENTIFIER + [429]


def _message(response: httpx.Response) -> str:
    match = re.search(r'<p class="error" role="alert">([^<]*)</p>', response.text)
    assert match, response.text
    return match.group(1)


def test_a_successful_sign_in_starts_the_identifiers_count_again(
    page: SignInPage, from_address: Callable[[str], TestClient]
) -> None:
    client = from_address("198.51.100.1")
    fail(page, client, PER_IDENTIFIER - 1)
    assert page.submit(client, page.email, page.password).status_code == 303
    other = from_address("198.51.100.2")  # a fresh browser (the first one is signed in now)

    fail(page, other, PER_IDENTIFIER - 1)

    assert page.submit(other, page.email, page.password).status_code == 303


def test_the_limit_ends_with_its_window(
    page: SignInPage, from_address: Callable[[str], TestClient], clock: Clock
) -> None:
    client = from_address("198.51.100.1")
    fail(page, client, PER_IDENTIFIER)
    clock.advance(WINDOW - 61)
    assert_throttled(page.submit(client, page.email, page.password), minutes=2)

    clock.advance(62)

    assert page.submit(client, page.email, page.password).status_code == 303


# --- known devices -----------------------------------------------------------------------------------------


def known_device(page: SignInPage, from_address: Callable[[str], TestClient], address: str) -> TestClient:
    """A browser the account signed in from (it holds the device cookie that sign-in set)."""
    browser = from_address(address)
    assert page.submit(browser, page.email, page.password).status_code == 303
    assert browser.cookies.get("idp_device")
    return browser


def test_the_owner_signs_in_from_a_known_device_while_the_identifier_is_throttled_for_everyone_else(
    page: SignInPage, from_address: Callable[[str], TestClient], core: IdentityCore
) -> None:
    owner = known_device(page, from_address, "192.0.2.10")  # B: used before
    attacker = from_address("198.51.100.66")  # A
    fail(page, attacker, PER_IDENTIFIER)
    assert_throttled(page.submit(attacker, page.email, WRONG))

    # C: the right password from a browser the account never used is still refused for the window.
    assert_throttled(page.submit(from_address("203.0.113.9"), page.email, page.password))
    # B: the owner's browser passes, with the right password.
    assert page.submit(owner, page.email, page.password).status_code == 303
    # The owner's success did not wipe the attacker's failures: A and C stay throttled.
    assert_throttled(page.submit(attacker, page.email, page.password))
    assert_throttled(page.submit(from_address("203.0.113.10"), page.email, page.password))
    [*_, last] = throttle_audits(core, page.tenant_id)
    assert last.details["limit"] == "identifier" and last.details["known_device"] is False


def test_a_known_device_has_an_allowance_of_its_own(
    page: SignInPage, from_address: Callable[[str], TestClient], password_checks: list[str], core: IdentityCore
) -> None:
    """A stolen device cookie buys no more than the identifier's allowance, and spends nobody else's."""
    owner = known_device(page, from_address, "192.0.2.10")
    fail(page, owner, PER_IDENTIFIER)
    checked = len(password_checks)

    assert_throttled(page.submit(owner, page.email, page.password))
    assert len(password_checks) == checked
    [entry] = throttle_audits(core, page.tenant_id)
    assert entry.details["limit"] == "device" and entry.details["known_device"] is True
    # Failures on the known device are not the identifier's: another browser signs in as usual.
    assert page.submit(from_address("203.0.113.9"), page.email, page.password).status_code == 303


def test_a_device_cookie_of_another_account_does_not_count_as_known(
    page: SignInPage, from_address: Callable[[str], TestClient], core: IdentityCore
) -> None:
    """An attacker who signs in to an account of their own gets a device cookie that names that account only."""
    mallory = "mallory@example.com"
    if page.tenant_id == ADMIN_TENANT_ID:
        anyio.run(core.users.create_administrator, mallory, USER_PASSWORD)
    else:
        anyio.run(
            lambda: core.tenant_users.create(
                DEFAULT_TENANT_ID, email=mallory, password=USER_PASSWORD, actor=Actor(DEFAULT_TENANT_ID, "test")
            )
        )
    attacker = from_address("198.51.100.66")
    assert page.submit(attacker, mallory, USER_PASSWORD).status_code == 303
    assert attacker.cookies.get("idp_device")

    fail(page, attacker, PER_IDENTIFIER)

    assert_throttled(page.submit(attacker, page.email, page.password))


def test_the_address_limit_holds_for_known_devices_too(
    page: SignInPage, from_address: Callable[[str], TestClient]
) -> None:
    owner = known_device(page, from_address, "198.51.100.80")
    for index in range(PER_ADDRESS):
        fail(page, owner, 1, identifier=f"victim{index}@example.com")

    assert_throttled(page.submit(owner, page.email, page.password))


def test_a_device_unused_for_its_lifetime_is_known_no_more(
    page: SignInPage, from_address: Callable[[str], TestClient], clock: Clock, settings: Settings
) -> None:
    owner = known_device(page, from_address, "192.0.2.10")
    clock.advance(settings.known_device_ttl + 1)
    fail(page, from_address("198.51.100.66"), PER_IDENTIFIER)

    assert_throttled(page.submit(owner, page.email, page.password))


def test_the_device_cookie_is_http_only_long_lived_and_stored_only_as_a_digest(
    page: SignInPage, from_address: Callable[[str], TestClient], core: IdentityCore, settings: Settings
) -> None:
    browser = from_address("192.0.2.10")
    response = page.submit(browser, page.email, page.password)
    [cookie] = [
        value for name, value in response.headers.multi_items() if name == "set-cookie" and "idp_device=" in value
    ]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and f"Max-Age={settings.known_device_ttl}" in cookie
    value = browser.cookies["idp_device"]
    with core.db.transaction() as conn:
        rows = [tuple(str(column) for column in row) for row in conn.exec_driver_sql("SELECT * FROM known_devices")]
    assert len(rows) == 1 and not any(value in column for column in rows[0])

    # Signing in again from the same browser keeps its one device.
    assert page.submit(browser, page.email, page.password).status_code == 303
    assert browser.cookies["idp_device"] == value
    with core.db.transaction() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM known_devices").scalar_one() == 1


# --- per address -------------------------------------------------------------------------------------------


def test_an_address_is_throttled_after_failures_on_many_identifiers(
    page: SignInPage, from_address: Callable[[str], TestClient]
) -> None:
    attacker = from_address("198.51.100.66")
    for index in range(PER_ADDRESS):
        fail(page, attacker, 1, identifier=f"victim{index}@example.com")

    assert_throttled(page.submit(attacker, page.email, page.password))
    # Someone else, elsewhere, signs in as usual.
    assert page.submit(from_address("203.0.113.9"), page.email, page.password).status_code == 303


def test_successful_sign_ins_do_not_use_up_an_addresss_allowance(
    page: SignInPage, from_address: Callable[[str], TestClient]
) -> None:
    """An office behind one NAT address: people signing in successfully never lock the others out."""
    for index in range(PER_ADDRESS + 2):
        browser = from_address("198.51.100.80")
        assert page.submit(browser, page.email, page.password).status_code == 303, index

    fail(page, from_address("198.51.100.80"), PER_IDENTIFIER - 1, identifier="typo@example.com")


def test_every_ipv6_address_of_one_slash_64_shares_one_count(
    page: SignInPage, from_address: Callable[[str], TestClient]
) -> None:
    for index in range(PER_ADDRESS):
        fail(page, from_address(f"2001:db8:1:2::{index + 1:x}"), 1, identifier=f"victim{index}@example.com")

    assert_throttled(page.submit(from_address("2001:db8:1:2:ffff::1"), page.email, page.password))
    assert page.submit(from_address("2001:db8:1:3::1"), page.email, page.password).status_code == 303


# --- audit, tenants ------------------------------------------------------------------------------------------


def test_a_throttled_attempt_is_audited_without_the_password(
    page: SignInPage, from_address: Callable[[str], TestClient], core: IdentityCore
) -> None:
    client = from_address("198.51.100.1")
    fail(page, client, PER_IDENTIFIER)

    page.submit(client, page.email, "the secret passphrase typed")

    [entry] = throttle_audits(core, page.tenant_id)
    assert entry.outcome == "failure"
    assert entry.actor_sub is None
    assert entry.details["limit"] == "identifier"
    assert entry.details["identifier"] == page.email
    assert entry.details["client_address"] == "198.51.100.1"
    assert 0 < entry.details["retry_after"] <= WINDOW
    assert "the secret passphrase typed" not in repr(entry)


def test_counts_are_kept_per_tenant(
    core: IdentityCore, app: Starlette, from_address: Callable[[str], TestClient]
) -> None:
    anyio.run(
        lambda: core.tenant_users.create(
            DEFAULT_TENANT_ID, email=ADMIN_EMAIL, password=USER_PASSWORD, actor=Actor(DEFAULT_TENANT_ID, "test")
        )
    )
    client = from_address("198.51.100.1")
    admin = SignInPage(ADMIN_TENANT_ID, ADMIN_EMAIL, ADMIN_PASSWORD, _admin_submit)
    fail(admin, client, PER_IDENTIFIER)
    assert_throttled(admin.submit(client, ADMIN_EMAIL, ADMIN_PASSWORD))

    hosted = SignInPage(DEFAULT_TENANT_ID, ADMIN_EMAIL, USER_PASSWORD, _hosted_submit(core))

    assert hosted.submit(client, ADMIN_EMAIL, USER_PASSWORD).status_code == 303


def test_the_default_limits_are_five_per_identifier_and_thirty_per_address() -> None:
    settings = Settings()
    assert settings.sign_in_max_failures_per_identifier == 5
    assert settings.sign_in_max_failures_per_address == 30
    assert settings.sign_in_failure_window == 900


# --- the counter itself --------------------------------------------------------------------------------------


def test_concurrent_attempts_never_get_past_the_limit(core: IdentityCore) -> None:
    """Twelve replicas' worth of threads hit one key at once: exactly the limit gets through (the counters are
    locked while deciding, on SQLite by its write lock and on PostgreSQL by row locks)."""
    limiter = RateLimits(core.db, core.clock)
    limits = [Limit("identifier", "target@example.com", 5), Limit("address", "198.51.100.1", 100)]
    results: list[bool] = []
    barrier = threading.Barrier(12)

    def attempt() -> None:
        barrier.wait()
        results.append(limiter.hit("test", DEFAULT_TENANT_ID, limits, 60) is None)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(results) == [False] * 7 + [True] * 5


def test_limiters_in_two_processes_share_the_count(settings: Settings, core: IdentityCore) -> None:
    """Another core on the same database (another replica) sees this one's failures."""
    other = IdentityCore.from_settings(settings, core.clock)
    try:
        limits = [Limit("identifier", "target@example.com", 2)]
        assert core.rate_limits.hit("test", DEFAULT_TENANT_ID, limits, 60) is None
        assert other.rate_limits.hit("test", DEFAULT_TENANT_ID, limits, 60) is None

        exceeded = core.rate_limits.hit("test", DEFAULT_TENANT_ID, limits, 60)

        assert exceeded is not None and exceeded.kind == "identifier" and 0 < exceeded.retry_after <= 60
    finally:
        other.close()


def test_expired_counters_are_purged(core: IdentityCore, clock: Clock) -> None:
    limiter = RateLimits(core.db, clock, purge_interval_seconds=0)
    limiter.hit("test", DEFAULT_TENANT_ID, [Limit("identifier", "old@example.com", 5)], 60)
    clock.advance(61)

    limiter.hit("test", DEFAULT_TENANT_ID, [Limit("identifier", "new@example.com", 5)], 60)

    with core.db.transaction() as conn:
        count = conn.exec_driver_sql("SELECT COUNT(*) FROM rate_limit_counters").scalar_one()
    assert count == 1


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::9]", "2001:db8:1:2::/64"),
        ("testclient", "testclient"),
    ],
    ids=["ipv4", "ipv4-mapped", "ipv6-by-its-64", "ipv6-bracketed", "not-an-address"],
)
def test_client_addresses_are_keyed_by_what_one_client_controls(host: str, key: str) -> None:
    assert address_key(host) == key

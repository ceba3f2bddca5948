"""Open dynamic client registration is limited per client address (IPv6 per /64), with counters in the database
like the sign-in limits: past ``IDP_MCP_REGISTRATION_MAX_PER_ADDRESS`` in the window, 429 with an OAuth-style JSON
error and Retry-After, and nothing is registered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from idp_mcp.app import create_app
from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from idp_mcp.store.tables import clients as clients_table
from tests.support.clock import Clock
from tests.support.inprocess import PUBLIC_URL, REDIRECT_URI

LIMIT = 3
BODY = {"client_name": "Agent", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}


@pytest.fixture
def limited(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[tuple[IdentityCore, Clock, Settings]]:
    settings = Settings(
        public_url=PUBLIC_URL, data_dir=tmp_path, database_url=database_url,
        registration_max_per_address=LIMIT, registration_window=3600,
    )  # fmt: skip
    core = IdentityCore.from_settings(settings, clock)
    core.bootstrap()
    yield core, clock, settings
    core.close()


def _client_from(core: IdentityCore, settings: Settings, address: str) -> TestClient:
    return TestClient(create_app(settings, core), base_url=PUBLIC_URL, client=(address, 50000))


def _count_clients(core: IdentityCore) -> int:
    with core.db.read() as conn:
        return len(conn.execute(select(clients_table.c.client_id)).all())


def test_registrations_past_the_limit_get_429_with_retry_after(
    limited: tuple[IdentityCore, Clock, Settings],
) -> None:
    core, clock, settings = limited
    client = _client_from(core, settings, "203.0.113.7")
    for _ in range(LIMIT):
        assert client.post("/oauth/register", json=BODY).status_code == 201
    before = _count_clients(core)

    refused = client.post("/oauth/register", json=BODY)

    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "temporarily_unavailable" and refused.json()["error_description"]
    assert refused.headers["content-type"].startswith("application/json")
    assert 3500 <= int(refused.headers["retry-after"]) <= 3600
    assert _count_clients(core) == before
    # Another address is not held back; the window's end lets this one register again.
    assert _client_from(core, settings, "198.51.100.1").post("/oauth/register", json=BODY).status_code == 201
    clock.advance(3601)
    assert client.post("/oauth/register", json=BODY).status_code == 201


def test_an_ipv6_64_counts_as_one_address(limited: tuple[IdentityCore, Clock, Settings]) -> None:
    core, _clock, settings = limited
    for host in range(LIMIT):
        response = _client_from(core, settings, f"2001:db8:1:2::{host + 1}").post("/oauth/register", json=BODY)
        assert response.status_code == 201
    refused = _client_from(core, settings, "2001:db8:1:2:ffff::9").post("/oauth/register", json=BODY)
    assert refused.status_code == 429
    other = _client_from(core, settings, "2001:db8:1:3::1").post("/oauth/register", json=BODY)
    assert other.status_code == 201


def test_invalid_metadata_does_not_count(limited: tuple[IdentityCore, Clock, Settings]) -> None:
    core, _clock, settings = limited
    client = _client_from(core, settings, "203.0.113.8")
    for _ in range(LIMIT + 2):
        assert client.post("/oauth/register", json={"redirect_uris": ["not a uri"]}).status_code == 400
    assert client.post("/oauth/register", json=BODY).status_code == 201

"""The token endpoint spends a code (or rotates a refresh token) in the same transaction that stores the refresh
token it issues: both happen or neither does, and of two concurrent uses only one gets tokens."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import jwt
import pytest
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from idp_mcp.core.grants import PresentedRefreshToken, Successor
from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import ADMIN_TENANT_ID, Actor
from tests.support.inprocess import authorize, exchange_code, refresh, register_client

ACTOR = Actor(ADMIN_TENANT_ID, "test")


def gid_of(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["gid"])


def revocations(core: IdentityCore) -> list[str]:
    return [
        str(entry.details["reason"])
        for entry in core.audit.recent(ADMIN_TENANT_ID, limit=500)
        if entry.action == "oauth.revoke_grant"
    ]


@pytest.fixture
def client_id(client: TestClient) -> str:
    return str(register_client(client)["client_id"])


@pytest.fixture
def tokens(client: TestClient, client_id: str) -> dict[str, Any]:
    response = exchange_code(client, client_id, authorize(client, client_id))
    assert response.status_code == 200, response.text
    return dict(response.json())


def found_refresh_token(core: IdentityCore, client_id: str, token: str) -> PresentedRefreshToken:
    found = core.grants.find_refresh_token(ADMIN_TENANT_ID, token, client_id)
    assert found is not None
    return found


# --- refresh ----------------------------------------------------------------------------------------------


def test_refresh_whose_successor_cannot_be_stored_leaves_the_presented_token_usable(
    client: TestClient, core: IdentityCore, client_id: str, tokens: dict[str, Any]
) -> None:
    found = found_refresh_token(core, client_id, tokens["refresh_token"])
    # A successor whose digest is already taken (the presented token's own): the INSERT fails in the database.
    clash = Successor(tokens["refresh_token"], found.record)

    with pytest.raises(IntegrityError):
        core.grants.rotate_refresh_token(ADMIN_TENANT_ID, tokens["refresh_token"], client_id, clash)

    response = refresh(client, client_id, tokens["refresh_token"])
    assert response.status_code == 200, response.text
    assert "refresh_token_reuse" not in revocations(core)


def test_refresh_stores_the_successor_with_the_grant_of_the_presented_token(
    client: TestClient, core: IdentityCore, client_id: str, tokens: dict[str, Any]
) -> None:
    response = refresh(client, client_id, tokens["refresh_token"])
    assert response.status_code == 200, response.text

    successor = found_refresh_token(core, client_id, response.json()["refresh_token"])
    assert successor.record.family_id == gid_of(tokens["access_token"])
    assert successor.record.scope == tokens["scope"]
    assert successor.user is not None and successor.user.id == successor.record.user_id
    assert core.grants.find_refresh_token(ADMIN_TENANT_ID, tokens["refresh_token"], client_id) is None


def test_of_two_refreshes_that_found_the_same_token_only_one_rotates_it_and_the_other_revokes_the_family(
    core: IdentityCore, client_id: str, tokens: dict[str, Any]
) -> None:
    token = tokens["refresh_token"]
    first = found_refresh_token(core, client_id, token)
    second = found_refresh_token(core, client_id, token)  # both requests passed validation

    assert core.grants.rotate_refresh_token(ADMIN_TENANT_ID, token, client_id, Successor("successor-one", first.record))
    assert not core.grants.rotate_refresh_token(
        ADMIN_TENANT_ID, token, client_id, Successor("successor-two", second.record)
    )

    assert core.grants.is_family_revoked(first.record.family_id)
    assert core.grants.find_refresh_token(ADMIN_TENANT_ID, "successor-one", client_id) is None  # revoked
    assert core.grants.peek_refresh_token(ADMIN_TENANT_ID, "successor-two") is None  # never stored
    assert revocations(core) == ["refresh_token_reuse"]


def test_concurrent_rotations_of_one_refresh_token_let_exactly_one_win(
    core: IdentityCore, client_id: str, tokens: dict[str, Any]
) -> None:
    token = tokens["refresh_token"]
    record = found_refresh_token(core, client_id, token).record
    start = threading.Barrier(6)
    outcomes: list[bool] = []

    def rotate(index: int) -> None:
        start.wait(timeout=10)
        outcomes.append(
            core.grants.rotate_refresh_token(ADMIN_TENANT_ID, token, client_id, Successor(f"s{index}", record))
        )

    threads = [threading.Thread(target=rotate, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == [False] * 5 + [True]
    assert core.grants.is_family_revoked(record.family_id)


def test_refresh_of_a_suspended_user_is_refused_and_reactivation_does_not_revive_it(
    client: TestClient, core: IdentityCore, client_id: str, tokens: dict[str, Any]
) -> None:
    # Suspension revokes the user's grants in its own transaction: the old refresh token stays refused after the
    # user is reactivated (they sign in again for new tokens).
    found = found_refresh_token(core, client_id, tokens["refresh_token"])
    assert found.user is not None
    core.tenant_users.update(ADMIN_TENANT_ID, found.user.id, UserChanges(suspended=True), ACTOR)

    assert refresh(client, client_id, tokens["refresh_token"]).status_code == 400

    core.tenant_users.update(ADMIN_TENANT_ID, found.user.id, UserChanges(suspended=False), ACTOR)
    assert refresh(client, client_id, tokens["refresh_token"]).status_code == 400


# --- code ---------------------------------------------------------------------------------------------------


def test_exchange_whose_refresh_token_cannot_be_stored_leaves_the_code_unspent(
    client: TestClient, core: IdentityCore, client_id: str, tokens: dict[str, Any]
) -> None:
    result = authorize(client, client_id)
    found = core.grants.find_code(ADMIN_TENANT_ID, result.params["code"], client_id)
    assert found is not None
    taken = found_refresh_token(core, client_id, tokens["refresh_token"]).record
    clash = Successor(tokens["refresh_token"], replace(taken, family_id=found.record.grant_id))

    with pytest.raises(IntegrityError):
        core.grants.redeem_code(ADMIN_TENANT_ID, result.params["code"], client_id, clash)

    response = exchange_code(client, client_id, result)
    assert response.status_code == 200, response.text
    assert "code_replay" not in revocations(core)


def test_of_two_exchanges_that_found_the_same_code_only_one_spends_it_and_the_other_revokes_the_grant(
    client: TestClient, core: IdentityCore, client_id: str
) -> None:
    code = authorize(client, client_id).params["code"]
    first = core.grants.find_code(ADMIN_TENANT_ID, code, client_id)
    second = core.grants.find_code(ADMIN_TENANT_ID, code, client_id)
    assert first is not None and second is not None
    assert first.user is not None and first.user.id == first.record.user_id

    assert core.grants.redeem_code(ADMIN_TENANT_ID, code, client_id, None)
    assert not core.grants.redeem_code(ADMIN_TENANT_ID, code, client_id, None)

    assert core.grants.is_family_revoked(first.record.grant_id)
    assert revocations(core) == ["code_replay"]


def test_code_exchanged_without_offline_access_is_spent_once_and_a_replay_revokes_its_tokens(
    client: TestClient, core: IdentityCore, client_id: str
) -> None:
    result = authorize(client, client_id, scope="idp:read idp:write")
    first = exchange_code(client, client_id, result)
    assert first.status_code == 200, first.text
    assert "refresh_token" not in first.json()

    replay = exchange_code(client, client_id, result)

    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert core.grants.is_family_revoked(gid_of(first.json()["access_token"]))


@pytest.mark.parametrize(
    "override",
    [{"redirect_uri": "http://127.0.0.1:9/elsewhere"}, {"resource": "https://elsewhere.example/mcp"}],
    ids=["redirect_uri", "resource"],
)
def test_a_refused_exchange_spends_the_code(
    client: TestClient, core: IdentityCore, client_id: str, override: dict[str, str]
) -> None:
    result = authorize(client, client_id)

    refused = exchange_code(client, client_id, result, **override)
    assert refused.status_code == 400, refused.text

    again = exchange_code(client, client_id, result)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

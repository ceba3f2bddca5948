"""The audit log of the authorization server: who registered and who consented, and never a secret."""

from __future__ import annotations

import dataclasses
import json

from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, AuditEntry
from idp_mcp.store.repos import users as users_repo
from tests.support.inprocess import authorize, exchange_code, refresh, register_client
from tests.support.live_server import ADMIN_EMAIL


def admin_user_id(core: IdentityCore) -> str:
    with core.db.transaction() as conn:
        found = users_repo.find_by_identifier(conn, ADMIN_TENANT_ID, ADMIN_EMAIL)
    assert found is not None
    return found[0].id


def entries(core: IdentityCore, action: str) -> list[AuditEntry]:
    return [entry for entry in core.audit.recent(ADMIN_TENANT_ID, limit=500) if entry.action == action]


def test_registration_is_audited_with_the_client_and_its_metadata(client: TestClient, core: IdentityCore) -> None:
    registered = register_client(client, client_name="Audited agent")

    [entry] = entries(core, "client.register")

    assert entry.target_type == "client"
    assert entry.target_id == registered["client_id"]
    assert entry.outcome == "success"
    assert entry.details["client_name"] == "Audited agent"
    assert entry.details["redirect_uris"] == registered["redirect_uris"]
    assert entry.details["token_endpoint_auth_method"] == "none"


def test_consent_is_audited_with_the_admin_as_actor_and_the_client_as_agent(
    client: TestClient, core: IdentityCore
) -> None:
    client_id = register_client(client, client_name="Audited agent")["client_id"]

    authorize(client, client_id, allow_write=False)

    [entry] = entries(core, "oauth.consent")
    assert entry.actor_sub == admin_user_id(core)
    assert entry.actor_client_id == client_id
    assert entry.actor_client_name == "Audited agent"
    assert entry.target_id == client_id
    assert entry.details["scope"] == "idp:read offline_access"
    assert entry.details["acting_tenant"] == DEFAULT_TENANT_ID


def test_denied_consent_records_no_consent(client: TestClient, core: IdentityCore) -> None:
    client_id = register_client(client)["client_id"]

    authorize(client, client_id, action="deny")

    assert entries(core, "oauth.consent") == []


def test_code_replay_is_audited_as_a_grant_revocation(client: TestClient, core: IdentityCore) -> None:
    client_id = register_client(client)["client_id"]
    result = authorize(client, client_id)
    exchange_code(client, client_id, result)

    exchange_code(client, client_id, result)

    [entry] = entries(core, "oauth.revoke_grant")
    assert entry.details["reason"] == "code_replay"
    assert entry.actor_client_id == client_id


def test_audit_log_never_contains_secrets_codes_or_tokens(client: TestClient, core: IdentityCore) -> None:
    registered = register_client(client, token_endpoint_auth_method="client_secret_basic")
    client_id, secret = registered["client_id"], registered["client_secret"]
    basic = (client_id, secret)
    result = authorize(client, client_id)
    first = exchange_code(client, client_id, result, auth=basic).json()
    rotated = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=basic
    ).json()
    client.post("/oauth/revoke", data={"token": rotated["refresh_token"]}, auth=basic)
    exchange_code(client, client_id, result, auth=basic)  # a replay, audited as a revocation
    public_id = register_client(client)["client_id"]
    public = exchange_code(client, public_id, authorize(client, public_id)).json()
    refresh(client, public_id, public["refresh_token"])
    secrets = {
        "client secret": secret,
        "code": result.params["code"],
        "code verifier": result.verifier,
        "access token": first["access_token"],
        "refresh token": first["refresh_token"],
        "rotated access token": rotated["access_token"],
        "rotated refresh token": rotated["refresh_token"],
        "public access token": public["access_token"],
        "public refresh token": public["refresh_token"],
    }

    logged = [
        *core.audit.recent(ADMIN_TENANT_ID, limit=500),
        *core.audit.recent(DEFAULT_TENANT_ID, limit=500),
    ]

    actions = {entry.action for entry in logged}
    assert {"client.register", "oauth.consent", "oauth.revoke_grant"} <= actions
    serialised = json.dumps([dataclasses.asdict(entry) for entry in logged], default=str)
    for name, value in secrets.items():
        assert value not in serialised, f"the {name} is in the audit log"

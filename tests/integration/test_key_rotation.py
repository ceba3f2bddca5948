"""Signing-key rotation: a new key signs, the previous ones stay published until retired, retired keys' tokens
are refused (cached verifications included), every step is audited, and another process sharing the database
follows within its key cache interval."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import jwt
import pytest
from starlette.testclient import TestClient

from idp_mcp.core.identity import IdentityCore
from idp_mcp.core.keys import KeyRing
from idp_mcp.domain import Actor
from idp_mcp.errors import KeyInUse, KeyNotFound, TenantNotFound, ValidationFailed
from idp_mcp.oauth.grants.openid import IdTokens
from tests.support.clock import Clock
from tests.support.mcp_http import McpSession
from tests.support.tokens import obtain_access_token

CLI = Actor(tenant_id="admin", sub=None, client_name="idp-mcp command line")


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def published_kids(client: TestClient, path: str = "/oauth/jwks") -> set[str]:
    return {key["kid"] for key in client.get(path).json()["keys"]}


def tool_call_works(client: TestClient, token: str) -> bool:
    """Whether /mcp accepts ``token``: refused with 401, or initialize and a tools/call succeed."""
    response = McpSession(client, token).initialize_response()
    if response.status_code == 401:
        return False
    session = McpSession(client, token)
    session.initialize()
    return not session.call_tool("getTenantInfo", {}).get("isError")


def test_rotation_signs_new_tokens_with_the_new_key_and_keeps_old_tokens_valid(
    client: TestClient, core: IdentityCore
) -> None:
    before = obtain_access_token(client)
    old_kid = kid_of(before.access_token)
    assert tool_call_works(client, before.access_token)

    rotated = core.keys.rotate("admin", actor=CLI)
    assert rotated.kid != old_kid and rotated.status == "signing" and rotated.alg == "ES256"

    after = obtain_access_token(client)
    assert kid_of(after.access_token) == rotated.kid
    assert published_kids(client) == {old_kid, rotated.kid}
    # Both verify: the old token was issued before the rotation and has not expired.
    assert tool_call_works(client, before.access_token)
    assert tool_call_works(client, after.access_token)
    statuses = {key.kid: key.status for key in core.keys.list_keys("admin")}
    assert statuses == {old_kid: "published", rotated.kid: "signing"}


def test_retiring_a_key_unpublishes_it_and_refuses_its_tokens_even_cached_ones(
    client: TestClient, core: IdentityCore, clock: Clock
) -> None:
    before = obtain_access_token(client)
    old_kid = kid_of(before.access_token)
    assert tool_call_works(client, before.access_token)  # now in the verifier's cache
    rotated = core.keys.rotate("admin", actor=CLI)
    after = obtain_access_token(client)  # before the clock moves: the verifier checks times on the wall clock

    with pytest.raises(KeyInUse, match="may be valid until"):
        core.keys.retire("admin", old_kid, actor=CLI)  # tokens it signed may still be live
    clock.advance(core.settings.access_token_ttl + core.settings.key_cache_seconds + 1)
    retired = core.keys.retire("admin", old_kid, actor=CLI)
    assert retired.status == "retired" and retired.retired_at is not None

    assert published_kids(client) == {rotated.kid}
    clock.advance(1.1)  # the verifier reloads keys for an unknown kid at most once a second
    assert not tool_call_works(client, before.access_token)
    assert tool_call_works(client, after.access_token)


def test_the_key_that_signs_cannot_be_retired_and_unknown_keys_are_reported(core: IdentityCore) -> None:
    signing = core.keys.signing_key("admin")
    with pytest.raises(KeyInUse, match="Rotate first"):
        core.keys.retire("admin", signing.kid, force=True)
    with pytest.raises(KeyNotFound):
        core.keys.retire("admin", "no-such-kid", force=True)
    with pytest.raises(KeyNotFound):  # a key of another tenant is not this tenant's to retire
        core.keys.retire("admin", core.keys.signing_key("default").kid, force=True)
    with pytest.raises(TenantNotFound):
        core.keys.rotate("nope")
    with pytest.raises(ValidationFailed):
        core.keys.rotate("admin", "HS256")
    assert core.keys.retire_previous("admin") == []


def test_retire_previous_retires_every_key_that_no_longer_signs_and_forced_retirement_is_immediate(
    client: TestClient, core: IdentityCore
) -> None:
    first = core.keys.signing_key("admin").kid
    second = core.keys.rotate("admin").kid
    third = core.keys.rotate("admin").kid
    with pytest.raises(KeyInUse):
        core.keys.retire_previous("admin")
    assert {key.kid for key in core.keys.retire_previous("admin", actor=CLI, force=True)} == {first, second}
    assert published_kids(client) == {third}
    assert published_kids(client, "/t/default/oidc/jwks") == {core.keys.signing_key("default").kid}


def test_rotation_and_retirement_are_audited(core: IdentityCore) -> None:
    old = core.keys.signing_key("admin").kid
    new = core.keys.rotate("admin", actor=CLI).kid
    core.keys.retire("admin", old, actor=CLI, force=True)
    entries = [entry for entry in core.audit.recent("admin") if entry.action.startswith("key.")]
    by_action = {entry.action: entry for entry in entries}
    assert by_action["key.rotate"].target_id == new
    assert by_action["key.rotate"].details == {"alg": "ES256", "previous": [old]}
    assert by_action["key.rotate"].actor_client_name == "idp-mcp command line"
    assert by_action["key.retire"].target_id == old
    assert by_action["key.retire"].details == {"alg": "ES256", "forced": True}


def test_a_tenant_key_rotation_signs_client_credentials_tokens_and_retirement_ends_the_old_ones(
    client: TestClient, core: IdentityCore, clock: Clock
) -> None:
    actor = Actor(tenant_id="default", sub="test-admin")
    app = core.applications.create("default", name="Worker", app_type="m2m", actor=actor, redirect_uris=[])
    secret = core.secrets.create("default", app.id, "temporary", actor)
    basic = {"Authorization": "Basic " + base64.b64encode(f"{app.id}:{secret.value}".encode()).decode()}

    def token() -> str:
        response = client.post("/t/default/oidc/token", data={"grant_type": "client_credentials"}, headers=basic)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def active(access_token: str) -> bool:
        response = client.post("/t/default/oidc/introspect", data={"token": access_token}, headers=basic)
        return bool(response.json()["active"])

    old_token = token()
    new_kid = core.keys.rotate("default").kid
    new_token = token()
    assert kid_of(new_token) == new_kid and kid_of(old_token) != new_kid
    assert active(old_token) and active(new_token)
    core.keys.retire("default", kid_of(old_token), force=True)
    clock.advance(1.1)  # past the once-a-second limit on reloads for an unknown kid
    assert not active(old_token) and active(new_token)


def test_another_process_signs_with_a_rotated_key_within_its_cache_interval(core: IdentityCore) -> None:
    """Two key rings on one database stand for two replicas: one rotates, the other follows."""
    other = KeyRing(core.db, core.clock, refresh_seconds=0.5)
    before = other.signing_key("admin").kid
    rotated = core.keys.rotate("admin").kid
    # Verification needs no wait: an unknown kid makes the ring reload.
    assert other.verification_key(rotated, tenant_id="admin") is not None
    deadline = time.monotonic() + 5
    while other.signing_key("admin").kid == before:
        assert time.monotonic() < deadline, "the other process never signed with the rotated key"
        time.sleep(0.1)
    assert other.signing_key("admin").kid == rotated
    assert {key["kid"] for key in other.jwks("admin")["keys"]} == {before, rotated}


def test_an_id_token_is_signed_by_the_key_its_header_names_even_across_a_rotation(core: IdentityCore) -> None:
    """authlib asks for the header, then (after a database read) for the key: a rotation picked up in between
    must not produce a token whose kid names one key and whose signature is another's."""
    ring = KeyRing(core.db, core.clock, refresh_seconds=0)  # reloads on every use
    grant = IdTokens(SimpleNamespace(core=SimpleNamespace(keys=ring), tenant_id="admin"))  # type: ignore[arg-type]
    client = SimpleNamespace(client=SimpleNamespace(metadata={}))
    header = grant.get_encode_header(client)
    core.keys.rotate("admin")
    key = grant.resolve_client_private_key(client)
    assert key.kid == header["kid"]
    # The next token uses the new key.
    assert grant.get_encode_header(client)["kid"] != header["kid"]

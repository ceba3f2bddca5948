"""Prepare an idp-mcp database for bench/run, through the identity core (no HTTP):

- an administrator, a tenant ``bench`` with its signing key, an m2m application with a production secret, a
  public (spa) application and one user of the tenant;
- an API resource with two permissions and an m2m role granting both, held by the m2m application (for the client
  credentials scenario with ``resource``);
- a real access token for the MCP endpoint: a dynamically registered client, a consent (grant) and the
  server's own AccessTokenIssuer, signed with the admin issuer's key.

With ``--mint code|refresh N`` it only mints, into the prepared database (the server may be running): N
authorization codes for the spa (PKCE S256, one grant each; "code verifier" lines in ``code.txt``) or N refresh
tokens (one family each; ``refresh.txt``). bench/run mints a fresh set right before each trial, so each code and
token is presented once and none waits long enough to expire.

Settings come from the IDP_MCP_* environment variables, as for ``idp-mcp serve``. Writes into the output directory.

    python bench/idp_setup.py OUT_DIR                        # writes setup.json
    python bench/idp_setup.py OUT_DIR --mint code|refresh N  # writes code.txt or refresh.txt
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.pool import QueuePool

from idp_mcp.core.clients import parse_client_metadata
from idp_mcp.core.crypto import new_id
from idp_mcp.core.grants import CodeRecord, RefreshRecord
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import ADMIN_TENANT_ID, DEFAULT_TENANT_ID, Actor
from idp_mcp.oauth.tenants import tenant_issuer
from idp_mcp.oauth.tokens import AccessTokenIssuer, TokenSubject
from idp_mcp.settings import Settings

TENANT = "bench"
REDIRECT_URI = "http://127.0.0.1:9999/callback"
API_IDENTIFIER = "https://api.bench.example/invoices"
PASSWORD = "bench passphrase that is long enough 7"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _read_transaction_ms(core: IdentityCore, n: int = 100) -> float:
    """Mean time of ``grants.is_family_revoked`` (one indexed read in its own transaction), in ms."""
    started = time.perf_counter()
    for _ in range(n):
        core.grants.is_family_revoked("bench-no-such-family")
    return round((time.perf_counter() - started) / n * 1e3, 3)


def mint(core: IdentityCore, settings: Settings, setup: dict[str, str], kind: str, n: int) -> list[str]:
    """N fresh authorization codes ("code verifier") or refresh tokens for the spa, through the core."""
    now = core.clock()
    lines = []
    for _ in range(n):
        value = secrets.token_urlsafe(32)
        if kind == "code":
            verifier = secrets.token_urlsafe(48)
            core.grants.save_code(
                value,
                CodeRecord(
                    tenant_id=TENANT,
                    client_id=setup["spa_client_id"],
                    user_id=setup["user_id"],
                    grant_id=new_id(16),
                    redirect_uri=REDIRECT_URI,
                    scope="openid offline_access",
                    resource=setup["issuer"],
                    acting_tenant_id=None,
                    code_challenge=s256(verifier),
                    code_challenge_method="S256",
                    nonce=None,
                    auth_time=now,
                    expires_at=now + timedelta(seconds=settings.authorization_code_ttl),
                ),
            )
            lines.append(f"{value} {verifier}")
        else:
            core.grants.save_refresh_token(
                value,
                RefreshRecord(
                    tenant_id=TENANT,
                    family_id=new_id(16),
                    client_id=setup["spa_client_id"],
                    user_id=setup["user_id"],
                    scope="openid offline_access",
                    resource=setup["issuer"],
                    acting_tenant_id=None,
                    auth_time=now,
                    expires_at=now + timedelta(seconds=settings.refresh_token_ttl),
                ),
            )
            lines.append(value)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--mint", nargs=2, metavar=("KIND", "N"), help="only mint N codes or refresh tokens")
    parser.add_argument("--nullpool", dest="pooled", action="store_false", help="measure on the server's engine only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    settings = Settings()
    core = IdentityCore.from_settings(settings)
    if args.mint:
        kind, n = args.mint
        if kind not in ("code", "refresh"):
            parser.error("--mint KIND is 'code' or 'refresh'")
        setup = json.loads((args.out / "setup.json").read_text())
        lines = mint(core, settings, setup, kind, int(n))
        core.close()
        (args.out / f"{kind}.txt").write_text("".join(f"{line}\n" for line in lines))
        return
    core.bootstrap()
    admin = asyncio.run(core.users.create_administrator("bench-admin@example.com", PASSWORD))
    admin_actor = Actor(tenant_id=ADMIN_TENANT_ID, sub=admin.id)
    core.tenants.create(TENANT, "Bench", owner_user_id=admin.id, actor=admin_actor)
    core.keys.ensure(TENANT)
    actor = Actor(tenant_id=TENANT, sub=admin.id)
    m2m = core.applications.create(TENANT, name="bench m2m", app_type="m2m", actor=actor)
    m2m_secret = core.secrets.create(TENANT, m2m.id, "production", actor)
    api = core.api_resources.create(
        TENANT, name="bench API", identifier=API_IDENTIFIER, actor=actor,
        permissions=[("read:invoices", "Read invoices"), ("delete:invoices", "Delete invoices")],
    )  # fmt: skip
    role = core.roles.create(
        TENANT, name="bench service", description="", role_type="m2m", actor=actor,
        permissions=[(api.identifier, permission.name) for permission in api.permissions],
    )  # fmt: skip
    core.roles.assign(TENANT, [role.id], actor=actor, application_id=m2m.id)
    spa = core.applications.create(TENANT, name="bench spa", app_type="spa", redirect_uris=[REDIRECT_URI], actor=actor)
    # A tenant that made its hosted page its own (what the page render scenario parses, or reuses from its cache).
    css = "".join(f".bench-{i} {{ color: #{i:06x}; margin: {i}px; }}\n" for i in range(40))
    core.sign_in_experiences.update_branding(
        TENANT, {"displayName": "Bench Shop", "primaryColor": "#117a3d", "customCss": css}, actor
    )
    core.sign_in_experiences.update_sign_up(TENANT, {"enabled": True}, actor)
    user = asyncio.run(core.tenant_users.create(TENANT, password=PASSWORD, actor=actor, email="bench-user@example.com"))
    issuer = tenant_issuer(settings.public_url, TENANT)

    # One read transaction on the server's engine and on a one-connection pool (evidence for docs/performance.md).
    per_transaction = {"nullpool_ms": _read_transaction_ms(core)}
    if args.pooled:
        engine, old = core.db.engine, core.db.engine.pool
        engine.pool = QueuePool(old._creator, pool_size=1, max_overflow=0, dialect=old._dialect, _dispatch=old.dispatch)
        per_transaction["pooled_ms"] = _read_transaction_ms(core)
    now = core.clock()

    # A real MCP access token: registered client, recorded consent, signed by the server's own issuer code.
    scope = "idp:read idp:write offline_access"
    registration = core.clients.register(
        ADMIN_TENANT_ID,
        parse_client_metadata(
            {
                "client_name": "Bench agent",
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }
        ),
    )
    client_id = registration.client.client_id
    grant_id = core.grants.record_consent(
        tenant_id=ADMIN_TENANT_ID,
        user_id=admin.id,
        client_id=client_id,
        client_name="Bench agent",
        acting_tenant_id=DEFAULT_TENANT_ID,
        scope=scope,
        resource=settings.mcp_resource,
    )
    access_token = AccessTokenIssuer(core.keys, core.clock).issue(
        signing_tenant_id=ADMIN_TENANT_ID,
        issuer=settings.issuer,
        subject=TokenSubject(
            user_id=admin.id,
            family_id=grant_id,
            resource=settings.mcp_resource,
            acting_tenant_id=DEFAULT_TENANT_ID,
            auth_time=now,
        ),
        client_id=client_id,
        scope=scope,
        ttl_seconds=settings.access_token_ttl,
    )
    core.close()
    (args.out / "setup.json").write_text(
        json.dumps(
            {
                "tenant": TENANT,
                "issuer": issuer,
                "m2m_client_id": m2m.id,
                "m2m_secret": m2m_secret.value,
                "api_identifier": api.identifier,
                "api_permissions": [permission.name for permission in api.permissions],
                "spa_client_id": spa.id,
                "user_id": user.id,
                "redirect_uri": REDIRECT_URI,
                "mcp_access_token": access_token,
                "read_transaction": per_transaction,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

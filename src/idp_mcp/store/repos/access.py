"""Who holds access to a tenant: the agents (MCP clients) acting on it, and what one of its users holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from idp_mcp.domain import ADMIN_TENANT_ID
from idp_mcp.store.repos import grants as grants_repo
from idp_mcp.store.tables import clients, grants, refresh_tokens, users, web_sessions


def agent_grants(conn: Connection, tenant_id: str, client_id: str | None = None) -> list[Any]:
    """The standing MCP grants (consents at the admin issuer) that act on ``tenant_id``, oldest first, each with its
    client's name and the approving administrator's email (None when either is gone)."""
    joined = grants.outerjoin(
        clients, and_(clients.c.tenant_id == grants.c.tenant_id, clients.c.client_id == grants.c.client_id)
    ).outerjoin(users, and_(users.c.tenant_id == grants.c.tenant_id, users.c.id == grants.c.user_id))
    statement = (
        select(grants, clients.c.name.label("client_name"), users.c.email.label("user_email"))
        .select_from(joined)
        .where(
            grants.c.tenant_id == ADMIN_TENANT_ID,
            grants.c.acting_tenant_id == tenant_id,
            grants.c.revoked_at.is_(None),
        )
    )
    if client_id is not None:
        statement = statement.where(grants.c.client_id == client_id)
    return list(conn.execute(statement.order_by(grants.c.created_at, grants.c.id)).all())


def last_tokens(conn: Connection, family_ids: list[str]) -> dict[str, datetime]:
    """The newest refresh token of each family: when it was last issued (code exchange or rotation)."""
    if not family_ids:
        return {}
    rows = conn.execute(
        select(refresh_tokens.c.family_id, func.max(refresh_tokens.c.created_at).label("newest"))
        .where(refresh_tokens.c.tenant_id == ADMIN_TENANT_ID, refresh_tokens.c.family_id.in_(family_ids))
        .group_by(refresh_tokens.c.family_id)
    ).all()
    return {row.family_id: row.newest for row in rows}


def revoke_agent(conn: Connection, tenant_id: str, client_id: str, now: datetime) -> list[str]:
    """End every grant ``client_id`` holds on ``tenant_id``: the consents, and each token family (refresh tokens,
    and access tokens through the family, which the verifier checks). Returns the grants revoked."""
    grant_ids = [row.id for row in agent_grants(conn, tenant_id, client_id)]
    if not grant_ids:
        return []
    conn.execute(update(grants).where(grants.c.id.in_(grant_ids)).values(revoked_at=now))
    families = set(grant_ids) | {
        row.family_id
        for row in conn.execute(
            select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.tenant_id == ADMIN_TENANT_ID,
                refresh_tokens.c.client_id == client_id,
                refresh_tokens.c.acting_tenant_id == tenant_id,
            )
        )
    }
    for family_id in sorted(families):
        grants_repo.revoke_family(conn, ADMIN_TENANT_ID, family_id, now, "agent_revoked")
    return grant_ids


def user_sessions(conn: Connection, tenant_id: str, user_id: str, now: datetime) -> list[Any]:
    """A user's browser sessions at the tenant's hosted pages that have not expired, newest first."""
    return list(
        conn.execute(
            select(web_sessions.c.created_at, web_sessions.c.auth_time, web_sessions.c.expires_at)
            .where(
                web_sessions.c.tenant_id == tenant_id,
                web_sessions.c.user_id == user_id,
                web_sessions.c.expires_at > now,
            )
            .order_by(web_sessions.c.created_at.desc())
        ).all()
    )


def user_grants(conn: Connection, tenant_id: str, user_id: str) -> list[Any]:
    """A user's standing consents at the tenant's issuer, newest first, with each application's name."""
    joined = grants.outerjoin(
        clients, and_(clients.c.tenant_id == grants.c.tenant_id, clients.c.client_id == grants.c.client_id)
    )
    return list(
        conn.execute(
            select(grants.c.client_id, grants.c.scope, grants.c.created_at, clients.c.name.label("client_name"))
            .select_from(joined)
            .where(grants.c.tenant_id == tenant_id, grants.c.user_id == user_id, grants.c.revoked_at.is_(None))
            .order_by(grants.c.created_at.desc())
        ).all()
    )

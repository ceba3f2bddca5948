"""Connected agents: the MCP clients that hold grants acting on a tenant, who approved them, and revoking one.

An agent's grant is a consent at the admin tenant's MCP issuer whose ``acting_tenant_id`` is the tenant. Revoking
ends the consents and every token family behind them: refresh tokens at once, access tokens at the verifier's next
revocation check (cached a few seconds), and the next authorization asks for consent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idp_mcp.core.audit import AuditLog
from idp_mcp.domain import Actor, Clock, as_utc
from idp_mcp.errors import NotFound
from idp_mcp.store.db import Database
from idp_mcp.store.repos import access as repo


class AgentNotConnected(NotFound):
    code = "agent.not_found"


@dataclass(frozen=True)
class ConnectedAgent:
    client_id: str
    name: str
    approved_by: tuple[str, ...]  # the administrators who consented: their email, or their id once deleted
    scopes: tuple[str, ...]  # every scope any of its grants allows
    grants: int
    connected_at: datetime  # the first standing consent
    last_used_at: datetime | None  # the newest token issued to it (code exchange or refresh), None without refresh


@dataclass(frozen=True)
class UserAccess:
    """What a tenant user holds now: browser sessions at the hosted pages and consents to applications."""

    sessions: list[tuple[datetime, datetime]]  # (signed in at, expires at)
    grants: list[tuple[str, str, str, datetime]]  # (client id, application name, scope, consented at)


class ConnectedAgents:
    def __init__(self, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    def list(self, tenant_id: str) -> list[ConnectedAgent]:
        """The agents holding a standing grant on ``tenant_id``, the earliest connected first (one read)."""
        with self._db.read() as conn:
            rows = repo.agent_grants(conn, tenant_id)
            newest = repo.last_tokens(conn, [row.id for row in rows])
        by_client: dict[str, list[Any]] = {}
        for row in rows:
            by_client.setdefault(row.client_id, []).append(row)
        agents = []
        for client_id, grants in by_client.items():
            used = [as_utc(newest[g.id]) for g in grants if g.id in newest]
            agents.append(
                ConnectedAgent(
                    client_id=client_id,
                    name=grants[0].client_name or client_id,
                    approved_by=tuple(dict.fromkeys(g.user_email or g.user_id for g in grants)),
                    scopes=tuple(sorted({s for g in grants for s in g.scope.split()})),
                    grants=len(grants),
                    connected_at=as_utc(grants[0].created_at),
                    last_used_at=max(used) if used else None,
                )
            )
        return agents

    def revoke(self, tenant_id: str, client_id: str, actor: Actor) -> int:
        """End every grant ``client_id`` holds on ``tenant_id`` and their tokens, with the audit row, in one
        transaction; returns how many grants ended. :class:`AgentNotConnected` when it holds none."""
        with self._db.transaction() as conn:
            rows = repo.agent_grants(conn, tenant_id, client_id)
            revoked = repo.revoke_agent(conn, tenant_id, client_id, self._clock())
            if not revoked:
                raise AgentNotConnected("This agent holds no grant on this tenant (it may be revoked already).")
            self._audit.write(
                conn, actor, "agent.revoke", target_type="client", target_id=client_id, tenant_id=tenant_id,
                details={"name": rows[0].client_name, "grants": len(revoked)},
            )  # fmt: skip
        return len(revoked)

    def user_access(self, tenant_id: str, user_id: str) -> UserAccess:
        """A tenant user's live browser sessions and standing consents (one read)."""
        with self._db.read() as conn:
            sessions = repo.user_sessions(conn, tenant_id, user_id, self._clock())
            grants = repo.user_grants(conn, tenant_id, user_id)
        return UserAccess(
            sessions=[(as_utc(row.auth_time), as_utc(row.expires_at)) for row in sessions],
            grants=[
                (row.client_id, row.client_name or row.client_id, row.scope, as_utc(row.created_at)) for row in grants
            ],
        )

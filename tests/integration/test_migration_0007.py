"""Migration 0007: the grants of users suspended before suspension revoked them end on upgrade, so reactivating
such a user later does not bring old tokens back; other users' grants are untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import insert, select

from idp_mcp.store.db import Database, alembic_config, create_db_engine
from idp_mcp.store.tables import authorization_codes, grants, refresh_tokens, revoked_families, tenants, users


def _seed_user(conn: object, user_id: str, *, suspended: bool, now: datetime) -> None:
    execute = conn.execute  # type: ignore[attr-defined]
    execute(insert(users).values(
        tenant_id="t", id=user_id, email=f"{user_id}@example.com", suspended=suspended, created_at=now, updated_at=now,
    ))  # fmt: skip
    execute(insert(grants).values(
        id=f"g-{user_id}", tenant_id="t", user_id=user_id, client_id="c", scope="openid", created_at=now,
    ))  # fmt: skip
    execute(insert(refresh_tokens).values(
        token_digest=f"r-{user_id}", tenant_id="t", family_id=f"g-{user_id}", client_id="c", user_id=user_id,
        scope="openid", created_at=now, expires_at=now + timedelta(days=1),
    ))  # fmt: skip
    execute(insert(authorization_codes).values(
        code_digest=f"c-{user_id}", tenant_id="t", client_id="c", user_id=user_id, grant_id=f"g2-{user_id}",
        redirect_uri="https://app.example/cb", scope="openid", code_challenge="x" * 43, code_challenge_method="S256",
        auth_time=now, created_at=now, expires_at=now + timedelta(minutes=5),
    ))  # fmt: skip


def test_upgrade_revokes_the_grants_of_users_suspended_earlier(database_url: str) -> None:
    db = Database(create_db_engine(database_url))
    try:
        command.upgrade(alembic_config(db.engine), "0006")
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            conn.execute(insert(tenants).values(id="t", name="T", created_at=now))
            _seed_user(conn, "suspended", suspended=True, now=now)
            _seed_user(conn, "active", suspended=False, now=now)

        db.migrate()

        with db.engine.connect() as conn:
            families = {row.family_id: row.reason for row in conn.execute(select(revoked_families))}
            tokens = {row.user_id: row.revoked_at for row in conn.execute(select(refresh_tokens))}
            consents = {row.user_id: row.revoked_at for row in conn.execute(select(grants))}
            codes = {row.user_id for row in conn.execute(select(authorization_codes))}
        assert families == {"g-suspended": "user_suspended", "g2-suspended": "user_suspended"}
        assert tokens["suspended"] is not None and tokens["active"] is None
        assert consents["suspended"] is not None and consents["active"] is None
        assert codes == {"active"}
    finally:
        db.dispose()

"""Production secrets waiting to be shown once in the console (POST-redirect-GET), sealed with the session's key;
and the grants of users suspended before suspension revoked them, revoked now (so reactivating them later does not
bring old tokens back).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:40:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_reveals",
        sa.Column("secret_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=512), nullable=False),
        sa.Column("session_digest", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["client_secrets.id"],
            name=op.f("fk_secret_reveals_secret_id_client_secrets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("secret_id", name=op.f("pk_secret_reveals")),
    )
    _revoke_grants_of_suspended_users()


def _revoke_grants_of_suspended_users() -> None:
    """What a suspension does now (core/users.py), for users suspended before it did: every grant, token family,
    refresh token and pending code of theirs ends. Their browser sessions ended when they were suspended."""
    users = sa.table("users", sa.column("tenant_id"), sa.column("id"), sa.column("suspended"))
    grants = sa.table("grants", sa.column("tenant_id"), sa.column("user_id"), sa.column("id"), sa.column("revoked_at"))
    refresh = sa.table(
        "refresh_tokens", sa.column("tenant_id"), sa.column("user_id"), sa.column("family_id"), sa.column("revoked_at")
    )
    codes = sa.table(
        "authorization_codes", sa.column("tenant_id"), sa.column("user_id"), sa.column("grant_id"),
        sa.column("consumed_at"),
    )  # fmt: skip
    revoked = sa.table(
        "revoked_families", sa.column("family_id"), sa.column("tenant_id"), sa.column("revoked_at"), sa.column("reason")
    )
    conn = op.get_bind()
    now = datetime.now(UTC)
    known = {row.family_id for row in conn.execute(sa.select(revoked.c.family_id))}
    for tenant_id, user_id in conn.execute(sa.select(users.c.tenant_id, users.c.id).where(users.c.suspended.is_(True))):
        families = {row[0] for row in conn.execute(sa.select(grants.c.id).where(
            grants.c.tenant_id == tenant_id, grants.c.user_id == user_id))}  # fmt: skip
        families |= {row[0] for row in conn.execute(sa.select(refresh.c.family_id).where(
            refresh.c.tenant_id == tenant_id, refresh.c.user_id == user_id))}  # fmt: skip
        families |= {row[0] for row in conn.execute(sa.select(codes.c.grant_id).where(
            codes.c.tenant_id == tenant_id, codes.c.user_id == user_id))}  # fmt: skip
        conn.execute(
            grants.update()
            .where(grants.c.tenant_id == tenant_id, grants.c.user_id == user_id, grants.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        conn.execute(
            refresh.update()
            .where(refresh.c.tenant_id == tenant_id, refresh.c.user_id == user_id, refresh.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        conn.execute(
            codes.delete().where(
                codes.c.tenant_id == tenant_id, codes.c.user_id == user_id, codes.c.consumed_at.is_(None)
            )
        )
        fresh = sorted(families - known)
        if fresh:
            conn.execute(
                revoked.insert(),
                [
                    {"family_id": f, "tenant_id": tenant_id, "revoked_at": now, "reason": "user_suspended"}
                    for f in fresh
                ],
            )
            known |= set(fresh)


def downgrade() -> None:
    op.drop_table("secret_reveals")

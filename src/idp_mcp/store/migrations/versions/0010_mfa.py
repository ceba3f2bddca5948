"""Second factors (TOTP, backup codes), sign-ins waiting for their second factor, and the amr/acr of sessions,
authorization codes and refresh tokens.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_AMR_TABLES = ("web_sessions", "authorization_codes", "refresh_tokens")


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], name=op.f(f"fk_{table}_tenant_id_users"),
        ondelete="CASCADE",
    )  # fmt: skip


def upgrade() -> None:
    for table in _AMR_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("amr", sa.JSON(), nullable=True))
            batch_op.add_column(sa.Column("acr", sa.String(length=128), nullable=True))
    op.create_table(
        "mfa_factors",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
        _user_fk("mfa_factors"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_factors")),
    )
    with op.batch_alter_table("mfa_factors", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_factors_user", ["tenant_id", "user_id"], unique=False)
    op.create_table(
        "mfa_backup_codes",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        _user_fk("mfa_backup_codes"),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "digest", name=op.f("pk_mfa_backup_codes")),
    )
    op.create_table(
        "mfa_pending",
        sa.Column("id_digest", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("interaction_digest", sa.String(length=64), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("step_up", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        _user_fk("mfa_pending"),
        sa.PrimaryKeyConstraint("id_digest", name=op.f("pk_mfa_pending")),
    )
    with op.batch_alter_table("mfa_pending", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_pending_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mfa_pending", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_pending_expires_at")
    op.drop_table("mfa_pending")
    op.drop_table("mfa_backup_codes")
    with op.batch_alter_table("mfa_factors", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_factors_user")
    op.drop_table("mfa_factors")
    for table in reversed(_AMR_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("acr")
            batch_op.drop_column("amr")

"""Connectors to upstream identity providers, their encrypted client secrets, users' upstream identities and
pending upstream sign-ins.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("preset", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=512), nullable=False),
        sa.Column("issuer", sa.String(length=2048), nullable=True),
        sa.Column("endpoints", sa.JSON(), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("email_domains", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_connectors_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_connectors")),
    )
    op.create_table(
        "connector_secrets",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("connector_id", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("last_four", sa.String(length=4), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "connector_id"],
            ["connectors.tenant_id", "connectors.id"],
            name=op.f("fk_connector_secrets_tenant_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "connector_id", name=op.f("pk_connector_secrets")),
    )
    op.create_table(
        "user_identities",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("connector_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("picture", sa.String(length=2048), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_sign_in_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"],
            ["users.tenant_id", "users.id"],
            name=op.f("fk_user_identities_tenant_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "connector_id"],
            ["connectors.tenant_id", "connectors.id"],
            name=op.f("fk_user_identities_tenant_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "connector_id", "subject", name=op.f("pk_user_identities")),
    )
    with op.batch_alter_table("user_identities", schema=None) as batch_op:
        batch_op.create_index("ix_user_identities_user", ["tenant_id", "user_id"], unique=False)
    op.create_table(
        "upstream_logins",
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("connector_id", sa.String(length=64), nullable=False),
        sa.Column("interaction_id", sa.String(length=128), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("consumed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_upstream_logins_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("state_digest", name=op.f("pk_upstream_logins")),
    )
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.create_index("ix_upstream_logins_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("upstream_logins", schema=None) as batch_op:
        batch_op.drop_index("ix_upstream_logins_expires_at")
    op.drop_table("upstream_logins")
    with op.batch_alter_table("user_identities", schema=None) as batch_op:
        batch_op.drop_index("ix_user_identities_user")
    op.drop_table("user_identities")
    op.drop_table("connector_secrets")
    op.drop_table("connectors")

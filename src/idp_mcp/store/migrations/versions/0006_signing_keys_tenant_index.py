"""An index on signing_keys.tenant_id: each tenant's keys are loaded on their own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index("ix_signing_keys_tenant", ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_signing_keys_tenant")

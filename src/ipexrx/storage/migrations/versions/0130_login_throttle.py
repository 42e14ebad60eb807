"""Registry sign-in throttling: consecutive failed sign-ins per user, and a lock-out time.

Revision ID: 0130
Revises: 0120
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0130"
down_revision = "0120"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reg_user", sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"))
    op.add_column("reg_user", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reg_user") as batch:
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")

"""Cards issued, so that feedback can be traced to the rule that produced the card.

Revision ID: 0110
Revises: 0100
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0110"
down_revision = "0100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_card",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("hook_instance", sa.String(200), nullable=False),
        sa.Column("alert_id", sa.String(500), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("indicator", sa.String(20), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=True),
        sa.Column("tenant", sa.String(500), nullable=True),
    )
    op.create_index("ix_cds_card_rule", "cds_card", ["rule"])
    op.create_index("ix_cds_card_issued_at", "cds_card", ["issued_at"])


def downgrade() -> None:
    op.drop_table("cds_card")

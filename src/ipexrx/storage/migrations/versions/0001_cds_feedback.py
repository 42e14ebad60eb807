"""CDS Hooks feedback and seen JWT ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("card_uuid", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_reason_system", sa.String(500), nullable=True),
        sa.Column("override_reason_code", sa.String(200), nullable=True),
        sa.Column("override_reason_display", sa.Text(), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=True),
        sa.Column("tenant", sa.String(500), nullable=True),
    )
    op.create_index("ix_cds_feedback_service_id", "cds_feedback", ["service_id"])
    op.create_index("ix_cds_feedback_card_uuid", "cds_feedback", ["card_uuid"])
    op.create_index("ix_cds_feedback_outcome", "cds_feedback", ["outcome"])
    op.create_index("ix_cds_feedback_outcome_timestamp", "cds_feedback", ["outcome_timestamp"])
    op.create_table(
        "seen_token",
        sa.Column("issuer", sa.String(500), primary_key=True),
        sa.Column("jti", sa.String(500), primary_key=True),
        sa.Column("expires_at", sa.Integer(), nullable=False),
    )
    op.create_index("ix_seen_token_expires_at", "seen_token", ["expires_at"])


def downgrade() -> None:
    op.drop_table("seen_token")
    op.drop_table("cds_feedback")

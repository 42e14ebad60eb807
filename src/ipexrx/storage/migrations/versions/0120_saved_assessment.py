"""Saved assessments (ipexrx assess --save), in the same database as CDS feedback and the registry.

Revision ID: 0120
Revises: 0110
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0120"
down_revision = "0110"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_assessment",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(200), nullable=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("kb_version", sa.String(50), nullable=False),
        sa.Column("software_version", sa.String(50), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("critical", sa.Integer, nullable=False),
        sa.Column("warning", sa.Integer, nullable=False),
        sa.Column("info", sa.Integer, nullable=False),
        sa.Column("assessment", sa.JSON, nullable=False),
    )
    op.create_index("ix_saved_assessment_saved_at", "saved_assessment", ["saved_at"])
    op.create_index("ix_saved_assessment_patient_id", "saved_assessment", ["patient_id"])
    op.create_index("ix_saved_assessment_input_sha256", "saved_assessment", ["input_sha256"])


def downgrade() -> None:
    op.drop_table("saved_assessment")

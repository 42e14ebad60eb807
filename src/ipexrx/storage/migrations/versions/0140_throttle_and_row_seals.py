"""Sign-in throttling per (account, source) and per source; audit entries seal the data rows they wrote.

* ``reg_login_throttle``: failed sign-ins per key (replaces 0130's per-account hard lock, which let
  anyone lock a real user out).
* ``reg_audit.row_hashes``: canonical JSON ``{"<table>:<id>": sha256 of the row, or null when the
  row was deleted}``, part of the entry's hash, so ``audit verify`` can tell a data row changed
  outside the application. A database that already holds data rows gets one ``seal-baseline``
  entry sealing them as they are now (the chain vouches for them from this point on).

Revision ID: 0140
Revises: 0130
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0140"
down_revision = "0130"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reg_login_throttle",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reg_login_throttle_last_failure_at", "reg_login_throttle", ["last_failure_at"])
    # a plain ADD COLUMN (no table copy), so the append-only triggers on reg_audit stay in place
    op.execute("ALTER TABLE reg_audit ADD COLUMN row_hashes TEXT")

    from ipexrx.storage.chain import seal_baseline

    seal_baseline(op.get_bind())


def downgrade() -> None:
    op.execute("ALTER TABLE reg_audit DROP COLUMN row_hashes")  # SQLite >= 3.35, PostgreSQL
    op.drop_index("ix_reg_login_throttle_last_failure_at", "reg_login_throttle")
    op.drop_table("reg_login_throttle")

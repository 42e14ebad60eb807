"""Registry: centres, users, tokens, patients and their follow-up, hash-chained audit log.

Revision ID: 0100
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0100"
down_revision = "0001"
branch_labels = None
depends_on = None

_APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER reg_audit_no_update BEFORE UPDATE ON reg_audit "
    "BEGIN SELECT RAISE(ABORT, 'reg_audit is append-only'); END",
    "CREATE TRIGGER reg_audit_no_delete BEFORE DELETE ON reg_audit "
    "BEGIN SELECT RAISE(ABORT, 'reg_audit is append-only'); END",
]
_APPEND_ONLY_POSTGRES = [
    "CREATE FUNCTION reg_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'reg_audit is append-only'; END $$",
    "CREATE TRIGGER reg_audit_no_update BEFORE UPDATE OR DELETE ON reg_audit "
    "FOR EACH ROW EXECUTE FUNCTION reg_audit_append_only()",
    "CREATE TRIGGER reg_audit_no_truncate BEFORE TRUNCATE ON reg_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION reg_audit_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "reg_audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=60), nullable=False),
        sa.Column("centre_id", sa.Integer(), nullable=True),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_reg_audit_entity", "reg_audit", ["entity", "entity_id"], unique=False)
    op.create_table(
        "reg_audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq", name="uq_reg_audit_head_seq"),
    )
    op.create_table(
        "reg_centre",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "reg_patient",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pseudonym", sa.String(length=40), nullable=False),
        sa.Column("centre_id", sa.Integer(), nullable=False),
        sa.Column("birth_year", sa.Integer(), nullable=False),
        sa.Column("birth_month", sa.Integer(), nullable=False),
        sa.Column("sex", sa.String(length=10), nullable=False),
        sa.Column("diagnosis", sa.String(length=10), nullable=False),
        sa.Column("gene", sa.String(length=20), nullable=False),
        sa.Column("variant_hgvs", sa.String(length=200), nullable=True),
        sa.Column("ipex_like_id", sa.String(length=64), nullable=True),
        sa.Column("onset_date", sa.Date(), nullable=True),
        sa.Column("diagnosis_date", sa.Date(), nullable=False),
        sa.Column("consent_date", sa.Date(), nullable=False),
        sa.Column("consent_scope", sa.String(length=30), nullable=False),
        sa.Column("consent_withdrawn_date", sa.Date(), nullable=True),
        sa.Column("vital_status", sa.String(length=10), nullable=False),
        sa.Column("death_date", sa.Date(), nullable=True),
        sa.Column("last_followup_date", sa.Date(), nullable=True),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["centre_id"],
            ["reg_centre.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pseudonym"),
    )
    op.create_index(op.f("ix_reg_patient_centre_id"), "reg_patient", ["centre_id"], unique=False)
    op.create_table(
        "reg_user",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("centre_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["centre_id"],
            ["reg_centre.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "reg_api_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["reg_user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_reg_api_token_user_id"), "reg_api_token", ["user_id"], unique=False)
    op.create_table(
        "reg_course",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("drug_id", sa.String(length=64), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("stop_date", sa.Date(), nullable=True),
        sa.Column("dose", sa.Float(), nullable=True),
        sa.Column("dose_unit", sa.String(length=20), nullable=True),
        sa.Column("reason_stopped", sa.String(length=20), nullable=True),
        sa.Column("reason_other", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["reg_patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reg_course_drug_id"), "reg_course", ["drug_id"], unique=False)
    op.create_index(op.f("ix_reg_course_patient_id"), "reg_course", ["patient_id"], unique=False)
    op.create_table(
        "reg_hsct",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("donor", sa.String(length=30), nullable=False),
        sa.Column("conditioning", sa.String(length=30), nullable=False),
        sa.Column("chimerism_donor_pct", sa.Float(), nullable=True),
        sa.Column("chimerism_date", sa.Date(), nullable=True),
        sa.Column("acute_gvhd_grade", sa.Integer(), nullable=True),
        sa.Column("chronic_gvhd", sa.String(length=10), nullable=True),
        sa.Column("pre_hsct_oi_score", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["reg_patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reg_hsct_patient_id"), "reg_hsct", ["patient_id"], unique=False)
    op.create_table(
        "reg_manifestation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("hpo_code", sa.String(length=10), nullable=False),
        sa.Column("manifestation_id", sa.String(length=64), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=False),
        sa.Column("resolution_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["reg_patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reg_manifestation_patient_id"), "reg_manifestation", ["patient_id"], unique=False)
    op.create_table(
        "reg_visit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("stool_ml_kg_day", sa.Float(), nullable=True),
        sa.Column("weight_z", sa.Float(), nullable=True),
        sa.Column("insulin_u_kg_day", sa.Float(), nullable=True),
        sa.Column("skin_severity", sa.String(length=10), nullable=True),
        sa.Column("organs", sa.String(length=200), nullable=False),
        sa.Column("oi_score", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["reg_patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reg_visit_patient_id"), "reg_visit", ["patient_id"], unique=False)
    op.create_table(
        "reg_adverse_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["reg_course.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["patient_id"], ["reg_patient.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reg_adverse_event_patient_id"), "reg_adverse_event", ["patient_id"], unique=False)
    op.create_table(
        "reg_trough",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("value_ng_ml", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["reg_course.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reg_trough_course_id"), "reg_trough", ["course_id"], unique=False)

    # The chain's head starts at the genesis hash, so the first append needs no special case and two
    # first writers cannot race on creating it.
    op.execute("INSERT INTO reg_audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")
    # Append-only at the database level too (the hash chain detects what a superuser could still do).
    dialect = op.get_bind().dialect.name
    stmts = _APPEND_ONLY_SQLITE if dialect == "sqlite" else _APPEND_ONLY_POSTGRES if dialect == "postgresql" else []
    for stmt in stmts:
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS reg_audit_no_update")
        op.execute("DROP TRIGGER IF EXISTS reg_audit_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS reg_audit_no_update ON reg_audit")
        op.execute("DROP TRIGGER IF EXISTS reg_audit_no_truncate ON reg_audit")
        op.execute("DROP FUNCTION IF EXISTS reg_audit_append_only()")
    for table in [
        "reg_trough",
        "reg_adverse_event",
        "reg_visit",
        "reg_manifestation",
        "reg_hsct",
        "reg_course",
        "reg_api_token",
        "reg_user",
        "reg_patient",
        "reg_centre",
        "reg_audit_head",
        "reg_audit",
    ]:
        op.drop_table(table)

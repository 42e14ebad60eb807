"""Registry tables (prefix ``reg_``), on the shared storage ``Base`` so that one Alembic history
covers the service and the registry.

Design choices that matter for trust:

* No column can hold a name or a medical record number: a patient is known only by a registry
  pseudonym, birth is year and month, and free text is limited to a few short fields that the
  de-identified export drops.
* Audit entries keep their timestamps and before/after values as canonical JSON *text*, so that the
  hash chain recomputes byte-for-byte on SQLite and PostgreSQL alike (no driver round-trip of
  datetimes or JSON).
* Changing a table here needs a new migration in ``ipexrx/storage/migrations/versions``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base


class Centre(Base):
    __tablename__ = "reg_centre"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    __tablename__ = "reg_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    centre_id: Mapped[int | None] = mapped_column(ForeignKey("reg_centre.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # Migration 0130's per-account hard lock. Since 0140 sign-in throttling is per (account, source)
    # and per source (LoginThrottle): an account can no longer be locked by someone else. The
    # columns stay for the migration history and are no longer written.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LoginThrottle(Base):
    """Failed sign-ins counted per key: the SHA-256 of (username, source address) or of the source
    address alone (see :mod:`.throttle`). Operational state shared by every worker and host, not
    registry data: not in backups, not sealed by the audit chain."""

    __tablename__ = "reg_login_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiToken(Base):
    """A bearer token for scripts (``kind='api'``) or a web session (``kind='session'``).

    Only the SHA-256 of the token is stored: tokens are 256-bit random strings, so a fast hash is
    enough (no dictionary to attack) and lookup stays an index probe.
    """

    __tablename__ = "reg_api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("reg_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="api")
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Patient(Base):
    __tablename__ = "reg_patient"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(40), unique=True)
    centre_id: Mapped[int] = mapped_column(ForeignKey("reg_centre.id"), index=True)
    birth_year: Mapped[int] = mapped_column(Integer)
    birth_month: Mapped[int] = mapped_column(Integer)
    sex: Mapped[str] = mapped_column(String(10))
    diagnosis: Mapped[str] = mapped_column(String(10))  # "ipex" | "ipex-like"
    gene: Mapped[str] = mapped_column(String(20))
    variant_hgvs: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ipex_like_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    onset_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    diagnosis_date: Mapped[dt.date] = mapped_column(Date)
    consent_date: Mapped[dt.date] = mapped_column(Date)
    consent_scope: Mapped[str] = mapped_column(String(30))
    consent_withdrawn_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    vital_status: Mapped[str] = mapped_column(String(10), default="alive")
    death_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    last_followup_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ManifestationEpisode(Base):
    __tablename__ = "reg_manifestation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("reg_patient.id", ondelete="CASCADE"), index=True)
    hpo_code: Mapped[str] = mapped_column(String(10))
    manifestation_id: Mapped[str] = mapped_column(String(64))
    onset_date: Mapped[dt.date] = mapped_column(Date)
    resolution_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


class Course(Base):
    __tablename__ = "reg_course"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("reg_patient.id", ondelete="CASCADE"), index=True)
    drug_id: Mapped[str] = mapped_column(String(64), index=True)
    start_date: Mapped[dt.date] = mapped_column(Date)
    stop_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    dose: Mapped[float | None] = mapped_column(Float, nullable=True)
    dose_unit: Mapped[str | None] = mapped_column(String(20), nullable=True)
    reason_stopped: Mapped[str | None] = mapped_column(String(20), nullable=True)
    reason_other: Mapped[str | None] = mapped_column(String(200), nullable=True)


class TroughLevel(Base):
    __tablename__ = "reg_trough"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("reg_course.id", ondelete="CASCADE"), index=True)
    date: Mapped[dt.date] = mapped_column(Date)
    value_ng_ml: Mapped[float] = mapped_column(Float)


class Visit(Base):
    __tablename__ = "reg_visit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("reg_patient.id", ondelete="CASCADE"), index=True)
    date: Mapped[dt.date] = mapped_column(Date)
    stool_ml_kg_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight_z: Mapped[float | None] = mapped_column(Float, nullable=True)
    insulin_u_kg_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    skin_severity: Mapped[str | None] = mapped_column(String(10), nullable=True)
    organs: Mapped[str] = mapped_column(String(200), default="")  # ';'-joined organ codes (fixed vocabulary)
    oi_score: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AdverseEvent(Base):
    __tablename__ = "reg_adverse_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("reg_patient.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int | None] = mapped_column(ForeignKey("reg_course.id", ondelete="SET NULL"), nullable=True)
    date: Mapped[dt.date] = mapped_column(Date)
    term: Mapped[str] = mapped_column(String(100))
    grade: Mapped[int] = mapped_column(Integer)
    serious: Mapped[bool] = mapped_column(Boolean, default=False)


class Hsct(Base):
    __tablename__ = "reg_hsct"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("reg_patient.id", ondelete="CASCADE"), index=True)
    date: Mapped[dt.date] = mapped_column(Date)
    donor: Mapped[str] = mapped_column(String(30))
    conditioning: Mapped[str] = mapped_column(String(30))
    chimerism_donor_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    chimerism_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    acute_gvhd_grade: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chronic_gvhd: Mapped[str | None] = mapped_column(String(10), nullable=True)
    pre_hsct_oi_score: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AuditEntry(Base):
    """One link of the hash chain. ``hash = sha256(prev_hash || canonical JSON of the entry)``."""

    __tablename__ = "reg_audit"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    username: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(60))
    centre_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    before: Mapped[str] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # {"<table>:<id>": sha256 of the data row written, or null if deleted}; canonical JSON (0140)
    row_hashes: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_reg_audit_entity", "entity", "entity_id"),)


class AuditHead(Base):
    """Single row (id=1) holding the chain's last seq and hash; locked to serialise appends."""

    __tablename__ = "reg_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("seq", name="uq_reg_audit_head_seq"),)


REGISTRY_TABLES = [
    Centre, User, ApiToken, Patient, ManifestationEpisode, Course, TroughLevel, Visit, AdverseEvent, Hsct,
    AuditEntry, AuditHead,
]

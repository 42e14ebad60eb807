"""Tables. Changing one here needs a new migration in ``migrations/versions``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class CdsFeedback(Base):
    """One CDS Hooks feedback item: what the clinician did with one of our cards.

    Only the outcome is stored (card uuid, accepted suggestions, override reason); the feedback
    call carries no patient data and we add none. ``issuer``/``tenant`` come from the verified JWT so
    that outcomes can be analysed per EHR/organisation.
    """

    __tablename__ = "cds_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(String(200), index=True)
    card_uuid: Mapped[str] = mapped_column(String(200), index=True)
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    accepted_suggestions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    override_reason_system: Mapped[str | None] = mapped_column(String(500), nullable=True)
    override_reason_code: Mapped[str | None] = mapped_column(String(200), nullable=True)
    override_reason_display: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_timestamp: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    issuer: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(500), nullable=True)


class SeenToken(Base):
    """A JWT id already used by an issuer, kept until the token expires (replay protection)."""

    __tablename__ = "seen_token"

    issuer: Mapped[str] = mapped_column(String(500), primary_key=True)
    jti: Mapped[str] = mapped_column(String(500), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_seen_token_expires_at", "expires_at"),)


class CdsCard(Base):
    """A card we returned: lets feedback (which names only the card uuid) be traced to its rule.

    No patient data: the alert id is built from rule and knowledge-base ids (e.g.
    ``duplication.two_calcineurin_inhibitors:cyclosporine+tacrolimus``).
    """

    __tablename__ = "cds_card"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200))
    hook_instance: Mapped[str] = mapped_column(String(200))
    alert_id: Mapped[str] = mapped_column(String(500))
    rule: Mapped[str] = mapped_column(String(200), index=True)
    indicator: Mapped[str] = mapped_column(String(20))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    issuer: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(500), nullable=True)


class SavedAssessment(Base):
    """An assessment kept for later review (``ipexrx assess FILE --save``).

    It stores the assessment as produced (JSON, with its sources resolved), the knowledge-base and
    software versions it was made with, and a SHA-256 of the input, so a clinician can later show
    what the system said on that day and re-run it to see what changed. It holds patient data
    (the assessment's patient summary): it lives in the user's own database, like a saved report.
    """

    __tablename__ = "saved_assessment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    saved_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    kb_version: Mapped[str] = mapped_column(String(50))
    software_version: Mapped[str] = mapped_column(String(50))
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    critical: Mapped[int] = mapped_column(Integer)
    warning: Mapped[int] = mapped_column(Integer)
    info: Mapped[int] = mapped_column(Integer)
    assessment: Mapped[dict[str, Any]] = mapped_column(JSON)

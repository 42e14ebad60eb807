"""CDS Hooks 2.0 wire models (requests, cards, discovery, feedback).

Requests are parsed leniently (unknown fields kept, missing ``Bundle.type`` accepted) because
real EHRs and the official examples are sloppy; cards are built strictly (no empty strings or
nulls, ``summary`` < 140 characters, ``selectionBehavior`` with suggestions) because a card the
EHR cannot render is a safety message lost.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...storage.models import CdsFeedback


def _column_length(column: str) -> int:
    """``max_length`` of a feedback field: the length of the cds_feedback column it is stored in."""
    return int(getattr(CdsFeedback.__table__.c[column].type, "length", 0))


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatype id


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- request ------------------------------------------------------------------------------
class FhirAuthorization(Lenient):
    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:  # never print the token, even in a debugger or a log line
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r}, access_token=<withheld>)"

    __str__ = __repr__


class CdsRequest(Lenient):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("context")
    @classmethod
    def _patient_id(cls, v: dict[str, Any]) -> dict[str, Any]:
        """``patientId`` goes into FHIR request paths (``Patient/{{context.patientId}}``): it must be a FHIR
        id (R4 ``id``: 1-64 of A-Z a-z 0-9 - .), and not ``.`` or ``..``, so it can never walk the path."""
        pid = v.get("patientId")
        if isinstance(pid, str) and pid.strip() and (not FHIR_ID.fullmatch(pid) or set(pid) == {"."}):
            shown = pid if len(pid) <= 80 else pid[:77] + "..."
            raise ValueError(f"context.patientId must be a FHIR id (1-64 letters, digits, '-' or '.'), got {shown!r}")
        return v

    @field_validator("fhirServer")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("https://") or v.startswith("http://")):
            raise ValueError("fhirServer must be an absolute http(s) URL")
        return v.rstrip("/") if v else v

    def __repr__(self) -> str:
        return f"CdsRequest(hook={self.hook!r}, hookInstance={self.hookInstance!r})"


# -- response -----------------------------------------------------------------------------
class Coding(Strict):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)


class Source(Strict):
    label: str = Field(min_length=1)
    url: str | None = Field(None, min_length=1)
    topic: Coding | None = None


class Action(Strict):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _target(self) -> Action:
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action needs resourceId")
        if self.type in ("create", "update") and not self.resource:
            raise ValueError(f"a {self.type} action needs the resource")
        return self


class Suggestion(Strict):
    label: str = Field(min_length=1)
    uuid: str = Field(min_length=1)
    isRecommended: bool | None = None
    actions: list[Action] = Field(min_length=1)


class Link(Strict):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = Field(None, min_length=1, description="smart links only: passed to the app by the "
                                   "EHR at launch (ours: a JSON object naming the drug, rule and levels).")
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context(self) -> Link:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("appContext is only allowed on links of type 'smart'")
        return self


class Card(Strict):
    uuid: str = Field(min_length=1)
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = Field(None, min_length=1)
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = Field(None, min_length=1)
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = Field(None, min_length=1)
    links: list[Link] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _selection(self) -> Card:
        if self.suggestions and not self.selectionBehavior:
            raise ValueError("selectionBehavior is required when suggestions are present")
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON the EHR receives: optional fields without a value are omitted, never null."""
        return self.model_dump(exclude_none=True)


class CdsResponse(BaseModel):
    cards: list[dict[str, Any]] = Field(description="CDS Hooks 2.0 cards (see docs/cds-hooks.md).")
    systemActions: list[dict[str, Any]] | None = Field(
        None, description="Changes the EHR may apply without showing a card. ipexrx never sends any (every change "
        "it could propose is a clinical decision; see docs/cds-hooks.md).")


class ServiceResponse(Strict):
    """The whole CDS service response, strictly (what the tests and the conformance suite check)."""

    cards: list[Card]
    systemActions: list[Action] | None = Field(None, min_length=1)


# -- discovery ----------------------------------------------------------------------------
class ServiceDescription(Strict):
    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None


class Discovery(BaseModel):
    services: list[ServiceDescription]


# -- feedback -----------------------------------------------------------------------------
class AcceptedSuggestion(Lenient):
    id: str = Field(min_length=1)


class OverrideReasonCoding(Lenient):
    system: str | None = Field(None, max_length=_column_length("override_reason_system"))
    code: str | None = Field(None, max_length=_column_length("override_reason_code"))
    display: str | None = None


class OverrideReason(Lenient):
    reason: OverrideReasonCoding | None = None
    userComment: str | None = None


class FeedbackItem(Lenient):
    card: str = Field(min_length=1, max_length=_column_length("card_uuid"),
                      description="The uuid of the card the feedback is about.")
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: dt.datetime

    @field_validator("outcomeTimestamp")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("outcomeTimestamp needs a time zone (ISO 8601 in UTC, e.g. 2026-11-25T12:00:00Z)")
        return v.astimezone(dt.UTC)


class FeedbackRequest(Lenient):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


class FeedbackStored(BaseModel):
    stored: int = Field(description="How many feedback items were recorded.")


class FeedbackRecord(BaseModel):
    id: int
    service: str
    card: str
    outcome: str
    acceptedSuggestions: list[str]
    overrideReason: dict[str, str] | None = None
    userComment: str | None = None
    outcomeTimestamp: dt.datetime
    receivedAt: dt.datetime
    issuer: str | None = None
    tenant: str | None = None
    rule: str | None = Field(None, description="Rule behind the card, when the card was issued by this server.")
    alert: str | None = Field(None, description="Alert id behind the card (rule + knowledge-base ids).")
    indicator: str | None = None


class FeedbackList(BaseModel):
    feedback: list[FeedbackRecord]

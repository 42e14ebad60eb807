"""Every text that goes into a length-limited column is checked at the edge: a value that is too long
is a 422 naming the field and its limit, never a 500 (PostgreSQL refuses over-long values; SQLite
stores them). The input models take their limits from the SQLAlchemy columns, and this test
pins that they match. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import types
import typing
from typing import Any

import annotated_types
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import String

from ipexrx.registry import http, schemas
from ipexrx.registry.models import AdverseEvent, ApiToken, Centre, Course, Hsct, ManifestationEpisode, Patient, User
from ipexrx.registry.models import Visit as VisitRow
from ipexrx.service.registry_mount import mount_registry

from .conftest import PASSWORD, World

# input model -> the table its fields are stored in (fields with the same name as a column)
MODELS: list[tuple[type[BaseModel], Any]] = [
    (schemas.CentreIn, Centre), (schemas.UserIn, User), (schemas.PatientIn, Patient),
    (schemas.ManifestationIn, ManifestationEpisode), (schemas.CourseIn, Course), (schemas.VisitIn, VisitRow),
    (schemas.AdverseEventIn, AdverseEvent), (schemas.HsctIn, Hsct), (http.Login, User), (http.UserChange, User),
    (http.CourseStop, Course),
]


def _is_free_text(annotation: Any) -> bool:
    """str or str | None (a Literal is bounded by its choices)."""
    if annotation is str:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(a is str for a in typing.get_args(annotation))
    return False


def _max_length(field: Any) -> int | None:
    return next((m.max_length for m in field.metadata if isinstance(m, annotated_types.MaxLen)), None)


@pytest.mark.parametrize(("model", "table"), MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_every_free_text_field_has_the_length_of_its_column(model: type[BaseModel], table: Any) -> None:
    columns = table.__table__.c
    for name, field in model.model_fields.items():
        if not _is_free_text(field.annotation):
            continue
        limit = _max_length(field)
        assert limit is not None, f"{model.__name__}.{name} takes text of any length"
        if name in columns and isinstance(columns[name].type, String):
            assert limit == columns[name].type.length, (model.__name__, name, limit, columns[name].type.length)
    assert http.Login.model_fields["label"].metadata and _max_length(http.Login.model_fields["label"]) == \
        ApiToken.__table__.c.label.type.length


@pytest.fixture
def client(world: World) -> TestClient:
    app = FastAPI()
    mount_registry(app, world.reg)
    return TestClient(app)


def _token(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/registry/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _too_long(limit: int) -> str:
    return "A" * (limit + 1)


def test_an_over_long_username_at_sign_in_is_a_422_naming_the_field(client: TestClient) -> None:
    for n in (61, 100, 101, 5000):  # 61-100 used to pass validation and fail in the audit log on PostgreSQL
        r = client.post("/api/v1/registry/auth/token", json={"username": "u" * n, "password": "x" * 12})
        limit = User.__table__.c.username.type.length
        if n <= limit:
            assert r.status_code == 401, (n, r.text)
        else:
            assert r.status_code == 422, (n, r.text)
            assert f"username: expected at most {limit} characters, got {n}" in r.json()["detail"]["problems"]


def test_over_long_path_parameters_are_a_422_naming_them(world: World, client: TestClient) -> None:
    clin = _token(client, "clinician.user")
    admin = _token(client, "admin.user")
    r = client.get("/api/v1/registry/patients/" + "P" * 41, headers=clin)
    assert r.status_code == 422 and "path pseudonym: expected at most 40 characters, got 41" in r.text
    r = client.patch("/api/v1/registry/users/" + "u" * 101, json={"active": True}, headers=admin)
    assert r.status_code == 422 and "path username: expected at most 100 characters" in r.text
    # refused (wrong role) with a long target: the refusal is audited, not a 500
    r = client.patch("/api/v1/registry/users/" + "u" * 100, json={"active": True}, headers=clin)
    assert r.status_code == 403


BODIES: list[tuple[str, str, str, dict[str, Any], str, int]] = [
    # (who, method, path, valid body, field made too long, its limit)
    ("admin", "POST", "/centres", {"code": "CTR-Z", "name": "Centre Z"}, "name", 200),
    ("admin", "POST", "/users", {"username": "z.user", "password": PASSWORD, "role": "clinician",
                                 "centre_code": "CTR-A"}, "centre_code", 32),
    ("admin", "POST", "/users", {"username": "z.user", "password": PASSWORD, "role": "analyst"}, "password", 1024),
    ("admin", "PATCH", "/users/clin.b", {"active": True}, "centre_code", 32),
    ("admin", "PATCH", "/users/clin.b", {"active": True}, "role", 20),
    ("clinician", "POST", "/patients", {"patient": {"birth_year": 2019, "birth_month": 5, "sex": "male",
                                                    "diagnosis": "ipex-like", "gene": "STAT5B",
                                                    "diagnosis_date": "2019-09-01", "consent_date": "2019-09-02",
                                                    "consent_scope": "registry"}}, "patient.ipex_like_id", 64),
    ("clinician", "PATCH", "/patients/{pa}", {"last_followup_date": "2022-01-01"}, "variant_hgvs", 200),
    ("clinician", "POST", "/patients/{pa}/courses", {"start_date": "2020-02-01"}, "drug_id", 64),
    ("clinician", "POST", "/patients/{pa}/manifestations", {"onset_date": "2019-10-01"}, "hpo_code", 10),
    ("clinician", "POST", "/patients/{pa}/adverse-events", {"date": "2020-02-01", "grade": 2}, "term", 100),
    ("clinician", "POST", "/patients/{pa}/courses/1/stop", {"stop_date": "2020-03-01", "reason_stopped": "other"},
     "reason_other", 200),
    ("clinician", "POST", "/patients/{pa}/courses/1/stop", {"stop_date": "2020-03-01"}, "reason_stopped", 20),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "field", "limit"), BODIES,
                         ids=[f"{b[1]} {b[2]} {b[4]}" for b in BODIES])
def test_an_over_long_text_in_any_request_body_is_a_422_naming_the_field_and_limit(
        world: World, client: TestClient, who: str, method: str, path: str, body: dict[str, Any], field: str,
        limit: int) -> None:
    headers = _token(client, {"admin": "admin.user", "clinician": "clinician.user"}[who])
    target = body
    *parents, leaf = field.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = _too_long(limit)
    r = client.request(method, "/api/v1/registry" + path.format(pa=world.pa), json=body, headers=headers)
    assert r.status_code == 422, r.text
    problems = r.json()["detail"]["problems"]
    assert any(p.startswith(f"{field}: expected at most {limit} characters, got {limit + 1}") for p in problems), \
        problems


def test_an_over_long_web_login_username_is_refused_like_any_wrong_login(world: World, client: TestClient) -> None:
    r = client.post("/registry/login", data={"username": "u" * 400, "password": "whatever it is"})
    assert r.status_code == 401

"""Registry web pages through the same kind of glue the service would use: login with a session
cookie, dashboard, patient and follow-up forms, CSRF, centre scoping, validation messages."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ipexrx.registry.web import COOKIE
from ipexrx.service.registry_mount import mount_registry_web

from .conftest import PASSWORD, World


@pytest.fixture
def web(world: World) -> TestClient:
    app = FastAPI()
    mount_registry_web(app, world.reg)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def _login(web: TestClient, user: str = "clinician.user") -> str:
    r = web.post("/registry/login", data={"username": user, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/registry"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/registry" in cookie
    page = web.get("/registry")
    assert page.status_code == 200
    m = re.search(r'name="csrf"\s+value="([0-9a-f]{64})"', page.text)
    assert m, page.text
    return m.group(1)


def test_pages_need_a_session(web: TestClient) -> None:
    r = web.get("/registry")
    assert r.status_code == 303 and r.headers["location"] == "/registry/login"
    assert web.get("/registry/login").status_code == 200
    bad = web.post("/registry/login", data={"username": "clinician.user", "password": "wrong password!"})
    assert bad.status_code == 401 and "wrong password" in bad.text


def test_patient_visit_and_course_forms(world: World, web: TestClient) -> None:
    csrf = _login(web)
    assert world.pa in web.get("/registry").text and world.pb not in web.get("/registry").text
    assert web.get("/registry/patients/new").status_code == 200
    r = web.post("/registry/patients/new", data={
        "csrf": csrf, "birth_year": "2020", "birth_month": "2", "sex": "male", "diagnosis": "ipex", "gene": "FOXP3",
        "variant_hgvs": "c.1150G>A", "ipex_like_id": "", "onset_date": "2020-03-01", "diagnosis_date": "2020-05-01",
        "consent_date": "2020-05-02", "consent_scope": "registry"})
    assert r.status_code == 303, r.text
    page_url = r.headers["location"]
    pseudonym = page_url.rsplit("/", 1)[1]
    assert pseudonym.startswith("CTR-A-")
    r = web.post(page_url + "/visits", data={"csrf": csrf, "date": "2020-08-01", "oi_score": "2", "weight_z": "-1.2",
                                             "organs": ["gut", "skin"], "skin_severity": "mild"})
    assert r.status_code == 303, r.text
    r = web.post(page_url + "/courses", data={"csrf": csrf, "drug_id": "sirolimus", "start_date": "2020-05-10",
                                              "dose": "1", "dose_unit": "mg/m2/day"})
    assert r.status_code == 303, r.text
    page = web.get(page_url).text
    assert "sirolimus" in page and "gut, skin" in page and "2020-08-01" in page


def test_manifestation_adverse_event_and_hsct_forms(world: World, web: TestClient) -> None:
    csrf = _login(web)
    url = f"/registry/patients/{world.pa}"
    page = web.get(url).text
    for legend in ("Add a manifestation episode", "Add an adverse event", "Record an HSCT", "Withdraw consent"):
        assert legend in page
    assert 'value="HP:0002028"' in page  # the HPO choices come from the knowledge base
    r = web.post(url + "/manifestations", data={"csrf": csrf, "hpo_code": "HP:0000964", "onset_date": "2020-06-01"})
    assert r.status_code == 303, r.text
    r = web.post(url + "/adverse-events", data={"csrf": csrf, "date": "2020-07-01", "term": "Hypertension",
                                                "grade": "2", "serious": "true"})
    assert r.status_code == 303, r.text
    r = web.post(url + "/hsct", data={"csrf": csrf, "date": "2021-01-15", "donor": "matched-unrelated",
                                      "conditioning": "reduced-toxicity", "chimerism_donor_pct": "96",
                                      "chimerism_date": "2021-04-15", "acute_gvhd_grade": "1", "chronic_gvhd": "none",
                                      "pre_hsct_oi_score": "3"})
    assert r.status_code == 303, r.text
    rec = world.reg.get_patient(world.actors["clinician"], world.pa)
    assert any(m["hpo_code"] == "HP:0000964" for m in rec["manifestations"])
    (ae,) = rec["adverse_events"]
    assert (ae["term"], ae["grade"], ae["serious"]) == ("Hypertension", 2, True)
    (h,) = rec["hsct"]
    assert (h["donor"], h["chimerism_donor_pct"], h["acute_gvhd_grade"]) == ("matched-unrelated", 96.0, 1)
    page = web.get(url).text
    assert "Hypertension" in page and "matched-unrelated" in page and "96.0%" in page


def test_child_form_errors_are_listed_and_nothing_saved(world: World, web: TestClient) -> None:
    csrf = _login(web)
    url = f"/registry/patients/{world.pa}"
    before = world.reg.get_patient(world.actors["clinician"], world.pa)
    r = web.post(url + "/manifestations", data={"csrf": csrf, "hpo_code": "HP:0000964", "onset_date": "2020-06-01",
                                                "resolution_date": "2020-01-01"})
    assert r.status_code == 422 and "Not saved" in r.text
    r = web.post(url + "/adverse-events", data={"csrf": csrf, "date": "2020-07-01", "term": "Rash", "grade": "7"})
    assert r.status_code == 422 and "grade" in r.text
    r = web.post(url + "/hsct", data={"csrf": csrf, "date": "2021-01-15", "donor": "a neighbour",
                                      "conditioning": "none"})
    assert r.status_code == 422 and "donor" in r.text
    after = world.reg.get_patient(world.actors["clinician"], world.pa)
    for key in ("manifestations", "adverse_events", "hsct"):
        assert after[key] == before[key]


def test_consent_withdrawal_needs_a_date_and_a_confirmation(world: World, web: TestClient) -> None:
    csrf = _login(web)
    url = f"/registry/patients/{world.pa}"
    r = web.post(url + "/withdraw-consent", data={"csrf": csrf, "date": "2024-02-01"})
    assert r.status_code == 422 and "confirm" in r.text
    r = web.post(url + "/withdraw-consent", data={"csrf": csrf, "date": "yesterday", "confirm": "yes"})
    assert r.status_code == 422 and "expected a date" in r.text
    assert world.reg.get_patient(world.actors["clinician"], world.pa)["patient"]["consent_withdrawn_date"] is None
    r = web.post(url + "/withdraw-consent", data={"csrf": csrf, "date": "2024-02-01", "confirm": "yes"})
    assert r.status_code == 303, r.text
    rec = world.reg.get_patient(world.actors["clinician"], world.pa)
    assert str(rec["patient"]["consent_withdrawn_date"]) == "2024-02-01"
    page = web.get(url).text
    assert "Consent withdrawn on 2024-02-01" in page and "Withdraw consent</legend>" not in page


def test_validation_errors_are_listed_and_nothing_saved(world: World, web: TestClient) -> None:
    csrf = _login(web)
    r = web.post(f"/registry/patients/{world.pa}/courses", data={
        "csrf": csrf, "drug_id": "sirolimus", "start_date": "2020-05-10", "stop_date": "2020-04-01",
        "reason_stopped": "toxicity"})
    assert r.status_code == 422
    assert "stop_date 2020-04-01 is before start_date 2020-05-10" in r.text and "Not saved" in r.text
    assert len(world.reg.get_patient(world.actors["clinician"], world.pa)["courses"]) == 1


def test_posts_without_the_session_csrf_token_are_refused(world: World, web: TestClient) -> None:
    _login(web)
    for token in ("", "0" * 64):
        r = web.post(f"/registry/patients/{world.pa}/visits", data={"csrf": token, "date": "2020-08-01"})
        assert r.status_code == 403 and "security token" in r.text
    assert world.reg.get_patient(world.actors["clinician"], world.pa)["visits"] == []


def test_other_centre_patient_page_is_refused(world: World, web: TestClient) -> None:
    _login(web)
    r = web.get(f"/registry/patients/{world.pb}")
    assert r.status_code == 403 and "another centre" in r.text


def test_analyst_has_no_patient_pages_and_logout_ends_the_session(world: World, web: TestClient) -> None:
    r = web.post("/registry/login", data={"username": "analyst.user", "password": PASSWORD})
    assert r.status_code == 303
    page = web.get("/registry")
    assert "no patient pages" in page.text
    assert web.get(f"/registry/patients/{world.pa}").status_code == 403
    csrf = re.search(r'name="csrf"\s+value="([0-9a-f]{64})"', page.text).group(1)  # type: ignore[union-attr]
    session = web.cookies.get(COOKIE)
    r = web.post("/registry/logout", data={"csrf": csrf})
    assert r.status_code == 303
    with pytest.raises(Exception, match="revoked"):
        world.reg.actor_for_token(session or "")

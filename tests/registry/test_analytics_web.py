"""The registry analytics page (/registry/analytics) and its downloads, through the service's glue: a
synthetic cohort (ipexrx.registry.synthetic) read by an analyst (pooled) and a clinician (own centre);
every figure as SVG, PNG and CSV; the CSVs agree with the registry's own rows; bad filters are a 422
naming the field; too few patients read "cannot judge", never an empty plot."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from ipexrx.registry import SYSTEM, Registry, ops
from ipexrx.registry.models import Course, Patient
from ipexrx.registry.web import COMPARISON_SLUGS
from ipexrx.service.registry_mount import mount_registry_web

from .conftest import PASSWORD

AS_OF = "2026-06-30"
FIGURES = ("time-on-therapy", *COMPARISON_SLUGS)


@pytest.fixture(scope="module")
def cohort_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """120 synthetic patients in 3 synthetic centres, one analyst, one clinician of the smallest centre."""
    reg = Registry(f"sqlite:///{tmp_path_factory.mktemp('analytics') / 'registry.sqlite3'}")
    ops.load_demo(reg, SYSTEM, n_patients=120, n_centres=3)
    reg.create_user(SYSTEM, {"username": "pooled.analyst", "password": PASSWORD, "role": "analyst"})
    reg.create_user(SYSTEM, {"username": "small.clinician", "password": PASSWORD, "role": "clinician",
                             "centre_code": "SYN03"})
    reg.create_user(SYSTEM, {"username": "the.admin", "password": PASSWORD, "role": "admin"})
    yield reg
    reg.close()


def _client(reg: Registry, user: str) -> TestClient:
    app = FastAPI()
    mount_registry_web(app, reg)
    c = TestClient(app, base_url="https://testserver", follow_redirects=False)
    assert c.post("/registry/login", data={"username": user, "password": PASSWORD}).status_code == 303
    return c


@pytest.fixture(scope="module")
def analyst(cohort_db: Registry) -> TestClient:
    return _client(cohort_db, "pooled.analyst")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_page_shows_every_figure_with_numbers_at_risk_bands_and_download_links(analyst: TestClient) -> None:
    r = analyst.get(f"/registry/analytics?as_of={AS_OF}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<link rel="stylesheet" href="/static/site.css">' in page  # the site's layout and navigation
    assert 'aria-label="Registry"' in page and '<a href="/registry/analytics" aria-current="page">Analytics</a>' in page
    assert "SYNTHETIC DATA" in page and "all centres (pooled) · 120 patients · 3 centres" in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == len(FIGURES)
    assert page.count("Number at risk (and line of each group)") == len(FIGURES)
    assert page.count('fill-opacity="0.14"') >= len(FIGURES)  # a confidence band per drawn curve
    for slug in FIGURES:
        for ext in ("svg", "png", "csv"):
            assert f'href="/registry/analytics/{slug}.{ext}?as_of={AS_OF}"' in page, (slug, ext)
    assert f'href="/registry/analytics/drugs.csv?as_of={AS_OF}"' in page
    assert "Kaplan-Meier" in page and "Greenwood" in page and "doi:10.21105/joss.01317" not in page  # linked
    assert 'href="https://doi.org/10.21105/joss.01317"' in page and 'id="source-3"' in page
    assert "10.1016/j.jaci.2017.10.041" in page  # Barzaghi 2018, as in the knowledge base's sources


def test_svg_and_png_downloads_are_the_plots_named_by_figure_and_date(analyst: TestClient) -> None:
    svg = analyst.get(f"/registry/analytics/survival-hsct-versus-immunosuppression.svg?as_of={AS_OF}")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.headers["content-disposition"] == (
        f'attachment; filename="ipexrx-registry-survival-hsct-versus-immunosuppression-{AS_OF}.svg"')
    assert svg.text.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and "Number at risk" in svg.text
    assert "<script" not in svg.text and "<style" not in svg.text
    png = analyst.get(f"/registry/analytics/time-on-therapy.png?as_of={AS_OF}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000


def test_drug_csv_counts_match_the_registry_rows(analyst: TestClient, cohort_db: Registry) -> None:
    with cohort_db.read_tx() as s:
        courses = Counter(s.scalars(select(Course.drug_id).join(Patient).where(
            Patient.consent_withdrawn_date.is_(None))))
    r = analyst.get(f"/registry/analytics/drugs.csv?as_of={AS_OF}")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    rows = _rows(r.text)
    assert {row["drug"]: int(row["courses"]) for row in rows} == dict(courses)
    assert {"median_days_on_drug", "on_drug_182_days_percent", "on_drug_365_days_ci95_upper_percent",
            "response_12_months_improved_courses"} <= set(rows[0])
    for row in rows:  # every course is stopped for one reason or still running
        stops = sum(int(v) for k, v in row.items() if k.startswith(("stopped_", "ongoing_at_report")))
        assert stops == int(row["courses"]), row


def test_curve_csv_has_a_time_unit_column_and_starts_every_group_with_its_size(analyst: TestClient,
                                                                                cohort_db: Registry) -> None:
    with cohort_db.read_tx() as s:
        patients = len(list(s.scalars(select(Patient.id).where(Patient.consent_withdrawn_date.is_(None)))))
    r = analyst.get(f"/registry/analytics/survival-hsct-versus-immunosuppression.csv?as_of={AS_OF}")
    assert r.status_code == 200
    head = r.text.splitlines()[0].split(",")
    assert head == ["group", "time_years", "survival_percent", "ci95_lower_percent", "ci95_upper_percent",
                    "number_at_risk", "group_size", "events"]
    rows = _rows(r.text)
    starts = [row for row in rows if float(row["time_years"]) == 0]
    assert {row["group"] for row in starts} == {"HSCT", "Immunosuppression only"}
    assert sum(int(row["number_at_risk"]) for row in starts) == patients  # every patient in one group
    assert all(int(row["number_at_risk"]) == int(row["group_size"]) for row in starts)
    for row in rows:
        assert float(row["ci95_lower_percent"]) <= float(row["survival_percent"]) <= float(row["ci95_upper_percent"])
    days = _rows(analyst.get(f"/registry/analytics/time-on-therapy.csv?as_of={AS_OF}").text)
    assert "time_days" in days[0]
    survival = _rows(analyst.get(f"/registry/analytics/survival.csv?as_of={AS_OF}").text)
    overall = [x for x in survival if x["comparison"].startswith("Overall survival from diagnosis: HSCT")]
    assert sum(int(x["patients"]) for x in overall) == patients


def test_the_same_data_and_report_date_give_the_same_downloads(analyst: TestClient) -> None:
    a = analyst.get(f"/registry/analytics/drugs.csv?as_of={AS_OF}").text
    b = analyst.get(f"/registry/analytics/drugs.csv?as_of={AS_OF}").text
    assert a == b
    assert analyst.get(f"/registry/analytics/disease-free-survival.svg?as_of={AS_OF}").text == \
        analyst.get(f"/registry/analytics/disease-free-survival.svg?as_of={AS_OF}").text


def test_the_drug_filter_limits_the_drug_tables_and_curve(analyst: TestClient) -> None:
    page = analyst.get(f"/registry/analytics?as_of={AS_OF}&drug=sirolimus").text
    assert "Time on therapy: sirolimus" in page
    assert f'href="/registry/analytics/time-on-therapy.png?as_of={AS_OF}&amp;drug=sirolimus"' in page
    rows = _rows(analyst.get(f"/registry/analytics/drugs.csv?as_of={AS_OF}&drug=sirolimus").text)
    assert [row["drug"] for row in rows] == ["sirolimus"]
    curve = _rows(analyst.get(f"/registry/analytics/time-on-therapy.csv?as_of={AS_OF}&drug=sirolimus").text)
    assert {row["group"] for row in curve} == {"sirolimus"}


@pytest.mark.parametrize(("query", "expected"), [
    ("as_of=2026-13-01", "Report date: expected a date YYYY-MM-DD, got '2026-13-01'"),
    ("drug=aspirin", "Drug: expected one of the drugs with courses in the registry"),
])
def test_a_bad_filter_is_a_422_naming_the_field(analyst: TestClient, query: str, expected: str) -> None:
    for path in ("/registry/analytics", "/registry/analytics/drugs.csv"):
        r = analyst.get(f"{path}?{query}")
        assert r.status_code == 422 and expected in r.text.replace("&#39;", "'"), (path, r.text[:2000])


def test_an_unknown_download_is_a_404_listing_the_files(analyst: TestClient) -> None:
    r = analyst.get(f"/registry/analytics/kaplan.gif?as_of={AS_OF}")
    assert r.status_code == 404 and "time-on-therapy.svg" in r.text and "drugs.csv" in r.text


def test_a_small_centre_reads_cannot_judge_instead_of_an_empty_plot(cohort_db: Registry) -> None:
    clin = _client(cohort_db, "small.clinician")
    page = clin.get(f"/registry/analytics?as_of={AS_OF}").text
    n = int(re.search(r"centre SYN03 · (\d+) patients", page).group(1))  # type: ignore[union-attr]
    assert n > 0
    assert "cannot judge" in page.lower()
    landmark = page.split('id="fig-survival-from-hsct"')[1].split("</section>")[0]
    hsct = int(re.search(r"HSCT \(from transplant\)</th><td>(\d+)</td>", landmark).group(1))  # type: ignore[union-attr]
    if hsct < 10:  # too few transplanted patients in this centre: words, not a plot
        assert "<svg" not in landmark and "Cannot judge:" in landmark
    svg = clin.get(f"/registry/analytics/survival-from-hsct.svg?as_of={AS_OF}").text
    assert ("Cannot judge" in svg) == (hsct < 10)


def test_roles_without_analytics_are_refused(cohort_db: Registry) -> None:
    admin = _client(cohort_db, "the.admin")
    assert admin.get("/registry/analytics").status_code == 403
    assert admin.get("/registry/analytics/drugs.csv").status_code == 403
    anonymous = TestClient(admin.app, base_url="https://testserver", follow_redirects=False)
    r = anonymous.get("/registry/analytics/drugs.csv")
    assert r.status_code == 303 and r.headers["location"] == "/registry/login"


def test_follow_up_due_is_listed_for_a_centre_and_never_in_the_pooled_view(cohort_db: Registry,
                                                                            analyst: TestClient) -> None:
    import datetime as dt

    clin = _client(cohort_db, "small.clinician")
    due = ops.analytics_report(cohort_db, cohort_db.authenticate("small.clinician", PASSWORD),
                               dt.date(2027, 6, 30)).followup_due
    assert due  # a year after the synthetic cut-off, every living patient is due
    page = clin.get("/registry/analytics?as_of=2027-06-30").text
    assert f"Yearly follow-up due ({len(due)})" in page
    for pseudonym, last in due:
        assert f'<a href="/registry/patients/{pseudonym}">{pseudonym}</a></td><td>{last}</td>' in page
    assert "Yearly follow-up due" not in analyst.get("/registry/analytics?as_of=2027-06-30").text


def test_an_analyst_narrows_to_one_centre_without_naming_patients(cohort_db: Registry, analyst: TestClient) -> None:
    from ipexrx.registry.models import Centre

    with cohort_db.read_tx() as s:
        centre = s.scalar(select(Centre.id).where(Centre.code == "SYN03"))
        courses = Counter(s.scalars(select(Course.drug_id).join(Patient).where(
            Patient.centre_id == centre, Patient.consent_withdrawn_date.is_(None))))
        patients = len(list(s.scalars(select(Patient.id).where(Patient.centre_id == centre,
                                                               Patient.consent_withdrawn_date.is_(None)))))
    page = analyst.get("/registry/analytics?as_of=2027-06-30&centre=SYN03").text
    assert f"centre SYN03 · {patients} patients · 1 centre " in page
    assert '<option value="SYN03" selected>' in page
    assert "Yearly follow-up due" not in page and "/registry/patients/" not in page
    r = analyst.get("/registry/analytics/drugs.csv?as_of=2027-06-30&centre=SYN03")
    assert r.headers["content-disposition"] == 'attachment; filename="ipexrx-registry-drugs-2027-06-30-SYN03.csv"'
    assert {row["drug"]: int(row["courses"]) for row in _rows(r.text)} == dict(courses)
    unknown = analyst.get("/registry/analytics?centre=XYZ")
    assert unknown.status_code == 404 and "no centre &#39;XYZ&#39; (known: SYN01, SYN02, SYN03)" in unknown.text


def test_a_centre_user_cannot_read_another_centres_analyses(cohort_db: Registry) -> None:
    clin = _client(cohort_db, "small.clinician")
    assert clin.get("/registry/analytics?centre=SYN03").status_code == 200  # their own
    assert 'name="centre"' not in clin.get("/registry/analytics").text  # no centre choice offered
    r = clin.get("/registry/analytics/survival.csv?centre=SYN01")
    assert r.status_code == 403 and "another centre" in r.text


def test_without_matplotlib_the_png_is_a_503_naming_the_extra_and_the_page_still_works(
        cohort_db: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from ipexrx import extras
    from ipexrx.service.errors import missing_extra_handler

    real = importlib.import_module

    def no_matplotlib(name: str, package: str | None = None) -> object:
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(extras.importlib, "import_module", no_matplotlib)
    app = FastAPI()
    app.add_exception_handler(extras.MissingExtraError, missing_extra_handler)  # as the service does
    mount_registry_web(app, cohort_db)
    c = TestClient(app, base_url="https://testserver")
    assert c.post("/registry/login", data={"username": "pooled.analyst", "password": PASSWORD}).status_code == 200
    r = c.get(f"/registry/analytics/time-on-therapy.png?as_of={AS_OF}")
    assert r.status_code == 503 and "analytics" in r.text and "pip install" in r.text
    assert c.get(f"/registry/analytics?as_of={AS_OF}").status_code == 200  # the SVG plots need no matplotlib
    assert c.get(f"/registry/analytics/time-on-therapy.svg?as_of={AS_OF}").status_code == 200


def test_a_diagnosis_period_keeps_only_the_patients_diagnosed_in_it(analyst: TestClient, cohort_db: Registry) -> None:
    import datetime as dt

    lo, hi = dt.date(2012, 1, 1), dt.date(2019, 12, 31)
    with cohort_db.read_tx() as s:
        inside = list(s.scalars(select(Patient.id).where(Patient.consent_withdrawn_date.is_(None),
                                                         Patient.diagnosis_date >= lo, Patient.diagnosis_date <= hi)))
        courses = Counter(s.scalars(select(Course.drug_id).where(Course.patient_id.in_(inside))))
    assert 0 < len(inside) < 120
    q = f"as_of={AS_OF}&diagnosed_from={lo}&diagnosed_to={hi}"
    page = analyst.get(f"/registry/analytics?{q}").text
    assert f"all centres (pooled), diagnosed from {lo} to {hi} · {len(inside)} patients" in page
    assert f'name="diagnosed_from" value="{lo}"' in page
    r = analyst.get(f"/registry/analytics/drugs.csv?{q}")
    assert {row["drug"]: int(row["courses"]) for row in _rows(r.text)} == dict(courses)
    assert f"-diagnosed-{lo}-to-{hi}.csv" in r.headers["content-disposition"]
    curve = _rows(analyst.get(f"/registry/analytics/survival-hsct-versus-immunosuppression.csv?{q}").text)
    assert sum(int(x["number_at_risk"]) for x in curve if float(x["time_years"]) == 0) == len(inside)
    only_from = analyst.get(f"/registry/analytics?as_of={AS_OF}&diagnosed_from={lo}").text
    assert f"diagnosed from {lo} onwards" in only_from


def test_a_diagnosis_period_ending_before_it_starts_is_a_422(analyst: TestClient) -> None:
    r = analyst.get("/registry/analytics?diagnosed_from=2020-01-01&diagnosed_to=2019-01-01")
    assert r.status_code == 422
    assert "Diagnosed from: expected a date on or before &#39;Diagnosed to&#39; (2019-01-01), got 2020-01-01" in r.text
    r = analyst.get("/registry/analytics/drugs.csv?diagnosed_to=2019-02-30")
    assert r.status_code == 422 and "Diagnosed to: expected a date YYYY-MM-DD, got &#39;2019-02-30&#39;" in r.text


def test_the_library_refuses_a_backwards_diagnosis_period(cohort_db: Registry) -> None:
    import datetime as dt

    from ipexrx.registry.errors import ValidationFailed

    actor = cohort_db.authenticate("pooled.analyst", PASSWORD)
    with pytest.raises(ValidationFailed, match="expected the first date on or before the second"):
        ops.analytics_report(cohort_db, actor, None, None, (dt.date(2020, 1, 1), dt.date(2019, 1, 1)))

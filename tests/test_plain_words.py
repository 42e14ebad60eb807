"""Plain clinical wording in every face: no internal ids or editor jargon in what a user reads.

Runs the README tour and the examples through the CLI (text output, with ``--as-of``), and renders every
web page that needs no login (the reference, the rules list, the assessment of every example patient, the
dosing form and a dosing suggestion, the registry sign-in), then greps the user-facing text for:

* internal rule ids (every key of :data:`ipexrx.assess.rules.RULES`, and any ``family.rule_name`` of a
  rule family), JSON paths such as ``$.medications[0]``, knowledge-base statement ids, raw status values
  (``not-done``);
* the words "this session", "the page", "this page", "KB" and "transcription" (the last except in
  "transcription factor", which is what FOXP3 is);
* outside the dosing tools (where a model is chosen by its id and a covariate typed by its code): dosing model
  ids (``chen2022-tacrolimus``) and model covariate codes (``DONOR_DECEASED``, ``POSACONAZOLE``).

Also every CDS card made from the packaged sample requests (and from variants that cannot be checked) and from
every assessment case in tests/cases: summary, detail (Markdown link targets are not shown), labels, action
descriptions.

HTML is reduced to what a reader sees: tags, scripts, styles, SVG plots and the ``<details>`` / JSON views kept
for editors are removed; titles, alt texts, labels and placeholders are kept.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
AS_OF = "2026-11-25"  # the examples' dates are set relative to this day (examples/README.md)
PATIENTS = sorted(p.name for p in EX.glob("*.json"))

# Statement-like knowledge-base records: their ids are for editors. (Drug, class, manifestation, vaccine and
# mechanism ids double as names and may be shown.)
_ID_KINDS = {"Statement", "Finding", "EvidenceRecord", "TherapyOption", "Interaction", "Monitoring", "Screening",
             "DoseRange", "ResultThreshold", "VictimRule", "LabThreshold", "TopicalLimit"}
_NAME_KINDS = {"Drug", "DrugClass", "Manifestation", "Vaccine", "Mechanism", "Disease", "IpexLikeDisorder",
               "Product", "Formulation"}


@cache
def _statement_ids() -> frozenset[str]:
    from pydantic import BaseModel

    from ipexrx.knowledge import load_kb

    kb = load_kb()
    found: dict[str, set[str]] = {}

    def walk(o: Any) -> None:
        if isinstance(o, BaseModel):
            for k, v in o:
                if k == "id" and isinstance(v, str):
                    found.setdefault(type(o).__name__, set()).add(v)
                walk(v)
        elif isinstance(o, list | tuple):
            for x in o:
                walk(x)
        elif isinstance(o, dict):
            for x in o.values():
                walk(x)

    for part in ("classes", "disease", "drugs", "evidence", "interactions", "ipex_like", "manifestations",
                 "mechanisms", "thresholds", "vaccines"):
        walk(getattr(kb, part))
    names = set().union(*(found.get(k, set()) for k in _NAME_KINDS))
    ids = set().union(*(found.get(k, set()) for k in _ID_KINDS))
    return frozenset(i for i in ids - names if "-" in i)  # one-word ids are ordinary words


@cache
def _rule_patterns() -> tuple[re.Pattern[str], ...]:
    from ipexrx.assess.rules import RULES

    families = sorted({k.split(".")[0] for k in RULES})
    return (re.compile("|".join(re.escape(k) for k in sorted(RULES, key=len, reverse=True))),
            re.compile(r"(?<![\w/.])(?:" + "|".join(families) + r")\.[a-z][a-z0-9]*_[a-z0-9_]*\b"))


BANNED = [
    ("JSON path", re.compile(r"\$(?:\.[A-Za-z_]|\[)")),
    ("'this session'", re.compile(r"\bthis session\b", re.I)),
    ("'the page'", re.compile(r"\bthe page\b", re.I)),
    ("'this page'", re.compile(r"\bthis page\b", re.I)),
    ("raw status value", re.compile(r"(?<![\w'\"-])not-done\b")),
    ("'KB'", re.compile(r"\bKB\b")),
    ("'transcription'", re.compile(r"transcription(?! factor| of early cytokines)", re.I)),
]
_TOKEN = re.compile(r"(?<![\w/.-])[a-z0-9]+(?:-[a-z0-9]+)+(?![\w/-])")


@cache
def _dosing_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Dosing model ids (any ``name2022-drug`` of a modelled drug) and the models' covariate codes that are not
    ordinary abbreviations (an underscore, or a co-medication's name in capitals)."""
    from ipexrx.dosing.model import all_models

    models = [m for m in all_models() if m.spec.kind == "clinical"]
    drugs = sorted({m.spec.drug for m in models})
    codes = sorted({n for m in models for n, cv in m.spec.covariates.items() if "_" in n or cv.comedication})
    return (("dosing model id", re.compile(r"\b[a-z]+\d{4}[a-z]?-(?:" + "|".join(drugs) + r")\b")),
            ("covariate code", re.compile(r"\b(?:" + "|".join(codes) + r")\b")))


def problems(text: str, dosing_ids: bool = False) -> list[str]:
    """Every internal id or banned word in ``text``, each with a little context. ``dosing_ids``: dosing model ids
    and covariate codes are allowed (the dosing tools, where they are what a user types)."""
    out: list[str] = []

    def ctx(m: re.Match[str]) -> str:
        return " ".join(text[max(0, m.start() - 50): m.end() + 50].split())

    exact, family = _rule_patterns()
    for label, rx in [("rule id", exact), ("rule id pattern", family), *BANNED,
                      *(() if dosing_ids else _dosing_patterns())]:
        out += [f"{label} {m.group(0)!r}: ...{ctx(m)}..." for m in rx.finditer(text)]
    ids = _statement_ids()
    out += [f"statement id {m.group(0)!r}: ...{ctx(m)}..." for m in _TOKEN.finditer(text) if m.group(0) in ids]
    return out


_ATTR = re.compile(r"""\b(?:title|alt|aria-label|placeholder)\s*=\s*("([^"]*)"|'([^']*)')""", re.I)


def visible_text(page: str) -> str:
    """What a reader sees: no scripts, styles, SVG, editors' <details> or JSON views; attribute texts kept."""
    page = re.sub(r"<(script|style|svg|template)\b.*?</\1\s*>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<details\b.*?</details\s*>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<(pre|code|div|section)\b[^>]*\bclass=\"[^\"]*\bjson\b[^\"]*\"[^>]*>.*?</\1\s*>", " ", page,
                  flags=re.S | re.I)
    attrs = " ".join(m.group(2) or m.group(3) or "" for m in _ATTR.finditer(page))
    text = re.sub(r"<[^>]+>", " ", page) + " " + attrs
    return " ".join(html_lib.unescape(text).split())


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------

DOSE = ["--drug", "sirolimus", "--level", "17.5", "--level-unit", "ng/mL", "--dose", "1.5", "--interval", "24",
        "--cov", "WT=21.5"]


def _cli_cases() -> Iterator[Any]:
    for name in PATIENTS:
        yield pytest.param(["assess", f"examples/{name}", "--as-of", AS_OF], id=f"assess-{name}")
    yield pytest.param(["assess", "--batch", "examples/batch.ndjson", "-o", "{tmp}/results.ndjson", "--as-of",
                        AS_OF], id="assess-batch")
    yield pytest.param(["assess", "examples/busy-chart.json", "--as-of", AS_OF, "--html", "-o", "{tmp}/a.html"],
                       id="assess-html")
    yield pytest.param(["dose", "models"], id="dose-models")
    yield pytest.param(["dose", "models", "--reference"], id="dose-models-reference")
    yield pytest.param(["dose", "recommend", *DOSE], id="dose-recommend")
    yield pytest.param(["dose", "report", *DOSE, "--as-of", AS_OF, "--out", "{tmp}/tdm.html"], id="dose-report")
    yield pytest.param(["registry", "demo", "--patients", "40", "--centres", "3", "--db",
                        "sqlite:///{tmp}/reg.sqlite3", "--report-dir", "{tmp}/report"], id="registry-demo")
    for name in sorted(n for n in BAD_INPUTS if n.endswith(".json")):  # input errors name file, line and field
        yield pytest.param(["assess", f"{{bad}}/{name}", "--as-of", AS_OF], id=f"assess-bad-{name}")
    yield pytest.param(["assess", "--batch", "{bad}/batch.ndjson", "-o", "{tmp}/bad-results.ndjson", "--as-of",
                        AS_OF], id="assess-bad-batch")
    yield pytest.param(["dose", "fit", "--model", "nonmem-001", "--data", "{bad}/levels.csv"], id="dose-bad-csv")
    for args in (["summary"], ["manifestation", "diarrhea"], ["manifestation", "HP:0100651"], ["drug", "Neoral"],
                 ["drug", "sirolimus"], ["drug", "trimethoprim-sulfamethoxazole"], ["class", "calcineurin"],
                 ["class", "immunosuppressants"], ["search", "FKBP12"], ["search", "sirolimis"], ["sources"],
                 ["drug", "sirolimis"]):
        yield pytest.param(args, id="-".join(args))


def _bad_bundle() -> str:
    bundle = json.loads((EX / "sirolimus-azole.fhir.json").read_text(encoding="utf-8"))
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "MedicationStatement":
            r["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = -2
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "29463-7":
            r["valueQuantity"]["value"] = 400
    return json.dumps(bundle, indent=2)


BAD_INPUTS: dict[str, Any] = {
    "missing-and-unknown.json": '{"patient": {"sex": "male"}}',
    "values.json": '{\n "diagnosis": {"type": "ipex"},\n "demographics": {"weight_kg": "heavy"},\n'
                   ' "medications": [{"drug": "tacrolimus", "dose": {"value": -1, "unit": "mg"}}],\n'
                   ' "hsct": {"status": "soon"}\n}\n',
    "unit.json": '{"diagnosis": {"type": "ipex"},\n "medications": [{"drug": "tacrolimus", "dose": "1 furlong"}]}',
    "broken.json": '{\n "diagnosis": {"type": "ipex"}\n "labs": []\n}',
    "not-an-object.json": "[1, 2]",
    "bundle.fhir.json": _bad_bundle,
    "batch.ndjson": lambda: "\n".join([
        json.dumps(json.loads((EX / "post-hsct.json").read_text(encoding="utf-8"))), '{"patient": {}}', "{broken",
        json.dumps(json.loads(_bad_bundle()))]) + "\n",
    "levels.csv": "ID,TIME,AMT,DV,EVID,MDV,CMT\n1,0,5,.,1,1,1\n1,12,.,abc,0,0,2\n",
}


def write_bad_inputs(directory: Path) -> Path:
    """The bad inputs above, as files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in BAD_INPUTS.items():
        (directory / name).write_text(text() if callable(text) else text, encoding="utf-8")
    return directory


@pytest.mark.parametrize("args", list(_cli_cases()))
def test_cli_output_has_no_internal_ids_or_banned_words(args: list[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.cli import get_app

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping: a phrase is never split by a table border
    bad = write_bad_inputs(tmp_path / "bad")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{bad}", str(bad)) for a in args]
    res = CliRunner().invoke(get_app(), args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 1), res.output
    text = res.output
    for f in sorted(tmp_path.rglob("*.html")):  # reports written to files are read too
        text += "\n" + visible_text(f.read_text(encoding="utf-8"))
    if any(a.endswith("results.ndjson") for a in args):
        assert any(p.stat().st_size > 0 for p in tmp_path.glob("*results.ndjson"))
    if any(str(bad) in a for a in args):  # an input error: said with the file, a line and the place in words
        assert res.exit_code == 1 or "lines with errors" in res.output, res.output
        assert str(bad) in res.output and re.search(r", line \d+", res.output), res.output
    found = problems(text, dosing_ids=args[0] == "dose")  # the dosing tools take model ids and covariate codes
    assert not found, "\n".join(found)


def test_screen_worklists_and_report_have_no_internal_ids_or_banned_words(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/screen.md's use: a synthetic population, screened, with the printable report."""
    from ipexrx.cli import get_app

    monkeypatch.setenv("COLUMNS", "400")
    pop, out = tmp_path / "pop", tmp_path / "worklists"
    made = CliRunner().invoke(get_app(), ["screen", "synth", str(pop), "--patients", "200", "--seed", "1",
                                          "--as-of", "2026-06-30"])
    assert made.exit_code == 0, made.output
    res = CliRunner().invoke(get_app(), ["screen", "run", str(pop), "--as-of", "2026-06-30", "--no-progress",
                                         "--out", str(out)])
    assert res.exit_code == 0, res.output
    found = problems(res.output + "\n" + visible_text((out / "report.html").read_text(encoding="utf-8")))
    assert not found, "\n".join(found)


# ------------------------------------------------------------------------------------------------
# the web pages
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from ipexrx.service import Settings, create_app

    d = tmp_path_factory.mktemp("plain-words")
    settings = Settings(database_url=f"sqlite:///{d / 'ipexrx.sqlite3'}", replay_dir=d / "seen")
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        yield c


def _index(kind: str) -> list[str]:
    from ipexrx.knowledge import load_kb

    kb = load_kb()
    items = getattr(kb, kind)
    return sorted(items if isinstance(items, dict) else (x.id for x in items))


def _web_pages() -> Iterator[Any]:
    for path in ("/", "/manifestations", "/drugs", "/classes", "/sources", "/rules", "/search?q=FKBP12",
                 "/search?q=sirolimis", "/assess", "/dosing", "/screen",
                 "/registry/login"):
        yield pytest.param(path, id=path)


def test_every_public_get_page_is_in_this_test(web: Any) -> None:
    """A new page without login must be added here, so that its wording is checked too."""
    from fastapi.routing import APIRoute

    covered = {p.values[0].split("?")[0] for p in _web_pages()} | {"/manifestations/{name}", "/drugs/{name}",
                                                                    "/classes/{name}", "/interactions/{iid}"}
    public = {r.path for r in web.app.routes if isinstance(r, APIRoute) and "GET" in (r.methods or set())
              and not r.include_in_schema and not r.path.startswith(("/docs", "/smart", "/cds-services", "/api/"))
              and not (r.path.startswith("/registry") and r.path != "/registry/login")}
    assert public <= covered, f"pages not checked for plain wording: {sorted(public - covered)}"


@pytest.mark.parametrize("path", list(_web_pages()))
def test_web_page_has_no_internal_ids_or_banned_words(web: Any, path: str) -> None:
    r = web.get(path)
    assert r.status_code == 200, path
    found = problems(visible_text(r.text), dosing_ids=path == "/dosing")  # the dosing form asks for covariates
    assert not found, "\n".join(found)


@pytest.mark.parametrize("kind,prefix", [("manifestations", "/manifestations/"), ("drugs", "/drugs/"),
                                         ("classes", "/classes/")])
def test_every_reference_page_has_no_internal_ids_or_banned_words(web: Any, kind: str, prefix: str) -> None:
    bad: list[str] = []
    for ident in _index(kind):
        r = web.get(prefix + ident)
        assert r.status_code == 200, prefix + ident
        bad += [f"{prefix}{ident}: {p}" for p in problems(visible_text(r.text))]
    assert not bad, "\n".join(bad)


def test_interaction_pages_have_no_internal_ids_or_banned_words(web: Any) -> None:

    bad: list[str] = []
    for iid in _index("interactions"):
        r = web.get(f"/interactions/{iid}")
        assert r.status_code == 200, iid
        bad += [f"/interactions/{iid}: {p}" for p in problems(visible_text(r.text))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", PATIENTS)
def test_assessment_page_of_each_example_has_no_internal_ids_or_banned_words(web: Any, name: str) -> None:
    text = (EX / name).read_text(encoding="utf-8")
    r = web.post("/assess", data={"patient": text, "as_of": AS_OF, "ipex_plan": "auto"})
    assert r.status_code == 200, r.text[:500]
    found = problems(visible_text(r.text))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", sorted(n for n in BAD_INPUTS if n.endswith(".json")))
def test_assessment_page_of_a_bad_input_names_the_place_without_internal_ids(web: Any, name: str) -> None:
    text = BAD_INPUTS[name]
    text = text() if callable(text) else text
    r = web.post("/assess", data={"patient": text, "as_of": AS_OF, "ipex_plan": "auto"})
    assert r.status_code == 422, r.text[:500]
    seen = visible_text(r.text)
    assert re.search(r"\bline \d+", seen), seen[:2000]
    found = problems(seen)
    assert not found, "\n".join(found)


DOSING_FORM = {"model": "andrews2018-tacrolimus", "cov_WT": "20", "cov_DONOR_DECEASED": "1", "cov_EGFR": "80",
               "cov_HCT": "0.35", "dose_mg": "2", "interval_h": "12", "level_value": ["5", ""],
               "level_unit": ["ng/mL", "ng/mL"], "level_hours": ["", ""], "metric": "trough", "target_low": "7",
               "target_high": "12", "target_for": "trough", "form": "0"}


@pytest.mark.parametrize("path", ["/dosing", "/dosing/report"])
def test_dosing_suggestion_page_and_its_printable_report_have_no_internal_ids_or_banned_words(
        web: Any, path: str) -> None:
    r = web.post(path, data=DOSING_FORM, files={"file": ("", b"", "application/octet-stream")})
    assert r.status_code == 200, r.text[:500]
    found = problems(visible_text(r.text), dosing_ids=True)  # the dosing tools name a model by its id
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", PATIENTS)
def test_printable_assessment_of_each_example_has_no_internal_ids_or_banned_words(web: Any, name: str) -> None:
    """The printout (/assess/report, the page ``ipexrx assess --html`` writes): its details for editors are
    dropped from what a reader sees, everything else is scanned."""
    text = (EX / name).read_text(encoding="utf-8")
    r = web.post("/assess/report", data={"patient": text, "as_of": AS_OF, "ipex_plan": "auto"})
    assert r.status_code == 200, r.text[:500]
    seen = visible_text(r.text)
    assert "Sources" in seen
    found = problems(seen)
    assert not found, "\n".join(found)


def _command_paths() -> list[list[str]]:
    """Every command and command group of the CLI, as the argument lists that reach it."""
    import typer

    from ipexrx.cli import get_app

    root = typer.main.get_command(get_app())
    out: list[list[str]] = [[]]

    def walk(cmd: Any, path: list[str]) -> None:
        if isinstance(getattr(cmd, "commands", None), dict):  # a group (typer's own copy of click)
            for name, sub in sorted(cmd.commands.items()):
                out.append([*path, name])
                walk(sub, [*path, name])

    walk(root, [])
    return out


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "ipexrx")
def test_every_commands_help_has_no_internal_ids_or_banned_words(path: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.cli import get_app

    monkeypatch.setenv("COLUMNS", "400")
    res = CliRunner().invoke(get_app(), [*path, "--help"])
    assert res.exit_code == 0, res.output
    found = problems(res.output, dosing_ids=bool(path) and path[0] == "dose")
    assert not found, "\n".join(found)


def test_registry_pages_after_sign_in_have_no_internal_ids_or_banned_words(tmp_path: Path) -> None:
    """The registry's pages behind its sign-in (synthetic cohort): patients, a whole record with its forms,
    a refused form, a refused page, and the analytics page, for a clinician and an analyst."""
    from fastapi.testclient import TestClient

    from ipexrx.registry import SYSTEM, ops
    from ipexrx.service import Settings, create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'reg.sqlite3'}", replay_dir=tmp_path / "seen"))
    reg = app.state.registry
    ops.load_demo(reg, SYSTEM, n_patients=60, n_centres=2)
    password = "a long plain-words password 1"
    reg.create_user(SYSTEM, {"username": "plain.clinician", "password": password, "role": "clinician",
                             "centre_code": "SYN01"})
    reg.create_user(SYSTEM, {"username": "plain.analyst", "password": password, "role": "analyst"})
    pseudonym = reg.list_patients(reg.authenticate("plain.clinician", password))[0]["pseudonym"]
    texts: list[tuple[str, str]] = []
    for user, paths in (("plain.clinician", ["/registry", "/registry/patients/new", f"/registry/patients/{pseudonym}",
                                             "/registry/patients/SYN02-ZZZZZZ", "/registry/analytics?as_of=" + AS_OF,
                                             "/registry/analytics?as_of=2026-02-30"]),
                        ("plain.analyst", ["/registry", "/registry/analytics?as_of=" + AS_OF])):
        with TestClient(app, base_url="https://testserver") as c:
            assert c.post("/registry/login", data={"username": user, "password": password}).status_code == 200
            for path in paths:
                r = c.get(path)
                assert r.status_code < 500 and r.headers["content-type"].startswith("text/html"), path
                texts.append((f"{user} {path}", r.text))
            page = c.get("/registry").text
            csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
            if csrf and user == "plain.clinician":
                r = c.post("/registry/patients/new", data={"csrf": csrf.group(1), "birth_year": "2020",
                                                           "birth_month": "13"})
                assert r.status_code == 422
                texts.append((f"{user} refused form", r.text))
    bad = [f"{where}: {p}" for where, text in texts for p in problems(visible_text(text))]
    assert not bad, "\n".join(bad)


def test_the_scanner_finds_what_it_is_meant_to_find() -> None:
    """The grep itself: each kind of leak is caught, and clinical prose is not."""
    from ipexrx.assess.rules import RULES

    rule = next(iter(RULES))
    sid = sorted(_statement_ids())[0]
    page = (f"<p>Alert ({rule}) at $.medications[0]; see {sid}. In this session the page shows KB v1 "
            f"transcription. Doses on this page. Status: not-done. chen2022-tacrolimus needs POSACONAZOLE and "
            f"DONOR_DECEASED.</p><details><summary>For editors</summary>{rule}</details>")
    found = problems(visible_text(page))
    for label in ("rule id '", "JSON path", "statement id", "'this session'", "'the page'", "'this page'", "'KB'",
                  "'transcription'", "raw status value", "dosing model id", "covariate code"):
        assert any(f.startswith(label) for f in found), (label, found)
    assert len([f for f in found if f.startswith("rule id '")]) == 1  # the one inside <details> is not counted
    assert len([f for f in found if f.startswith("covariate code")]) == 2
    assert not problems("FOXP3 is a transcription factor; trough 5 ng/mL; a 2 kB file; on the pages of the label; "
                        "not transplanted; the Chen 2022 tacrolimus model; HCT and eGFR; a well-done plan")
    assert not [f for f in problems("ipexrx dose recommend --model chen2022-tacrolimus --cov POSACONAZOLE=1",
                                    dosing_ids=True) if not f.startswith("rule id")]


# ------------------------------------------------------------------------------------------------
# CDS cards
# ------------------------------------------------------------------------------------------------

CDS_BASE = "https://ipexrx.example.org"
_MD_LINK_TARGET = re.compile(r"\]\((?:[^()\s]|\([^()\s]*\))*\)")


def card_text(card: dict[str, Any]) -> str:
    """What an EHR shows of a card: summary, detail (Markdown, without link targets), the source's label and
    topic, suggestion labels and action descriptions, link labels, override reasons."""
    source = card["source"]
    parts = [card["summary"], card.get("detail") or "", source["label"], (source.get("topic") or {}).get("display", "")]
    for s in card.get("suggestions") or []:
        parts += [s["label"], *(a.get("description", "") for a in s.get("actions") or [])]
    parts += [link["label"] for link in card.get("links") or []]
    parts += [o.get("display", "") for o in card.get("overrideReasons") or []]
    return _MD_LINK_TARGET.sub("]", "\n".join(parts))


def _sample_requests() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, hook, body): each packaged sample (a fresh copy each time), and variants that give the cards for what
    cannot be checked: a record with an impossible value, an unreadable draft order, an unusable Patient, a lab result
    in the wrong unit."""
    from ipexrx.service.cds import samples

    for hook in ("patient-view", "order-select", "order-sign"):
        yield hook, hook, samples.load(hook.replace("-", "_"))
    body = samples.load("order_sign")
    body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]["doseQuantity"]["value"] = -50
    yield "order-sign, negative draft dose", "order-sign", body
    body = samples.load("order_sign")
    body["context"]["draftOrders"]["entry"][0]["resource"].pop("medicationCodeableConcept", None)
    yield "order-sign, unreadable draft order", "order-sign", body
    body = samples.load("patient_view")
    body["prefetch"]["patient"]["birthDate"] = "not-a-date"
    yield "patient-view, unusable Patient", "patient-view", body
    body = samples.load("patient_view")
    body["prefetch"]["observations"]["entry"][0]["resource"]["valueQuantity"] = {
        "value": 8, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"}  # a trough in the wrong unit
    yield "patient-view, implausible tacrolimus trough", "patient-view", body


def test_cds_cards_of_the_samples_have_no_internal_ids_or_banned_words() -> None:
    import datetime as dt

    from ipexrx.service.cds.engine import SERVICES, evaluate
    from ipexrx.service.cds.models import CdsRequest

    bad: list[str] = []
    seen = 0
    for name, hook, body in _sample_requests():
        svc = next(s for s in SERVICES.values() if s.hook == hook)
        req = CdsRequest.model_validate(body)
        cards = [c for c, _ in evaluate(svc, req, dict(req.prefetch or {}), CDS_BASE, dt.date.fromisoformat(AS_OF))]
        assert cards, name
        seen += len(cards)
        bad += [f"{name}: {c['summary']!r}: {p}" for c in cards for p in problems(card_text(c))]
    assert seen >= 8
    assert not bad, "\n".join(bad)


def test_cds_cards_of_every_assessment_case_have_no_internal_ids_or_banned_words() -> None:
    """Each alert of each case in tests/cases/assess (IPEX or not, JSON or FHIR) dressed as the card the CDS
    service would send for it (the assessment's alerts, with model-based dose suggestions: every text)."""
    import datetime as dt
    import json

    from ipexrx.assess import assess
    from ipexrx.knowledge import load_kb
    from ipexrx.service.cds.cards import alert_card

    names = {d.id: d.name for d in load_kb().drugs.values()}
    bad: list[str] = []
    cards = 0
    for path in sorted((ROOT / "tests" / "cases" / "assess").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        a = assess(case["patient"], as_of=dt.date.fromisoformat(case.get("as_of", AS_OF)),
                   ipex_plan=case.get("ipex_plan", "auto"))
        for alert in a.alerts:
            card = alert_card(alert, hook_instance="plain-words", base=CDS_BASE, drug_names=names, mode=a.mode).wire()
            cards += 1
            bad += [f"{path.name}: {card['summary']!r}: {p}" for p in problems(card_text(card))]
    assert cards > 100
    assert not bad, "\n".join(bad)

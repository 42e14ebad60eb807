"""``ipexrx dose ...``: population-PK models, MAP fits and dose suggestions in the terminal.

Thin face over :mod:`ipexrx.dosing` (imported inside the commands, so the CLI starts fast). Bad input
(unknown model, covariate out of a refused range, unsorted times, wrong units...) prints ``error: ...``
and exits 1, without a traceback.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer

from . import app

dose_app = typer.Typer(help="Model-informed dosing: model library, MAP-Bayesian fits, dose suggestions.",
                       no_args_is_help=True)
app.add_typer(dose_app, name="dose")


def _guard(fn: Callable[[], Any], as_json: bool = False) -> Any:
    """Run a command; a DosingError is one line on stderr and exit 1 (with ``as_json`` also the error as JSON on
    stdout: kind and message)."""
    from ..dosing.errors import DosingError

    try:
        return fn()
    except DosingError as exc:
        typer.echo(f"error: {exc}", err=True)
        if as_json:
            from .errors import echo_json_error

            echo_json_error(exc)
        raise typer.Exit(1) from None


def _parse_covs(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in items:
        if "=" not in it:
            typer.echo(f"error: --cov expects NAME=VALUE (in the model's unit), got {it!r}", err=True)
            raise typer.Exit(1)
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            typer.echo(f"error: --cov {k}: expected a number, got {v!r}", err=True)
            raise typer.Exit(1) from None
    return out


@dose_app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the library as JSON."),
    reference: bool = typer.Option(False, "--reference", help="List the fictional teaching/validation models "
                                   "(mapbayr-*, nonmem-*) instead; they are never used for a patient."),
) -> None:
    """The clinical model library: drug, population, citation, covariates with units and ranges, what was
    verified. Teaching models are listed only with --reference."""
    from ..dosing.engine import covariate_range_text
    from ..dosing.model import all_models

    want = "reference" if reference else "clinical"
    models = [m for m in _guard(all_models, as_json) if m.spec.kind == want]
    if as_json:
        out = []
        for m in models:
            s = m.spec
            out.append({
                "id": s.id, "title": s.title, "drug": s.drug, "kind": s.kind, "citation": s.citation.model_dump(),
                "verification": s.verification, "population": s.population.model_dump(),
                "covariates": {k: v.model_dump() for k, v in s.covariates.items()},
                "etas": m.eta_names, "omega": m.omega.tolist(),
                "targets": [t.model_dump() for t in s.targets], "caveats": s.caveats,
            })
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="ipexrx dosing models" + (" - fictional teaching/validation models, never for a patient"
                                               if reference else " (clinical)"), show_lines=True)
    for col in ("id", "drug / population", "citation", "covariates"):
        t.add_column(col)
    for m in models:
        s = m.spec
        cite = s.citation.text.split(".")[0] + (f"\ndoi:{s.citation.doi}" if s.citation.doi else "")
        pop = f"{s.drug} ({s.kind})\n{s.population.description}"
        t.add_row(s.id, pop, cite, "\n".join(covariate_range_text(m)) or "-")
    Console().print(t)


def _read(model_name: str, data: Path, subject_id: str | None, fhir: bool = False,
          covs: dict[str, float] | None = None, dv_unit: str | None = None) -> tuple[Any, list[Any]]:
    from ..dosing.data import read_nmtran
    from ..dosing.errors import DataError
    from ..dosing.model import get_model

    m = get_model(model_name)
    if fhir:
        from ..dosing.fhir_input import subject_from_fhir
        from ..textio import TextEncodingError, read_text_file

        try:
            text = read_text_file(data, legacy=False).text  # JSON is UTF-8 (a byte-order mark is allowed)
        except OSError as exc:
            raise DataError(f"cannot read {data}: {exc.strerror}") from None
        except TextEncodingError as exc:
            raise DataError(str(exc)) from None
        try:
            return m, [subject_from_fhir(text, m, subject_id or data.stem, covariates=covs)]
        except DataError as exc:  # 'levels.json: line 40, entry 4 (Observation, id "o1"), ...'
            raise DataError(f"{data}: {exc}") from None
    subjects = read_nmtran(data, m.covariate_names())
    if subject_id is not None:
        subjects = [s for s in subjects if s.id == subject_id]
        if not subjects:
            from ..dosing.errors import DataError

            raise DataError(f"subject {subject_id!r} not in {data}")
    if dv_unit is not None:  # NM-TRAN DV/LLOQ in another unit: converted to the model's (FHIR carries its own)
        from ..dosing.units import convert_subject

        subjects = [convert_subject(s, dv_unit, m) for s in subjects]
    return m, subjects


@dose_app.command("fit")
def fit_cmd(
    model: str = typer.Option(..., "--model", help="Model id (see `ipexrx dose models`) or path to a model YAML."),
    data: Path = typer.Option(..., "--data", help="NM-TRAN style CSV (ID,TIME,EVID,AMT,CMT,...,DV), or a FHIR Bundle "
                              "with --fhir."),
    fhir: bool = typer.Option(False, "--fhir", help="--data is a FHIR R4 Bundle (doses and LOINC-coded levels)."),
    cov: list[str] = typer.Option([], "--cov", help="Covariate NAME=VALUE for --fhir input (model's unit)."),
    subject_id: str | None = typer.Option(None, "--id", help="Fit only this subject."),
    dv_unit: str | None = typer.Option(None, "--dv-unit", help="Unit of DV/LLOQ in the CSV (default: the model's); "
                                       "ng/mL = ug/L = mcg/L in any case, mg/L, nmol/L (molar mass)."),
    starts: int | None = typer.Option(None, "--starts", min=1, help="Optimiser starts per subject (ETA=0 + prior "
                                      "draws; default 3, or 1 plus structured restarts for lag models)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
    png: Path | None = typer.Option(None, "--plot", help="Write a PNG plot (one subject: use --id)."),
    html_out: Path | None = typer.Option(None, "--html", help="Write an HTML plot (one subject: use --id)."),
) -> None:
    """MAP-Bayesian fit per subject: ETAs, objective (mapbayr OFV and NONMEM OBJ), individual parameters."""

    def run() -> None:
        from ..dosing.checks import check_inputs, require_ok
        from ..dosing.estimate import fit

        covs = _parse_covs(cov)
        m, subjects = _read(model, data, subject_id, fhir, covs, dv_unit)
        # input checks before fitting: any error stops here (exit 1); warnings are printed with the result
        checked = {s.id: require_ok(check_inputs(m, s, covs if fhir else None)) for s in subjects}
        results = [fit(m, s, n_starts=starts, raise_on_failure=False) for s in subjects]
        for r in results:
            r.warnings = [f"input check: {p}" for p in checked.get(r.subject_id, [])] + r.warnings
        if (png or html_out) and len(results) != 1:
            from ..dosing.errors import DataError

            raise DataError(f"--plot/--html need a single subject (use --id); the file has {len(results)}")
        if png or html_out:
            from ..dosing import plot

            curve = plot.fit_curve(m, subjects[0], results[0])
            if png:
                plot.write_png(curve, png)
            if html_out:
                plot.write_html(curve, html_out, [m.spec.citation.text])
        failed = [r.subject_id for r in results if not r.converged]
        if as_json:
            typer.echo(json.dumps([r.as_dict() for r in results], indent=2))
        else:
            cols = ["ID", "obs"] + [f"eta_{e}" for e in m.eta_names] + ["OFV", "OBJ"] + list(m.param_names) + ["status"]
            rows = []
            for r in results:
                status = "ok" if r.converged else "NOT-CONVERGED"
                rows.append([r.subject_id, str(len(r.times)), *[f"{x:.5f}" for x in r.eta], f"{r.ofv:.4f}",
                             f"{r.obj:.4f}", *[f"{r.parameters[k]:.4g}" for k in m.param_names], status])
            widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
            typer.echo(f"MAP fits, model {m.id} [1] (OFV: MAP objective as mapbayr; OBJ: NONMEM's phi OBJ; levels "
                       f"in {m.spec.outputs[0].unit})")
            typer.echo("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
            for row in rows:
                typer.echo("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
            for r in results:
                for w in r.warnings + (r.diagnostics().warnings if r.design is not None else []):
                    typer.echo(f"warning: subject {r.subject_id}: {w}")
            doi = f" doi:{m.spec.citation.doi}" if m.spec.citation.doi else ""
            typer.echo(f"Sources\n  [1] {m.spec.citation.text}{doi}")  # the one source: the model's paper
        if failed:
            typer.echo(f"error: the fit did not converge for subject(s) {', '.join(failed)}", err=True)
            raise typer.Exit(1)

    _guard(run, as_json)


@dose_app.command("recommend")
def recommend_cmd(
    model: str | None = typer.Option(None, "--model", help="Model id; or give --drug for the default model."),
    drug: str | None = typer.Option(None, "--drug", help="tacrolimus, sirolimus or cyclosporine."),
    data: Path | None = typer.Option(None, "--data", help="NM-TRAN CSV (or FHIR Bundle with --fhir) with the "
                                     "patient's doses and levels."),
    fhir: bool = typer.Option(False, "--fhir", help="--data is a FHIR R4 Bundle."),
    subject_id: str | None = typer.Option(None, "--id", help="Subject in --data (required if several)."),
    cov: list[str] = typer.Option([], "--cov", help="Covariate NAME=VALUE in the model's unit (repeatable)."),
    level: float | None = typer.Option(None, "--level", help="A steady-state level on the current regimen."),
    level_unit: str | None = typer.Option(None, "--level-unit", help="Unit of --level: ng/mL = ng/ml = ug/L = µg/L = "
                                          "mcg/L, mg/L, or nmol/L, pmol/L... (drug's molar mass); converted to the "
                                          "model's unit."),
    dv_unit: str | None = typer.Option(None, "--dv-unit", help="Unit of DV/LLOQ in a --data CSV (default: the "
                                       "model's unit)."),
    current_dose: float | None = typer.Option(None, "--dose", help="Current dose (mg) for --level."),
    new_interval: float | None = typer.Option(
        None, "--new-interval", help="With --level: interval (h) of the suggested regimen if it should differ from "
        "the current --interval."),
    retarget: bool = typer.Option(False, "--retarget", help="Aim at the middle of the target range even when the "
                                  "current regimen's prediction is already inside it."),
    hours_after: float | None = typer.Option(
        None, "--hours-after-dose", help="When --level was drawn (default: trough)."),
    interval: float | None = typer.Option(None, "--interval", help="Dosing interval in hours (default: model's)."),
    metric: str | None = typer.Option(None, "--metric", help="trough (default), peak or auc24."),
    low: float | None = typer.Option(None, "--low", help="Target low (overrides the model's study target)."),
    high: float | None = typer.Option(None, "--high", help="Target high."),
    unit: str | None = typer.Option(None, "--unit", help="Target unit (required with --low/--high)."),
    form: str | None = typer.Option(None, "--form", help="Dosage form: index or name, e.g. 'tablet' (see --json "
                             "'dosage_forms')."),
    age: float | None = typer.Option(None, "--age", help="Age in years (with --drug: used to choose the model whose "
                                     "source population matches)."),
    comeds: str | None = typer.Option(
        None, "--co-medications", help="With --drug: the patient's COMPLETE list of other current drugs, comma-"
        "separated (generic or brand names; 'none' for none). Sets the models' co-medication indicators (e.g. "
        "posaconazole 1/0); without it, models that need one are not used."),
    as_json: bool = typer.Option(False, "--json", help="Print the recommendation as JSON."),
    png: Path | None = typer.Option(None, "--plot", help="Write a PNG of the suggested regimen."),
    html_out: Path | None = typer.Option(None, "--html", help="Write an HTML plot of the suggested regimen."),
) -> None:
    """Suggest a dose and interval whose steady-state exposure is in the target range, rounded to a real
    dosage form, with the predicted value, its 90 % interval, the model's citation and caveats."""
    opts = dict(locals())  # every option by name; `dose report` takes the same ones (see _recommendation)

    def run() -> None:
        m, rec, covs = _recommendation(opts)
        if png or html_out:
            from ..dosing import plot

            allc = dict(covs)
            if rec.fit is not None and rec.fit.design is not None:
                allc = {**{k: float(v[-1]) for k, v in rec.fit.design.cov.items()}, **covs}
            curve = plot.recommendation_curve(m, rec, allc)
            if png:
                plot.write_png(curve, png)
            if html_out:
                plot.write_html(curve, html_out, [f"Suggested: {rec.dose_mg:g} mg ({rec.administration}) every "
                                                  f"{rec.interval_h:g} h", f"Model: {rec.citation}", *rec.caveats])
        if as_json:
            d = rec.as_dict()
            d["dosage_forms"] = [f.model_dump() for f in m.spec.dosage_forms]
            typer.echo(json.dumps(d, indent=2, default=str))
            return
        from rich.console import Console

        from ..dosing.report import build_report

        # the terminal shows the printable report's content and numbers (alerts, suggestion, evidence, sources)
        report = build_report(m, rec, covariates=covs, age_years=age)
        _print_report(Console(highlight=False), report)

    _guard(run, as_json)


def report_cmd(**opts: Any) -> None:
    """A printable TDM report (one A4 HTML page, or JSON): alerts first, the suggested regimen with alternatives
    and probability of target attainment, the patient's doses and levels, the fitted curve with its interval bands
    and the target band, fit diagnostics, the model's citation and validity domain, caveats and numbered sources.
    Takes the same options as `dose recommend`."""
    out: Path | None = opts.pop("out")
    as_json: bool = opts.pop("as_json")
    as_of: str | None = opts.pop("as_of")

    def run() -> None:
        from ..dosing.errors import DosingError
        from ..dosing.report import build_report
        from ..report import render_tdm_html

        if out is not None and out.suffix.lower() != ".html":
            raise DosingError(f"--out: expected a file name ending in .html, got {out.name!r} (for a PDF, open the "
                              "HTML page in a browser and print it: the page is laid out for A4)")
        m, rec, covs = _recommendation(opts)
        report = build_report(m, rec, covariates=covs, as_of=as_of, age_years=opts.get("age"))
        if out is not None:
            try:
                out.write_text(render_tdm_html(report), encoding="utf-8")
            except OSError as exc:
                raise DosingError(f"--out: cannot write {out}: {exc.strerror}") from None
            typer.echo(f"wrote {out}: {report.suggestion.headline}", err=True)
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2))
        elif out is None:
            typer.echo(render_tdm_html(report))

    _guard(run, as_json)


def _report_signature() -> inspect.Signature:
    """`dose recommend`'s options (all but its output options), then --out, --json and --as-of."""
    base = inspect.signature(recommend_cmd, eval_str=True)
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [p.replace(kind=kw) for name, p in base.parameters.items() if name not in ("as_json", "png", "html_out")]
    params += [
        inspect.Parameter("out", kw, annotation=Path | None, default=typer.Option(
            None, "--out", help="Write the report as one printable HTML page (A4) to this .html file.")),
        inspect.Parameter("as_json", kw, annotation=bool, default=typer.Option(
            False, "--json", help="Print the report as JSON (the same content as the printable report).")),
        inspect.Parameter("as_of", kw, annotation=str | None, default=typer.Option(
            None, "--as-of", help="Date printed on the report, YYYY-MM-DD (default: today); the same inputs and date "
            "give the same report.")),
    ]
    return base.replace(parameters=params, return_annotation=None)


report_cmd.__signature__ = _report_signature()  # type: ignore[attr-defined]
report_cmd.__annotations__ = {p.name: p.annotation for p in report_cmd.__signature__.parameters.values()}  # type: ignore[attr-defined]
dose_app.command("report")(report_cmd)


def _recommendation(opts: dict[str, Any]) -> tuple[Any, Any, dict[str, float]]:
    """(model, recommendation, covariates) for the options of `dose recommend`, by name; `dose report` has the
    same options (its signature is built from recommend_cmd's), so both commands read them here."""
    from ..dosing.errors import DosingError
    from ..dosing.model import get_model
    from ..dosing.recommend import DEFAULT_MODELS, recommend, recommend_from_trough

    o = SimpleNamespace(**opts)
    if o.model is None and o.drug is None:
        raise DosingError("give --model or --drug")
    covs = _parse_covs(o.cov)
    if o.model is None and (o.data is None or o.fhir):
        # --drug alone: the model is chosen among the drug's clinical models (population match, or weighted
        # by how well each explains the levels); the choice and the spread between models are shown
        from ..dosing.select import recommend_for_drug

        fhir_text = _read_text(o.data) if o.data is not None else None
        rec = recommend_for_drug(
            o.drug or "", covs, age_years=o.age, level=o.level, level_unit=o.level_unit, dose_mg=o.current_dose,
            interval_h=o.interval, hours_after_dose=o.hours_after, new_interval_h=o.new_interval, metric=o.metric,
            target_low=o.low, target_high=o.high, target_unit=o.unit, form=o.form, retarget=o.retarget,
            fhir_bundle=fhir_text, co_medications=_comed_list(o.comeds))
        m = get_model(rec.model_id)
    elif o.level is not None:
        m = get_model(o.model or DEFAULT_MODELS.get((o.drug or "").lower()) or "")
        if o.current_dose is None or o.interval is None or o.level_unit is None:
            raise DosingError("--level needs --level-unit, --dose (mg) and --interval (h) of the current regimen")
        rec = recommend_from_trough(m.spec.drug, o.level, o.level_unit, o.current_dose, o.interval, covs,
                                    model_id=m.id, hours_after_dose=o.hours_after, target_low=o.low,
                                    target_high=o.high, metric=o.metric, form_index=o.form,
                                    new_interval_h=o.new_interval, retarget=o.retarget, target_unit=o.unit)
    else:
        if o.model is None:
            raise DosingError("an NM-TRAN file numbers compartments for one model: give --model with --data "
                              "(see `ipexrx dose models`), or a FHIR Bundle with --fhir")
        m = get_model(o.model)
        subject = None
        if o.data is not None:
            _, subjects = _read(m.id, o.data, o.subject_id, o.fhir, covs, o.dv_unit)
            if len(subjects) != 1:
                raise DosingError(f"{o.data} holds {len(subjects)} subjects; choose one with --id")
            subject = subjects[0]
        rec = recommend(m, subject, covs, interval_h=o.interval, metric=o.metric, target_low=o.low,
                        target_high=o.high, target_unit=o.unit, form_index=o.form, retarget=o.retarget)
    return m, rec, covs


def _comed_list(text: str | None) -> list[str] | None:
    """Names -> generic names: a brand known to the knowledge base becomes its generic id (Noxafil ->
    posaconazole); other names are kept as written (lowercase)."""
    if text is None:
        return None
    if text.strip().lower() in ("none", ""):
        return []
    from ..reference import find_drug
    from ..reference.errors import NotFoundError

    out = []
    for name in (t.strip() for t in text.split(",")):
        if not name:
            continue
        try:
            out.append(find_drug(name).id)
        except NotFoundError:
            out.append(name.lower())
    return out


def _read_text(path: Path) -> str:
    from ..dosing.errors import DataError

    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _refs(numbers: list[int]) -> str:
    """`` [1, 3]``: the numbers of the sources list at the end (the shared rule, ipexrx.reference.citations)."""
    from ..reference.citations import format_marker

    marker = format_marker(numbers)
    return f" {marker}" if marker else ""


def _print_report(con: Any, r: Any) -> None:
    """A TDM report (:class:`ipexrx.dosing.report.TDMReport`) in the terminal, in the printed page's order: alerts,
    the suggestion, fit diagnostics, model choice, the model and its validity, caveats, then the numbered sources
    that the ``[n]`` marks point to (numbered in this reading order, the same numbers as `dose report`)."""
    from rich.text import Text

    def line(text: str, lead: str = "", style: str = "", indent: int = 0) -> None:
        out = Text(" " * indent)
        if lead:
            out.append(lead, style=style or "bold")
            out.append(" ")
        out.append(text)
        con.print(out)

    def num(x: float) -> str:
        return f"{x:.3g}"

    for n in r.notices:
        style = {"alert": "bold red", "warning": "yellow", "note": "dim"}[n.severity]
        line(f"{n.text}{_refs(n.refs)}", f"{n.severity} ({n.topic}):", style)
    s = r.suggestion
    verb = "keep the current regimen" if s.decision == "keep" else "consider"
    line(f"{verb}: {s.drug} {s.dose_mg:g} mg every {s.interval_h:g} h ({s.daily_dose_mg:g} mg/day) as {s.form}: "
         f"{s.administration}{_refs(s.refs)}", "Suggestion (not an order):")
    line(s.reason, "Why:")
    line(f"{num(s.predicted)} {s.unit} (90 % predictive interval {num(s.predicted_low)}-{num(s.predicted_high)} "
         f"{s.unit}, {s.interval_includes}; parameter uncertainty alone {num(s.parameter_low)}-"
         f"{num(s.parameter_high)} {s.unit})", f"Predicted steady-state {s.metric}:")
    t = r.target
    line(f"{100 * s.probability_in_target:.0f} % (share of parameter draws whose true {s.metric} is in range); a "
         f"measured level in range: {100 * s.probability_measured_in_target:.0f} %",
         f"Probability of target attainment ({t.low:g}-{t.high:g} {t.unit}):")
    line(f"{t.metric} {t.low:g}-{t.high:g} {t.unit} ({t.context}; source: {t.source}){_refs(t.refs)}"
         + ("" if t.verified else "; not established for IPEX"), "Target:")
    if s.current_dose_mg is not None:
        cur = f"{s.current_dose_mg:g} mg every {s.current_interval_h:g} h"
        if s.current_predicted is not None:
            cur += f", predicted {s.metric} {num(s.current_predicted)} {s.unit}"
        line(cur, "Current regimen:")
    line(f"{s.basis} Exact dose before rounding to the dosage form: {num(s.exact_dose_mg)} mg.", "Basis:")
    for a in r.alternatives:
        line(f"{a.dose_mg:g} mg every {a.interval_h:g} h, predicted {num(a.predicted)} {a.unit}, probability in "
             f"range {100 * a.probability_in_target:.0f} %" + (f" ({a.note})" if a.note else ""), "Also considered:")
    dg = r.diagnostics
    if dg.available:
        head = "levels explained by the model" if dg.explained else "a level the model cannot explain"
        line(f"{head}{_refs(dg.refs)}", "Fit diagnostics:", "bold" if dg.explained else "bold red")
        line(dg.summary, indent=2)
        for lv in dg.levels:
            line(f"level {lv.value:.4g} {lv.unit} at t = {lv.time_h:g} h: individual prediction "
                 f"{num(lv.individual_prediction)} {lv.unit}, IWRES {lv.iwres:+.2f} (limit +/-{dg.iwres_limit:g})"
                 + (" - not explained" if lv.flagged else ""), indent=2)
        for e in dg.etas:
            shr = f", shrinkage {e.shrinkage_percent:.0f} %" if e.shrinkage_percent is not None else ""
            if e.weakly_informed:
                shr += " (the levels say little about it; the estimate stays near the typical value)"
            line(f"{e.meaning} ({e.parameter}): {e.z:+.2f} SD from the typical value (limit +/-{dg.eta_z_limit:g})"
                 f"{shr}" + (" - outside the model's population" if e.flagged else ""), indent=2)
        if dg.conflict is not None:
            c = dg.conflict
            line(f"prior-data conflict: Q = {c.statistic:.2f} vs {c.limit:.2f} (chi-square {c.df} df), p = "
                 f"{c.p_value:.2g}" + (" - conflict" if c.flagged else ""), indent=2)
    else:
        line(dg.summary, "Fit diagnostics:")
    mc = r.model_choice
    if mc is not None:
        line(f"{mc.reason}{_refs(mc.refs)}", f"Model choice ({mc.method}):")
        for cm in mc.models:
            name = f"{cm.label}{_refs(cm.refs)}" + (" (used)" if cm.chosen else "")
            if not cm.usable:
                line(f"{name}: not used - {cm.excluded_because}", indent=2)
                continue
            parts = []
            if cm.weight is not None:
                parts.append(f"weight {100 * cm.weight:.0f} %")
            if cm.suggested_dose_mg is not None:
                parts.append(f"own suggestion {cm.suggested_dose_mg:g} mg every {cm.suggested_interval_h:g} h")
            if cm.predicted_for_chosen is not None:
                parts.append(f"predicts {num(cm.predicted_for_chosen)} {mc.unit} for the suggested regimen")
            line(f"{name}: " + ", ".join(parts) + (f" ({'; '.join(cm.mismatches)})" if cm.mismatches else ""),
                 indent=2)
        if mc.averaged_prediction is not None:
            line(f"weighted average over the models: {num(mc.averaged_prediction)} {mc.unit} ({mc.metric})", indent=2)
        if mc.prediction_range is not None and mc.prediction_range[0] != mc.prediction_range[1]:
            lo, hi = mc.prediction_range
            line(f"spread between models for the suggested regimen: {num(lo)}-{num(hi)} {mc.unit}", indent=2)
    mo = r.model
    line(f"{mo.title}{_refs(mo.refs)}. {mo.population}" + (f" Assay: {mo.assay}." if mo.assay else "")
         + f" {mo.parameters_checked[:1].upper()}{mo.parameters_checked[1:]}.", "Model:")
    for v in r.validity:
        line(f"{'outside: ' if v.inside is False else ''}{v.text}{_refs(v.refs)}", indent=2)
    for c in r.caveats:
        line(c, "caveat:", "bold yellow")
    if r.sources:
        con.print(Text("Sources", style="bold underline"))
        for src in r.sources:
            link = f" doi:{src.doi}" if src.doi else (f" {src.url}" if src.url else "")
            con.print(Text(f"  [{src.number}] {src.text}{link}", style="dim"))

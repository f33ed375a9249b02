"""The study's efficacy table as a CSR shows it, rendered from one analysis-results dataset.

What is tabulated comes from the `efficacy` block of the study's `tables.yaml`: the dataset and
population flag, the parameters and visits, the test and which of its statistics are the
headline, the footnotes (window rules, imputations). A study without that block gets no table.

Three outputs, all from the same numbers:
- `efficacy_ard.csv`: the analysis-results dataset, long format (one row per parameter, visit,
  analysis variable and statistic; VALUE unrounded, written as the shortest text that reads
  back to the same float), so a reviewer can recompute or re-render the table;
- `efficacy.csv`: the display table, one row per parameter and visit, formatted;
- `efficacy.html`: the CSR page: title with study and population, one block per parameter
  (PARAM and unit), a baseline row, per visit n, mean (SD), median (Q1-Q3), min-max of AVAL and
  of CHG and the test statistics, footnotes, and the joint-count plot.

Records analysed: ANL01FL = Y, the population flag = Y in ADSL, the configured parameters and
visits; baseline row: the baseline visit's records; test: non-missing CHG. The arithmetic is
`cdiscforge.stats`; this module selects records, summarises, formats and draws. Deterministic:
fixed formatting, spec order, no timestamps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cdiscforge.buildlog import BuildLog
from cdiscforge.errors import SpecError
from cdiscforge.model import Dataset
from cdiscforge.rules import Condition, RuleContext
from cdiscforge.spec import StudySpec, load_yaml
from cdiscforge.stats import STATISTICS, collected_decimals, wilcoxon_signed_rank

ARD_COLUMNS = ["PARAMCD", "PARAM", "AVISITN", "AVISIT", "ANALVAR", "STAT", "VALUE"]
DESCRIPTIVE = ["N", "MEAN", "SD", "MEDIAN", "Q1", "Q3", "MIN", "MAX"]
TESTS = ("wilcoxon_signed_rank",)


@dataclass(frozen=True)
class StatColumn:
    """One test statistic column of the table: ARD code, header, format."""

    stat: str
    label: str
    decimals: int = 3
    pvalue: bool = False


@dataclass(frozen=True)
class Imputation:
    """A footnote counting imputed values: records of `dataset` matching `where`."""

    text: str
    dataset: str
    where: Condition
    parameters: list[str] | None = None


@dataclass(frozen=True)
class EfficacyConfig:
    dataset: str
    population: str | None
    population_label: str
    title: str
    parameters: list[str]
    baseline_visit: float
    visits: list[float]
    continuity_correction: bool
    headline: list[StatColumn]
    secondary: list[StatColumn]
    units: dict[str, str]
    window_rule: str
    windows: list[dict[str, Any]]
    imputations: list[Imputation]
    plot_title: str
    plot_parameters: list[str]
    plot_visits: list[float]
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[StatColumn]:
        return self.headline + self.secondary


def _stat_columns(items: Any, path: Path, key: str) -> list[StatColumn]:
    out = []
    for i, item in enumerate(items or []):
        if not isinstance(item, dict) or item.get("stat") not in STATISTICS:
            raise SpecError(path, f"{key}[{i}]", f"needs stat: one of {sorted(STATISTICS)}")
        out.append(
            StatColumn(
                stat=str(item["stat"]),
                label=str(item.get("label", item["stat"])),
                decimals=int(item.get("decimals", 3)),
                pvalue=item.get("format") == "pvalue",
            )
        )
    return out


def load_config(study: StudySpec, file: str = "tables.yaml") -> EfficacyConfig | None:
    """The `efficacy` block of the study's tables spec, checked; None when the study has none."""
    path = study.folder / file
    if not path.exists():
        return None
    data = load_yaml(path)
    block = data.get("efficacy") if isinstance(data, dict) else None
    if block is None:
        return None
    if not isinstance(block, dict):
        raise SpecError(path, "efficacy", "must be a mapping")
    try:
        test = block.get("test") or {}
        if test.get("name", TESTS[0]) not in TESTS:
            raise SpecError(path, "efficacy.test.name", f"{test.get('name')!r}: one of {TESTS}")
        stats = block.get("statistics") or {}
        headline = _stat_columns(stats.get("headline"), path, "efficacy.statistics.headline")
        if not headline:
            raise SpecError(path, "efficacy.statistics.headline", "at least one statistic")
        imputations = []
        for item in (block.get("footnotes") or {}).get("imputations") or []:
            imputations.append(
                Imputation(
                    text=str(item["text"]),
                    dataset=str(item["dataset"]),
                    where=Condition(**item["where"]),
                    parameters=item.get("parameters"),
                )
            )
        plot = block.get("plot", {})
        return EfficacyConfig(
            dataset=str(block.get("dataset", "ADEFF")),
            population=block.get("population"),
            population_label=str(block.get("population_label", "All subjects")),
            title=str(block.get("title", "Change from baseline")),
            parameters=[str(p) for p in block["parameters"]],
            baseline_visit=float(block.get("baseline_visit", 0)),
            visits=[float(v) for v in block["visits"]],
            continuity_correction=bool(test.get("continuity_correction", False)),
            headline=headline,
            secondary=_stat_columns(stats.get("secondary"), path, "efficacy.statistics.secondary"),
            units={str(k): str(v) for k, v in (block.get("units") or {}).items()},
            window_rule=str((block.get("footnotes") or {}).get("windows", "")),
            windows=list(data.get("windows") or []),
            imputations=imputations,
            plot_title=str(plot.get("title", "")),
            plot_parameters=[str(p) for p in plot.get("parameters", [])],
            plot_visits=[float(v) for v in plot.get("visits", [])],
            notes=[str(n) for n in (block.get("footnotes") or {}).get("notes", [])],
        )
    except SpecError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(path, "efficacy", f"malformed: {exc}") from exc


# --- records and the analysis-results dataset ---------------------------------------------------


def population_subjects(datasets: Mapping[str, Dataset], cfg: EfficacyConfig) -> pd.Series:
    """USUBJID of the population (ADSL flag = Y; every ADSL subject when no flag)."""
    adsl = datasets["ADSL"].frame
    if not cfg.population:
        return adsl["USUBJID"]
    return adsl.loc[(adsl[cfg.population] == "Y").fillna(False).to_numpy(bool), "USUBJID"]


def analysis_records(datasets: Mapping[str, Dataset], cfg: EfficacyConfig) -> pd.DataFrame:
    """ANL01FL = Y records of the configured parameters, in the population."""
    if cfg.dataset not in datasets:
        raise SpecError("tables.yaml", "efficacy.dataset", f"{cfg.dataset} was not built")
    frame = datasets[cfg.dataset].frame
    keep = (frame["ANL01FL"] == "Y").fillna(False) & frame["PARAMCD"].isin(cfg.parameters)
    keep &= frame["USUBJID"].isin(population_subjects(datasets, cfg))
    cols = ["USUBJID", "PARAMCD", "PARAM", "AVISIT", "AVISITN", "AVAL", "CHG"]
    cols += [c for c in ("DTYPE",) if c in frame.columns]
    out = frame.loc[keep.to_numpy(dtype=bool), cols].copy()
    out["AVISITN"] = out["AVISITN"].astype("Float64")
    return out


def _describe(values: pd.Series) -> dict[str, float]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {"N": 0.0}
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])  # linear interpolation (type 7)
    return {
        "N": float(v.size),
        "MEAN": float(v.mean()),
        "SD": float(v.std(ddof=1)) if v.size > 1 else math.nan,
        "MEDIAN": float(med),
        "Q1": float(q1),
        "Q3": float(q3),
        "MIN": float(v.min()),
        "MAX": float(v.max()),
    }


def analysis_results(records: pd.DataFrame, cfg: EfficacyConfig) -> pd.DataFrame:
    """The long analysis-results dataset every rendering reads (see the module docstring).

    Per parameter: the baseline visit (AVAL), then each visit (AVAL, CHG and the test on CHG,
    ANALVAR = CHG). Changes are tested at the precision the parameter's values were collected
    at (`collected_decimals` over its AVAL), so float noise never splits a tie; that precision
    is a row too (STAT DECIMALS), and so is the one the display uses (DISPLAY_DECIMALS: the
    measured values', since an imputed half of a limit may carry one decimal more).
    """
    rows: list[tuple[Any, ...]] = []
    for paramcd in cfg.parameters:
        par = records[records["PARAMCD"] == paramcd]
        if par.empty:
            continue
        param = str(par["PARAM"].dropna().iloc[0])
        decimals = collected_decimals(par["AVAL"].to_numpy(dtype=float, na_value=np.nan))
        # shown at the precision of the measured values (x/2 of a limit may add a decimal)
        measured = par["DTYPE"].isna() if "DTYPE" in par.columns else slice(None)
        shown = collected_decimals(par.loc[measured, "AVAL"].to_numpy(float, na_value=np.nan))
        for visitn in [cfg.baseline_visit, *cfg.visits]:
            sel = par[par["AVISITN"] == visitn]
            if sel.empty:
                continue
            key = (paramcd, param, float(visitn), str(sel["AVISIT"].dropna().iloc[0]))
            out: list[tuple[str, str, float]] = []
            if visitn == cfg.baseline_visit:
                out += [("AVAL", "DECIMALS", decimals), ("AVAL", "DISPLAY_DECIMALS", shown)]
            out += [("AVAL", k, v) for k, v in _describe(sel["AVAL"]).items()]
            chg = sel["CHG"].dropna()
            if visitn != cfg.baseline_visit:
                out += [("CHG", k, v) for k, v in _describe(chg).items()]
            if visitn != cfg.baseline_visit and not chg.empty:
                test = wilcoxon_signed_rank(
                    chg.to_numpy(dtype=float),
                    decimals=decimals,
                    continuity_correction=cfg.continuity_correction,
                )
                out += [("CHG", k, getattr(test, attr)) for k, attr in STATISTICS.items()]
            rows += [(*key, var, stat, float(value)) for var, stat, value in out]
    return pd.DataFrame(rows, columns=ARD_COLUMNS)


def _ard_text(ard: pd.DataFrame) -> str:
    out = ard.copy()
    out["AVISITN"] = [f"{v:g}" for v in out["AVISITN"]]
    out["VALUE"] = ["" if math.isnan(v) else repr(v) for v in out["VALUE"]]
    return out.to_csv(index=False, lineterminator="\n")


# --- imputation counts, from the data ------------------------------------------------------------


def imputation_counts(
    datasets: Mapping[str, Dataset],
    study: StudySpec,
    cfg: EfficacyConfig,
    records: pd.DataFrame,
) -> list[dict[str, Any]]:
    """Per footnote: records of its dataset matching its condition, in the population
    (and, for the analysis dataset, among the records analysed), and their subjects."""
    out = []
    members = population_subjects(datasets, cfg)
    for imp in cfg.imputations:
        if imp.dataset == cfg.dataset:
            frame = records
        elif imp.dataset in datasets:
            frame = datasets[imp.dataset].frame
            frame = frame[frame["USUBJID"].isin(members).to_numpy(bool)]
        else:
            raise SpecError(
                "tables.yaml", "efficacy.footnotes.imputations", f"{imp.dataset} was not built"
            )
        if imp.parameters is not None and "PARAMCD" in frame.columns:
            frame = frame[frame["PARAMCD"].isin(imp.parameters).to_numpy(bool)]
        ctx = RuleContext(
            study=study,
            dataset=imp.dataset,
            variable="efficacy footnote",
            out=frame.reset_index(drop=True),
            source=None,
            domains=dict(datasets),
            log=BuildLog(),
            spec_file="tables.yaml",
        )
        mask = imp.where.evaluate(ctx).fillna(False).to_numpy(dtype=bool)
        hit = ctx.out[mask]
        by_param = (
            hit["PARAMCD"]
            .value_counts()[lambda n: n > 0]  # a categorical counts unused too
            .reindex(cfg.parameters)
            .dropna()
            .astype(int)
            .to_dict()
            if "PARAMCD" in hit.columns and imp.dataset == cfg.dataset
            else {}
        )
        out.append(
            {
                "text": imp.text,
                "records": len(hit),
                "subjects": int(hit["USUBJID"].nunique()),
                "by_parameter": by_param,
            }
        )
    return out


# --- formatting -----------------------------------------------------------------------------------


def _num(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "NE"
    text = f"{value:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def format_p(value: float) -> str:
    """CSR convention: "< 0.001" below one in a thousand, else three decimals."""
    if value is None or not math.isfinite(value):
        return "NE"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _summary(stats: dict[str, float], d: int) -> dict[str, str]:
    """n, mean (SD), median (Q1-Q3), min-max with one decimal more than collected for the
    summaries and the collected precision for min and max (the usual CSR convention)."""
    if not stats or stats.get("N", 0) == 0:
        return {"n": "0", "mean_sd": "", "median_iqr": "", "range": ""}
    return {
        "n": f"{int(stats['N'])}",
        "mean_sd": f"{_num(stats['MEAN'], d + 1)} ({_num(stats.get('SD'), d + 2)})",
        "median_iqr": f"{_num(stats['MEDIAN'], d + 1)} "
        f"({_num(stats['Q1'], d + 1)}, {_num(stats['Q3'], d + 1)})",
        "range": f"{_num(stats['MIN'], d)}, {_num(stats['MAX'], d)}",
    }


def _stats(cells: dict[tuple, float], visitn: float, var: str) -> dict[str, float]:
    return {s: cells[(visitn, var, s)] for s in DESCRIPTIVE if (visitn, var, s) in cells}


def display_rows(ard: pd.DataFrame, cfg: EfficacyConfig) -> list[dict[str, Any]]:
    """One block per parameter: its rows (baseline first), formatted from the ARD."""
    blocks = []
    for paramcd in cfg.parameters:
        par = ard[ard["PARAMCD"] == paramcd]
        if par.empty:
            continue
        cells = {(r.AVISITN, r.ANALVAR, r.STAT): r.VALUE for r in par.itertuples(index=False)}
        d = int(cells[(cfg.baseline_visit, "AVAL", "DISPLAY_DECIMALS")])
        param = str(par["PARAM"].iloc[0])
        unit = cfg.units.get(paramcd, "")
        rows = []
        for visitn in [cfg.baseline_visit, *cfg.visits]:
            names = par.loc[par["AVISITN"] == visitn, "AVISIT"]
            if names.empty:
                continue

            row = {
                "PARAMCD": paramcd,
                "PARAM": param,
                "AVISITN": visitn,
                "AVISIT": str(names.iloc[0]).title(),
                "baseline": visitn == cfg.baseline_visit,
                "aval": _summary(_stats(cells, visitn, "AVAL"), d),
                "chg": _summary(_stats(cells, visitn, "CHG"), d)
                if visitn != cfg.baseline_visit
                else None,
                "tests": [],
            }
            for col in cfg.columns:
                value = cells.get((visitn, "CHG", col.stat))
                if value is None:
                    text = ""
                elif col.pvalue:
                    text = format_p(value)
                else:
                    text = _num(value, col.decimals)
                row["tests"].append(text)
            rows.append(row)
        blocks.append({"PARAMCD": paramcd, "PARAM": param, "unit": unit, "rows": rows})
    return blocks


def display_frame(blocks: list[dict[str, Any]], cfg: EfficacyConfig) -> pd.DataFrame:
    """The display table as CSV: one row per parameter and visit, texts as on the page."""
    records = []
    for b in blocks:
        for r in b["rows"]:
            rec = {
                "PARAMCD": b["PARAMCD"],
                "PARAM": b["PARAM"],
                "UNIT": b["unit"],
                "AVISITN": f"{r['AVISITN']:g}",
                "AVISIT": r["AVISIT"],
            }
            for var, part in (("AVAL", r["aval"]), ("CHG", r["chg"])):
                part = part or {"n": "", "mean_sd": "", "median_iqr": "", "range": ""}
                rec[f"{var}_N"] = part["n"]
                rec[f"{var}_MEAN_SD"] = part["mean_sd"]
                rec[f"{var}_MEDIAN_Q1_Q3"] = part["median_iqr"]
                rec[f"{var}_MIN_MAX"] = part["range"]
            for col, text in zip(cfg.columns, r["tests"], strict=True):
                rec[col.stat] = text
            records.append(rec)
    return pd.DataFrame(records)


def footnotes(
    cfg: EfficacyConfig, ard: pd.DataFrame, imputations: list[dict[str, Any]]
) -> list[str]:
    """The table's footnotes: test, effect size, precision, windows, imputations (counted)."""
    cc = "with" if cfg.continuity_correction else "without"
    decimals = ard[ard["STAT"] == "DECIMALS"].set_index("PARAMCD")["VALUE"].astype(int)
    precision = ", ".join(f"{p} {d}" for p, d in decimals.items())
    names = {c.stat: c.label for c in cfg.columns}
    lines = [
        "n: subjects with a value at the visit; the change from baseline (CHG) is analysed in "
        "subjects with a baseline value. Mean (SD), median (Q1, Q3) with quartiles by linear "
        "interpolation; min, max.",
        "Z: Wilcoxon signed-rank test of CHG against 0, normal approximation with the tie "
        f"correction, {cc} continuity correction; p: two-sided, from Z. Changes are compared at "
        f"the precision the values were collected at (decimals: {precision}), so equal changes "
        "share one average rank; zero changes are dropped from the ranks.",
        "ES: effect size r = |Z| / sqrt(N), N = pairs analysed at the visit (the CHG n, zero "
        "changes included); 0.1 small, 0.3 medium, 0.5 large.",
    ]
    shown = [c.stat for c in cfg.columns]
    if "P_EXACT" in shown:
        lines.append(
            f"{names['P_EXACT']}: two-sided, from the exact permutation distribution of the "
            "signed-rank statistic with tied ranks kept (shift algorithm)."
        )
    if "RB" in shown:
        lines.append(
            f"{names['RB']}: matched-pairs rank-biserial correlation |T+ - T-| / (T+ + T-)."
        )
    headline = ", ".join(c.label for c in cfg.headline)
    lines.append(f"Headline statistics (declared in tables.yaml): {headline}.")
    if cfg.windows:
        parts = [
            f"{str(w['AVISIT']).title()} days {w['low']} to {w['high']} (target {w['target']})"
            for w in cfg.windows
            if float(w["AVISITN"]) in {cfg.baseline_visit, *cfg.visits}
        ]
        lines.append(
            "Analysis windows (study day, Day 1 = treatment start): "
            + "; ".join(parts)
            + (f". {cfg.window_rule}" if cfg.window_rule else ".")
        )
    for imp in imputations:
        if not imp["records"]:  # nothing imputed this way in this build: no footnote
            continue
        detail = f"{imp['records']} record{'s' if imp['records'] != 1 else ''}"
        detail += f" in {imp['subjects']} subject{'s' if imp['subjects'] != 1 else ''}"
        if imp["by_parameter"]:
            detail += ": " + ", ".join(f"{p} {n}" for p, n in imp["by_parameter"].items())
        lines.append(f"{imp['text']} ({detail}).")
    lines += cfg.notes
    return lines


# --- the plot ----------------------------------------------------------------------------------

_COLOURS = ["#1b6ca8", "#c0392b", "#2e8b57", "#8e44ad"]


def _quantiles(values: pd.Series) -> tuple[float, float, float]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    return (float(q1), float(med), float(q3))


def plot_svg(
    records: pd.DataFrame, cfg: EfficacyConfig, width: int = 640, height: int = 360
) -> dict[str, Any]:
    """Geometry of the median-and-IQR plot by visit (drawn by the template as inline SVG).

    x: analysis visits (equally spaced, labelled with AVISIT); y: AVAL from 0 to the largest
    upper quartile. Each parameter: a line through the medians and a band from Q1 to Q3.
    """
    margin = {"l": 48, "r": 40, "t": 16, "b": 48}
    visits = cfg.plot_visits
    series = []
    top = 0.0
    for paramcd in cfg.plot_parameters:
        pts = []
        for v in visits:
            sel = records[(records["PARAMCD"] == paramcd) & (records["AVISITN"] == v)]
            q1, med, q3 = _quantiles(sel["AVAL"])
            label = sel["AVISIT"].dropna().unique().tolist()
            pts.append({"v": v, "label": label[0] if label else "", "q": (q1, med, q3)})
            if math.isfinite(q3):
                top = max(top, q3)
        series.append({"paramcd": paramcd, "points": pts})
    top = max(1.0, math.ceil(top / 5.0) * 5.0)
    pw, ph = width - margin["l"] - margin["r"], height - margin["t"] - margin["b"]
    step = pw / max(1, len(visits) - 1)

    def x(i: int) -> float:
        return round(margin["l"] + i * step, 1)

    def y(val: float) -> float:
        return round(margin["t"] + ph * (1 - val / top), 1)

    drawn = []
    for k, s in enumerate(series):
        ok = [(i, p) for i, p in enumerate(s["points"]) if math.isfinite(p["q"][1])]
        upper = [f"{x(i)},{y(p['q'][2])}" for i, p in ok]
        lower = [f"{x(i)},{y(p['q'][0])}" for i, p in reversed(ok)]
        drawn.append(
            {
                "paramcd": s["paramcd"],
                "colour": _COLOURS[k % len(_COLOURS)],
                "band": " ".join(upper + lower),
                "line": " ".join(f"{x(i)},{y(p['q'][1])}" for i, p in ok),
                "dots": [
                    {
                        "x": x(i),
                        "y": y(p["q"][1]),
                        "text": f"{s['paramcd']} {p['label']}: "
                        f"median {p['q'][1]:.1f} (IQR {p['q'][0]:.1f}-{p['q'][2]:.1f})",
                    }
                    for i, p in ok
                ],
            }
        )
    labels = {}
    for s in series:
        for i, p in enumerate(s["points"]):
            if p["label"]:
                labels.setdefault(i, p["label"])
    ticks = [{"y": y(t), "text": f"{t:g}"} for t in np.linspace(0, top, 6)]
    return {
        "width": width,
        "height": height,
        "title": cfg.plot_title,
        "series": drawn,
        "xlabels": [{"x": x(i), "text": labels.get(i, f"{v:g}")} for i, v in enumerate(visits)],
        "yticks": ticks,
        "x0": margin["l"],
        "x1": width - margin["r"],
        "y0": margin["t"] + ph,
        "legend_y": margin["t"] + 4,
    }


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("cdiscforge.adam", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def write_efficacy_tables(
    datasets: Mapping[str, Dataset],
    study: StudySpec,
    tables_dir: Path,
    log: BuildLog | None = None,
) -> list[Path]:
    """Write efficacy_ard.csv, efficacy.csv and efficacy.html into `tables_dir`.

    `datasets`: the built ADaM datasets (and SDTM ones an imputation footnote counts in).
    A study whose tables spec has no `efficacy` block gets nothing (and a log line).
    """
    cfg = load_config(study)
    if cfg is None:
        if log is not None:
            log.info("tables", "efficacy", "no efficacy block in tables.yaml: no table written")
        return []
    records = analysis_records(datasets, cfg)
    ard = analysis_results(records, cfg)
    blocks = display_rows(ard, cfg)
    imputations = imputation_counts(datasets, study, cfg, records)
    notes = footnotes(cfg, ard, imputations)
    tables_dir.mkdir(parents=True, exist_ok=True)
    ard_path = tables_dir / "efficacy_ard.csv"
    _atomic_write(ard_path, _ard_text(ard))
    csv_path = tables_dir / "efficacy.csv"
    _atomic_write(csv_path, display_frame(blocks, cfg).to_csv(index=False, lineterminator="\n"))
    n_pop = int(population_subjects(datasets, cfg).nunique())
    html = (
        _env()
        .get_template("efficacy.html.j2")
        .render(
            study=study.config.study,
            title=cfg.title,
            population=f"{cfg.population_label} (N = {n_pop})",
            columns=cfg.columns,
            blocks=blocks,
            footnotes=notes,
            source=f"Source: {cfg.dataset} (ANL01FL = Y"
            + (f", {cfg.population} = Y" if cfg.population else "")
            + "); analysis results: efficacy_ard.csv",
            plot=plot_svg(records, cfg),
        )
    )
    html_path = tables_dir / "efficacy.html"
    _atomic_write(html_path, html)
    if log is not None:
        log.info(
            "tables",
            "efficacy",
            f"efficacy table: {len(blocks)} parameters, {len(ard)} analysis results",
        )
    return [ard_path, csv_path, html_path]

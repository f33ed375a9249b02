"""The seed paper's efficacy table from ADEFF: Wilcoxon signed-rank test of change from baseline
per parameter and post-baseline analysis visit, as CSV and as an HTML page with a plot.

Which dataset, population flag, parameters and visits: `tables.yaml` (`efficacy`) in the study's
spec folder. Records analysed: ANL01FL = Y, the population flag = Y in ADSL, non-missing CHG.
The arithmetic (exact p over all sign flips with ties kept, rank-biserial effect size) is
`cdiscforge.stats`; this module only selects records, formats numbers and draws the plot.
Output is deterministic: fixed float formatting, sorted rows, no timestamps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cdiscforge.errors import SpecError
from cdiscforge.model import Dataset
from cdiscforge.spec import StudySpec, load_yaml
from cdiscforge.stats import wilcoxon_signed_rank

COLUMNS = ["PARAMCD", "AVISIT", "AVISITN", "N", "MEDIAN_AVAL", "MEDIAN_CHG", "Z", "P",
           "P_METHOD", "ES", "R_Z"]  # fmt: skip


@dataclass(frozen=True)
class EfficacyConfig:
    dataset: str
    population: str | None
    parameters: list[str]
    visits: list[float]
    plot_title: str
    plot_parameters: list[str]
    plot_visits: list[float]


def load_config(study: StudySpec, file: str = "tables.yaml") -> EfficacyConfig:
    """The `efficacy` block of the study's tables spec, checked."""
    path = study.folder / file
    data = load_yaml(path)
    block = data.get("efficacy") if isinstance(data, dict) else None
    if not isinstance(block, dict):
        raise SpecError(path, "efficacy", "missing: the efficacy table needs its parameters")
    try:
        plot = block.get("plot", {})
        return EfficacyConfig(
            dataset=str(block.get("dataset", "ADEFF")),
            population=block.get("population"),
            parameters=[str(p) for p in block["parameters"]],
            visits=[float(v) for v in block["visits"]],
            plot_title=str(plot.get("title", "")),
            plot_parameters=[str(p) for p in plot.get("parameters", [])],
            plot_visits=[float(v) for v in plot.get("visits", [])],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(path, "efficacy", f"malformed: {exc}") from exc


def analysis_records(datasets: Mapping[str, Dataset], cfg: EfficacyConfig) -> pd.DataFrame:
    """ANL01FL = Y records of the configured parameters, in the population (ADSL flag = Y)."""
    if cfg.dataset not in datasets:
        raise SpecError("tables.yaml", "efficacy.dataset", f"{cfg.dataset} was not built")
    frame = datasets[cfg.dataset].frame
    keep = (frame["ANL01FL"] == "Y").fillna(False) & frame["PARAMCD"].isin(cfg.parameters)
    if cfg.population:
        adsl = datasets["ADSL"].frame
        members = adsl.loc[(adsl[cfg.population] == "Y").fillna(False), "USUBJID"]
        keep &= frame["USUBJID"].isin(members)
    cols = ["USUBJID", "PARAMCD", "AVISIT", "AVISITN", "AVAL", "CHG"]
    out = frame.loc[keep.to_numpy(dtype=bool), cols].copy()
    out["AVISITN"] = out["AVISITN"].astype("Float64")
    return out


def _num(value: float, digits: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _quantiles(values: pd.Series) -> tuple[float, float, float]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])  # linear interpolation (type 7)
    return (float(q1), float(med), float(q3))


def efficacy_rows(records: pd.DataFrame, cfg: EfficacyConfig) -> list[dict[str, Any]]:
    """One row per parameter and post-baseline visit with the raw (unformatted) statistics."""
    rows = []
    for paramcd in cfg.parameters:
        for visitn in cfg.visits:
            sel = records[(records["PARAMCD"] == paramcd) & (records["AVISITN"] == visitn)]
            sel = sel[sel["CHG"].notna()]
            names = sel["AVISIT"].dropna().unique().tolist()
            if sel.empty:
                continue
            test = wilcoxon_signed_rank(sel["CHG"].to_numpy(dtype=float))
            rows.append(
                {
                    "PARAMCD": paramcd,
                    "AVISIT": str(names[0]),
                    "AVISITN": visitn,
                    "N": len(sel),
                    "AVAL_Q": _quantiles(sel["AVAL"]),
                    "CHG_Q": _quantiles(sel["CHG"]),
                    "Z": test.z,
                    "P": test.p,
                    "P_METHOD": test.p_method,
                    "ES": test.es_rank_biserial,
                    "R_Z": test.r_z,
                    "N_ZERO": test.n_zero,
                }
            )
    return rows


def efficacy_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The CSV table: fixed decimals (medians 2, Z 3, p 4 significant-free decimals, ES 3)."""
    out = pd.DataFrame(
        [
            {
                "PARAMCD": r["PARAMCD"],
                "AVISIT": r["AVISIT"],
                "AVISITN": _num(r["AVISITN"], 0),
                "N": str(r["N"]),
                "MEDIAN_AVAL": _num(r["AVAL_Q"][1], 2),
                "MEDIAN_CHG": _num(r["CHG_Q"][1], 2),
                "Z": _num(r["Z"], 3),
                "P": _num(r["P"], 6),
                "P_METHOD": r["P_METHOD"],
                "ES": _num(r["ES"], 3),
                "R_Z": _num(r["R_Z"], 3),
            }
            for r in rows
        ],
        columns=COLUMNS,
    )
    return out


# --- the plot ----------------------------------------------------------------------------------

_COLOURS = ["#1b6ca8", "#c0392b", "#2e8b57", "#8e44ad"]


def plot_svg(
    records: pd.DataFrame, cfg: EfficacyConfig, width: int = 640, height: int = 360
) -> dict[str, Any]:
    """Geometry of the median-and-IQR plot by visit (drawn by the template as inline SVG).

    x: analysis visits (equally spaced, labelled with AVISIT); y: AVAL from 0 to the largest
    upper quartile. Each parameter: a line through the medians and a band from Q1 to Q3.
    """
    # The right margin leaves room for the last visit label, centred on its tick.
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
        loader=PackageLoader("adam", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def write_efficacy_tables(
    datasets: Mapping[str, Dataset], study: StudySpec, tables_dir: Path
) -> list[Path]:
    """Write `efficacy.csv` and `efficacy.html` into `tables_dir`; returns their paths."""
    cfg = load_config(study)
    records = analysis_records(datasets, cfg)
    rows = efficacy_rows(records, cfg)
    table = efficacy_frame(rows)
    tables_dir.mkdir(parents=True, exist_ok=True)
    csv_path = tables_dir / "efficacy.csv"
    _atomic_write(csv_path, table.to_csv(index=False, lineterminator="\n"))
    html_rows = [
        {
            **t,
            "AVAL_IQR": f"{_num(r['AVAL_Q'][0], 2)} to {_num(r['AVAL_Q'][2], 2)}",
            "CHG_IQR": f"{_num(r['CHG_Q'][0], 2)} to {_num(r['CHG_Q'][2], 2)}",
            "N_ZERO": r["N_ZERO"],
        }
        for t, r in zip(table.to_dict("records"), rows, strict=True)
    ]
    html = (
        _env()
        .get_template("efficacy.html.j2")
        .render(
            study=study.config.study,
            population=cfg.population or "all subjects",
            dataset=cfg.dataset,
            rows=html_rows,
            plot=plot_svg(records, cfg),
        )
    )
    html_path = tables_dir / "efficacy.html"
    _atomic_write(html_path, html)
    return [csv_path, html_path]

"""The efficacy table of the default build: the paper's figures, a statistician's recompute from
ADEFF with scipy (1e-9), the CSR layout and footnote counts, determinism, and a study without
an efficacy block building and publishing through the real CLI."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from cdiscforge import (
    adam,  # noqa: F401  (registers the ADaM rules)
    sdtm,  # noqa: F401
)
from cdiscforge.adam.tables import format_p, load_config, write_efficacy_tables
from cdiscforge.spec import load_study

PARAMS = ["SJC66", "TJC68", "CRP", "ESR", "IL6", "TNFA"]
VISITS = [1, 4, 8, 12, 26, 52]


@pytest.fixture(scope="module")
def tables(built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    study, ds = built
    paths = write_efficacy_tables(ds, study, tmp_path_factory.mktemp("tables"))
    return {p.name: p for p in paths}


@pytest.fixture(scope="module")
def ard(tables: dict[str, Path]) -> pd.DataFrame:
    return pd.read_csv(tables["efficacy_ard.csv"], dtype={"AVISIT": str})


def _stat(ard: pd.DataFrame, param: str, visit: float, var: str, stat: str) -> float:
    sel = ard[
        (ard["PARAMCD"] == param)
        & (ard["AVISITN"] == visit)
        & (ard["ANALVAR"] == var)
        & (ard["STAT"] == stat)
    ]
    assert len(sel) == 1, (param, visit, var, stat)
    return float(sel["VALUE"].iloc[0])


def test_default_table_meets_the_paper(ard: pd.DataFrame) -> None:
    """Issue 13's targets, on the built table (ES = |Z|/sqrt(N), asymptotic p)."""

    def s(p: str, v: float, stat: str) -> float:
        return _stat(ard, p, v, "CHG", stat)

    assert s("SJC66", 52, "ES") == pytest.approx(0.83, abs=0.03) and s("SJC66", 52, "P") < 0.01
    # 0.93 +/- 0.05 with p < 0.001: reachable only with 9 equal changes (tests/test_stats.py);
    # all 13 improved gives ES 0.88, p 0.0015, exact p 0.00024
    assert s("TJC68", 52, "ES") == pytest.approx(0.93, abs=0.05)
    assert s("TJC68", 52, "P") < 0.002 and s("TJC68", 52, "P_EXACT") < 0.001
    for week, es, p in ((4, 0.33, 0.229), (52, 0.37, 0.183)):
        assert s("CRP", week, "ES") == pytest.approx(es, abs=0.03)
        assert s("CRP", week, "P") > 0.05 and s("CRP", week, "P") == pytest.approx(p, abs=0.03)
    for param in ("TNFA", "IL6", "ESR"):
        for week in VISITS:
            assert s(param, week, "P") > 0.05, (param, week)
    for param in ("SJC66", "TJC68"):
        for week in VISITS[:-1]:
            assert s(param, week, "ES") >= 0.3, (param, week)
    assert _stat(ard, "SJC66", 0, "AVAL", "MEDIAN") == pytest.approx(12, abs=3)
    assert _stat(ard, "TJC68", 0, "AVAL", "MEDIAN") == pytest.approx(20, abs=3)
    assert _stat(ard, "SJC66", 52, "AVAL", "MEDIAN") <= 2
    assert _stat(ard, "TJC68", 52, "AVAL", "MEDIAN") <= 2
    assert [_stat(ard, "SJC66", v, "AVAL", "N") for v in VISITS] == [15, 14, 13, 15, 14, 13]


def _exact_p(changes: np.ndarray) -> float:
    """Exact two-sided p by listing every sign assignment of the (tied) ranks."""
    nz = changes[changes != 0]
    ranks = sps.rankdata(np.abs(nz))
    signs = np.array(list(itertools.product([0, 1], repeat=len(nz))), dtype=float)
    sums = signs @ ranks
    centre = ranks.sum() / 2
    return float(np.mean(np.abs(sums - centre) >= abs(ranks[nz > 0].sum() - centre) - 1e-9))


def test_statistician_recompute_from_adeff_with_scipy(built, ard: pd.DataFrame) -> None:
    """Independent of adam.tables and cdiscforge.stats: ADEFF and ADSL read with pandas, the
    test run by scipy on changes rounded to the collected precision; every figure to 1e-9."""
    _, ds = built
    adsl = ds["ADSL"].frame
    eff = ds["ADEFF"].frame
    members = set(adsl.loc[adsl["EFFFL"] == "Y", "USUBJID"])
    eff = eff[(eff["ANL01FL"] == "Y") & eff["USUBJID"].isin(members)]
    checked = 0
    for param in PARAMS:
        par = eff[eff["PARAMCD"] == param]
        aval = par["AVAL"].astype(float)
        decimals = next(d for d in range(10) if np.allclose(aval, aval.round(d), atol=1e-9))
        for visit in [0, *VISITS]:
            sel = par[par["AVISITN"] == visit]
            a = sel["AVAL"].astype(float)
            expected = {
                ("AVAL", "N"): len(a),
                ("AVAL", "MEAN"): a.mean(),
                ("AVAL", "MEDIAN"): a.median(),
                ("AVAL", "Q1"): a.quantile(0.25),
                ("AVAL", "Q3"): a.quantile(0.75),
                ("AVAL", "MIN"): a.min(),
                ("AVAL", "MAX"): a.max(),
                ("AVAL", "SD"): a.std(),
            }
            if visit:
                c = sel["CHG"].dropna().astype(float)
                rounded = c.round(decimals).to_numpy()
                res = sps.wilcoxon(rounded, zero_method="wilcox", correction=False, method="approx")
                nz = rounded[rounded != 0]
                ranks = sps.rankdata(np.abs(nz))
                tp, tm = ranks[nz > 0].sum(), ranks[nz < 0].sum()
                expected |= {
                    ("CHG", "N"): len(c),
                    ("CHG", "MEAN"): c.mean(),
                    ("CHG", "SD"): c.std(),
                    ("CHG", "MEDIAN"): c.median(),
                    ("CHG", "P"): res.pvalue,
                    ("CHG", "ES"): abs(res.zstatistic) / np.sqrt(len(c)),
                    ("CHG", "P_EXACT"): _exact_p(rounded),
                    ("CHG", "RB"): abs(tp - tm) / (tp + tm),
                    ("CHG", "N_NONZERO"): len(nz),
                }
                assert abs(_stat(ard, param, visit, "CHG", "Z")) == pytest.approx(
                    abs(res.zstatistic), abs=1e-9
                )
            for (var, stat), value in expected.items():
                got = _stat(ard, param, visit, var, stat)
                assert got == pytest.approx(float(value), abs=1e-9), (param, visit, var, stat)
                checked += 1
    assert checked > 400


def test_csr_page_layout_and_footnote_counts(built, tables: dict[str, Path]) -> None:
    _, ds = built
    html = tables["efficacy.html"].read_text(encoding="utf-8")
    assert "Efficacy population (N = 15)" in html
    for param in ds["ADEFF"].frame["PARAM"].dropna().unique():
        assert str(param) in html
    assert "Swollen Joint Count (66) (joints)" in html
    assert html.count('<tr class="base">') == len(PARAMS)  # one baseline row per block
    assert "&lt; 0.001" in html and "0.000000" not in html
    assert "|Z| / sqrt(N)" in html and "without continuity correction" in html
    assert "Week 52 days 275 to 455 (target 365)" in html
    assert "<svg" in html and "<polyline" in html
    # imputation counts come from the data
    eff = ds["ADEFF"].frame
    members = set(ds["ADSL"].frame.query("EFFFL == 'Y'")["USUBJID"])
    anl = eff[(eff["ANL01FL"] == "Y") & eff["USUBJID"].isin(members)]
    half = anl[anl["DTYPE"] == "HALFLLOQ"]
    assert len(half) > 0
    assert f"(DTYPE = HALFLLOQ) ({len(half)} records in {half['USUBJID'].nunique()} " in html
    mk = ds["MK"].frame
    ne = mk[(mk["MKSTAT"] == "NOT DONE") & mk["USUBJID"].isin(members)]
    assert len(ne) > 0
    assert f"counted 0 in the joint counts ({len(ne)} records in " in html


def test_display_csv_is_rendered_from_the_ard(tables: dict[str, Path], ard: pd.DataFrame) -> None:
    t = pd.read_csv(tables["efficacy.csv"], dtype=str, keep_default_na=False)
    row = t[(t["PARAMCD"] == "SJC66") & (t["AVISITN"] == "52")].iloc[0]
    assert row["ES"] == f"{_stat(ard, 'SJC66', 52, 'CHG', 'ES'):.2f}"
    assert row["P"] == format_p(_stat(ard, "SJC66", 52, "CHG", "P"))
    assert row["CHG_N"] == f"{int(_stat(ard, 'SJC66', 52, 'CHG', 'N'))}"
    base = t[(t["PARAMCD"] == "CRP") & (t["AVISITN"] == "0")].iloc[0]
    assert base["AVISIT"] == "Baseline" and base["CHG_N"] == "" and base["P"] == ""
    assert list(t["PARAMCD"].unique()) == PARAMS


def test_p_format() -> None:
    assert format_p(0.000061) == "< 0.001"
    assert format_p(0.0) == "< 0.001"
    assert format_p(0.001) == "0.001"
    assert format_p(0.2294) == "0.229"
    assert format_p(float("nan")) == "NE"


def test_tables_are_deterministic(built, tmp_path: Path) -> None:
    study, ds = built
    a = write_efficacy_tables(ds, study, tmp_path / "a")
    b = write_efficacy_tables(ds, study, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_headline_comes_from_the_spec(built, tmp_path: Path) -> None:
    """Swap headline and secondary in a copy of tables.yaml: the page's columns follow."""
    study, ds = built
    spec = tmp_path / "spec"
    shutil.copytree(study.folder, spec)
    path = spec / "tables.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    st = data["efficacy"]["statistics"]
    st["headline"], st["secondary"] = st["secondary"], st["headline"]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    other = load_study(spec)
    cfg = load_config(other)
    assert cfg is not None and [c.stat for c in cfg.columns] == ["P_EXACT", "RB", "Z", "P", "ES"]
    out = write_efficacy_tables(ds, other, tmp_path / "t")
    header = out[1].read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[-5:] == ["P_EXACT", "RB", "Z", "P", "ES"]
    assert "Headline statistics (declared in tables.yaml): Exact p, Rank-biserial r." in (
        out[2].read_text(encoding="utf-8")
    )


def test_study_without_efficacy_block_builds_and_publishes(
    seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """Real CLI, a copy of the bundled spec minus the efficacy block: exit 0, published, no
    tables folder, nothing about tables in the manifest, the log says why."""
    spec = tmp_path / "nct03691909"
    shutil.copytree(seed_spec, spec)
    path = spec / "tables.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["efficacy"]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", "build", "--spec", str(spec), "--raw",
         str(default_raw), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "adam" / "adeff.xpt").is_file()
    assert not (out / "tables").exists()
    manifest = json.loads((out / "cdiscforge-manifest.json").read_text(encoding="utf-8"))
    assert not [f for f in json.dumps(manifest).split('"') if f.startswith("tables/")]
    assert "no efficacy block in tables.yaml" in (out / "build.log").read_text(encoding="utf-8")

"""Time cdiscforge's XPT v5 writer against pyreadstat.write_xport on a 1-million-row LB.

A script that measures, not a test: run `python benchmarks/xpt_write.py [--rows N]`. Both
writers get the same frame in the same run; ours includes its conformance checks and length
fitting (the real write path). Both files are read back with pyreadstat to confirm they hold
the same rows before the figures are printed. The target is ours >= 5x pyreadstat.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from cdiscforge.model import Dataset, Variable
from cdiscforge.xpt import write_xpt

# (LBTESTCD, LBTEST, LBCAT, original unit, standard unit, factor, mean, sd, low, high)
TESTS = [
    ("ALT", "Alanine Aminotransferase", "CHEMISTRY", "U/L", "U/L", 1.0, 25, 10, 7, 56),
    ("AST", "Aspartate Aminotransferase", "CHEMISTRY", "U/L", "U/L", 1.0, 24, 8, 10, 40),
    ("CREAT", "Creatinine", "CHEMISTRY", "mg/dL", "umol/L", 88.42, 0.9, 0.2, 0.6, 1.2),
    ("GLUC", "Glucose", "CHEMISTRY", "mg/dL", "mmol/L", 0.0555, 95, 15, 70, 110),
    ("CRP", "C Reactive Protein", "CHEMISTRY", "mg/L", "mg/L", 1.0, 8, 6, 0, 5),
    ("HGB", "Hemoglobin", "HEMATOLOGY", "g/dL", "g/L", 10.0, 13.5, 1.5, 12, 17),
    ("WBC", "Leukocytes", "HEMATOLOGY", "10^3/uL", "10^9/L", 1.0, 7, 2, 4, 11),
    ("PLAT", "Platelets", "HEMATOLOGY", "10^3/uL", "10^9/L", 1.0, 250, 60, 150, 400),
    ("ESR", "Erythrocyte Sedimentation Rate", "HEMATOLOGY", "mm/h", "mm/h", 1.0, 25, 12, 0, 20),
]
VISITS = [
    (1.0, "SCREENING", -14),
    (2.0, "BASELINE", 1),
    (3.0, "WEEK 1", 8),
    (4.0, "WEEK 4", 29),
    (5.0, "WEEK 8", 57),
    (6.0, "WEEK 12", 85),
    (7.0, "WEEK 26", 183),
    (8.0, "WEEK 52", 365),
]

VARIABLES = [
    Variable("STUDYID", "Study Identifier"),
    Variable("DOMAIN", "Domain Abbreviation"),
    Variable("USUBJID", "Unique Subject Identifier"),
    Variable("LBSEQ", "Sequence Number", type="Num"),
    Variable("LBTESTCD", "Lab Test or Examination Short Name"),
    Variable("LBTEST", "Lab Test or Examination Name"),
    Variable("LBCAT", "Category for Lab Test"),
    Variable("LBORRES", "Result or Finding in Original Units"),
    Variable("LBORRESU", "Original Units"),
    Variable("LBSTRESC", "Character Result/Finding in Std Format"),
    Variable("LBSTRESN", "Numeric Result/Finding in Standard Units", type="Num"),
    Variable("LBSTRESU", "Standard Units"),
    Variable("LBNRIND", "Reference Range Indicator"),
    Variable("VISITNUM", "Visit Number", type="Num"),
    Variable("VISIT", "Visit Name"),
    Variable("LBDTC", "Date/Time of Specimen Collection"),
    Variable("LBDY", "Study Day of Specimen Collection", type="Num"),
]


def lb_frame(rows: int, seed: int = 20240517) -> pd.DataFrame:
    """An LB-shaped frame: subjects x visits x tests, ~2% missing results, built vectorised."""
    rng = np.random.default_rng(seed)
    n_tests, n_visits = len(TESTS), len(VISITS)
    record = np.arange(rows)
    test = record % n_tests
    visit = (record // n_tests) % n_visits
    subject = record // (n_tests * n_visits)
    tests = pd.DataFrame(
        TESTS, columns=["cd", "name", "cat", "ou", "su", "factor", "mean", "sd", "lo", "hi"]
    )
    visits = pd.DataFrame(VISITS, columns=["num", "name", "day"])

    original = np.round(
        np.abs(rng.normal(tests["mean"].to_numpy()[test], tests["sd"].to_numpy()[test])), 2
    )
    missing = rng.random(rows) < 0.02
    standard = np.round(original * tests["factor"].to_numpy()[test], 3)
    standard[missing] = np.nan
    low, high = tests["lo"].to_numpy()[test], tests["hi"].to_numpy()[test]
    nrind = np.where(original < low, "LOW", np.where(original > high, "HIGH", "NORMAL"))

    def text(values: np.ndarray, mask: np.ndarray = missing) -> pd.Series:
        return pd.Series(values, dtype="str").mask(mask)

    day = visits["day"].to_numpy()[visit] + rng.integers(-2, 3, rows)
    start = pd.Timestamp("2019-03-01") + pd.to_timedelta((subject % 400) * 3, unit="D")
    when = (
        start
        + pd.to_timedelta(day - 1, unit="D")
        + pd.to_timedelta(rng.integers(7 * 60, 17 * 60, rows), unit="min")
    )
    site = 101 + subject % 4
    usubjid = (
        "NCT03691909-"
        + pd.Series(site, dtype="str")
        + "-"
        + pd.Series(subject + 1, dtype="str").str.zfill(4)
    )
    return pd.DataFrame(
        {
            "STUDYID": pd.Series(np.full(rows, "NCT03691909"), dtype="str"),
            "DOMAIN": pd.Series(np.full(rows, "LB"), dtype="str"),
            "USUBJID": usubjid,
            "LBSEQ": (record % (n_tests * n_visits) + 1).astype("float64"),
            "LBTESTCD": pd.Series(tests["cd"].to_numpy()[test], dtype="str"),
            "LBTEST": pd.Series(tests["name"].to_numpy()[test], dtype="str"),
            "LBCAT": pd.Series(tests["cat"].to_numpy()[test], dtype="str"),
            "LBORRES": text(original.astype(str)),
            "LBORRESU": pd.Series(tests["ou"].to_numpy()[test], dtype="str"),
            "LBSTRESC": text(np.char.mod("%g", standard)),
            "LBSTRESN": standard,
            "LBSTRESU": pd.Series(tests["su"].to_numpy()[test], dtype="str"),
            "LBNRIND": text(nrind),
            "VISITNUM": visits["num"].to_numpy()[visit],
            "VISIT": pd.Series(visits["name"].to_numpy()[visit], dtype="str"),
            "LBDTC": pd.Series(when.strftime("%Y-%m-%dT%H:%M"), dtype="str"),
            "LBDY": day.astype("float64"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    frame = lb_frame(args.rows)
    print(f"built LB frame: {len(frame):,} rows x {frame.shape[1]} columns "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    labels = {v.name: v.label for v in VARIABLES}

    with tempfile.TemporaryDirectory() as tmp:
        ours_path = Path(tmp) / "lb.xpt"
        theirs_path = Path(tmp) / "pyreadstat" / "lb.xpt"
        theirs_path.parent.mkdir()
        dataset = Dataset("LB", "Laboratory Test Results", frame, [
            Variable(v.name, v.label, v.type) for v in VARIABLES
        ])  # fmt: skip

        t0 = time.perf_counter()
        write_xpt(dataset, ours_path, created=datetime(2024, 5, 17))
        ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        pyreadstat.write_xport(
            frame, str(theirs_path), file_label="Laboratory Test Results",
            column_labels=labels, table_name="LB", file_format_version=5,
        )  # fmt: skip
        theirs = time.perf_counter() - t0

        ours_back, _ = pyreadstat.read_xport(str(ours_path))
        theirs_back, _ = pyreadstat.read_xport(str(theirs_path))
        pd.testing.assert_frame_equal(ours_back, theirs_back)
        sizes = ours_path.stat().st_size, theirs_path.stat().st_size

    rows = len(frame)
    print(f"cdiscforge write_xpt : {ours:7.2f} s  {rows / ours:>12,.0f} rows/s  "
          f"{sizes[0] / 1e6:,.0f} MB")  # fmt: skip
    print(f"pyreadstat write_xport: {theirs:7.2f} s  {rows / theirs:>12,.0f} rows/s  "
          f"{sizes[1] / 1e6:,.0f} MB")  # fmt: skip
    print(
        f"ratio (ours / pyreadstat rows/s): {theirs / ours:.1f}x  (target >= 5x); "
        "both files read back identical with pyreadstat"
    )


if __name__ == "__main__":
    main()

"""ADaM derivations on hand-made cases, one test per case named in their docstrings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdiscforge.adam.bds import (
    analysis_flag,
    assign_window,
    baseline_flag,
    baseline_value,
    censored_value,
    change,
    percent_change,
)
from cdiscforge.adam.dates import impute_dates, relative_day
from cdiscforge.adam.occds import first_occurrence, treatment_emergent
from cdiscforge.adam.params import count_positive

D = pd.Timestamp
WINDOWS = pd.DataFrame(
    {
        "AVISITN": [0, 1, 4],
        "AVISIT": ["BASELINE", "WEEK 1", "WEEK 4"],
        "target": [1, 8, 29],
        "low": [-14, 2, 19],
        "high": [1, 18, 43],
    }
)


def _bds(rows: list[tuple]) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=["USUBJID", "PARAMCD", "ADT", "AVAL"])
    f["ADT"] = pd.to_datetime(f["ADT"])
    f["TRTSDT"] = D("2019-01-10")
    f["AVAL"] = f["AVAL"].astype("Float64")
    return f


# --- baseline, BASE, CHG --------------------------------------------------------------------


def test_baseline_is_last_non_missing_on_or_before_treatment_start() -> None:
    f = _bds(
        [
            ("S1", "CRP", "2018-12-01", 5.0),  # screening
            ("S1", "CRP", "2019-01-10", None),  # infusion day, missing value: never baseline
            ("S1", "CRP", "2019-01-17", 3.0),
            ("S2", "CRP", "2019-01-10", 8.0),  # infusion day counts as pre-dose
            ("S2", "CRP", "2019-01-17", 6.0),
        ]
    )
    flag = baseline_flag(f, ["USUBJID", "PARAMCD"], "ADT", "TRTSDT", "AVAL")
    assert flag.fillna("").tolist() == ["Y", "", "", "Y", ""]
    f["ABLFL"] = flag
    base = baseline_value(f, ["USUBJID", "PARAMCD"], "ABLFL", "AVAL")
    assert base.tolist() == [5.0, 5.0, 5.0, 8.0, 8.0]
    post = relative_day(f["ADT"], f["TRTSDT"]) > 1
    chg = change(f["AVAL"], base, post)
    assert chg.isna().tolist() == [True, True, False, True, False]
    assert chg.dropna().tolist() == [-2.0, -2.0]


def test_missing_baseline_gives_null_base_and_change() -> None:
    f = _bds([("S1", "SJC66", "2019-01-17", 4.0), ("S1", "SJC66", "2019-02-07", 2.0)])
    f["ABLFL"] = baseline_flag(f, ["USUBJID", "PARAMCD"], "ADT", "TRTSDT", "AVAL")
    assert f["ABLFL"].isna().all()
    base = baseline_value(f, ["USUBJID", "PARAMCD"], "ABLFL", "AVAL")
    assert base.isna().all()
    assert change(f["AVAL"], base, pd.Series(True, index=f.index)).isna().all()


def test_two_baseline_candidates_on_one_day_tie_rule() -> None:
    f = _bds([("S1", "CRP", "2019-01-10", 4.0), ("S1", "CRP", "2019-01-10", 6.0)])
    by = ["USUBJID", "PARAMCD"]
    assert baseline_flag(f, by, "ADT", "TRTSDT", "AVAL", "last").fillna("").tolist() == ["", "Y"]
    assert baseline_flag(f, by, "ADT", "TRTSDT", "AVAL", "first").fillna("").tolist() == ["Y", ""]


def test_untreated_subject_has_no_baseline() -> None:
    f = _bds([("S1", "CRP", "2018-12-01", 5.0)])
    f["TRTSDT"] = pd.NaT
    assert baseline_flag(f, ["USUBJID", "PARAMCD"], "ADT", "TRTSDT", "AVAL").isna().all()


def test_percent_change_is_null_from_a_zero_baseline() -> None:
    pchg = percent_change(pd.Series([2.0, -3.0, 1.0]), pd.Series([4.0, 6.0, 0.0]))
    assert pchg.tolist()[:2] == [50.0, -50.0]
    assert pd.isna(pchg.iloc[2])


# --- windows and ANL01FL ----------------------------------------------------------------------


def test_windows_include_both_ends_and_leave_gaps_null() -> None:
    days = pd.Series([-14, 1, 2, 18, 19, 43, 44, None, -20], dtype="Float64")
    assert assign_window(days, WINDOWS).tolist() == [0, 0, 1, 1, 2, 2, -1, -1, -1]


def test_two_records_in_one_window_closest_to_target_then_later() -> None:
    f = pd.DataFrame(
        {
            "USUBJID": ["S1"] * 5,
            "PARAMCD": ["CRP"] * 5,
            "AVISITN": [1.0, 1.0, 4.0, 4.0, 4.0],
            "ADY": [6.0, 9.0, 27.0, 31.0, 29.0],  # week 1: 9 is closer to 8
            "AVAL": [1.0, 2.0, 3.0, 4.0, None],  # week 4: 29 has no value; 27 and 31 tie
        }
    )
    target = f["AVISITN"].map({1.0: 8.0, 4.0: 29.0})
    later = analysis_flag(f, ["USUBJID", "PARAMCD"], "AVISITN", "ADY", "AVAL", target)
    assert later.fillna("").tolist() == ["", "Y", "", "Y", ""]
    earlier = analysis_flag(
        f, ["USUBJID", "PARAMCD"], "AVISITN", "ADY", "AVAL", target, tie="earlier"
    )
    assert earlier.fillna("").tolist() == ["", "Y", "Y", "", ""]


def test_baseline_record_wins_its_window() -> None:
    f = pd.DataFrame(
        {
            "USUBJID": ["S1", "S1"],
            "PARAMCD": ["CRP", "CRP"],
            "AVISITN": [0.0, 0.0],
            "ADY": [-3.0, 1.0],
            "AVAL": [1.0, 2.0],
            "ABLFL": ["Y", None],  # e.g. the day-1 record was taken after the infusion
        }
    )
    target = pd.Series([1.0, 1.0])
    flag = analysis_flag(f, ["USUBJID", "PARAMCD"], "AVISITN", "ADY", "AVAL", target, "ABLFL")
    assert flag.fillna("").tolist() == ["Y", ""]


# --- dates and imputation -------------------------------------------------------------------


def test_relative_day_has_no_day_zero() -> None:
    ref = pd.Series([D("2019-01-10")] * 3)
    days = relative_day(pd.Series([D("2019-01-09"), D("2019-01-10"), D("2019-01-11")]), ref)
    assert days.tolist() == [-1.0, 1.0, 2.0]


def test_start_date_imputation_cases() -> None:
    iso = pd.Series(["2019-01-15", "2019-03", "2019", None, "2019-01", "2019-01", "2018"])
    trt = pd.Series([D("2019-01-10")] * 7)
    got = impute_dates(iso, fill="first", min_date=trt)
    assert got["date"].tolist()[:3] == [D("2019-01-15"), D("2019-03-01"), D("2019-01-10")]
    assert pd.isna(got["date"].iloc[3])
    # partial start in the infusion month: not placed before the infusion
    assert got["date"].iloc[4] == D("2019-01-10")
    # treatment start outside the possible range (2018): first day of the year as usual
    assert got["date"].iloc[6] == D("2018-01-01")
    assert got["flag"].fillna("").tolist() == ["", "D", "M", "", "D", "D", "M"]


def test_start_date_never_imputed_after_the_end_date() -> None:
    # Start known only as "2018", ended 2018-11-12, infusion 2018-11-19: the start cannot be
    # the infusion date (it would follow the end), so it is the first possible day.
    # Start "2018-11", ended 2018-11-25 after the infusion: the infusion date is possible.
    iso = pd.Series(["2018", "2018-11", "2018-11"])
    end = pd.Series([D("2018-11-12"), D("2018-11-25"), D("2018-11-15")])
    trt = pd.Series([D("2018-11-19")] * 3)
    got = impute_dates(iso, fill="first", min_date=trt, not_after=end)
    assert got["date"].tolist() == [D("2018-01-01"), D("2018-11-19"), D("2018-11-01")]
    assert got["flag"].tolist() == ["M", "D", "D"]


def test_end_date_imputation_is_capped_at_end_of_study() -> None:
    iso = pd.Series(["2019-04", "2019-02", "2019-02-28"])
    eos = pd.Series([D("2019-04-12")] * 3)
    got = impute_dates(iso, fill="last", max_date=eos)
    assert got["date"].tolist() == [D("2019-04-12"), D("2019-02-28"), D("2019-02-28")]
    assert got["flag"].fillna("").tolist() == ["D", "D", ""]


def test_leap_year_last_day() -> None:
    got = impute_dates(pd.Series(["2020-02"]), fill="last")
    assert got["date"].iloc[0] == D("2020-02-29")


# --- TRTEMFL and first occurrence -------------------------------------------------------------


def test_trtemfl_cases_in_order() -> None:
    t0 = D("2019-01-10")
    start = pd.Series([D("2019-01-12"), D("2018-12-20"), pd.NaT, D("2019-01-10"), D("2018-12-20"),
                       D("2019-01-12"), D("2021-01-01")])  # fmt: skip
    end = pd.Series([D("2019-01-20"), D("2018-12-25"), D("2019-01-20"), pd.NaT, D("2019-02-01"),
                     D("2019-01-13"), pd.NaT])  # fmt: skip
    trt = pd.Series([t0, t0, t0, t0, t0, pd.NaT, t0])
    flag = treatment_emergent(start, end, trt, trt, window_days=365)
    # after; ended before; no start; on the infusion day; started before (still ongoing after);
    # untreated; after the follow-up window
    assert flag.fillna("").tolist() == ["Y", "", "Y", "Y", "", "", ""]


def test_partial_ae_start_in_the_infusion_month_is_treatment_emergent() -> None:
    trt = pd.Series([D("2019-01-10"), D("2019-01-10")])
    start = impute_dates(pd.Series(["2019-01", "2018-12"]), fill="first", min_date=trt)["date"]
    flag = treatment_emergent(start, pd.Series([pd.NaT, pd.NaT]), trt)
    assert flag.fillna("").tolist() == ["Y", ""]


def test_first_occurrence_among_treatment_emergent_records() -> None:
    f = pd.DataFrame(
        {
            "USUBJID": ["S1", "S1", "S1", "S2"],
            "ASTDT": [D("2019-02-01"), D("2019-01-01"), D("2019-03-01"), pd.NaT],
            "AESEQ": [1.0, 2.0, 3.0, 1.0],
            "TRTEMFL": ["Y", None, "Y", "Y"],
        }
    )
    flag = first_occurrence(f, ["USUBJID"], ["ASTDT", "AESEQ"], f["TRTEMFL"] == "Y")
    assert flag.fillna("").tolist() == ["Y", "", "", "Y"]


# --- parameters and analysis values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"), [("zero", [2.0, 1.0]), ("prorate", [2.0, 2.0]), ("missing", [2.0, None])]
)
def test_joint_count_not_evaluable_rules(rule: str, expected: list) -> None:
    f = pd.DataFrame({"USUBJID": ["S1"] * 4 + ["S2"] * 4, "VISITNUM": [3.0] * 8})
    positive = pd.Series([True, True, False, False, True, False, False, False])
    ne = pd.Series([False, False, False, False, False, True, True, False])
    got = count_positive(f, ["USUBJID", "VISITNUM"], positive, ne, rule)
    assert got["N_NE"].tolist() == [0, 2]
    assert [None if pd.isna(v) else v for v in got["AVAL"]] == expected


def test_censored_results() -> None:
    char = pd.Series(["<0.5", ">200", "3.1", None])
    num = pd.Series([np.nan, np.nan, 3.1, np.nan])
    assert censored_value(char, num).tolist()[:3] == [0.25, 200.0, 3.1]
    assert censored_value(char, num, below="limit").iloc[0] == 0.5
    assert pd.isna(censored_value(char, num, below="null", above="null").iloc[1])


def test_censored_dtype_flags_the_imputed_values() -> None:
    from cdiscforge.adam.bds import CensoredTypeParams, censored_dtype
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.rules import RuleContext

    out = pd.DataFrame({"C": ["<0.5", ">200", "3.1", None, "<x"]})
    ctx = RuleContext(None, "ADLB", "DTYPE", out, None, {}, BuildLog())  # type: ignore[arg-type]
    got = censored_dtype(ctx, CensoredTypeParams(char="C"))
    assert [None if pd.isna(v) else v for v in got] == ["HALFLLOQ", "ULOQ", None, None, None]
    got = censored_dtype(ctx, CensoredTypeParams(char="C", below="LLOQ", above=None))
    assert [None if pd.isna(v) else v for v in got] == ["LLOQ", None, None, None, None]


@pytest.mark.parametrize(
    "values",
    [
        pd.array([1.5, None, 3.0, 4.0, 5.0, 6.0], dtype="Float64"),
        np.array([1, 2, 3, 4, 5, 6]),  # ints: float with NaN where a group has no baseline
        pd.array(["N", "H", None, "L", "N", "H"], dtype="string"),
    ],
)
def test_baseline_value_is_the_left_merge_on_the_groups(values: object) -> None:
    f = pd.DataFrame(
        {
            "USUBJID": pd.array(["S1", "S1", "S2", "S2", None, None], dtype="string"),
            "PARAMCD": ["A", "A", "A", "B", "A", "A"],
            "ABLFL": pd.array(["Y", None, "Y", None, None, "Y"], dtype="string"),
            "V": values,
        },
        index=[5, 3, 9, 1, 0, 2],
    )
    by = ["USUBJID", "PARAMCD"]
    right = f[(f["ABLFL"] == "Y").fillna(False).to_numpy(dtype=bool)][[*by, "V"]]
    merged = f[by].merge(right.rename(columns={"V": "__b"}), on=by, how="left")
    expected = pd.Series(merged["__b"].to_numpy(), index=f.index)
    pd.testing.assert_series_equal(baseline_value(f, by, "ABLFL", "V"), expected)

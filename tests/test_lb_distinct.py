"""LB's build worked out per distinct value (issue 15: 10,000 subjects): each fast path must
give exactly what the per-record code it replaced gave, on data with the edge cases planted
(missing values, blanks around a value, distinct values no record has, duplicate keys,
qualifiers, missing factors, -0.0), or the published datasets would change."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import test_sdtm_rules
from test_sdtm_rules import _ctx, _run

from cdiscforge import engine
from cdiscforge.buildlog import BuildLog, Reconciliation
from cdiscforge.rules import RuleContext
from cdiscforge.rules.basic import _result_text
from cdiscforge.spec import StudySpec
from cdiscforge.vectorise import (
    as_text,
    broadcast,
    coded,
    factorize_text,
    forget,
    per_distinct,
    remember_codes,
)

study = test_sdtm_rules.study  # the rule tests' study (a pytest fixture)


def _raw(values: list, n: int, seed: int = 5) -> pd.Series:
    """A raw column of `n` records drawn from `values`, its codes remembered as the raw
    check leaves them (raw.RawForm.distinct)."""
    column = pd.Series(np.random.default_rng(seed).choice(values, n), dtype="string[pyarrow]")
    codes, uniques = factorize_text(column)
    remember_codes(column, pd.Series(uniques, dtype=column.dtype), codes)
    return column


def _same(got: pd.Series, expected: pd.Series) -> None:
    got = as_text(got)
    assert str(got.dtype) == str(expected.dtype)
    assert got.index.equals(expected.index)
    assert [None if pd.isna(v) else v for v in got] == [None if pd.isna(v) else v for v in expected]


def test_per_distinct_on_a_coded_column_is_the_function_on_every_row() -> None:
    forget()
    column = _raw(["b", None, " a", "A", "é"], 400)
    calls: list[int] = []

    def fn(values: pd.Series) -> pd.Series:
        calls.append(len(values))
        return values.str.strip().str.upper() + "!"

    got = per_distinct(fn, column)
    assert calls == [5]  # its distinct values, none of its rows hashed
    pd.testing.assert_series_equal(got, fn(column))
    kept = per_distinct(fn, column, keep_codes=True)
    assert isinstance(kept.dtype, pd.CategoricalDtype)
    _same(kept, fn(column))
    forget()


def test_per_distinct_skips_codes_with_a_value_no_row_has() -> None:
    """A broadcast column's distinct values may hold one no record has (its dtype could then
    differ: a number parsed from a text no row holds): such codes are not used."""
    forget()
    distinct = pd.Series(["1", "2", "1.5"], dtype="string")
    column = broadcast(distinct, np.array([0, 1, 1, 0, 0, 1] * 10), pd.RangeIndex(60))
    assert coded(column) is not None
    got = per_distinct(lambda v: pd.to_numeric(v, errors="coerce"), column)
    pd.testing.assert_series_equal(got, pd.to_numeric(column, errors="coerce"))
    assert got.dtype == "Int64"  # from "1.5" too: Float64
    forget()


def test_assign_of_a_raw_column_is_trimmed_text_kept_as_codes(study: StudySpec) -> None:
    forget()
    raw = pd.DataFrame({"R": _raw(["x ", None, "Y", " y", "z"], 300)})
    raw.index = raw.index * 3  # labels that are not positions
    for upper in (False, True):
        ctx = _ctx(study, pd.DataFrame(index=raw.index), raw)
        ctx.keep_codes = True
        got = _run("assign", ctx, **{"from": "R", "upper": upper})
        expected = raw["R"].str.strip()
        expected = expected.str.upper() if upper else expected
        assert isinstance(got.dtype, pd.CategoricalDtype)
        _same(got, expected)
        ctx.keep_codes = False  # ADaM: text, as before
        plain = _run("assign", ctx, **{"from": "R", "upper": upper})
        pd.testing.assert_series_equal(plain, expected)
    forget()


def test_result_char_per_distinct_combination_is_the_per_record_formula(
    study: StudySpec,
) -> None:
    forget()
    n = 600
    rng = np.random.default_rng(11)
    out = pd.DataFrame(
        {
            "ORRES": _raw(["5.7", "<0.5", ">=100", " 12 ", "HEMOLYSED", None, "1e2", "-0"], n),
            "F": pd.Series(rng.choice([1.0, 10.0, 0.1, -0.0, np.nan], n), dtype="Float64"),
            "D": _raw(["1", "2", None, "0"], n, seed=6),
            "OFF": pd.Series(rng.choice([0.5, -1.0], n), dtype="Float64"),
        }
    )
    out.loc[out["F"].isna() & out["ORRES"].str.contains(r"\d").fillna(False), "F"] = 1.0
    ctx = _ctx(study, out)
    got = _run("result_char", ctx, var="ORRES", factor="F", decimals="D", offset="OFF")
    expected = _result_text(out["ORRES"], out["F"], out["OFF"], out["D"])
    _same(got, expected)
    plain = _run("result_char", ctx, var="ORRES", factor=2.0, decimals=1)
    _same(plain, _result_text(out["ORRES"], 2.0, None, 1))
    forget()


def _visitnum_per_record(ctx: RuleContext, usubjid: pd.Series, day: pd.Series) -> pd.Series:
    """The SV lookup as it was: every record's key built and mapped through all of SV."""
    sv = ctx.domains["SV"].frame
    sv_key = sv["USUBJID"].astype("string") + "|" + sv["SVSTDTC"].astype("string").str[:10]
    sv_map = dict(zip(sv_key, sv["VISITNUM"].astype(float), strict=False))
    return (usubjid + "|" + day).map(sv_map).astype("Float64")


def test_visitnum_unscheduled_looked_up_in_sv_as_every_record_was(study: StudySpec) -> None:
    forget()
    sv = pd.DataFrame(
        {
            "USUBJID": ["A", "A", "A", "B", "B", "C"],
            "SVSTDTC": ["2020-01-05", "2020-01-05T10:00", None, "2020-02-01", None, "2020-03-01"],
            "VISITNUM": pd.Series([3.01, 3.02, 9.0, 4.01, 8.0, 5.01], dtype="Float64"),
        }
    )  # A's 01-05 twice (the last wins), missing dates (one key for all of them)
    raw = pd.DataFrame(
        {
            "V": ["SCR", "unsched ", "UNSCHED", "UNSCHED", "DAY 1", "UNSCHED", "UNSCHED"],
        }
    )
    out = pd.DataFrame(
        {
            "USUBJID": pd.Series(["A", "A", "B", "C", "C", "A", "B"], dtype="string"),
            "DTC": pd.Series(
                ["2020-01-01", "2020-01-05T08:00", "2020-02-01", "2020-03-09", "2020-03-02",
                 "2020-01-20", None], dtype="string"),
        }
    )  # fmt: skip
    ctx = _ctx(study, out, raw)
    ctx.domains = {"SV": SimpleNamespace(frame=sv)}
    got = _run("visitnum", ctx, folder="raw.V", key="lab_visit", date="DTC", unscheduled="UNS")
    from_sv = _visitnum_per_record(ctx, out["USUBJID"], out["DTC"].str[:10])
    unsched = raw["V"].str.strip().str.upper().str.startswith("UNS")
    assert got[unsched & from_sv.notna()].equals(from_sv[unsched & from_sv.notna()])
    # what the per-record lookup gave (main 7a4e6e6): the last of A's two 01-05 visits
    assert got.tolist()[:6] == [1.0, 3.02, 4.01, pytest.approx(3.01), 3.0, pytest.approx(3.03)]
    assert got.tolist()[6] == 8.0  # no date: SV's missing-date key, as the dict gave it
    warned = [e for e in ctx.log.events if "no SV visit on the same date" in e.message]
    assert len(warned) == 1 and warned[0].examples == ["C 2020-03-09", "A 2020-01-20"]
    forget()


def _rejected_per_record(records: pd.DataFrame, dropped: np.ndarray) -> dict[int, int]:
    """The rejected source rows per block as counted before: sets of the rows' numbers."""
    gone = records.iloc[dropped]
    kept = records.drop(records.index[dropped])
    counts = {}
    for i, rows in gone.groupby("__block")["__row"]:
        lost = set(rows) - set(kept.loc[kept["__block"] == i, "__row"])
        if lost:
            counts[int(i)] = len(lost)
    return counts


def test_dedupe_counts_a_split_row_rejected_only_when_none_of_its_records_stays() -> None:
    records = pd.DataFrame(
        {
            "K": pd.Series(["a", "a", "b", "b", "c", "c", "d", "a", "e"], dtype="string"),
            "T": pd.Series(list("xxyyzzwxv"), dtype="string"),
            "__block": [0, 0, 0, 0, 1, 1, 1, 1, 1],
            "__row": [1, 2, 3, 3, 1, 2, 2, 4, 4],  # rows 3 (block 0) and 2, 4 (1): split
        }
    )
    spec = SimpleNamespace(
        dedupe=SimpleNamespace(by=["K", "T"], order=[], keep="first", reason="dup"),
        stage="sdtm",
        name="LB",
    )
    recon = [Reconciliation("f", "f.csv", "LB", 4), Reconciliation("g", "g.csv", "LB", 4)]
    got = engine._dedupe(spec, records.copy(), recon, BuildLog())  # type: ignore[arg-type]
    dropped = np.flatnonzero(records.duplicated(["K", "T"]).to_numpy())
    expected = _rejected_per_record(records, dropped)
    assert {i: r.rejected.get("dup", 0) for i, r in enumerate(recon) if r.rejected} == expected
    pd.testing.assert_frame_equal(got, records.drop(records.index[dropped]))


def test_helper_variables_nothing_reads_are_dropped_before_the_sort(study: StudySpec) -> None:
    spec = study.datasets["LB"]
    records = pd.DataFrame({v.name: [1] for v in spec.variables} | {"__block": [0]})
    unread = engine._unread(spec, records)
    assert unread and all(n.startswith("_") for n in unread)
    assert {"_FACTOR", "_STDUNIT"} <= set(unread)
    kept = {v.name for v in spec.variables if v.keep}
    assert not kept & set(unread) and "__block" not in unread


def _nrind_masked(value: pd.Series, low: pd.Series, high: pd.Series) -> pd.Series:
    """nrind as it was: text masked three times over every record."""
    value, low, high = (pd.to_numeric(s, errors="coerce") for s in (value, low, high))
    out = pd.Series(pd.NA, index=value.index, dtype="string")
    known = value.notna() & (low.notna() | high.notna())
    out = out.mask(known, "NORMAL")
    out = out.mask(known & (value < low).fillna(False), "LOW")
    return out.mask(known & (value > high).fillna(False), "HIGH")


@pytest.mark.parametrize("kind", ["Float64", "float64", "string"])
def test_nrind_codes_are_the_masked_text(study: StudySpec, kind: str) -> None:
    rng = np.random.default_rng(4)
    n = 300
    pick = [1.0, 5.0, 9.0, np.nan, None]

    def column() -> pd.Series:
        values = pd.Series(rng.choice(np.array(pick, dtype=object), n))
        if kind == "string":
            return values.map(lambda v: None if v is None or v != v else f"{v:g}").astype(kind)
        return values.astype(kind)

    out = pd.DataFrame({"N": column(), "LO": column(), "HI": column()})
    out.loc[:9, ["LO", "HI"]] = out.loc[:9, ["HI", "LO"]].to_numpy()  # low above high
    ctx = _ctx(study, out)
    for keep in (False, True):
        ctx.keep_codes = keep
        got = _run("nrind", ctx, var="N", low="LO", high="HI")
        assert isinstance(got.dtype, pd.CategoricalDtype) == keep
        _same(got, _nrind_masked(out["N"], out["LO"], out["HI"]))

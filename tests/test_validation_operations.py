"""The per-distinct-value operations validation and define.xml are built on give the results of
the plain per-record pandas formulations they replace (issue 15: same findings, faster).

Each case is random data with every kind of missing value (None, NaN, pd.NA), blanks, -0.0,
repeated and absent keys, in each column type validation meets (pyarrow strings, "str",
object, categoricals from read_xpt_fast, nullable and plain floats), checked against the
formulation the rules used before: MultiIndex.isin, DataFrame.duplicated, a group-by of
Python objects, Series.isin / map / str methods per record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdiscforge.define.datatypes import define_data_type, significant_digits
from cdiscforge.define.render import _distinct, _distinct_by_group
from cdiscforge.model import Variable, char_max_bytes
from cdiscforge.validation import operations as op

TEXT_TYPES = ["string", "str", object, "category"]
DATES = ["2020-01-01", "2020-01", "2020", "2020-01-01T10:00", "2019-12-31T23:59:59", "bad", " "]
NUMBERS = ["1", " 2.5 ", "-3e4", "abc", "", ".5", "1.", "<5", "NEGATIVE"]


def _text(rng, n: int, pool: list[str], dtype) -> pd.Series:
    values = np.array(pool, dtype=object)[rng.integers(0, len(pool), n)]
    values[rng.random(n) < 0.1] = None
    return pd.Series(values, dtype=dtype)


def _numbers(rng, n: int, k: int) -> pd.Series:
    values = rng.integers(0, k, n).astype(float) + rng.choice([0.0, 0.1, 1e-9], n)
    values[rng.random(n) < 0.1] = np.nan
    values[rng.random(n) < 0.02] = -0.0
    return pd.Series(values, dtype=rng.choice(["float64", "Float64"]))


def _frame(rng, trial: int) -> pd.DataFrame:
    n = int(rng.integers(0, 3000))
    dtype = TEXT_TYPES[trial % len(TEXT_TYPES)]
    k = int(rng.integers(1, 25))
    return pd.DataFrame(
        {
            "A": _text(rng, n, [f"S{i}" for i in range(k)], dtype),
            "B": _numbers(rng, n, 4),
            "C": _text(rng, n, ["x", "y", "z"], dtype),
            "F": _text(rng, n, ["Y", "N", " Y", ""], dtype),
            "D1": _text(rng, n, DATES, dtype),
            "D2": _text(rng, n, DATES, dtype),
            "N": _text(rng, n, NUMBERS, dtype),
        }
    )


def _old_inconsistent(frame: pd.DataFrame, by: list[str], value: str) -> pd.Series:
    rows = frame[by].notna().all(axis=1) & op.present(frame, value)
    if not rows.any():
        return pd.Series(False, index=frame.index)
    sub = frame.loc[rows, [*by, value]].copy()
    for c in sub.columns:
        if pd.api.types.is_numeric_dtype(sub[c]):
            sub[c] = sub[c].astype("float64").round(6)
    n = sub.astype("object").groupby(by, dropna=False)[value].transform("nunique")
    return pd.Series(n > 1, index=sub.index).reindex(frame.index, fill_value=False)


@pytest.mark.parametrize("trial", range(24))
def test_operations_agree_with_per_record_pandas(trial: int) -> None:
    rng = np.random.default_rng(trial)
    f = _frame(rng, trial)
    other = f.sample(frac=0.5, random_state=trial) if len(f) else f
    with op.shared_codes():
        for keys in (["A"], ["A", "B"], ["A", "B", "C"]):
            expected = f.duplicated(subset=keys, keep=False)
            assert op.duplicated_by(f, keys).tolist() == expected.tolist()
            objects = pd.MultiIndex.from_frame(f[keys].astype("object"))
            theirs = pd.MultiIndex.from_frame(other[keys].astype("object"))
            found = objects.isin(theirs) if len(other) else np.zeros(len(f), bool)
            assert op.keys_in([f[k] for k in keys], [other[k] for k in keys]).tolist() == list(
                found
            )
            y = op.text(f["F"]) == "Y"
            y = y.fillna(False).astype(bool)
            flagged = f.loc[y, keys].astype("object").duplicated(keep=False)
            expected = flagged.reindex(f.index, fill_value=False)
            assert op.flagged_more_than_once(f, keys, "F").tolist() == expected.tolist()
        for by, value in ((["A"], "C"), (["B"], "A"), (["A", "C"], "B"), (["C"], "F")):
            expected = _old_inconsistent(f, by, value)
            assert op.inconsistent_within(f, by, value).tolist() == expected.tolist()
        for allowed in (["S1", "x", None], [], ["S1", 1], pd.Series(["S2", None], dtype="string")):
            pd.testing.assert_series_equal(op.isin(f["A"], allowed), f["A"].isin(allowed))
        table = pd.Series(np.arange(3), index=["x", "y", "z"])
        pd.testing.assert_series_equal(op.map_values(f["C"], table), f["C"].map(table))
        stripped = op.as_string(f["N"]).str.strip()
        pd.testing.assert_series_equal(op.text(f["N"]), stripped.where(stripped != ""))
        dates = pd.to_datetime(
            op.as_string(f["D1"]).str.slice(0, 10), format="%Y-%m-%d", errors="coerce"
        )
        pd.testing.assert_series_equal(op.full_dates(f["D1"]), dates)
        as_text = op.as_string(f["B"])
        pd.testing.assert_series_equal(op.per_distinct(op.as_string, f["B"]), as_text)


def test_negative_zero_is_not_merged_with_zero() -> None:
    """A hash table holds -0.0 and 0.0 as one value; str() does not: such a column is
    evaluated per record."""
    values = pd.Series([0.0, -0.0] * 1000)
    assert op.per_distinct(op.as_string, values).tolist() == op.as_string(values).tolist()
    assert set(op.per_distinct(op.as_string, values)) == {"0.0", "-0.0"}
    assert _distinct(values).map(np.signbit).tolist() == [False, True]


@pytest.mark.parametrize("trial", range(12))
def test_define_facts_from_distinct_values_equal_those_of_all_records(trial: int) -> None:
    """define.xml's DataType, Length and SignificantDigits of a variable and of each
    value-level slice come out the same from the distinct values as from every record."""
    rng = np.random.default_rng(100 + trial)
    f = _frame(rng, trial)
    dtc = Variable("XXDTC", "Date", "Char")
    num = Variable("XXSTRESN", "Result", "Num")
    text = Variable("XXORRES", "Result", "Char")
    assert define_data_type(dtc, _distinct(f["D1"])) == define_data_type(dtc, f["D1"])
    assert significant_digits(num, _distinct(f["B"])) == significant_digits(num, f["B"])
    split = f["C"].astype("string")
    codes, uniques = pd.factorize(split)
    for column, var in (("B", num), ("N", text), ("D2", dtc)):
        groups = _distinct_by_group(codes, len(uniques), f[column])
        for k, value in enumerate(uniques.tolist()):
            whole = f.loc[(split == value).fillna(False).to_numpy(dtype=bool), column]
            part = groups[k]
            assert set(part.dropna().tolist()) <= set(whole.dropna().tolist())
            assert define_data_type(var, part) == define_data_type(var, whole)
            assert char_max_bytes(part) == char_max_bytes(whole)
            if var is num:
                assert significant_digits(num, part) == significant_digits(num, whole)

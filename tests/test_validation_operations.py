"""The per-distinct-value operations validation and define.xml are built on give the results of
the plain per-record pandas formulations they replace (issue 15: same findings, faster).

Each case is random data with every kind of missing value (None, NaN, pd.NA), blanks, -0.0,
repeated and absent keys, in each column type validation meets (pyarrow strings, "str",
object, categoricals from read_xpt_fast, nullable and plain floats), checked against the
formulation the rules used before: MultiIndex.isin, DataFrame.duplicated, a group-by of
Python objects, Series.isin / map / str methods per record.
"""

from __future__ import annotations

import contextlib

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


def _planted(rng, n: int) -> pd.DataFrame:
    """A findings-like frame with repeated text, every kind of missing value, blanks and
    planted faults: a value outside the codelist, a bad date, a VISIT named two ways, a
    duplicated key and a subject/visit no reference has."""
    visits = np.array(["SCREENING", "WEEK 1", "WEEK 2", "WEEK 4"], dtype=object)
    num = rng.integers(0, 4, n)
    frame = pd.DataFrame(
        {
            "USUBJID": np.array([f"S-{i:03d}" for i in range(60)], dtype=object)[
                rng.integers(0, 60, n)
            ],
            "TESTCD": np.array(["KNEE", "HIP", "HAND"], dtype=object)[rng.integers(0, 3, n)],
            "VISITNUM": num.astype(float) + rng.choice([0.0, 1e-9], n),
            "VISIT": visits[num],
            "DTC": np.array(DATES, dtype=object)[rng.integers(0, len(DATES), n)],
            "FL": np.array(["Y", None, "N", " "], dtype=object)[rng.integers(0, 4, n)],
        }
    )
    frame["SEQ"] = np.arange(n, dtype=float)
    frame.loc[rng.random(n) < 0.05, "TESTCD"] = None
    frame.loc[rng.random(n) < 0.05, "VISITNUM"] = np.nan
    frame.loc[7, "TESTCD"] = "ELBOW"  # not in the codelist
    frame.loc[8, "VISIT"] = "WEEK 99"  # a second name for its VISITNUM
    frame.loc[9, ["USUBJID", "SEQ"]] = frame.loc[10, ["USUBJID", "SEQ"]].to_list()  # key twice
    frame.loc[11, "USUBJID"] = "S-999"  # no such subject in the reference
    return frame


def _as_categoricals(frame: pd.DataFrame, unused: list[str]) -> pd.DataFrame:
    """The text columns as categoricals (sorted categories) with `unused` categories no
    record has, as a filtered compact frame keeps them."""
    out = frame.copy()
    for column in ("USUBJID", "TESTCD", "VISIT", "DTC", "FL"):
        values = sorted(set(out[column].dropna()) | set(unused))
        out[column] = pd.Categorical(out[column], categories=values)
    assert all(isinstance(out[c].dtype, pd.CategoricalDtype) for c in ("USUBJID", "FL"))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_categorical_columns_give_the_findings_of_text_columns(seed: int) -> None:
    """The categorical paths (codes from the categories, each category evaluated once, the
    pair table of inconsistent_within, keys_in's per-value lookup) find the planted faults
    and give the masks the same data as "str" columns gives."""
    from cdiscforge.validation.native import COLUMN_MAPS

    rng = np.random.default_rng(seed)
    text = _planted(rng, 4000).astype({c: "str" for c in ("USUBJID", "TESTCD", "VISIT")})
    text = text.astype({"DTC": "str", "FL": "str"})
    unused = ["ZZZ", "WEEK 52"] if seed else []  # seed 0: every category has records
    cat = _as_categoricals(_planted(np.random.default_rng(seed), 4000), unused)
    reference = text.iloc[20:].copy()  # S-999 (row 11) is only on the left
    expectations = {
        "expect_column_values_to_be_in_set": {
            "column": "TESTCD",
            "value_set": ["KNEE", "HIP", "HAND"],
        },
        "expect_column_values_to_match_regex": {"column": "DTC", "regex": r"^\d{4}-\d{2}-\d{2}$"},
        "expect_column_value_lengths_to_be_between": {"column": "VISIT", "max_value": 7},
        "expect_compound_columns_to_be_unique": {"column_list": ["USUBJID", "SEQ"]},
        "expect_column_values_to_be_unique": {"column": "SEQ"},
    }
    masks = {}
    for name, frame in (("text", text), ("categorical", cat)):
        with op.shared_codes():
            found = {t: COLUMN_MAPS[t](frame, kw).tolist() for t, kw in expectations.items()}
            keys = ["USUBJID", "VISITNUM", "VISIT"]
            found["keys_in"] = op.keys_in(
                [frame[k] for k in keys], [reference[k] for k in keys], decimals=6
            ).tolist()
            found["not_in"] = op.not_in(
                frame, ["USUBJID", "SEQ"], reference, ["USUBJID", "SEQ"]
            ).tolist()
            found["inconsistent"] = op.inconsistent_within(frame, ["VISITNUM"], "VISIT").tolist()
            found["inconsistent2"] = op.inconsistent_within(frame, ["VISIT"], "VISITNUM").tolist()
            found["duplicated"] = op.duplicated_by(frame, ["USUBJID", "TESTCD", "SEQ"]).tolist()
            found["flagged"] = op.flagged_more_than_once(
                frame, ["USUBJID", "TESTCD"], "FL"
            ).tolist()
            found["present"] = op.present(frame, "FL").tolist()
            found["text"] = op.text(frame["FL"]).tolist()
            found["isin"] = op.isin(frame["VISIT"], ["WEEK 1", None]).tolist()
        masks[name] = found
    for check, mask in masks["text"].items():
        assert masks["categorical"][check] == mask, check
    got = masks["categorical"]
    assert got["expect_column_values_to_be_in_set"][7]
    assert (
        got["expect_compound_columns_to_be_unique"][9]
        and got["expect_compound_columns_to_be_unique"][10]
    )
    assert got["inconsistent"][8] and not got["keys_in"][11]

    # keys_in's old formulation: the numbers rounded, then a MultiIndex of plain objects
    def index(frame: pd.DataFrame) -> pd.MultiIndex:
        parts = [frame["USUBJID"], frame["VISITNUM"].round(6), frame["VISIT"]]
        return pd.MultiIndex.from_arrays([p.astype("object") for p in parts])

    assert index(text).isin(index(reference)).tolist() == masks["text"]["keys_in"]


def test_categorical_codes_group_as_factorize_does() -> None:
    """`codes_of` of a categorical (unused categories, missing values) groups the records as
    pd.factorize does, its distinct values being the categories some record has."""
    values = pd.Categorical(["b", None, "a", "b", "c", None] * 500, categories=list("abcdz"))
    series = pd.Series(values)
    codes, uniques = op.codes_of(series)
    theirs, their_uniques = pd.factorize(series, use_na_sentinel=False)
    assert len(uniques) == len(their_uniques) == 4
    assert pd.Series(codes).groupby(theirs).nunique().eq(1).all()
    assert [uniques[c] if not pd.isna(uniques[c]) else None for c in codes[:6]] == [
        "b",
        None,
        "a",
        "b",
        "c",
        None,
    ]
    full = pd.Series(pd.Categorical(list("ab") * 600))  # every category used, no missing
    assert op.codes_of(full)[0].tolist() == [0, 1] * 600


@pytest.mark.parametrize("shared", [False, True])
def test_per_value_gathers_what_per_record_evaluation_gives(shared: bool) -> None:
    """`per_value`'s result by each record's code is `fn` of every record: categoricals with
    unused categories and missing values, pyarrow text with NA and blanks, numbers with NaN,
    short and mostly-distinct columns."""
    rng = np.random.default_rng(5)
    n = 3000
    words = np.array(["A", " b", "", "C ", "A"], dtype=object)
    text = pd.Series(words[rng.integers(0, 5, n)], dtype="string[pyarrow]")
    text[rng.random(n) < 0.1] = pd.NA
    cat = text.astype(pd.CategoricalDtype(["A", " b", "", "C ", "unused"]))
    numbers = pd.Series(rng.integers(0, 4, n) * 0.5)
    numbers[rng.random(n) < 0.1] = np.nan
    columns = [text, cat, numbers, text[:10], pd.Series(np.arange(n) * 1.5), cat[:7]]

    def spelled(values: pd.Series) -> pd.Series:
        return op.as_string(values, "string").str.strip().str.len()

    with op.shared_codes() if shared else contextlib.nullcontext():
        for column in columns:
            codes, small = op.per_value(spelled, column)
            expected = spelled(column)
            assert len(small) == len(pd.unique(codes))
            got = pd.Series(small.to_numpy()[codes], index=column.index, dtype=expected.dtype)
            pd.testing.assert_series_equal(got, expected, check_names=False)

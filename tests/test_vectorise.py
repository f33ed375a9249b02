"""The per-distinct helpers the SDTM mapping runs on (cdiscforge.vectorise): they must give
exactly what the per-record pandas operations they replace give, missing values and ties
included, or the published datasets would change."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pytest

from cdiscforge import vectorise
from cdiscforge.vectorise import (
    broadcast,
    coded,
    factorize_rows,
    first_rows,
    forget,
    isin,
    last_in_groups,
    map_distinct,
    per_distinct,
    stable_order,
    take,
)


def _frame(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "subject": pd.Series(rng.choice(["S-2", "S-10", "S-1", None], n), dtype="string"),
            "visit": pd.Series(rng.choice([1.0, 2.5, 10.0, None], n), dtype="Float64"),
            "text": pd.Series(rng.choice(["b", "B", "é", "a", None], n), dtype="string"),
            "obj": pd.Series(rng.choice(["y", "x", None], n), dtype=object),
        },
        index=rng.permutation(n) * 2,  # labels that are not positions
    )


@pytest.mark.parametrize(
    "keys", [["subject"], ["subject", "visit"], ["visit", "text", "subject"], ["obj", "text"]]
)
def test_stable_order_is_pandas_stable_sort_with_missing_last(keys: list[str]) -> None:
    frame = _frame()
    expected = frame.sort_values(keys, kind="stable", na_position="last").index
    assert frame.index[stable_order(frame, keys)].equals(expected)


def test_stable_order_many_wide_keys_does_not_overflow() -> None:
    # 7 keys of ~2,000 distinct values each: more than 2**62 combinations.
    rng = np.random.default_rng(5)
    n = 2000
    frame = pd.DataFrame({f"k{i}": rng.permutation(n) % (n - i) for i in range(7)})
    keys = list(frame.columns)
    expected = frame.sort_values(keys, kind="stable").index.to_numpy()
    assert (stable_order(frame, keys) == expected).all()


def test_factorize_rows_counts_missing_as_a_value_like_drop_duplicates() -> None:
    frame = _frame()
    codes, first = factorize_rows(frame["subject"], frame["visit"])
    distinct = frame[["subject", "visit"]].drop_duplicates()
    assert len(first) == len(distinct)
    assert frame.index[first].equals(distinct.index)  # first occurrences, in order
    same = frame[["subject", "visit"]].reset_index(drop=True).iloc[first[codes]]
    pd.testing.assert_frame_equal(
        same.reset_index(drop=True), frame[["subject", "visit"]].reset_index(drop=True)
    )


@pytest.mark.parametrize(
    "values",
    [
        [None, "b", "a", None, "b", "c", "a"],  # missing first, a value of its own
        ["b", "b", "a"],  # no missing; category "a" sorts before the first value
        [None, None],  # only missing
        [],
    ],
)
def test_factorize_rows_of_a_categorical_as_of_its_text(values: list) -> None:
    """One categorical column is renumbered from its own codes (unused categories, missing
    values, a first value that is not the first category): the codes and first rows its
    text gives through the general path (hashed int64 codes)."""
    text = pd.Series(values, dtype="string")
    categories = pd.Index(["a", "b", "c", "unused"], dtype="string")
    compact = pd.Series(pd.Categorical(text, categories=categories))
    assert isinstance(compact.dtype, pd.CategoricalDtype)
    got_codes, got_first = factorize_rows(compact)
    codes, first = factorize_rows(text)
    assert got_codes.dtype == codes.dtype and got_first.dtype == first.dtype
    assert got_codes.tolist() == codes.tolist() and got_first.tolist() == first.tolist()
    assert per_distinct(lambda s: s.astype("string") + "!", compact).equals(
        per_distinct(lambda s: s + "!", text)
    )


def test_factorize_rows_many_wide_columns_renumbers_before_overflow() -> None:
    # 8 columns of ~4,000 distinct values: their radix product is far beyond 2**62.
    rng = np.random.default_rng(7)
    cols = [pd.Series(rng.integers(0, 4000, 5000)) for _ in range(8)]
    codes, first = factorize_rows(*cols)
    frame = pd.concat(cols, axis=1)
    distinct = frame.drop_duplicates()
    assert (first == distinct.index.to_numpy()).all()
    assert codes.max() == len(distinct) - 1
    assert (frame.iloc[first[codes]].to_numpy() == frame.to_numpy()).all()


def test_first_rows_is_the_first_occurrence_of_each_code() -> None:
    codes, _ = pd.factorize(np.random.default_rng(2).integers(0, 50, 4000))
    assert (first_rows(codes) == np.unique(codes, return_index=True)[1]).all()
    assert len(first_rows(np.zeros(0, dtype=np.int64))) == 0


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["a", None, "c"], dtype="string", name="v"),
        pd.Series(["a", None, "c"], dtype="str"),
        pd.Series(["a", None, "c"], dtype=object),  # stays object (pandas would infer str)
        pd.Series([1.0, np.nan, -0.0]),
        pd.Series([1, None, 3], dtype="Float64"),
        pd.Series(pd.to_datetime(["2020-01-01", None, "2021-06-30"])),
        pd.Series(["x", "y", "x"], dtype="category"),
    ],
)
def test_take_is_series_take_with_the_new_index(values: pd.Series) -> None:
    positions = np.array([2, 0, 1, 1, 0, 2])
    index = pd.Index([10, 11, 12, 13, 14, 15])
    expected = values.reset_index(drop=True).take(positions).set_axis(index)
    got = take(values, positions, index)
    pd.testing.assert_series_equal(got, expected, check_exact=True)
    assert got.dtype == values.dtype


def test_per_distinct_equals_the_function_on_every_row() -> None:
    frame = _frame()
    calls: list[int] = []

    def fn(subject: pd.Series, text: pd.Series) -> pd.Series:
        calls.append(len(subject))
        return subject.str.lower() + "|" + text.str.upper()

    got = per_distinct(fn, frame["subject"], frame["text"])
    expected = frame["subject"].str.lower() + "|" + frame["text"].str.upper()
    pd.testing.assert_series_equal(got, expected)
    assert calls == [len(frame[["subject", "text"]].drop_duplicates())]


def test_map_distinct_matches_series_map_and_keeps_missing() -> None:
    frame = _frame()
    got = map_distinct(frame["text"], lambda v: v * 2)
    expected = frame["text"].map({v: v * 2 for v in frame["text"].dropna().unique()})
    pd.testing.assert_series_equal(got, expected)
    assert got[frame["text"].isna()].isna().all()
    nums = map_distinct(frame["visit"], lambda v: f"{v:.2f}", "string")
    assert nums.dtype == "string"
    assert nums[frame["visit"] == 2.5].eq("2.50").all()


@pytest.fixture(scope="module")
def study(seed_spec):  # type: ignore[no-untyped-def]
    from cdiscforge.spec import load_study

    return load_study(seed_spec)


def _lookup(study, raw: pd.DataFrame, **params: object):  # type: ignore[no-untyped-def]
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.rules import RULES, RuleContext, Source

    source = Source("lab", "lab.csv", raw, np.arange(1, len(raw) + 1))
    ctx = RuleContext(study, "LB", "LBTESTCD", pd.DataFrame(index=raw.index), source, {},
                      BuildLog(), "lb.yaml")  # fmt: skip
    rdef = RULES["lookup"]
    return rdef.fn(ctx, rdef.params.model_validate(params)), ctx


def test_lookup_once_per_distinct_key_counts_every_unmatched_record(study) -> None:  # type: ignore[no-untyped-def]
    # Keys repeat (and differ in case and spacing); the unmatched one on three records.
    raw = pd.DataFrame(
        {"TESTCODE": ["WBC", "NOPE", " wbc", "CRP", "NOPE", None, "WBC", "NOPE"]},
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    ).astype("string")
    got, ctx = _lookup(study, raw, table="lab_tests", match={"vendor_code": "raw.TESTCODE"},
                       column="LBTESTCD", unmatched="null")  # fmt: skip
    assert got.index.equals(raw.index)
    assert got.fillna("-").tolist() == ["WBC", "-", "WBC", "CRP", "-", "-", "WBC", "-"]
    (warning,) = ctx.log.warnings
    assert "no match in table 'lab_tests'" in warning.message and warning.count == 3


@pytest.mark.parametrize("kinds", [("string", "string"), ("string", "str"), ("str", "string")])
def test_isin_on_arrow_text_is_pandas_isin_missing_included(kinds: tuple[str, str]) -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        values = pd.Series(rng.choice(["a", "b", "c", None], rng.integers(0, 30)), dtype=kinds[0])
        within = pd.Series(rng.choice(["a", "d", None], rng.integers(0, 6)), dtype=kinds[1])
        for v, w in ((values, within), (pd.Index(values), pd.Index(within))):
            assert (isin(v, w) == np.asarray(v.isin(w))).all()
    # not both Arrow text: pandas' own isin
    assert isin(pd.Series([1, 2]), pd.Series([2])).tolist() == [False, True]


def _coded_column(n: int = 4000, seed: int = 9) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """A text column broadcast from distinct values that repeat, are missing or unused."""
    rng = np.random.default_rng(seed)
    distinct = pd.Series(["b", "a", None, "b", "c", "unused"], dtype="string")
    codes = rng.integers(0, 5, n)  # "unused" (5) never drawn
    return broadcast(distinct, codes, pd.RangeIndex(n)), distinct, codes


def test_a_broadcast_text_column_remembers_its_codes_until_forgotten() -> None:
    forget()
    column, distinct, codes = _coded_column()
    known = coded(column)
    assert known is not None
    pd.testing.assert_series_equal(known[0], distinct)
    assert (known[1] == codes).all() and known[1].dtype == np.min_scalar_type(len(distinct) - 1)
    assert coded(column.str.upper()) is None  # new data: not the broadcast column
    assert coded(column.iloc[::-1]) is None
    forget()
    assert coded(column) is None


def test_a_freed_column_takes_its_codes_with_it() -> None:
    forget()
    column, _, _ = _coded_column()
    assert len(vectorise._CODED) == 1
    del column
    gc.collect()
    assert vectorise._CODED == {}


def test_factorize_rows_and_stable_order_are_the_same_with_remembered_codes() -> None:
    forget()
    column, _, _ = _coded_column()
    other = pd.Series(
        np.random.default_rng(1).choice(["x", None, "y"], len(column)), dtype="string"
    )
    frame = pd.DataFrame({"c": column, "o": other})
    with_codes = factorize_rows(column, other), stable_order(frame, ["c", "o"])
    assert coded(frame["c"]) is not None
    forget()
    without = factorize_rows(column, other), stable_order(frame, ["c", "o"])
    for a, b in zip(with_codes[0], without[0], strict=True):
        assert (a == b).all() and a.dtype == b.dtype
    assert (with_codes[1] == without[1]).all()
    expected = frame.sort_values(["c", "o"], kind="stable", na_position="last").index
    assert (frame.index[with_codes[1]] == expected).all()


def test_a_raw_columns_codes_from_its_check_group_and_sort_as_its_text() -> None:
    """remember_codes: a column with missing values (code -1) and its distinct values from
    the raw check (raw.RawForm.distinct), remembered; grouping and sorting by it give what
    hashing its strings gives."""
    from cdiscforge.vectorise import factorize_text, remember_codes

    forget()
    rng = np.random.default_rng(3)
    column = pd.Series(rng.choice(["b", None, "a", "Ä", "a "], 500), dtype="string[pyarrow]")
    other = pd.Series(rng.choice(["x", None, "y"], 500), dtype="string")
    frame = pd.DataFrame({"c": column, "o": other})
    without = factorize_rows(frame["c"], other), stable_order(frame, ["c", "o"])
    forget()
    codes, uniques = factorize_text(frame["c"])
    assert (codes < 0).any()
    remember_codes(frame["c"], pd.Series(uniques, dtype=column.dtype), codes)
    known = coded(frame["c"])
    assert known is not None
    pd.testing.assert_series_equal(
        known[0].take(known[1]).reset_index(drop=True), column, check_names=False
    )
    with_codes = factorize_rows(frame["c"], other), stable_order(frame, ["c", "o"])
    for a, b in zip(with_codes[0], without[0], strict=True):
        assert (a == b).all() and a.dtype == b.dtype
    assert (with_codes[1] == without[1]).all()
    forget()


def test_last_in_groups_is_what_sort_then_tail_keeps() -> None:
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "s": pd.Series(rng.choice(["b", "B", "a", None], n), dtype="string"),
            "v": pd.array(rng.choice([1.0, 2.0, np.nan], n), dtype="Float64"),
            "d": pd.array(rng.choice([0.0, -1.5, 3.0, np.nan], n), dtype="Float64"),
            "t": rng.integers(0, 3, n),
        },
        index=rng.permutation(n) * 3,  # positions, not labels
    )
    keys, then = ["s", "v"], ["d", "t"]
    ordered = frame.assign(__i=np.arange(n)).sort_values([*keys, *then], kind="stable")
    expected = ordered.groupby(keys, dropna=False).tail(1)["__i"].to_numpy()
    assert (last_in_groups(frame, keys, then) == expected).all()
    assert len(last_in_groups(frame.iloc[:0], keys, then)) == 0


@pytest.mark.parametrize("distinct", [1, 126, 127, 128, 40_000])
def test_narrow_factorize_text_is_pandas_codes_in_the_smallest_type(distinct: int) -> None:
    """factorize_text(narrow=True): pd.factorize's codes (missing -1) in the smallest signed
    type holding -1 .. the number of values, so code + 1 (raw._duplicated) never wraps;
    several Arrow chunks unified in pandas' order."""
    from cdiscforge.vectorise import factorize_text, narrow_codes

    rng = np.random.default_rng(distinct)
    values = np.array([f"v{i}" for i in range(distinct)], dtype=object)[
        rng.integers(0, distinct, 3 * distinct + 50)
    ]
    values[rng.random(len(values)) < 0.1] = None
    chunks = np.array_split(values, 3)
    import pyarrow as pa

    data = pa.chunked_array([pa.array(list(c), type=pa.large_string()) for c in chunks])
    series = pd.Series(pd.arrays.ArrowStringArray(data))
    want, want_uniques = pd.factorize(series)
    got, uniques = factorize_text(series, narrow=True)
    assert got.dtype == narrow_codes(len(want_uniques))
    assert int(np.iinfo(got.dtype).max) >= len(want_uniques)  # code + 1 fits
    np.testing.assert_array_equal(got, want)
    assert list(uniques) == list(want_uniques)


def test_stable_order_with_categorical_missing_and_many_keys_is_sort_values() -> None:
    """The ranks are combined in place from the keys' own codes (int8 categoricals, -1
    missing moved last): the order sort_values gives, also past 2**62 (a second rank)."""
    rng = np.random.default_rng(11)
    n = 3000
    columns = {}
    for i in range(9):  # 9 keys of ~1000 values: more than 2**62 combinations
        values = pd.Series(rng.integers(0, 1000, n).astype(str), dtype="string")
        values[rng.random(n) < 0.05] = pd.NA
        columns[f"k{i}"] = values
    columns["c"] = pd.Series(
        pd.Categorical(rng.choice(["b", "a", None, "c"], n), categories=["a", "b", "c"])
    )
    frame = pd.DataFrame(columns)
    keys = ["c", *[f"k{i}" for i in range(9)]]
    expected = frame.sort_values(keys, kind="stable", na_position="last").index
    assert (frame.index[stable_order(frame, keys)] == expected).all()
    short = frame.sort_values(["c", "k0"], kind="stable", na_position="last").index
    assert (frame.index[stable_order(frame, ["c", "k0"])] == short).all()


@pytest.mark.parametrize("width", [3, 5_000_000])  # the pair table, then the hashed pairs
def test_distinct_per_group_is_groupby_nunique(width: int) -> None:
    from cdiscforge.vectorise import distinct_per_group

    rng = np.random.default_rng(7)
    groups = rng.integers(0, 4, 2_000)
    values = rng.integers(0, width, 2_000)
    want = pd.Series(values).groupby(groups).nunique().reindex(range(5), fill_value=0)
    got = distinct_per_group(groups, 5, values, width)
    assert got.tolist() == want.tolist()  # group 4 has no records: 0
    assert distinct_per_group(groups[:0], 2, values[:0], width).tolist() == [0, 0]

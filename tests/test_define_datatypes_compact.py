"""define.xml data types come out the same from a compacted (categorical) column, from the
plain column and from the original every-record algorithm (kept here as the reference).

`define_data_type` works per distinct category of a categorical and block by block over a
numeric column; these tests hold every kind of value it meets: missing, "", NaN, +-inf,
-0.0, integers stored as floats, integers beyond 2**53, fractions, complete, partial and
non-ISO dates, and categories no row uses any more.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from cdiscforge.compact import compact_series
from cdiscforge.define import datatypes, render
from cdiscforge.define.datatypes import define_data_type
from cdiscforge.model import Variable, char_max_bytes
from cdiscforge.vectorise import first_rows, used_categories, used_codes

# ---- the reference: the every-record algorithm before the per-distinct rewrite -------------
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
_COMPLETE_DATE = re.compile(rf"^{_ISO_DATE}$")
_COMPLETE_DATETIME = re.compile(rf"^{_ISO_DATE}T{_ISO_TIME}$")
_PARTIAL = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?)?)?$")


def _reference_whole(series: pd.Series) -> bool:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    values = values[np.isfinite(values)]
    negative_zero = bool(np.any(np.signbit(values[values == 0])))
    whole = np.all(values == np.round(values)) and np.all(np.abs(values) <= 2.0**53)
    return bool(whole) and not negative_zero


def _reference_dtc(series: pd.Series) -> str:
    values = series.dropna().astype("string[pyarrow]")
    values = values[values != ""]
    if values.empty:
        return "partialDatetime"
    if values.str.fullmatch(_COMPLETE_DATE.pattern).all():
        return "date"
    if values.str.fullmatch(_COMPLETE_DATETIME.pattern).all():
        return "datetime"
    if values.str.fullmatch(_PARTIAL.pattern).all():
        return "partialDatetime" if values.str.contains("T", regex=False).any() else "partialDate"
    return "text"


# -------------------------------------------------------------------------------------------

DTC = Variable("XXDTC", "Date", "Char")
NUM = Variable("XXSTRESN", "Result", "Num")

_TEXT_CASES = {
    "dates": ["2024-01-05", "2024-02-29", None, "2024-01-05"],
    "datetimes": ["2024-01-05T10:30", "2024-01-05T10:30:15.25", "2024-01-05T10:30"],
    "mixed complete": ["2024-01-05", "2024-01-05T10:30"],
    "partial date": ["2024", "2024-01", "2024-01-05", "2024"],
    "partial datetime": ["2024-01-05T10", "2024-01", "2024"],
    "empty and missing": ["", None, "", None],
    "empty beside dates": ["", "2024-01-05", None, "2024-01-05"],
    "not ISO": ["05JAN2024", "2024-01-05", "2024-01-05"],
    "all missing": [None, None],
}


@pytest.mark.parametrize("case", sorted(_TEXT_CASES))
def test_dtc_type_is_the_same_compacted_plain_and_reference(case: str) -> None:
    values = _TEXT_CASES[case] * 3
    plain = pd.Series(values, dtype="str")
    compacted = compact_series(plain, max_share=1.0)
    assert isinstance(compacted.dtype, pd.CategoricalDtype) or plain.isna().all()
    expected = _reference_dtc(plain)
    assert define_data_type(DTC, plain) == expected
    assert define_data_type(DTC, compacted) == expected
    assert define_data_type(DTC, pd.Series(values, dtype=object)) == expected


def test_unused_categories_do_not_count() -> None:
    """A filtered frame keeps categories no record has: a partial date only in an unused
    category leaves the column "date"."""
    column = pd.Series(pd.Categorical(["2024-01-05", "2024", None], ["2024", "2024-01-05"]))
    kept = column.iloc[[0, 2]]
    assert define_data_type(DTC, kept) == _reference_dtc(kept.astype(object)) == "date"
    assert define_data_type(DTC, column) == "partialDate"
    assert define_data_type(DTC, column.iloc[[2]]) == "partialDatetime"  # no value at all


_NUMBER_CASES = {
    "integers as floats": [1.0, 2.0, np.nan, 40.0],
    "fraction": [1.0, 2.5, np.nan],
    "negative zero": [0.0, -0.0, 3.0],
    "zero": [0.0, 0.0, 1.0],
    "NaN only": [np.nan, np.nan],
    "infinities": [np.inf, -np.inf, 2.0],
    "beyond 2**53": [2.0**53, 2.0**53 + 2],
    "at 2**53": [2.0**53, -(2.0**53)],
    "tiny fraction": [1e-300, 0.0],
    "empty": [],
}


@pytest.mark.parametrize("case", sorted(_NUMBER_CASES))
@pytest.mark.parametrize("dtype", ["float64", "Float64", "object"])
def test_numeric_type_matches_the_reference(case: str, dtype: str) -> None:
    series = pd.Series(_NUMBER_CASES[case], dtype="float64").astype(dtype)
    expected = "integer" if _reference_whole(series) else "float"
    assert define_data_type(NUM, series) == expected


@pytest.mark.parametrize("position", [0, 5, -1])
def test_numeric_blocks_find_a_fraction_anywhere(
    monkeypatch: pytest.MonkeyPatch, position: int
) -> None:
    """The column is checked block by block: a fraction (or -0.0) in any block counts."""
    monkeypatch.setattr(datatypes, "_BLOCK", 4)
    values = np.arange(23, dtype="float64")
    assert define_data_type(NUM, pd.Series(values)) == "integer"
    for odd in (0.5, -0.0):
        changed = values.copy()
        changed[position] = odd
        assert define_data_type(NUM, pd.Series(changed)) == "float"
    ints = pd.Series(np.arange(23), dtype="Int64")
    assert define_data_type(NUM, ints) == "integer"
    assert define_data_type(NUM, pd.Series(["1", "2.5", "x"])) == "float"
    assert define_data_type(NUM, pd.Series(["1", "2", "x", None])) == "integer"


def _reference_max_bytes(series: pd.Series) -> int:
    values = series.dropna().astype(object)
    return max((len(str(v).encode("utf-8")) for v in values), default=0)


@pytest.mark.parametrize(
    "values",
    [
        ["a", "Ünïcödé", None, "a"],
        ["", None, ""],
        [None, None],
        [],
        ["日本語", "xyz1"],
    ],
)
def test_char_max_bytes_is_the_same_compacted_plain_and_object(values: list[object]) -> None:
    plain = pd.Series(values, dtype="str")
    expected = _reference_max_bytes(plain)
    assert char_max_bytes(plain) == expected
    assert char_max_bytes(compact_series(plain, max_share=1.0)) == expected
    assert char_max_bytes(pd.Series(values, dtype=object)) == expected
    assert char_max_bytes(pd.Series(values, dtype="string[python]")) == expected


def test_char_max_bytes_skips_unused_categories() -> None:
    column = pd.Series(pd.Categorical(["ab", None, "ab"], ["ab", "a much longer value"]))
    assert char_max_bytes(column) == 2
    assert char_max_bytes(column.iloc[[1]]) == 0


def _filtered_categorical() -> tuple[pd.Series, pd.Series]:
    """A compacted column filtered so that some categories no record has (and a missing
    value, and ""), beside the same values as plain strings."""
    values = ["b", None, "a", "", "b", "c", None, "a"]
    whole = compact_series(pd.Series([*values, "zz unused"], dtype="str"), max_share=1.0)
    compacted = whole.iloc[: len(values)]
    return compacted, pd.Series(values, dtype="str")


def test_first_rows_and_used_categories_are_drop_duplicates() -> None:
    compacted, plain = _filtered_categorical()
    rows = first_rows(compacted.array.codes, len(compacted.dtype.categories))
    expected = plain.drop_duplicates().index.to_numpy()
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(compacted.drop_duplicates().index.to_numpy(), expected)
    assert used_categories(compacted).tolist() == ["", "a", "b", "c"]
    assert first_rows(np.zeros(0, dtype=np.int8), 3).tolist() == []


def test_define_helpers_see_the_same_values_compacted_and_plain() -> None:
    compacted, plain = _filtered_categorical()
    assert render._used_values(compacted) == render._used_values(plain) == ["a", "b", "c"]
    pd.testing.assert_series_equal(
        render._distinct(compacted).astype("str"), render._distinct(plain)
    )
    codes, texts = render._split_codes(compacted)
    plain_codes, plain_texts = render._split_codes(plain)
    assert sorted(texts) == sorted(plain_texts)  # the same groups, whatever their numbers
    by_text = [texts[c] if c >= 0 else None for c in codes]
    assert by_text == [plain_texts[c] if c >= 0 else None for c in plain_codes]
    groups = render._distinct_by_group(codes, len(texts), compacted)
    plain_groups = render._distinct_by_group(plain_codes, len(plain_texts), plain)
    for k, text in enumerate(texts):
        mine = groups[k]
        theirs = plain_groups[plain_texts.index(text)]
        assert mine.index.tolist() == theirs.index.tolist()


def test_distinct_pairs_are_drop_duplicates_compacted_or_not() -> None:
    codes = ["B", "A", None, "B", "A", "C", None, "B"]
    decodes = ["Bee", "Ay", "Ay", "Bee", None, "See", None, "Bea"]
    plain = pd.DataFrame({"X": pd.Series(codes, dtype="str"), "Y": pd.Series(decodes, dtype="str")})
    compacted = pd.DataFrame(
        {name: compact_series(plain[name], max_share=1.0) for name in plain}
    ).iloc[:]
    expected = plain.drop_duplicates()
    found = render._distinct_pairs(compacted, "X", "Y")
    assert found.index.tolist() == expected.index.tolist()
    assert render._distinct_pairs(plain, "X", "Y").index.tolist() == expected.index.tolist()


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
@pytest.mark.parametrize(
    "codes",
    [
        [],
        [-1],
        [-1, -1],
        [0],
        [2, 2, 2],
        [-1, 0, -1],
        [3, 4, 3],
        [-1, 1],  # missing and 1: 0 is not used though it lies between
        [0, 2],
        [4, -1, 0, 4],
        [1, 0, 1, 0, -1],
        [5, 6, 7],
    ],
)
def test_used_codes_are_the_scatter_over_every_code(codes: list[int], dtype: type) -> None:
    array = np.array(codes, dtype=dtype)
    count = 8
    scatter = np.zeros(count + 1, dtype=bool)
    scatter[array] = True  # the one-pass scatter: code -1 marks the extra last slot
    np.testing.assert_array_equal(used_codes(array, count), scatter[:-1])
    np.testing.assert_array_equal(used_codes(array, count, missing=True), scatter)

"""Per-value Python work done once per distinct value, then broadcast.

Clinical data repeat themselves (a visit name, a unit, a subject's sequence number); running a
Python function per row on a 10-million-row form is what makes pipelines slow. These helpers
run it per distinct value (or distinct combination of values) and broadcast the result back
by integer codes (a numpy/pyarrow take), which is also much faster than a hash `Series.map`
over every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd


def factorize_rows(*columns: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, first): per row, the number of its distinct combination of the columns'
    values (0, 1 ... in order of first appearance; a missing value counts as a value of its
    own, as drop_duplicates and groupby(dropna=False) treat it), and the first row of each
    combination. The columns are aligned by position."""
    n = len(columns[0])
    codes = np.zeros(n, dtype=np.int64)
    for col in columns:
        part, uniques = pd.factorize(col, use_na_sentinel=False)
        codes = codes * max(len(uniques), 1) + part
        codes, _ = pd.factorize(codes)  # back to 0..k-1: no overflow with many columns
    first = np.unique(codes, return_index=True)[1] if n else np.zeros(0, dtype=np.int64)
    return codes, first


def used_categories(series: pd.Series) -> pd.Index:
    """The categories of a categorical column that some row has, in category order.

    What a question about a compacted column's SET of values (its longest value, its data
    type, the codelist terms it uses) is answered from: each distinct value once instead of
    every record, and without the categories a filtered frame keeps that no record has any
    more. One pass over the codes (a scatter, no sort)."""
    categories = series.dtype.categories
    used = np.zeros(len(categories) + 1, dtype=bool)
    used[series.array.codes] = True  # code -1 (missing) marks the extra last slot
    return categories[used[:-1]]


def first_rows(codes: np.ndarray, count: int) -> np.ndarray:
    """The position of the first row of each distinct code, in row order, for codes in
    -1..count-1 (a categorical's; -1, missing, a value of its own): what drop_duplicates
    keeps, in one pass over the codes without hashing or sorting the rows."""
    n = len(codes)
    first = np.full(count + 1, n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))  # -1 lands in the last slot
    return np.sort(first[first < n])


def broadcast(values: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Per-distinct `values` (positions = codes) as one value per row, with `index`."""
    out = values.reset_index(drop=True).take(codes)
    out.index = index
    return out


def per_distinct(
    fn: Callable[..., pd.Series],
    *columns: pd.Series,
    coded: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.Series:
    """`fn(*columns)` for an element-wise `fn` (row i of the result depends only on row i
    of the columns), computed on the distinct rows only and broadcast back: the same values
    and dtype, on the index of the first column. The columns are aligned by position.

    `coded` is (first row of each combination, each row's combination) when the caller has
    the codes already (validation shares each column's codes between its checks). Evaluated
    as it is when mostly distinct (nothing to save) or when a float column holds -0.0: a
    hash table takes -0.0 and 0.0 for one value, not every function does (str(-0.0))."""
    if any(map(_has_negative_zero, columns)):
        return fn(*columns)
    first, codes = coded if coded is not None else factorize_rows(*columns)[::-1]
    if len(first) * 2 > len(codes):
        return fn(*columns)
    small = [col.iloc[first].reset_index(drop=True) for col in columns]
    return broadcast(fn(*small), codes, columns[0].index)


def _has_negative_zero(values: pd.Series) -> bool:
    if not pd.api.types.is_float_dtype(values.dtype):
        return False
    x = values.to_numpy(dtype="float64", na_value=np.nan)
    return bool(np.any(np.signbit(x) & (x == 0)))


def stable_order(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Row positions that sort `frame` by `keys` exactly as
    `frame.sort_values(keys, kind="stable", na_position="last")` does: sorted integer codes
    of each key (pd.factorize(sort=True), missing last) combined into one int64 rank per row
    (mixed radix) and one stable numpy argsort, instead of pandas' categorical-per-key sort
    of the full columns."""
    n = len(frame)
    ranks: list[np.ndarray] = []
    combined = np.zeros(n, dtype=np.int64)
    span = 1
    for key in keys:
        codes, uniques = pd.factorize(frame[key], sort=True)
        width = len(uniques) + 1
        if span * width >= 2**62:  # would overflow: start another rank, sorted after
            ranks.append(combined)
            combined = np.zeros(n, dtype=np.int64)
            span = 1
        combined = combined * width + np.where(codes < 0, len(uniques), codes)
        span *= width
    ranks.append(combined)
    if len(ranks) == 1:
        return np.argsort(combined, kind="stable")
    # np.lexsort: last key primary; the row order as the least significant key (stable)
    return np.lexsort([np.arange(n), *reversed(ranks)])


def map_distinct(
    series: pd.Series, fn: Callable[[Any], Any], dtype: str | None = None
) -> pd.Series:
    """`fn` applied to each distinct non-missing value of `series`; missing stays missing."""
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    distinct = pd.Series(uniques, dtype=series.dtype, name=series.name)
    mapping = {value: fn(value) for value in distinct.dropna()}
    out = broadcast(distinct.map(mapping), codes, series.index)
    return out.astype(dtype) if dtype else out


def integers_as_text(series: pd.Series) -> pd.Series:
    """Numbers as text the way a reviewer writes them: 3.0 -> '3', 2.5 -> '2.5'."""
    return map_distinct(
        pd.to_numeric(series, errors="coerce"),
        lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)),
        "string",
    )

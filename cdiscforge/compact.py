"""Finished datasets held compactly: repeated-value text columns as categoricals.

A 10,000-subject build holds every dataset from the moment it is built until the files
are written (ADaM reads SDTM, validation reads everything, the writers write everything).
Most of their text columns repeat a handful of values: MK at 10,000 subjects is ~9M
records whose STUDYID, DOMAIN, MKTESTCD, MKLOC, VISIT, EPOCH ... have 1 to a few thousand
distinct values each. As Arrow strings each such column costs its bytes plus an 8-byte
offset per record (150-300 MB); as a categorical it costs a 1- or 2-byte code per record
plus its distinct values once (10-20 MB). So once SDTM and ADaM are built, the build makes
them compact (`cdiscforge.build`), and validation, the writers, define.xml and its rules
and the tables read the categoricals, per distinct value where it pays; the child process
that validates beside the writing shares them (cdiscforge.concurrent).

The same rule as the XPT reader's (`cdiscforge.xpt.read_xpt_fast`, what `cdiscforge
validate` reads large files with): a dataset of at least `CATEGORICAL_MIN_ROWS` records has
a text column converted when its distinct values are at most half its records.
Deterministic: its categories are the distinct values in sorted (code point) order, so
`sort_values` orders a compact column exactly as it ordered the strings, and the same
data always gives the same categories. Missing values stay missing (code -1). Only text
columns of Char variables are touched; numbers, dates and object columns (which may hold
what a writer must refuse, such as a number in a Char variable) are left as they are.

A dataset built in the build's second process (cdiscforge.engine) travels compact too
(`pack`): MK at 10,000 subjects pickles to a tenth of its strings' bytes. The parent gives
it back its strings (`unpack`, a take of each column's categories by its codes: ~0.1 s a
column of 9M records, where `astype` takes ~1 s), so the rules of later datasets and the
stage's checks see exactly the frame a one-process build makes; it is compacted again with
the others before validation, from the categoricals it came as (`compact_series` knows the
strings `unpack` made: ~3 s of factorizing MK again at 10,000 subjects, on one core while
the other waits for the fork).
"""

from __future__ import annotations

import weakref
from typing import Any

import pandas as pd
import pyarrow as pa

from cdiscforge import xpt
from cdiscforge.model import Dataset

# Distinct values at most this share of the records: below it the categorical is smaller
# than the strings (a code per record plus each distinct value once). The reader's.
MAX_SHARE = xpt._CATEGORICAL_MAX_SHARE


def compact_series(series: pd.Series, max_share: float = MAX_SHARE) -> pd.Series:
    """`series` as a categorical of its sorted distinct values when it is a text column that
    repeats enough (distinct <= `max_share` x records); otherwise `series` itself."""
    if not isinstance(series.dtype, pd.StringDtype) or len(series) == 0:
        return series
    packed = _packed(series)
    if packed is not None:  # what factorizing these very strings gave when they were packed
        if len(packed.categories) > max_share * len(series):
            return series
        return pd.Series(packed, index=series.index, name=series.name, copy=False)
    codes, uniques = pd.factorize(series, sort=True)
    if len(uniques) > max_share * len(series):
        return series
    values = pd.Categorical.from_codes(codes, categories=uniques)  # smallest code type
    return pd.Series(values, index=series.index, name=series.name, copy=False)


def compact(dataset: Dataset, max_share: float = MAX_SHARE, min_rows: int | None = None) -> Dataset:
    """Make `dataset`'s repeated-value text columns categoricals, in place; returns it.

    Datasets under `min_rows` records (default `cdiscforge.xpt.CATEGORICAL_MIN_ROWS`, read
    when called) are left as they are. Each column is replaced one at a time, so the
    dataset never exists twice in memory."""
    frame = dataset.frame
    if len(frame) < (xpt.CATEGORICAL_MIN_ROWS if min_rows is None else min_rows):
        return dataset
    for var in dataset.variables:
        if not var.is_char:
            continue
        column = frame[var.name]
        small = compact_series(column, max_share)
        if small is not column:
            frame[var.name] = small
    return dataset


def pack(dataset: Dataset) -> dict[str, Any]:
    """Compact `dataset` (whatever its size) to send it to another process; the dtypes of
    the columns it made categoricals, for `unpack`."""
    before = {v.name: dataset.frame[v.name].dtype for v in dataset.variables if v.is_char}
    compact(dataset, min_rows=0)
    return {name: dtype for name, dtype in before.items() if dataset.frame[name].dtype != dtype}


def unpack(dataset: Dataset, dtypes: dict[str, Any]) -> Dataset:
    """Give the columns `pack` made categoricals their strings back (their dtypes before),
    in place; returns `dataset`."""
    frame = dataset.frame
    for name, dtype in dtypes.items():
        frame[name] = expand_series(frame[name], dtype)
    return dataset


def expand_series(series: pd.Series, dtype: Any) -> pd.Series:
    """A categorical text column as `dtype` again: each record its category's value, missing
    where its code is -1. The categorical is kept with the strings made (`_packed`) when it
    is `compact_series`' own (what `pack` made: sorted categories, each one used)."""
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        codes = series.cat.codes.to_numpy()
        categories = pa.array(series.cat.categories.to_numpy(dtype=object), type=pa.large_string())
        values = categories.take(pa.array(codes, mask=codes < 0))
        out = pd.Series(pd.array(values, dtype=dtype), index=series.index, name=series.name)
        if series.cat.categories.dtype == dtype:
            _remember(out, series.array)
        return out
    return series.astype(dtype)


# --- the categoricals unpacked strings came from ---------------------------------------------
# MK comes back from the SDTM stage's second process as categoricals and is given its strings
# (`unpack`); once SDTM and ADaM are built it is compacted again (cdiscforge.build), which
# would factorize its ~9 million records per text column once more. Each unpacked column is
# remembered here, by its Arrow data (the very object, as `cdiscforge.vectorise.coded` keys
# broadcast columns: Arrow data never changes, pandas keeps the object through frame
# assignment and copies, and any change to a column is new data), with the categorical it
# was expanded from: `compact_series` of those strings is that categorical (the same sorted
# categories and codes: `pack` made it with `compact_series` from the same strings). An
# entry goes when its strings are freed (weak reference). Its cost while SDTM and ADaM are
# built: the codes, 1 or 2 bytes per record (~0.2 GB for MK at 10,000 subjects).
_UNPACKED: dict[int, tuple[weakref.ref, pd.Categorical]] = {}


def _remember(strings: pd.Series, packed: pd.Categorical) -> None:
    data = strings.array.__arrow_array__()
    key = id(data)
    _UNPACKED[key] = (weakref.ref(data, lambda _, key=key: _UNPACKED.pop(key, None)), packed)


def _packed(series: pd.Series) -> pd.Categorical | None:
    """The categorical `series` was expanded from by `unpack`, if its strings are those."""
    if getattr(series.dtype, "storage", None) != "pyarrow":
        return None
    data = series.array.__arrow_array__()
    entry = _UNPACKED.get(id(data))
    if entry is None or entry[0]() is not data or len(entry[1]) != len(series):
        return None
    return entry[1]

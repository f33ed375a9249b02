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
(`pack`): MK at 10,000 subjects pickles to a tenth of its strings' bytes. The parent keeps
it so (expanding its 9M records back to strings and compacting them again before
validation cost seconds and held ~1 GiB of text through ADaM): whatever reads a built
dataset in a later stage is indifferent to categorical or text columns. For the same
reason a dataset this module would compact (at least `CATEGORICAL_MIN_ROWS` records: LB,
ADLB, ADEFF, and MK in one process) is built in this form in any process
(`engine.build_dataset`), so `compact` finds little left to do; a later dataset's block
reading it makes text only of the columns its rules read (`rules.Source.texts`). Conditions are
tested once per category (cdiscforge.rules.Condition), counts group by the codes
(adam.params), and a rule that needs text takes the rows it reads first and makes only
those text (`cdiscforge.vectorise.as_text`), so every value, dtype and order is that of the
text frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cdiscforge import xpt
from cdiscforge.model import Dataset
from cdiscforge.vectorise import as_text, factorize_text, text_codes, used_categories

# Distinct values at most this share of the records: below it the categorical is smaller
# than the strings (a code per record plus each distinct value once). The reader's.
MAX_SHARE = xpt._CATEGORICAL_MAX_SHARE


def compact_series(series: pd.Series, max_share: float = MAX_SHARE) -> pd.Series:
    """`series` as a categorical of its sorted distinct values when it is a text column that
    repeats enough (distinct <= `max_share` x records); otherwise `series` itself."""
    if not isinstance(series.dtype, pd.StringDtype) or len(series) == 0:
        return series
    # Arrow's encoding of the records (factorize_text), then only the distinct values sorted
    # (text_codes): pd.factorize(sort=True) of the records' strings, without pandas' copies
    # of the codes and its second pass renumbering them (MK at 10,000 subjects: ~0.1 s per
    # column of 8.8 million records).
    codes, uniques = factorize_text(series)
    if len(uniques) > max_share * len(series):
        return series
    distinct = pd.Series(uniques, dtype=series.dtype, name=series.name)
    if len(codes) and codes.min() < 0:  # missing: one more distinct value, sorted out as -1
        missing = pd.Series([pd.NA], dtype=series.dtype, name=series.name)
        distinct = pd.concat([distinct, missing], ignore_index=True)
        codes = np.where(codes < 0, len(uniques), codes)
    return text_codes(distinct, codes, series.index)


def tighten(series: pd.Series, max_share: float = MAX_SHARE) -> pd.Series | None:
    """A categorical text column whose categories are sorted (vectorise.text_codes) in the
    form `compact_series` gives its strings: the categories some record has, in order, the
    smallest code type; None when `compact_series` would keep the strings (no records, or
    too many distinct values)."""
    used = used_categories(series)
    if len(series) == 0 or len(used) > max_share * len(series):
        return None
    categories = series.dtype.categories
    # The smallest code type, as from_codes gives it for these categories.
    small = pd.Categorical.from_codes(np.empty(0, dtype=np.int64), categories=used).codes.dtype
    if len(used) == len(categories) and series.array.codes.dtype == small:
        return series  # every category is some record's, its codes as narrow: that form
    keep = np.zeros(len(categories) + 1, dtype=bool)
    keep[: len(categories)] = categories.isin(used)
    renumber = np.full(len(categories) + 1, -1, dtype=small)  # gathered in the final type
    renumber[keep] = np.arange(int(keep.sum()))  # code -1 (missing) reads the last slot
    codes = renumber[series.array.codes]
    values = pd.Categorical.from_codes(codes, categories=used, validate=False)
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


def pack(dataset: Dataset) -> None:
    """Compact `dataset` (whatever its size, in place) to send it to another process; the
    receiver keeps it compact (module docstring)."""
    compact(dataset, min_rows=0)


def frame_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its categorical columns as text (`as_text`), a new frame sharing the
    other columns; `frame` itself when it has none."""
    names = [c for c, dtype in frame.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)]
    if not names:
        return frame
    frame = frame.copy(deep=False)
    for name in names:
        frame[name] = as_text(frame[name])
    return frame

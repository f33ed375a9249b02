"""Reusable vectorised operations the rule checks are made of (in the spirit of CORE's
operations library): each takes frames and column names and returns a boolean mask of failing
records, so a rule is one or two calls plus its catalogue parameters. No per-record loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def as_string(values: pd.Series, dtype: str = "string[pyarrow]") -> pd.Series:
    """`values.astype(dtype)`, quick for the categorical columns `read_xpt_fast` gives large
    files: the categories are taken by code in pyarrow, where pandas would build a numpy object
    array of every value first (~25 s of a 10,000-subject validate). Same values, same dtype.
    """
    if not (
        isinstance(values.dtype, pd.CategoricalDtype)
        and pd.api.types.is_string_dtype(values.cat.categories)
    ):
        return values.astype(dtype)
    codes = values.cat.codes.to_numpy()
    categories = pa.array(values.cat.categories.to_numpy(dtype=object), type=pa.large_string())
    taken = categories.take(pa.array(codes.astype(np.int64), mask=codes < 0))
    return pd.Series(pa.chunked_array([taken]), dtype=dtype, index=values.index, name=values.name)


def plain(values: pd.Series) -> pd.Series:
    """A categorical (see `as_string`) as the column it stands for: str for text categories,
    otherwise its categories' dtype; any other column unchanged."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return values
    if pd.api.types.is_string_dtype(values.cat.categories):
        return as_string(values, "str")
    return values.astype(values.cat.categories.dtype)


def text(values: pd.Series) -> pd.Series:
    """Values as stripped pyarrow strings, blanks as missing."""
    out = as_string(values).str.strip()
    return out.where(out != "")


def present(frame: pd.DataFrame, column: str) -> pd.Series:
    """True where `column` holds a value (False everywhere when the column is absent)."""
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    col = frame[column]
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        return col.notna()
    return text(col).notna()


def numeric_text(values: pd.Series) -> pd.Series:
    """True where a character value reads as a plain number ("5", "-0.42", "1e3")."""
    return text(values).str.match(NUMBER).fillna(False).astype(bool)


def as_number(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def full_dates(values: pd.Series) -> pd.Series:
    """Full dates (YYYY-MM-DD) of ISO 8601 text or datetimes; partial or bad values as NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.normalize()
    first = as_string(values).str.slice(0, 10)
    return pd.to_datetime(first, format="%Y-%m-%d", errors="coerce")


# ISO 8601 prefixes from the finest to the coarsest precision: seconds, minutes, hours, day,
# month, year. Two values are compared on the finest precision both have.
_PRECISIONS = (19, 16, 13, 10, 7, 4)


def iso_after(start: pd.Series, end: pd.Series) -> pd.Series:
    """True where ISO 8601 `start` is later than `end` on the precision both share.

    ISO text of one precision sorts like time, so a vectorised string comparison of the common
    prefix decides; 2019-03 vs 2019-03-05 compares "2019-03" with "2019-03" (not after).
    """
    from cdiscforge.validation.suites import ISO8601  # an invalid value is CF-DS-0006's finding

    s, e = text(start), text(end)
    valid = s.str.match(ISO8601).fillna(False) & e.str.match(ISO8601).fillna(False)
    s, e = s.where(valid), e.where(valid)
    s_len, e_len = s.str.len().fillna(0), e.str.len().fillna(0)
    common = np.minimum(s_len, e_len)
    out = pd.Series(False, index=start.index)
    decided = pd.Series(False, index=start.index)
    for p in _PRECISIONS:
        rows = (common >= p) & ~decided
        if rows.any():
            out |= rows & (s.str.slice(0, p) > e.str.slice(0, p)).fillna(False)
            decided |= rows
    return out.astype(bool)


def missing_when_present(frame: pd.DataFrame, target: str, given: str) -> pd.Series:
    """Records where `given` is populated but `target` is not."""
    return present(frame, given) & ~present(frame, target)


def duplicated_by(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Every record of a key group that has more than one record (both copies are shown)."""
    keys = [k for k in keys if k in frame.columns]
    if not keys:
        return pd.Series(False, index=frame.index)
    return frame.duplicated(subset=keys, keep=False)


def inconsistent_within(frame: pd.DataFrame, by: Sequence[str], value: str) -> pd.Series:
    """Records whose `by` group holds more than one distinct non-null `value`."""
    rows = frame[list(by)].notna().all(axis=1) & present(frame, value)
    if not rows.any():
        return pd.Series(False, index=frame.index)
    sub = frame.loc[rows, [*by, value]].copy()
    for c in sub.columns:  # 9.3 read from XPT may be 9.299999999: compare rounded numbers
        if pd.api.types.is_numeric_dtype(sub[c]):
            sub[c] = sub[c].astype("float64").round(6)
    n = sub.astype("object").groupby(list(by), dropna=False)[value].transform("nunique")
    return pd.Series(n > 1, index=sub.index).reindex(frame.index, fill_value=False)


def flagged_more_than_once(frame: pd.DataFrame, by: Sequence[str], flag: str) -> pd.Series:
    """Records with `flag` == 'Y' whose `by` group has more than one such record."""
    if flag not in frame.columns:
        return pd.Series(False, index=frame.index)
    y = text(frame[flag]) == "Y"
    y = y.fillna(False).astype(bool)
    if not y.any():
        return y
    sub = frame.loc[y, list(by)].astype("object")
    return duplicated_by(sub, list(by)).reindex(frame.index, fill_value=False)


def keys_of(frame: pd.DataFrame, columns: Sequence[str]) -> pd.MultiIndex:
    """Row keys as a MultiIndex of plain objects (numbers rounded so 1 == 1.0 from text)."""
    parts = []
    for c in columns:
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col):
            parts.append(col.astype("float64").round(6).astype("object"))
        else:
            parts.append(text(col).astype("object"))
    return pd.MultiIndex.from_arrays(parts)


def not_in(
    frame: pd.DataFrame, columns: Sequence[str], other: pd.DataFrame, other_columns: Sequence[str]
) -> pd.Series:
    """Records whose key (`columns`) is not a key of `other` (`other_columns`)."""
    mine = keys_of(frame, columns)
    theirs = keys_of(other, other_columns)
    return pd.Series(~mine.isin(theirs), index=frame.index)


def lookup(
    frame: pd.DataFrame, key: str, other: pd.DataFrame, other_key: str, value: str
) -> pd.Series:
    """`other[value]` for each record's `key` (first match), aligned to `frame`."""
    table = other[[other_key, value]].dropna(subset=[other_key]).drop_duplicates(other_key)
    return plain(frame[key].map(plain(table.set_index(other_key)[value])))


# ISO 8601 durations of the form PnYnMnWnDTnH... (TS PLANDUR, LENGTH) and days per unit.
_NUM = r"(\d+(?:\.\d+)?)"
DURATION = (
    rf"^P(?:(?P<Y>{_NUM[1:-1]})Y)?(?:(?P<M>{_NUM[1:-1]})M)?(?:(?P<W>{_NUM[1:-1]})W)?"
    rf"(?:(?P<D>{_NUM[1:-1]})D)?(?:T.*)?$"
)
_DAYS_PER = {"Y": 365.25, "M": 30.4375, "W": 7.0, "D": 1.0}


def duration_days(values: pd.Series) -> pd.Series:
    """Days of ISO 8601 durations (P52W -> 364, P1Y -> 365.25); NaN where not a duration.

    Time parts (T...) are ignored: a protocol duration is counted in days.
    """
    parts = text(values).str.extract(DURATION)
    days = pd.Series(0.0, index=values.index)
    for unit, per in _DAYS_PER.items():
        days += pd.to_numeric(parts[unit], errors="coerce").fillna(0.0) * per
    valid = text(values).str.match(DURATION).fillna(False) & parts.notna().any(axis=1)
    return days.where(valid.astype(bool))

"""Reusable vectorised operations the rule checks are made of (in the spirit of CORE's
operations library): each takes frames and column names and returns a boolean mask of failing
records, so a rule is one or two calls plus its catalogue parameters. No per-record loops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cdiscforge import vectorise

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


# Below this many records a column is evaluated as it is: factorizing would cost more than it
# saves.
DISTINCT_FROM = 1000
# Codes of the columns factorized inside `shared_codes()`, by the identity of their data.
_CODES: dict[int, _Coded] | None = None


class _Coded:
    """A column's integer codes and distinct values (and, once asked, each code's first row)."""

    __slots__ = ("array", "codes", "first_rows", "uniques")

    def __init__(self, array: object, codes: np.ndarray, uniques: pd.Index) -> None:
        self.array = array  # kept, so its id is not reused while the codes are shared
        self.codes = codes
        self.uniques = uniques
        self.first_rows: np.ndarray | None = None

    def first(self) -> np.ndarray:
        if self.first_rows is None:
            self.first_rows = _first_positions(self.codes, len(self.uniques))
        return self.first_rows


@contextmanager
def shared_codes() -> Iterator[None]:
    """Within the block, each frame column is factorized once (`codes_of`), however many checks
    read it: USUBJID of a findings domain is read by a dozen rules. The codes are released at
    the end of the block."""
    global _CODES
    outer = _CODES
    if outer is None:
        _CODES = {}
    try:
        yield
    finally:
        if outer is None:
            _CODES = None


def _coded(values: pd.Series) -> _Coded:
    # A pyarrow column is known by its Arrow data, which shallow copies of a frame (the
    # validation batch frames) share; any other column by its pandas array.
    array = getattr(values.array, "_pa_array", values.array)
    if _CODES is not None:
        hit = _CODES.get(id(array))
        if hit is not None and hit.array is array:
            return hit
    codes, uniques = _factorize(values)
    found = _Coded(array, codes.astype(_code_type(len(uniques)), copy=False), uniques)
    if _CODES is not None:  # held while shared: codes in the smallest integer type
        _CODES[id(array)] = found
    return found


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize(values, use_na_sentinel=False)`'s grouping of the records: dense codes
    0..count-1 and the distinct values (missing one value of its own). A categorical column
    (cdiscforge.compact's, read_xpt_fast's) is numbered from its own codes, the used
    categories in category order and missing last, instead of hashing every record's code
    (pandas numbers in order of first appearance: no check depends on that order)."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return pd.factorize(values, use_na_sentinel=False)
    raw = values.array.codes
    width = len(values.dtype.categories)
    used = vectorise.used_codes(raw, width, missing=True)  # the last slot: code -1, missing
    if used[:width].all() and not used[width]:  # its codes as they are (read only)
        codes = raw.view()
        codes.flags.writeable = False
    elif used.all():
        codes = raw.astype(_code_type(width + 1))  # a copy: missing -1 becomes `width`
        codes[raw < 0] = width
    else:
        rank = (np.cumsum(used) - 1).astype(_code_type(width + 1))
        codes = rank[raw]  # code -1 reads the last slot: missing, numbered last
    kept = np.flatnonzero(used[:width])
    if used[width]:
        kept = np.append(kept, -1)
    uniques = pd.CategoricalIndex(pd.Categorical.from_codes(kept, dtype=values.dtype))
    return codes, uniques


def codes_of(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of a column's values and its distinct values (missing values one value of
    their own), in order of first appearance; shared inside `shared_codes()`."""
    found = _coded(values)
    return found.codes, found.uniques


def _code_type(count: int) -> type[np.signedinteger]:
    for kind in (np.int8, np.int16, np.int32):
        if count <= np.iinfo(kind).max:
            return kind
    return np.int64


def _first_positions(codes: np.ndarray, count: int) -> np.ndarray:
    """The position of each code's first record (for any dense numbering of the codes)."""
    first = np.empty(count, dtype=np.int64)
    step = np.int32 if len(codes) < 2**31 else np.int64  # half the memory of int64 positions
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1, dtype=step)  # the last write wins
    return first


def _dense(key: np.ndarray, span: int) -> tuple[np.ndarray, int]:
    """Keys in [0, span) renumbered 0..count-1: by a table where the span is small, else by
    hashing."""
    if span <= max(4 * len(key), 1 << 16) and span <= 1 << 24:
        used = np.zeros(span, dtype=bool)
        used[key] = True
        present = np.flatnonzero(used)
        rank = np.empty(span, dtype=np.int64)  # only the used slots are read
        rank[present] = np.arange(len(present))
        return rank[key], len(present)
    codes, found = pd.factorize(key)
    return codes.astype(np.int64), len(found)


def combine_codes(parts: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """One dense code per distinct combination of several columns' codes ((codes, count)
    pairs, aligned, each dense itself, as `codes_of` gives them): a mixed-radix number
    renumbered densely; one column's codes as they are."""
    key, span = parts[0][0].astype(np.int64), parts[0][1]
    if len(parts) == 1:
        return key, span
    for codes, count in parts[1:]:
        if count == 1:  # one value (STUDYID, DOMAIN): it tells no records apart
            continue
        if span * count >= 2**62:
            key, span = _dense(key, span)
        key *= count  # in place (key is this function's own): no new array per column
        key += codes
        span *= count
    return _dense(key, span)


def distinct(columns: Sequence[pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct combinations of aligned `columns`: the position of each combination's first
    record, and each record's combination (an index into those positions).

    Missing values are a value of their own (all kinds of NA alike), as in `duplicated`. One
    hash pass per column (pyarrow strings are dictionary-encoded in C), so checks can work
    per distinct value instead of per record: a dataset of 900,000 records has a few hundred
    dates, visits or results.
    """
    if not columns:
        raise ValueError("distinct() needs at least one column")
    if len(columns) == 1:
        found = _coded(columns[0])
        return found.first(), found.codes
    key, count = groups(columns)
    return _first_positions(key, count), key


def groups(columns: Sequence[pd.Series]) -> tuple[np.ndarray, int]:
    """Each record's combination of the aligned `columns`' values as a dense code, and how
    many there are: `distinct` without the first records (a duplicate count needs none)."""
    if len(columns) == 1:
        found = _coded(columns[0])
        return found.codes, len(found.uniques)
    return combine_codes([(c.codes, len(c.uniques)) for c in map(_coded, columns)])


def rounded_codes(values: pd.Series, decimals: int = 6) -> tuple[np.ndarray, int]:
    """Codes of a numeric column's values rounded to `decimals` (NA a value of its own), from
    its shared codes: the rounding is done once per distinct value."""
    codes, kept = _rounded(values, decimals)
    return codes, len(kept)


def _rounded(values: pd.Series, decimals: int) -> tuple[np.ndarray, pd.Index]:
    """`rounded_codes` and the distinct rounded values (float64, NaN for missing)."""
    found = _coded(values)
    rounded = pd.Series(found.uniques).astype("float64").round(decimals)
    remap, kept = pd.factorize(rounded, use_na_sentinel=False)
    return remap[found.codes], kept


def per_distinct(fn: Callable[..., pd.Series], *columns: pd.Series) -> pd.Series:
    """`fn(*columns)` for an element-wise `fn`, evaluated once per distinct combination of the
    columns' values (cdiscforge.vectorise.per_distinct) on the codes shared inside
    `shared_codes()`; small columns as they are."""
    if len(columns[0]) < DISTINCT_FROM:
        return fn(*columns)
    if len(columns) == 1 and isinstance(columns[0].dtype, pd.CategoricalDtype):
        # its distinct values are its used categories (`codes_of`): no record looked up
        column, found = columns[0], _coded(columns[0])
        if len(found.uniques) * 2 > len(found.codes):  # mostly distinct: as vectorise does
            return fn(column)
        small = pd.Series(found.uniques.array, name=column.name)
        return vectorise.broadcast(fn(small), found.codes, column.index)
    return vectorise.per_distinct(fn, *columns, coded=distinct(columns))


def per_value(
    fn: Callable[[pd.Series], pd.Series], values: pd.Series
) -> tuple[np.ndarray, pd.Series]:
    """`fn` (element-wise) evaluated on each distinct value of `values` once, and each record's
    code into that result: `per_distinct` without the broadcast, for a check that only counts
    or names records (`result.to_numpy()[codes]` is `per_distinct(fn, values)`), so no text
    column as long as the dataset is built. The codes are the shared ones (`codes_of`). A hash
    table holds -0.0 and 0.0 as one value: `fn` must not tell them apart (`per_distinct`
    evaluates such a column per record instead)."""
    found = _coded(values)
    if isinstance(values.dtype, pd.CategoricalDtype):  # its used categories, as they are
        small = pd.Series(found.uniques.array, name=values.name)
    else:
        small = values.iloc[found.first()].reset_index(drop=True)
    return found.codes, fn(small)


def isin(values: pd.Series, allowed) -> pd.Series:
    """`values.isin(allowed)`, tested once per distinct value."""
    return per_distinct(lambda v: _isin(v, allowed), values)


_ARROW_TEXT = (pa.string(), pa.large_string(), pa.null())


def _isin(values: pd.Series, allowed) -> pd.Series:
    """`values.isin(allowed)`. For pyarrow strings `allowed` goes to Arrow in one conversion:
    pandas makes a pyarrow scalar of each allowed value in Python, which for a codelist of a
    thousand terms cost more than the test itself. Same result (pandas keeps the text and
    missing values of `allowed` and tests membership with pyarrow's is_in)."""
    array = values.array
    if not isinstance(array, pd.arrays.ArrowStringArray):
        return values.isin(allowed)
    items = allowed.tolist() if hasattr(allowed, "tolist") else list(allowed)
    try:
        value_set = pa.array(items, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return values.isin(allowed)  # mixed kinds: pandas keeps the text ones
    if value_set.type not in _ARROW_TEXT:
        return values.isin(allowed)
    if not len(value_set):
        return pd.Series(np.zeros(len(values), dtype=bool), index=values.index, name=values.name)
    data = array._pa_array
    found = pc.is_in(data, value_set=value_set.cast(data.type))
    return pd.Series(np.array(found, dtype=np.bool_), index=values.index, name=values.name)


def map_values(values: pd.Series, mapping: pd.Series) -> pd.Series:
    """`values.map(mapping)`, looked up once per distinct value."""
    return per_distinct(lambda v: v.map(mapping), values)


def _key_codes(
    values: pd.Series, decimals: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `keys_in` compares a key column by: its shared codes (`codes_of`), and per code
    whether it stands for a missing value and the distinct value it stands for (plain
    objects); with `decimals`, a number column's values rounded (`rounded_codes`), once per
    distinct value."""
    if decimals is not None and is_number(values):
        codes, uniques = _rounded(values, decimals)
    else:
        codes, uniques = codes_of(values)
    missing = np.asarray(pd.isna(uniques), dtype=bool)
    return codes, missing, np.asarray(uniques, dtype=object)


def is_number(values: pd.Series) -> bool:
    """A column of numbers (not a categorical, whatever its categories)."""
    return pd.api.types.is_numeric_dtype(values) and not isinstance(
        values.dtype, pd.CategoricalDtype
    )


def keys_in(
    left: Sequence[pd.Series], right: Sequence[pd.Series], decimals: int | None = None
) -> np.ndarray:
    """Rows of `left` whose key (the values of its aligned columns) is a row key of `right`:
    `MultiIndex.from_arrays(left).isin(MultiIndex.from_arrays(right))` on plain objects (NA
    equals NA, as MultiIndex levels have it), by integer codes of the distinct values instead
    of a tuple per record. With `decimals`, number columns are compared rounded to that many
    decimals (1 == 1.0 from text, 9.3 read from XPT as 9.299999999): what rounding each
    column first gives, without a rounded copy of the records.

    Each column's distinct left values are looked up among the right ones once; the records
    then take their code by one gather from that small table. A left value the right side
    does not have gets a code of its own that no right key has, so its record's key cannot
    match."""
    n_left = len(left[0])
    if len(right[0]) == 0:
        return np.zeros(n_left, dtype=bool)
    lkey = np.zeros(n_left, dtype=np.int64)
    rkey = np.zeros(len(right[0]), dtype=np.int64)
    span = 1  # keys are in [0, span)
    for lcol, rcol in zip(left, right, strict=True):
        lc, lmiss, lu = _key_codes(lcol, decimals)
        rc, rmiss, ru = _key_codes(rcol, decimals)
        na = int((~rmiss).sum())  # right codes: present values 0..na-1, missing na
        rmap = np.where(rmiss, na, np.cumsum(~rmiss) - 1)
        lmap = np.full(len(lu), na + 1, dtype=np.int64)  # na + 1: not on the right
        lmap[lmiss] = na
        if na and (~lmiss).any():
            pos = pd.Index(ru[~rmiss], dtype=object).get_indexer(pd.Index(lu[~lmiss], dtype=object))
            lmap[~lmiss] = np.where(pos >= 0, pos, na + 1)
        width = na + 2
        if span * width >= 2**40:  # renumber the keys so far densely before they overflow
            both, found = pd.factorize(np.concatenate([lkey, rkey]))
            lkey, rkey, span = (
                both[:n_left].astype(np.int64),
                both[n_left:].astype(np.int64),
                len(found),
            )
        lkey *= width
        lkey += lmap[lc]
        rkey *= width
        rkey += rmap[rc]
        span *= width
    return np.isin(lkey, rkey, kind="table" if span <= 2**26 else "sort")


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
    return per_distinct(_text, values)


def _text(values: pd.Series) -> pd.Series:
    out = as_string(values).str.strip()
    return out.where(out != "")


def _has_text(values: pd.Series) -> pd.Series:
    return _text(values).notna()


def present(frame: pd.DataFrame, column: str) -> pd.Series:
    """True where `column` holds a value (False everywhere when the column is absent)."""
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    col = frame[column]
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        return col.notna()
    return per_distinct(_has_text, col)


def numeric_text(values: pd.Series) -> pd.Series:
    """True where a character value reads as a plain number ("5", "-0.42", "1e3")."""
    return per_distinct(_numeric_text, values)


def _numeric_text(values: pd.Series) -> pd.Series:
    return text(values).str.match(NUMBER).fillna(False).astype(bool)


def as_number(values: pd.Series) -> pd.Series:
    """Values as float64, text that is no number as NaN. A number column is cast as it is:
    `pd.to_numeric` would give it back unchanged after a check of every record."""
    if is_number(values):
        return values.astype("float64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def full_dates(values: pd.Series) -> pd.Series:
    """Full dates (YYYY-MM-DD) of ISO 8601 text or datetimes; partial or bad values as NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.normalize()
    return per_distinct(_text_dates, values)  # a few hundred dates in 900,000 records


def _text_dates(values: pd.Series) -> pd.Series:
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
    return per_distinct(_iso_after, start, end)  # per distinct pair of values


def _iso_after(start: pd.Series, end: pd.Series) -> pd.Series:
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
    return pd.Series(_in_repeated_group([frame[k] for k in keys]), index=frame.index)


def _in_repeated_group(columns: Sequence[pd.Series]) -> np.ndarray:
    """Rows whose combination of values occurs more than once (missing equals missing, as
    in `DataFrame.duplicated(keep=False)`), counted on integer codes."""
    if len(columns[0]) == 0:
        return np.zeros(0, dtype=bool)
    group, count = groups(columns)
    return np.bincount(group, minlength=count)[group] > 1


def inconsistent_within(frame: pd.DataFrame, by: Sequence[str], value: str) -> pd.Series:
    """Records whose `by` group holds more than one distinct non-null `value`."""
    rows = frame[list(by)].notna().all(axis=1) & present(frame, value)
    if not rows.any():
        return pd.Series(False, index=frame.index)
    parts = {}
    for c in [*by, value]:  # 9.3 read from XPT may be 9.299999999: compare rounded numbers
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col):
            parts[c] = rounded_codes(col)
        else:
            codes, uniques = codes_of(col)
            parts[c] = (codes, len(uniques))
    # distinct values per group of the rows, on integer codes (a group-by of Python objects
    # was most of this rule's time on a large findings domain)
    keep = rows.to_numpy(dtype=bool)
    group, n_groups = combine_codes([parts[c] for c in by])
    group = group[keep]
    values = parts[value][0][keep].astype(np.int64)
    n = vectorise.distinct_per_group(group, n_groups, values, parts[value][1])[group]
    out = np.zeros(len(frame), dtype=bool)
    out[keep] = n > 1
    return pd.Series(out, index=frame.index)


def flagged_more_than_once(frame: pd.DataFrame, by: Sequence[str], flag: str) -> pd.Series:
    """Records with `flag` == 'Y' whose `by` group has more than one such record."""
    if flag not in frame.columns:
        return pd.Series(False, index=frame.index)
    y = is_yes(frame[flag])
    if not y.any():
        return y
    flagged = y.to_numpy(dtype=bool)
    group = groups([frame[c] for c in by])[0][flagged]  # codes of the whole columns, shared
    out = np.zeros(len(frame), dtype=bool)
    out[flagged] = np.bincount(group)[group] > 1
    return pd.Series(out, index=frame.index)


def is_yes(values: pd.Series) -> pd.Series:
    """True where a flag's stripped text is "Y" (a bool per record), tested once per
    distinct value: no text column of the records is made."""
    return per_distinct(_is_yes, values)


def _is_yes(values: pd.Series) -> pd.Series:
    return (text(values) == "Y").fillna(False).astype(bool)


def key_parts(frame: pd.DataFrame, columns: Sequence[str]) -> list[pd.Series]:
    """Key columns as compared across datasets: numbers rounded (so 1 == 1.0 from text),
    text stripped with blanks as missing."""
    parts = []
    for c in columns:
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col):
            parts.append(col.astype("float64").round(6))
        else:
            parts.append(text(col))
    return parts


def keys_of(frame: pd.DataFrame, columns: Sequence[str]) -> pd.MultiIndex:
    """Row keys as a MultiIndex of plain objects (numbers rounded so 1 == 1.0 from text)."""
    return pd.MultiIndex.from_arrays([p.astype("object") for p in key_parts(frame, columns)])


def _key_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[pd.Series]:
    """`key_parts` as `keys_in(..., decimals=6)` takes them: numbers as they are (it rounds
    them), text stripped with blanks as missing."""
    return [frame[c] if is_number(frame[c]) else text(frame[c]) for c in columns]


def not_in(
    frame: pd.DataFrame, columns: Sequence[str], other: pd.DataFrame, other_columns: Sequence[str]
) -> pd.Series:
    """Records whose key (`columns`) is not a key of `other` (`other_columns`)."""
    found = keys_in(_key_columns(frame, columns), _key_columns(other, other_columns), 6)
    return pd.Series(~found, index=frame.index)


def lookup(
    frame: pd.DataFrame, key: str, other: pd.DataFrame, other_key: str, value: str
) -> pd.Series:
    """`other[value]` for each record's `key` (first match), aligned to `frame`."""
    table = other[[other_key, value]].dropna(subset=[other_key]).drop_duplicates(other_key)
    return plain(map_values(frame[key], plain(table.set_index(other_key)[value])))


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

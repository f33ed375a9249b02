"""Per-value Python work done once per distinct value, then broadcast.

Clinical data repeat themselves (a visit name, a unit, a subject's sequence number); running a
Python function per row on a 10-million-row form is what makes pipelines slow. These helpers
run it per distinct value (or distinct combination of values) and broadcast the result back
by integer codes (a numpy/pyarrow take), which is also much faster than a hash `Series.map`
over every row.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd


def factorize_rows(*columns: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, first): per row, the number of its distinct combination of the columns'
    values (0, 1 ... in order of first appearance; a missing value counts as a value of its
    own, as drop_duplicates and groupby(dropna=False) treat it), and the first row of each
    combination. The columns are aligned by position.

    The columns' codes are combined (combine_codes) and renumbered once at the end; the
    first rows come from the running maximum of the codes (numbered in order of first
    appearance, a combination is new exactly where the maximum grows), not from a sort
    (np.unique: ~20x the cost).

    One categorical column (a compacted one: MK's at 10,000 subjects, 9M records) is
    renumbered from its own narrow codes, through a table of one entry per category: its
    codes are already a grouping of the rows, hashing them again as int64 (and the copies
    to get there) cost ~4x as much."""
    if len(columns) == 1 and isinstance(columns[0].dtype, pd.CategoricalDtype):
        return _categorical_rows(columns[0])
    combined, span = combine_codes((_codes(col) for col in columns), len(columns[0]))
    if span <= len(combined):  # few combinations: renumbered through a table of them
        return _renumbered(combined, span)
    codes, _ = pd.factorize(combined)  # 0..k-1 in order of first appearance
    return codes, first_rows(codes)


def row_keys(*columns: pd.Series) -> np.ndarray:
    """One int64 per row, equal exactly when the rows' values of the columns are (a missing
    value a value of its own), not numbered: what telling neighbours apart needs (sorted
    records' keys), without factorize_rows' hash of every row."""
    return combine_codes((_codes(col) for col in columns), len(columns[0]))[0]


def _renumbered(combined: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """factorize_rows of codes below `span` (-1 read as span - 1, which none is): each
    code's first row from a table of `span` entries (`first_rows`), the codes numbered by
    it, instead of a hash of every row (the lab catalogue's test code and unit over LB's
    1.6 million records: ~20 combinations)."""
    first = first_rows(combined, span)
    renumber = np.empty(span, dtype=np.intp)
    renumber[combined[first]] = np.arange(len(first), dtype=np.intp)
    return renumber[combined], first


def _categorical_rows(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """factorize_rows(col) of a categorical: its codes' first rows (`first_rows`), then
    each code renumbered by the order of its first row (missing, -1, a value of its own)."""
    return _renumbered(col.array.codes, len(col.dtype.categories) + 1)  # -1: the last entry


def combine_codes(parts: Iterable[tuple[np.ndarray, int]], n: int) -> tuple[np.ndarray, int]:
    """One int64 per row for the combination of several columns' codes (each part: codes in
    0..width-1 and width): equal integers, equal combinations; and a bound on them (every
    integer is below it). Combined in mixed radix, renumbered (a hash of the int64s) only
    when the next column would overflow, so any number of columns fit."""
    codes = np.zeros(n, dtype=np.int64)
    span = 1
    for part, width in parts:
        if span * width >= 2**62:  # would overflow: renumber what is combined so far
            codes, distinct = pd.factorize(codes)
            codes = codes.astype(np.int64, copy=False)
            span = max(len(distinct), 1)
        codes *= width  # in place: millions of rows, no new array per column
        codes += part
        span *= width
    return codes, span


def factorize_text(
    values: pd.Series, narrow: bool = False
) -> tuple[np.ndarray, pd.api.extensions.ExtensionArray]:
    """pd.factorize(values)'s codes and uniques (order of first appearance, -1 missing, intp
    codes, uniques of values' dtype) of a pyarrow-backed text column, by Arrow's dictionary
    encoding written straight into the codes. `narrow`: the codes in the smallest signed
    type that holds -1 .. len(uniques) (a raw export's codes are held through the SDTM
    stage: at 10,000 subjects the joint export's nine columns are 0.6 GiB as intp, a
    tenth of it so; one more than the largest code fits, so code + 1 never overflows).

    pandas does the same encoding, then concatenates the chunks' indices into one Arrow
    array, copies it to numpy and widens that copy to intp: three passes over fresh memory
    per column where one does (at 10,000 subjects a raw lab or joint export is 1.6 to 8.8
    million rows a column, and the page faults of those copies cost more than the hashing).
    The Arrow calls let go of the GIL, so columns can be encoded on two threads
    (cdiscforge.concurrent.threaded). Any other column: pd.factorize itself."""
    if not _arrow_text(values):
        codes, uniques = pd.factorize(values.array)
        return (codes.astype(narrow_codes(len(uniques))) if narrow else codes), uniques
    import pyarrow as pa
    import pyarrow.compute as pc

    data = values.array.__arrow_array__()
    # Each chunk is encoded alone; unifying renumbers them into one dictionary, in the order
    # the values first appear (chunk by chunk): pandas' order.
    encoded = pc.dictionary_encode(data).unify_dictionaries()
    size = len(encoded.chunk(0).dictionary) if encoded.num_chunks else 0
    codes = np.empty(len(values), dtype=narrow_codes(size) if narrow else np.intp)
    start = 0
    for chunk in encoded.chunks:
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, -1)
        end = start + len(indices)
        codes[start:end] = indices.to_numpy(zero_copy_only=False)
        start = end
    empty = pa.array([], type=data.type)
    dictionary = encoded.chunk(0).dictionary if encoded.num_chunks else empty
    return codes, values.dtype.__from_arrow__(dictionary)


def narrow_codes(count: int) -> np.dtype:
    """The smallest signed integer type holding the codes -1 .. `count` (of `count` distinct
    values, -1 missing, and one more: code + 1 fits too)."""
    return np.min_scalar_type(-(count + 1))


def _codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """pd.factorize(col, use_na_sentinel=False)'s codes (or codes of the same grouping of
    the rows: factorize_rows renumbers them) and a bound on them: a categorical's own codes
    (missing, -1, a value of its own), those of the distinct values a column was broadcast
    from, when it was (`coded`), else factorized."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.array.codes.astype(np.int64) + 1, len(col.dtype.categories) + 1
    known = coded(col)
    if known is not None:
        distinct, codes = known
        small, uniques = pd.factorize(distinct, use_na_sentinel=False)
        return small[codes], max(len(uniques), 1)
    if isinstance(col.dtype, pd.CategoricalDtype):  # its codes, missing (-1) a value too
        width = len(col.dtype.categories)
        codes = col.cat.codes.to_numpy()
        return np.where(codes < 0, width, codes), width + 1
    part, uniques = pd.factorize(col, use_na_sentinel=False)
    # A raw column is grouped by again and again (MK's ASSESSMENT for MKTESTCD and MKTEST,
    # JOINT for MKLOC and MKLAT): hashed once, its codes are remembered as a broadcast one's.
    _remember(col, pd.Series(uniques, dtype=col.dtype), part)
    return part, max(len(uniques), 1)


def used_categories(series: pd.Series) -> pd.Index:
    """The categories of a categorical column that some row has, in category order.

    What a question about a compacted column's SET of values (its longest value, its data
    type, the codelist terms it uses) is answered from: each distinct value once instead of
    every record, and without the categories a filtered frame keeps that no record has any
    more (`used_codes`)."""
    categories = series.dtype.categories
    return categories[used_codes(series.array.codes, len(categories))]


def used_codes(codes: np.ndarray, count: int, missing: bool = False) -> np.ndarray:
    """Which of `count` categories some code names (-1, missing, names none), as a mask;
    with `missing`, one more slot last: whether some code is -1.

    The lowest and highest code answer it alone when they are at most one apart (both are
    then used, and nothing between them is unused: a constant or two-valued column, most
    of a clinical dataset's flags and codes), a tenth of the time of the scatter over every
    code (one pass each, no temporary) that answers the others."""
    used = np.zeros(count + 1, dtype=bool)
    if len(codes):
        low, high = int(codes.min()), int(codes.max())
        if high - low <= 1:  # both used; code -1 (missing) marks the extra last slot
            used[low] = used[high] = True
        else:
            used[codes] = True
    return used if missing else used[:-1]


def distinct_per_group(
    groups: np.ndarray, count: int, values: np.ndarray, width: int
) -> np.ndarray:
    """How many distinct `values` (codes 0..width-1) each of `count` groups (codes
    0..count-1, aligned with `values`) has. A table of the (group, value) pairs seen when it
    is small beside the records (no hash of them), else the distinct pairs hashed: a
    reconciliation's source rows written per record block (MK at 10,000 subjects: 8.8
    million records), a validation rule's values per group."""
    if not len(groups):
        return np.zeros(count, dtype=np.int64)
    pairs = groups.astype(np.int64) * width + values
    if count * width <= max(4 * len(groups), 1 << 20):
        seen = np.zeros(count * width, dtype=bool)
        seen[pairs] = True
        return seen.reshape(count, width).sum(axis=1)
    return np.bincount(pd.unique(pairs) // width, minlength=count)


def first_rows(codes: np.ndarray, count: int | None = None) -> np.ndarray:
    """The position of the first row of each distinct code, in row order: what
    drop_duplicates keeps, in one pass over the codes without hashing or sorting the rows.

    Without `count`, the codes are numbered 0, 1 ... in order of first appearance
    (pd.factorize's): a code is new exactly where the running maximum grows. With `count`,
    they are any numbering in -1..count-1 (a categorical's; -1, missing, a value of its
    own)."""
    n = len(codes)
    if count is None:
        if not n:
            return np.zeros(0, dtype=np.int64)
        peak = np.maximum.accumulate(codes)
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.greater(peak[1:], peak[:-1], out=new[1:])
        return np.flatnonzero(new)
    first = np.full(count + 1, n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))  # -1 lands in the last slot
    return np.sort(first[first < n])


def broadcast(
    values: pd.Series, codes: np.ndarray, index: pd.Index, keep_codes: bool = False
) -> pd.Series:
    """Per-distinct `values` (positions = codes) as one value per row, with `index`. A text
    column made so remembers its codes (`coded`) for the rest of the dataset's build.

    `keep_codes` (text only): the column as a categorical of its sorted values instead
    (`text_codes`), not materialised; a rule returns one so when its context allows
    (`RuleContext.keep_codes`: the engine then gives later rules its strings)."""
    if isinstance(values, pd.DataFrame):
        out = values.reset_index(drop=True).take(codes)
        out.index = index
        return out
    if keep_codes and values.dtype == object and pd.api.types.infer_dtype(values) == "string":
        values = values.astype("string")  # text as objects (a dict's .map): what _typed makes
    if keep_codes and _arrow_text(values):
        return text_codes(values, codes, index)
    out = take(values, codes, index)
    _remember(out, values, codes)
    return out


# --- text columns kept as codes -------------------------------------------------------------
# Most text columns of a big findings dataset repeat a few values (STUDYID, MKTESTCD, MKLOC
# ...). Materialised, each is ~9M strings at 10,000 subjects: taken once when broadcast,
# again when the records are sorted, checked (ASCII, 200 bytes) record by record, and, in
# the build's second process, factorized again to travel compact. The engine keeps such a
# column as a categorical of its sorted distinct values instead (the form of
# `cdiscforge.compact`: codes by code point order, missing -1), sorts and checks it through
# its codes and categories, and materialises its strings once (`as_text`) where a rule reads
# it, and at the end (or never, when the dataset is to travel compact).


def text_codes(distinct: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """`broadcast(distinct, codes, index)` (text) as a categorical: the distinct non-missing
    values in sorted order (pd.factorize(sort=True), what `compact.compact_series` makes of
    the strings), a missing value code -1. Only `distinct` is hashed and sorted."""
    small, uniques = pd.factorize(distinct.reset_index(drop=True), sort=True)
    narrow = small.astype(np.min_scalar_type(-max(len(uniques), 1)))  # what from_codes keeps
    if len(small) == 1:  # one value (a constant): every record's code is its own, no gather
        full = np.full(len(codes), narrow[0], dtype=narrow.dtype)
    else:
        full = narrow[codes] if len(small) else np.full(len(codes), -1, dtype=narrow.dtype)
    values = pd.Categorical.from_codes(full, categories=uniques, validate=False)
    return pd.Series(values, index=index, name=distinct.name, copy=False)


def as_text(series: pd.Series) -> pd.Series:
    """A categorical text column (`text_codes`) as the strings it stands for (its
    categories' dtype, missing where its code is -1), remembered with its codes (`coded`);
    any other column as it is."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        return series
    categories = series.dtype.categories
    distinct = pd.Series(categories, dtype=categories.dtype, name=series.name)
    distinct = pd.concat(
        [distinct, pd.Series([pd.NA], dtype=categories.dtype, name=series.name)],
        ignore_index=True,
    )
    codes = series.array.codes
    return broadcast(distinct, np.where(codes < 0, len(categories), codes), series.index)


# --- the codes of broadcast text columns -----------------------------------------------------
# A mapped text column (STUDYID, MKTESTCD, MKLOC, EPOCH ...) is made from a few distinct values
# and the rows' codes; the rules after it group and join by it (factorize_rows: --SEQ, flags,
# date parts per distinct row), each of which would hash its ~9 million strings again at
# 10,000 subjects. Each such column is remembered here, by its Arrow data (the very object:
# pandas keeps it through astype to its own dtype, frame assignment and a one-frame concat;
# any new column is new data, so a stale entry cannot be met), with its distinct values and
# codes: the hashing is done on the few values and the codes follow by an integer take. An
# entry goes when its column is freed (weak reference) and all go when the engine finishes a
# dataset (`forget`), so nothing outlives the build that made it; the codes are kept in the
# narrowest integer type (a joint code in one byte per row, not eight). (Sorting a column
# through its codes was measured too: no faster than pyarrow's take of the strings; the engine
# keeps such columns as categoricals instead, see `text_codes`.) A raw text column grouped by
# (factorize_rows) is remembered the same way, with its codes in order of first appearance.
_CODED: dict[int, tuple[weakref.ref, pd.Series, np.ndarray]] = {}


def _arrow_data(column: pd.Series) -> Any:
    """The Arrow data of a pyarrow-backed text column (the object itself), else None."""
    if not isinstance(column, pd.Series) or not _arrow_text(column):
        return None
    return column.array.__arrow_array__()


def _remember(column: pd.Series, distinct: pd.Series, codes: np.ndarray) -> None:
    data = _arrow_data(column)
    if data is None or len(codes) != len(column) or (len(codes) and codes.min() < 0):
        return
    key = id(data)
    narrow = codes.astype(np.min_scalar_type(max(len(distinct) - 1, 0)), copy=False)
    distinct = distinct.reset_index(drop=True)
    _CODED[key] = (weakref.ref(data, lambda _, key=key: _CODED.pop(key, None)), distinct, narrow)


def remember_codes(column: pd.Series, distinct: pd.Series, codes: np.ndarray) -> None:
    """Remember `column` (pyarrow text) as `distinct` broadcast through `codes` (-1:
    missing, given a missing value of its own) until `forget`, as `broadcast` does its
    result: what a raw export's columns are, encoded once when the export was checked
    (raw.RawForm.distinct), so that a dataset grouping by them does not hash their
    millions of strings again (the joint export's ASMDAT, FOLDER, JOINT, ASSESSMENT,
    SUBJECT for MK at 10,000 subjects: 8.8 million rows each)."""
    if len(codes) and codes.min() < 0:
        missing = pd.Series([pd.NA], dtype=distinct.dtype, name=distinct.name)
        distinct = pd.concat([distinct, missing], ignore_index=True)
        codes = np.where(codes < 0, len(distinct) - 1, codes)
    _remember(column, distinct, codes)


def coded(column: pd.Series) -> tuple[pd.Series, np.ndarray] | None:
    """(distinct values, codes) when `column` is exactly `broadcast(distinct, codes, ...)`
    made during this dataset's build (position-aligned: column[i] = distinct[codes[i]]),
    else None."""
    data = _arrow_data(column)
    entry = _CODED.get(id(data)) if data is not None else None
    if entry is None or entry[0]() is not data:
        return None
    return entry[1], entry[2]  # narrow: an index all the same (a copy as intp is 8 bytes a row)


_known = coded  # for per_distinct, whose `coded` parameter hides it


def forget() -> None:
    """Drop every remembered column's codes (the engine, after each dataset)."""
    _CODED.clear()


def take(values: pd.Series, positions: np.ndarray, index: pd.Index) -> pd.Series:
    """`values.take(positions)` (non-negative positions) with `index`: the same values,
    dtype and name, taken by the column's own array (`ExtensionArray.take`, pyarrow's take
    for text) without Series.take's index take and bounds checks, about half its cost on a
    long text column."""
    if isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        taken = values.array.take(positions)
    else:  # numpy: dtype stated, or pandas would infer text from an object array
        taken = values.to_numpy(copy=False).take(positions)
    return pd.Series(taken, index=index, dtype=values.dtype, name=values.name, copy=False)


def isin(values: pd.Series | pd.Index, within: pd.Series | pd.Index) -> np.ndarray:
    """`values.isin(within)` as a numpy bool array. Both pyarrow text: one pyarrow is_in
    with `within`'s own Arrow data as the value set (missing matches missing, as pandas
    has it); pandas builds that set a Python scalar per value, which at 10,000 subjects
    cost seconds per subject join. Anything else: pandas' isin."""
    if _arrow_text(values) and _arrow_text(within):
        import pyarrow as pa
        import pyarrow.compute as pc

        data = pa.chunked_array(values.array.__arrow_array__())
        allowed = pa.chunked_array(within.array.__arrow_array__()).combine_chunks()
        found = pc.is_in(data, value_set=allowed.cast(data.type))
        return np.asarray(found, dtype=np.bool_)
    return np.asarray(values.isin(within), dtype=np.bool_)


def _arrow_text(values: pd.Series | pd.Index) -> bool:
    dtype = values.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def per_distinct(
    fn: Callable[..., pd.Series],
    *columns: pd.Series,
    coded: tuple[np.ndarray, np.ndarray] | None = None,
    keep_codes: bool = False,
) -> pd.Series:
    """`fn(*columns)` for an element-wise `fn` (row i of the result depends only on row i
    of the columns), computed on the distinct rows only and broadcast back: the same values
    and dtype, on the index of the first column. The columns are aligned by position.

    `coded` is (first row of each combination, each row's combination) when the caller has
    the codes already (validation shares each column's codes between its checks). Evaluated
    as it is when mostly distinct (nothing to save) or when a float column holds -0.0: a
    hash table takes -0.0 and 0.0 for one value, not every function does (str(-0.0)).
    `keep_codes`: a text result broadcast as a categorical (`broadcast`).

    One column broadcast from distinct values that every row uses (a raw export's column,
    its codes from the check; a mapped column: `coded`) is evaluated on those values and
    broadcast by its own codes, without hashing its rows again."""
    if any(map(_has_negative_zero, columns)):
        return fn(*columns)
    if coded is None and len(columns) == 1:
        known = _known(columns[0])
        if known is not None:
            distinct, small = known
            if len(distinct) * 2 <= len(small) and used_codes(small, len(distinct)).all():
                return broadcast(fn(distinct.rename(columns[0].name)), small,
                                 columns[0].index, keep_codes)  # fmt: skip
    first, codes = coded if coded is not None else factorize_rows(*columns)[::-1]
    if len(first) * 2 > len(codes):
        return fn(*columns)
    small = [col.iloc[first].reset_index(drop=True) for col in columns]
    return broadcast(fn(*small), codes, columns[0].index, keep_codes)


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
    ranks = _sorted_ranks(frame, keys)
    if len(ranks) == 1:
        return np.argsort(ranks[0], kind="stable")
    # np.lexsort: last key primary; the row order as the least significant key (stable)
    return np.lexsort([np.arange(len(frame)), *reversed(ranks)])


def sorted_groups(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, int]:
    """(group, count): per row, the number of its combination of the `keys` values among
    the frame's distinct combinations in sorted order (0, 1 ... count - 1), the order
    `groupby(keys, sort=True, dropna=False)` gives its groups (missing a value of its own,
    sorted last). From the keys' sorted codes, as `stable_order`: a categorical column
    groups by its codes (its categories are in sorted order), without its text."""
    ranks = _sorted_ranks(frame, keys)
    if len(ranks) == 1:  # a hash of the ranks, then a sort of the distinct ones only
        group, distinct = pd.factorize(ranks[0], sort=True)
    else:  # each row's ranks, compared first to last
        distinct, group = np.unique(np.stack(ranks, axis=1), axis=0, return_inverse=True)
    return group.reshape(-1).astype(np.intp, copy=False), len(distinct)


def last_in_groups(frame: pd.DataFrame, keys: Sequence[str], then: Sequence[str]) -> np.ndarray:
    """Row positions of the last record of each `keys` group once the frame is sorted by
    `keys` and `then` (stable, missing last): what
    `frame.sort_values([*keys, *then], kind="stable").groupby(keys, dropna=False).tail(1)`
    keeps, in sorted order, from one argsort of integer ranks (`stable_order`) and the
    places where the keys' ranks change, without sorting or grouping the frame itself."""
    order = stable_order(frame, [*keys, *then])
    if not len(order):
        return order
    ranks = [r[order] for r in _sorted_ranks(frame, keys)]
    last = np.zeros(len(order), dtype=bool)
    last[-1] = True
    for r in ranks:
        last[:-1] |= r[1:] != r[:-1]
    return order[last]


def _sorted_ranks(frame: pd.DataFrame, keys: Sequence[str]) -> list[np.ndarray]:
    """Per row, int64 ranks that sort as the `keys` values (missing last): the keys' sorted
    codes in mixed radix, a new rank (compared after) where the next would overflow."""
    n = len(frame)
    ranks: list[np.ndarray] = []
    combined = np.zeros(n, dtype=np.int64)
    span = 1
    for key in keys:
        column = frame[key]
        known = coded(column)
        if isinstance(column.dtype, pd.CategoricalDtype):  # its codes: in category order,
            uniques = column.dtype.categories  # as sort_values orders it (text_codes, compact:
            codes = column.array.codes  # the text's sorted values)
        elif known is not None:  # the distinct values' sorted codes, per row
            small, uniques = pd.factorize(known[0], sort=True)
            codes = small[known[1]]
        elif _sorted_categories(frame[key]):  # its codes sort as its values
            uniques = frame[key].dtype.categories
            codes = frame[key].cat.codes.to_numpy()
        else:
            codes, uniques = pd.factorize(frame[key], sort=True)
        width = len(uniques) + 1
        if span * width >= 2**62:  # would overflow: start another rank, sorted after
            ranks.append(combined)
            combined = np.zeros(n, dtype=np.int64)
            span = 1
        # In place, the codes as they are (a categorical's int8): no int64 temporaries per
        # key over every record (MK's sort at 10,000 subjects: 8.8 million each); a missing
        # value (-1) is then moved to the last rank, len(uniques).
        combined *= width
        combined += codes
        missing = np.asarray(codes) < 0
        if missing.any():
            combined[missing] += width
        span *= width
    ranks.append(combined)
    return ranks


def _sorted_categories(column: pd.Series) -> bool:
    """Whether `column` is a categorical whose categories are in sorted order (a compacted
    column's are: cdiscforge.compact), so that its codes order the records as its values."""
    dtype = column.dtype
    return isinstance(dtype, pd.CategoricalDtype) and dtype.categories.is_monotonic_increasing


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

"""CDISC Dataset-JSON 1.1: writer, reader and schema check, in all three encodings.

Dataset-JSON is the exchange format FDA is moving to beside XPT. It has three encodings, all
the same content, told apart by the file's extension:

* ``.json``: one JSON object, the rows in its ``rows`` array;
* ``.ndjson`` (Dataset-NDJSON): line 1 the metadata object (no ``rows``), then one JSON array
  per row, one per line, each line ending in a newline;
* ``.dsjc`` (Compressed Dataset-JSON, CDISC DSJC 1.1): the Dataset-NDJSON bytes as one zlib
  stream (RFC 1950: zlib header and Adler-32, no other wrapper), level 9 as the DSJC
  specification recommends for exchange, 15-bit window. CDISC CORE and R's datasetjson read
  it with a plain zlib decompress.

The writer streams: it writes the metadata, then the rows in chunks of `chunk_rows`, so a
large LB never exists as one JSON string in memory (DSJC compresses chunk by chunk). Each
chunk is encoded column-wise: every DISTINCT value of a column is converted and encoded once
by the C JSON encoder (a categorical's categories once per file), and ONE Arrow take of the
columns' texts in row order lays the chunk's rows out back to back, written straight from
Arrow's buffer (no Python object per value, one copy of the bytes). The reader
streams Dataset-NDJSON and DSJC a chunk of lines at a time. Output is deterministic: keys in
the order of the standard's examples, compact separators, floats in Python's shortest
round-trip form (``repr``), which reads back to the very same double (1e-300, 4.9e-07,
0.30000000000000004 and -0.0 included).

Conventions (the same as `cdiscforge.xpt`, so XPT and JSON read back to the same frame):

* Missing values are written as null; on reading, null and "" in a character column are both
  missing (SAS has no distinct empty string).
* Numeric SAS dates/datetimes/times (Num variables with a date format) are written as ISO 8601
  strings with dataType date/datetime/time and targetDataType "integer", as Dataset-JSON 1.1
  specifies, and read back as datetime64 / timedelta64 columns.
* Other numerics are read back as float64 (what every XPT reader returns).
* A numeric variable whose spec declares significant digits (define.xml: DataType float with
  SignificantDigits) is dataType "decimal", targetDataType "decimal": each value a decimal
  string with at least that many decimals ("39.00"), more where the double needs them to be
  read back exactly (never rounded: a value is not changed by the file format).
* SAS special missing values (.A-.Z, ._) are not carried by the dataset model (the XPT reader
  reads them as missing): they are written as null like '.'.
* OIDs (itemGroupOID, itemOID, studyOID, metaDataVersionOID) are the ones define.xml uses.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import jsonschema
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import (
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_numeric_dtype,
    is_timedelta64_dtype,
)

from cdiscforge import __version__
from cdiscforge.define.datatypes import define_data_type, json_data_type, temporal_kind
from cdiscforge.define.oids import item_group_oid, item_oid, mdv_oid, oid_part, study_oid
from cdiscforge.errors import CdiscforgeError, InputError
from cdiscforge.model import Dataset, StudyInfo, Variable, char_max_bytes
from cdiscforge.outputs import preallocate

DATASET_JSON_VERSION = "1.1.0"
DEFAULT_CHUNK_ROWS = 10_000
# An integer column spanning at most this many values is encoded from one dictionary of them.
_INT_RANGE = 4096
# Encodings by file suffix; the order is the preference when a folder holds a dataset twice.
ENCODINGS = ("json", "ndjson", "dsjc")
SUFFIXES = {"json": ".json", "ndjson": ".ndjson", "dsjc": ".dsjc"}
DSJC_LEVEL = 9  # the DSJC specification's recommendation for data exchange
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_NULL = "null"
SAS_EPOCH = pd.Timestamp("1960-01-01")
_ISO_FORMATS = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%dT%H:%M:%S"}


def _columns(dataset: Dataset) -> list[dict[str, Any]]:
    keys = {k: i for i, k in enumerate(dataset.keys, start=1)}
    columns = []
    for var in dataset.variables:
        series = dataset.frame[var.name]
        data_type, target = json_data_type(define_data_type(var, series), var)
        column: dict[str, Any] = {
            "itemOID": item_oid(dataset.name, var.name),
            "name": var.name,
            "label": var.label,
            "dataType": data_type,
        }
        if target:
            column["targetDataType"] = target
        if var.is_char:
            column["length"] = var.length or max(1, char_max_bytes(series))
        if var.format and not var.is_char:
            column["displayFormat"] = var.format
        if var.name in keys:
            column["keySequence"] = keys[var.name]
        columns.append(column)
    return columns


def _with_nulls(values: np.ndarray, missing: np.ndarray) -> list[Any]:
    out = np.asarray(values, dtype=object)
    out[missing] = None
    return out.tolist()


def _temporal_as_iso(series: pd.Series, kind: str) -> list[Any]:
    """ISO 8601 text of SAS dates/datetimes/times (None for missing), value by value: the
    writer calls it on the distinct values of a chunk only."""
    if kind == "time":
        seconds = pd.to_timedelta(series).dt.total_seconds()
        missing = seconds.isna().to_numpy()
        secs = seconds.fillna(0).to_numpy().astype(np.int64)
        text = (
            pd.Series(secs // 3600).astype(str).str.zfill(2)
            + ":"
            + pd.Series(secs // 60 % 60).astype(str).str.zfill(2)
            + ":"
            + pd.Series(secs % 60).astype(str).str.zfill(2)
        )
        return _with_nulls(text.to_numpy(dtype=object), missing)
    if pd.api.types.is_datetime64_any_dtype(series):
        moments = series
    else:
        unit = "D" if kind == "date" else "s"
        moments = SAS_EPOCH + pd.to_timedelta(pd.to_numeric(series), unit=unit)
    text = moments.dt.strftime(_ISO_FORMATS[kind])
    return _with_nulls(text.to_numpy(dtype=object), moments.isna().to_numpy())


def _decimal_text(
    numbers: np.ndarray, missing: np.ndarray, digits: int
) -> tuple[np.ndarray, list[str]]:
    """Decimal strings of a float64 column: at least `digits` decimals, and as many more as
    the double needs to read back bit for bit (numpy's shortest unique positional form).

    Formatted once per distinct double (factorized on the bit pattern, so -0.0 stays "-0.00"
    and is not merged with 0.0): the codes (-1 for missing) and the text of each distinct.
    """
    codes, distinct = _bit_codes(numbers, missing)
    trim = "k" if digits else "-"
    texts = [
        np.format_float_positional(v, unique=True, trim=trim, min_digits=digits) for v in distinct
    ]
    return codes, texts


def _bit_codes(numbers: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct doubles by bit pattern (pd.factorize alone merges -0.0 with 0.0),
    -1 where missing, and the distinct doubles."""
    bits = np.where(missing, 0.0, numbers).view(np.int64)
    codes, distinct = pd.factorize(bits)
    codes[missing] = -1
    return codes, np.asarray(distinct, dtype=np.int64).view(np.float64)


def _json_numbers(distinct: np.ndarray) -> list[str]:
    """The JSON text of each number, from ONE call of the C encoder on the list of them
    (numbers hold no comma, so the array's text splits back into its items)."""
    if not len(distinct):
        return []
    return _ENCODE(distinct.tolist())[1:-1].split(",")


class _ColumnText:
    """The JSON text of one column's values, a chunk of rows at a time: a dictionary of
    texts (an Arrow string array, "null" FIRST) and a code per row into it (-1 for missing,
    so code + 1 indexes the dictionary).

    Why per distinct value: the old writer turned every value into a Python object and encoded
    it; here each chunk is factorized, each DISTINCT value converted (the same conversion,
    value by value) and encoded by the same C encoder, so the bytes are those of encoding
    every value. A categorical column's categories are encoded once for all chunks and its
    codes are the categorical's own (a view, no copy per chunk). `prefix`/`suffix` (the row's
    "[", the "," between items, "]" and the newline) are glued to the distinct texts, so the
    rows are assembled without a row loop (`_rows_bytes`).
    """

    def __init__(
        self, series: pd.Series, var: Variable, data_type: str, prefix: str, suffix: str
    ) -> None:
        self._series = series
        self._var = var
        self._data_type = data_type
        self._prefix = prefix
        self._suffix = suffix
        self._kind = temporal_kind(var)
        self._categories: pa.Array | None = None
        self._cat_codes: np.ndarray | None = None
        # an Arrow-stored string column is sliced in Arrow (no pandas slice per chunk, no copy)
        self._arrow = pa.array(series.array) if var.is_char and _arrow_strings(series) else None
        if var.is_char and isinstance(series.dtype, pd.CategoricalDtype):
            cats = series.dtype.categories
            if cats.dtype == object or isinstance(cats.dtype, pd.StringDtype):
                # astype("string") of a categorical converts its categories one by one (the
                # same call, on a categorical holding each category once)
                each = pd.Categorical.from_codes(np.arange(len(cats)), dtype=series.dtype)
                self._categories = self._dictionary(
                    self._char_texts(pd.Series(each).astype("string"))
                )
                self._cat_codes = series.array.codes  # the categorical's codes: no copy
        self._int_low, self._ints = self._integer_range()

    def _integer_range(self) -> tuple[int, pa.Array | None]:
        """For an "integer" column whose values span at most `_INT_RANGE` integers (MKSEQ,
        --DY, VISITNUM ...): the lowest and the dictionary of every integer from it to the
        highest, made once; a chunk's codes are then value - lowest (no hashing per chunk).
        The texts are those the JSON encoder gives a Python int (its repr)."""
        series = self._series
        if (
            self._data_type != "integer"
            or self._kind is not None
            or self._var.is_char
            or not is_numeric_dtype(series)
            or is_bool_dtype(series)
            or is_datetime64_any_dtype(series)
            or is_timedelta64_dtype(series)
            or not len(series)
        ):
            return 0, None
        low, high = series.min(), series.max()  # missing values skipped (all missing: NA)
        if pd.isna(low) or pd.isna(high) or not np.isfinite(low) or not np.isfinite(high):
            return 0, None
        if high - low >= _INT_RANGE:
            return 0, None
        low = int(low)
        return low, self._dictionary([str(v) for v in range(low, int(high) + 1)])

    def _dictionary(self, texts: list[str]) -> pa.Array:
        """The text "null" (for code -1) first, then the distinct texts with prefix/suffix."""
        p, s = self._prefix, self._suffix
        texts.insert(0, _NULL)
        return pa.array([p + t + s for t in texts] if p or s else texts, type=pa.string())

    @staticmethod
    def _char_texts(text: pd.Series) -> list[str]:
        values = text.to_numpy(dtype=object, na_value=None).tolist()
        return [_NULL if v is None else _ENCODE(v) for v in values]

    def chunk(self, start: int, stop: int) -> tuple[pa.Array, np.ndarray]:
        """The dictionary of the rows start..stop and their codes (-1: missing)."""
        if self._cat_codes is not None:
            return self._categories, self._cat_codes[start:stop]  # type: ignore[return-value]
        if self._arrow is not None:
            # Arrow's own dictionary encoding: the same strings astype("string") gives
            piece = self._arrow.slice(start, stop - start)
            if isinstance(piece, pa.ChunkedArray):
                piece = piece.combine_chunks()
            encoded = pc.dictionary_encode(piece)
            dictionary = self._dictionary([_ENCODE(v) for v in encoded.dictionary.to_pylist()])
            codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            return dictionary, codes
        if self._ints is not None:
            piece = self._series.iloc[start:stop]
            numbers = piece.to_numpy(dtype="float64", na_value=np.nan)
            offset = np.where(np.isfinite(numbers), numbers - self._int_low, -1.0)
            return self._ints, offset.astype(np.int32)
        codes, texts = self._codes(self._series.iloc[start:stop])
        return self._dictionary(texts), codes

    def fixed(self) -> tuple[pa.Array, int, int] | None:
        """For a column whose dictionary is the same in every chunk (a categorical's
        categories, an integer range): that dictionary and the lowest and highest index into
        it (code + 1) a row has; None for the others (per-chunk dictionaries) and no rows."""
        if self._cat_codes is not None:
            codes = self._cat_codes
            if not len(codes):
                return None
            return self._categories, int(codes.min()) + 1, int(codes.max()) + 1  # type: ignore[return-value]
        if self._arrow is not None or self._ints is None:
            return None
        missing = bool(self._series.isna().any())
        return self._ints, 0 if missing else 1, len(self._ints) - 1

    def _codes(self, series: pd.Series) -> tuple[np.ndarray, list[str]]:
        var = self._var
        if self._kind is not None:
            codes, distinct = pd.factorize(series)
            iso = _temporal_as_iso(pd.Series(distinct), self._kind)
            return codes, [_NULL if v is None else _ENCODE(v) for v in iso]
        if var.is_char:
            codes, distinct = pd.factorize(series.astype("string"))
            return codes, self._char_texts(pd.Series(distinct))
        if is_datetime64_any_dtype(series) or is_timedelta64_dtype(series):
            raise CdiscforgeError(
                f"Dataset-JSON: variable {var.name} holds dates but has no SAS date format "
                f"(format {var.format!r}); give it one (e.g. DATE9.) in its spec"
            )
        if not is_numeric_dtype(series):  # (to_numeric leaves a numeric column as it is)
            series = pd.to_numeric(series)
        numbers = series.to_numpy(dtype="float64", na_value=np.nan)
        missing = ~np.isfinite(numbers)
        if self._data_type == "decimal":
            codes, decimals = _decimal_text(numbers, missing, var.significant_digits or 0)
            return codes, [_ENCODE(t) for t in decimals]
        if self._data_type == "integer":
            codes, whole = pd.factorize(np.where(missing, 0, numbers).astype(np.int64))
            codes[missing] = -1
            return codes, _json_numbers(np.asarray(whole))
        codes, distinct = _bit_codes(numbers, missing)
        return codes, _json_numbers(distinct)


# Adjacent fixed-dictionary columns are joined while their joint dictionary has at most this
# many texts and bytes (`_joined`).
_JOINED_TEXTS = 1 << 16
_JOINED_BYTES = 1 << 22


class _JoinedText:
    """Adjacent columns with fixed dictionaries (`_ColumnText.fixed`) as ONE column whose
    texts are every combination of theirs, glued in column order (each already ends in ","
    or the row's end): a row's text in them is its texts in the columns, back to back, so
    the rows' bytes are the same, and the chunk's one take gathers one text per group of
    columns instead of one per column (MK: 21 columns, 6 groups). A row's code is its
    mixed-radix number over the columns' used index ranges, minus 1 (`_rows_bytes` adds 1
    to every column's codes, for the "null" first text)."""

    def __init__(self, members: list[tuple[_ColumnText, pa.Array, int, int]]) -> None:
        sizes = [high - low + 1 for _, _, low, high in members]
        total = int(np.prod(sizes))
        self._members: list[tuple[_ColumnText, int, int]] = []
        pieces = []
        stride = total
        everything = np.arange(total, dtype=np.int64)
        for (column, dictionary, low, _), size in zip(members, sizes, strict=True):
            stride //= size
            self._members.append((column, low, stride))
            which = pa.array((everything // stride) % size + low)
            pieces.append(dictionary.take(which))
        self._dictionary = pc.binary_join_element_wise(*pieces, "")

    def chunk(self, start: int, stop: int) -> tuple[pa.Array, np.ndarray]:
        """The joint dictionary and the rows' codes into it (as `_ColumnText.chunk`)."""
        index = np.full(stop - start, -1, dtype=np.int64)
        for column, low, stride in self._members:
            _, codes = column.chunk(start, stop)
            index += (codes.astype(np.int64) + (1 - low)) * stride
        return self._dictionary, index


def _joined(columns: list[_ColumnText]) -> list[_ColumnText | _JoinedText]:
    """`columns` with each run of adjacent fixed-dictionary columns whose joint dictionary
    stays within `_JOINED_TEXTS` texts and `_JOINED_BYTES` bytes made one `_JoinedText`
    (greedily, left to right). A joint text is a text of each column: the joint dictionary
    holds the texts of each column's window as often as the others' windows combine."""
    out: list[_ColumnText | _JoinedText] = []
    run: list[tuple[_ColumnText, pa.Array, int, int]] = []
    texts, mean = 1, 0.0  # the run's joint texts, and their mean length

    def close() -> None:
        if len(run) > 1:
            out.append(_JoinedText(run))
        elif run:
            out.append(run[0][0])
        run.clear()

    for column in columns:
        fixed = column.fixed()
        size, length = 0, 0.0
        if fixed is not None:
            dictionary, low, high = fixed
            size = high - low + 1
            length = pc.sum(pc.binary_length(dictionary.slice(low, size))).as_py() / size
        more = texts * size
        if fixed is None or more > _JOINED_TEXTS or more * (mean + length) > _JOINED_BYTES:
            close()
            texts, mean = 1, 0.0
        if fixed is None:
            out.append(column)
            continue
        run.append((column, *fixed))
        texts *= size
        mean += length
    close()
    return out


def _arrow_strings(series: pd.Series) -> bool:
    """Whether a column is a pandas string column stored in Arrow ("str", "string[pyarrow]")."""
    return isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow"


def _rows_bytes(
    columns: list[_ColumnText | _JoinedText],
    start: int,
    stop: int,
    combined: list[Any] | None = None,
) -> memoryview:
    """The rows start..stop as one UTF-8 text, from ONE Arrow take.

    Every column's texts already carry what follows them in a row ("," or the row's end), so
    the rows are the texts of (row 0, column 0), (row 0, column 1) ... (row 1, column 0) ...
    back to back: the columns' dictionaries are put end to end, each row's codes shifted into
    that combined dictionary (a row-major (rows, columns) index), and the take of those
    indices lays the whole chunk's text out in its data buffer (one copy of the bytes; no
    per-column array joined afterwards). `combined` keeps the last chunk's dictionaries and
    them put end to end, which the next chunk reuses when every column's dictionary is the
    very one it had (fixed dictionaries: categoricals, integer ranges, joined columns),
    instead of copying them again.
    """
    parts = [column.chunk(start, stop) for column in columns]
    n = stop - start
    index = np.empty((n, len(parts)), dtype=np.int32)
    base = 1  # code -1 (missing) + 1 is the dictionary's "null", its first text
    for i, (dictionary, codes) in enumerate(parts):
        np.add(codes, base, out=index[:, i], dtype=np.int32, casting="unsafe")
        base += len(dictionary)
    dictionaries = [dictionary for dictionary, _ in parts]
    if combined and all(a is b for a, b in zip(combined[0], dictionaries, strict=True)):
        ends = combined[1]  # (the dictionaries held there cannot be new ones at old addresses)
    else:
        ends = pa.concat_arrays(dictionaries)
        if combined is not None:
            combined[:] = [dictionaries, ends]
    indices = pa.array(index.reshape(-1))
    try:
        rows = ends.take(indices)
    except (pa.ArrowInvalid, pa.ArrowCapacityError):  # over 2 GiB of text: 64-bit offsets
        rows = ends.cast(pa.large_string()).take(indices)
    width = np.int64 if pa.types.is_large_string(rows.type) else np.int32
    offsets = np.frombuffer(rows.buffers()[1], dtype=width)
    first, last = offsets[rows.offset], offsets[rows.offset + len(rows)]
    return memoryview(rows.buffers()[2])[first:last]


def encoding_of(path: Path) -> str:
    """The Dataset-JSON encoding a file name says ("json", "ndjson" or "dsjc")."""
    suffix = Path(path).suffix.lower()
    for name, ext in SUFFIXES.items():
        if suffix == ext:
            return name
    raise CdiscforgeError(
        f"{path}: not a Dataset-JSON file name (expected {', '.join(SUFFIXES.values())})"
    )


class _Sink:
    """Where the encoded text goes: a UTF-8 text file, or a zlib stream for DSJC.

    The file's final size is not known before its rows are encoded, so its disk blocks are
    reserved ahead as it grows, half as much again as written each time
    (`outputs.preallocate`), and the file is truncated to what was written when closed."""

    def __init__(self, path: Path, encoding: str, level: int) -> None:
        self._fh = path.open("wb")
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 15) if encoding == "dsjc" else None
        self._written = 0
        self._reserved = 0

    def write(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes | memoryview) -> None:
        self._out(self._zlib.compress(data) if self._zlib is not None else data)

    def _out(self, data: bytes | memoryview) -> None:
        end = self._written + memoryview(data).nbytes
        if end > self._reserved:
            self._reserved = end + end // 2
            preallocate(self._fh.fileno(), self._reserved)
        self._fh.write(data)
        self._written = end

    def close(self) -> None:
        if self._zlib is not None:
            self._out(self._zlib.flush())
        self._fh.truncate()  # the blocks reserved past the end
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()


def write_dataset_json(
    dataset: Dataset,
    path: Path,
    *,
    study: StudyInfo,
    created: str,
    define_path: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    encoding: str | None = None,
    dsjc_level: int = DSJC_LEVEL,
) -> Path:
    """Write one dataset as Dataset-JSON 1.1, streaming rows in chunks.

    `encoding` is "json", "ndjson" or "dsjc" (default: what the file name's suffix says).
    `created` is the build's fixed creation time (also used as dbLastModifiedDateTime: the
    datasets are snapshots of that build). `define_path` becomes metaDataRef.
    """
    path = Path(path)
    encoding = encoding or encoding_of(path)
    if encoding not in ENCODINGS:
        raise CdiscforgeError(f"unknown Dataset-JSON encoding {encoding!r}: choose {ENCODINGS}")
    columns = _columns(dataset)
    header: dict[str, Any] = {
        "datasetJSONCreationDateTime": created,
        "datasetJSONVersion": DATASET_JSON_VERSION,
        "fileOID": f"{oid_part(study.studyid)}.{oid_part(dataset.name.upper())}",
        "dbLastModifiedDateTime": created,
        "originator": study.sponsor or "cdiscforge",
        "sourceSystem": {"name": "cdiscforge", "version": __version__},
        "studyOID": study_oid(study.studyid),
        "metaDataVersionOID": mdv_oid(study.studyid, dataset.standard),
    }
    if define_path:
        header["metaDataRef"] = define_path
    header.update(
        {
            "itemGroupOID": item_group_oid(dataset.name),
            "records": len(dataset),
            "name": dataset.name.upper(),
            "label": dataset.label,
            "columns": columns,
        }
    )
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sink = _Sink(tmp, encoding, dsjc_level)
    try:
        nd = encoding != "json"
        sink.write(head + "\n" if nd else head[:-1] + ',"rows":[')
        # Each row's text is "[" + items + "]" then "\n" (NDJSON), or "," + "[" + items + "]"
        # (JSON: the very first comma is left out), so the rows lie back to back.
        first, last = ("[", "]\n") if nd else (",[", "]")
        frame = dataset.frame
        texts = [
            _ColumnText(
                frame[var.name],
                var,
                col["dataType"],
                first if i == 0 else "",
                last if i == len(columns) - 1 else ",",
            )
            for i, (var, col) in enumerate(zip(dataset.variables, columns, strict=True))
        ]
        joined = _joined(texts)
        combined: list[Any] = []  # the last chunk's dictionaries and them end to end
        step = max(1, chunk_rows)
        for start in range(0, len(frame), step):
            stop = min(len(frame), start + step)
            data = (
                _rows_bytes(joined, start, stop, combined)
                if texts
                else (first + last).encode() * (stop - start)
            )
            sink.write_bytes(data if nd or start else data[1:])
        if not nd:
            sink.write("]}\n")
        sink.close()
    except BaseException:
        # No half-written file is left behind for a later step to pick up.
        sink.abort()
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def _variable(column: dict[str, Any]) -> Variable:
    data_type = column.get("dataType", "string")
    target = column.get("targetDataType")
    numeric = target is not None or data_type in ("integer", "decimal", "float", "double")
    numeric = numeric or data_type == "boolean"
    return Variable(
        name=column["name"],
        label=column.get("label", ""),
        type="Num" if numeric else "Char",
        length=column.get("length") if not numeric else 8,
        origin="Not Available",
        format=column.get("displayFormat"),
    )


def _decimal_numbers(raw: pd.Series) -> pd.Series:
    """float64 of decimal strings, each distinct string parsed once by Python's float (which
    rounds correctly: "0.30000000000000004" and "-0.00" give back the doubles written). A
    comma is the thousands separator Dataset-JSON 1.1 allows in them ("1,234.5")."""
    codes, distinct = pd.factorize(raw, use_na_sentinel=True)
    if any(type(v) is not str for v in distinct):
        raise ValueError("a decimal value is not a string")
    parsed = np.array([float(v.replace(",", "")) for v in distinct] + [np.nan], dtype="float64")
    return pd.Series(parsed[codes], index=raw.index)


def _frame_column(values: list[Any], column: dict[str, Any], var: Variable) -> pd.Series:
    raw = pd.Series(values, dtype=object)
    data_type = column.get("dataType", "string")
    if column.get("targetDataType") == "integer" and data_type in ("date", "datetime"):
        return pd.to_datetime(raw, format="ISO8601")
    if column.get("targetDataType") == "integer" and data_type == "time":
        return pd.to_timedelta(raw)
    if var.is_char:
        text = raw.astype("str")
        return text.mask(raw.isna() | (text == ""))
    if data_type == "decimal" or column.get("targetDataType") == "decimal":
        return _decimal_numbers(raw)
    return pd.to_numeric(raw, errors="raise").astype("float64")


def _metadata(path: Path, doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise InputError(path, "not Dataset-JSON: the metadata is not a JSON object")
    for key in ("name", "columns"):
        if key not in doc:
            raise InputError(path, f"not Dataset-JSON: no {key!r}")
    return doc["columns"]


def _frame_of(
    path: Path,
    rows: list[Any],
    first_row: int,
    columns: list[dict[str, Any]],
    variables: list[Variable],
) -> pd.DataFrame:
    """A chunk of rows as a frame, typed per column; row numbers in errors count from 1."""
    width = len(columns)
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != width), None)
    if bad is not None:
        found = len(rows[bad]) if isinstance(rows[bad], list) else type(rows[bad]).__name__
        raise InputError(
            path, f"has {found} values where columns declare {width}", row=first_row + bad
        )
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    data = {}
    for column, var, values in zip(columns, variables, by_column, strict=True):
        try:
            data[var.name] = _frame_column(list(values), column, var)
        except (ValueError, TypeError) as exc:
            raise InputError(
                path,
                f"values do not fit dataType {column.get('dataType')}: {exc}",
                column=var.name,
            ) from exc
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


class _ZlibReader(io.RawIOBase):
    """A DSJC file as the Dataset-NDJSON bytes it compresses, inflated as they are read."""

    def __init__(self, path: Path, chunk_bytes: int = 1 << 20) -> None:
        self._fh = path.open("rb")
        self._inflate = zlib.decompressobj(15)
        self._chunk = chunk_bytes
        self._pending = b""
        self.path = path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._inflate.eof:
                return 0
            data = self._fh.read(self._chunk)
            if not data:
                raise InputError(self.path, "DSJC: the zlib stream ends before it is complete")
            try:
                self._pending = self._inflate.decompress(data)
            except zlib.error as exc:
                raise InputError(self.path, f"DSJC: not a zlib stream ({exc})") from exc
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _open_ndjson(path: Path, encoding: str) -> TextIO:
    """The Dataset-NDJSON text of a .ndjson or .dsjc file, as a stream of lines."""
    if encoding == "dsjc":
        return io.TextIOWrapper(io.BufferedReader(_ZlibReader(path)), encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _ndjson_lines(fh: TextIO) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that is not blank."""
    for number, line in enumerate(fh, start=1):
        if line.strip():
            yield number, line


def _parse_lines(path: Path, lines: list[tuple[int, str]]) -> list[Any]:
    """The JSON values of a chunk of lines: one C-level parse, or per line to say where."""
    try:
        return json.loads("[" + ",".join(text for _, text in lines) + "]")
    except json.JSONDecodeError:
        pass
    out = []
    for number, text in lines:
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(path, f"line {number} is not JSON: {exc.msg}", row=number) from None
    return out


def _read_ndjson(
    path: Path, encoding: str, chunk_rows: int
) -> tuple[dict[str, Any], list[pd.DataFrame], int]:
    frames: list[pd.DataFrame] = []
    n_rows = 0
    with _open_ndjson(path, encoding) as fh:
        lines = _ndjson_lines(fh)
        first = next(lines, None)
        if first is None:
            raise InputError(path, "not Dataset-NDJSON: the file is empty")
        try:
            doc = json.loads(first[1])
        except json.JSONDecodeError as exc:
            raise InputError(path, f"line 1 (the metadata) is not JSON: {exc.msg}") from None
        columns = _metadata(path, doc)
        variables = [_variable(c) for c in columns]
        batch: list[tuple[int, str]] = []
        for item in lines:
            batch.append(item)
            if len(batch) >= chunk_rows:
                frames.append(
                    _frame_of(path, _parse_lines(path, batch), n_rows + 1, columns, variables)
                )
                n_rows += len(batch)
                batch = []
        if batch or not frames:
            frames.append(
                _frame_of(path, _parse_lines(path, batch), n_rows + 1, columns, variables)
            )
            n_rows += len(batch)
    return doc, frames, n_rows


def read_dataset_json(path: Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Dataset:
    """Read a Dataset-JSON 1.1 file of any encoding (.json, .ndjson, .dsjc, by its suffix)
    into a `Dataset` (see the module docstring for types).

    The one reader: `cdiscforge validate` and the tests read every encoding through it, so
    the three cannot drift apart. Dataset-NDJSON and DSJC are read `chunk_rows` lines at a
    time; a .json file is parsed whole (its rows are one array).
    """
    path = Path(path)
    encoding = encoding_of(path)
    if encoding == "json":
        try:
            with path.open("r", encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"cannot read as Dataset-JSON: {exc}") from exc
        columns = _metadata(path, doc)
        variables = [_variable(c) for c in columns]
        rows = doc.get("rows", [])
        frames = [_frame_of(path, rows, 1, columns, variables)]
        del rows
    else:
        try:
            doc, frames, _ = _read_ndjson(path, encoding, max(1, chunk_rows))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(path, f"cannot read as Dataset-NDJSON: {exc}") from exc
        columns = doc["columns"]
        variables = [_variable(c) for c in columns]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    keyed = sorted((c["keySequence"], c["name"]) for c in columns if "keySequence" in c)
    name = str(doc["name"])
    return Dataset(
        name=name,
        label=str(doc.get("label", "")),
        frame=frame,
        variables=variables,
        keys=[n for _, n in keyed],
        standard="ADaMIG 1.3" if name.upper().startswith("AD") else "SDTMIG 3.4",
    )


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema_file = resources.files("cdiscforge") / "data" / "schemas" / "dataset-json-1.1"
    schema = json.loads((schema_file / "dataset.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_dataset_json(path: Path) -> list[str]:
    """Problems of a Dataset-JSON file (see `check_dataset_json`); empty if none."""
    return check_dataset_json(path)[0]


class _Malformed(Exception):
    """The file is not well-formed JSON; the message says what and where."""


class _JsonStream:
    """A rolling window over a JSON text file, decoded one value at a time.

    `check_dataset_json` walks the top-level object with it so that only one member, or one
    row, is ever decoded at once: a json.load of a 200 MB Dataset-JSON file makes ~25
    million Python objects. The buffer keeps the unread text; when a value is cut at the end
    of the buffer, the next chunk is appended and the value decoded again.
    """

    def __init__(self, fh: TextIO, chunk_chars: int) -> None:
        self._fh = fh
        self._chunk = max(1, chunk_chars)
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._dropped = 0  # characters before buf[0]
        self._dropped_lines = 0  # newlines in them
        self._last_newline = -1  # absolute position of the last newline dropped
        self.where = ""  # what is being read, for error messages ("rows/12")
        self.simd: Any = None  # a simdjson parser, made when first needed

    @property
    def chunk(self) -> int:
        return self._chunk

    def absolute(self, pos: int) -> int:
        """The position in the file (in characters) of `pos` in the buffer."""
        return self._dropped + pos

    def more(self) -> bool:
        """Read the next chunk into the buffer (see `_more`)."""
        return self._more()

    def _more(self) -> bool:
        """Drop the text already consumed, append the next chunk; False (and the buffer
        untouched) at end of file."""
        if self.eof:
            return False
        text = self._fh.read(self._chunk)
        if not text:
            self.eof = True
            return False
        if self.pos:
            newline = self.buf.rfind("\n", 0, self.pos)
            if newline >= 0:
                self._last_newline = self._dropped + newline
                self._dropped_lines += self.buf.count("\n", 0, self.pos)
            self._dropped += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += text
        return True

    def peek(self) -> str:
        """The next character that is not JSON whitespace ("" at end of file), skipping to it."""
        while True:
            self.pos = _JSON_WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def expect(self, chars: str, what: str) -> str:
        """Consume the next character, which must be one of `chars`."""
        char = self.peek()
        if not char or char not in chars:
            found = repr(char) if char else "end of file"
            raise self.error(f"expected {what}, found {found}", self.pos)
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decode the JSON value at the current position (whitespace already skipped)."""
        while True:
            try:
                value, end = _DECODE(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # More text can complete a value cut at the end of the buffer; a string not
                # closed within it may go on in the next chunk. Anything else is an error.
                cut = exc.pos >= len(self.buf) - _TOKEN_MARGIN or exc.msg.startswith(
                    "Unterminated string"
                )
                if cut and self._more():
                    continue
                raise self.error(exc.msg, exc.pos) from None
            # A number ending exactly at the end of the buffer may go on in the next chunk.
            if end < len(self.buf) or not self._more():
                self.pos = end
                return value

    def error(self, message: str, pos: int) -> _Malformed:
        absolute = self._dropped + pos
        line = self._dropped_lines + self.buf.count("\n", 0, pos) + 1
        newline = self.buf.rfind("\n", 0, pos)
        column = pos - newline if newline >= 0 else absolute - self._last_newline
        where = f" in {self.where}" if self.where else ""
        return _Malformed(f"{message}{where}: line {line} column {column} (char {absolute})")


_DECODE = json.JSONDecoder().raw_decode
try:  # imported here, not at the top: the writer's half of the module owns that
    import simdjson as _simdjson
except ImportError:  # pragma: no cover - a declared dependency; json.loads does it slower
    _simdjson = None
_JSON_WS = re.compile(r"[ \t\n\r]*")
# An error this close to the end of the buffer may be a token cut by the chunk boundary (a
# number "1." waiting for its digits, "tru" for its "e"); no number or literal is this long.
_TOKEN_MARGIN = 1024
CHECK_CHUNK_CHARS = 1 << 20
_NESTED = frozenset({list, dict})


@dataclass
class _RowTally:
    """What `check_dataset_json` needs to know of the rows, gathered without keeping them.

    `columns` may come after `rows` (key order is free), so the width is not known while
    the rows stream by: the first row of each length, and the first row of each length
    holding a nested value, are kept instead, and judged once the width is known.
    """

    is_array: bool = True
    count: int = 0
    first_not_list: int | None = None
    first_of_length: dict[int, int] = field(default_factory=dict)
    first_nested_of_length: dict[int, int] = field(default_factory=dict)

    def add(self, row: Any) -> None:
        if type(row) is list:
            n = len(row)
            if n not in self.first_of_length:
                self.first_of_length[n] = self.count
            if n not in self.first_nested_of_length and not _NESTED.isdisjoint(map(type, row)):
                self.first_nested_of_length[n] = self.count
        elif self.first_not_list is None:
            self.first_not_list = self.count
        self.count += 1

    def add_many(self, rows: list[Any], text: str) -> None:
        """`add` each of `rows`, parsed from `text`, at C speed where they are what a
        well-formed file holds: arrays whose lengths are tallied with numpy, and which
        cannot hold a nested value when `text` has one "[" per row and no "{" (else their
        values' types are collected in one pass over all of them). Anything else (a row
        that is not an array, a nested value) is tallied row by row by `add`."""
        n = len(rows)
        if not n:
            return
        regular = set(map(type, rows)) == {list}
        if regular and (text.count("[") != n or "{" in text):
            # brackets in strings, or a nested value: look at the values themselves
            from itertools import chain  # (imported here: the writer's half owns the top)

            regular = _NESTED.isdisjoint(set(map(type, chain.from_iterable(rows))))
        if not regular:
            for row in rows:
                self.add(row)
            return
        self.add_lengths(np.fromiter(map(len, rows), dtype=np.int64, count=n))

    def add_lengths(self, lengths: np.ndarray) -> None:
        """Tally rows known to be arrays of scalars, by their lengths."""
        distinct, first = np.unique(lengths, return_index=True)
        for length, index in zip(distinct.tolist(), first.tolist(), strict=True):
            self.first_of_length.setdefault(length, self.count + index)
        self.count += len(lengths)

    def problem(self, width: int) -> str | None:
        """The first row that is not an array of `width` scalars, as the old check said it."""
        wrong = [i for n, i in self.first_of_length.items() if n != width]
        if self.first_not_list is not None:
            wrong.append(self.first_not_list)
        first_wrong = min(wrong, default=None)
        nested = self.first_nested_of_length.get(width)
        if first_wrong is not None and (nested is None or first_wrong < nested):
            return f"rows/{first_wrong} is not an array of {width} values"
        if nested is not None:
            return f"rows/{nested} holds a value that is not a scalar"
        return None


def _simd_row_lengths(stream: _JsonStream, text: str) -> np.ndarray | None:
    """The length of each row in `text` (rows separated by commas, as in the rows array),
    parsed by simdjson (`_simd_lengths`); None when it cannot tell, and `json.loads` decides."""
    if _simdjson is None:
        return None
    if stream.simd is None:
        stream.simd = _simdjson.Parser()
    return _simd_lengths(stream.simd, ("[" + text + "]").encode("utf-8"))


def _simd_lengths(parser: Any, data: bytes) -> np.ndarray | None:
    """The length of each row of `data`, a JSON array of rows, parsed by simdjson
    (pysimdjson: a validating C++ parser at GB/s, and no Python object per value); None
    when it cannot tell.

    simdjson accepts less than `json.loads` (NaN, Infinity, 1e400, lone surrogates), never
    more, so a text it accepts is one `json.loads` reads the same; it answers only when
    every row is an array and none can hold a nested value (`data` has one "[" per row
    besides its own, and no "{"; else brackets in strings or nesting make the caller look
    at the values).
    """
    try:
        rows = parser.parse(data)
    except (ValueError, RuntimeError):  # simdjson: invalid JSON, or numbers it cannot hold
        return None
    try:
        n = len(rows)
        if b"{" in data or np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 0x5B) != n + 1:
            return None
        # Array's own __len__ refuses any other type (TypeError): one pass over the rows both
        # proves each is an array and counts its values (MK at 10,000 subjects: 8.8 million
        # rows, 0.4 CPU s less than a pass for the types and another for the lengths).
        try:
            return np.fromiter(map(_simdjson.Array.__len__, rows), dtype=np.int64, count=n)
        except TypeError:
            return None
    finally:
        del rows  # the parser holds one document at a time


def _simd_line_lengths(parser: Any, body: str, n_lines: int) -> np.ndarray | None:
    """The length of the row on each line of `body` (Dataset-NDJSON lines, each ending in a
    newline), from one simdjson parse of the lines joined by commas; None when it cannot
    tell, and the lines are decoded one by one.

    Joined, lines could pair up differently than read alone (a row cut over two lines, two
    rows on one); so it answers only when there are as many rows as lines, each line starts
    with "[" and ends with "]", and every "[" is a row's own (`_simd_lengths`): then each
    line holds exactly one row, which is what it reads as alone. A blank line fails the
    join (",,"), so it too is left to the line-by-line reading.
    """
    text = np.frombuffer(body.encode("utf-8"), dtype=np.uint8)
    newlines = np.flatnonzero(text == 0x0A)
    if len(newlines) != n_lines or text[0] != 0x5B or (text[newlines - 1] != 0x5D).any():
        return None
    if (text[newlines[:-1] + 1] != 0x5B).any():
        return None
    joined = np.empty(len(text) + 1, dtype=np.uint8)  # "[" + the lines, "," between, + "]"
    joined[0] = 0x5B
    joined[1:] = text
    joined[newlines + 1] = 0x2C
    joined[-1] = 0x5D
    lengths = _simd_lengths(parser, joined.tobytes())
    return lengths if lengths is not None and len(lengths) == n_lines else None


def _stream_rows(stream: _JsonStream, tally: _RowTally) -> None:
    """Read the value of `rows`, one row at a time, into `tally`."""
    if stream.peek() != "[":
        stream.where = "rows"
        stream.value()  # not an array: decoded only to move past it
        tally.is_array = False
        return
    stream.pos += 1
    if stream.peek() == "]":
        stream.pos += 1
        return
    slow_until = -1  # after a failed bulk parse: row by row up to this absolute position
    while True:
        stream.where = f"rows/{tally.count}"
        stream.peek()
        if stream.absolute(stream.pos) >= slow_until:
            cut = _bulk_rows(stream, tally)
            if cut is None:
                continue  # stream.pos is past the ',' after the rows parsed
            slow_until = cut
        tally.add(stream.value())
        if stream.expect(",]", "',' or ']' after a row") == "]":
            return


def _bulk_rows(stream: _JsonStream, tally: _RowTally) -> int | None:
    """Parse, with simdjson (`_simd_row_lengths`) or else one C-level `json.loads`, the rows
    from the current position (the start of a row) to the last "]," in the buffer, reading
    a chunk more first when little is left; None when that worked (the stream is then past
    the ',' after the last of them). Else the absolute position up to which the rows are to
    be read one at a time, where errors are located (`_JsonStream.value`).

    The parse cannot take a wrong cut for rows: if "[" + text + "]" is one JSON array,
    `text` is a comma-separated list of complete values, which are the rows themselves,
    since they start at a row boundary; a cut inside a string or inside a row leaves that
    string or row open, and the parse fails.
    """
    if len(stream.buf) - stream.pos < stream.chunk // 2:
        stream.more()
    buf, pos = stream.buf, stream.pos
    cut = buf.rfind("],", pos)
    if cut < 0:
        return stream.absolute(len(buf))
    text = buf[pos : cut + 1]
    lengths = _simd_row_lengths(stream, text)
    if lengths is not None:
        tally.add_lengths(lengths)
    else:
        try:
            rows = json.loads("[" + text + "]")
        except json.JSONDecodeError:
            return stream.absolute(cut + 1)
        tally.add_many(rows, text)
    stream.pos = cut + 2
    return None


def _read_members(path: Path, chunk_chars: int) -> tuple[dict[str, Any] | None, _RowTally]:
    """The top-level members of a Dataset-JSON file except `rows`, and a tally of its rows.

    None for the members if the top level is not an object. Raises `_Malformed`.
    """
    members: dict[str, Any] = {}
    tally = _RowTally()
    with path.open("r", encoding="utf-8") as fh:
        stream = _JsonStream(fh, chunk_chars)
        first = stream.peek()
        if first != "{":
            if first and first in '["-0123456789tfn':
                return None, tally  # JSON, but not an object
            raise stream.error("expected '{' at the start of the file", stream.pos)
        stream.pos += 1
        if stream.peek() == "}":
            stream.pos += 1
        else:
            while True:
                if stream.peek() != '"':
                    raise stream.error("expected a member name in double quotes", stream.pos)
                stream.where = ""
                key = stream.value()
                stream.expect(":", f"':' after {key!r}")
                stream.peek()
                if key == "rows":
                    tally = _RowTally()  # a repeated key: the last one wins, as in json.load
                    _stream_rows(stream, tally)
                    members["rows"] = []
                else:
                    stream.where = key
                    members[key] = stream.value()
                stream.where = ""
                if stream.expect(",}", "',' or '}' after a member") == "}":
                    break
        stream.where = ""
        if stream.peek():
            raise stream.error("extra data after the top-level object", stream.pos)
    return members, tally


def _read_ndjson_members(
    path: Path, encoding: str, chunk_chars: int = CHECK_CHUNK_CHARS
) -> tuple[dict[str, Any] | None, _RowTally]:
    """`_read_members` for Dataset-NDJSON and DSJC: line 1 is the metadata, every later
    non-blank line one row, tallied, not kept. The rows are read `chunk_chars` characters
    of whole lines at a time, parsed together by simdjson (`_simd_line_lengths`), or, where
    it cannot tell, one line at a time (`_tally_lines`), which says where an error is."""
    tally = _RowTally()
    with _open_ndjson(path, encoding) as fh:
        number = 0
        while True:
            line = fh.readline()
            number += 1
            if not line:
                raise _Malformed("the file is empty: line 1 must be the metadata object")
            if line.strip():
                break
        try:
            doc = _DECODE(line.strip())[0]
        except json.JSONDecodeError as exc:
            raise _Malformed(f"{exc.msg}: line 1 column {exc.pos + 1} (the metadata)") from None
        if not isinstance(doc, dict):
            return None, tally
        if "rows" in doc:
            raise _Malformed(
                "line 1 (the metadata) holds rows; in Dataset-NDJSON each row is a line"
            )
        parser = _simdjson.Parser() if _simdjson is not None else None
        pending = ""
        while True:
            text = fh.read(max(1, chunk_chars))
            if text:
                block = pending + text
                cut = block.rfind("\n") + 1
                body, pending = block[:cut], block[cut:]
                if not body:
                    continue
            else:
                body, pending = pending, ""
                if not body:
                    break
                body += "\n"  # the last line, without its newline
            n_lines = body.count("\n")
            lengths = None
            if parser is not None:
                lengths = _simd_line_lengths(parser, body, n_lines)
            if lengths is not None:
                tally.add_lengths(lengths)
            else:
                _tally_lines(body, number + 1, tally)
            number += n_lines
    doc["rows"] = []
    return doc, tally


def _tally_lines(body: str, first_number: int, tally: _RowTally) -> None:
    """Decode each non-blank line of `body` (numbered from `first_number`) as one row."""
    for number, text in enumerate(body.split("\n")[:-1], start=first_number):
        text = text.strip()
        if not text:
            continue
        try:
            row, end = _DECODE(text)
        except json.JSONDecodeError as exc:
            raise _Malformed(
                f"{exc.msg} in rows/{tally.count}: line {number} column {exc.pos + 1}"
            ) from None
        if end != len(text):
            raise _Malformed(f"extra data after the row in rows/{tally.count}: line {number}")
        tally.add(row)


def check_dataset_json(
    path: Path, *, chunk_chars: int = CHECK_CHUNK_CHARS
) -> tuple[list[str], int]:
    """Problems of a Dataset-JSON file (any encoding, by its suffix) against the 1.1 schema
    and its own counts, and its number of rows (read once, so the build's cross-check parses
    each file once). Dataset-NDJSON and DSJC are read line by line (`_read_ndjson_members`);
    the metadata line is held to the same schema, rows to the same checks.

    The file is streamed in chunks of `chunk_chars` characters: members other than `rows`
    (small) are decoded whole, rows one at a time and not kept, so memory does not grow with
    the file (a 10,000-subject MK is over 2 GB of JSON). Key order and whitespace are free.
    The JSON schema is applied to the document with its rows set aside, because for rows the
    1.1 schema asks only that each is an array (jsonschema spent over a minute per million
    rows proving that); the rows are then checked here, more strictly than the schema:
    each is an array of one scalar (string, number, boolean or null) per column, and
    `records` equals their number. A file that is not well-formed JSON is one problem
    saying where, and 0 rows.
    """
    path = Path(path)
    try:
        if encoding_of(path) == "json":
            doc, tally = _read_members(path, chunk_chars)
        else:
            doc, tally = _read_ndjson_members(path, encoding_of(path))
    except _Malformed as exc:
        return [f"{path}: not readable JSON: {exc}"], 0
    except (OSError, UnicodeDecodeError, CdiscforgeError) as exc:
        return [f"{path}: not readable JSON: {exc}"], 0
    if doc is None:
        return [f"{path}: (top level): is not a JSON object"], 0
    problems = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        problems.append(f"{path}: {where}: {err.message}")
    if not tally.is_array:
        return [*problems, f"{path}: rows: is not an array"], 0
    if doc.get("records") != tally.count:
        problems.append(f"{path}: records is {doc.get('records')} but there are {tally.count} rows")
    columns = doc.get("columns", [])
    row_problem = tally.problem(len(columns) if isinstance(columns, list) else 0)
    if row_problem:
        problems.append(f"{path}: {row_problem}")
    return problems, tally.count


def require_valid_dataset_json(path: Path) -> None:
    """Raise `CdiscforgeError` listing the schema problems of a written file, if any."""
    problems = validate_dataset_json(path)
    if problems:
        raise CdiscforgeError("Dataset-JSON schema check failed:\n  " + "\n  ".join(problems))

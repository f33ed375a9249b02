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

The writer streams: it writes the metadata, then the rows in chunks of `chunk_rows`, each
chunk converted column-wise (vectorised) and encoded by the C JSON encoder, so a large LB
never exists as one JSON string in memory (DSJC compresses chunk by chunk). The reader
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

from cdiscforge import __version__
from cdiscforge.define.datatypes import define_data_type, json_data_type, temporal_kind
from cdiscforge.define.oids import item_group_oid, item_oid, mdv_oid, oid_part, study_oid
from cdiscforge.errors import CdiscforgeError, InputError
from cdiscforge.model import Dataset, StudyInfo, Variable, char_max_bytes

DATASET_JSON_VERSION = "1.1.0"
DEFAULT_CHUNK_ROWS = 10_000
# Encodings by file suffix; the order is the preference when a folder holds a dataset twice.
ENCODINGS = ("json", "ndjson", "dsjc")
SUFFIXES = {"json": ".json", "ndjson": ".ndjson", "dsjc": ".dsjc"}
DSJC_LEVEL = 9  # the DSJC specification's recommendation for data exchange
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
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


def _column_values(series: pd.Series, var: Variable, data_type: str) -> list[Any]:
    """JSON-ready values of one column (vectorised; None for missing)."""
    kind = temporal_kind(var)
    if kind is not None:
        return _temporal_as_iso(series, kind)
    if var.is_char:
        if isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
            series.cat.categories
        ):  # the build's compact columns (cdiscforge.compact): per distinct value
            values = np.append(series.cat.categories.to_numpy(dtype=object), None)
            return values[series.cat.codes.to_numpy()].tolist()  # code -1 (missing): None
        text = series.astype("string")
        missing = text.isna().to_numpy()
        return _with_nulls(text.fillna("").to_numpy(dtype=object), missing)
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        raise CdiscforgeError(
            f"Dataset-JSON: variable {var.name} holds dates but has no SAS date format "
            f"(format {var.format!r}); give it one (e.g. DATE9.) in its spec"
        )
    numbers = pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan)
    missing = ~np.isfinite(numbers)
    if data_type == "decimal":
        return _decimal_text(numbers, missing, var.significant_digits or 0)
    if data_type == "integer":
        whole = np.where(missing, 0, numbers).astype(np.int64).tolist()
        return _with_nulls(np.array(whole, dtype=object), missing)
    return _with_nulls(np.where(missing, 0.0, numbers).tolist(), missing)


def _decimal_text(numbers: np.ndarray, missing: np.ndarray, digits: int) -> list[Any]:
    """Decimal strings of a float64 column: at least `digits` decimals, and as many more as
    the double needs to read back bit for bit (numpy's shortest unique positional form).

    Formatted once per distinct double (factorized on the bit pattern, so -0.0 stays "-0.00"
    and is not merged with 0.0), then broadcast.
    """
    bits = np.where(missing, 0.0, numbers).view(np.int64)
    codes, distinct = pd.factorize(bits)
    trim = "k" if digits else "-"
    texts = np.array(
        [
            np.format_float_positional(v, unique=True, trim=trim, min_digits=digits)
            for v in np.asarray(distinct, dtype=np.int64).view(np.float64)
        ],
        dtype=object,
    )
    return _with_nulls(texts[codes], missing)


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
    """Where the encoded text goes: a UTF-8 text file, or a zlib stream for DSJC."""

    def __init__(self, path: Path, encoding: str, level: int) -> None:
        self._fh = path.open("wb")
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 15) if encoding == "dsjc" else None

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self._fh.write(self._zlib.compress(data) if self._zlib is not None else data)

    def close(self) -> None:
        if self._zlib is not None:
            self._fh.write(self._zlib.flush())
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
        frame = dataset.frame
        step = max(1, chunk_rows)
        for start in range(0, len(frame), step):
            chunk = frame.iloc[start : start + step]
            values = [
                _column_values(chunk[var.name], var, col["dataType"])
                for var, col in zip(dataset.variables, columns, strict=True)
            ]
            rows = list(zip(*values, strict=True))  # json writes tuples as arrays
            if nd:
                sink.write("\n".join(map(_ENCODE, rows)) + "\n")
                continue
            text = _ENCODE(rows)
            if start:
                sink.write(",")
            sink.write(text[1:-1])
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
    while True:
        stream.where = f"rows/{tally.count}"
        stream.peek()
        tally.add(stream.value())
        if stream.expect(",]", "',' or ']' after a row") == "]":
            return


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


def _read_ndjson_members(path: Path, encoding: str) -> tuple[dict[str, Any] | None, _RowTally]:
    """`_read_members` for Dataset-NDJSON and DSJC: line 1 is the metadata, every later
    non-blank line one row, decoded one line at a time and tallied, not kept."""
    tally = _RowTally()
    with _open_ndjson(path, encoding) as fh:
        lines = _ndjson_lines(fh)
        first = next(lines, None)
        if first is None:
            raise _Malformed("the file is empty: line 1 must be the metadata object")
        try:
            doc = _DECODE(first[1].strip())[0]
        except json.JSONDecodeError as exc:
            raise _Malformed(f"{exc.msg}: line 1 column {exc.pos + 1} (the metadata)") from None
        if not isinstance(doc, dict):
            return None, tally
        if "rows" in doc:
            raise _Malformed(
                "line 1 (the metadata) holds rows; in Dataset-NDJSON each row is a line"
            )
        for number, text in lines:
            try:
                row, end = _DECODE(text.strip())
            except json.JSONDecodeError as exc:
                raise _Malformed(
                    f"{exc.msg} in rows/{tally.count}: line {number} column {exc.pos + 1}"
                ) from None
            if end != len(text.strip()):
                raise _Malformed(f"extra data after the row in rows/{tally.count}: line {number}")
            tally.add(row)
    doc["rows"] = []
    return doc, tally


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

"""SAS Transport (XPT) version 5: the one writer in cdiscforge, and a reader.

XPT v5 is the format FDA accepts for SDTM and ADaM datasets. The writer is vectorised with
numpy (IBM 370 doubles, fixed-width character columns) because pyreadstat's writer is an order
of magnitude slower on a million-row LB, and because we need to enforce FDA's limits with a
located error *before* a byte is written: a submission that silently truncates a value or
renames a variable is worse than one that fails.

Decisions a reviewer should know (each is tested):

* Character missing values: SAS has no distinct missing character value; a missing value and an
  empty string are both written as blanks, and `read_xpt` returns both as missing (`<NA>`).
  Trailing blanks are not significant in SAS and do not survive a round trip.
* Numeric missing: NaN, None, NaT are written as SAS's standard missing value '.' (0x2E then
  seven zero bytes). Special missing values (.A-.Z, ._) are not produced.
* IBM 370 doubles have a 56-bit fraction, so every IEEE double inside IBM's range converts
  exactly and reads back bit-identical. The range is about 5.4e-79 to 7.2e75: a finite
  non-zero value outside it (or +/-inf) is an `XptError` naming the value, never a silent
  0 or inf. -0.0 is written as 0.0 (SAS does not keep the sign of zero).
* Integers beyond 2**53 cannot be held by a double (which is what every XPT reader returns), so
  an integer column holding one is an `XptError` rather than a silent rounding.
* Numeric dates: a datetime64 column of a Num variable with a date format (DATE9., E8601DA.,
  ...) is written as days since 1960-01-01 (a time of day other than midnight is an error, not
  dropped), with a datetime format (DATETIME20., E8601DT., ...) as seconds since
  1960-01-01T00:00:00; a timedelta column with a time format (TIME8., E8601TM., ...) as
  seconds. `read_xpt` turns such variables back into datetime64 / timedelta64 columns.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyreadstat

from cdiscforge.errors import InputError, XptError
from cdiscforge.model import Dataset, Variable
from cdiscforge.outputs import preallocate
from cdiscforge.vectorise import used_codes

SAS_EPOCH = pd.Timestamp("1960-01-01")

# Format names (without width) whose values are SAS dates (days), datetimes (seconds) or times
# (seconds). One home for this classification: the writer and the reader both use it.
DATE_FORMATS = frozenset(
    {
        "DATE", "DAY", "DDMMYY", "DDMMYYB", "DDMMYYC", "DDMMYYD", "DDMMYYN", "DDMMYYP",
        "DDMMYYS", "DOWNAME", "E8601DA", "B8601DA", "IS8601DA", "JULDAY", "JULIAN", "MMDDYY",
        "MMDDYYB", "MMDDYYC", "MMDDYYD", "MMDDYYN", "MMDDYYP", "MMDDYYS", "MMYY", "MONNAME",
        "MONTH", "MONYY", "QTR", "WEEKDATE", "WEEKDATX", "WEEKDAY", "WORDDATE", "WORDDATX",
        "YEAR", "YYMM", "YYMMDD", "YYMMDDB", "YYMMDDC", "YYMMDDD", "YYMMDDN", "YYMMDDP",
        "YYMMDDS", "YYMON", "YYQ",
    }
)  # fmt: skip
DATETIME_FORMATS = frozenset(
    {
        "DATETIME", "DATEAMPM", "DTDATE", "DTMONYY", "DTWKDATX", "DTYEAR", "E8601DT",
        "B8601DT", "IS8601DT", "E8601DN", "B8601DN", "E8601DZ", "B8601DZ", "IS8601DZ",
        "MDYAMPM",
    }
)  # fmt: skip
TIME_FORMATS = frozenset(
    {"TIME", "TIMEAMPM", "TOD", "HHMM", "HOUR", "MMSS", "E8601TM", "B8601TM", "IS8601TM"}
)

# A SAS format as written in a spec ("DATE9.", "8.2", "$20.", "E8601DA.") or as readstat
# reports it ("DATE9", "8.2", "$20"): name (may contain digits but not end in one), width,
# decimals.
_FORMAT_RE = re.compile(
    r"^(?P<name>\$?(?:[A-Z_](?:[A-Z0-9_]*[A-Z_])?)?)(?P<w>\d*)(?:\.(?P<d>\d*))?$"
)


@dataclass(frozen=True)
class SasFormat:
    """A parsed SAS format: what goes into a NAMESTR record's nform, nfl and nfd fields."""

    name: str
    width: int
    decimals: int

    @property
    def kind(self) -> str | None:
        """'date', 'datetime', 'time' or None: how a numeric value under it is to be read."""
        if self.name in DATE_FORMATS:
            return "date"
        if self.name in DATETIME_FORMATS:
            return "datetime"
        if self.name in TIME_FORMATS:
            return "time"
        return None

    def __str__(self) -> str:
        width = str(self.width) if self.width else ""
        decimals = str(self.decimals) if self.decimals else ""
        return f"{self.name}{width}.{decimals}"


def parse_format(text: str | None) -> SasFormat | None:
    """Parse a SAS format string; None for no format, ValueError if it is not one."""
    if text is None or not text.strip():
        return None
    match = _FORMAT_RE.match(text.strip().upper())
    if match is None or not (match["name"] or match["w"]):
        raise ValueError(f"not a SAS format: {text!r}")
    return SasFormat(match["name"], int(match["w"] or 0), int(match["d"] or 0))


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def read_xpt(path: Path, *, encoding: str | None = None) -> Dataset:
    """Read an XPT v5 file (ours or anyone's) into a `Dataset`.

    Character text is decoded as UTF-8 (ASCII is a subset), falling back to Windows-1252, which
    older SAS files (e.g. the CDISC pilot's TS) use; pass `encoding` to force one. Blank
    character values come back as missing; numeric variables with a date, datetime or time
    format come back as datetime64 / timedelta64 columns. The file does not say where a
    variable came from, so each variable's origin is "Not Available".
    """
    path = Path(path)
    if encoding is None:
        try:
            frame, meta = _read_with_pyreadstat(path, None)
        except UnicodeDecodeError:
            frame, meta = _read_with_pyreadstat(path, "windows-1252")
    else:
        frame, meta = _read_with_pyreadstat(path, encoding)

    variables = _variables(meta)
    columns = {v.name: _to_column(frame[v.name], v) for v in variables}
    out = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))
    return Dataset(
        name=meta.table_name or path.stem.upper(),
        label=meta.file_label or "",
        frame=out,
        variables=variables,
    )


def read_xpt_variables(path: Path) -> list[Variable]:
    """The variables of an XPT file as `read_xpt` describes them, without reading any data.

    For checks that compare names, types and lengths (define.xml's cross-check) on files too
    big to hold in memory; `iter_xpt_chunks` reads the values.
    """
    path = Path(path)
    try:
        _, meta = _read_with_pyreadstat(path, None, metadataonly=True)
    except UnicodeDecodeError:
        _, meta = _read_with_pyreadstat(path, "windows-1252", metadataonly=True)
    return _variables(meta)


DEFAULT_CHUNK_ROWS = 100_000
_MEMBER_HEADER = b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!"
_NAMESTR_HEADER = b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!"
_OBS_HEADER = b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!"


def iter_xpt_chunks(
    path: Path,
    columns: list[str],
    *,
    encoding: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The named columns of an XPT file, about `chunk_rows` observations at a time, converted
    as `read_xpt` converts them; the chunks' lengths add up to `read_xpt`'s row count (an empty
    `columns` gives empty frames of the right lengths, to count rows).

    pyreadstat does the reading (decoding, IBM doubles, missing values), but its own
    row_offset re-reads every skipped observation one by one (~1 us each: chunking a
    9-million-row MK that way is quadratic, minutes), so each chunk is given to it as a
    file-like view holding the file's header and that chunk's observations only. readstat
    drops all-blank observations at the end of what it reads (it cannot tell them from the
    padding of the last card), so a chunk is never cut after a blank observation, only the
    file's end is. `encoding` None is UTF-8 and raises UnicodeDecodeError if the text is not;
    a caller wanting `read_xpt`'s Windows-1252 fallback starts again with that encoding.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        obs_start, row_length = _observation_layout(fh, path)
        if row_length == 0:
            return
        total = (os.fstat(fh.fileno()).st_size - obs_start) // row_length
        blank = b" " * row_length
        # With no columns asked for, the first one is read, for the count.
        wanted = list(columns) or [v.name for v in read_xpt_variables(path)[:1]]
        first = 0
        while first < total:
            stop = min(total, first + max(1, chunk_rows))
            while stop < total:
                fh.seek(obs_start + (stop - 1) * row_length)
                if fh.read(row_length) != blank:
                    break
                stop += 1
            view = _XptView(fh, obs_start, obs_start + first * row_length, stop - first, row_length)
            frame, meta = _read_with_pyreadstat(path, encoding, source=view, usecols=wanted)
            by_name = {v.name: v for v in _variables(meta)}
            yield pd.DataFrame(
                {name: _to_column(frame[name], by_name[name]) for name in columns},
                index=pd.RangeIndex(len(frame)),
            )
            first = stop


def _observation_layout(fh: Any, path: Path) -> tuple[int, int]:
    """Byte offset of the first observation and the observation length, from the headers.

    Walks the 80-byte header cards to the NAMESTR records (their size is in the member
    header: 140 bytes, 136 on VAX), takes the row length from their positions and lengths,
    and checks that the OBS header card follows them.
    """
    obs_start, row_length, _ = _namestr_layout(fh, path)
    return obs_start, row_length


class _XptView(io.RawIOBase):
    """A read-only file of an XPT file's header followed by `rows` of its observations
    starting at byte `start`: what pyreadstat is given to read one chunk."""

    def __init__(self, fh: Any, header: int, start: int, rows: int, row_length: int) -> None:
        super().__init__()
        self._fh = fh
        self._header = header
        self._start = start
        self._size = header + rows * row_length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            if self._pos < self._header:
                source, available = self._pos, self._header - self._pos
            else:
                source, available = self._start + self._pos - self._header, self._size - self._pos
            self._fh.seek(source)
            got = self._fh.readinto(view[done : done + min(available, len(view) - done)])
            if not got:
                break
            done += got
            self._pos += got
        return done


def _variables(meta: Any) -> list[Variable]:
    variables = []
    for name in meta.column_names:
        is_char = meta.readstat_variable_types[name] == "string"
        fmt = _safe_parse_format(meta.original_variable_types.get(name))
        variables.append(
            Variable(
                name=name,
                label=meta.column_names_to_labels.get(name) or "",
                type="Char" if is_char else "Num",
                length=int(meta.variable_storage_width[name]),
                origin="Not Available",
                format=str(fmt) if fmt else None,
            )
        )
    return variables


def _to_column(column: pd.Series, var: Variable) -> pd.Series:
    """A column as pyreadstat read it, as `read_xpt` returns it: blanks missing, dates dated."""
    if var.is_char:
        text = column.astype("str")
        return text.mask(text == "")
    return _numbers_to_column(column.to_numpy(dtype="float64"), _safe_parse_format(var.format))


def _read_with_pyreadstat(
    path: Path, encoding: str | None, *, source: Any = None, **options: Any
) -> tuple[pd.DataFrame, Any]:
    try:
        return pyreadstat.read_xport(
            str(path) if source is None else source,
            encoding=encoding,
            disable_datetime_conversion=True,
            **options,
        )
    except UnicodeDecodeError:
        raise
    except Exception as exc:  # pyreadstat raises its own, undocumented classes
        raise InputError(path, f"cannot read as SAS XPT v5: {exc}") from exc


def _safe_parse_format(text: str | None) -> SasFormat | None:
    # A file written elsewhere may carry a format name we do not understand; keep the text
    # rather than refuse the whole file.
    try:
        return parse_format(text)
    except ValueError:
        return SasFormat(str(text), 0, 0)


def _numbers_to_column(values: np.ndarray, fmt: SasFormat | None) -> pd.Series:
    kind = fmt.kind if fmt else None
    if kind == "date":
        return pd.Series(SAS_EPOCH + pd.to_timedelta(values, unit="D"))
    if kind == "datetime":
        return pd.Series(SAS_EPOCH + pd.to_timedelta(values, unit="s"))
    if kind == "time":
        return pd.Series(pd.to_timedelta(values, unit="s"))
    return pd.Series(values, dtype="float64")


# --------------------------------------------------------------------------------------------
# Limits (FDA Technical Conformance Guide, SAS XPT v5)
# --------------------------------------------------------------------------------------------

MAX_NAME = 8
MAX_LABEL = 40
MAX_CHAR_BYTES = 200
NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,7}$")
NAME_RULE = "1-8 characters matching [A-Z_][A-Z0-9_]*"
# IBM 370 doubles hold x = f * 16**(e - 64) with f in [1/16, 1) and e in 0..127.
IBM_MIN = 2.0**-260  # 16**-65, about 5.4e-79
IBM_MAX = 2.0**252  # 16**63, about 7.2e75 (exclusive)
MAX_EXACT_INT = 2**53  # beyond this a double, which every XPT reader returns, rounds integers
_ROW_NOTE = "row is the 0-based frame position"


def check_xpt_conformance(dataset: Dataset, *, path: Path | None = None) -> None:
    """Raise `XptError` for the first way `dataset` cannot be written as FDA XPT v5 unchanged.

    Checked in this order, each with its own message naming dataset, variable, row (0-based
    frame position) and value, and how many further rows share the problem:
    member name; file name (when `path` is given) = lower-case member name + ".xpt"; dataset
    label (<= 40 characters, ASCII); variable names; variable labels (<= 40, ASCII); formats;
    then per variable the values: character values ASCII, <= 200 bytes and no longer than a
    length the spec fixed (never truncated); numeric values numeric, integers exact in a
    double, inside the IBM 370 range, dates on a date/datetime/time format; and, for a dataset
    of character variables only, no entirely blank rows at the end (readers drop them).
    Character lengths still unset are treated as fitted (`Dataset.fit_lengths`).
    """
    _encode(dataset, path)


def _encode(dataset: Dataset, path: Path | None) -> list[np.ndarray | _CodedBlock]:
    """Check everything and return each variable's (n_rows, length) byte block (a
    categorical's as a `_CodedBlock`, gathered a chunk of rows at a time when written)."""
    _check_metadata(dataset, path)
    blocks = [
        _char_column(dataset, v) if v.is_char else _num_column(dataset, v)
        for v in dataset.variables
    ]
    if blocks and all(v.is_char for v in dataset.variables) and len(dataset):
        # SAS pads the last 80-byte card with blanks, so readers (SAS, readstat) cannot tell
        # trailing all-blank observations from padding and drop them. Refuse rather than lose.
        blank = np.logical_and.reduce([_blank_rows(b) for b in blocks])
        if blank[-1]:
            first = len(blank) - int(np.argmin(blank[::-1])) if not blank.all() else 0
            raise _fail(
                dataset,
                f"rows {first} to {len(blank) - 1} ({_ROW_NOTE}) are entirely blank; XPT v5 "
                "readers take trailing blank observations for padding and drop them",
                row=first,
            )
    return blocks


def _fail(dataset: Dataset, problem: str, **where: Any) -> XptError:
    return XptError(dataset.name, problem, **where)


def _check_metadata(dataset: Dataset, path: Path | None) -> None:
    name = dataset.name
    if not NAME_RE.match(name or ""):
        raise _fail(dataset, f"member (dataset) name must be {NAME_RULE}", value=name)
    if path is not None and Path(path).name != f"{name.lower()}.xpt":
        raise _fail(
            dataset,
            f"file name must be the lower-case member name plus .xpt ({name.lower()}.xpt)",
            value=Path(path).name,
        )
    _check_label(dataset, dataset.label, "dataset label", None)
    if len(dataset.variables) > 9999:
        raise _fail(dataset, "XPT v5 holds at most 9999 variables", value=len(dataset.variables))
    for var in dataset.variables:
        if not NAME_RE.match(var.name):
            raise _fail(dataset, f"variable name must be {NAME_RULE}", variable=var.name)
        _check_label(dataset, var.label, "variable label", var.name)
        try:
            fmt = parse_format(var.format)
        except ValueError:
            raise _fail(
                dataset, "format is not a SAS format (e.g. DATE9., 8.2, $20.)",
                variable=var.name, value=var.format,
            ) from None  # fmt: skip
        if fmt is not None and len(fmt.name) > MAX_NAME:
            raise _fail(
                dataset, "format name is longer than 8", variable=var.name, value=var.format
            )
        if fmt is not None and fmt.name.startswith("$") != var.is_char:
            raise _fail(
                dataset,
                "character variables take $ formats and numeric variables do not",
                variable=var.name, value=var.format,
            )  # fmt: skip
        if var.is_char and var.length is not None and not 1 <= var.length <= MAX_CHAR_BYTES:
            raise _fail(
                dataset, f"character length must be 1-{MAX_CHAR_BYTES} bytes",
                variable=var.name, value=var.length,
            )  # fmt: skip


def _check_label(dataset: Dataset, label: str | None, what: str, variable: str | None) -> None:
    label = label or ""
    if len(label) > MAX_LABEL:
        raise _fail(
            dataset, f"{what} is {len(label)} characters; XPT v5 allows {MAX_LABEL}",
            variable=variable, value=label,
        )  # fmt: skip
    if not label.isascii():
        raise _fail(dataset, f"{what} must be ASCII", variable=variable, value=label)


def _first_bad(
    dataset: Dataset, var: Variable, bad: np.ndarray, values: pd.Series, problem: str
) -> None:
    """Raise for the first True in `bad`, naming its row and value and counting the others."""
    if not bad.any():
        return
    positions = np.flatnonzero(bad)
    row = int(positions[0])
    more = f"; {len(positions) - 1} more rows" if len(positions) > 1 else ""
    raise _fail(
        dataset, f"{problem} ({_ROW_NOTE}{more})",
        variable=var.name, row=row, value=_plain(values.iloc[row]),
    )  # fmt: skip


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so a message shows 1e+300 and not np.float64(1e+300)."""
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------------------------
# Column encoding: each returns an (n_rows, width) uint8 block, after checking the values
# --------------------------------------------------------------------------------------------


class _CodedBlock:
    """A character variable's (n_rows, width) bytes kept as its distinct values' padded bytes
    (`table`, one row per category, the last row blanks for missing) and a code per row.

    What a categorical column is encoded as: each distinct value is checked and padded once,
    and the rows' bytes are only gathered (`table[codes]`) a chunk at a time while the file
    is written, so the whole block never exists. Slicing rows gives the bytes like an array.
    """

    def __init__(self, table: np.ndarray, codes: np.ndarray) -> None:
        self.table = table
        self.codes = codes
        self.shape = (len(codes), table.shape[1])

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.table[self.codes[rows]]  # code -1 (missing) is the last row: blanks

    def __len__(self) -> int:
        return self.shape[0]

    def blank_rows(self) -> np.ndarray:
        return (self.table == 0x20).all(axis=1)[self.codes]

    def window(self) -> tuple[int, int]:
        """The lowest and highest row of `table` some row takes (code -1 is the last)."""
        low, high = int(self.codes.min()), int(self.codes.max())
        return (0, len(self.table) - 1) if low < 0 else (low, high)

    def codes_of(self, start: int, stop: int) -> np.ndarray:
        """The rows' indices into `table` (-1: the last, blank, row, as `np.take` wraps)."""
        return self.codes[start:stop]


# Adjacent categorical variables are written from one table of their joint bytes while it has
# at most this many rows and bytes (`_JoinedBlock`).
_JOINED_ROWS = 1 << 16
_JOINED_BYTES = 1 << 22


class _JoinedBlock:
    """Adjacent `_CodedBlock`s (variables next to each other in the row) as one: a table of
    every combination of the rows of their tables that the data uses (each table's window),
    their bytes side by side, and a row's index into it its mixed-radix number over the
    windows. The row's bytes are those of the blocks one after the other, gathered with ONE
    take per chunk instead of one per variable (MK: 17 categoricals, 4 groups)."""

    def __init__(self, blocks: list[_CodedBlock]) -> None:
        windows = [block.window() for block in blocks]
        sizes = [high - low + 1 for low, high in windows]
        total = int(np.prod(sizes))
        everything = np.arange(total, dtype=np.int64)
        self._members: list[tuple[np.ndarray, np.ndarray]] = []
        parts = []
        stride = total
        for block, (low, _), size in zip(blocks, windows, sizes, strict=True):
            stride //= size
            self._members.append(_radix_digit(block.codes, len(block.table), low, stride))
            parts.append(block.table[(everything // stride) % size + low])
        self.table = np.concatenate(parts, axis=1)
        self.shape = (len(blocks[0]), self.table.shape[1])
        self._first = 0
        self._index = np.zeros(0, dtype=np.intp)

    def codes_of(self, start: int, stop: int) -> np.ndarray:
        """The rows' indices into the joint table, worked out `_BLOCK` rows at a time (the
        writer asks for a few thousand rows at a time, in order)."""
        if start < self._first or stop > self._first + len(self._index):
            end = min(self.shape[0], start + max(_BLOCK, stop - start))
            index = np.zeros(end - start, dtype=np.intp)
            part = np.empty(end - start, dtype=np.intp)
            for codes, digit in self._members:
                np.take(digit, codes[start:end], out=part)
                index += part
            self._first, self._index = start, index
        return self._index[start - self._first : stop - self._first]


def _radix_digit(
    codes: np.ndarray, rows: int, low: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """A categorical's codes (8 or 16 bits) as unsigned integers, and the table of what each
    adds to a row's index into a `_JoinedBlock` table: (code mod rows - low) * stride, code
    -1 (missing) taking the table's last, blank, row; one gather per variable and chunk."""
    unsigned = codes.view(np.uint8 if codes.dtype.itemsize == 1 else np.uint16)
    values = np.arange(1 << (8 * codes.dtype.itemsize), dtype=unsigned.dtype)
    signed = values.view(codes.dtype).astype(np.intp)
    return unsigned, (signed % rows - low) * stride


def _joined_blocks(
    blocks: list[np.ndarray | _CodedBlock],
) -> list[np.ndarray | _CodedBlock | _JoinedBlock]:
    """`blocks` with each run of adjacent `_CodedBlock`s whose joint table stays within
    `_JOINED_ROWS` rows and `_JOINED_BYTES` bytes made one `_JoinedBlock` (greedily, left
    to right)."""
    out: list[np.ndarray | _CodedBlock | _JoinedBlock] = []
    run: list[_CodedBlock] = []
    rows, width = 1, 0

    def close() -> None:
        if len(run) > 1:
            out.append(_JoinedBlock(run))
        elif run:
            out.append(run[0])
        run.clear()

    for block in blocks:
        coded = (
            isinstance(block, _CodedBlock)
            and len(block) > 0
            and block.shape[1] > 0
            and block.codes.dtype.itemsize <= 2  # (over 32,767 categories: alone)
        )
        low, high = block.window() if coded else (0, 0)  # type: ignore[union-attr]
        more = rows * (high - low + 1)
        if not coded or more > _JOINED_ROWS or more * (width + block.shape[1]) > _JOINED_BYTES:
            close()
            rows, width = 1, 0
        if not coded:
            out.append(block)
            continue
        run.append(block)  # type: ignore[arg-type]
        rows *= high - low + 1
        width += block.shape[1]
    close()
    return out


def _blank_rows(block: np.ndarray | _CodedBlock) -> np.ndarray:
    """Rows whose bytes are all blanks."""
    if isinstance(block, _CodedBlock):
        return block.blank_rows()
    return (block == 0x20).all(axis=1)


def _char_column(dataset: Dataset, var: Variable) -> np.ndarray | _CodedBlock:
    series = dataset.frame[var.name]
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
        dtype.categories.dtype
    ):
        return _coded_column(dataset, var, series)
    try:
        arr = pa.array(series, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        not_text = ~series.map(lambda v: isinstance(v, str) or pd.isna(v), na_action=None)
        _first_bad(dataset, var, not_text.to_numpy(), series, "character variable holds non-text")
        raise
    arr = arr.fill_null("")
    width, _ = _check_text(dataset, var, arr, series, lambda bad: bad)
    n = len(arr)
    if n == 0:
        return np.empty((0, width), dtype=np.uint8)
    return _padded(arr, width)


def _check_text(
    dataset: Dataset,
    var: Variable,
    arr: pa.Array,
    series: pd.Series,
    to_rows: Callable[[np.ndarray], np.ndarray],
    used: np.ndarray | None = None,
) -> tuple[int, np.ndarray]:
    """Check text values (ASCII, <= 200 bytes, within a fixed length); their width and
    byte lengths. `arr` holds the values, `to_rows` turns a mask over them into one over the
    rows (identity for a column, `mask[codes]` for a categorical's categories); `used` masks
    the values that count for the fitted width (a categorical's unused categories do not)."""
    _first_bad(
        dataset, var, to_rows(~pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)), series,
        "character values must be ASCII (XPT v5 has no encoding; FDA asks for ASCII)",
    )  # fmt: skip
    nbytes = pc.binary_length(arr).to_numpy(zero_copy_only=False)
    _first_bad(
        dataset, var, to_rows(nbytes > MAX_CHAR_BYTES), series,
        f"character value is longer than {MAX_CHAR_BYTES} bytes, the XPT v5 limit",
    )  # fmt: skip
    fitted = nbytes if used is None else nbytes[used]
    width = var.length if var.length is not None else max(1, int(fitted.max(initial=0)))
    _first_bad(
        dataset, var, to_rows(nbytes > width), series,
        f"character value is longer than the fixed length {width}; it is not truncated",
    )  # fmt: skip
    return width, nbytes


def _padded(arr: pa.Array, width: int) -> np.ndarray:
    """Text values blank-padded to `width` bytes: an (n, width) view of Arrow's buffer."""
    n = len(arr)
    padded = pc.utf8_rpad(arr, width=width, padding=" ")
    if isinstance(padded, pa.ChunkedArray):
        padded = padded.combine_chunks()
    _, offsets, data = padded.buffers()
    start = int(np.frombuffer(offsets, dtype=np.int64)[padded.offset])
    return np.frombuffer(data, dtype=np.uint8)[start : start + n * width].reshape(n, width)


def _coded_column(dataset: Dataset, var: Variable, series: pd.Series) -> _CodedBlock:
    """A categorical text column checked and padded per category (the same checks, errors and
    bytes as `_char_column` gives its strings); rows' bytes are gathered while writing."""
    categories = series.cat.categories
    codes = series.cat.codes.to_numpy()
    arr = pa.array(categories, type=pa.large_string(), from_pandas=True).fill_null("")
    used = used_codes(codes, len(arr))

    def to_rows(bad: np.ndarray) -> np.ndarray:
        bad = bad & used  # only categories some row has
        if not bad.any():
            return np.zeros(0, dtype=bool)
        return np.append(bad, False)[codes]  # code -1 (missing) is never bad

    width, _ = _check_text(dataset, var, arr, series, to_rows, used)
    arr = pc.if_else(pa.array(used), arr, "")  # unused: no row has them, may be longer
    table = np.empty((len(arr) + 1, width), dtype=np.uint8)
    table[: len(arr)] = _padded(arr, width) if len(arr) else table[:0]
    table[len(arr)] = 0x20  # missing: blanks, as "" is padded
    return _CodedBlock(table, codes)


def _num_column(dataset: Dataset, var: Variable) -> np.ndarray:
    values = _num_values(dataset, var)
    series = dataset.frame[var.name]
    if not _in_ibm_range(values):
        magnitude = np.abs(values)
        out_of_range = ~np.isnan(values) & (
            ~np.isfinite(values)
            | ((magnitude != 0) & ((magnitude < IBM_MIN) | (magnitude >= IBM_MAX)))
        )
        _first_bad(
            dataset, var, out_of_range, series,
            "number is outside the IBM 370 range XPT v5 can hold (about 5.4e-79 to 7.2e75, "
            "or infinite); it would be written as 0 or a wrong value",
        )  # fmt: skip
    return ieee_to_ibm(values, ">u8").view(np.uint8).reshape(-1, 8)


def _in_ibm_range(values: np.ndarray) -> bool:
    """Whether every number is missing, zero or inside IBM 370's range: block by block (the
    usual answer, yes, costs no column-sized temporaries; a no is then located whole)."""
    for start in range(0, len(values), _BLOCK):
        magnitude = np.abs(values[start : start + _BLOCK])
        fits = ((magnitude >= IBM_MIN) & (magnitude < IBM_MAX)) | (magnitude == 0)
        if not np.all(fits | np.isnan(magnitude)):
            return False
    return True


def _num_values(dataset: Dataset, var: Variable) -> np.ndarray:
    """The numbers to store for a Num variable, as float64 with NaN for missing."""
    series = dataset.frame[var.name]
    fmt = parse_format(var.format)
    kind = fmt.kind if fmt else None
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        if getattr(dtype, "tz", None) is not None:
            raise _fail(
                dataset, "timezone-aware datetimes cannot be SAS dates; convert to local time",
                variable=var.name,
            )  # fmt: skip
        if kind not in ("date", "datetime"):
            raise _fail(
                dataset,
                "a datetime column needs a SAS date (e.g. DATE9.) or datetime (e.g. DATETIME20.) "
                "format to say whether it is stored as days or seconds",
                variable=var.name, value=var.format,
            )  # fmt: skip
        delta = series - SAS_EPOCH
        if kind == "date":
            _first_bad(
                dataset, var, (series.notna() & (series != series.dt.normalize())).to_numpy(),
                series, "a date format would drop this value's time of day; use a datetime format",
            )  # fmt: skip
            return (delta / pd.Timedelta(days=1)).to_numpy(dtype="float64", na_value=np.nan)
        return (delta / pd.Timedelta(seconds=1)).to_numpy(dtype="float64", na_value=np.nan)
    if pd.api.types.is_timedelta64_dtype(dtype):
        if kind != "time":
            raise _fail(
                dataset, "a timedelta column needs a SAS time format (e.g. TIME8.)",
                variable=var.name, value=var.format,
            )  # fmt: skip
        return (series / pd.Timedelta(seconds=1)).to_numpy(dtype="float64", na_value=np.nan)
    if not pd.api.types.is_numeric_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred not in ("integer", "floating", "mixed-integer-float", "decimal", "empty"):
            numbers = pd.to_numeric(series, errors="coerce")
            is_text = series.map(lambda v: isinstance(v, str | bytes), na_action="ignore")
            bad = series.notna() & (numbers.isna() | is_text.fillna(False).astype(bool))
            _first_bad(
                dataset, var, bad.to_numpy(dtype=bool), series,
                "numeric variable holds a value that is not a number",
            )  # fmt: skip
        series = pd.to_numeric(series)
        dtype = series.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        ints = series.to_numpy(dtype="float64", na_value=np.nan)  # for the mask only
        exact = series.astype("Int64").to_numpy(dtype="int64", na_value=0)
        big = (exact > MAX_EXACT_INT) | (exact < -MAX_EXACT_INT)
        _first_bad(
            dataset, var, big, series,
            "integer is beyond 2**53 and would be rounded in a double (all XPT readers "
            "return doubles); store it as text",
        )  # fmt: skip
        return ints
    return series.to_numpy(dtype="float64", na_value=np.nan)


def ieee_to_ibm(values: np.ndarray, dtype: str = "u8") -> np.ndarray:
    """IEEE 754 doubles to IBM 370 doubles, as uint64 bit patterns (vectorised, exact).

    frexp gives |x| = m * 2**e with m in [0.5, 1); with k = ceil(e / 4) the IBM fraction is
    m * 2**(e - 4k), in [1/16, 1), and its 56 bits are m * 2**53 (an integer: m has 53
    significant bits) shifted left by 3 - (4k - e). No bits are lost. NaN becomes SAS's
    missing value '.'; zero (either sign) becomes 0. Values outside IBM's range must have been
    rejected (`check_xpt_conformance`); here they raise ValueError.

    Converted `_BLOCK` values at a time, so the dozen temporaries stay in cache; `dtype`
    ">u8" gives the big-endian patterns the file holds without another pass.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    out = np.empty(len(x), dtype=dtype)
    for start in range(0, len(x), _BLOCK):
        out[start : start + _BLOCK] = _ibm_bits(x[start : start + _BLOCK])
    return out.reshape(np.shape(values))


_BLOCK = 1 << 16  # values per block of a vectorised pass over a column


def _ibm_bits(x: np.ndarray) -> np.ndarray:
    """`ieee_to_ibm` of one block of float64."""
    missing = np.isnan(x)
    zero = x == 0
    mant, exp = np.frexp(np.where(missing | zero, 1.0, np.abs(x)))
    k = -((-exp) // 4)
    shift = (4 * k - exp).astype(np.uint64)
    ibm_exp = k + 64
    if ((ibm_exp < 0) | (ibm_exp > 127) | ~np.isfinite(np.where(missing, 0.0, x))).any():
        raise ValueError("value outside the IBM 370 range")
    fraction = (mant * 2.0**53).astype(np.uint64) << (np.uint64(3) - shift)
    sign = (np.signbit(x) & ~zero).astype(np.uint64) << np.uint64(63)
    bits = sign | (ibm_exp.astype(np.uint64) << np.uint64(56)) | fraction
    bits[zero] = 0
    bits[missing] = np.uint64(0x2E) << np.uint64(56)
    return bits


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------

SAS_VERSION = "9.4"
OS_NAME = "PYTHON"
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_CHUNK_BYTES = 1024 * 1024  # rows assembled in cache-sized blocks: ~1.4x faster than 32 MiB


def write_xpt(dataset: Dataset, path: Path, *, created: datetime) -> Path:
    """Write `dataset` as an FDA-conformant SAS XPT v5 file at `path`; return `path`.

    `check_xpt_conformance` runs first: nothing is truncated or coerced silently. Character
    lengths not fixed by the spec are fitted to the data (`Dataset.fit_lengths`, recorded on
    the dataset's variables so define.xml states what was written). `created` is the header's
    created and modified datetime (from SOURCE_DATE_EPOCH or the spec), so the same dataset
    always gives the same bytes. The file appears complete or not at all: it is written to a
    temporary file in the same folder and renamed.
    """
    path = Path(path)
    blocks = _encode(dataset, path)  # checks first, so a value over 200 bytes is named
    # Record the fitted widths _encode measured with pyarrow (the same rule as
    # Dataset.fit_lengths: longest value in bytes, at least 1); fit_lengths then only has the
    # numeric lengths left to set, and the data is not measured twice.
    for var, block in zip(dataset.variables, blocks, strict=True):
        if var.is_char and var.length is None:
            var.length = block.shape[1]
    dataset.fit_lengths()
    header = _header(dataset, created)
    row_length = sum(block.shape[1] for block in blocks)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    observations = len(dataset) * row_length
    try:
        with open(tmp, "wb") as fh:
            # the size is known: its blocks reserved at once (outputs.preallocate)
            preallocate(fh.fileno(), len(header) + observations + (-observations % 80))
            fh.write(header)
            written = 0
            for chunk in _observation_chunks(blocks, len(dataset), row_length):
                fh.write(chunk)  # the chunk's buffer itself: no bytes copy of it
                written += memoryview(chunk).nbytes
            fh.write(b" " * (-written % 80))
            fh.truncate()  # a no-op unless fewer bytes were written than reserved
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _observation_chunks(
    blocks: list[np.ndarray | _CodedBlock], n_rows: int, row_length: int
) -> Iterator[np.ndarray]:
    """The observations, ~`_CHUNK_BYTES` of rows at a time, assembled in ONE reused buffer
    (each chunk is written before the next is made).

    Why void views: a variable's bytes in a row are one item of numpy dtype V<width>, so a
    column is copied (or, for a categorical, gathered from its padded categories with
    np.take straight into the rows, code -1 wrapping to the blank last row) an item of
    `width` bytes at a time, not byte by byte as a (rows, width) uint8 slice is."""
    step = max(1, _CHUNK_BYTES // max(1, row_length))
    buffer = np.empty((min(step, n_rows), row_length), dtype=np.uint8)
    layout = []
    pos = 0
    for block in _joined_blocks(blocks):
        width = block.shape[1]
        if isinstance(block, _CodedBlock | _JoinedBlock):
            source = np.ascontiguousarray(block.table).view(f"V{width}")[:, 0]
            layout.append((pos, width, source, block))
        else:
            items = np.ascontiguousarray(block).view(f"V{width}")[:, 0] if width else block
            layout.append((pos, width, items, None))
        pos += width
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        rows = buffer[: stop - start]
        for pos, width, source, coded in layout:
            if not width:
                continue
            out = rows[:, pos : pos + width].view(f"V{width}")[:, 0]
            if coded is None:
                out[...] = source[start:stop]
            else:
                np.take(source, coded.codes_of(start, stop), out=out, mode="wrap")
        yield rows


def _sas_datetime(moment: datetime) -> str:
    return (
        f"{moment.day:02d}{_MONTHS[moment.month - 1]}{moment.year % 100:02d}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def _card(text: str) -> bytes:
    data = text.encode("ascii")
    if len(data) > 80:
        raise AssertionError(f"header record over 80 bytes: {text!r}")
    return data.ljust(80, b" ")


def _header(dataset: Dataset, created: datetime) -> bytes:
    stamp = _sas_datetime(created)
    variables = dataset.variables
    parts = [
        _card("HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + "0" * 30),
        _card(f"{'SAS':8}{'SAS':8}{'SASLIB':8}{SAS_VERSION:8}{OS_NAME:8}{'':24}{stamp}"),
        _card(stamp),
        _card("HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140"),
        _card("HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!" + "0" * 30),
        _card(f"{'SAS':8}{dataset.name:8}{'SASDATA':8}{SAS_VERSION:8}{OS_NAME:8}{'':24}{stamp}"),
        _card(f"{stamp}{'':16}{dataset.label or '':40}"),
        _card(f"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!{len(variables):010d}" + "0" * 20),
    ]  # fmt: skip
    namestrs = bytearray()
    position = 0
    for number, var in enumerate(variables, start=1):
        length = var.length if var.is_char else 8
        fmt = parse_format(var.format)
        namestrs += struct.pack(
            ">hhhh8s40s8shhh2s8shhi52s",
            2 if var.is_char else 1,
            0,
            length,
            number,
            var.name.encode("ascii").ljust(8),
            (var.label or "").encode("ascii").ljust(40),
            (fmt.name if fmt else "").encode("ascii").ljust(8),
            fmt.width if fmt else 0,
            fmt.decimals if fmt else 0,
            0,
            b"\0\0",
            b" " * 8,
            0,
            0,
            position,
            b"\0" * 52,
        )
        position += length
    namestrs += b" " * (-len(namestrs) % 80)
    obs = _card("HEADER RECORD*******OBS     HEADER RECORD!!!!!!!" + "0" * 30)
    return b"".join(parts) + bytes(namestrs) + obs


# --------------------------------------------------------------------------------------------
# Fast reader (numpy): what `cdiscforge validate` reads large files with
# --------------------------------------------------------------------------------------------


def _namestr_layout(fh: Any, path: Path) -> tuple[int, int, list[tuple[str, bool, int, int]]]:
    """Observation offset, row length and (name, is_char, position, length) per variable.

    Walks the 80-byte header cards of an open file to the NAMESTR records (their size is in
    the member header: 140 bytes, 136 on VAX) and checks that the OBS header card follows.
    """
    namestr_size, offset = 140, 0
    while True:
        card = fh.read(80)
        offset += 80
        if len(card) < 80:
            raise InputError(path, "cannot read as SAS XPT v5: no NAMESTR header record")
        if card.startswith(_MEMBER_HEADER):
            namestr_size = int(card[74:78])
        if card.startswith(_NAMESTR_HEADER):
            break
    count = int(card[54:58])
    records = fh.read(count * namestr_size)
    layout = []
    for i in range(count):
        rec = records[i * namestr_size : (i + 1) * namestr_size]
        (ntype,) = struct.unpack(">h", rec[0:2])
        (length,) = struct.unpack(">h", rec[4:6])
        (position,) = struct.unpack(">i", rec[84:88])
        name = rec[8:16].decode("ascii", errors="replace").rstrip()
        layout.append((name, ntype == 2, position, length))
    offset += -(-count * namestr_size // 80) * 80
    fh.seek(offset)
    if not fh.read(80).startswith(_OBS_HEADER):
        raise InputError(path, "cannot read as SAS XPT v5: no OBS header after the NAMESTRs")
    row_length = max((p + n for _, _, p, n in layout), default=0)
    return offset + 80, row_length, layout


def ibm_to_ieee(raw: np.ndarray) -> np.ndarray:
    """IBM 370 doubles (an (n, width) uint8 block, width 2-8, big-endian) to IEEE floats.

    The inverse of `ieee_to_ibm`: value = fraction * 16**(exponent - 64) / 2**56, computed
    as ldexp of the 56-bit fraction (correctly rounded to 53 bits, exact for values that
    came from IEEE). SAS missing values ('.', '.A'-'.Z', '._': first byte 0x2E, 0x41-0x5A or
    0x5F, the rest zero) become NaN.
    """
    n, width = raw.shape
    padded = np.zeros((n, 8), dtype=np.uint8)
    padded[:, :width] = raw
    bits = padded.view(">u8").ravel().astype(np.uint64)
    first = padded[:, 0]
    rest_zero = ~padded[:, 1:].any(axis=1)
    missing = rest_zero & ((first == 0x2E) | ((first >= 0x41) & (first <= 0x5A)) | (first == 0x5F))
    fraction = (bits & np.uint64(0x00FFFFFFFFFFFFFF)).astype(np.float64)
    exponent = ((bits >> np.uint64(56)) & np.uint64(0x7F)).astype(np.int64)
    values = np.ldexp(fraction, 4 * (exponent - 64) - 56)
    values = np.where((bits >> np.uint64(63)) == 1, -values, values)
    values[missing] = np.nan
    return values


_FAST_CHUNK_BYTES = 64 * 1024 * 1024


def _char_chunk(block: np.ndarray, encoding: str | None) -> pa.Array:
    """Fixed-width text (an (n, width) uint8 block) as pyarrow strings, trailing blanks (and
    NULs) cut, all-blank values null: the padding is measured and dropped with numpy, and
    the array is built from its buffers (no per-value work, one copy of the text)."""
    n, width = block.shape
    filled = (block != 0x20) & (block != 0x00)
    last = width - np.argmax(filled[:, ::-1], axis=1)
    lengths = np.where(filled.any(axis=1), last, 0).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = block[np.arange(width) < lengths[:, None]]  # row-major: each value's bytes in turn
    valid = lengths > 0
    validity = pa.array(valid).buffers()[1] if not valid.all() else None
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    null_count = int(n - valid.sum())
    if encoding is None or encoding.lower().replace("-", "") == "utf8":
        text = pa.Array.from_buffers(pa.large_string(), n, buffers, null_count)
        try:
            text.validate(full=True)  # UTF-8 check
        except pa.ArrowInvalid as exc:  # the caller starts again in Windows-1252
            raise UnicodeDecodeError("utf-8", b"", 0, 1, str(exc)) from exc
        return text
    # e.g. the CDISC pilot's Windows-1252 TS: decode each distinct value once
    binary = pa.Array.from_buffers(pa.large_binary(), n, buffers, null_count)
    values = pd.Series(binary.to_numpy(zero_copy_only=False), dtype=object)
    decoded = {u: u.decode(encoding, errors="replace") for u in values.dropna().unique()}
    return pa.array(values.map(decoded), type=pa.large_string())


# A file of at least this many observations has its character columns read dictionary-encoded
# (pandas categorical) where they hold few distinct values: a 10,000-subject MK (8.8 million
# rows, 21 mostly repetitive columns) is ~2.9 GB as strings and ~0.3 GB as categories. Smaller
# files keep plain pyarrow strings. Tests lower it to read every file both ways.
CATEGORICAL_MIN_ROWS = 100_000
# ...and a column is kept categorical when it has at most this share of distinct values.
_CATEGORICAL_MAX_SHARE = 0.5


def _char_chunk_encoded(block: np.ndarray, encoding: str | None) -> pa.DictionaryArray:
    """`_char_chunk` dictionary-encoded: the fixed-width values are hashed as raw bytes in
    pyarrow and only the distinct ones are trimmed and decoded (a 10,000-subject MK column is
    a handful of values repeated 8.8 million times). Values equal after trimming (blank- vs
    NUL-padded) share one dictionary entry; all-blank values are null, as in `_char_chunk`."""
    n, width = block.shape
    raw = np.ascontiguousarray(block)
    fixed = pa.Array.from_buffers(pa.binary(width), n, [None, pa.py_buffer(raw)])
    outer = fixed.dictionary_encode()
    distinct = np.frombuffer(outer.dictionary.buffers()[1], dtype=np.uint8)
    distinct = distinct[: len(outer.dictionary) * width].reshape(-1, width)
    inner = _char_chunk(distinct, encoding).dictionary_encode()
    indices = inner.indices.take(outer.indices)
    return pa.DictionaryArray.from_arrays(indices, inner.dictionary)


def _char_series(chunks: list[pa.Array]) -> pd.Series:
    if not chunks:
        return pd.Series([], dtype="str")
    return pd.Series(pa.chunked_array(chunks, type=pa.large_string()), dtype="str")


def _categorical_series(chunks: list[pa.DictionaryArray], rows: int) -> pd.Series:
    """Per-chunk dictionary-encoded text as one pandas categorical with sorted categories
    (so sorting it sorts like the strings), or plain strings when most values are distinct.

    Missing values stay missing (code -1); the categories are str, so `.str` methods, `==`
    and `isin` give what they give on the str column.
    """
    unified = pa.chunked_array(chunks, type=chunks[0].type).unify_dictionaries()
    dictionary = (
        unified.chunk(0).dictionary if unified.num_chunks else pa.array([], pa.large_string())
    )
    if len(dictionary) > _CATEGORICAL_MAX_SHARE * max(rows, 1):
        return _char_series([pc.take(c.dictionary, c.indices) for c in unified.chunks])
    order = pc.array_sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = -1  # a null index (filled with -1 below) stays -1
    codes = np.concatenate(
        [pc.fill_null(c.indices.cast(pa.int64()), -1).to_numpy() for c in unified.chunks]
    )
    categories = pd.Index(pc.take(dictionary, pa.array(order)), dtype="str")
    dtype = pd.CategoricalDtype(categories, ordered=False)
    return pd.Series(pd.Categorical.from_codes(rank[codes], dtype=dtype))


def read_xpt_fast(path: Path, *, encoding: str | None = None) -> Dataset:
    """`read_xpt` for large files: the same Dataset, decoded with numpy and pyarrow.

    pyreadstat decodes observation by observation (~20 s for a 900,000-row MK here); this
    reads the fixed-width observations as (rows, row_length) byte blocks, converts IBM
    doubles with `ibm_to_ieee` and text with pyarrow, and takes names, labels and formats
    from pyreadstat's metadata-only read, so both readers describe a file the same way
    (tests/test_validation_engine.py compares them). Trailing all-blank observations are padding, as
    readstat takes them. A file holding more than one member is read with `read_xpt`.
    From `CATEGORICAL_MIN_ROWS` observations on, text columns with few distinct values are
    pandas categoricals (same values, a fraction of the memory); `validation.operations.plain`
    and `as_string` give the str column back where a caller needs one.
    """
    path = Path(path)
    try:
        _, meta = _read_with_pyreadstat(path, None, metadataonly=True)
    except UnicodeDecodeError:
        _, meta = _read_with_pyreadstat(path, "windows-1252", metadataonly=True)
    variables = _variables(meta)
    with open(path, "rb") as fh:
        obs_start, row_length, layout = _namestr_layout(fh, path)
    size = path.stat().st_size
    if row_length == 0 or [v.name for v in variables] != [n for n, *_ in layout]:
        return read_xpt(path, encoding=encoding)
    rows = (size - obs_start) // row_length
    with open(path, "rb") as fh:
        while rows:  # trailing all-blank observations are the last card's padding
            fh.seek(obs_start + (rows - 1) * row_length)
            if fh.read(row_length) != b" " * row_length:
                break
            rows -= 1
        # Read and convert a bounded number of observations at a time, so memory holds the
        # converted columns plus one chunk of raw bytes, never the whole file twice.
        step = max(1, _FAST_CHUNK_BYTES // row_length)
        categorical = rows >= CATEGORICAL_MIN_ROWS
        parts: dict[str, list[Any]] = {var.name: [] for var in variables}
        fh.seek(obs_start)
        for first in range(0, rows, step):
            count = min(step, rows - first)
            raw = fh.read(count * row_length)
            if _MEMBER_HEADER in raw:
                return read_xpt(path, encoding=encoding)
            block = np.frombuffer(raw, dtype=np.uint8).reshape(count, row_length)
            for var, (_, is_char, position, length) in zip(variables, layout, strict=True):
                part = block[:, position : position + length]
                if is_char:
                    try:
                        chunk = _char_chunk_encoded if categorical else _char_chunk
                        parts[var.name].append(chunk(part, encoding))
                    except UnicodeDecodeError:
                        if encoding is not None:
                            raise
                        # read_xpt's fallback: the whole file is Windows-1252, not UTF-8
                        return read_xpt_fast(path, encoding="windows-1252")
                else:
                    parts[var.name].append(ibm_to_ieee(part))
    columns = {}
    for var, (_, is_char, _, _) in zip(variables, layout, strict=True):
        chunks = parts.pop(var.name)
        if is_char and categorical and chunks:
            columns[var.name] = _categorical_series(chunks, rows)
        elif is_char:
            columns[var.name] = _char_series(chunks)
        else:
            values = np.concatenate(chunks) if chunks else np.empty(0)
            columns[var.name] = _numbers_to_column(values, _safe_parse_format(var.format))
    frame = pd.DataFrame(columns, index=pd.RangeIndex(rows))
    return Dataset(
        name=meta.table_name or path.stem.upper(),
        label=meta.file_label or "",
        frame=frame,
        variables=variables,
    )


# --------------------------------------------------------------------------------------------
# Distinct values (numpy): what define.xml's cross-check reads
# --------------------------------------------------------------------------------------------


def _contiguous(block: np.ndarray) -> np.ndarray:
    """An (n, width) uint8 block (a variable's columns of the observations) as a C-contiguous
    copy, copied a V<width> item (one value's bytes) at a time rather than byte by byte."""
    width = block.shape[1]
    if block.flags.c_contiguous or width < 2 or block.strides[1] != 1:
        return np.ascontiguousarray(block)
    items = np.ascontiguousarray(block.view(f"V{width}"))
    return items.view(np.uint8).reshape(block.shape)


def _distinct_rows(block: np.ndarray) -> np.ndarray:
    """The distinct rows of an (n, width) uint8 block (hashed as fixed-width binary in
    pyarrow), as a (k, width) block in the order they first occur."""
    n, width = block.shape
    if n == 0 or width == 0:
        return block[:0] if width else np.zeros((min(n, 1), 0), dtype=np.uint8)
    fixed = pa.Array.from_buffers(pa.binary(width), n, [None, pa.py_buffer(_contiguous(block))])
    unique = pc.unique(fixed)
    data = np.frombuffer(unique.buffers()[1], dtype=np.uint8)
    start = unique.offset * width
    return data[start : start + len(unique) * width].reshape(-1, width)


def _adjacent_runs(
    columns: list[tuple[str, int, int]],
) -> list[tuple[int, int, list[tuple[str, int, int]]]]:
    """Text `columns` (name, position, width in the observation) as runs of columns that lie
    side by side: (start, width, [(name, offset in the run, width)]), in the order of the
    observation.

    `scan_xpt_distinct` takes the distinct rows of a run at once rather than of each column:
    a value's first row is its run's first row holding it, so projected on a column the
    run's distinct rows give that column's values in the same order. A column's bytes
    cost the same in a wider run, and each run costs one strided copy and one hash pass
    (MK at 10,000 subjects: 9 codelisted columns are 4 runs)."""
    runs: list[tuple[int, int, list[tuple[str, int, int]]]] = []
    for name, pos, width in sorted(columns, key=lambda c: c[1]):
        if runs and runs[-1][0] + runs[-1][1] == pos:
            start, run_width, members = runs[-1]
            members.append((name, pos - start, width))
            runs[-1] = (start, run_width + width, members)
        else:
            runs.append((pos, width, [(name, 0, width)]))
    return runs


def _distinct_text(distinct: np.ndarray, encoding: str | None) -> pd.Series:
    """Distinct fixed-width text values as `read_xpt` reads them, missing (blank) left out."""
    text = pd.Series(_char_chunk(distinct, encoding), dtype="str").dropna()
    return pd.Series(text.unique(), dtype="str")


def scan_xpt_distinct(
    path: Path, columns: list[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[int, dict[str, pd.Series]]:
    """The number of observations of an XPT file and the distinct values of `columns`, each
    converted as `read_xpt` converts it (text trimmed, UTF-8 or else Windows-1252 for the whole
    file; numbers as floats, dates dated), missing values left out.

    For checks that only need the set of values (define.xml's codelists) of files too big to
    read whole: the fixed-width observations are read `chunk_rows` at a time (at most
    `_FAST_CHUNK_BYTES`), the named columns cut out of them as byte blocks, and only their
    distinct byte strings are kept and, at the end, trimmed and decoded, once per distinct
    value. Nothing else of the file is decoded. The count is `read_xpt`'s: trailing all-blank
    observations are the last card's padding. A file `read_xpt_fast` would not read (more
    than one member, NAMESTRs that disagree with readstat) is read with `iter_xpt_chunks`.
    """
    path = Path(path)
    variables = read_xpt_variables(path)
    by_name = {v.name: v for v in variables}
    with open(path, "rb") as fh:
        obs_start, row_length, layout = _namestr_layout(fh, path)
        places = {name: (is_char, pos, n) for name, is_char, pos, n in layout}
        if (
            row_length == 0
            or [v.name for v in variables] != [n for n, *_ in layout]
            or any(places[c][0] != by_name[c].is_char for c in columns)
        ):
            return _scan_xpt_chunks(path, columns, chunk_rows)
        rows = (os.fstat(fh.fileno()).st_size - obs_start) // row_length
        blank = b" " * row_length
        while rows:  # trailing all-blank observations are the last card's padding
            fh.seek(obs_start + (rows - 1) * row_length)
            if fh.read(row_length) != blank:
                break
            rows -= 1
        step = max(1, min(chunk_rows, _FAST_CHUNK_BYTES // row_length))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
        fh.seek(obs_start)
        tail = b""
        # One buffer for every chunk: a new bytes object (up to 64 MB) per read is fresh
        # memory whose pages fault in each time (MK at 10,000 subjects, 2.2 GB read 64 MB at a
        # time: 1.3-2.0 CPU s with read(), 0.3 s with readinto()). What is kept of a chunk is
        # copied out of it.
        buffer = bytearray(min(rows, step) * row_length)
        wanted = list(dict.fromkeys(columns))
        runs = _adjacent_runs([(c, *places[c][1:]) for c in wanted if places[c][0]])
        numeric = [c for c in wanted if not places[c][0]]
        view = memoryview(buffer)
        mark = len(_MEMBER_HEADER)
        for first in range(0, rows, step):
            count = min(step, rows - first)
            size = fh.readinto(view[: count * row_length])
            if buffer.find(_MEMBER_HEADER, 0, size) >= 0 or _MEMBER_HEADER in tail + bytes(
                view[: min(mark, size)]
            ):
                return _scan_xpt_chunks(path, columns, chunk_rows)
            tail = bytes(view[max(0, size - mark) : size])
            block = np.frombuffer(view[:size], dtype=np.uint8).reshape(count, row_length)
            for start, width, members in runs:
                # distinct rows of the run, then of each column in it (what is kept is a
                # column's distinct values, however many combinations the run has)
                distinct = _distinct_rows(block[:, start : start + width])
                for name, offset, n in members:
                    parts[name].append(_distinct_rows(distinct[:, offset : offset + n]))
            for name in numeric:
                _, pos, n = places[name]
                values = pd.unique(ibm_to_ieee(block[:, pos : pos + n]))
                parts[name].append(values[~np.isnan(values)])
    out: dict[str, pd.Series] = {}
    for encoding in (None, "windows-1252"):
        try:
            for name in columns:
                chunks = parts[name]
                var = by_name[name]
                if var.is_char:
                    width = places[name][2]
                    joined = np.concatenate(chunks) if chunks else np.zeros((0, width), np.uint8)
                    out[name] = _distinct_text(_distinct_rows(joined), encoding)
                else:
                    values = pd.unique(np.concatenate(chunks)) if chunks else np.empty(0)
                    column = _numbers_to_column(values, _safe_parse_format(var.format))
                    out[name] = column.dropna().reset_index(drop=True)
        except UnicodeDecodeError:
            continue  # read_xpt's fallback: the whole file is Windows-1252, not UTF-8
        return rows, out
    raise AssertionError("unreachable: Windows-1252 decodes every byte")


def _scan_xpt_chunks(
    path: Path, columns: list[str], chunk_rows: int
) -> tuple[int, dict[str, pd.Series]]:
    """`scan_xpt_distinct` through pyreadstat (`iter_xpt_chunks`), for files it cannot lay out."""
    for encoding in (None, "windows-1252"):
        rows = 0
        parts: dict[str, list[pd.Series]] = {name: [] for name in columns}
        try:
            for chunk in iter_xpt_chunks(path, columns, encoding=encoding, chunk_rows=chunk_rows):
                rows += len(chunk)
                for name in columns:
                    parts[name].append(pd.Series(chunk[name].dropna().unique()))
        except UnicodeDecodeError:
            if encoding is not None:
                raise
            continue
        out = {}
        for name in columns:
            joined = pd.concat(parts[name], ignore_index=True) if parts[name] else pd.Series([])
            out[name] = pd.Series(joined.unique()).dropna().reset_index(drop=True)
        return rows, out
    raise AssertionError("unreachable")

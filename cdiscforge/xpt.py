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

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from cdiscforge.errors import InputError
from cdiscforge.model import Dataset, Variable

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

    variables: list[Variable] = []
    columns: dict[str, pd.Series] = {}
    for name in meta.column_names:
        is_char = meta.readstat_variable_types[name] == "string"
        fmt = _safe_parse_format(meta.original_variable_types.get(name))
        column = frame[name]
        if is_char:
            column = column.astype("str")
            column = column.mask(column == "")
        else:
            column = _numbers_to_column(column.to_numpy(dtype="float64"), fmt)
        columns[name] = column
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
    out = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))
    return Dataset(
        name=meta.table_name or path.stem.upper(),
        label=meta.file_label or "",
        frame=out,
        variables=variables,
    )


def _read_with_pyreadstat(path: Path, encoding: str | None) -> tuple[pd.DataFrame, object]:
    try:
        return pyreadstat.read_xport(str(path), encoding=encoding, disable_datetime_conversion=True)
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

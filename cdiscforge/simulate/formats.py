"""Text formats of the raw exports: EDC dates, numbers as labs print them, and CSV chunks.

Raw exports are text. Formatting is done here, vectorised over whole columns, so the generator
works with numbers and datetime64 and a chunk of 500 subjects (about half a million item rows)
is formatted in a few numpy/pyarrow calls rather than row by row.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

MONTHS = np.array(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
)


def _parts(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12
    day = (d - months).astype(np.int64) + 1
    return year, month, day


def edc_date(days: np.ndarray) -> pd.Series:
    """datetime64[D] -> EDC text `25-SEP-2018` (NaT -> missing)."""
    days = np.asarray(days, dtype="datetime64[D]")
    missing = np.isnat(days)
    safe = np.where(missing, np.datetime64("2000-01-01"), days)
    year, month, day = _parts(safe)
    text = (
        pd.Series(day).astype("str").str.zfill(2)
        + "-"
        + pd.Series(MONTHS[month], dtype="str")
        + "-"
        + pd.Series(year).astype("str")
    )
    return text.where(~missing)


def iso_date(days: np.ndarray) -> pd.Series:
    """datetime64[D] -> `2018-09-25` as the lab transfer writes it."""
    return pd.Series(np.datetime_as_string(np.asarray(days, dtype="datetime64[D]")), dtype="str")


def hhmm(minutes: np.ndarray) -> pd.Series:
    """Minutes after midnight -> `HH:MM`."""
    minutes = np.asarray(minutes, dtype=np.int64)
    return (
        pd.Series(minutes // 60).astype("str").str.zfill(2)
        + ":"
        + pd.Series(minutes % 60).astype("str").str.zfill(2)
    )


def parse_hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def fixed(values: np.ndarray, decimals: np.ndarray | int) -> pd.Series:
    """Numbers with a fixed number of decimals per value, as a lab prints them (`4.50`)."""
    values = np.asarray(values, dtype=np.float64)
    decimals = np.broadcast_to(np.asarray(decimals, dtype=np.int64), values.shape)
    out = np.empty(values.shape, dtype=object)
    for d in np.unique(decimals):
        mask = decimals == d
        out[mask] = np.char.mod(f"%.{int(d)}f", np.round(values[mask], int(d)))
    result = pd.Series(out, dtype="str")
    return result.where(~np.isnan(values))


def limit_text(value: float) -> str:
    """An assay limit as labs print it inside `<0.5` / `>200` (no trailing zeros)."""
    return f"{value:g}"


_NEEDS_QUOTES = r'[,"\r\n]'


def _csv_field(column: pd.Series) -> pa.Array:
    arr = pc.fill_null(pa.array(column.astype("str"), type=pa.large_string()), "")
    needs = pc.match_substring_regex(arr, _NEEDS_QUOTES)
    quote = pa.scalar('"', type=pa.large_string())
    empty = pa.scalar("", type=pa.large_string())
    quoted = pc.binary_join_element_wise(quote, pc.replace_substring(arr, '"', '""'), quote, empty)
    return pc.if_else(needs, quoted, arr)


def csv_bytes(frame: pd.DataFrame, *, header: bool) -> bytes:
    """A chunk of rows as RFC 4180 CSV (UTF-8, LF, quotes only where needed, empty = missing).

    Built with pyarrow string kernels: the joined lines of a large_string array sit contiguously
    in its data buffer, so the chunk's bytes are one buffer slice, not a Python loop over rows.
    """
    head = (",".join(frame.columns) + "\n").encode() if header else b""
    if len(frame) == 0:
        return head
    fields = [_csv_field(frame[c]) for c in frame.columns]
    comma = pa.scalar(",", type=pa.large_string())
    newline = pa.scalar("\n", type=pa.large_string())
    lines = pc.binary_join_element_wise(*fields, comma)
    lines = pc.binary_join_element_wise(lines, pa.scalar("", type=pa.large_string()), newline)
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start = offsets[lines.offset]
    end = offsets[lines.offset + len(lines)]
    return head + lines.buffers()[2].to_pybytes()[start:end]


def write_chunk(fh: BinaryIO, frame: pd.DataFrame, *, header: bool) -> None:
    fh.write(csv_bytes(frame, header=header))

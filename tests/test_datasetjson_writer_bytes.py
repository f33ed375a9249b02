"""The Dataset-JSON writer gives byte for byte what the original per-value writer gave.

`write_dataset_json` encodes each DISTINCT value of a chunk and assembles the rows in Arrow.
The original algorithm (turn every value into a Python object, zip the columns into row tuples,
run the stdlib JSON encoder over the rows) is kept here, verbatim, as the slow reference; the
frame holds every kind of value the writer meets (nulls, empty strings, JSON escapes, control
characters and non-ASCII text, -0.0, extreme doubles, decimals, dates, datetimes and times as
datetime64/timedelta64 and as SAS numbers, categoricals, pyarrow and object strings).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cdiscforge.datasetjson import SUFFIXES, write_dataset_json
from cdiscforge.define.datatypes import temporal_kind
from cdiscforge.model import Dataset, StudyInfo, Variable

CREATED = "2026-01-15T09:30:00"
STUDY = StudyInfo(studyid="NCT03691909", name="NCT03691909", description="d", protocol="P")

# ---- the reference: the writer's row encoding before the per-distinct-value rewrite ----------
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
SAS_EPOCH = pd.Timestamp("1960-01-01")
_ISO_FORMATS = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%dT%H:%M:%S"}


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


def _decimal_text(numbers: np.ndarray, missing: np.ndarray, digits: int) -> list[Any]:
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


def _column_values(series: pd.Series, var: Variable, data_type: str) -> list[Any]:
    kind = temporal_kind(var)
    if kind is not None:
        return _temporal_as_iso(series, kind)
    if var.is_char:
        text = series.astype("string")
        missing = text.isna().to_numpy()
        return _with_nulls(text.fillna("").to_numpy(dtype=object), missing)
    numbers = pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan)
    missing = ~np.isfinite(numbers)
    if data_type == "decimal":
        return _decimal_text(numbers, missing, var.significant_digits or 0)
    if data_type == "integer":
        whole = np.where(missing, 0, numbers).astype(np.int64).tolist()
        return _with_nulls(np.array(whole, dtype=object), missing)
    return _with_nulls(np.where(missing, 0.0, numbers).tolist(), missing)


def _reference_rows(dataset: Dataset, data_types: list[str], nd: bool, step: int) -> bytes:
    """The rows part of the file as the original writer produced it."""
    out = []
    frame = dataset.frame
    for start in range(0, len(frame), step):
        chunk = frame.iloc[start : start + step]
        values = [
            _column_values(chunk[var.name], var, data_type)
            for var, data_type in zip(dataset.variables, data_types, strict=True)
        ]
        rows = list(zip(*values, strict=True))
        if nd:
            out.append("\n".join(map(_ENCODE, rows)) + "\n")
            continue
        if start:
            out.append(",")
        out.append(_ENCODE(rows)[1:-1])
    return "".join(out).encode("utf-8")


# ---- a frame with every kind of value ------------------------------------------------------
TEXTS = [
    "plain",
    "",
    None,
    'say "hi"',
    "back\\slash",
    "tab\tnew\nline\rcr",
    "bell\x07 nul\x00 esc\x1b del\x7f",
    "\b\f",
    "Ünïcödé – “quotes” 日本語",
    "emoji \U0001f9ea",
    "line\u2028sep\u2029",
    "a,b],[c",
    "null",
    "1.5",
]
FLOATS = [
    0.0,
    -0.0,
    np.nan,
    1e308,
    -1.7976931348623157e308,
    5e-324,
    1e-300,
    4.9e-7,
    0.1 + 0.2,
    1e16,
    123456789012345680.0,
    1.0,
    -2.5,
    np.inf,
    0.1,
    100.0,
    1e22,
    3.0,
]
WHOLE = [0.0, -0.0, np.nan, 1.0, -7.0, 2.0**53, 1e15, 42.0, -(2.0**40), 3.0, 10.0, 999.0, 5.0, 6.0]


def _cycle(values: list[Any], n: int) -> list[Any]:
    return [values[i % len(values)] for i in range(n)]


def _every_kind(n: int = 61) -> Dataset:
    rng = np.random.default_rng(7)
    text = _cycle(TEXTS, n)
    dates = pd.to_datetime(
        _cycle(["2019-01-07", None, "1959-12-31", "2020-02-29", "1960-01-01"], n)
    )
    moments = pd.to_datetime(
        _cycle(["2019-01-07T08:30:15", None, "1959-12-31T23:59:59", "2024-02-29T00:00:00"], n)
    )
    frame = pd.DataFrame(
        {
            "ARROW": pd.Series(text, dtype="str"),
            "ARROWNA": pd.Series(text, dtype="string[pyarrow]"),
            # an Arrow column in two chunks (as pd.concat leaves it), sliced across the seam
            "ARROW2": pd.concat(
                [pd.Series(text[: n // 3], dtype="str"), pd.Series(text[n // 3 :], dtype="str")],
                ignore_index=True,
            ),
            "PYSTR": pd.Series(text, dtype="string[python]"),
            "OBJ": pd.Series(text, dtype=object),
            "CAT": pd.Categorical(
                _cycle(["b", None, "a", 'q"\\', "é", ""], n),
                categories=["z", "a", "b", 'q"\\', "é", ""],
            ),
            "CATMANY": pd.Categorical(
                [f"v{i % 7}" for i in range(n)], categories=[f"v{i}" for i in range(300)]
            ),
            "ONECHAR": pd.Series(_cycle(["Y", "N", None], n), dtype="str"),
            "FLT": _cycle(FLOATS, n),
            "RAND": rng.normal(size=n) * 10.0 ** rng.integers(-20, 20, size=n),
            "INT": _cycle(WHOLE, n),
            "INTN": pd.array(_cycle([1, None, -3, 2**40], n), dtype="Int64"),
            # integers of a small span (one dictionary of the span, codes value - lowest)
            "INTS": _cycle([-3.0, np.nan, 0.0, 7.0, 12.0, 1.0, 4000.0], n),
            "INTSN": pd.array(_cycle([5, None, -2, 40], n), dtype="Int64"),
            "INTINF": _cycle([1.0, np.inf, 2.0, np.nan, -np.inf], n),
            "INTONE": _cycle([9.0, np.nan], n),
            "INTNONE": pd.array([None] * n, dtype="Int64"),
            "FLTNONE": pd.array([None] * n, dtype="Float64"),
            "BOOL": _cycle([True, False], n),
            "DEC": _cycle(
                [39.0, -0.0, 0.0, np.nan, 12.255, 1e-10, 1.5e21, 7.1, 0.30000000000000004], n
            ),
            "DEC0": _cycle([39.0, -0.0, 0.0, np.nan, 12.5, 1e-10], n),
            "ADT": dates,
            "ADTN": _cycle([21556.0, np.nan, -1.0, 0.0, -0.0, 22339.0], n),
            "ADTM": moments,
            "ADTMN": _cycle([1862411415.0, np.nan, -1.0, 0.0, 1.5], n),
            "ATM": pd.to_timedelta(_cycle(["08:30:15", None, "00:00:00", "23:59:59"], n)),
            "ATMN": pd.to_timedelta(_cycle([30615.0, np.nan, 0.0, 86399.0], n), unit="s"),
        }
    )
    variables = [
        Variable("ARROW", "Arrow strings", length=60),
        Variable("ARROWNA", "Arrow strings, NA", length=60),
        Variable("ARROW2", "Arrow strings, 2 chunks", length=60),
        Variable("PYSTR", "Python strings", length=60),
        Variable("OBJ", "Object strings", length=60),
        Variable("CAT", "Categorical", length=4),
        Variable("CATMANY", "Categorical, 300 categories", length=4),
        Variable("ONECHAR", "Flag"),
        Variable("FLT", "Floats", type="Num", length=8),
        Variable("RAND", "Random doubles", type="Num", length=8),
        Variable("INT", "Whole numbers", type="Num", length=8),
        Variable("INTN", "Nullable integers", type="Num", length=8),
        Variable("INTS", "Integers, small span", type="Num", length=8),
        Variable("INTSN", "Nullable integers, small span", type="Num", length=8),
        Variable("INTINF", "Integers and infinities", type="Num", length=8),
        Variable("INTONE", "One integer", type="Num", length=8),
        Variable("INTNONE", "Nullable integers, all missing", type="Num", length=8),
        Variable("FLTNONE", "Nullable floats, all missing", type="Num", length=8),
        Variable("BOOL", "Booleans", type="Num", length=8),
        Variable("DEC", "Decimals", type="Num", length=8, significant_digits=2),
        Variable("DEC0", "Decimals, 0 digits", type="Num", length=8, significant_digits=0),
        Variable("ADT", "Date", type="Num", length=8, format="DATE9."),
        Variable("ADTN", "Date as SAS number", type="Num", length=8, format="DATE9."),
        Variable("ADTM", "Datetime", type="Num", length=8, format="E8601DT19."),
        Variable("ADTMN", "Datetime as SAS number", type="Num", length=8, format="DATETIME20."),
        Variable("ATM", "Time", type="Num", length=8, format="TIME8."),
        Variable("ATMN", "Time from seconds", type="Num", length=8, format="TIME8."),
    ]
    ds = Dataset("ADXX", "Every kind", frame, variables, standard="ADaMIG 1.3", keys=["OBJ"])
    return ds


def _rows_of(data: bytes, encoding: str) -> tuple[dict[str, Any], bytes]:
    """The metadata and the rows part of a written file."""
    if encoding == "dsjc":
        data = zlib.decompress(data)
    if encoding == "json":
        doc = json.loads(data)
        start = data.index(b'"rows":[') + len(b'"rows":[')
        assert data.endswith(b"]}\n")
        return doc, data[start:-3]
    head, _, rows = data.partition(b"\n")
    return json.loads(head), rows


@pytest.mark.parametrize("encoding", ["json", "ndjson", "dsjc"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 10_000])
def test_rows_are_byte_identical_to_the_per_value_encoder(
    tmp_path: Path, encoding: str, chunk_rows: int
) -> None:
    ds = _every_kind()
    path = write_dataset_json(
        ds, tmp_path / f"adxx{SUFFIXES[encoding]}", study=STUDY, created=CREATED,
        chunk_rows=chunk_rows,
    )  # fmt: skip
    data = path.read_bytes()
    doc, rows = _rows_of(data, encoding)
    data_types = [c["dataType"] for c in doc["columns"]]
    if encoding == "dsjc":  # compressed chunk by chunk = compressed in one go
        whole = zlib.decompress(data)
        packer = zlib.compressobj(9, zlib.DEFLATED, 15)
        assert data == packer.compress(whole) + packer.flush()
    # every kind the writer distinguishes is in the frame
    assert {"string", "float", "integer", "decimal", "date", "datetime", "time"} <= set(data_types)
    for step in (1, 7, 10_000):
        assert rows == _reference_rows(ds, data_types, encoding != "json", step)
    assert (
        doc["records"] == len(ds) == len(rows.splitlines() if encoding != "json" else doc["rows"])
    )


@pytest.mark.parametrize("encoding", ["json", "ndjson", "dsjc"])
def test_a_one_column_and_an_empty_dataset_are_encoded_as_before(
    tmp_path: Path, encoding: str
) -> None:
    ds = _every_kind(23)
    for keep, rows_kept in ((["OBJ"], 23), (["FLT"], 23), (["DEC", "ATM"], 0)):
        frame = ds.frame[keep].iloc[:rows_kept]
        one = Dataset(
            "ADXX", "One", frame, [v for v in ds.variables if v.name in keep],
            standard="ADaMIG 1.3",
        )  # fmt: skip
        path = write_dataset_json(
            one, tmp_path / f"one{SUFFIXES[encoding]}", study=STUDY, created=CREATED, chunk_rows=5
        )
        doc, rows = _rows_of(path.read_bytes(), encoding)
        data_types = [c["dataType"] for c in doc["columns"]]
        assert rows == _reference_rows(one, data_types, encoding != "json", 5)
        assert doc["records"] == rows_kept

"""Dataset-JSON 1.1 in its three encodings (.json, .ndjson, .dsjc): exact round trips, the
decimal dataType, the NDJSON / DSJC layout, streaming determinism and the checks."""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscforge.datasetjson import (
    ENCODINGS,
    SUFFIXES,
    check_dataset_json,
    read_dataset_json,
    write_dataset_json,
)
from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import Dataset, StudyInfo, Variable
from cdiscforge.xpt import ieee_to_ibm, read_xpt_fast, write_xpt

CREATED = "2026-01-15T09:30:00"
STUDY = StudyInfo(
    studyid="NCT03691909", name="NCT03691909", description="MSC in RA", protocol="NCT03691909"
)
# Doubles a careless writer or reader loses: datasetjson #97 read values below ~5e-7 as 0.
HARD_FLOATS = [
    1e-300,
    4.9e-7,
    0.1 + 0.2,  # 0.30000000000000004
    0.12345678901234568,  # 17 significant digits
    123456789012345.6,  # 16
    2.220446049250313e-16,
    -0.0,
    5e-324,  # the smallest subnormal
    1.7976931348623157e308,
    np.nan,
]


def _adlb(n_copies: int = 1) -> Dataset:
    n = len(HARD_FLOATS)
    frame = pd.DataFrame(
        {
            "USUBJID": [f"NCT03691909-01-{i:03d}" for i in range(n)],
            "PARAM": [
                'C Reactive "hs" (mg/L)',
                "a],[b",
                "Ångström\u00e9",
                None,
                "",
                *["x"] * (n - 5),
            ],
            "AVAL": HARD_FLOATS,
            "AVISITN": [float(i) for i in range(n)],
            "BASE": [39.0, 12.25, 0.1 + 0.2, -0.0, np.nan, 1e-300, 4.9e-7, 100.0, 7.125, 1.0],
            "ADT": pd.to_datetime(["2019-01-07", None, "2020-02-29", *["1960-01-01"] * (n - 3)]),
            "ADTM": pd.to_datetime(
                ["2019-01-07T08:30:15", None, *["1959-12-31T23:59:59"] * (n - 2)]
            ),
        }
    ).astype({"USUBJID": "str", "PARAM": "str"})
    frame = pd.concat([frame] * n_copies, ignore_index=True)
    variables = [
        Variable("USUBJID", "Unique Subject Identifier", length=18),
        Variable("PARAM", "Parameter", length=40),
        Variable("AVAL", "Analysis Value", type="Num", length=8),
        Variable("AVISITN", "Analysis Visit (N)", type="Num", length=8),
        Variable("BASE", "Baseline Value", type="Num", length=8, significant_digits=2),
        Variable("ADT", "Analysis Date", type="Num", length=8, format="DATE9."),
        Variable("ADTM", "Analysis Datetime", type="Num", length=8, format="E8601DT19."),
    ]
    return Dataset(
        "ADLB", "Laboratory Analysis Dataset", frame, variables, standard="ADaMIG 1.3",
        keys=["USUBJID", "AVISITN"],
    )  # fmt: skip


def _write(ds: Dataset, folder: Path, encoding: str, **kwargs: object) -> Path:
    return write_dataset_json(
        ds, folder / f"adlb{SUFFIXES[encoding]}", study=STUDY, created=CREATED, **kwargs
    )  # type: ignore[arg-type]


def _bits(series: pd.Series) -> np.ndarray:
    """The exact doubles of a column (NaN normalised), so -0.0 differs from 0.0."""
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isnan(values), np.nan, values).view(np.int64)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_value_reads_back_exactly(tmp_path: Path, encoding: str) -> None:
    ds = _adlb()
    back = read_dataset_json(_write(ds, tmp_path, encoding))
    for name in ("AVAL", "AVISITN", "BASE"):
        np.testing.assert_array_equal(_bits(back.frame[name]), _bits(ds.frame[name]), name)
    assert np.signbit(back.frame["AVAL"].iloc[6]) and back.frame["AVAL"].iloc[0] == 1e-300
    assert back.frame["AVAL"].iloc[1] == 4.9e-7 and back.frame["AVAL"].iloc[7] == 5e-324
    pd.testing.assert_frame_equal(
        back.frame, ds.frame.assign(PARAM=ds.frame["PARAM"].replace("", None))
    )
    assert [(v.name, v.type, v.length, v.format) for v in back.variables] == [
        (v.name, v.type, v.length, v.format) for v in ds.variables
    ]
    assert (back.name, back.label, back.keys) == (ds.name, ds.label, ds.keys)


def test_the_three_encodings_hold_the_same_content(tmp_path: Path) -> None:
    ds = _adlb()
    docs = {}
    for encoding in ENCODINGS:
        path = _write(ds, tmp_path, encoding)
        data = path.read_bytes()
        if encoding == "json":
            docs[encoding] = json.loads(data)
            continue
        if encoding == "dsjc":
            # A bare zlib stream (RFC 1950, level 9: header 78 DA), as CORE and R read it.
            assert data[:2] == b"\x78\xda"
            data = zlib.decompress(data)
            assert data == (tmp_path / "adlb.ndjson").read_bytes()
        text = data.decode("utf-8")
        assert text.endswith("\n") and "\n\n" not in text
        first, *rows = text.splitlines()
        meta = json.loads(first)
        assert "rows" not in meta and meta["records"] == len(rows) == len(ds)
        docs[encoding] = {**meta, "rows": [json.loads(r) for r in rows]}
    assert docs["json"] == docs["ndjson"] == docs["dsjc"]


def test_significant_digits_make_a_decimal_column_of_exact_strings(tmp_path: Path) -> None:
    doc = json.loads(_write(_adlb(), tmp_path, "json").read_text(encoding="utf-8"))
    base = next(c for c in doc["columns"] if c["name"] == "BASE")
    assert (base["dataType"], base["targetDataType"]) == ("decimal", "decimal")
    aval = next(c for c in doc["columns"] if c["name"] == "AVAL")
    assert aval["dataType"] == "float" and "targetDataType" not in aval
    values = [row[4] for row in doc["rows"]]
    # Two decimals as define.xml says, more where the double needs them; never rounded.
    assert values[:5] == ["39.00", "12.25", "0.30000000000000004", "-0.00", None]
    assert values[6] == "0.00000049" and values[8] == "7.125"
    assert float(values[5]) == 1e-300
    assert check_dataset_json(tmp_path / "adlb.json") == ([], len(values))


def test_negative_zero_makes_a_column_float_not_integer(tmp_path: Path) -> None:
    ds = _adlb()
    ds.frame["AVISITN"] = [0.0, -0.0, *[1.0] * (len(ds) - 2)]
    path = _write(ds, tmp_path, "ndjson")
    meta = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert next(c for c in meta["columns"] if c["name"] == "AVISITN")["dataType"] == "float"
    assert np.signbit(read_dataset_json(path).frame["AVISITN"].iloc[1])


def test_iso_dates_are_written_as_iso_8601_and_read_back_as_dates(tmp_path: Path) -> None:
    path = _write(_adlb(), tmp_path, "dsjc")
    first, second, third = zlib.decompress(path.read_bytes()).decode().splitlines()[1:4]
    assert json.loads(first)[5:] == ["2019-01-07", "2019-01-07T08:30:15"]
    assert json.loads(second)[5:] == [None, None]
    assert json.loads(third)[5] == "2020-02-29"
    back = read_dataset_json(path).frame
    assert back["ADTM"].iloc[3] == pd.Timestamp("1959-12-31T23:59:59")


@pytest.mark.parametrize("encoding", ["ndjson", "dsjc"])
def test_bytes_and_frame_do_not_depend_on_chunk_sizes(tmp_path: Path, encoding: str) -> None:
    ds = _adlb(n_copies=7)
    a = _write(ds, tmp_path / "a", encoding)
    b = _write(ds, tmp_path / "b", encoding, chunk_rows=3)
    assert a.read_bytes() == b.read_bytes()
    pd.testing.assert_frame_equal(
        read_dataset_json(a, chunk_rows=4).frame, read_dataset_json(a).frame
    )
    assert check_dataset_json(a) == ([], 70)


def test_sas_special_missing_values_read_from_xpt_are_written_as_null(tmp_path: Path) -> None:
    """The dataset model carries SAS's .A-.Z/._ as missing (NaN); Dataset-JSON says null."""
    frame = pd.DataFrame({"STUDYID": ["S1"] * 3, "LBSTRESN": [1.5, -3.0, 4.0]})
    ds = Dataset(
        "LB", "Laboratory", frame.astype({"STUDYID": "str"}),
        [Variable("STUDYID", "Study", length=2), Variable("LBSTRESN", "Result", "Num", 8)],
    )  # fmt: skip
    xpt = write_xpt(ds, tmp_path / "lb.xpt", created=datetime(2024, 1, 1))
    data = bytearray(xpt.read_bytes())
    number = int(ieee_to_ibm(pd.Series([-3.0]).to_numpy())[0]).to_bytes(8, "big")
    at = data.index(number)
    data[at : at + 8] = b"Z" + bytes(7)  # SAS special missing .Z
    xpt.write_bytes(bytes(data))
    read = read_xpt_fast(xpt)
    path = write_dataset_json(read, tmp_path / "lb.ndjson", study=STUDY, created=CREATED)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    assert [r[1] for r in rows] == [1.5, None, 4.0]
    assert read_dataset_json(path).frame["LBSTRESN"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("encoding", ["ndjson", "dsjc"])
def test_ndjson_problems_are_reported_with_their_line(tmp_path: Path, encoding: str) -> None:
    path = _write(_adlb(), tmp_path, encoding)
    data = path.read_bytes()
    text = (zlib.decompress(data) if encoding == "dsjc" else data).decode("utf-8")
    lines = text.splitlines(keepends=True)
    cases = {
        "short": [*lines[:3], '["x"]\n', *lines[4:]],
        "broken": [*lines[:5], '["x",\n', *lines[6:]],
        "count": lines[:-1],
    }
    expected = {
        "short": "rows/2 is not an array of 7 values",
        "broken": "line 6",
        "count": "records is 10 but there are 9 rows",
    }
    for name, body in cases.items():
        raw = "".join(body).encode("utf-8")
        path.write_bytes(zlib.compress(raw, 9) if encoding == "dsjc" else raw)
        problems = check_dataset_json(path)[0]
        assert any(expected[name] in p for p in problems), (name, problems)
    not_object = b'["x"]\n'
    path.write_bytes(zlib.compress(not_object) if encoding == "dsjc" else not_object)
    assert check_dataset_json(path) == ([f"{path}: (top level): is not a JSON object"], 0)


def test_a_damaged_dsjc_is_an_error_naming_the_file_not_a_traceback(tmp_path: Path) -> None:
    path = _write(_adlb(), tmp_path, "dsjc")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CdiscforgeError, match=r"adlb\.dsjc.*zlib stream ends"):
        read_dataset_json(path)
    assert "zlib stream ends" in check_dataset_json(path)[0][0]
    path.write_bytes(b"not zlib at all")
    with pytest.raises(CdiscforgeError, match="not a zlib stream"):
        read_dataset_json(path)


def test_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CdiscforgeError, match="not a Dataset-JSON file name"):
        write_dataset_json(_adlb(), tmp_path / "adlb.jsonl", study=STUDY, created=CREATED)
    assert list(tmp_path.iterdir()) == []


def test_decimal_strings_from_other_writers_read_exactly(tmp_path: Path) -> None:
    """Dataset-JSON 1.1's own decimal example, a thousands separator, and a number where a
    string belongs (refused with the column named, not silently taken)."""
    path = _write(_adlb(), tmp_path, "ndjson")
    meta, *rows = path.read_text(encoding="utf-8").splitlines()
    decoded = [json.loads(r) for r in rows]
    decoded[0][4], decoded[1][4] = "30.8983333232059", "1,234.5"
    path.write_text("\n".join([meta, *map(json.dumps, decoded)]) + "\n", encoding="utf-8")
    base = read_dataset_json(path).frame["BASE"]
    assert base.iloc[0] == 30.8983333232059 and base.iloc[1] == 1234.5
    decoded[2][4] = 0.3
    path.write_text("\n".join([meta, *map(json.dumps, decoded)]) + "\n", encoding="utf-8")
    with pytest.raises(
        CdiscforgeError,
        match=r"column BASE: values do not fit dataType decimal: a decimal value is not a string",
    ):
        read_dataset_json(path)

"""Dataset-JSON 1.1: round trip, schema validity, streaming determinism, reference examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from cdiscforge.datasetjson import (
    check_dataset_json,
    read_dataset_json,
    validate_dataset_json,
    write_dataset_json,
)
from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import Dataset, StudyInfo, Variable

# Small copies of CDISC's Dataset-JSON examples (tests/fixtures/README.md names the source).
REF = Path(__file__).resolve().parent / "fixtures" / "dataset-json-examples"
CREATED = "2026-01-15T09:30:00"
STUDY = StudyInfo(
    studyid="NCT03691909", name="NCT03691909", description="MSC in RA", protocol="NCT03691909"
)


def _adlb() -> Dataset:
    frame = pd.DataFrame(
        {
            "USUBJID": ["NCT03691909-01-001", "NCT03691909-01-001", "NCT03691909-01-002"],
            "PARAMCD": ["CRP", "ALB", "CRP"],
            "PARAM": ['C Reactive Protein (mg/L) & "hs"', "Albumin (g/L)", None],
            "AVAL": [12.25, 39.0, np.nan],
            "AVISITN": [0.0, 4.0, 52.0],
            "ADT": pd.to_datetime(["2019-01-07", None, "2020-01-06"]),
        }
    ).astype({"USUBJID": "str", "PARAMCD": "str", "PARAM": "str"})
    variables = [
        Variable("USUBJID", "Unique Subject Identifier", length=18),
        Variable("PARAMCD", "Parameter Code", length=3),
        Variable("PARAM", "Parameter", length=40),
        Variable("AVAL", "Analysis Value", type="Num", length=8),
        Variable("AVISITN", "Analysis Visit (N)", type="Num", length=8),
        Variable("ADT", "Analysis Date", type="Num", length=8, format="DATE9."),
    ]
    return Dataset(
        "ADLB", "Laboratory Analysis Dataset", frame, variables, standard="ADaMIG 1.3",
        keys=["USUBJID", "PARAMCD", "AVISITN"],
    )  # fmt: skip


def test_round_trip_gives_back_the_same_frame_and_metadata(tmp_path: Path) -> None:
    ds = _adlb()
    out = write_dataset_json(ds, tmp_path / "adlb.json", study=STUDY, created=CREATED)
    back = read_dataset_json(out)

    pd.testing.assert_frame_equal(back.frame, ds.frame)
    assert (back.name, back.label, back.keys) == (ds.name, ds.label, ds.keys)
    meta = [(v.name, v.label, v.type, v.length, v.format) for v in ds.variables]
    assert [(v.name, v.label, v.type, v.length, v.format) for v in back.variables] == meta


def test_written_file_is_schema_valid_and_follows_the_standard(tmp_path: Path) -> None:
    out = write_dataset_json(
        _adlb(), tmp_path / "adlb.json", study=STUDY, created=CREATED,
        define_path="../../adam/define.xml",
    )  # fmt: skip
    assert validate_dataset_json(out) == []
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["datasetJSONVersion"] == "1.1.0"
    assert doc["itemGroupOID"] == "IG.ADLB" and doc["records"] == 3
    assert doc["metaDataVersionOID"] == "MDV.NCT03691909.ADaMIG.1.3"
    assert doc["metaDataRef"] == "../../adam/define.xml"
    adt = doc["columns"][5]
    assert (adt["dataType"], adt["targetDataType"], adt["displayFormat"]) == (
        "date", "integer", "DATE9."
    )  # fmt: skip
    assert doc["columns"][1]["keySequence"] == 2
    assert doc["columns"][4]["dataType"] == "integer"
    assert doc["columns"][3]["dataType"] == "float"
    assert doc["rows"][0] == [
        "NCT03691909-01-001", "CRP", 'C Reactive Protein (mg/L) & "hs"', 12.25, 0, "2019-01-07",
    ]  # fmt: skip
    assert doc["rows"][1][5] is None and doc["rows"][2][2] is None


def test_output_is_byte_identical_whatever_the_chunk_size(tmp_path: Path) -> None:
    a = write_dataset_json(_adlb(), tmp_path / "a.json", study=STUDY, created=CREATED)
    b = write_dataset_json(_adlb(), tmp_path / "b.json", study=STUDY, created=CREATED, chunk_rows=1)
    assert a.read_bytes() == b.read_bytes()


def test_schema_check_reports_a_wrong_record_count_and_bad_version(tmp_path: Path) -> None:
    out = write_dataset_json(_adlb(), tmp_path / "adlb.json", study=STUDY, created=CREATED)
    doc = json.loads(out.read_text(encoding="utf-8"))
    doc["records"] = 5
    doc["datasetJSONVersion"] = "1.0"
    out.write_text(json.dumps(doc), encoding="utf-8")
    problems = "\n".join(validate_dataset_json(out))
    assert "records is 5 but there are 3 rows" in problems
    assert "datasetJSONVersion" in problems


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [({"a": 1}, "rows/1 is not an array"), (["x"], "rows/1 is not an array"),
     (None, "rows/1 is not an array")],
)  # fmt: skip
def test_rows_are_checked_beyond_the_schema(tmp_path: Path, bad_row: object, problem: str) -> None:
    out = write_dataset_json(_adlb(), tmp_path / "adlb.json", study=STUDY, created=CREATED)
    doc = json.loads(out.read_text(encoding="utf-8"))
    doc["rows"][1] = bad_row
    out.write_text(json.dumps(doc), encoding="utf-8")
    assert any(problem in p for p in validate_dataset_json(out))


def test_a_nested_value_in_a_row_is_reported(tmp_path: Path) -> None:
    out = write_dataset_json(_adlb(), tmp_path / "adlb.json", study=STUDY, created=CREATED)
    doc = json.loads(out.read_text(encoding="utf-8"))
    doc["rows"][2][0] = ["nested"]
    out.write_text(json.dumps(doc), encoding="utf-8")
    assert any("rows/2 holds a value that is not a scalar" in p for p in validate_dataset_json(out))


def _adlb_doc(tmp_path: Path) -> dict:
    out = write_dataset_json(_adlb(), tmp_path / "adlb.json", study=STUDY, created=CREATED)
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("chunk_chars", [1, 2, 3, 5, 8, 13, 64, 1 << 20])
def test_pretty_printed_file_checks_clean_whatever_the_chunk_size(
    tmp_path: Path, chunk_chars: int
) -> None:
    """Other writers indent; a tiny chunk cuts every token (numbers, strings, null, the
    records count) at some boundary, and the streaming check must still see the same file."""
    out = tmp_path / "pretty.json"
    out.write_text(json.dumps(_adlb_doc(tmp_path), indent=2), encoding="utf-8")
    assert check_dataset_json(out, chunk_chars=chunk_chars) == ([], 3)


@pytest.mark.parametrize("chunk_chars", range(1, 40))
def test_compact_rows_cut_at_every_position_still_parse(tmp_path: Path, chunk_chars: int) -> None:
    """Twelve rows, so that "records":12 is also cut between its digits at some size."""
    ds = _adlb()
    ds.frame = pd.concat([ds.frame] * 4, ignore_index=True)
    out = write_dataset_json(ds, tmp_path / "adlb.json", study=STUDY, created=CREATED)
    assert check_dataset_json(out, chunk_chars=chunk_chars) == ([], 12)


def test_rows_before_columns_check_clean_and_rows_are_still_judged(tmp_path: Path) -> None:
    doc = _adlb_doc(tmp_path)
    first = {"rows": doc.pop("rows")}
    out = tmp_path / "rows_first.json"
    out.write_text(json.dumps({**first, **doc}, indent=1), encoding="utf-8")
    assert out.read_text(encoding="utf-8").startswith('{\n "rows"')
    assert check_dataset_json(out, chunk_chars=16) == ([], 3)
    # The width is only known after the rows: a short row and a later nested one are judged
    # then, in row order, as when the rows come last.
    first["rows"][1] = first["rows"][1][:-1]
    first["rows"][2][0] = ["nested"]
    out.write_text(json.dumps({**first, **doc}), encoding="utf-8")
    problems, rows = check_dataset_json(out, chunk_chars=16)
    assert rows == 3
    assert problems == [f"{out}: rows/1 is not an array of 6 values"]


def test_nested_value_before_a_short_row_is_the_one_reported(tmp_path: Path) -> None:
    doc = _adlb_doc(tmp_path)
    doc["rows"][0][3] = {"x": 1}
    doc["rows"][2] = doc["rows"][2][:2]
    out = tmp_path / "adlb.json"
    out.write_text(json.dumps({"rows": doc.pop("rows"), **doc}), encoding="utf-8")
    assert check_dataset_json(out)[0] == [f"{out}: rows/0 holds a value that is not a scalar"]


@pytest.mark.parametrize("chunk_chars", [7, 1 << 20])
@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda t: t[: t.index('"rows"') + 40], "in rows/"),  # truncated inside the rows
        (lambda t: t[:-2], "expected ',' or '}'"),  # the closing "}" lost
        (lambda t: t[:30], "line 1 column"),  # truncated in the header
        (lambda t: t.replace("],[", "][", 1), "expected ',' or ']' after a row"),
        (lambda t: t + "{}", "extra data after the top-level object"),
        (lambda t: "", "expected '{'"),
        (lambda t: t.replace('"records":3', '"records":3.', 1), "found '.'"),
    ],
)  # fmt: skip
def test_malformed_json_is_reported_with_its_place_not_raised(
    tmp_path: Path, cut: object, message: str, chunk_chars: int
) -> None:
    out = write_dataset_json(_adlb(), tmp_path / "adlb.json", study=STUDY, created=CREATED)
    out.write_text(cut(out.read_text(encoding="utf-8")), encoding="utf-8")  # type: ignore[operator]
    problems, rows = check_dataset_json(out, chunk_chars=chunk_chars)
    assert rows == 0
    assert len(problems) == 1
    assert problems[0].startswith(f"{out}: not readable JSON: ")
    assert message in problems[0]


def test_json_that_is_not_an_object_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "list.json"
    out.write_text("  [1, 2]", encoding="utf-8")
    assert check_dataset_json(out) == ([f"{out}: (top level): is not a JSON object"], 0)


def test_rows_that_are_not_an_array_are_reported(tmp_path: Path) -> None:
    doc = _adlb_doc(tmp_path)
    doc["rows"] = {"a": [1]}
    out = tmp_path / "adlb.json"
    out.write_text(json.dumps(doc), encoding="utf-8")
    assert check_dataset_json(out) == ([f"{out}: rows: is not an array"], 0)


def test_reference_dm_json_matches_its_xpt() -> None:
    """CDISC's dm.json and dm.xpt (dataset-json-examples) hold the same data."""
    ds = read_dataset_json(REF / "sdtm" / "dm.json")
    xpt, meta = pyreadstat.read_xport(str(REF / "sdtm" / "dm.xpt"))
    assert validate_dataset_json(REF / "sdtm" / "dm.json") == []
    assert ds.variable_names == list(xpt.columns)
    assert len(ds) == len(xpt) == 18
    for name in xpt.columns:
        expected = xpt[name]
        if expected.dtype.kind in "fi":
            np.testing.assert_allclose(ds.frame[name].to_numpy(), expected.to_numpy())
        else:
            got = ds.frame[name].astype(object).where(ds.frame[name].notna(), "")
            assert got.tolist() == expected.astype(object).tolist(), name
    labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
    assert {v.name: v.label for v in ds.variables} == labels


def test_reference_adsl_numeric_dates_read_as_dates() -> None:
    ds = read_dataset_json(REF.joinpath("adam", "adsl.json"))
    assert ds.variable("TRTSDT").format == "DATE9."
    assert ds.frame["TRTSDT"].iloc[0] == pd.Timestamp("2014-01-02")
    xpt, _ = pyreadstat.read_xport(str(REF / "adam" / "adsl.xpt"))
    assert len(ds) == len(xpt) == 254


def test_dates_without_a_date_format_are_refused_not_written_as_nanoseconds(
    tmp_path: Path,
) -> None:
    ds = _adlb()
    ds.variables[5].format = None
    with pytest.raises(CdiscforgeError, match="ADT holds dates but has no SAS date format"):
        write_dataset_json(ds, tmp_path / "adlb.json", study=STUDY, created=CREATED)
    assert list(tmp_path.iterdir()) == []

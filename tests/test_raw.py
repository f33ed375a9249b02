"""Hostile raw exports: located errors (file, row, column, value), never a guess.

Outside a `collecting()` block the first error is raised; inside it (as the engine reads)
every error of the file is reported together."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdiscforge.errors import InputError, InputErrors, SpecError, collecting
from cdiscforge.raw import read_form
from cdiscforge.spec import load_study

HEADER = "STUDY,SITENUMBER,SUBJECT,FOLDER,VISDAT"
GOOD = ["NCT03691909,101,101-001,SCREEN,27-SEP-2018", "NCT03691909,101,101-001,LIPO,20-OCT-2018"]


@pytest.fixture(scope="module")
def visits_form(seed_spec: Path):
    return load_study(seed_spec).forms["visits"]


def _write(tmp_path: Path, lines: list[str] | bytes) -> Path:
    path = tmp_path / "visits.csv"
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_good_export_reads_as_text_with_row_numbers(tmp_path: Path, visits_form) -> None:
    form = read_form(visits_form, _write(tmp_path, [HEADER, *GOOD]))
    assert len(form) == 2 and form.rows.tolist() == [1, 2]
    assert form.frame["SITENUMBER"].tolist() == ["101", "101"]  # text: leading zeros safe


@pytest.mark.parametrize(
    ("content", "row", "column", "fragment"),
    [
        ([], None, None, "malformed CSV"),
        ([HEADER.replace(",VISDAT", ""), "a,b,c,d"], 0, None, "['VISDAT']"),
        ([HEADER + ",EXTRA", GOOD[0] + ",x"], 0, "EXTRA", "not in the raw-form contract"),
        ([HEADER, GOOD[0], "NCT03691909,101,,WEEK1,01-JAN-2019"], 2, "SUBJECT", "required"),
        ([HEADER, GOOD[0], GOOD[1] + ",oops"], None, None, "line 3"),
    ],
)
def test_malformed_exports_are_located(
    tmp_path: Path, visits_form, content: list[str], row, column, fragment: str
) -> None:
    folder = _write(tmp_path, content)
    with pytest.raises(InputError) as err:
        read_form(visits_form, folder)
    assert err.value.file.endswith("visits.csv")
    assert err.value.row == row and err.value.column == column
    assert fragment in str(err.value)


def test_latin1_export_names_the_row(tmp_path: Path, visits_form) -> None:
    text = "\n".join([HEADER, GOOD[0], "NCT03691909,101,101-002,SCREEN,27-SEP-2018 café"]) + "\n"
    with pytest.raises(InputError) as err:
        read_form(visits_form, _write(tmp_path, text.encode("latin-1")))
    assert err.value.row == 2 and "not UTF-8" in str(err.value)


def test_missing_file_is_named(tmp_path: Path, visits_form) -> None:
    with pytest.raises(InputError, match="raw export for form 'visits' not found"):
        read_form(visits_form, tmp_path)


def test_number_column_holding_text(tmp_path: Path, seed_spec: Path) -> None:
    form = load_study(seed_spec).forms["liposuction"]
    lines = [
        "STUDY,SITENUMBER,SUBJECT,FOLDER,PRSTDAT,PRSTTIM,PRLOC,FATVOL",
        "NCT03691909,101,101-001,LIPO,20-OCT-2018,08:40,Abdomen,102",
        "NCT03691909,101,101-004,LIPO,28-NOV-2018,08:10,Abdomen,lots",
    ]
    (tmp_path / "liposuction.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_form(form, tmp_path)
    assert (err.value.row, err.value.column, err.value.value) == (2, "FATVOL", "lots")


def test_every_error_of_a_file_in_one_error_sorted_by_row(tmp_path: Path, visits_form) -> None:
    lines = [
        HEADER,
        "NCT03691909,101,101-001,SCREEN,31-FEB-2018",
        GOOD[1],
        "NCT03691909,101,,WEEK1,01-JAN-2019",
        "NCT03691909,101,101-002,WEE\x01K1,01-JAN-2099",
        GOOD[1],
    ]
    with pytest.raises(InputErrors) as err, collecting():
        read_form(visits_form, _write(tmp_path, lines), date_formats={"VISDAT": "%d-%b-%Y"})
    got = [(e.row, e.column, e.value) for e in err.value.errors]
    assert got == [
        (1, "VISDAT", "31-FEB-2018"),
        (3, "SUBJECT", None),
        (4, "FOLDER", "WEE\x01K1"),
        (4, "VISDAT", "01-JAN-2099"),
        (5, "SUBJECT+FOLDER", "101-001/LIPO"),
    ]
    text = str(err.value)
    assert text.startswith("5 input errors in 1 file(s)")
    assert "same as row 2" in text and "after the plausible 2021-12-31" in text
    assert isinstance(err.value, InputError) and err.value.row == 1  # the first, for callers


def test_line_breaks_become_one_space_and_are_noted(tmp_path: Path, visits_form) -> None:
    content = HEADER + "\n" + GOOD[0] + "\n" + 'NCT03691909,101,101-001,"LI\r\nPO",20-OCT-2018\n'
    (tmp_path / "visits.csv").write_text(content, encoding="utf-8", newline="")
    form = read_form(visits_form, tmp_path)
    assert form.frame["FOLDER"].tolist() == ["SCREEN", "LI PO"]
    assert form.notes == [
        ("line break or tab inside a value replaced by one space", "FOLDER", 1,
         ["visits.csv row 2"]),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("column", "bound", "fragment"),
    [
        ("SUBJECT", {"min": 1}, "no bounds on a str column"),
        ("VISDAT", {"max": "next year"}, "expected a date YYYY-MM-DD"),
    ],
)
def test_bad_bounds_are_spec_errors(
    tmp_path: Path, seed_spec: Path, column: str, bound: dict, fragment: str
) -> None:
    import shutil

    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    path = spec / "raw_forms.yaml"
    data = yaml.safe_load(path.read_text())
    data["forms"]["visits"]["columns"][column].update(bound)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError, match=fragment) as err:
        load_study(spec)
    assert f"forms.visits.columns.{column}" in str(err.value)


def test_cross_form_check_must_name_a_declared_form(tmp_path: Path, seed_spec: Path) -> None:
    import shutil

    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    path = spec / "raw_forms.yaml"
    data = yaml.safe_load(path.read_text())
    data["forms"]["visits"]["checks"] = [
        {"column": "VISDAT", "not_before": {"form": "consent", "column": "ICDAT"}}
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError, match="no form 'consent'"):
        load_study(spec)


def test_collecting_reports_what_stopped_the_run_and_lets_interrupts_through() -> None:
    import pandas as pd

    from cdiscforge.errors import Located, raise_first

    bad = pd.Series([False, True, True])
    values = pd.Series(["a", "b", "c"])
    with pytest.raises(InputErrors) as err, collecting():
        raise_first(bad, values, Located("f.csv", "X", None), "bad X")
        raise ValueError("later failure")  # a consequence of the bad values, say
    assert [(e.row, e.value) for e in err.value.errors] == [(2, "b"), (3, "c")]
    assert "the build stopped after these: ValueError('later failure')" in str(err.value)
    with pytest.raises(KeyboardInterrupt), collecting():
        raise_first(bad, values, Located("f.csv", "X", None), "bad X")
        raise KeyboardInterrupt
    with pytest.raises(ValueError), collecting():  # nothing collected: the error as it is
        raise ValueError("a bug")

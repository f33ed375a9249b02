"""raw.py checks each column per distinct value and broadcasts through the codes: the cases
where a per-distinct shortcut could go wrong (a value repeated on many rows, values equal
only after trimming, a bad date among repeated good ones, a cross-form check on repeated
subjects) still report every record, as a per-record check did."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdiscforge.errors import InputErrors, collecting
from cdiscforge.raw import check_relations, read_form
from cdiscforge.spec import load_study

HEADER = "STUDY,SITENUMBER,SUBJECT,FOLDER,VISDAT"


@pytest.fixture(scope="module")
def study(seed_spec: Path):
    return load_study(seed_spec)


def _write(folder: Path, name: str, lines: list[str]) -> Path:
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _errors(err: pytest.ExceptionInfo[InputErrors]) -> list[tuple[int | None, str | None, str]]:
    return [(e.row, e.column, e.value) for e in err.value.errors]


def test_values_equal_after_trimming_are_one_key(tmp_path: Path, study) -> None:
    # " SCREEN" and "SCREEN  " are the same visit once trimmed: a repeated key, and the
    # frame holds the trimmed text (an all-blank cell is missing).
    lines = [
        HEADER,
        "NCT03691909,101,101-001, SCREEN,27-SEP-2018",
        "NCT03691909,101,101-001,LIPO,20-OCT-2018",
        "NCT03691909,101,101-001,SCREEN  ,27-SEP-2018",
        "NCT03691909,101,101-002,   ,28-SEP-2018",
    ]
    with pytest.raises(InputErrors) as err, collecting():
        read_form(study.forms["visits"], _write(tmp_path, "visits.csv", lines))
    assert _errors(err) == [
        (3, "SUBJECT+FOLDER", "101-001/SCREEN"),
        (4, "FOLDER", None),
    ]
    assert "same as row 1" in str(err.value) and "required value is missing" in str(err.value)


def test_every_record_of_a_repeated_bad_value_is_reported(tmp_path: Path, study) -> None:
    good = "NCT03691909,101,101-00{},{},27-SEP-2018"
    lines = [HEADER]
    for i in range(1, 7):  # six records, three distinct dates, two of them bad
        date = ("31-FEB-2019", "27-SEP-2018", "01-JAN-2099")[i % 3]
        lines.append(good.format(i, "SCREEN").replace("27-SEP-2018", date))
    formats = study.date_formats("visits")
    with pytest.raises(InputErrors) as err, collecting():
        read_form(
            study.forms["visits"], _write(tmp_path, "visits.csv", lines), date_formats=formats
        )
    got = _errors(err)
    assert got == [
        (2, "VISDAT", "01-JAN-2099"),
        (3, "VISDAT", "31-FEB-2019"),
        (5, "VISDAT", "01-JAN-2099"),
        (6, "VISDAT", "31-FEB-2019"),
    ]
    text = str(err.value)
    assert "impossible calendar date" in text and "after the plausible 2021-12-31" in text


def test_cross_form_check_on_repeated_subjects_names_each_record(tmp_path: Path, study) -> None:
    enrol_header = "STUDY,SITENUMBER,SUBJECT,SCRNDAT,ICDAT,ENROLLED,IEFAILID,SFREAS"
    _write(
        tmp_path,
        "enrolment.csv",
        [
            enrol_header,
            "NCT03691909,101,101-001,28-SEP-2018,25-SEP-2018,Y,,",
            "NCT03691909,101,101-002,08-OCT-2018,UN-OCT-2018,Y,,",
        ],
    )
    _write(
        tmp_path,
        "visits.csv",
        [
            HEADER,
            "NCT03691909,101,101-001,SCREEN,20-SEP-2018",  # before 101-001's consent
            "NCT03691909,101,101-002,SCREEN,20-SEP-2018",  # 101-002 consented in October
            "NCT03691909,101,101-001,LIPO,20-SEP-2018",
            "NCT03691909,101,101-002,LIPO,UN-OCT-2018",  # partial: not certainly before
            "NCT03691909,101,101-003,LIPO,01-JAN-2018",  # no consent record: not compared
        ],
    )
    formats = {n: study.date_formats(n) for n in ("enrolment", "visits")}
    with pytest.raises(InputErrors) as err, collecting():
        forms = {n: read_form(study.forms[n], tmp_path, date_formats=formats[n]) for n in formats}
        check_relations(forms)
    assert _errors(err) == [
        (1, "VISDAT", "20-SEP-2018"),
        (2, "VISDAT", "20-SEP-2018"),
        (3, "VISDAT", "20-SEP-2018"),
    ]
    text = str(err.value)
    assert "VISDAT is before enrolment.ICDAT of the same subject (25-SEP-2018)" in text
    assert "(UN-OCT-2018)" in text


def test_clean_column_is_kept_as_read(tmp_path: Path, study) -> None:
    lines = [HEADER, "NCT03691909,101,101-001,SCREEN,27-SEP-2018"]
    form = read_form(study.forms["visits"], _write(tmp_path, "visits.csv", lines))
    codes, values = form.distinct["FOLDER"]
    assert codes.tolist() == [0] and values.tolist() == ["SCREEN"]
    assert str(form.frame["FOLDER"].dtype) == "str"

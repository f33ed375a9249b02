"""Strict about what it accepts: hostile raw exports through the real CLI.

Each test copies the default simulated export (one `cdiscforge simulate --out` run per
module), plants faults with pandas, runs `cdiscforge build --raw <copy> --out <tmp>` and
checks that every fault is reported in the one run, located (file, row, column, value), with
exit 2, no traceback and nothing published; or, for data that can be legitimately odd, that
the build succeeds and its log names the records.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

CLI = [sys.executable, "-m", "cdiscforge.cli"]
ERROR_LINE = re.compile(
    r"^(?:error: |  )input error in (?P<file>\S+), row (?P<row>\d+)(?:, column (?P<column>[^,]+))?"
    r"(?:, value (?P<value>.*?))?: (?P<problem>.*)$"
)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def sim_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "raw"
    result = _run("simulate", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


Planter = Callable[[pd.DataFrame], pd.DataFrame | None]


def _plant(sim_raw: Path, tmp_path: Path, faults: dict[str, Planter]) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(sim_raw, raw)
    for form, fault in faults.items():
        path = raw / f"{form}.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        changed = fault(frame)
        (frame if changed is None else changed).to_csv(path, index=False)
    return raw


def _rejected(raw: Path, tmp_path: Path) -> list[dict[str, str]]:
    """Build, expect exit 2 with located errors and nothing published; the error lines."""
    out = tmp_path / "out"
    result = _run("build", "--raw", raw, "--out", out)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists(), "a rejected input must publish nothing"
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    errors = [m.groupdict() for line in lines[start:] if (m := ERROR_LINE.match(line))]
    assert errors, result.stderr
    for err in errors:
        assert err["file"].startswith(str(raw)), err
    return errors


def _set(column: str, row: int, value: str) -> Planter:
    def fault(frame: pd.DataFrame) -> None:
        frame.loc[row - 1, column] = value

    return fault


def _both(*faults: Planter) -> Planter:
    def fault(frame: pd.DataFrame) -> pd.DataFrame | None:
        for f in faults:
            changed = f(frame)
            frame = frame if changed is None else changed
        return frame

    return fault


def _find(errors: list[dict[str, str]], file: str, row: int, column: str) -> dict[str, str]:
    hits = [
        e
        for e in errors
        if e["file"].endswith(file) and e["row"] == str(row) and e["column"] == column
    ]
    assert len(hits) == 1, (file, row, column, errors)
    return hits[0]


def test_three_errors_in_two_files_in_one_run_unit_blamed_on_unit(
    sim_raw: Path, tmp_path: Path
) -> None:
    def unknown_unit(frame: pd.DataFrame) -> None:
        frame.loc[57, "UNIT"] = "furlongs"  # row 58: a known test (WBC), a unit not in catalogue

    raw = _plant(
        sim_raw,
        tmp_path,
        {
            "demographics": _set("SEX", 3, "Unknownish"),  # found by the SEX ct rule (mapping)
            "lab": _both(_set("REFLOW", 11, "inf"), unknown_unit),  # read check; lookup rule
        },
    )
    errors = _rejected(raw, tmp_path)
    assert [(e["file"].rsplit("/", 1)[1], e["row"], e["column"]) for e in errors] == [
        ("demographics.csv", "3", "SEX"),
        ("lab.csv", "11", "REFLOW"),
        ("lab.csv", "58", "UNIT"),
    ]
    assert errors[0]["value"] == "'Unknownish'" and "codelist SEX" in errors[0]["problem"]
    assert errors[1]["value"] == "'inf'" and "not a finite number" in errors[1]["problem"]
    unit = errors[2]
    assert unit["value"] == "'furlongs'"
    assert "lab_units" in unit["problem"] and "TESTCODE 'WBC'" in unit["problem"]


def test_control_characters_are_located_errors(sim_raw: Path, tmp_path: Path) -> None:
    raw = _plant(
        sim_raw,
        tmp_path,
        {
            "enrolment": _set("SFREAS", 2, "Haemoglobin\x00 8.1 g/dL"),
            "adverse_events": _both(
                _set("AETERM", 1, "Headache\x07"), _set("AESEV", 4, "Mild\x1b[0m")
            ),
        },
    )
    errors = _rejected(raw, tmp_path)
    for file, row, column in (
        ("enrolment.csv", 2, "SFREAS"),
        ("adverse_events.csv", 1, "AETERM"),
        ("adverse_events.csv", 4, "AESEV"),
    ):
        assert "control character" in _find(errors, file, row, column)["problem"]


def test_non_finite_numbers_are_located_at_read(sim_raw: Path, tmp_path: Path) -> None:
    raw = _plant(
        sim_raw,
        tmp_path,
        {
            "liposuction": _both(_set("FATVOL", 1, "1e400"), _set("FATVOL", 2, "NaN")),
            "infusion": _set("EXDOSE", 3, "-inf"),
            "lab": _set("REFHIGH", 5, "nan"),
        },
    )
    errors = _rejected(raw, tmp_path)
    assert "not a finite number" in _find(errors, "liposuction.csv", 1, "FATVOL")["problem"]
    assert "not a number" in _find(errors, "liposuction.csv", 2, "FATVOL")["problem"]
    assert "not a finite number" in _find(errors, "infusion.csv", 3, "EXDOSE")["problem"]
    assert "not a number" in _find(errors, "lab.csv", 5, "REFHIGH")["problem"]
    assert len(errors) == 4, errors


def test_empty_required_form_is_an_error(sim_raw: Path, tmp_path: Path) -> None:
    raw = _plant(sim_raw, tmp_path, {"disposition": lambda frame: frame.iloc[0:0]})
    errors = _rejected(raw, tmp_path)
    err = _find(errors, "disposition.csv", 0, None)  # type: ignore[arg-type]
    assert "0 data row(s)" in err["problem"] and "min_rows" in err["problem"]


def test_duplicated_form_keys_are_errors_every_duplicate_located(
    sim_raw: Path, tmp_path: Path
) -> None:
    def repeat_first(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([frame, frame.iloc[[0]]], ignore_index=True)

    def second_infusion(frame: pd.DataFrame) -> pd.DataFrame:
        extra = frame.iloc[[1]].copy()  # another folder, a later date: would move RFENDTC
        extra["FOLDER"] = "WEEK4"
        extra["EXSTDAT"] = extra["EXENDAT"] = "01-JUL-2019"
        return pd.concat([frame, extra], ignore_index=True)

    raw = _plant(sim_raw, tmp_path, {"disposition": repeat_first, "infusion": second_infusion})
    n_ds = len(pd.read_csv(sim_raw / "disposition.csv"))
    n_ex = len(pd.read_csv(sim_raw / "infusion.csv"))
    errors = _rejected(raw, tmp_path)
    ds = _find(errors, "disposition.csv", n_ds + 1, "SUBJECT")
    assert "duplicate record key SUBJECT" in ds["problem"] and "same as row 1" in ds["problem"]
    ex = _find(errors, "infusion.csv", n_ex + 1, "SUBJECT")
    assert "same as row 2" in ex["problem"]
    assert len(errors) == 2, errors


def test_impossible_data_out_of_range_and_out_of_order(sim_raw: Path, tmp_path: Path) -> None:
    enrol = pd.read_csv(sim_raw / "enrolment.csv", dtype=str)
    visits = pd.read_csv(sim_raw / "visits.csv", dtype=str)
    ae = pd.read_csv(sim_raw / "adverse_events.csv", dtype=str)
    complete = ae.index[ae["AESTDAT"].str.match(r"^\d\d-") & ae["AEENDAT"].notna()][0]
    v_row = int(visits.index[visits["SUBJECT"] == enrol["SUBJECT"].iloc[0]][0]) + 1
    ra = pd.read_csv(sim_raw / "ra_history.csv", dtype=str)
    ra_row = int(ra.index[ra["SUBJECT"] == enrol["SUBJECT"].iloc[0]][0]) + 1
    raw = _plant(
        sim_raw,
        tmp_path,
        {
            "liposuction": _set("FATVOL", 2, "-5"),  # below min 0
            # born after consent (a negative AGE), and born in 1900: out of the plausible window
            "demographics": _both(
                _set("BRTHDAT", 1, "01-JAN-2019"), _set("BRTHDAT", 2, "01-JAN-1900")
            ),
            "ra_history": _set("RADIAGDAT", ra_row, "01-DEC-2019"),  # diagnosed after consent
            "visits": _both(
                _set("VISDAT", v_row, "01-JAN-2018"),  # before the subject's consent
                _set("VISDAT", v_row + 1, "03-MAR-2099"),
            ),
            "adverse_events": _set("AEENDAT", int(complete) + 1, "01-JAN-2018"),
        },
    )
    errors = _rejected(raw, tmp_path)
    assert (
        "below the declared minimum 0" in _find(errors, "liposuction.csv", 2, "FATVOL")["problem"]
    )
    born = _find(errors, "demographics.csv", 1, "BRTHDAT")
    assert "after the plausible 2001-12-31" in born["problem"]
    diag = _find(errors, "ra_history.csv", ra_row, "RADIAGDAT")
    assert "after enrolment.ICDAT" in diag["problem"] and enrol["ICDAT"].iloc[0] in diag["problem"]
    assert (
        "before the plausible 1918-01-01"
        in _find(errors, "demographics.csv", 2, "BRTHDAT")["problem"]
    )
    early = _find(errors, "visits.csv", v_row, "VISDAT")
    assert "before enrolment.ICDAT" in early["problem"]
    assert (
        "after the plausible 2021-12-31"
        in _find(errors, "visits.csv", v_row + 1, "VISDAT")["problem"]
    )
    ae_err = _find(errors, "adverse_events.csv", int(complete) + 1, "AEENDAT")
    assert (
        "before AESTDAT" in ae_err["problem"] and ae["AESTDAT"].iloc[complete] in ae_err["problem"]
    )


def test_errors_are_capped_per_file_with_a_count(sim_raw: Path, tmp_path: Path) -> None:
    def bad_dates(frame: pd.DataFrame) -> None:
        frame.loc[:59, "ASMDAT"] = "31-FEB-2019"

    raw = _plant(sim_raw, tmp_path, {"joints": bad_dates})
    out = tmp_path / "out"
    result = _run("build", "--raw", raw, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    listed = [line for line in result.stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(listed) == 50
    assert [int(ERROR_LINE.match(line)["row"]) for line in listed] == list(range(1, 51))
    assert "impossible calendar date" in listed[0]
    assert re.search(r"and about 10 more input errors in \S+joints\.csv", result.stderr)


def test_unknown_extra_file_and_line_breaks_are_logged_and_build_succeeds(
    sim_raw: Path, tmp_path: Path
) -> None:
    raw = _plant(sim_raw, tmp_path, {"enrolment": _set("SFREAS", 2, "Haemoglobin\r\n8.1 g/dL")})
    (raw / "concomitant_meds.csv").write_text("SUBJECT,CMTRT\n101-001,Aspirin\n")
    out = tmp_path / "out"
    result = _run("build", "--raw", raw, "--out", out)
    assert result.returncode == 0, result.stderr
    log = (out / "build.log").read_text()
    assert "not declared in the raw-form contract" in log and "concomitant_meds.csv" in log
    assert "line break or tab inside a value replaced by one space" in log
    assert "enrolment.csv row 2" in log


def test_unreadable_forms_are_reported_with_every_other_forms_errors(
    sim_raw: Path, tmp_path: Path
) -> None:
    raw = _plant(
        sim_raw,
        tmp_path,
        {
            "visits": lambda frame: frame.drop(columns=["VISDAT"]),  # header change
            "enrolment": _set("SFREAS", 2, "Haemoglobin\x00 8.1 g/dL"),
        },
    )
    (raw / "disposition.csv").unlink()
    out = tmp_path / "out"
    result = _run("build", "--raw", raw, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr and not out.exists()
    text = result.stderr
    assert "3 input errors in 3 file(s)" in text
    assert "raw export for form 'disposition' not found" in text
    assert re.search(r"visits\.csv, row 0: column\(s\) \['VISDAT'\] declared", text)
    assert re.search(r"enrolment\.csv, row 2, column SFREAS, value .*control character", text)
    assert "sdtm DM" not in text  # reported after the raw check, before any mapping

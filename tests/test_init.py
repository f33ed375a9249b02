"""`cdiscforge init --raw DIR --out SPECDIR` drafts raw_forms.yaml from the raw CSV files'
headers and values (types and date/time formats guessed), never overwriting a file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdiscforge.spec import load_study


def _init(raw: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", "init", "--raw", str(raw), "--out", str(out)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "vitals.csv").write_text(
        "SUBJNO,SITE,VISDAT,VISTIM,TEMP,HEIGHT_IN,COMMENT,EMPTY\n"
        "001,101,03/14/2019,08:30,98.6,70,ok,\n"
        "002,101,12/01/2019,13:05,100.4,65,,\n",
        encoding="utf-8",
    )
    (folder / "Adverse Events.csv").write_text(
        "PATID,AESTDAT,AESTTIM,LBDTC,EUDAT,BIRTH\n"
        "P-1,12-MAR-2019,1:05 PM,2019-03-12T08:30,25/12/2019,2019-03\n"
        "P-2,UN-MAR-2019,11:45 AM,2019-03-13T09:00,01/02/2020,1985\n",
        encoding="utf-8",
    )
    (folder / "notes.txt").write_text("not a form\n", encoding="utf-8")
    return folder


def test_init_drafts_a_contract_the_loader_accepts(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "spec"
    result = _init(raw, out)
    assert result.returncode == 0, result.stderr
    forms = yaml.safe_load((out / "raw_forms.yaml").read_text(encoding="utf-8"))["forms"]
    assert sorted(forms) == ["adverse_events", "vitals"]
    assert forms["adverse_events"]["file"] == "Adverse Events.csv"
    vs = forms["vitals"]["columns"]
    assert list(vs) == ["SUBJNO", "SITE", "VISDAT", "VISTIM", "TEMP", "HEIGHT_IN", "COMMENT",
                        "EMPTY"]  # fmt: skip
    assert vs["SUBJNO"] == {"type": "str"}  # leading zeros: an identifier, not a number
    assert vs["SITE"] == {"type": "int"}
    assert vs["VISDAT"] == {"type": "date", "format": "MM/DD/YYYY"}
    assert vs["VISTIM"] == {"type": "time", "format": "HH:MI"}
    assert vs["TEMP"] == {"type": "float"}
    assert vs["EMPTY"] == {"type": "str"}
    ae = forms["adverse_events"]["columns"]
    assert ae["AESTDAT"] == {"type": "date", "format": "DD-MON-YYYY"}  # UN day included
    assert ae["AESTTIM"] == {"type": "time", "format": "HH:MI AM"}
    assert ae["LBDTC"] == {"type": "datetime", "format": "iso8601"}
    assert ae["EUDAT"] == {"type": "date", "format": "DD/MM/YYYY"}  # 25/12: day first
    assert ae["BIRTH"] == {"type": "date", "format": "iso8601"}  # partial ISO dates
    text = (out / "raw_forms.yaml").read_text(encoding="utf-8")
    assert "P-1" not in text and "98.6" not in text  # no data values copied into a spec
    # The draft is a contract the real loader reads.
    (out / "study.yaml").write_text(
        "study: {studyid: X1, name: X, description: X, protocol: X1}\n", encoding="utf-8"
    )
    study = load_study(out)
    assert study.forms["vitals"].columns["VISDAT"].format == "MM/DD/YYYY"


def test_ambiguous_day_month_order_is_flagged(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dm.csv").write_text("SUBJECT,DMDAT\nA1,03/04/2019\nA2,05/06/2019\n", encoding="utf-8")
    result = _init(raw, tmp_path / "spec")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "spec" / "raw_forms.yaml").read_text(encoding="utf-8")
    assert 'DMDAT: {type: date, format: "MM/DD/YYYY"}  # day and month both <= 12' in text


def test_init_never_overwrites_raw_forms_yaml(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "spec"
    out.mkdir()
    mine = out / "raw_forms.yaml"
    mine.write_text("# my own contract\n", encoding="utf-8")
    result = _init(raw, out)
    assert result.returncode == 2
    assert "refusing to overwrite" in result.stderr and "Traceback" not in result.stderr
    assert mine.read_text(encoding="utf-8") == "# my own contract\n"
    assert sorted(p.name for p in out.iterdir()) == ["raw_forms.yaml"]


def test_init_without_csv_files_or_folder_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _init(empty, tmp_path / "spec")
    assert result.returncode == 2 and "no .csv files" in result.stderr
    assert not (tmp_path / "spec").exists()
    missing = _init(tmp_path / "nope", tmp_path / "spec")
    assert missing.returncode == 2 and "not found" in missing.stderr

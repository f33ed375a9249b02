"""Broken specs give errors naming the file, the key path and what is wrong."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cdiscforge import sdtm  # noqa: F401  (registers the SDTM rules the specs name)
from cdiscforge.errors import SpecError
from cdiscforge.spec import load_study


@pytest.fixture
def spec_copy(tmp_path: Path, seed_spec: Path) -> Path:
    dest = tmp_path / "study"
    shutil.copytree(seed_spec, dest)
    return dest


def _edit_dm(folder: Path, change: Callable[[dict], None]) -> Path:
    path = folder / "sdtm" / "dm.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _var(data: dict, name: str) -> dict:
    return next(v for v in data["variables"] if v["name"] == name)


def test_bundled_study_loads(seed_spec: Path) -> None:
    study = load_study(seed_spec)
    assert "DM" in study.datasets and study.studyid == "NCT03691909"


@pytest.mark.parametrize(
    ("change", "key_path", "problem"),
    [
        (lambda d: _var(d, "SEX").update(bogus=1), "(SEX).bogus", "unknown key"),
        (lambda d: _var(d, "SEX").pop("codelist"), "(SEX).codelist", "missing required field"),
        (lambda d: _var(d, "SEX").update(rule="guess"), "(SEX).rule", "unknown rule 'guess'"),
        (lambda d: _var(d, "SEX").update({"from": "GENDER"}), "(SEX)", "raw column 'GENDER'"),
        (lambda d: _var(d, "SEX").update(length="long"), "(SEX).length", "integer"),
        (lambda d: _var(d, "SEX").update(type="Text"), "(SEX).type", "Char"),
        (lambda d: d.update(records=[{"source": "nope"}]), "records[0].source", "unknown raw form"),
        (lambda d: d.update(keys=["STUDYID", "NOPE"]), "keys", "NOPE"),
        (lambda d: d["variables"].append({"name": "XXNEW", "rule": "constant"}), "XXNEW", "label"),
    ],
)
def test_broken_dm_spec_is_located(spec_copy: Path, change, key_path: str, problem: str) -> None:
    path = _edit_dm(spec_copy, change)
    with pytest.raises(SpecError) as err:
        load_study(spec_copy)
    message = str(err.value)
    assert str(path) in message
    assert key_path in err.value.key_path
    assert problem in message


def test_yaml_syntax_error_names_line(spec_copy: Path) -> None:
    path = spec_copy / "sdtm" / "dm.yaml"
    path.write_text(path.read_text() + "\n  - {name: BAD, rule: [unclosed\n")
    with pytest.raises(SpecError, match=r"line \d+, column \d+"):
        load_study(spec_copy)


def test_unknown_study_key(spec_copy: Path) -> None:
    path = spec_copy / "study.yaml"
    data = yaml.safe_load(path.read_text())
    data["study"]["phase"] = "I/II"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_study(spec_copy)
    assert err.value.key_path == "study.phase" and "unknown key" in str(err.value)


def test_missing_study_field(spec_copy: Path) -> None:
    path = spec_copy / "study.yaml"
    data = yaml.safe_load(path.read_text())
    del data["study"]["studyid"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"study\.studyid: missing required field"):
        load_study(spec_copy)

"""The simulator reads its study's shape from the specs: byte identity and located spec errors.

The checksums in tests/fixtures/simulate/sha256.txt were measured from the simulator before it
read its forms from simulation.yaml; moving the study's shape out of Python must not move a
single byte of the bundled study's exports.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cdiscforge.errors import SpecError, SpecErrors
from cdiscforge.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "specs" / "nct03691909"
CHECKSUMS = Path(__file__).resolve().parent / "fixtures" / "simulate" / "sha256.txt"


def _expected(mode: str) -> dict[str, str]:
    rows = [
        line.split()
        for line in CHECKSUMS.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    return {name: digest for m, digest, name in rows if m == mode}


@pytest.mark.parametrize(("mode", "mess"), [("mess", True), ("clean", False)])
def test_bundled_study_exports_are_byte_identical(tmp_path: Path, mode: str, mess: bool) -> None:
    result = simulate(STUDY, tmp_path, mess=mess)
    got = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in result.files.values()
    }
    assert got == _expected(mode)


def _copy(tmp_path: Path) -> Path:
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    return study


def _edit_sim(study: Path, old: str, new: str) -> None:
    path = study / "simulation.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_unknown_form_kind_is_a_located_spec_error(tmp_path: Path) -> None:
    study = _copy(tmp_path)
    _edit_sim(study, "    kind: item_counts\n", "    kind: item_matrix\n")
    with pytest.raises(SpecError) as err:
        simulate(study, tmp_path / "out")
    assert err.value.file.endswith("simulation.yaml")
    assert err.value.key_path == "forms.joints.kind"
    assert "item_matrix" in str(err.value) and "item_counts" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unknown_column_is_a_located_spec_error(tmp_path: Path) -> None:
    study = _copy(tmp_path)
    _edit_sim(study, "      JOINT: item\n", "      JOINTX: item\n")
    with pytest.raises(SpecError) as err:
        simulate(study, tmp_path / "out")
    assert err.value.key_path == "forms.joints.columns.JOINTX"
    assert "raw_forms.yaml" in str(err.value)


def test_every_bad_column_is_reported_in_one_run(tmp_path: Path) -> None:
    """A column naming a value its kind does not make, an unknown edc_text key and an unknown
    raw column, in two forms: all three located in one error."""
    study = _copy(tmp_path)
    _edit_sim(study, "VISDAT: date}", "VISDAT: dates}")
    _edit_sim(study, '      AESER: {text: "no"}\n', "      AESER: {text: nope}\n")
    _edit_sim(study, "      AEOUT: outcome\n", "      AEOUTX: outcome\n")
    with pytest.raises(SpecErrors) as err:
        simulate(study, tmp_path / "out")
    keys = [e.key_path for e in err.value.errors]
    assert keys == [
        "forms.visits.columns.VISDAT",
        "forms.adverse_events.columns.AESER.text",
        "forms.adverse_events.columns.AEOUTX",
    ]


def test_declared_form_must_be_a_raw_form(tmp_path: Path) -> None:
    study = _copy(tmp_path)
    _edit_sim(study, "\n  disposition:\n", "\n  dispositions:\n")
    with pytest.raises(SpecError) as err:
        simulate(study, tmp_path / "out")
    assert err.value.key_path == "forms.dispositions"


def test_unknown_form_kind_through_the_cli_exits_2(tmp_path: Path) -> None:
    study = _copy(tmp_path)
    _edit_sim(study, "    kind: events\n", "    kind: happenings\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cdiscforge.cli",
            "simulate",
            "--spec",
            str(study),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "forms.adverse_events.kind" in run.stderr and "happenings" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_form_left_out_is_not_generated_and_others_keep_their_bytes(tmp_path: Path) -> None:
    """The set of forms is the spec's: dropping disposition from simulation.yaml writes no
    disposition.csv and leaves every other export byte-identical (streams are per form)."""
    study = _copy(tmp_path)
    path = study / "simulation.yaml"
    sim = yaml.safe_load(path.read_text(encoding="utf-8"))
    del sim["forms"]["disposition"]
    path.write_text(yaml.safe_dump(sim, sort_keys=False), encoding="utf-8")
    result = simulate(study, tmp_path / "out")
    assert "disposition" not in result.files
    assert not (tmp_path / "out" / "disposition.csv").exists()
    expected = _expected("mess")
    for path in result.files.values():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected[path.name], path.name


def test_a_new_form_is_declared_in_specs_alone(tmp_path: Path) -> None:
    """A second study's shapes without Python: a per-subject form with drawn columns and a
    per-visit form, declared in raw_forms.yaml and simulation.yaml only."""
    study = _copy(tmp_path)
    raw = study / "raw_forms.yaml"
    raw_doc = yaml.safe_load(raw.read_text(encoding="utf-8"))
    subject_cols = {c: {"type": "str", "required": True} for c in ("STUDY", "SUBJECT")}
    raw_doc["forms"]["smoking"] = {
        "file": "smoking.csv",
        "key": ["SUBJECT"],
        "columns": {
            **subject_cols,
            "SMOKER": {"type": "str"},
            "SUDAT": {"type": "date"},
            "PACKYRS": {"type": "float"},
            "SEQ": {"type": "str"},
        },
    }
    raw_doc["forms"]["vital_visits"] = {
        "file": "vital_visits.csv",
        "key": ["SUBJECT", "VISIT"],
        "columns": {**subject_cols, "VISIT": {"type": "str"}, "VSDAT": {"type": "date"}},
    }
    raw.write_text(yaml.safe_dump(raw_doc, sort_keys=False), encoding="utf-8")
    path = study / "simulation.yaml"
    sim = yaml.safe_load(path.read_text(encoding="utf-8"))
    sim["streams"]["lifestyle"] = 6
    sim["forms"]["smoking"] = {
        "kind": "per_subject",
        "subjects": "screened",
        "stream": ["lifestyle"],
        "columns": {
            "STUDY": "study",
            "SUBJECT": "subject",
            "SMOKER": {"share": 0.25, "then": {"value": "Current"}, "else": {"text": "no"}},
            "SUDAT": {"years_before": "consent_date", "quantiles": [[0, 1], [1, 20]]},
            "PACKYRS": {"normal": {"mean": 10, "sd": 3, "min": 0}, "decimals": 1},
            "SEQ": {"sequence": True, "prefix": "S", "width": 3},
        },
    }
    sim["forms"]["vital_visits"] = {
        "kind": "visit_dates",
        "columns": {"STUDY": "study", "SUBJECT": "subject", "VISIT": "folder", "VSDAT": "date"},
    }
    path.write_text(yaml.safe_dump(sim, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    result = simulate(study, out)
    smoking = pd.read_csv(out / "smoking.csv", dtype=str, keep_default_na=False)
    enrol = pd.read_csv(out / "enrolment.csv", dtype=str, keep_default_na=False)
    assert smoking["SUBJECT"].tolist() == enrol["SUBJECT"].tolist()  # screened subjects
    assert set(smoking["SMOKER"]) <= {"Current", "N"} and (smoking["SMOKER"] == "Current").any()
    assert smoking["SEQ"].tolist() == [f"S{i:03d}" for i in range(1, len(smoking) + 1)]
    assert smoking["PACKYRS"].str.fullmatch(r"\d+\.\d").all()
    assert (smoking["STUDY"] == enrol["STUDY"]).all()
    visits = pd.read_csv(out / "visits.csv", dtype=str, keep_default_na=False)
    vital = pd.read_csv(out / "vital_visits.csv", dtype=str, keep_default_na=False)
    assert vital["VISIT"].tolist() == visits["FOLDER"].tolist()
    assert vital["VSDAT"].tolist() == visits["VISDAT"].tolist()
    # the bundled forms are untouched by the new ones (their own streams)
    expected = _expected("mess")
    for form in ("joints", "lab", "adverse_events", "demographics"):
        digest = hashlib.sha256(result.files[form].read_bytes()).hexdigest()
        assert digest == expected[f"{form}.csv"], form

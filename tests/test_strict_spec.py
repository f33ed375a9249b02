"""Strict about what a spec may say (issue 10): hostile YAML, XPT-invalid names and labels,
a broken lab catalogue, every spec error of a folder in one run, and coded raw answers.

Each class is planted in a copy of the bundled spec (or raw export) in tmp_path and checked
twice where it matters: the loader's own error (fast, precise) and the real CLI (exit 2, a
located message, no traceback, nothing published).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cdiscforge.errors import SpecError, SpecErrors
from cdiscforge.spec import load_study, load_yaml
from cdiscforge.yamlsafe import MAX_DEPTH

CLI = [sys.executable, "-m", "cdiscforge.cli"]


def _build(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "build", *map(str, args)], capture_output=True, text=True,
                          timeout=900)  # fmt: skip


@pytest.fixture
def spec(tmp_path: Path, seed_spec: Path) -> Path:
    dest = tmp_path / "spec"
    shutil.copytree(seed_spec, dest)
    return dest


def _assert_refused(result: subprocess.CompletedProcess[str], out: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert not out.exists() or not list(out.rglob("*.xpt"))


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _var(data: dict, name: str) -> dict:
    return next(v for v in data["variables"] if v["name"] == name)


# --- hostile YAML --------------------------------------------------------------------------


def test_spec_not_utf8_names_file_line_and_byte(spec: Path, tmp_path: Path) -> None:
    dm = spec / "sdtm" / "dm.yaml"
    text = dm.read_bytes()
    lines = text.split(b"\n")
    lines[2] = lines[2] + b"  # caf\xe9"  # a Latin-1 save of the file
    dm.write_bytes(b"\n".join(lines))
    with pytest.raises(SpecError) as err:
        load_yaml(dm)
    assert err.value.key_path.startswith("line 3, byte ")
    assert "not UTF-8" in err.value.problem
    out = tmp_path / "out"
    _assert_refused(_build("--spec", spec, "--out", out), out, "dm.yaml", "line 3", "UTF-8")


@pytest.mark.parametrize(
    "text",
    [
        "x: " + "[" * 5000 + "]" * 5000 + "\n",  # flow nesting
        "".join(" " * i + "k:\n" for i in range(3000)) + " " * 3000 + "v\n",  # block nesting
    ],
    ids=["flow", "block"],
)
def test_yaml_nested_thousands_deep_is_a_located_spec_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:  # not RecursionError
        load_yaml(path)
    assert f"nested more than {MAX_DEPTH} levels" in err.value.problem
    assert f"line {1 if text.startswith('x') else MAX_DEPTH + 1}," in err.value.key_path


def _alias_bomb() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())  # 9**9 = 387 million strings once expanded
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as err:
            load_yaml(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "alias bomb" in err.value.problem and "line 7" in err.value.key_path
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_alias_bomb_in_a_dataset_spec_through_the_cli(spec: Path, tmp_path: Path) -> None:
    ae = spec / "sdtm" / "ae.yaml"
    ae.write_text(ae.read_text() + "\n" + _alias_bomb().replace("a:", "bomb_a:", 1))
    out = tmp_path / "out"
    _assert_refused(_build("--spec", spec, "--out", out), out, "ae.yaml", "alias bomb")


def test_aliases_and_merge_keys_within_bounds_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\nlist: &l [1, 2]\nagain: *l\n")
    assert load_yaml(path) == {
        "base": {"x": 1, "y": 2},
        "use": {"x": 1, "y": 3},
        "list": [1, 2],
        "again": [1, 2],
    }


def test_duplicated_yaml_key_names_both_lines(spec: Path, tmp_path: Path) -> None:
    study = spec / "study.yaml"
    lines = study.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("  studyid:"))
    lines.insert(at + 1, "  studyid: SITE-101")  # would silently replace the study id
    study.write_text("\n".join(lines))
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert err.value.key_path.startswith("study.studyid")
    assert f"first at line {at + 1}, again at line {at + 2}" in err.value.problem
    out = tmp_path / "out"
    _assert_refused(
        _build("--spec", spec, "--out", out), out, "study.yaml", "duplicate key 'studyid'"
    )


def test_duplicated_raw_column_key_in_the_contract(spec: Path) -> None:
    forms = spec / "raw_forms.yaml"
    lines = forms.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("SITENUMBER:"))
    lines.insert(at + 1, lines[at])
    forms.write_text("\n".join(lines))
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert err.value.key_path.startswith("forms.enrolment.columns.SITENUMBER")
    assert f"again at line {at + 2}" in err.value.problem


# --- XPT names and labels at load ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key_path", "problem"),
    [
        (lambda d: d.update(label="Demographics " + "x" * 30), "label", "XPT v5 allows 40"),
        (lambda d: d.update(label="Démographie"), "label", "ASCII"),
        (lambda d: d.update(dataset="DM_1"), "dataset", "dataset name is"),
        (lambda d: d.update(dataset="DEMOGRAPH"), "dataset", "dataset name is"),
        (
            lambda d: d["variables"].append(
                {"name": "RACEOTHER", "label": "Race other", "type": "Char", "rule": "constant"}
            ),
            "(RACEOTHER).name",
            "variable name is",
        ),
        (
            lambda d: d["variables"].append(
                {"name": "9RACE", "label": "Race", "type": "Char", "rule": "constant"}
            ),
            "(9RACE).name",
            "variable name is",
        ),
        (
            lambda d: _var(d, "SEX").update(
                label="Sex of the participant as reported at screening"
            ),
            "(SEX).label",
            "XPT v5 allows 40",
        ),
        (lambda d: _var(d, "SEX").update(label="Sexe (déclaré)"), "(SEX).label", "ASCII"),
        (lambda d: _var(d, "SEX").update(length=201), "(SEX).length", "200"),
        (lambda d: d["supp"][0].update(qnam="RACEOTHER"), "supp[0].qnam", "QNAM is"),
        (lambda d: d["supp"][0].update(qlabel="x" * 41), "supp[0].qlabel", "XPT v5 allows 40"),
    ],
)
def test_xpt_invalid_names_and_labels_fail_when_the_spec_loads(
    spec: Path, change, key_path: str, problem: str
) -> None:
    dm = spec / "sdtm" / "dm.yaml"
    _edit(dm, change)
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert not isinstance(err.value, SpecErrors), str(err.value)
    assert str(dm) in str(err.value)
    assert key_path in err.value.key_path
    assert problem in err.value.problem


def test_long_label_through_the_cli_before_any_build(spec: Path, tmp_path: Path) -> None:
    _edit(spec / "sdtm" / "ae.yaml", lambda d: d.update(label="Adverse Events " + "x" * 40))
    out = tmp_path / "out"
    result = _build("--spec", spec, "--out", out)
    _assert_refused(result, out, "ae.yaml: label", "XPT v5 allows 40")
    assert "simulate" not in result.stderr  # refused at load, before the simulator ran


# --- every spec error of a folder in one run -----------------------------------------------


def test_all_spec_errors_of_a_folder_in_one_run(spec: Path, tmp_path: Path) -> None:
    dm, ae = spec / "sdtm" / "dm.yaml", spec / "sdtm" / "ae.yaml"
    _edit(dm, lambda d: _var(d, "SEX").update(bogus=1))
    _edit(dm, lambda d: _var(d, "RACE").update(rule="guess"))
    _edit(ae, lambda d: d.update(label="y" * 41))
    _edit(ae, lambda d: _var(d, "AESEV").update({"from": "NOPE1"}))
    _edit(ae, lambda d: _var(d, "AESER").update({"from": "NOPE2"}))
    labs = spec / "lab_tests.yaml"
    hgb = "to_standard: 10.0, std_decimals: 0, labs"
    labs.write_text(labs.read_text().replace(hgb, hgb.replace("to_standard", "to_standrd"), 1))
    with pytest.raises(SpecErrors) as err:
        load_study(spec)
    found = {(Path(e.file).name, e.key_path.split(".")[-1]) for e in err.value.errors}
    assert ("dm.yaml", "bogus") in found
    assert ("dm.yaml", "rule") in found
    assert ("ae.yaml", "label") in found
    assert ("lab_tests.yaml", "to_standrd") in found
    message = str(err.value)
    assert "unknown raw column 'NOPE1'" in message and "unknown raw column 'NOPE2'" in message
    assert message.startswith(f"{len(err.value.errors)} spec errors:\n")
    assert all(f"  {e}" in message.split("\n") for e in err.value.errors)
    out = tmp_path / "out"
    result = _build("--spec", spec, "--out", out)
    _assert_refused(result, out, "dm.yaml", "ae.yaml", "lab_tests.yaml", "bogus", "guess")


def test_a_single_spec_error_keeps_its_one_line_message(spec: Path) -> None:
    _edit(spec / "sdtm" / "dm.yaml", lambda d: _var(d, "SEX").update(bogus=1))
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert type(err.value) is SpecError
    assert str(err.value).startswith("spec error in ") and "\n" not in str(err.value)


def test_combined_errors_are_capped_with_a_count() -> None:
    errors = [SpecError(f"f{i}.yaml", "k", "bad") for i in range(130)]
    combined = SpecErrors(errors)
    lines = str(combined).split("\n")
    assert lines[0] == "130 spec errors:" and lines[-1] == "  ... and 30 more spec errors"
    assert len(lines) == 102 and len(combined.errors) == 130


# --- the lab catalogue ---------------------------------------------------------------------

HGB = (
    'standard_unit: "g/L", units: [{unit: "g/dL", to_standard: 10.0, std_decimals: 0, '
    "labs: [CLAB01]}]"
)


@pytest.mark.parametrize(
    ("replacement", "key_path", "problem"),
    [
        (HGB.replace("to_standard", "to_standrd"), "units[0].to_standrd", "unknown key"),
        (HGB.replace("to_standard", "to_standrd"), "units[0].to_standard", "required"),
        (HGB.replace('unit: "g/dL"', 'unit: ""'), "units[0].unit", "required"),
        (HGB.replace('unit: "g/dL", ', ""), "units[0].unit", "required"),
        (HGB.replace("to_standard: 10.0", "to_standard: 0"), "units[0].to_standard", "> 0"),
        (HGB.replace("to_standard: 10.0", "to_standard: ten"), "units[0].to_standard", "> 0"),
        (HGB.replace('"g/L"', '"grams/L"'), "standard_unit", "codelist UNIT"),
        (HGB.replace('"g/L"', '""'), "standard_unit", "required"),
        (HGB.replace("std_decimals: 0", "std_decimals: 0.5"), "std_decimals", "whole number"),
        (
            HGB.replace("labs: [CLAB01]}]", 'labs: [CLAB01]}, {unit: "G/DL", to_standard: 10}]'),
            "units[1]",
            "repeats",
        ),
    ],
)
def test_broken_lab_catalogue_is_a_spec_error_at_load(
    spec: Path, replacement: str, key_path: str, problem: str
) -> None:
    labs = spec / "lab_tests.yaml"
    text = labs.read_text()
    assert HGB in text
    labs.write_text(text.replace(HGB, replacement, 1))  # HGB; ALB reads the same
    with pytest.raises(SpecError) as err:
        load_study(spec)
    errors = err.value.errors if isinstance(err.value, SpecErrors) else [err.value]
    hits = [e for e in errors if key_path in e.key_path and problem in e.problem]
    assert hits, str(err.value)
    assert hits[0].file == str(labs) and hits[0].key_path.startswith("tests[2].")


def test_misspelt_conversion_through_the_cli_publishes_nothing(spec: Path, tmp_path: Path) -> None:
    labs = spec / "lab_tests.yaml"
    labs.write_text(labs.read_text().replace(HGB, HGB.replace("to_standard", "to_standrd"), 1))
    out = tmp_path / "out"
    _assert_refused(
        _build("--spec", spec, "--out", out), out, "lab_tests.yaml", "tests[2].units[0].to_standrd"
    )


def test_numeric_lab_result_without_a_unit_is_an_input_error_on_the_unit_column(
    tmp_path: Path, default_raw: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(default_raw, raw)
    lab = pd.read_csv(raw / "lab.csv", dtype=str, keep_default_na=False)
    row = int(lab.index[(lab["TESTCODE"] == "HGB") & (lab["RESULT"] != "")][3])
    lab.loc[row, "UNIT"] = ""  # HGB 14.3 with no unit: never published as 14.3 g/L
    lab.to_csv(raw / "lab.csv", index=False)
    out = tmp_path / "out"
    _assert_refused(
        _build("--raw", raw, "--out", out),
        out,
        "lab.csv",
        f"row {row + 1}",
        "column UNIT",
        "no conversion factor",
    )


# --- coded raw answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "column"),
    [
        ("adverse_events.csv", "AEONGO"),  # read by a condition `eq: Y`: ZZZ was "not ongoing"
        ("adverse_events.csv", "AESER"),
        ("enrolment.csv", "ENROLLED"),  # a block filter `eq: N`: ZZZ was "enrolled"
        ("joints.csv", "RESULT"),  # ZZZ was a silent null
    ],
)
def test_unknown_code_in_a_coded_raw_column_is_located(
    tmp_path: Path, default_raw: Path, file: str, column: str
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(default_raw, raw)
    frame = pd.read_csv(raw / file, dtype=str, keep_default_na=False)
    frame.loc[1, column] = "ZZZ"
    frame.to_csv(raw / file, index=False)
    out = tmp_path / "out"
    _assert_refused(
        _build("--raw", raw, "--out", out), out, file, "row 2", f"column {column}", "'ZZZ'"
    )


def test_contract_values_must_be_a_list_of_codes(spec: Path) -> None:
    forms = spec / "raw_forms.yaml"
    before = 'ENROLLED: {type: str, values: ["Y", "N"],'
    text = forms.read_text()
    assert before in text
    forms.write_text(text.replace(before, "ENROLLED: {type: str, values: Y,"))
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert err.value.key_path == "forms.enrolment.columns.ENROLLED.values"

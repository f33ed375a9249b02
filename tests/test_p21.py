"""The Pinnacle 21 specification workbook: import (fixtures made from the bundled YAML, the
known pain points of other readers, planted errors), export by every build, the round trip,
and a build that names a workbook (precedence, each difference logged once)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pyreadstat
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from cdiscforge.build import run_build
from cdiscforge.cli import main
from cdiscforge.errors import InputError, InputErrors
from cdiscforge.p21 import compare, compare_study, from_dataset, from_spec, read_p21_spec
from cdiscforge.spec import load_study

FIXTURES = Path(__file__).parent / "fixtures" / "p21"


def _import(workbook: Path, study: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["spec", "import-p21", str(workbook), "--study", str(study)])
    return result.exit_code, result.output


# ---------------------------------------------------------------------------- import


def test_clean_fixture_metadata_equals_the_yaml_it_was_made_from(seed_spec: Path) -> None:
    code, out = _import(FIXTURES / "nct03691909_subset.xlsx", seed_spec)
    assert code == 0, out
    assert "3 datasets, 74 variables, 2 value-level rows" in out
    assert "metadata equal to the YAML" in out and "difference:" not in out
    # Field by field and strictly (a blank cell must be blank in the YAML too).
    spec, study = read_p21_spec(FIXTURES / "nct03691909_subset.xlsx"), load_study(seed_spec)
    for name in ("DM", "AE", "DS"):
        assert compare(spec.datasets[name], from_spec(study.datasets[name], study),
                       strict=True) == []  # fmt: skip
    age = next(v for v in spec.datasets["DM"].variables if v.name == "AGE")
    assert (age.type, age.origin) == ("Num", "Derived") and age.method
    assert spec.datasets["AE"].keys and spec.dictionaries["MEDDRA"].version == "23.0"
    aedecod = next(v for v in spec.datasets["AE"].variables if v.name == "AEDECOD")
    assert aedecod.dictionary == "MEDDRA" and aedecod.codelist is None


def test_a_changed_label_is_one_difference(seed_spec: Path, tmp_path: Path) -> None:
    wb = load_workbook(FIXTURES / "nct03691909_subset.xlsx")
    ws = wb["Variables"]
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[header.index("Variable")].value == "AGE":
            row[header.index("Label")].value = "Age at Consent"
            row[header.index("Length")].value = 8
    wb.save(tmp_path / "changed.xlsx")
    code, out = _import(tmp_path / "changed.xlsx", seed_spec)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("difference:")]
    assert lines == ["difference: DM.AGE label: workbook 'Age at Consent', YAML 'Age'"], out


def test_codelist_ids_of_the_workbook_resolve_to_ct_names(tmp_path: Path) -> None:
    """P21 workbooks often key codelists as CL.SEX or by NCI code: the NCI code decides."""
    wb = load_workbook(FIXTURES / "nct03691909_subset.xlsx")
    for sheet, column in (("Codelists", "ID"), ("Variables", "Codelist")):
        ws = wb[sheet]
        col = [c.value for c in ws[1]].index(column)
        for row in ws.iter_rows(min_row=2):
            if row[col].value == "SEX":
                row[col].value = "CL.SEX"
    wb.save(tmp_path / "cl.xlsx")
    spec = read_p21_spec(tmp_path / "cl.xlsx")
    sex = next(v for v in spec.datasets["DM"].variables if v.name == "SEX")
    assert sex.codelist == "SEX" and "CL.SEX" in spec.codelists


def test_study_level_differences_are_reported(seed_spec: Path, tmp_path: Path) -> None:
    wb = load_workbook(FIXTURES / "nct03691909_subset.xlsx")
    ws = wb["Dictionaries"]
    col = [c.value for c in ws[1]].index("Version")
    ws.cell(row=2, column=col + 1).value = "26.1"
    wb.save(tmp_path / "dict.xlsx")
    found = compare_study(read_p21_spec(tmp_path / "dict.xlsx"), load_study(seed_spec))
    assert [str(d) for d in found] == ["Dictionaries.MEDDRA version: workbook '26.1', YAML '23.0'"]


def test_pain_points_are_read(seed_spec: Path) -> None:
    spec = read_p21_spec(FIXTURES / "pain_points.xlsx")
    notes = "\n".join(spec.notes)
    # metacore #77: a README (and a Change Log) sheet is ignored with a note, not mistaken
    # for a spec sheet, even with a header row that looks like one.
    assert "[README]: not a P21 specification sheet, ignored" in notes
    assert "[Change Log]: not a P21 specification sheet, ignored" in notes
    assert "QC Status" in notes and "Programmer" in notes  # extra columns: noted, ignored
    # Older column names and the Define 2.0 origin CRF.
    sex = next(v for v in spec.datasets["DM"].variables if v.name == "SEX")
    assert sex.codelist == "SEX" and sex.origin == "Collected" and sex.crf_pages == ("3", "4")
    assert spec.datasets["DM"].label == "Demographics"
    # metacore #49: a composite where-clause keeps both conditions (AND), IN with its values.
    ds = spec.datasets["DS"]
    composite = next(r for r in ds.value_level if r.variable == "DSTERM")
    conds = [(c.variable, c.comparator, c.values) for c in composite.where.conditions]
    assert conds == [
        ("DSCAT", "EQ", ("DISPOSITION EVENT",)),
        ("DSDECOD", "IN", ("SCREEN FAILURE", "WITHDRAWAL OF CONSENT")),
    ]
    # metacore #152: value-level codelists reach the variable's value-level metadata.
    dsdecod = next(v for v in ds.variables if v.name == "DSDECOD")
    assert {(vl.by, vl.value, vl.codelist) for vl in dsdecod.value_level} == {
        ("DSCAT", "PROTOCOL MILESTONE", "PROTMLST"),
        ("DSCAT", "DISPOSITION EVENT", "NCOMPLT"),
    }
    # The one thing the YAML cannot state is reported, not dropped.
    found = compare_study(spec, load_study(seed_spec))
    assert [(d.dataset, d.variable, d.field) for d in found] == [
        ("DM", "SEX", "crf_pages"),
        ("DS", "DSTERM", "value_level (composite)"),
    ]


def test_every_planted_error_is_located_in_one_run(seed_spec: Path) -> None:
    planted = json.loads((FIXTURES / "planted_errors.json").read_text())
    with pytest.raises(InputErrors) as caught:
        read_p21_spec(FIXTURES / "planted_errors.xlsx")
    errors = caught.value.errors
    got = {(e.file.split("[")[-1].rstrip("]"), e.row, e.column.split(" (")[0]) for e in errors}
    want = {(p["sheet"], p["row"], p["column"]) for p in planted}
    assert got == want  # every planted error, and nothing else (no cascade)
    assert all(e.problem and e.column.endswith(")") for e in errors)  # message + column letter
    code, out = _import(FIXTURES / "planted_errors.xlsx", seed_spec)
    assert code == 2
    assert f"{len(planted)} input errors" in out and "Traceback" not in out
    assert "[Variables], row 16, column Length (F), value 'eight'" in out


def test_not_a_workbook_and_missing_sheets_are_located(tmp_path: Path) -> None:
    bogus = tmp_path / "spec.xlsx"
    bogus.write_text("Dataset,Variable\n")
    with pytest.raises(InputError, match=r"not an \.xlsx workbook"):
        read_p21_spec(bogus)
    wb = load_workbook(FIXTURES / "nct03691909_subset.xlsx")
    del wb["Variables"]
    wb.save(tmp_path / "novars.xlsx")
    with pytest.raises(InputError, match="no Variables sheet"):
        read_p21_spec(tmp_path / "novars.xlsx")


# ---------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("p21build") / "out"
    result = run_build(Path(__file__).parents[1] / "specs" / "nct03691909", out)
    return out, result.datasets


def test_build_writes_spec_xlsx_per_stage_listed_in_the_manifest(built: tuple[Path, dict]) -> None:
    out, _ = built
    manifest = json.loads((out / "cdiscforge-manifest.json").read_text())
    for stage in ("sdtm", "adam"):
        path = out / stage / "spec.xlsx"
        assert f"{stage}/spec.xlsx" in manifest["files"]
        wb = load_workbook(path, read_only=True)
        assert wb.sheetnames[:3] == ["Study", "Datasets", "Variables"]
        with zipfile.ZipFile(path) as z:  # no wall clock in the bytes
            assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            assert b"1980-01-01T00:00:00Z" in z.read("docProps/core.xml")


def test_round_trip_gives_back_the_dataset_model(built: tuple[Path, dict]) -> None:
    out, datasets = built
    compared = 0
    for stage in ("sdtm", "adam"):
        spec = read_p21_spec(out / stage / "spec.xlsx")
        names = {n for n, d in datasets.items() if (n.startswith("AD")) == (stage == "adam")}
        assert set(spec.datasets) == names
        for name in names:
            assert compare(spec.datasets[name], from_dataset(datasets[name]), strict=True) == []
            compared += len(datasets[name].variables)
    assert compared > 300
    sdtm = read_p21_spec(out / "sdtm" / "spec.xlsx")
    dsdecod = next(v for v in sdtm.datasets["DS"].variables if v.name == "DSDECOD")
    assert len(dsdecod.value_level) == 2  # value-level metadata survives the trip
    assert any(v.method for v in sdtm.datasets["DM"].variables)


# ---------------------------------------------------------------------------- build with one


def _study_with_workbook(seed_spec: Path, tmp_path: Path, precedence: str) -> Path:
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    wb = load_workbook(FIXTURES / "nct03691909_subset.xlsx")
    ws = wb["Variables"]
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[header.index("Variable")].value == "AETERM":
            row[header.index("Label")].value = "Reported AE Term"
        if row[header.index("Variable")].value == "AESEV":
            row[header.index("Length")].value = 20
    wb.save(spec / "p21.xlsx")
    with (spec / "study.yaml").open("a") as fh:
        fh.write(f"\np21_spec: p21.xlsx\np21_precedence: {precedence}\n")
    return spec


@pytest.mark.parametrize("precedence", ["workbook", "yaml"])
def test_build_settles_workbook_and_yaml_by_precedence(
    seed_spec: Path, tmp_path: Path, precedence: str
) -> None:
    spec = _study_with_workbook(seed_spec, tmp_path, precedence)
    out = tmp_path / "out"
    run_build(spec, out)
    log = (out / "build.log").read_text()
    lines = [line for line in log.splitlines() if "AE.AETERM label" in line]
    assert len(lines) == 1, lines  # reported once
    _, meta = pyreadstat.read_xport(str(out / "sdtm" / "ae.xpt"), metadataonly=True)
    label = meta.column_names_to_labels["AETERM"]
    assert label == (
        "Reported AE Term" if precedence == "workbook" else "Reported Term for the Adverse Event"
    )
    width = meta.variable_storage_width["AESEV"]
    assert width == (20 if precedence == "workbook" else 8)  # fitted to MILD/MODERATE/SEVERE
    if precedence == "workbook":
        assert "fixed by the workbook: AE.AESEV=20" in log

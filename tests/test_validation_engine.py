"""The validation engines, the GX export, the report files and `cdiscforge validate` inputs.

The native engine must give exactly the findings Great Expectations gives on the same
generated suites (rule, dataset, variables, count, message and every example record), on the
default study and on one planted fault per expectation type the suites generate.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from cdiscforge.errors import CdiscforgeError, XptError
from cdiscforge.model import Dataset, Variable
from cdiscforge.validation import ValidationOptions, validate_datasets, write_report
from cdiscforge.validation.api import define_standards, read_input, select_standards
from cdiscforge.validation.native import SUPPORTED, evaluate
from cdiscforge.validation.report import XLSX_SHEETS
from cdiscforge.validation.suites import Expectation, batch_frame, build_suite
from cdiscforge.xpt import write_xpt

CLI = [sys.executable, "-m", "cdiscforge.cli"]


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, default_raw: Path) -> Path:
    """The default study built once through the CLI (its output root)."""
    cwd = tmp_path_factory.mktemp("engine-build")
    result = _run("build", "--raw", default_raw, "--out", cwd / "out", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "out"


@pytest.fixture(scope="module")
def default_datasets(built: Path) -> list[Dataset]:
    return read_input(built).datasets


def _findings(result) -> list[dict]:
    return [f.to_dict() for f in result.findings]


def _checks(result) -> list[dict]:
    return [{k: v for k, v in c.to_dict().items() if k != "engine"} for c in result.checked]


def _both(datasets: list[Dataset], options: ValidationOptions | None = None):
    native = validate_datasets(datasets, checks=options, engine="native")
    gx = validate_datasets(copy.deepcopy(datasets), checks=options, engine="gx")
    return native, gx


def test_engines_agree_on_the_default_study(default_datasets: list[Dataset]) -> None:
    native, gx = _both(default_datasets)
    assert native.run["engine"] == "native" and gx.run["engine"] == "great_expectations"
    assert _findings(native) == _findings(gx)
    assert _checks(native) == _checks(gx)
    assert len(native.checked) > 300
    assert {c.engine for c in native.checked} == {"native", "rule"}
    assert {c.engine for c in gx.checked} == {"great_expectations", "rule"}


def _by(datasets: list[Dataset]) -> dict[str, Dataset]:
    return {d.name: d for d in datasets}


def _first_subject_rows(frame: pd.DataFrame) -> list[int]:
    first = frame["USUBJID"].iloc[0]
    return list(frame.index[frame["USUBJID"] == first])


def _plant_all(datasets: list[Dataset]) -> tuple[list[Dataset], dict[tuple, int]]:
    """One fault per expectation type, in different datasets so they do not mask each other.

    Returns the faulty datasets and, per (rule, dataset, variables), the records expected.
    """
    out = _by(copy.deepcopy(datasets))
    expected: dict[tuple, int] = {}
    # expect_table_columns_to_match_set: a Req variable dropped
    ae = out["AE"]
    out["AE"] = Dataset(
        ae.name,
        ae.label,
        ae.frame.drop(columns=["AETERM"]),
        [v for v in ae.variables if v.name != "AETERM"],
        standard=ae.standard,
    )
    expected[("CF-DS-0001", "AE", ("AETERM",))] = 1
    # expect_column_values_to_not_be_null: a Req value blanked
    out["MH"].frame.loc[1, "MHTERM"] = None
    expected[("CF-DS-0002", "MH", ("MHTERM",))] = 1
    # expect_column_values_to_be_in_set: an unknown code
    out["DM"].frame.loc[1, "SEX"] = "X"
    expected[("CF-DS-0004", "DM", ("SEX",))] = 1
    # expect_column_values_to_match_regex: an impossible month
    out["EX"].frame.loc[0, "EXSTDTC"] = "2019-13-20"
    expected[("CF-DS-0006", "EX", ("EXSTDTC",))] = 1
    # expect_column_value_lengths_to_be_between (only with check_lengths): 250 characters
    out["MH"].frame.loc[2, "MHTERM"] = "X" * 250
    expected[("CF-DS-0009", "MH", ("MHTERM",))] = 1
    # expect_column_values_to_be_between: a declared range broken
    out["DM"].variable("AGE").value_range = (18.0, 100.0)
    out["DM"].frame.loc[0, "AGE"] = 7.0
    expected[("CF-DS-0010", "DM", ("AGE",))] = 1
    # expect_compound_columns_to_be_unique: a duplicated --SEQ within a subject
    rows = _first_subject_rows(out["DS"].frame)
    out["DS"].frame.loc[rows[1], "DSSEQ"] = out["DS"].frame.loc[rows[0], "DSSEQ"]
    expected[("CF-DS-0008", "DS", ("USUBJID", "DSSEQ"))] = 2
    # expect_column_values_to_be_unique: a one-variable key duplicated
    out["TA"].keys = ["TAETORD"]
    out["TA"].frame.loc[1, "TAETORD"] = out["TA"].frame.loc[0, "TAETORD"]
    expected[("CF-DS-0007", "TA", ("TAETORD",))] = 2
    # expect_column_pair_values_to_be_equal: --STRESN off its --STRESC
    out["LB"].frame.loc[0, "LBSTRESN"] = out["LB"].frame.loc[0, "LBSTRESN"] + 1
    expected[("CF-DS-0011", "LB", ("LBSTRESN", "LBSTRESC"))] = 1
    # expect_column_values_to_be_in_set on DOMAIN
    out["SV"].frame.loc[0, "DOMAIN"] = "XX"
    expected[("CF-DS-0012", "SV", ("DOMAIN",))] = 1
    return list(out.values()), expected


def test_engines_agree_on_one_planted_fault_per_expectation_type(
    default_datasets: list[Dataset],
) -> None:
    faulty, expected = _plant_all(default_datasets)
    options = ValidationOptions(check_lengths=True)
    native, gx = _both(faulty, options)
    assert _findings(native) == _findings(gx)
    assert _checks(native) == _checks(gx)
    found = {(f.rule_id, f.dataset, f.variables): f for f in native.findings}
    for key, count in expected.items():
        assert key in found, key
        assert found[key].count == count, (key, found[key].count)
        assert found[key].examples or key[0] == "CF-DS-0001", key  # presence: no records
    # Every expectation type the suites generate failed at least once above.
    plans = [build_suite(d, options) for d in faulty]
    kinds = {(p.dataset, e.rule_id, e.variables): e.type for p in plans for e in p.expectations}
    failed = {kinds[(c.dataset, c.rule_id, c.variables)] for c in native.checked
              if c.status == "fail" and (c.dataset, c.rule_id, c.variables) in kinds}  # fmt: skip
    generated = set(kinds.values())
    assert generated == failed, generated - failed
    assert generated <= SUPPORTED


def test_all_affected_records_are_listed_not_five(default_datasets: list[Dataset]) -> None:
    datasets = _by(copy.deepcopy(default_datasets))
    lb = datasets["LB"]
    lb.frame.loc[:59, "LBSTRESN"] = lb.frame.loc[:59, "LBSTRESN"] + 1
    result = validate_datasets(list(datasets.values()))
    (finding,) = result.by_rule("CF-DS-0011")
    assert finding.count == 60 and len(finding.examples) == 60
    assert {"USUBJID", "LBSEQ", "LBSTRESN", "LBSTRESC"} <= set(finding.examples[0])


def test_unknown_expectation_type_is_never_a_pass() -> None:
    exp = Expectation("expect_column_values_to_be_odd", {"column": "X"}, {"rule_id": "R"})
    out = evaluate(pd.DataFrame({"X": [1]}), exp, [], 5)
    assert not out.success and "does not evaluate" in (out.error or "")


# --- lengths: the writer guarantees them, so the suites no longer check them -----------------


def _text_dataset(value: str, length: int | None = None) -> Dataset:
    frame = pd.DataFrame({"AETERM": [value]}, dtype="string[pyarrow]")
    return Dataset("AE", "Adverse Events", frame, [Variable("AETERM", "Term", "Char", length)])


def test_xpt_writer_refuses_an_over_long_value(tmp_path: Path) -> None:
    created = datetime(2024, 1, 1)
    with pytest.raises(XptError, match="longer than 200 bytes"):
        write_xpt(_text_dataset("X" * 201), tmp_path / "ae.xpt", created=created)
    with pytest.raises(XptError, match="longer than the fixed length 5"):
        write_xpt(_text_dataset("X" * 6, length=5), tmp_path / "ae.xpt", created=created)
    assert not (tmp_path / "ae.xpt").exists()
    write_xpt(_text_dataset("X" * 200), tmp_path / "ae.xpt", created=created)


def test_length_expectations_only_where_nothing_bounds_lengths() -> None:
    ds = _text_dataset("X" * 250)
    plain = build_suite(ds)
    assert not [e for e in plain.expectations if e.rule_id == "CF-DS-0009"]
    (na,) = [c for c in plain.not_applicable if c.rule_id == "CF-DS-0009"]
    assert "XPT writer refuses" in na.reason
    checked = build_suite(ds, ValidationOptions(check_lengths=True))
    kinds = [e.type for e in checked.expectations if e.rule_id == "CF-DS-0009"]
    assert kinds == ["expect_column_value_lengths_to_be_between"]


# --- the GX export ---------------------------------------------------------------------------


def _gx_validate(suite_doc: dict, frame: pd.DataFrame) -> list:
    from cdiscforge.validation.gx_runner import _context, _gx

    gx = _gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = gx.ExpectationSuite(**suite_doc)
        context = _context()
        batch = (
            context.data_sources.add_pandas("team")
            .add_dataframe_asset("dm")
            .add_batch_definition_whole_dataframe("dm")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        return batch.validate(suite).results


def test_build_exports_gx_suites_that_great_expectations_runs(built: Path) -> None:
    exported = sorted(p.name for p in (built / "validation" / "gx").glob("*.json"))
    assert "dm.json" in exported and "lb.json" in exported and "adsl.json" in exported
    doc = json.loads((built / "validation" / "gx" / "dm.json").read_text(encoding="utf-8"))
    assert doc["name"] == "DM" and doc["meta"]["cdiscforge"]["blank_text_is_missing"]
    types = {e["type"] for e in doc["expectations"]}
    assert "expect_column_values_to_be_in_set" in types
    assert "expect_column_value_lengths_to_be_between" not in types
    (dm,) = [d for d in read_input(built / "sdtm").datasets if d.name == "DM"]
    frame = batch_frame(dm)
    results = _gx_validate(doc, frame)
    assert len(results) == len(doc["expectations"]) and all(r.success for r in results)
    frame.loc[0, "SEX"] = "X"
    failed = [r for r in _gx_validate(doc, frame) if not r.success]
    assert [r.expectation_config.meta["rule_id"] for r in failed] == ["CF-DS-0004"]
    # LB's STRESN/STRESC comparison needs derived columns: said so, not silently dropped.
    lb = json.loads((built / "validation" / "gx" / "lb.json").read_text(encoding="utf-8"))
    assert any("LBSTRESN" in why for why in lb["meta"]["cdiscforge"]["not_exported"])
    columns = {e["kwargs"].get("column", "") for e in lb["expectations"]}
    assert not any(c.startswith("__CF_") for c in columns)


# --- report files ----------------------------------------------------------------------------


def test_excel_report_has_the_four_sheets_and_is_reproducible(
    default_datasets: list[Dataset], tmp_path: Path
) -> None:
    faulty, _ = _plant_all(default_datasets)
    result = validate_datasets(faulty)
    write_report(result, tmp_path / "a", generated="2024-01-01T00:00:00")
    write_report(result, tmp_path / "b", generated="2024-01-01T00:00:00")
    a, b = tmp_path / "a" / "report.xlsx", tmp_path / "b" / "report.xlsx"
    assert a.read_bytes() == b.read_bytes()
    wb = load_workbook(a, read_only=True)
    assert (
        tuple(wb.sheetnames)
        == XLSX_SHEETS
        == (
            "Dataset Summary",
            "Issue Summary",
            "Details",
            "Rules",
        )
    )
    issues = list(wb["Issue Summary"].iter_rows(values_only=True))
    assert issues[0][:6] == ("Dataset", "Rule", "Mirrors", "Severity", "Variables", "Found")
    assert len(issues) == len(result.findings) + 1
    sex = [r for r in issues if r[1] == "CF-DS-0004" and r[0] == "DM"]
    assert sex and sex[0][5] == 1 and sex[0][3] == "error"
    details = list(wb["Details"].iter_rows(values_only=True))
    seq = [r for r in details if r[1] == "CF-DS-0008" and r[0] == "DS"]
    assert len(seq) == 2 and all("USUBJID=" in r[5] for r in seq)
    summary = {r[0]: r for r in wb["Dataset Summary"].iter_rows(values_only=True)}
    assert summary["DM"][1] == len(_by(faulty)["DM"]) and summary["DM"][2] >= 1
    rules = [r[0] for r in wb["Rules"].iter_rows(values_only=True)][1:]
    assert "CF-DS-0004" in rules


def test_report_header_names_the_run_and_labels_the_reproducible_stamp(
    default_datasets: list[Dataset], tmp_path: Path
) -> None:
    result = validate_datasets(default_datasets)
    html, js = write_report(result, tmp_path, generated="2024-01-01T00:00:00")
    text = html.read_text(encoding="utf-8")
    assert "Data creation timestamp (reproducible)" in text and "Generated" not in text
    assert "Run date" not in text  # a build report carries no wall-clock time
    for part in ("SDTMIG 3.4", "ADaMIG 1.3", "CDISC/NCI 2025-03-28", "native", "Rules run"):
        assert part in text, part
    payload = json.loads(js.read_text(encoding="utf-8"))
    assert payload["run"]["engine"] == "native" and payload["run"]["rules_run"]
    html2, _ = write_report(result, tmp_path / "r", run_date="2026-12-01T10:00:00+00:00")
    assert "Run date" in html2.read_text(encoding="utf-8")


def test_html_pages_long_record_lists(default_datasets: list[Dataset], tmp_path: Path) -> None:
    datasets = _by(copy.deepcopy(default_datasets))
    lb = datasets["LB"]
    lb.frame["LBSTRESN"] = lb.frame["LBSTRESN"] + 1
    bad = int(lb.frame["LBSTRESN"].notna().sum())
    result = validate_datasets(list(datasets.values()))
    html, _ = write_report(result, tmp_path)
    text = html.read_text(encoding="utf-8")
    pages = -(-min(bad, 1000) // 100)
    assert bad > 100 and f'data-pages="{pages}"' in text
    assert text.count('<tbody data-page="') >= pages
    assert '<details class="checks">' in text  # checks collapsed by dataset


# --- standards and CT selection --------------------------------------------------------------


def test_standards_default_from_define_xml(built: Path) -> None:
    assert define_standards(built / "sdtm" / "define.xml") == {
        "SDTMIG": "3.4",
        "CT": "2025-03-28",
    }
    options, notes = select_standards(None, None, [built / "sdtm" / "define.xml"])
    assert options.ig == "3.4" and options.ct_version == "2025-03-28"
    assert any("declares SDTMIG 3.4" in n for n in notes)
    with pytest.raises(CdiscforgeError, match=r"SDTMIG 3\.2 metadata is not bundled"):
        select_standards("3.2", None)
    with pytest.raises(CdiscforgeError, match="not bundled"):
        select_standards(None, "2019-12-20")


def test_define_declaring_an_unbundled_ig_is_noted(tmp_path: Path) -> None:
    define = tmp_path / "define.xml"
    define.write_text(
        '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" '
        'xmlns:def="http://www.cdisc.org/ns/def/v2.0"><Study><MetaDataVersion OID="M" '
        'def:StandardName="SDTM-IG" def:StandardVersion="3.2"/></Study></ODM>',
        encoding="utf-8",
    )
    options, notes = select_standards(None, None, [define])
    assert options.ig == "3.4"
    assert "SDTMIG 3.2 is not bundled: validated against SDTMIG 3.4" in notes


# --- `cdiscforge validate` -------------------------------------------------------------------


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_validate_a_build_root(built: Path, tmp_path: Path) -> None:
    before = _listing(built)
    result = _run("validate", built, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    n_xpt = len(list((built / "sdtm").glob("*.xpt")) + list((built / "adam").glob("*.xpt")))
    assert n_xpt > 20
    assert f"validated {n_xpt} datasets (build; SDTMIG 3.4, ADaMIG 1.3" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("rule "))
    assert header.split() == ["rule", "severity", "dataset", "variable", "count", "message"]
    assert "CF-DS-0005  warning" in result.stdout
    report = tmp_path / "validation-report" / built.name
    for name in ("report.html", "report.xlsx", "results.json", "gx/dm.json", "gx/adsl.json"):
        assert (report / name).is_file(), name
    payload = json.loads((report / "results.json").read_text(encoding="utf-8"))
    assert payload["run"]["input"]["format"] == "build" and payload["run"]["run_date"]
    assert _listing(built) == before  # nothing written into the data


def test_validate_a_dataset_json_folder(built: Path, tmp_path: Path) -> None:
    folder = built / "datasetjson" / "sdtm"
    result = _run("validate", folder, "--report", tmp_path / "rep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    n_json = len(list(folder.glob("*.json")))
    assert n_json == len(list((built / "sdtm").glob("*.xpt"))) > 15
    assert f"validated {n_json} datasets (dataset-json; SDTMIG 3.4;" in result.stdout
    payload = json.loads((tmp_path / "rep" / "results.json").read_text(encoding="utf-8"))
    assert payload["run"]["input"]["format"] == "dataset-json"
    lengths = [c for c in payload["checked"] if c["rule_id"] == "CF-DS-0009"]
    assert lengths and all(c["status"] == "pass" for c in lengths)  # checked, not assumed
    # The same data as XPT gives the same findings (Dataset-JSON is read faithfully).
    _run("validate", built / "sdtm", "--report", tmp_path / "x", cwd=tmp_path)
    xpt_findings = json.loads((tmp_path / "x" / "results.json").read_text())["findings"]
    assert payload["findings"] == xpt_findings


def test_validate_engine_gx_and_bad_choices(built: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    for name in ("dm.xpt", "ae.xpt", "ts.xpt"):
        shutil.copy(built / "sdtm" / name, small / name)
    native = _run("validate", small, "--report", tmp_path / "n", cwd=tmp_path)
    gx = _run("validate", small, "--engine", "gx", "--report", tmp_path / "g", cwd=tmp_path)
    assert native.returncode == gx.returncode == 0, gx.stderr
    assert "engine great_expectations" in gx.stdout
    n = json.loads((tmp_path / "n" / "results.json").read_text())
    g = json.loads((tmp_path / "g" / "results.json").read_text())
    assert n["findings"] == g["findings"]
    bad = _run("validate", small, "--ig", "3.2", cwd=tmp_path)
    assert bad.returncode == 2 and "SDTMIG 3.2 metadata is not bundled" in bad.stderr
    assert "Traceback" not in bad.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _run("validate", empty, cwd=tmp_path)
    assert nothing.returncode == 2 and "nothing to validate" in nothing.stderr


# --- the fast XPT reader validate uses --------------------------------------------------------


def test_fast_xpt_reader_reads_what_pyreadstat_reads(built: Path) -> None:
    from cdiscforge.xpt import read_xpt, read_xpt_fast

    files = sorted((built / "sdtm").glob("*.xpt")) + sorted((built / "adam").glob("*.xpt"))
    assert len(files) == len(list(built.rglob("*.xpt"))) > 20
    for path in files:
        slow, fast = read_xpt(path), read_xpt_fast(path)
        pd.testing.assert_frame_equal(slow.frame, fast.frame)
        assert (slow.name, slow.label) == (fast.name, fast.label)
        assert [vars(v) for v in slow.variables] == [vars(v) for v in fast.variables]


def test_fast_xpt_reader_on_special_missing_and_windows_1252(tmp_path: Path) -> None:
    from cdiscforge.xpt import ieee_to_ibm, read_xpt, read_xpt_fast

    frame = pd.DataFrame(
        {"TSVAL": ["CAFEZZ", "  lead", None], "TSSEQ": [1.5, 12345.25, -3.0]}
    ).astype({"TSVAL": "string[pyarrow]"})
    ds = Dataset(
        "TS", "Trial Summary", frame, [Variable("TSVAL", "Value"), Variable("TSSEQ", "Seq", "Num")]
    )
    path = write_xpt(ds, tmp_path / "ts.xpt", created=datetime(2024, 1, 1))
    data = bytearray(path.read_bytes())
    at = data.index(b"CAFEZZ")
    data[at + 3] = 0xC9  # 'É' in Windows-1252, not UTF-8
    number = int(ieee_to_ibm(pd.Series([-3.0]).to_numpy())[0]).to_bytes(8, "big")
    at = data.index(number)
    data[at : at + 8] = b"A" + bytes(7)  # SAS special missing .A
    path.write_bytes(bytes(data))
    slow, fast = read_xpt(path), read_xpt_fast(path)
    pd.testing.assert_frame_equal(slow.frame, fast.frame)
    assert fast.frame["TSVAL"].tolist()[:2] == ["CAFÉZZ", "  lead"]
    assert fast.frame["TSSEQ"].isna().tolist() == [False, False, True]
    assert fast.frame["TSSEQ"].tolist()[:2] == [1.5, 12345.25]


# --- large files are read with categorical text columns ---------------------------------------


def _plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    from cdiscforge.validation.operations import plain

    return pd.DataFrame({c: plain(frame[c]) for c in frame.columns}, index=frame.index)


def test_fast_xpt_reader_categoricals_hold_the_same_values(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file read as a large one would be (categoricals where few values are distinct)
    holds what pyreadstat reads; a column of mostly distinct values stays str."""
    import cdiscforge.xpt as xpt

    monkeypatch.setattr(xpt, "CATEGORICAL_MIN_ROWS", 0)
    categorical = 0
    for path in sorted((built / "sdtm").glob("*.xpt")) + sorted((built / "adam").glob("*.xpt")):
        slow, fast = xpt.read_xpt(path), xpt.read_xpt_fast(path)
        categorical += sum(isinstance(t, pd.CategoricalDtype) for t in fast.frame.dtypes)
        pd.testing.assert_frame_equal(slow.frame, _plain_frame(fast.frame))
        assert [vars(v) for v in slow.variables] == [vars(v) for v in fast.variables]
    assert categorical > 100
    dm = xpt.read_xpt_fast(built / "sdtm" / "dm.xpt").frame
    assert isinstance(dm["STUDYID"].dtype, pd.CategoricalDtype)
    assert dm["USUBJID"].dtype == "str"  # one value per record: not worth a dictionary
    assert list(dm["STUDYID"].cat.categories) == sorted(dm["STUDYID"].cat.categories)


def test_findings_do_not_depend_on_categorical_columns(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planted faults in record, cross-dataset and subject-level rules give the same findings
    and checks whether the XPT text is read as str or as categoricals."""
    import cdiscforge.xpt as xpt

    folder = tmp_path / "sdtm"
    shutil.copytree(built / "sdtm", folder)
    created = datetime(2024, 1, 1)
    dm = xpt.read_xpt(folder / "dm.xpt")
    dm.frame = pd.concat([dm.frame, dm.frame.iloc[[0]]], ignore_index=True)  # USUBJID twice
    dm.frame.loc[1, "SEX"] = "X"
    dm.frame.loc[2, "RFSTDTC"] = "2019-13-45"
    write_xpt(dm, folder / "dm.xpt", created=created)
    ae = xpt.read_xpt(folder / "ae.xpt")
    ae.frame.loc[0, "AEENDTC"] = "1999-01-01"  # ends before it starts
    ae.frame.loc[1, "AEDECOD"] = None
    ae.frame.loc[2, "EPOCH"] = None
    write_xpt(ae, folder / "ae.xpt", created=created)
    lb = xpt.read_xpt(folder / "lb.xpt")
    lb.frame.loc[0:3, "LBORRESU"] = None
    lb.frame.loc[4, "LBDY"] = 999.0
    lb.frame.loc[5, "VISIT"] = "NOT A VISIT"
    lb.frame.loc[6, "LBSTRESC"] = "12.5"
    write_xpt(lb, folder / "lb.xpt", created=created)

    findings = _alike_as_text_or_categoricals(folder, monkeypatch)
    assert len({f["rule_id"] for f in findings}) >= 8


def _alike_as_text_or_categoricals(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Validate `folder` with its XPT text read as str, then as categoricals: the same
    findings and checks (asserted); the findings."""
    import cdiscforge.xpt as xpt
    from cdiscforge.validation.api import validate_directory

    plain = validate_directory(folder)
    monkeypatch.setattr(xpt, "CATEGORICAL_MIN_ROWS", 0)
    categorical = validate_directory(folder)
    assert _findings(plain) == _findings(categorical)
    assert _checks(plain) == _checks(categorical)
    return _findings(plain)


def test_planted_faults_in_large_findings_domains_found_alike_as_text_or_categoricals(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faults planted in MK and LB (over operations.DISTINCT_FROM records, so the
    per-distinct paths run: categorical codes, keys_in, the pair table of
    inconsistent_within, the unit and flag rules) are found, with the same findings and
    checks, whether the XPT text is read as str or as categoricals."""
    import cdiscforge.xpt as xpt
    from cdiscforge.validation import operations

    folder = tmp_path / "sdtm"
    shutil.copytree(built / "sdtm", folder)
    created = datetime(2024, 1, 1)
    mk = xpt.read_xpt(folder / "mk.xpt")
    assert len(mk.frame) > operations.DISTINCT_FROM
    f = mk.frame
    f = pd.concat([f, f.iloc[[0]]], ignore_index=True)  # a key and USUBJID + MKSEQ twice
    f.loc[1, "VISIT"] = "WEEK 99"  # a second VISIT for its VISITNUM, not in SV
    f.loc[2, "EPOCH"] = "NOEPOCH"
    f.loc[3, "MKTESTCD"] = "NOTTEST"
    f.loc[4, "VISITNUM"] = 77.0  # a visit the subject has no SV record of
    f.loc[5, "MKDY"] = 9999.0
    flagged = f.index[f["MKLOBXFL"] == "Y"][:1]
    twin = f.loc[flagged].copy()
    twin["MKSEQ"] = f["MKSEQ"].max() + 1
    twin["VISITNUM"], twin["VISIT"] = f.loc[6, "VISITNUM"], f.loc[6, "VISIT"]
    mk.frame = pd.concat([f, twin], ignore_index=True)  # a second baseline of a test
    write_xpt(mk, folder / "mk.xpt", created=created)
    lb = xpt.read_xpt(folder / "lb.xpt")
    numeric = lb.frame.index[lb.frame["LBORRES"].str.match(r"^\d+(\.\d+)?$").fillna(False)]
    lb.frame.loc[numeric[:3], "LBORRESU"] = None  # a number without its unit
    lb.frame.loc[numeric[3:5], "LBSTRESU"] = None
    write_xpt(lb, folder / "lb.xpt", created=created)

    findings = _alike_as_text_or_categoricals(folder, monkeypatch)
    found = {(f["rule_id"], f["dataset"]) for f in findings}
    for rule_id in ("CF-SD-0006", "CF-SD-0008", "CF-SD-0013", "CF-SD-0021", "CF-SD-0022"):
        assert (rule_id, "MK") in found, rule_id
    assert ("CF-SD-0017", "LB") in found and ("CF-SD-0018", "LB") in found
    by_variable = {(f["rule_id"], tuple(f["variables"])) for f in findings}
    assert ("CF-DS-0008", ("USUBJID", "MKSEQ")) in by_variable  # the record twice
    assert ("CF-DS-0005", ("MKTESTCD",)) in by_variable  # not in its (extensible) codelist

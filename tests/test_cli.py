"""The `cdiscforge` command end to end: outputs, reproducibility and exit codes (0 / 1 / 2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
import yaml
from click.testing import CliRunner

from cdiscforge.cli import main

CLI = [sys.executable, "-m", "cdiscforge.cli"]


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=900)  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cdiscforge build` with no arguments, run in an empty folder (outputs/<study> there)."""
    cwd = tmp_path_factory.mktemp("build1")
    result = _run("build", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "outputs" / "nct03691909"


def test_default_build_writes_dm_read_back_by_two_readers(built: Path, seed_spec: Path) -> None:
    path = built / "sdtm" / "dm.xpt"
    frame, meta = pyreadstat.read_xport(str(path))
    spec = yaml.safe_load((seed_spec / "sdtm" / "dm.yaml").read_text())
    # 15 enrolled and treated subjects plus the screen failures SDTMIG keeps in DM.
    assert (frame["ARMCD"] == "ADMSC").sum() == 15
    assert len(frame) == len(pd.read_csv(built / "raw" / "demographics.csv"))
    assert meta.table_name == "DM" and meta.file_label == "Demographics"
    labels = meta.column_names_to_labels
    assert labels["SEX"] == "Sex" and labels["USUBJID"] == "Unique Subject Identifier"
    for var in spec["variables"]:
        if "label" in var:
            assert labels[var["name"]] == var["label"]
    other = pd.read_sas(path, format="xport", encoding="ascii")
    assert list(other.columns) == list(frame.columns) and len(other) == len(frame)
    assert other["USUBJID"].tolist() == frame["USUBJID"].tolist()


def test_second_build_is_byte_identical(built: Path, tmp_path: Path) -> None:
    result = _run("build", "--out", tmp_path / "again")
    assert result.returncode == 0, result.stderr
    again = tmp_path / "again"
    compared = 0
    for first in sorted(built.rglob("*")):
        if first.is_file() and first.name != "timings.json":  # seconds differ by design
            second = again / first.relative_to(built)
            assert second.read_bytes() == first.read_bytes(), first.relative_to(built)
            compared += 1
    assert compared > 10


def test_build_log_and_reconciliation_balance(built: Path) -> None:
    recon = pd.read_csv(built / "reconciliation.csv")
    assert not recon.empty and recon["balanced"].all()
    assert (recon["read"] == recon["written"] + recon["rejected"]).all()
    log = (built / "build.log").read_text()
    assert "INPUTS" in log and "demographics.csv" in log and "RECONCILIATION" in log


def test_missing_raw_column_exits_2_naming_file_and_column(
    tmp_path: Path, default_raw: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(default_raw, raw)
    demo = pd.read_csv(raw / "demographics.csv", dtype=str).drop(columns=["SEX"])
    demo.to_csv(raw / "demographics.csv", index=False)
    result = _run("build", "--raw", raw, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "demographics.csv" in result.stderr and "SEX" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_code_exits_2_naming_row_and_value(tmp_path: Path, default_raw: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(default_raw, raw)
    demo = pd.read_csv(raw / "demographics.csv", dtype=str, keep_default_na=False)
    demo.loc[4, "SEX"] = "Femme"
    demo.to_csv(raw / "demographics.csv", index=False)
    result = _run("build", "--raw", raw, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "row 5" in result.stderr and "'Femme'" in result.stderr and "SEX" in result.stderr


def test_validation_error_exits_1_and_publishes_only_the_report(
    tmp_path: Path, failing_study: Callable
) -> None:
    spec, raw = failing_study(tmp_path)
    out = tmp_path / "out"
    result = _run("build", "--spec", spec, "--raw", raw, "--out", out)
    assert result.returncode == 1, result.stderr
    assert "SEX" in result.stderr
    # No previous output: the report and the log go to out/failed/, no datasets anywhere.
    assert (out / "failed" / "validation" / "report.html").is_file()
    assert (out / "failed" / "build.log").is_file()
    assert not list(out.rglob("*.xpt")) and not (out / "sdtm").exists()


def test_broken_spec_exits_2(tmp_path: Path, seed_spec: Path) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    (spec / "sdtm" / "dm.yaml").write_text("dataset: DM\nrecords: [{source: demographics}]\n")
    result = CliRunner().invoke(main, ["build", "--spec", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "dm.yaml" in result.output and "variables: missing required field" in result.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["build", "--study", "x", "--spec", str(tmp_path)]).exit_code == 2
    assert runner.invoke(main, ["build", "--study", "nope"]).exit_code == 2
    assert runner.invoke(main, ["simulate", "--subjects", "0", "--out", "x"]).exit_code == 2
    assert runner.invoke(main, ["frobnicate"]).exit_code == 2


def test_help_on_each_command() -> None:
    runner = CliRunner()
    for args in (["--help"], ["build", "--help"], ["simulate", "--help"], ["validate", "--help"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_simulate_command_writes_every_form(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--subjects", "3", "--seed", "11", "--out", str(tmp_path / "raw")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / "demographics.csv").is_file()
    assert "simulated" in result.output


def test_validate_pilot_fixture_reports_into_cwd_not_into_the_data(tmp_path: Path) -> None:
    """What the test below checks on the 26 reference datasets, on the 5 small pilot copies
    under tests/fixtures (always present): the report lands in the current folder and the
    data folder is left exactly as it was."""
    pilot = Path(__file__).resolve().parent / "fixtures" / "cdiscpilot01" / "sdtm"
    data = tmp_path / "pilot"
    shutil.copytree(pilot, data)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    cwd = tmp_path / "work"
    cwd.mkdir()
    result = _run("validate", data, cwd=cwd)
    assert result.returncode in (0, 1), result.stderr
    assert f"validated {len(before)} datasets" in result.stdout
    report = cwd / "validation-report" / "pilot"
    assert (report / "report.html").is_file() and (report / "results.json").is_file()
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_validate_pilot_reports_into_cwd_not_into_the_data(tmp_path: Path) -> None:
    pilot = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cdiscpilot01" / "sdtm"
    if not pilot.is_dir():
        pytest.skip(
            "shared/reference/cdiscpilot01 (26 pilot SDTM datasets) not beside the repository"
        )
    before = sorted(p.name for p in pilot.iterdir())
    result = _run("validate", pilot, cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "validated 26 datasets" in result.stdout
    report = tmp_path / "validation-report" / "sdtm"
    assert (report / "report.html").is_file() and (report / "results.json").is_file()
    assert sorted(p.name for p in pilot.iterdir()) == before

"""Each rule family through the real commands: `cdiscforge validate DIR` on XPT files with a
planted fault (exit 1, the finding in results.json), `validate --waivers`, and `cdiscforge
build` with faults planted into its datasets before validation (exit 1, nothing published)."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from rules_helpers import S2, drop_rows, rich_study, set_value
from test_rules_define import define_xml

import cdiscforge.build
from cdiscforge.cli import main
from cdiscforge.xpt import write_xpt

CREATED = datetime(2026, 12, 1)


def _write(study: dict, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for ds in study.values():
        ds = copy.deepcopy(ds)
        for var in ds.variables:  # SAS dates need a format saying they are days
            if pd.api.types.is_datetime64_any_dtype(ds.frame[var.name]):
                var.format = "DATE9."
        write_xpt(ds, folder / f"{ds.name.lower()}.xpt", created=CREATED)
    return folder


def _validate(folder: Path, report: Path, *extra: str):
    result = CliRunner().invoke(main, ["validate", str(folder), "--report", str(report), *extra])
    payload = json.loads((report / "results.json").read_text(encoding="utf-8"))
    return result, {(f["rule_id"], f["dataset"]): f for f in payload["findings"]}


def _chg(s):
    set_value(s, "ADLB", "CHG", 1, 99.0)


FAMILIES = {
    "1 dataset/variable: duplicated DM subject": (
        lambda s: set_value(s, "DM", "USUBJID", 2, S2),
        ("CF-SD-0014", "DM"),
    ),
    "2 record consistency: AE ends before it starts": (
        lambda s: set_value(s, "AE", "AEENDTC", 0, "2019-01-09"),
        ("CF-SD-0015", "AE"),
    ),
    "3 trial level: TS lacks an FDA-required parameter": (
        lambda s: drop_rows(s, "TS", [0]),
        ("CF-SD-0026", "TS"),
    ),
    "4 ADaM: CHG is not AVAL - BASE": (_chg, ("CF-AD-0010", "ADLB")),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return _write(rich_study(), tmp_path_factory.mktemp("clean") / "data")


def test_clean_folder_validates_with_exit_0(clean, tmp_path):
    result, found = _validate(clean, tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert not [k for k, f in found.items() if f["severity"] == "error"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_validate_cli_finds_the_planted_fault(family, tmp_path):
    edit, key = FAMILIES[family]
    study = rich_study()
    edit(study)
    result, found = _validate(_write(study, tmp_path / "data"), tmp_path / "report")
    assert result.exit_code == 1, result.output
    assert key in found and found[key]["severity"] == "error"


def test_validate_cli_checks_define_xml_in_the_folder(tmp_path):
    """5 define.xml: a define.xml beside the data is compared with it."""
    study = rich_study()
    folder = _write(study, tmp_path / "data")
    (folder / "define.xml").write_text(
        define_xml(list(study.values()), no_meddra=True), encoding="utf-8"
    )
    result, found = _validate(folder, tmp_path / "report")
    assert result.exit_code == 1, result.output
    assert found[("CF-DF-0006", "AE")]["variables"] == ["AEDECOD"]


def test_validate_cli_waivers_explain_a_finding_and_flag_stale_ones(tmp_path):
    study = rich_study()
    set_value(study, "DM", "USUBJID", 2, S2)
    folder = _write(study, tmp_path / "data")
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n"
        "  - {rule: CF-SD-0014, dataset: DM, reason: planted for the test, by: t,"
        " date: 2026-12-01}\n"
        "  - {rule: CF-DS-0007, dataset: DM, reason: same record, by: t, date: 2026-12-01}\n"
        "  - {rule: CF-AD-0007, dataset: ADSL, reason: stale, by: t, date: 2026-12-01}\n",
        encoding="utf-8",
    )
    result, found = _validate(folder, tmp_path / "report", "--waivers", str(waivers))
    errors = {k for k, f in found.items() if f["severity"] == "error" and not f.get("waiver")}
    assert found[("CF-SD-0014", "DM")]["waiver"]["reason"] == "planted for the test"
    assert ("CF-WV-0001", "ADSL") in found  # matched nothing: a warning
    assert result.exit_code == (1 if errors else 0), (result.output, errors)


def test_validate_cli_rejects_a_broken_waivers_file(clean, tmp_path):
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text("waivers:\n  - {rule: CF-NOPE-1, dataset: DM}\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["validate", str(clean), "--report", str(tmp_path / "r"), "--waivers", str(waivers)]
    )
    assert result.exit_code == 2
    assert "waivers[0]" in result.output and "reason" in result.output


def _plant_in_build(sdtm: dict, adam: dict) -> None:
    dm = sdtm["DM"]
    dm.frame = pd.concat([dm.frame, dm.frame.iloc[[0]]], ignore_index=True)
    ae = sdtm["AE"].frame
    row = ae.index[ae["AESTDTC"].astype("string").str.len() >= 10][0]
    ae.loc[row, "AEENDTC"] = "1900-01-01"
    supp = sdtm["SUPPAE"]
    supp.frame = pd.concat([supp.frame, supp.frame.iloc[[0]]], ignore_index=True)
    adlb = adam["ADLB"].frame
    row = adlb.index[adlb["CHG"].notna()][0]
    adlb.loc[row, "CHG"] = adlb.loc[row, "CHG"] + 1


def test_build_with_planted_faults_exits_1_and_publishes_nothing(
    tmp_path, default_raw, monkeypatch
):
    original = cdiscforge.build.build_stage

    def planting(study, stage, *args, **kwargs):
        out = original(study, stage, *args, **kwargs)
        if stage == "adam":
            _plant_in_build(kwargs["upstream"], out)
        return out

    monkeypatch.setattr(cdiscforge.build, "build_stage", planting)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--raw", str(default_raw), "--out", str(out)])
    assert result.exit_code == 1, result.output
    # A failed build's report goes to <out>/failed/ (the previous package is never replaced).
    payload = json.loads(
        (out / "failed" / "validation" / "results.json").read_text(encoding="utf-8")
    )
    found = {(f["rule_id"], f["dataset"]) for f in payload["findings"] if not f.get("waiver")}
    for family in (
        ("CF-SD-0014", "DM"),
        ("CF-SD-0015", "AE"),
        ("CF-SD-0031", "SUPPAE"),
        ("CF-AD-0010", "ADLB"),
    ):
        assert family in found, family
    assert not list(out.rglob("*.xpt"))


def test_build_fails_on_a_define_xml_error_and_publishes_nothing(
    tmp_path, default_raw, monkeypatch
):
    """5 define.xml through build: the define.xml rules run on the written define.xml; an
    error there (MedDRA without a version, CF-DF-0006) fails the build like any validation
    error: exit 1, no dataset or define.xml published, the report and log in <out>/failed/."""
    import cdiscforge.define

    original = cdiscforge.define.write_define

    def unversioned_meddra(*args, **kwargs):
        path = original(*args, **kwargs)
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace('Dictionary="MedDRA" Version="', 'Dictionary="MedDRA" Release="'),
            encoding="utf-8",
        )
        return path

    monkeypatch.setattr(cdiscforge.define, "write_define", unversioned_meddra)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--raw", str(default_raw), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "CF-DF-0006" in result.output and "no datasets were published" in result.output
    failed = out / "failed"
    payload = json.loads((failed / "validation" / "results.json").read_text(encoding="utf-8"))
    errors = {
        (f["rule_id"], f["dataset"])
        for f in payload["findings"]
        if f["severity"] == "error" and not f.get("waiver")
    }
    assert ("CF-DF-0006", "AE") in errors
    assert {r for r, _ in errors} == {"CF-DF-0006"}
    assert "CF-DF-0006" in (failed / "build.log").read_text(encoding="utf-8")
    assert not list(out.rglob("*.xpt")) and not list(out.rglob("define.xml"))
    assert not [f for f in ("sdtm", "adam", "datasetjson", "tables") if (failed / f).exists()]


def test_default_build_runs_the_define_xml_rules_clean(tmp_path, default_raw):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--raw", str(default_raw), "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "validation" / "results.json").read_text(encoding="utf-8"))
    ran = {c["rule_id"] for c in payload["checked"] if c["status"] != "not applicable"}
    assert {"CF-DF-0001", "CF-DF-0006", "CF-DF-0009", "CF-DF-0010", "CF-DF-0012"} <= ran
    define_findings = [
        f for f in payload["findings"] if f["rule_id"].startswith("CF-DF") and not f.get("waiver")
    ]
    assert define_findings == []
    assert "define.xml rules" in (out / "build.log").read_text(encoding="utf-8")

"""`cdiscforge build --datasetjson json,ndjson,dsjc` and `cdiscforge validate` on Dataset-JSON
folders of each encoding, through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cdiscforge.cli import main
from cdiscforge.datasetjson import ENCODINGS, SUFFIXES, read_dataset_json
from cdiscforge.xpt import read_xpt_fast


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, default_raw: Path) -> Path:
    out = tmp_path_factory.mktemp("dsj") / "out"
    args = ["build", "--raw", str(default_raw), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--datasetjson", "json,ndjson,dsjc"])
    assert result.exit_code == 0, result.output
    return out


def test_every_dataset_is_written_in_each_encoding_and_listed_in_the_manifest(
    built: Path,
) -> None:
    manifest = json.loads((built / "cdiscforge-manifest.json").read_text(encoding="utf-8"))
    for stage in ("sdtm", "adam"):
        stems = sorted(p.stem for p in (built / stage).glob("*.xpt"))
        assert stems
        for encoding in ENCODINGS:
            suffix = SUFFIXES[encoding]
            names = sorted(p.stem for p in (built / "datasetjson" / stage).glob(f"*{suffix}"))
            assert names == stems, (stage, encoding)
            for stem in stems:
                assert f"datasetjson/{stage}/{stem}{suffix}" in manifest["files"]


def test_each_encoding_reads_back_identical_to_the_xpt(built: Path) -> None:
    for stage in ("sdtm", "adam"):
        for xpt in sorted((built / stage).glob("*.xpt")):
            expected = read_xpt_fast(xpt).frame
            for encoding in ENCODINGS:
                path = built / "datasetjson" / stage / f"{xpt.stem}{SUFFIXES[encoding]}"
                got = read_dataset_json(path).frame
                assert list(got.columns) == list(expected.columns), path
                for name in expected.columns:
                    left, right = got[name], expected[name]
                    if left.dtype.kind == "f":
                        np.testing.assert_array_equal(
                            left.to_numpy(), right.to_numpy(dtype="float64"), f"{path} {name}"
                        )
                    elif left.dtype.kind == "M":
                        assert left.equals(pd.to_datetime(right)), (path, name)
                    else:
                        a = left.astype(object).where(left.notna(), None).tolist()
                        b = right.astype(object).where(right.notna(), None).tolist()
                        assert a == b, (path, name)


def _findings(report: Path) -> list[tuple]:
    payload = json.loads((report / "results.json").read_text(encoding="utf-8"))
    return sorted(
        (f["rule_id"], f["dataset"], tuple(f["variables"]), f["severity"], f["count"])
        for f in payload["findings"]
    )


def test_validate_gives_the_same_findings_on_each_encoding_as_on_the_xpt(
    built: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    on_xpt = runner.invoke(main, ["validate", str(built), "--report", str(tmp_path / "xpt")])
    assert on_xpt.exit_code == 0, on_xpt.output
    assert "(build;" in on_xpt.output
    expected = _findings(tmp_path / "xpt")
    assert expected  # the bundled study has warnings: the comparison compares something
    for encoding in ENCODINGS:
        copy = tmp_path / f"only-{encoding}"
        for stage in ("sdtm", "adam"):
            (copy / stage).mkdir(parents=True)
            shutil.copy(built / stage / "define.xml", copy / stage / "define.xml")
            target = copy / "datasetjson" / stage
            target.mkdir(parents=True)
            for file in (built / "datasetjson" / stage).glob(f"*{SUFFIXES[encoding]}"):
                shutil.copy(file, target / file.name)
        report = tmp_path / f"report-{encoding}"
        result = runner.invoke(main, ["validate", str(copy), "--report", str(report)])
        assert result.exit_code == 0, result.output
        assert "(dataset-json;" in result.output
        assert _findings(report) == expected, encoding


def test_a_folder_of_several_encodings_reads_each_dataset_once(built: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["validate", str(built / "datasetjson" / "sdtm"), "--report", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "r" / "results.json").read_text(encoding="utf-8"))
    assert "dm.ndjson: not read, dm.json holds the same dataset" in payload["run"]["notes"]
    assert "dm.dsjc: not read, dm.json holds the same dataset" in payload["run"]["notes"]


def test_an_unknown_encoding_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--out", str(out), "--datasetjson", "json,xml"])
    assert result.exit_code == 2
    assert "xml: choose from json, ndjson, dsjc" in result.output
    assert not out.exists()


def test_the_rerun_is_byte_identical(built: Path, default_raw: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    args = ["build", "--raw", str(default_raw), "--out", str(again)]
    result = CliRunner().invoke(main, [*args, "--datasetjson", "dsjc,ndjson,json"])
    assert result.exit_code == 0, result.output
    first = json.loads((built / "cdiscforge-manifest.json").read_text(encoding="utf-8"))
    second = json.loads((again / "cdiscforge-manifest.json").read_text(encoding="utf-8"))
    assert first["files"] == second["files"]
    assert any(name.endswith(".dsjc") for name in first["files"])

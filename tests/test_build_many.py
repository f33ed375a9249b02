"""`cdiscforge build-many STUDIES.yaml` through the real CLI, on a Dask LocalCluster: three
small copies of the bundled study, one of them failing validation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from cdiscforge.cli import main
from cdiscforge.simulate import simulate

pytest.importorskip("distributed")

CLI = [sys.executable, "-m", "cdiscforge.cli"]


def _study(root: Path, name: str, seed_spec: Path, seed: int) -> None:
    """A copy of the bundled spec and its raw exports for 5 subjects."""
    shutil.copytree(seed_spec, root / name / "spec")
    simulate(root / name / "spec", root / name / "raw", subjects=5, seed=seed)


def _make_failing(folder: Path) -> None:
    """DM.SEX lets an unknown code through (`unmatched: keep`) and one subject's SEX is
    'Femme': mapping succeeds, validation fails (as conftest's `failing_study`)."""
    dm = folder / "spec" / "sdtm" / "dm.yaml"
    data = yaml.safe_load(dm.read_text())
    next(v for v in data["variables"] if v["name"] == "SEX")["unmatched"] = "keep"
    dm.write_text(yaml.safe_dump(data, sort_keys=False))
    demo = pd.read_csv(folder / "raw" / "demographics.csv", dtype=str, keep_default_na=False)
    demo.loc[0, "SEX"] = "Femme"
    demo.to_csv(folder / "raw" / "demographics.csv", index=False)


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory, seed_spec: Path) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i, name in enumerate(["alpha", "beta", "gamma"]):
        _study(root, name, seed_spec, seed=11 + i)
    _make_failing(root / "gamma")
    (root / "studies.yaml").write_text(
        "studies:\n"
        "  - {name: alpha, spec: alpha/spec, raw: alpha/raw, out: out/alpha}\n"
        "  - {name: beta, spec: beta/spec, raw: beta/raw, out: out/beta,\n"
        '     datasetjson: "json,dsjc"}\n'
        "  - {name: gamma, spec: gamma/spec, raw: gamma/raw, out: out/gamma}\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="module")
def ran(portfolio: Path) -> subprocess.CompletedProcess[str]:
    args = [*CLI, "build-many", "studies.yaml", "--workers", "3", "--json", "outcomes.json"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=portfolio, timeout=600)
    print(result.stdout)  # the summary table, for the record (pytest -s)
    return result


def test_the_failing_study_does_not_stop_the_others(
    portfolio: Path, ran: subprocess.CompletedProcess[str]
) -> None:
    assert ran.returncode == 1, ran.stderr  # the largest build exit code: gamma's
    out = portfolio / "out"
    for name in ("alpha", "beta"):
        assert (out / name / "cdiscforge-manifest.json").is_file()
        assert sorted(p.name for p in (out / name / "sdtm").glob("*.xpt"))
        assert not (out / name / "failed").exists()
    assert list((out / "beta" / "datasetjson" / "sdtm").glob("*.dsjc"))
    assert not list((out / "alpha" / "datasetjson" / "sdtm").glob("*.dsjc"))
    # gamma: nothing published, its report and log in failed/
    assert not list((out / "gamma").rglob("*.xpt"))
    assert (out / "gamma" / "failed" / "validation" / "report.html").is_file()


def test_the_summary_table_shows_each_study_with_its_exit_code(
    portfolio: Path, ran: subprocess.CompletedProcess[str]
) -> None:
    lines = ran.stdout.splitlines()
    assert lines[0].split() == ["study", "exit", "records", "seconds", "findings"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert [rows[n][1] for n in ("alpha", "beta", "gamma")] == ["0", "0", "1"]
    assert "error" in " ".join(rows["gamma"][4:]) and "error" not in " ".join(rows["alpha"][4:])
    assert any(line.startswith("gamma: error: validation found") for line in lines)
    outcomes = json.loads((portfolio / "outcomes.json").read_text(encoding="utf-8"))
    assert [(o["name"], o["exit_code"]) for o in outcomes] == [
        ("alpha", 0), ("beta", 0), ("gamma", 1)
    ]  # fmt: skip
    published = json.loads(
        (portfolio / "out" / "alpha" / "validation" / "results.json").read_text(encoding="utf-8")
    )
    assert outcomes[0]["records"] == sum(published["datasets"].values()) > 0
    assert outcomes[2]["findings"]["error"] >= 1 and outcomes[0]["findings"]["error"] == 0
    for row, outcome in zip(lines[2:5], outcomes, strict=True):
        assert f"{outcome['records']:,}" in row.split()


def test_shared_and_nested_output_folders_are_refused_up_front(
    tmp_path: Path, seed_spec: Path
) -> None:
    (tmp_path / "studies.yaml").write_text(
        "studies:\n"
        f"  - {{name: one, spec: {seed_spec}, out: out/a}}\n"
        f"  - {{name: two, spec: {seed_spec}, out: out/a}}\n"
        f"  - {{name: three, spec: {seed_spec}, out: out/a/inner}}\n"
        "  - {name: four, spec: nowhere, out: out/b, datasetjson: xml}\n"
        f"  - {{name: five, study: nct03691909, out: {seed_spec}}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["build-many", str(tmp_path / "studies.yaml")])
    assert result.exit_code == 2, result.output
    text = result.output
    assert f"one and two have the same output folder {tmp_path / 'out' / 'a'}" in text
    assert "the output folder of three" in text and "is inside that of one" in text
    assert "studies[3].spec: folder not found" in text
    assert "studies[3].datasetjson: xml: choose from json, ndjson, dsjc" in text
    assert "studies[4].out: refusing to build into" in text and "spec folder" in text
    assert not (tmp_path / "out").exists()  # nothing was built or created


def test_an_existing_scheduler_runs_the_builds(tmp_path: Path, seed_spec: Path) -> None:
    """--scheduler ADDRESS: the tasks go to a cluster already running (here a LocalCluster
    started by the test); a build that stops on bad input (an empty raw folder) is exit 2
    in the table, with its located error, and no records."""
    from distributed import LocalCluster

    (tmp_path / "raw").mkdir()
    (tmp_path / "studies.yaml").write_text(
        f"studies:\n  - {{name: empty, spec: {seed_spec}, raw: raw, out: out}}\n",
        encoding="utf-8",
    )
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        result = CliRunner().invoke(
            main,
            [
                "build-many",
                str(tmp_path / "studies.yaml"),
                "--scheduler",
                cluster.scheduler_address,
            ],
        )
    assert result.exit_code == 2, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("empty "))
    assert row.split()[1:3] == ["2", "-"]
    assert "empty: error: " in result.output and "raw" in result.output
    assert not list((tmp_path / "out").rglob("*.xpt"))

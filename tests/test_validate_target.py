"""`cdiscforge validate` never writes into the source tree or the data it validates: from
inside a project (a checkout) the default report goes to <project>/outputs/, and a --report
inside a Python package, the bundled specs or the data folder is refused (exit 2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdiscforge.errors import CdiscforgeError
from cdiscforge.outputs import report_target

ROOT = Path(__file__).resolve().parent.parent
DM = ROOT / "tests" / "fixtures" / "dataset-json-examples" / "sdtm" / "dm.xpt"


def _validate(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", "validate", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout-like folder: pyproject.toml and a package, plus a folder of XPT data."""
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "pkg" / "__init__.py").write_text("")
    data = tmp_path / "data" / "sdtm"
    data.mkdir(parents=True)
    shutil.copy(DM, data / "dm.xpt")
    return root


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_default_report_from_inside_a_package_goes_to_the_project_outputs(project: Path) -> None:
    data = project.parent / "data" / "sdtm"
    before = _files(project / "pkg")
    result = _validate(project / "pkg", data)
    assert result.returncode in (0, 1), result.stderr
    report = project / "outputs" / "validation-report" / "sdtm"
    assert (report / "report.html").is_file()
    assert f"Report: {report / 'report.html'}" in result.stdout
    assert _files(project / "pkg") == before


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("pkg/report", "inside the Python package"),
        (".", "is or contains the project folder"),
    ],
)
def test_report_into_the_source_tree_is_refused(project: Path, where: str, why: str) -> None:
    data = project.parent / "data" / "sdtm"
    before = _files(project)
    result = _validate(project, data, "--report", where)
    assert result.returncode == 2
    assert why in result.stderr and "Traceback" not in result.stderr
    assert _files(project) == before


def test_report_inside_the_data_is_refused(project: Path) -> None:
    data = project.parent / "data" / "sdtm"
    result = _validate(project.parent, data, "--report", data / "report")
    assert result.returncode == 2
    assert "inside or around the folder being validated" in result.stderr
    assert _files(data) == ["dm.xpt"]


def test_this_checkout_keeps_reports_out_of_its_packages_and_specs() -> None:
    """The real layout: run from the package folder of this checkout, the default lands in
    outputs/; the packages and the bundled specs are refused (looked up, nothing written)."""
    data = ROOT / "tests" / "fixtures" / "dataset-json-examples" / "sdtm"
    if (ROOT / "pyproject.toml").is_file():
        target = report_target(None, data, cwd=ROOT / "cdiscforge")
        assert target == (ROOT / "outputs" / "validation-report" / "sdtm").resolve()
    for where in (ROOT / "cdiscforge" / "rep", ROOT / "validation" / "x", ROOT / "specs" / "r"):
        with pytest.raises(CdiscforgeError):
            report_target(where, data, cwd=Path("/"))

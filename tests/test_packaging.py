"""The user's top-level folders (sdtm/, adam/, validation/) install inside the cdiscforge
namespace, so an installed cdiscforge never shadows PyPI's unrelated `adam` or `validation`
packages (issue 14, item 11)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_the_cdiscforge_namespace() -> None:
    """Each folder holding __init__.py is listed, under its cdiscforge.* name, at its path:
    a new subpackage left out of pyproject.toml would be missing from the wheel."""
    cfg = _setuptools()
    dirs = cfg["package-dir"]
    listed = set(cfg["packages"])
    roots = {"cdiscforge": "cdiscforge", "sdtm": "cdiscforge.sdtm", "adam": "cdiscforge.adam"}
    roots["validation"] = "cdiscforge.validation"
    expected: set[str] = set()
    for folder, name in roots.items():
        assert dirs[name] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            expected.add(".".join([name, *rel.parts]))
    assert expected <= listed, f"not in [tool.setuptools] packages: {sorted(expected - listed)}"
    assert dirs["cdiscforge._specs"] == "specs"


def test_no_top_level_sdtm_adam_or_validation_module_is_importable() -> None:
    """Run from outside the checkout (so the current folder is not on sys.path): the
    namespaced names resolve to the repository's folders, the bare names to nothing."""
    code = (
        "import importlib.util as u, json;"
        "print(json.dumps({n: (s.origin if (s := u.find_spec(n)) else None) for n in "
        "['sdtm', 'adam', 'validation', 'cdiscforge.sdtm', 'cdiscforge.adam', "
        "'cdiscforge.validation']}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True, check=True
    )
    import json

    found = json.loads(out.stdout)
    for bare in ("sdtm", "adam", "validation"):
        origin = found[bare]
        assert origin is None or not origin.startswith(str(ROOT)), (bare, origin)
        spaced = found[f"cdiscforge.{bare}"]
        assert spaced is not None
        # The checkout's folder (editable install) or the installed package's (a wheel).
        where = Path(spaced).resolve()
        assert where == ROOT / bare / "__init__.py" or where.parts[-3:] == (
            "cdiscforge",
            bare,
            "__init__.py",
        ), where


def test_the_code_imports_the_namespaced_names_only() -> None:
    """No module of the package imports the bare top-level names (which an installed wheel
    does not have)."""
    offenders = []
    for folder in ("cdiscforge", "sdtm", "adam", "validation", "tests", "benchmarks", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                text = line.strip()
                for bare in ("sdtm", "adam", "validation"):
                    if text.startswith((f"from {bare} ", f"from {bare}.", f"import {bare}")):
                        offenders.append(f"{path.relative_to(ROOT)}:{n}: {text}")
    assert not offenders, offenders
    assert importlib.util.find_spec("cdiscforge.validation.api") is not None


def test_a_checkout_runs_its_own_code_whatever_is_installed() -> None:
    """`python -m cdiscforge.cli` in the repository imports the checkout's cdiscforge (the
    current folder comes first on sys.path); its namespaced stages must resolve there too,
    also when a wheel (not an editable install) is what pip installed."""
    code = "import cdiscforge.sdtm, cdiscforge.validation.api; print(cdiscforge.sdtm.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()).resolve() == ROOT / "sdtm" / "__init__.py"

"""Record generators and rules are checked when the spec loads: a typo in a generator's
params, a form/table/dataset/column that does not exist, an `assign` with neither `from`
nor `var`, an empty `coalesce` are located spec errors (exit 2, all in one run), never a
traceback at build time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _build(spec: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", "build", "--spec", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def spec(tmp_path: Path, seed_spec: Path) -> Path:
    folder = tmp_path / "spec"
    shutil.copytree(seed_spec, folder)
    return folder


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _var(data: dict, name: str) -> dict:
    return next(v for v in data["variables"] if v["name"] == name)


def _refused(result: subprocess.CompletedProcess[str], out: Path) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    return result.stderr


def test_generator_param_typos_are_located_spec_errors_all_in_one_run(
    spec: Path, tmp_path: Path
) -> None:
    def se(d: dict) -> None:
        d["records"][0]["params"]["elements"][1]["start"]["form"] = "liposuctoin"
        d["records"][0]["params"]["end"]["colum"] = "RFPENDTC"

    def adeff(d: dict) -> None:
        params = d["records"][0]["params"]
        params["not_evaluable_rul"] = params.pop("not_evaluable_rule")

    def sv(d: dict) -> None:
        d["records"][1]["params"]["folder"] = "FOLDR"

    _edit(spec / "sdtm" / "se.yaml", se)
    _edit(spec / "adam" / "adeff.yaml", adeff)
    _edit(spec / "sdtm" / "sv.yaml", sv)
    out = tmp_path / "out"
    err = _refused(_build(spec, out), out)
    assert "se.yaml: records[0].params.end.colum: unknown key" in err
    assert "adeff.yaml: records[0].params.not_evaluable_rul: unknown key" in err
    assert "adeff.yaml: records[0].params.not_evaluable_rule: missing required field" in err
    assert "sv.yaml: records[1].params.folder: raw form 'visits' has no column 'FOLDR'" in err


def test_references_inside_generator_params_are_checked(spec: Path, tmp_path: Path) -> None:
    _edit(
        spec / "sdtm" / "se.yaml",
        lambda d: d["records"][0]["params"]["elements"][1]["start"].update(form="liposuctoin"),
    )
    _edit(spec / "adam" / "adeff.yaml", lambda d: d["records"][0]["params"].update(result="MKRES"))
    out = tmp_path / "out"
    err = _refused(_build(spec, out), out)
    assert (
        "se.yaml: records[0].params.elements[1].start.form: unknown raw form 'liposuctoin'" in err
    )
    assert "adeff.yaml: records[0].params.result: dataset 'MK' has no column 'MKRES'" in err


def test_unknown_generator_and_params_on_a_form_block(spec: Path, tmp_path: Path) -> None:
    _edit(spec / "sdtm" / "se.yaml", lambda d: d["records"][0].update(generator="subject_element"))
    _edit(spec / "sdtm" / "sv.yaml", lambda d: d["records"][0].update(params={"form": "visits"}))
    out = tmp_path / "out"
    err = _refused(_build(spec, out), out)
    assert "se.yaml: records[0].generator: unknown generator 'subject_element'" in err
    assert "missed_visits" in err  # the known ones are listed
    assert "sv.yaml: records[0].params: only a generator block takes params" in err


def test_empty_rule_combinations_are_refused_at_load(spec: Path, tmp_path: Path) -> None:
    def ae(d: dict) -> None:
        entry = _var(d, "AETERM")
        entry.pop("from", None)

    def dm(d: dict) -> None:
        _var(d, "RFXSTDTC")["refs"] = []

    _edit(spec / "sdtm" / "ae.yaml", ae)
    _edit(spec / "sdtm" / "dm.yaml", dm)
    out = tmp_path / "out"
    err = _refused(_build(spec, out), out)
    assert "ae.yaml: variables[6](AETERM): give exactly one of 'from' or 'var'" in err
    assert (
        "dm.yaml: variables" in err and "(RFXSTDTC).refs: List should have at least 1 item" in err
    )


def test_lookup_table_and_column_are_checked_at_load(spec: Path, tmp_path: Path) -> None:
    def se(d: dict) -> None:
        _var(d, "ELEMENT")["column"] = "ELEMNT"
        _var(d, "EPOCH")["table"] = "arm_element"

    _edit(spec / "sdtm" / "se.yaml", se)
    out = tmp_path / "out"
    err = _refused(_build(spec, out), out)
    assert "(ELEMENT).column: spec table 'elements' has no column 'ELEMNT'" in err
    assert "(EPOCH).table: unknown spec table 'arm_element'" in err


def test_analysis_windows_are_checked_when_the_spec_loads(spec: Path, tmp_path: Path) -> None:
    tables = spec / "tables.yaml"
    _edit(tables, lambda d: d["windows"][1].update(low=d["windows"][0]["high"]))
    out = tmp_path / "out"
    err = _refused(_build(spec, out), out)
    assert "adeff.yaml: variables" in err
    assert "analysis windows overlap" in err


def test_waivers_are_read_through_the_guarded_spec_loader(tmp_path: Path) -> None:
    """A duplicated key in waivers.yaml was silently last-one-wins with yaml.safe_load; the
    one spec loader names it with its line."""
    from cdiscforge.errors import SpecError
    from cdiscforge.validation.waivers import load_waivers

    path = tmp_path / "waivers.yaml"
    path.write_text(
        "waivers:\n  - rule: CF-MD-0004\n    dataset: EX\n    dataset: SV\n"
        "    reason: x\n    by: me\n    date: 2026-12-01\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as err:
        load_waivers(path)
    assert str(path) in str(err.value)
    assert "dataset" in str(err.value) and "line 4" in str(err.value)

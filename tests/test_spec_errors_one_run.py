"""Issue 14's planted spec errors, one of each kind, in ONE copy of the bundled spec: each is
a located spec error, all four in one run, exit 2, nothing written, and no cascade (a broken
raw-form contract does not also make every rule naming a form report it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def test_four_kinds_of_spec_error_are_located_in_one_run(seed_spec: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    raw_forms = spec / "raw_forms.yaml"
    text = raw_forms.read_text(encoding="utf-8")
    assert 'format: "DD-MON-YYYY", description: "Screening date"' in text
    raw_forms.write_text(
        text.replace('format: "DD-MON-YYYY", description: "Screening date"',
                     'format: "DD-MOM-YYYY", description: "Screening date"', 1),
        encoding="utf-8",
    )  # fmt: skip
    se = spec / "sdtm" / "se.yaml"
    doc = yaml.safe_load(se.read_text(encoding="utf-8"))
    doc["records"][0]["params"]["elements"][1]["start"]["colum"] = "X"  # generator param typo
    se.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    dm = spec / "sdtm" / "dm.yaml"
    text = dm.read_text(encoding="utf-8")
    old = 'when: {col: _ENROLLED, eq: "Y"}'
    assert old in text
    dm.write_text(text.replace(old, "when: {col: _ENROLLED, gt: RFICDTC}"), encoding="utf-8")
    ae = spec / "sdtm" / "ae.yaml"
    text = ae.read_text(encoding="utf-8")
    broken = re.sub(r"(name: AESEV.*?codelist: )AESEV", r"\1AESEV_SPX", text, count=1, flags=re.S)
    assert broken != text
    ae.write_text(broken, encoding="utf-8")

    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", "build", "--spec", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    err = run.stdout + run.stderr
    assert run.returncode == 2, err
    assert "Traceback" not in err
    assert not out.exists()
    assert "error: 4 spec errors:" in err
    assert "raw_forms.yaml: forms.enrolment.columns.SCRNDAT.format: 'MOM'" in err
    assert "se.yaml: records[0].params.elements[1].start.colum: unknown key" in err
    assert "dm.yaml: variables[" in err and "when.gt: gt: 'RFICDTC' is a literal text" in err
    assert "ae.yaml: variables[" in err and "unknown codelist 'AESEV_SPX'" in err

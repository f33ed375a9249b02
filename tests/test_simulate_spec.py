"""The simulator reads its study's shape from the specs: byte identity and located spec errors.

The checksums in tests/fixtures/simulate/sha256.txt were measured from the simulator before it
read its forms from simulation.yaml; moving the study's shape out of Python must not move a
single byte of the bundled study's exports.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from cdiscforge.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "specs" / "nct03691909"
CHECKSUMS = Path(__file__).resolve().parent / "fixtures" / "simulate" / "sha256.txt"


def _expected(mode: str) -> dict[str, str]:
    rows = [
        line.split()
        for line in CHECKSUMS.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    return {name: digest for m, digest, name in rows if m == mode}


@pytest.mark.parametrize(("mode", "mess"), [("mess", True), ("clean", False)])
def test_bundled_study_exports_are_byte_identical(tmp_path: Path, mode: str, mess: bool) -> None:
    result = simulate(STUDY, tmp_path, mess=mess)
    got = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in result.files.values()
    }
    assert got == _expected(mode)


def _copy(tmp_path: Path) -> Path:
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    return study

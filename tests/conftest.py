"""Shared fixtures: the bundled study's spec folder and one simulated default raw export."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.model import Dataset
from cdiscforge.spec import StudySpec, load_study
from cdiscforge.studies import study_dir


@pytest.fixture(scope="session")
def seed_spec() -> Path:
    return study_dir("nct03691909")


@pytest.fixture(scope="session")
def default_raw(tmp_path_factory: pytest.TempPathFactory, seed_spec: Path) -> Path:
    """The default 15-subject messy export, simulated once per test session."""
    from cdiscforge.simulate import simulate

    out = tmp_path_factory.mktemp("raw15")
    simulate(seed_spec, out)
    return out


@pytest.fixture(scope="session")
def failing_study(seed_spec: Path, default_raw: Path) -> Callable[[Path], tuple[Path, Path]]:
    """Make (spec, raw) under a folder whose build fails validation, not mapping: DM.SEX lets
    an unknown code through (`unmatched: keep`) and the first subject's SEX is 'Femme'."""

    def make(folder: Path) -> tuple[Path, Path]:
        spec = folder / "spec"
        shutil.copytree(seed_spec, spec)
        dm = spec / "sdtm" / "dm.yaml"
        data = yaml.safe_load(dm.read_text())
        sex = next(v for v in data["variables"] if v["name"] == "SEX")
        sex["unmatched"] = "keep"
        dm.write_text(yaml.safe_dump(data, sort_keys=False))
        raw = folder / "raw"
        shutil.copytree(default_raw, raw)
        demo = pd.read_csv(raw / "demographics.csv", dtype=str, keep_default_na=False)
        demo.loc[0, "SEX"] = "Femme"
        demo.to_csv(raw / "demographics.csv", index=False)
        return spec, raw

    return make


@pytest.fixture(scope="module")
def built(seed_spec: Path, default_raw: Path) -> tuple[StudySpec, dict[str, Dataset]]:
    """The bundled study's SDTM and ADaM datasets built in-process from the default raw
    export (one build per test module that asks)."""
    study = load_study(seed_spec)
    log = BuildLog()
    sd = build_stage(study, "sdtm", RawStore(study, default_raw, log), log)
    ad = build_stage(study, "adam", None, log, upstream=sd)
    return study, {**sd, **ad}

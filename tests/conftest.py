"""Shared fixtures: the bundled study's spec folder and one simulated default raw export."""

from __future__ import annotations

from pathlib import Path

import pytest

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

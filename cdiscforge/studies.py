"""Where study specs live.

The bundled study's specs sit in the top-level `specs/` folder of a source checkout (and of
an editable install); a wheel carries the same folder as `cdiscforge/_specs`. `--spec DIR`
points anywhere else, which is how a second study needs only new specs.
"""

from __future__ import annotations

from pathlib import Path

from cdiscforge.errors import CdiscforgeError

DEFAULT_STUDY = "nct03691909"


def specs_root() -> Path:
    """The folder holding one sub-folder of YAML specs per bundled study."""
    packaged = Path(__file__).resolve().parent / "_specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "specs"


def study_dir(study: str = DEFAULT_STUDY) -> Path:
    """The spec folder of a bundled study, with an error listing the studies that exist."""
    root = specs_root()
    path = root / study.lower()
    if not (path / "study.yaml").is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "study.yaml").is_file())
        raise CdiscforgeError(f"unknown study {study!r}; bundled studies: {', '.join(known)}")
    return path

"""Where study specs live.

The bundled study's specs sit in the top-level `specs/` folder of a source checkout (and of
an editable install); a wheel carries the same folder as `cdiscforge/_specs`. `--spec DIR`
points anywhere else, which is how a second study needs only new specs.
"""

from __future__ import annotations

from pathlib import Path

from cdiscforge.errors import CdiscforgeError


def specs_root() -> Path:
    """The folder holding one sub-folder of YAML specs per bundled study."""
    packaged = Path(__file__).resolve().parent / "_specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "specs"


def default_study() -> str:
    """The bundled study used when none is named: `default_study` in specs/default.yaml (the
    study's name is data, never code), else the only bundled study."""
    from cdiscforge import yamlsafe

    root = specs_root()
    path = root / "default.yaml"
    if path.is_file():
        doc = yamlsafe.load_file(path)
        name = doc.get("default_study") if isinstance(doc, dict) else None
        if not isinstance(name, str) or not (root / name / "study.yaml").is_file():
            raise CdiscforgeError(f"{path}: default_study must name a bundled study folder")
        return name
    known = sorted(p.name for p in root.iterdir() if (p / "study.yaml").is_file())
    if len(known) != 1:
        raise CdiscforgeError(f"{path} is missing: name the study with --study or --spec")
    return known[0]


DEFAULT_STUDY = default_study()


def study_dir(study: str | None = None) -> Path:
    """The spec folder of a bundled study, with an error listing the studies that exist."""
    root = specs_root()
    path = root / (study or DEFAULT_STUDY).lower()
    if not (path / "study.yaml").is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "study.yaml").is_file())
        raise CdiscforgeError(f"unknown study {study!r}; bundled studies: {', '.join(known)}")
    return path

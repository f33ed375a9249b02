"""cdiscforge: raw EDC exports to SDTM and ADaM, as XPT v5, define.xml and Dataset-JSON."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The folders sdtm/, adam/ and validation/ sit beside this package in a source checkout and
# install as cdiscforge.sdtm, cdiscforge.adam and cdiscforge.validation (pyproject.toml
# package-dir). When this package is imported from a checkout itself (`python -m
# cdiscforge.cli` run in the repository, whatever is installed), those names resolve to
# the sibling folders through this package's search path; an installed wheel holds them
# inside the package and skips this.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).resolve().parent / "sdtm").is_dir() and all(
    (_checkout / name / "__init__.py").is_file() for name in ("sdtm", "adam", "validation")
):
    __path__.append(str(_checkout))

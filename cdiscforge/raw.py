"""Reading raw exports strictly, through the study's raw-form contract.

A raw export is read as text (every column a string): types are the mapping rules' business,
and reading as text never loses a leading zero or turns `NA` into a missing value. What the
contract promises is checked here, with the file, row and column of the first problem:
the file exists, its header has exactly the declared columns, required columns are filled,
numeric columns hold numbers. Duplicate records are not an error here: the domain spec's
`dedupe` step resolves them by a stated rule and reports each one.

Row numbers in messages are 1-based data rows (the header is row 0), as a programmer counts
them in a spreadsheet view of the export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cdiscforge.errors import InputError, Located, raise_first

ColumnType = Literal["str", "int", "float", "date", "time", "datetime"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType = "str"
    required: bool = False
    format: str | None = None
    description: str = ""
    values: tuple[str, ...] = ()  # a coded column's only allowed codes (e.g. Y, N)


@dataclass(frozen=True)
class FormSpec:
    """One raw form of the contract (raw_forms.yaml)."""

    name: str
    file: str
    columns: dict[str, ColumnSpec]
    key: tuple[str, ...] = ()
    subject: str = "SUBJECT"
    description: str = ""


@dataclass
class RawForm:
    """A raw export read as text, with its 1-based data row numbers for error messages."""

    spec: FormSpec
    path: Path
    frame: pd.DataFrame
    rows: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def name(self) -> str:
        return self.spec.name

    def __len__(self) -> int:
        return len(self.frame)


def read_form(spec: FormSpec, raw_dir: Path) -> RawForm:
    """Read one raw export and check it against its contract (see module docstring)."""
    path = raw_dir / spec.file
    if not path.is_file():
        raise InputError(path, f"raw export for form {spec.name!r} not found")
    frame = _read_text_table(path)
    header = list(frame.columns)
    missing = [c for c in spec.columns if c not in header]
    if missing:
        raise InputError(
            path, f"column(s) {missing} declared in the raw-form contract are missing", row=0
        )
    unknown = [c for c in header if c not in spec.columns]
    if unknown:
        raise InputError(
            path,
            f"column(s) {unknown} are not in the raw-form contract for {spec.name!r} "
            "(an export layout change must be declared in raw_forms.yaml)",
            row=0,
            column=unknown[0],
        )
    frame = frame[list(spec.columns)]
    # Trailing/leading blanks are noise in every EDC export; an all-blank cell is missing.
    for col in frame.columns:
        s = frame[col].str.strip()
        frame[col] = s.mask(s == "")
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    form = RawForm(spec=spec, path=path, frame=frame, rows=rows)
    _check_contract(form)
    return form


def _read_text_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in {".sas7bdat", ".xpt"}:
        import pyreadstat

        reader = pyreadstat.read_sas7bdat if suffix == ".sas7bdat" else pyreadstat.read_xport
        try:
            frame, _ = reader(str(path))
        except Exception as exc:  # pyreadstat raises its own error types
            raise InputError(path, f"cannot read SAS file: {exc}") from exc
        return frame.astype("string").astype("str")
    try:
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            engine="pyarrow",
            encoding="utf-8",
        )
    except UnicodeDecodeError as exc:
        raise _not_utf8(path) from exc
    except Exception:
        # pyarrow's parser does not say which line broke; the C parser does.
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
        except UnicodeDecodeError as exc:
            raise _not_utf8(path) from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise InputError(path, f"malformed CSV: {exc}") from exc


def _check_contract(form: RawForm) -> None:
    frame, spec = form.frame, form.spec
    for col, cspec in spec.columns.items():
        values = frame[col]
        if cspec.required:
            _raise(form, values.isna(), col, "required value is missing")
        if cspec.values:
            # A coded answer outside its codes (ZZZ in a Y/N field) must stop the build: a
            # rule testing `eq: Y` would otherwise read it as N without a word.
            allowed = list(cspec.values)
            _raise(form, values.notna() & ~values.isin(allowed), col, f"not one of {allowed}")
        if cspec.type in ("int", "float"):
            num = pd.to_numeric(values, errors="coerce")
            _raise(form, values.notna() & num.isna(), col, f"not a number ({cspec.type})")
            if cspec.type == "int":
                frac = num.notna() & (num != np.floor(num.fillna(0)))
                _raise(form, frac, col, "not a whole number (int)")


def _raise(form: RawForm, mask: pd.Series, column: str, problem: str) -> None:
    raise_first(mask, form.frame[column], Located(str(form.path), column, form.rows), problem)


def _not_utf8(path: Path) -> InputError:
    """Name the first data row holding bytes that are not UTF-8 (e.g. a Latin-1 export)."""
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = line[max(0, exc.start - 10) : exc.end + 10]
                return InputError(
                    path,
                    "not UTF-8 text (re-export as UTF-8; Latin-1/Windows-1252 is the usual "
                    f"cause): bytes {bad!r}",
                    row=line_no,
                )
    return InputError(path, "not UTF-8 text")

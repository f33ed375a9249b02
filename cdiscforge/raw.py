"""Reading raw exports strictly, through the study's raw-form contract.

A raw export is read as text (every column a string): types are the mapping rules' business,
and reading as text never loses a leading zero or turns `NA` into a missing value. What the
contract (raw_forms.yaml) promises is checked here, every problem of a file located by file,
row, column and value and reported together (errors.collecting):

- the file exists, is UTF-8 CSV (or SAS), and its header has exactly the declared columns
  (file-level: the form cannot be read further);
- at least `min_rows` data rows (default 1: a header-only export is far more often a failed
  export than a form nobody filled in; a form that may truly be empty says `min_rows: 0`,
  and is then logged as empty);
- required columns are filled; int/float columns hold finite numbers (`inf`, `1e400`, `NaN`
  spelled out are errors: XPT cannot hold them); date columns hold dates in their declared
  format; `min`/`max` bounds on numbers and dates (literal values; a partial date is out of
  bounds only when all of its possible days are);
- no control characters in any text: NUL and the other C0 controls (and DEL) are errors;
  line breaks and tabs (CR/LF inside a quoted field: a site pressed Enter in a free-text
  box) are normalised to one space and logged per record, because the text means the same
  on one line and XPT/SAS listings and define.xml break on a raw line break;
- the form's `key` is unique, unless a dataset reading the form de-duplicates it by a stated
  rule (`dedupe` in the domain spec: the known double send of a lab record), which then
  reports each dropped record with its raw row;
- `checks:` between dates: `{column: A, not_before: B}` within a record, or against another
  form by subject, `{column: VISDAT, not_before: {form: enrolment, column: ICDAT}}`
  (`not_after` likewise); a violation names both values.

Row numbers in messages are 1-based data rows (the header is row 0), as a programmer counts
them in a spreadsheet view of the export.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cdiscforge.concurrent import threaded
from cdiscforge.dates import DEFAULT_UNKNOWN, DateFormat, FormatError, check_column_format
from cdiscforge.dates import parse_format as _parse_format
from cdiscforge.errors import (
    InputError,
    Located,
    SpecError,
    collecting,
    raise_first,
    raising,
    report,
)
from cdiscforge.vectorise import combine_codes, factorize_text, first_rows, narrow_codes

ColumnType = Literal["str", "int", "float", "date", "time", "datetime"]
# Keys a raw_forms.yaml column / form may carry (the spec loader rejects any other key).
COLUMN_KEYS = frozenset({"type", "required", "format", "description", "min", "max", "values"})
FORM_KEYS = frozenset(
    {"file", "columns", "key", "subject", "subject_columns", "description", "min_rows", "checks"}
)
CHECK_OPS = ("not_before", "not_after")
# C0 controls and DEL, except tab, LF and CR (whitespace, normalised to a space instead).
CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
LINE_BREAK = r"[\t\r\n]"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType = "str"
    required: bool = False
    format: str | None = None
    description: str = ""
    min: float | str | None = None  # a number, or an ISO date YYYY-MM-DD for a date column
    max: float | str | None = None
    values: tuple[str, ...] = ()  # a coded column's only allowed codes (e.g. Y, N)
    date_format: DateFormat | None = None  # `format` parsed (date, datetime, time columns)


@dataclass(frozen=True)
class Check:
    """`column` must not be before (`not_before`) / after (`not_after`) `other_column`, of the
    same record or, with `other_form`, of the same subject's record(s) in that form."""

    column: str
    op: Literal["not_before", "not_after"]
    other_column: str
    other_form: str | None = None


@dataclass(frozen=True)
class FormSpec:
    """One raw form of the contract (raw_forms.yaml)."""

    name: str
    file: str
    columns: dict[str, ColumnSpec]
    key: tuple[str, ...] = ()
    subject: str = "SUBJECT"
    description: str = ""
    min_rows: int = 1
    checks: tuple[Check, ...] = ()
    # USUBJID template column -> this form's column (resolved by the spec loader from
    # `subject_columns` and `subject`): the columns that say whose record a row is.
    subject_columns: tuple[tuple[str, str], ...] = ()

    def subject_key(self, frame: pd.DataFrame) -> pd.Series:
        """Which subject each row belongs to, comparable across forms (the template's
        column parts in order; the full USUBJID is `StudySpec.subject_key`)."""
        columns = [c for _, c in self.subject_columns] or [self.subject]
        key = frame[columns[0]].astype("string").str.strip()
        for column in columns[1:]:
            key = key + "\x1f" + frame[column].astype("string").str.strip()
        return key


class Broadcasts(MutableMapping[str, pd.Series]):
    """Columns of a form's records, each given whole or as per-distinct values and the
    records' codes (-1 missing), broadcast the first time it is asked for (and kept).

    RawForm.iso: a date column's ISO text on every record is needed only where a check
    cannot work on the distinct dates; broadcast at once it was ~0.15 GiB held per date
    column of the 8.8-million-row joint export at 10,000 subjects, through the whole
    SDTM stage, and the time to make it."""

    def __init__(self) -> None:
        self._columns: dict[str, pd.Series | tuple[pd.Series, np.ndarray, pd.Index]] = {}

    def later(self, key: str, values: pd.Series, codes: np.ndarray, index: pd.Index) -> None:
        """`key` is `values` broadcast through `codes`, with `index`, when asked for."""
        self._columns[key] = (values, codes, index)

    def __getitem__(self, key: str) -> pd.Series:
        column = self._columns[key]
        if isinstance(column, tuple):
            column = self._columns[key] = _broadcast(*column)
        return column

    def __setitem__(self, key: str, value: pd.Series) -> None:
        self._columns[key] = value

    def __delitem__(self, key: str) -> None:
        del self._columns[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


@dataclass
class RawForm:
    """A raw export read as text, with its 1-based data row numbers for error messages."""

    spec: FormSpec
    path: Path
    frame: pd.DataFrame
    rows: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=np.int64))
    iso: Broadcasts = field(repr=False, default_factory=Broadcasts)  # date columns
    # column -> (codes, distinct values): frame[column] is values.take(codes), -1 missing, codes
    # in the narrowest type (vectorise.narrow_codes); iso_distinct likewise for the date
    # columns' ISO text (same codes).
    distinct: dict[str, tuple[np.ndarray, pd.Series]] = field(repr=False, default_factory=dict)
    iso_distinct: dict[str, pd.Series] = field(repr=False, default_factory=dict)
    # Warnings for the build log: (message, column, count, examples).
    notes: list[tuple[str, str, int, list[Any]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def __len__(self) -> int:
        return len(self.frame)


# --- the contract's vocabulary, parsed for the spec loader -----------------------------------


def partial_date_unknowns(path: Path, where: str, value: Any) -> tuple[str, ...]:
    """The study's spellings of an unknown date part (`partial_dates`):
    `{unknown: [UN, UNK, "--", ""]}`, or the older `{unknown_day: UN, unknown_month: UNK}`
    (those spellings, accepted for any part); absent: cdiscforge.dates.DEFAULT_UNKNOWN."""
    if value is None:
        return DEFAULT_UNKNOWN
    if not isinstance(value, dict) or not value:
        raise SpecError(path, where, "expected {unknown: [UN, UNK, ...]}")
    extra = sorted(set(value) - {"unknown", "unknown_day", "unknown_month"})
    if extra:
        raise SpecError(path, f"{where}.{extra[0]}", "unknown key (allowed: unknown)")
    if "unknown" in value:
        if set(value) != {"unknown"}:
            raise SpecError(path, where, "give unknown, or unknown_day/unknown_month, not both")
        found = value["unknown"]
    else:
        found = [value[k] for k in ("unknown_day", "unknown_month") if k in value]
        found = [x for v in found for x in (v if isinstance(v, list) else [v])]
    if not isinstance(found, list) or not all(isinstance(x, str) for x in found):
        raise SpecError(path, where, 'expected a list of texts, e.g. [UN, UNK, "--", ""]')
    if any(x.strip() != x or re.search(r"\d", x) for x in found):
        raise SpecError(path, where, "an unknown spelling holds no digits or outer blanks")
    return tuple(dict.fromkeys(x.upper() for x in found))


def column_extras(
    path: Path, where: str, cdef: dict[str, Any], unknown: tuple[str, ...] = DEFAULT_UNKNOWN
) -> dict[str, Any]:
    """`min`/`max` of a raw_forms.yaml column, checked against its type: numbers for
    int/float, ISO dates (YYYY-MM-DD) for date columns; and its `format` parsed (a pattern
    the date parser cannot read is a spec error here, never a failed build later)."""
    out: dict[str, Any] = {}
    ctype = cdef.get("type", "str")
    if cdef.get("format") is not None:
        try:
            fmt = _parse_format(cdef["format"], unknown)
            check_column_format(fmt, ctype)
        except FormatError as exc:
            raise SpecError(path, f"{where}.format", str(exc)) from None
        out["date_format"] = fmt
    for bound in ("min", "max"):
        if cdef.get(bound) is None:
            continue
        value = cdef[bound]
        if ctype in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(path, f"{where}.{bound}", f"expected a number, got {value!r}")
            out[bound] = float(value)
        elif ctype == "date":
            if isinstance(value, _dt.date):
                value = value.isoformat()
            try:
                _dt.date.fromisoformat(str(value))
            except ValueError:
                raise SpecError(
                    path, f"{where}.{bound}", f"expected a date YYYY-MM-DD, got {value!r}"
                ) from None
            out[bound] = str(value)
        else:
            raise SpecError(path, f"{where}.{bound}", f"no bounds on a {ctype} column")
    return out


def form_extras(
    path: Path, where: str, form: dict[str, Any], columns: dict[str, ColumnSpec]
) -> dict[str, Any]:
    """`min_rows` and `checks` of a raw_forms.yaml form (see the module docstring)."""
    min_rows = form.get("min_rows", 1)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
        raise SpecError(path, f"{where}.min_rows", f"expected a whole number >= 0: {min_rows!r}")
    checks: list[Check] = []
    raw_checks = form.get("checks") or []
    if not isinstance(raw_checks, list):
        raise SpecError(path, f"{where}.checks", "expected a list of checks")
    for i, item in enumerate(raw_checks):
        at = f"{where}.checks[{i}]"
        ops = [op for op in CHECK_OPS if isinstance(item, dict) and op in item]
        if not isinstance(item, dict) or len(ops) != 1 or set(item) != {"column", ops[0]}:
            raise SpecError(
                path, at, "expected {column: COL, not_before|not_after: COL or {form, column}}"
            )
        column, other = item["column"], item[ops[0]]
        if column not in columns:
            raise SpecError(path, f"{at}.column", f"{column!r} is not a column of the form")
        if isinstance(other, str):
            if other not in columns:
                raise SpecError(path, f"{at}.{ops[0]}", f"{other!r} is not a column of the form")
            checks.append(Check(column, ops[0], other))  # type: ignore[arg-type]
        elif isinstance(other, dict) and set(other) == {"form", "column"}:
            checks.append(Check(column, ops[0], str(other["column"]), str(other["form"])))  # type: ignore[arg-type]
        else:
            raise SpecError(path, f"{at}.{ops[0]}", "expected a column or {form, column}")
    return {"min_rows": min_rows, "checks": tuple(checks)}


def check_references(path: Path, forms: dict[str, FormSpec]) -> None:
    """Cross-form checks name a form and column of the contract, compared by subject."""
    for form in forms.values():
        for i, check in enumerate(form.checks):
            if check.other_form is None:
                continue
            at = f"forms.{form.name}.checks[{i}]"
            other = forms.get(check.other_form)
            if other is None:
                raise SpecError(path, at, f"no form {check.other_form!r} in the contract")
            if check.other_column not in other.columns:
                raise SpecError(
                    path, at, f"{check.other_column!r} is not a column of {check.other_form!r}"
                )


# --- reading -----------------------------------------------------------------------------


def read_form(
    spec: FormSpec,
    raw_dir: Path,
    *,
    date_formats: dict[str, str | DateFormat] | None = None,
    deduped: bool = False,
) -> RawForm:
    """Read one raw export and check it against its contract (see the module docstring).

    A file-level problem (missing, not UTF-8, malformed, wrong header) is raised at once;
    every cell-level problem is reported through errors.collecting (all of them when a
    collector is active, the first otherwise). `deduped`: a dataset de-duplicates this form
    by a stated rule, so a repeated key is left to it."""
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
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    form = RawForm(spec=spec, path=path, frame=frame, rows=rows)
    with collecting():  # every problem of this file (joins the caller's collector, if any)
        _check_text(form)
        _check_contract(form, date_formats or {}, deduped)
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
    frame = _read_csv_arrow(path)
    if frame is not None:
        return frame
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
        # pyarrow's parser does not say which line broke (nor reads a line break inside a
        # quoted field); the C parser does.
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
        except UnicodeDecodeError as exc:
            raise _not_utf8(path) from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise InputError(path, f"malformed CSV: {exc}") from exc


def _read_csv_arrow(path: Path) -> pd.DataFrame | None:
    """The export read by pyarrow's CSV reader itself, with the options pandas' pyarrow engine
    gives it for the read_csv call below (every column text, nothing read as missing): the
    same frame, without pandas' pass over the table. None when pyarrow cannot read the file
    (malformed, not UTF-8: the pandas path names the line or the bytes) or when pandas
    would rename a column (an empty or repeated header name: "Unnamed: 2", "AETERM.1")."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        convert = pacsv.ConvertOptions(
            null_values=[], strings_can_be_null=False, default_column_type=pa.large_string()
        )
    except TypeError:  # pyarrow < 25 cannot type every column at once: pandas' path reads
        return None
    try:
        table = pacsv.read_csv(path, convert_options=convert)
    except Exception:  # whatever pyarrow refuses, pandas' path reads or names
        return None
    names = table.column_names
    if "" in names or len(set(names)) != len(names):
        return None
    return table.to_pandas()


def _check_text(form: RawForm) -> None:
    """Control characters are errors; line breaks/tabs become a space (logged per record);
    blanks around a value are noise in every EDC export, and an all-blank cell is missing.

    A form repeats itself (a visit date on every lab record), so each column is factorized
    once and everything here and in _check_contract is worked out per distinct value and
    broadcast through the codes (form.distinct); rows are looked at only when one is hit.
    The work on every record (encoding each column, and rebuilding a column whose values
    were trimmed) is Arrow's, done for the form's columns on two threads; what is checked
    and reported is decided here, column by column in the contract's order."""
    frame = form.frame
    columns = list(frame.columns)
    encoded = threaded(partial(factorize_text, narrow=True), [frame[col] for col in columns])
    trimmed: list[tuple[str, np.ndarray, np.ndarray, pd.Series]] = []
    for col, (codes, uniques) in zip(columns, encoded, strict=True):
        s = frame[col]
        distinct = pd.Series(uniques, dtype="string")
        if distinct.str.contains(CONTROL, regex=True).any():
            control = s.str.contains(CONTROL, regex=True).fillna(False).astype(bool)
            _raise(
                form,
                control,
                col,
                "control character in text (NUL or another C0 control): it must not reach a "
                "submission dataset; fix the export",
            )
        if distinct.str.contains(LINE_BREAK, regex=True).any():
            breaks = s.str.contains(LINE_BREAK, regex=True).fillna(False).astype(bool)
            s = s.mask(breaks, s.str.replace(r"[\t\r\n]+", " ", regex=True))
            hit = form.rows[breaks.to_numpy()]
            form.notes.append(
                (
                    "line break or tab inside a value replaced by one space",
                    col,
                    int(breaks.sum()),
                    [f"{form.path.name} row {r}" for r in hit[:50].tolist()],
                )
            )
            codes, uniques = factorize_text(s, narrow=True)
            frame[col] = s
        read = pd.Series(uniques, dtype=s.dtype)
        values = read.str.strip()
        values = values.mask(values == "")
        if values.equals(read):
            form.distinct[col] = (codes, values)
            continue
        # A value had blanks around it, or is blank: the cleaned distinct values, factorized
        # again (" A" and "A" are one value now); each record's code follows (-1 stays -1).
        again, cleaned = pd.factorize(values)
        values = pd.Series(cleaned, dtype=s.dtype)
        form.distinct[col] = (codes, values)  # in column order; the codes follow below
        trimmed.append((col, codes, np.append(again, -1).astype(narrow_codes(len(values))), values))
    done = threaded(partial(_renumber, frame.index), trimmed)
    for (col, _, _, values), (codes, column) in zip(trimmed, done, strict=True):
        form.distinct[col] = (codes, values)
        frame[col] = column


def _renumber(
    index: pd.Index, trimmed: tuple[str, np.ndarray, np.ndarray, pd.Series]
) -> tuple[np.ndarray, pd.Series]:
    """A trimmed column's records: their codes into the cleaned distinct values (`new`: each
    old code's new one, its last entry -1's) and the column rebuilt from them."""
    _, codes, new, values = trimmed
    codes = new[codes]
    return codes, pd.Series(values.array.take(codes, allow_fill=True), index=index)


def _check_contract(
    form: RawForm, date_formats: dict[str, str | DateFormat], deduped: bool
) -> None:
    frame, spec = form.frame, form.spec
    if len(frame) < spec.min_rows:
        report(
            InputError(
                form.path,
                f"{len(frame)} data row(s); the contract requires at least {spec.min_rows} "
                f"for form {spec.name!r} (min_rows in raw_forms.yaml; an empty export is "
                "usually a failed export)",
                row=0,
            )
        )
    elif len(frame) == 0:
        form.notes.append((f"form {spec.name!r} is empty (min_rows: 0 allows it)", "", 0, []))
    parsed = _iso_by_format(form, date_formats)
    for col, cspec in spec.columns.items():
        values = frame[col]
        codes, distinct = form.distinct[col]
        # A test of the distinct values (null: not hit), as a mask of the records.
        each = partial(_broadcast_mask, codes=codes, index=frame.index)
        if cspec.required:
            _raise(form, values.isna(), col, "required value is missing")
        if cspec.values:
            # A coded answer outside its codes (ZZZ in a Y/N field) must stop the build: a
            # rule testing `eq: Y` would otherwise read it as N without a word.
            allowed = list(cspec.values)
            _raise(form, each(~distinct.isin(allowed)), col, f"not one of {allowed}")
        if cspec.type in ("int", "float"):
            num = pd.to_numeric(distinct, errors="coerce")
            _raise(form, each(num.isna()), col, f"not a number ({cspec.type})")
            _raise(
                form,
                each(num.notna() & np.isinf(num.fillna(0))),
                col,
                f"not a finite number ({cspec.type}): XPT cannot hold it",
            )
            finite = num.where(~np.isinf(num.fillna(0)))
            if cspec.type == "int":
                frac = finite.notna() & (finite != np.floor(finite.fillna(0)))
                _raise(form, each(frac), col, "not a whole number (int)")
            if cspec.min is not None:
                _raise(
                    form, each(finite < cspec.min), col, f"below the declared minimum {cspec.min:g}"
                )
            if cspec.max is not None:
                _raise(
                    form, each(finite > cspec.max), col, f"above the declared maximum {cspec.max:g}"
                )
        elif cspec.type in ("date", "datetime") and col in date_formats:
            where = Located(str(form.path), col, form.rows)
            iso = (
                parsed[col] if col in parsed else _iso_distinct(distinct, date_formats[col], where)
            )
            if iso is None:  # a bad date: located in the whole column (all of them)
                from cdiscforge.dates import to_iso8601

                form.iso[col] = to_iso8601(values, date_formats[col], where)
                early, late = _span(form.iso[col])
            else:
                form.iso_distinct[col] = iso
                form.iso.later(col, iso, codes, frame.index)
                early, late = _span_distinct(iso)
            test = _no_change if iso is None else each
            if cspec.min is not None:
                _raise(form, test(late < str(cspec.min)), col, f"before the plausible {cspec.min}")
            if cspec.max is not None:
                _raise(form, test(early > str(cspec.max)), col, f"after the plausible {cspec.max}")
    if spec.key and not deduped:
        _check_key(form)
    for check in spec.checks:
        if check.other_form is None:
            if check.column in form.iso_distinct and check.other_column in form.iso_distinct:
                o_codes, o_raw = form.distinct[check.other_column]
                o_early, o_late = _span_distinct(form.iso_distinct[check.other_column])
                _compare_distinct(form, check, o_codes, o_early, o_late, o_raw, check.other_column)
            else:
                _compare(form, check, form.iso.get(check.other_column), None)


def _span(iso: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Earliest and latest day a (possibly partial) ISO date can be, as comparable text
    (worked out per distinct date and broadcast)."""
    codes, uniques = pd.factorize(iso.astype("string").str.slice(0, 10))
    if not len(uniques):
        empty = pd.Series(pd.NA, index=iso.index, dtype="string")
        return empty, empty
    early, late = _span_distinct(pd.Series(uniques, dtype="string"))
    return _broadcast(early, codes, iso.index), _broadcast(late, codes, iso.index)


def _span_distinct(iso: pd.Series) -> tuple[pd.Series, pd.Series]:
    """_span of distinct ISO dates (aligned with them, not broadcast)."""
    text = iso.astype("string").str.slice(0, 10)
    year = (text.str.len() == 4).fillna(False).astype(bool)
    month = (text.str.len() == 7).fillna(False).astype(bool)
    early = text.mask(year, text + "-01-01").mask(month, text + "-01")
    late = text.mask(year, text + "-12-31").mask(month, text + "-31")
    return early, late


def _broadcast(values: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Per-distinct `values` as a column of the records (`codes` -1: missing)."""
    return pd.Series(values.array.take(codes, allow_fill=True), index=index)


def _broadcast_mask(hit: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """A test of the distinct values (null: not hit) as a mask of the records."""
    flags = np.append(hit.fillna(False).to_numpy(dtype=bool), False)  # code -1: False
    return pd.Series(flags[codes], index=index)


def _no_change(hit: pd.Series) -> pd.Series:
    return hit


def _iso_by_format(
    form: RawForm, date_formats: dict[str, str | DateFormat]
) -> dict[str, pd.Series]:
    """The distinct dates of the form's date columns that share a format, converted in one
    call (each call has a fixed cost larger than a few hundred dates); a group holding a bad
    date is left out (each of its columns is then converted, and its errors located, alone)."""
    groups: dict[str, list[str]] = {}
    for col, cspec in form.spec.columns.items():
        if cspec.type in ("date", "datetime") and col in date_formats:
            groups.setdefault(repr(date_formats[col]), []).append(col)
    out: dict[str, pd.Series] = {}
    for columns in groups.values():
        if len(columns) < 2:
            continue
        parts = [form.distinct[c][1] for c in columns]
        where = Located(str(form.path), columns[0])
        iso = _iso_distinct(pd.concat(parts, ignore_index=True), date_formats[columns[0]], where)
        if iso is None:
            continue
        start = 0
        for col, part in zip(columns, parts, strict=True):
            out[col] = iso.iloc[start : start + len(part)].reset_index(drop=True)
            start += len(part)
    return out


def _iso_distinct(distinct: pd.Series, fmt: str | DateFormat, where: Located) -> pd.Series | None:
    """ISO 8601 text of each distinct collected date, or None when one is bad (the caller
    then converts the whole column, which names every bad record)."""
    from cdiscforge.dates import to_iso8601

    try:
        with raising():  # positions in `distinct` are not rows: never collect from here
            return to_iso8601(distinct, fmt, Located(where.file, where.column))
    except InputError:
        return None


def _check_key(form: RawForm) -> None:
    """Every record repeating an earlier record's key, with the first record's row."""
    key = list(form.spec.key)
    frame = form.frame
    dup = _duplicated([form.distinct[k] for k in key], len(frame))
    if not dup.any():
        return
    rows = pd.Series(form.rows, index=frame.index)
    first = rows.groupby([frame[k] for k in key], dropna=False, sort=False).transform("min")
    shown = frame[key].astype("string").fillna("").agg("/".join, axis=1)
    problems = (
        f"duplicate record key {'/'.join(key)} (declared unique in raw_forms.yaml): same as row "
        + first.astype("string")
    )
    _raise_rows(form, dup, "+".join(key), shown, problems)


def _duplicated(columns: list[tuple[np.ndarray, pd.Series]], n: int) -> np.ndarray:
    """frame.duplicated(key, keep="first") of a form's `n` records, from the key columns'
    codes (equal codes, equal values; -1 missing): one integer per record
    (vectorise.combine_codes). A key is almost
    always unique, which a table of the integers seen shows in one pass when they are few
    enough (the joint export's key at 10,000 subjects: 8.8 million records, ~17 million
    combinations): a flag per integer (a byte, not bincount's 8-byte count: a tenth of the
    memory touched, ~10x faster), n flags set exactly when none repeats; without hashing
    millions of integers. Otherwise, and to find which records repeat one, they are
    numbered in order of first appearance."""
    combined, span = combine_codes(((c + 1, len(v) + 1) for c, v in columns), n)
    none = np.zeros(n, dtype=bool)
    if not n:
        return none
    if span <= max(4 * n, 2**16):
        seen = np.zeros(span, dtype=bool)
        seen[combined] = True
        if np.count_nonzero(seen) == n:
            return none
    codes, distinct = pd.factorize(combined)
    if len(distinct) == n:
        return none
    repeated = np.ones(n, dtype=bool)
    repeated[first_rows(codes)] = False
    return repeated


def check_relations(forms: dict[str, RawForm]) -> None:
    """Cross-form `checks:` (every form read): compared by subject (see module docstring).
    Each other side (form, column, direction) is worked out once: the bundled study's ten
    forms are all checked against the enrolment's consent date."""
    sides: dict[tuple[str, str, str], tuple[pd.Series, pd.Series]] = {}
    for form in forms.values():
        for check in form.spec.checks:
            if check.other_form is None or check.other_form not in forms:
                continue
            other = forms[check.other_form]
            if check.other_column not in other.iso:
                continue
            side = (check.other_form, check.other_column, check.op)
            if side not in sides:
                sides[side] = _other_side(other, check.other_column, check.op)
            agg, raw_by = sides[side]
            if check.column in form.iso_distinct:  # by distinct subject (a form repeats them)
                codes, subjects = _subjects(form)
                bound_of = subjects.map(agg).astype("string")
                name = f"{other.spec.name}.{check.other_column} of the same subject"
                raw_of = subjects.map(raw_by)
                _compare_distinct(form, check, codes, bound_of, bound_of, raw_of, name)
            else:
                mine = form.spec.subject_key(form.frame)
                _compare(form, check, mine.map(agg), other, mine.map(raw_by))


def _other_side(other: RawForm, column: str, op: str) -> tuple[pd.Series, pd.Series]:
    """Per subject of `other`, the earliest (`not_before`) or latest day its `column` can be,
    and the first raw value it has there (what the error message shows)."""
    early, late = _span(other.iso[column])
    bound = early if op == "not_before" else late
    subj = other.spec.subject_key(other.frame)
    frame = pd.DataFrame({"s": subj.to_numpy(), "b": bound.to_numpy()}).dropna()
    by = frame.groupby("s")["b"]
    agg = by.min() if op == "not_before" else by.max()
    raw = pd.DataFrame({"s": subj.to_numpy(), "v": other.frame[column].to_numpy()}).dropna()
    return agg, raw.drop_duplicates("s").set_index("s")["v"]


def _subjects(form: RawForm) -> tuple[np.ndarray, pd.Series]:
    """FormSpec.subject_key of each record as codes into the distinct keys (-1: missing);
    a one-column key straight from that column's codes (its values are trimmed already)."""
    columns = [c for _, c in form.spec.subject_columns] or [form.spec.subject]
    if len(columns) == 1 and columns[0] in form.distinct:
        codes, values = form.distinct[columns[0]]
        return codes, values.astype("string")
    key = form.spec.subject_key(form.frame)
    codes, subjects = pd.factorize(key)
    return codes, pd.Series(subjects, dtype=key.dtype)


def _compare_distinct(
    form: RawForm,
    check: Check,
    o_codes: np.ndarray,
    o_early: pd.Series,
    o_late: pd.Series,
    o_raw: pd.Series,
    name: str,
) -> None:
    """_compare, on distinct values: `column`'s distinct ISO dates (form.iso_distinct) against
    the other side's (o_early, o_late, o_raw: aligned with the record codes `o_codes`). The
    texts are ranked once (equal text, equal rank) and the records compare integers."""
    codes = form.distinct[check.column][0]
    early, late = _span_distinct(form.iso_distinct[check.column])
    mine, theirs = (late, o_early) if check.op == "not_before" else (early, o_late)
    ranks, ranked = pd.factorize(
        pd.concat([mine, theirs], ignore_index=True).astype("string"), sort=True
    )
    # A missing date (rank -1) or record value (code -1) is never on the wrong side: it is
    # given the rank that fails the comparison, so each record costs two int32 lookups
    # and one comparison (8.8 million joint records at 10,000 subjects).
    before = check.op == "not_before"
    never_mine, never_theirs = (len(ranked), -1) if before else (-1, len(ranked))
    a = _ranks_of(ranks[: len(mine)], never_mine)[codes]
    b = _ranks_of(ranks[len(mine) :], never_theirs)[o_codes]
    bad = a < b if before else a > b
    if not bad.any():
        return
    word = "before" if check.op == "not_before" else "after"
    positions = np.flatnonzero(bad)
    shown = pd.Series(o_raw.array.take(o_codes[positions], allow_fill=True)).astype("string")
    problems = np.empty(len(bad), dtype=object)
    problems[positions] = (f"{check.column} is {word} {name} (" + shown.fillna("") + ")").to_numpy(
        dtype=object
    )
    _raise_rows(form, bad, check.column, form.frame[check.column], pd.Series(problems))


def _ranks_of(ranks: np.ndarray, never: int) -> np.ndarray:
    """Ranks of distinct values as int32, `never` for a missing one (-1) and, last, for a
    record's code -1."""
    return np.append(np.where(ranks < 0, never, ranks), never).astype(np.int32)


def _compare(
    form: RawForm,
    check: Check,
    other_iso: pd.Series | None,
    other: RawForm | None,
    other_raw: pd.Series | None = None,
) -> None:
    """`column` not before / not after the other value: an error only when certain (every
    day a partial date can be is on the wrong side)."""
    mine = form.iso.get(check.column)
    if mine is None or other_iso is None:
        return
    early, late = _span(mine)
    if other is None:  # same record: the other column's span
        o_early, o_late = _span(other_iso)
        other_raw = form.frame[check.other_column]
        name = check.other_column
    else:  # already the subject's earliest (not_before) / latest (not_after) day
        o_early = o_late = other_iso.astype("string")
        name = f"{other.spec.name}.{check.other_column} of the same subject"
    if check.op == "not_before":
        bad, word = late < o_early, "before"
    else:
        bad, word = early > o_late, "after"
    bad = bad.fillna(False).astype(bool).to_numpy()
    if not bad.any():
        return
    assert other_raw is not None
    problems = f"{check.column} is {word} {name} (" + other_raw.astype("string").fillna("") + ")"
    _raise_rows(form, bad, check.column, form.frame[check.column], problems)


def _raise(form: RawForm, mask: pd.Series, column: str, problem: str) -> None:
    raise_first(mask, form.frame[column], Located(str(form.path), column, form.rows), problem)


def _raise_rows(
    form: RawForm, mask: np.ndarray, column: str, values: pd.Series, problems: pd.Series
) -> None:
    """Like _raise, with a problem text per record (naming the other value)."""
    from cdiscforge.errors import collector

    positions = np.flatnonzero(mask)
    found = collector()
    texts = problems.to_numpy(dtype=object)[positions]
    vals = values.to_numpy(dtype=object)[positions]
    if found is not None:
        found.add_rows(str(form.path), form.rows[positions], column, vals, texts)
        return
    more = f" ({len(positions) - 1} more rows like it)" if len(positions) > 1 else ""
    raise InputError(
        form.path, str(texts[0]) + more, row=int(form.rows[positions[0]]), column=column,
        value=vals[0],
    )  # fmt: skip


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

"""The Pinnacle 21 specification workbook: read one in, write one out.

Submission teams keep their dataset metadata in a P21-format Excel specification (sheets
Study, Datasets, Variables, ValueLevel, WhereClauses, Codelists, Dictionaries, Methods,
Comments, Documents) and reviewers QC metadata there. This module is the one home of that
format:

- `read_p21_spec(path)` reads a workbook into `P21Spec` (per dataset: label, class,
  structure, keys and its variables as `model.Variable`s, with method and comment texts
  resolved from their IDs; value-level rows with their where-clauses, composite ones kept
  whole). Every problem is a located InputError (file, sheet, Excel row, column, value), all
  of one workbook at once (exit 2). Sheets it does not know (a README, a change log) are
  ignored with a note; so are columns it does not know. The column names different P21
  versions use are accepted (`_COLUMNS`: "Description" or "Label", "Codelist" or
  "Controlled Terms", "Pages" or "CRF Pages", ...; origin "CRF" and "eDT" of Define 2.0
  templates read as Collected).
- `write_p21_spec(datasets, path, ...)` writes the dataset model (what define.xml says) as
  such a workbook, with fixed bytes (`cdiscforge.xlsx`); the build writes one per stage.
- `compare(workbook, ours)` lists where a workbook and our metadata differ, field by field;
  `apply_p21(spec, datasets, precedence)` settles those differences on built datasets.

Precedence (study.yaml `p21_spec: FILE.xlsx`, `p21_precedence: workbook | yaml`): mapping
rules always stay in the YAML, and the YAML decides which variables exist and their type
(the data a rule computes cannot change type because a cell says so). For every other
define-level field the workbook wins by default, because it is the document reviewers
approved; `p21_precedence: yaml` keeps the YAML's values instead. A blank workbook cell says
nothing and never overrides. Either way each difference is reported once in the build log.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cdiscforge.errors import InputError, collecting, report
from cdiscforge.model import (
    ORIGINS,
    Dataset,
    Dictionary,
    Document,
    StudyInfo,
    ValueLevel,
    Variable,
)
from cdiscforge.vectorise import used_categories

Precedence = Literal["workbook", "yaml"]

# ------------------------------------------------------------------------------- the format

# Sheet -> the columns it is written with (P21 Community's Define-XML 2.1 template order).
SHEETS: dict[str, list[str]] = {
    "Study": ["Attribute", "Value"],
    "Datasets": [
        "Dataset", "Description", "Class", "Sub Class", "Structure", "Purpose",
        "Key Variables", "Standard", "Has No Data", "Repeating", "Reference Data", "Comment",
        "Developer Notes",
    ],
    "Variables": [
        "Order", "Dataset", "Variable", "Label", "Data Type", "Length", "Significant Digits",
        "Format", "Mandatory", "Assigned Value", "Codelist", "Common", "Origin", "Source",
        "Pages", "Method", "Predecessor", "Role", "Has No Data", "Comment", "Developer Notes",
    ],
    "ValueLevel": [
        "Order", "Dataset", "Variable", "Where Clause", "Description", "Data Type", "Length",
        "Significant Digits", "Format", "Mandatory", "Assigned Value", "Codelist", "Origin",
        "Source", "Pages", "Method", "Predecessor", "Comment", "Developer Notes",
    ],
    "WhereClauses": ["ID", "Dataset", "Variable", "Comparator", "Value", "Comment"],
    "Codelists": [
        "ID", "Name", "NCI Codelist Code", "Data Type", "Terminology", "Comment", "Order",
        "Term", "NCI Term Code", "Decoded Value",
    ],
    "Dictionaries": ["ID", "Name", "Data Type", "Dictionary", "Version", "Href"],
    "Methods": [
        "ID", "Name", "Type", "Description", "Expression Context", "Expression Code",
        "Document", "Pages",
    ],
    "Comments": ["ID", "Description", "Document", "Pages"],
    "Documents": ["ID", "Title", "Href"],
}  # fmt: skip

# Other spellings of sheet names (normalised: lower case, letters and digits only).
_SHEET_ALIASES = {
    "domains": "Datasets", "datasetlevel": "Datasets", "variablelevel": "Variables",
    "valuelevelmetadata": "ValueLevel", "vlm": "ValueLevel", "codelist": "Codelists",
    "controlledterms": "Codelists", "externaldictionaries": "Dictionaries",
    "dictionary": "Dictionaries", "method": "Methods", "comment": "Comments",
    "document": "Documents", "whereclause": "WhereClauses",
}  # fmt: skip

# Column -> the other names P21 versions and house templates give it (normalised).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "Description": ("label", "datasetlabel", "description"),
    "Label": ("label", "variablelabel", "description"),
    "Key Variables": ("keyvariables", "keys", "key"),
    "Data Type": ("datatype", "type"),
    "Significant Digits": ("significantdigits", "sigdigits"),
    "Format": ("format", "displayformat"),
    "Codelist": ("codelist", "controlledterms", "controlledtermsorformat", "codelistid"),
    "Pages": ("pages", "crfpages", "page"),
    "Method": ("method", "methodid", "derivation"),
    "Comment": ("comment", "commentid"),
    "Where Clause": ("whereclause", "whereclauseid"),
    "Value": ("value", "values"),
    "Term": ("term", "codedvalue", "submissionvalue"),
    "Decoded Value": ("decodedvalue", "decode"),
    "NCI Codelist Code": ("ncicodelistcode", "codelistcode"),
    "NCI Term Code": ("ncitermcode", "termcode"),
    "Href": ("href", "location", "link"),
    "Dataset": ("dataset", "domain", "datasetname"),
    "Variable": ("variable", "variablename"),
    "Sub Class": ("subclass",),
}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "Datasets": ("Dataset", "Description"),
    "Variables": ("Dataset", "Variable", "Label", "Data Type"),
    "ValueLevel": ("Dataset", "Variable", "Where Clause"),
    "WhereClauses": ("ID", "Dataset", "Variable", "Comparator", "Value"),
    "Codelists": ("ID", "Term"),
    "Dictionaries": ("ID", "Dictionary"),
    "Methods": ("ID", "Description"),
    "Comments": ("ID", "Description"),
    "Documents": ("ID", "Href"),
}

CHAR_TYPES = {
    "text", "date", "datetime", "time", "partialdate", "partialtime", "partialdatetime",
    "incompletedatetime", "durationdatetime", "intervaldatetime", "char", "character", "string",
}  # fmt: skip
NUM_TYPES = {"integer", "float", "num", "numeric", "double"}
COMPARATORS = ("EQ", "NE", "LT", "LE", "GT", "GE", "IN", "NOTIN")
_ORIGIN_ALIASES = {"crf": "Collected", "edt": "Collected", "derived": "Derived"}
ORIGIN_SOURCES = ("Investigator", "Sponsor", "Subject", "Vendor")
_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")
_DATASET_RE = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
MAX_LABEL = 40


def _norm(text: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


# ------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class Condition:
    """One condition of a where-clause: `variable comparator values` (IN takes several)."""

    variable: str
    comparator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class WhereClause:
    """A where-clause: all its conditions hold (rows sharing an ID in WhereClauses: AND)."""

    id: str
    dataset: str
    conditions: tuple[Condition, ...]

    @property
    def simple(self) -> bool:
        """One `EQ` condition: what the dataset model's ValueLevel can state."""
        return len(self.conditions) == 1 and self.conditions[0].comparator == "EQ"

    def text(self) -> str:
        return " and ".join(
            f"{c.variable} {c.comparator} {', '.join(c.values)}" for c in self.conditions
        )


@dataclass(frozen=True)
class ValueLevelRow:
    """A row of the ValueLevel sheet: where `where` holds, `variable` has this metadata."""

    dataset: str
    variable: str
    where: WhereClause
    label: str | None = None
    codelist: str | None = None
    data_type: str | None = None
    length: int | None = None
    origin: str | None = None
    method: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class Codelist:
    """A codelist of the Codelists sheet: its terms (value, NCI code, decode) in order."""

    id: str
    name: str
    nci_code: str | None
    data_type: str
    terms: tuple[tuple[str, str | None, str | None], ...]


@dataclass
class P21Dataset:
    """What a workbook (or our model) says about one dataset."""

    name: str
    label: str
    klass: str = ""
    structure: str = ""
    keys: list[str] = field(default_factory=list)
    standard: str = ""
    subclass: str | None = None
    comment: str | None = None
    variables: list[Variable] = field(default_factory=list)
    value_level: list[ValueLevelRow] = field(default_factory=list)


@dataclass
class P21Spec:
    """A whole workbook, references resolved (method / comment IDs to their texts)."""

    file: str
    study: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, P21Dataset] = field(default_factory=dict)
    codelists: dict[str, Codelist] = field(default_factory=dict)
    dictionaries: dict[str, Dictionary] = field(default_factory=dict)
    documents: dict[str, Document] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- reading


@dataclass
class _Sheet:
    """One sheet's rows as {canonical column: value}, with where each came from."""

    file: str  # the location errors name: "<workbook> [sheet]"
    title: str
    header: dict[str, tuple[int, str]]  # canonical column -> (0-based index, header text)
    rows: list[tuple[int, dict[str, Any]]]  # (Excel row number, values)

    def where(self, column: str) -> str:
        from openpyxl.utils import get_column_letter

        index, text = self.header.get(column, (None, column))
        return f"{text} ({get_column_letter(index + 1)})" if index is not None else text

    def error(self, row: int, column: str, value: Any, problem: str) -> None:
        report(InputError(self.file, problem, row=row, column=self.where(column), value=value))


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _read_sheet(ws: Any, file: str, canonical: str, notes: list[str]) -> _Sheet:
    """The header (first non-empty row) and the data rows below it; columns matched by
    name in any spelling `_COLUMNS` knows, unknown columns noted and ignored."""
    loc = f"{file} [{ws.title}]"
    rows = list(ws.iter_rows(values_only=True))
    start = next((i for i, r in enumerate(rows) if any(_cell(v) is not None for v in r)), None)
    sheet = _Sheet(loc, ws.title, {}, [])
    if start is None:
        return sheet
    wanted = SHEETS[canonical]
    lookup: dict[str, str] = {}
    for col in wanted:
        for alias in (_norm(col), *_COLUMNS.get(col, ())):
            lookup.setdefault(alias, col)
    # A name two columns share ("description") goes to the one this sheet has.
    if canonical == "Variables":
        lookup["description"] = "Label"
    extra = []
    for i, text in enumerate(rows[start]):
        text = _cell(text)
        if text is None:
            continue
        col = lookup.get(_norm(text))
        if col is None or col in sheet.header:
            extra.append(str(text))
            continue
        sheet.header[col] = (i, str(text))
    if extra:
        notes.append(f"{loc}: columns not in the P21 format ignored: {', '.join(extra)}")
    for col in _REQUIRED.get(canonical, ()):
        if col not in sheet.header:
            report(InputError(loc, f"required column {col!r} is missing", row=start + 1,
                              column=col))  # fmt: skip
    for n, values in enumerate(rows[start + 1 :], start=start + 2):
        record = {
            col: _cell(values[i]) if i < len(values) else None
            for col, (i, _) in sheet.header.items()
        }
        if any(v is not None for v in record.values()):
            sheet.rows.append((n, record))
    return sheet


def _int(sheet: _Sheet, row: int, col: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        sheet.error(row, col, value, f"must be a whole number from {low} to {high}")
        return None
    try:
        number = int(value)
    except ValueError:
        sheet.error(row, col, value, f"must be a whole number from {low} to {high}")
        return None
    if not low <= number <= high:
        sheet.error(row, col, value, f"must be a whole number from {low} to {high}")
        return None
    return number


def _label(sheet: _Sheet, row: int, col: str, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if len(text) > MAX_LABEL:
        sheet.error(row, col, value, f"{len(text)} characters; XPT v5 allows {MAX_LABEL}")
    elif not text.isascii():
        sheet.error(row, col, value, "must be ASCII (XPT v5)")
    return text


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def read_p21_spec(path: Path) -> P21Spec:
    """Read a P21-format specification workbook; every problem a located InputError, all
    of them raised together (see the module docstring)."""
    path = Path(path)
    from openpyxl import load_workbook

    if not path.is_file():
        raise InputError(path, "workbook not found")
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputError(path, f"not an .xlsx workbook ({exc.__class__.__name__}: {exc})") from exc
    spec = P21Spec(file=str(path))
    with collecting():
        try:
            _read(wb, path, spec)
        finally:
            wb.close()
    return spec


def _read(wb: Any, path: Path, spec: P21Spec) -> None:
    sheets: dict[str, _Sheet] = {}
    by_name = {_norm(s): s for s in SHEETS}
    for ws in wb.worksheets:
        key = _norm(ws.title)
        canonical = by_name.get(key) or _SHEET_ALIASES.get(key)
        if canonical is None or canonical in sheets:
            spec.notes.append(f"{path} [{ws.title}]: not a P21 specification sheet, ignored")
            continue
        sheets[canonical] = _read_sheet(ws, str(path), canonical, spec.notes)
    for required in ("Datasets", "Variables"):
        if required not in sheets:
            found = ", ".join(ws.title for ws in wb.worksheets)
            report(InputError(path, f"no {required} sheet (sheets: {found})"))
    empty = _Sheet(str(path), "", {}, [])
    get = lambda name: sheets.get(name, empty)  # noqa: E731

    for _, rec in get("Study").rows:
        if rec.get("Attribute"):
            spec.study[str(rec["Attribute"])] = _text(rec.get("Value")) or ""
    methods = _id_texts(get("Methods"), "Description")
    comments = _id_texts(get("Comments"), "Description")
    _read_documents(get("Documents"), spec)
    _read_dictionaries(get("Dictionaries"), spec)
    _read_codelists(get("Codelists"), spec)
    _read_datasets(get("Datasets"), spec, comments)
    _read_variables(get("Variables"), spec, methods, comments)
    wheres = _read_where_clauses(get("WhereClauses"), spec)
    _read_value_level(get("ValueLevel"), spec, wheres, methods, comments)
    for ds in spec.datasets.values():
        names = {v.name for v in ds.variables}
        sheet = get("Datasets")
        for key in ds.keys:
            if key not in names and sheet.rows:
                row = next((n for n, r in sheet.rows if r.get("Dataset") == ds.name), 0)
                problem = f"key variable {key} is not a variable of {ds.name} (Variables)"
                sheet.error(row, "Key Variables", key, problem)


def _id_texts(sheet: _Sheet, column: str) -> dict[str, str | None]:
    """Texts by ID; an ID whose row is broken maps to None (reported once, here: a
    reference to it is not another error)."""
    out: dict[str, str | None] = {}
    for row, rec in sheet.rows:
        oid = _text(rec.get("ID"))
        if oid is None:
            sheet.error(row, "ID", None, "required")
            continue
        if oid in out:
            sheet.error(row, "ID", oid, "ID used twice")
            continue
        text = _text(rec.get(column))
        if text is None:
            sheet.error(row, column, None, "required")
        out[oid] = text
    return out


def _read_documents(sheet: _Sheet, spec: P21Spec) -> None:
    for row, rec in sheet.rows:
        key, href = _text(rec.get("ID")), _text(rec.get("Href"))
        if key is None or href is None:
            sheet.error(row, "ID" if key is None else "Href", None, "required")
            continue
        title = _text(rec.get("Title")) or key
        crf = _norm(key) in ("acrf", "crf") or "annotated" in title.lower()
        kind = "AnnotatedCRF" if crf else "SupplementalDoc"
        spec.documents[key] = Document(key, kind, title, href)  # type: ignore[arg-type]


def _read_dictionaries(sheet: _Sheet, spec: P21Spec) -> None:
    for row, rec in sheet.rows:
        key = _text(rec.get("ID"))
        if key is None:
            sheet.error(row, "ID", None, "required")
            continue
        name = _text(rec.get("Dictionary")) or _text(rec.get("Name")) or key
        version = _text(rec.get("Version"))
        if version is None:
            sheet.error(row, "Version", None, "required (define.xml states the version)")
        spec.dictionaries[key] = Dictionary(key, name, version or "", _text(rec.get("Href")))


def _read_codelists(sheet: _Sheet, spec: P21Spec) -> None:
    terms: dict[str, list[tuple[str, str | None, str | None]]] = {}
    heads: dict[str, dict[str, Any]] = {}
    for row, rec in sheet.rows:
        key = _text(rec.get("ID"))
        if key is None:
            sheet.error(row, "ID", None, "required")
            continue
        term = _text(rec.get("Term"))
        if term is None:
            sheet.error(row, "Term", None, "required")
            continue
        dtype = _text(rec.get("Data Type"))
        if dtype is not None and _norm(dtype) not in CHAR_TYPES | NUM_TYPES:
            sheet.error(
                row, "Data Type", dtype, "not a Define-XML data type (text, integer, float)"
            )
        heads.setdefault(key, rec)
        seen = terms.setdefault(key, [])
        if any(t[0] == term for t in seen):
            sheet.error(row, "Term", term, f"term listed twice in codelist {key}")
            continue
        seen.append((term, _text(rec.get("NCI Term Code")), _text(rec.get("Decoded Value"))))
    for key, items in terms.items():
        head = heads[key]
        spec.codelists[key] = Codelist(
            key, _text(head.get("Name")) or key, _text(head.get("NCI Codelist Code")),
            _text(head.get("Data Type")) or "text", tuple(items),
        )  # fmt: skip


def _read_datasets(sheet: _Sheet, spec: P21Spec, comments: dict[str, str | None]) -> None:
    for row, rec in sheet.rows:
        name = _text(rec.get("Dataset"))
        if name is None or not _DATASET_RE.match(name):
            sheet.error(row, "Dataset", name, "a dataset name is 1-8 upper-case letters and "
                        "digits, starting with a letter")  # fmt: skip
            continue
        if name in spec.datasets:
            sheet.error(row, "Dataset", name, "dataset listed twice")
            continue
        label = _label(sheet, row, "Description", rec.get("Description"))
        if label is None:
            sheet.error(row, "Description", None, "required (the dataset label)")
        keys = re.split(r"[,\s]+", str(rec.get("Key Variables") or "").strip())
        spec.datasets[name] = P21Dataset(
            name=name, label=label or "", klass=_text(rec.get("Class")) or "",
            structure=_text(rec.get("Structure")) or "", keys=[k for k in keys if k],
            standard=_text(rec.get("Standard")) or "", subclass=_text(rec.get("Sub Class")),
            comment=_ref(sheet, row, "Comment", rec.get("Comment"), comments, "Comments"),
        )  # fmt: skip


def _ref(
    sheet: _Sheet, row: int, col: str, value: Any, known: dict[str, str | None], where: str
) -> str | None:
    """The text an ID refers to (a method, a comment); an unknown ID is an error."""
    if value is None:
        return None
    key = str(value)
    if key not in known:
        sheet.error(row, col, key, f"no such ID in the {where} sheet")
        return None
    return known[key]


def _origin(sheet: _Sheet, row: int, value: Any) -> tuple[str | None, str | None]:
    """A Define-XML 2.1 origin type (and a Source the old spelling implies)."""
    if value is None:
        return None, None
    text = str(value)
    if text in ORIGINS:
        return text, None
    key = _norm(text)
    if key in _ORIGIN_ALIASES:  # Define 2.0 templates: CRF, eDT
        return _ORIGIN_ALIASES[key], ("Vendor" if key == "edt" else None)
    match = next((o for o in ORIGINS if _norm(o) == key), None)
    if match:
        return match, None
    sheet.error(row, "Origin", text, f"not a Define-XML 2.1 origin ({', '.join(ORIGINS)})")
    return None, None


def _vtype(sheet: _Sheet, row: int, value: Any) -> str | None:
    if value is None:
        return None
    key = _norm(value)
    if key in CHAR_TYPES:
        return "Char"
    if key in NUM_TYPES:
        return "Num"
    sheet.error(row, "Data Type", value, "not a Define-XML data type (text, integer, float, "
                "date, datetime, ...)")  # fmt: skip
    return None


def _codelist_ref(
    sheet: _Sheet, row: int, value: Any, spec: P21Spec
) -> tuple[str | None, str | None]:
    """(codelist, dictionary) a Codelist cell names: an ID of Codelists or Dictionaries."""
    if value is None:
        return None, None
    key = str(value)
    if key in spec.dictionaries:
        return None, key
    if key in spec.codelists:
        return _ct_name(spec.codelists[key]), None
    sheet.error(row, "Codelist", key, "no such ID in the Codelists or Dictionaries sheet")
    return None, None


def _ct_name(codelist: Codelist) -> str:
    """The name the rest of cdiscforge knows a codelist by: a workbook's own ID ("CL.SEX",
    "C66731") becomes the CDISC short name (SEX) through its NCI code; a sponsor codelist
    keeps its ID."""
    from cdiscforge import ct

    for ref in (codelist.nci_code, codelist.id):
        if ref and ct.has_codelist(ref):
            return ct.codelist(ref).short_name
    return codelist.id


def _read_variables(
    sheet: _Sheet, spec: P21Spec, methods: dict[str, str | None], comments: dict[str, str | None]
) -> None:
    ordered: dict[str, list[tuple[float, Variable]]] = {}
    for row, rec in sheet.rows:
        ds_name, name = _text(rec.get("Dataset")), _text(rec.get("Variable"))
        if ds_name not in spec.datasets:
            sheet.error(row, "Dataset", ds_name, "not a dataset of the Datasets sheet")
            continue
        if name is None or not _NAME_RE.match(name):
            sheet.error(row, "Variable", name, "a variable name is 1-8 upper-case letters, "
                        "digits or _, starting with a letter")  # fmt: skip
            continue
        if any(v.name == name for _, v in ordered.get(ds_name, [])):
            sheet.error(row, "Variable", name, f"{ds_name}.{name} listed twice")
            continue
        label = _label(sheet, row, "Label", rec.get("Label"))
        if label is None:
            sheet.error(row, "Label", None, "required")
        vtype = _vtype(sheet, row, rec.get("Data Type"))
        if vtype is None and rec.get("Data Type") is None:
            sheet.error(row, "Data Type", None, "required")
        origin, implied_source = _origin(sheet, row, rec.get("Origin"))
        source = _text(rec.get("Source")) or implied_source
        if source is not None and source not in ORIGIN_SOURCES:
            sheet.error(row, "Source", source, f"not a Define-XML 2.1 source "
                        f"({', '.join(ORIGIN_SOURCES)})")  # fmt: skip
            source = None
        codelist, dictionary = _codelist_ref(sheet, row, rec.get("Codelist"), spec)
        order = _int(sheet, row, "Order", rec.get("Order"), 1, 100_000)
        pages = str(rec.get("Pages") or "").replace(",", " ").split()
        var = Variable(
            name=name, label=label or name, type=vtype or "Char",  # type: ignore[arg-type]
            length=_int(sheet, row, "Length", rec.get("Length"), 1, 200),
            origin=origin or "", source=source, codelist=codelist,
            format=_text(rec.get("Format")),
            significant_digits=_int(sheet, row, "Significant Digits",
                                    rec.get("Significant Digits"), 0, 99),
            method=_ref(sheet, row, "Method", rec.get("Method"), methods, "Methods"),
            comment=_ref(sheet, row, "Comment", rec.get("Comment"), comments, "Comments"),
            predecessor=_text(rec.get("Predecessor")), role=_text(rec.get("Role")),
            core="Req" if _norm(rec.get("Mandatory") or "") in ("yes", "y") else None,
            crf_pages=tuple(pages), dictionary=dictionary,
        )  # fmt: skip
        ordered.setdefault(ds_name, []).append((order if order is not None else row, var))
    for ds_name, items in ordered.items():
        spec.datasets[ds_name].variables = [v for _, v in sorted(items, key=lambda t: t[0])]


def _read_where_clauses(sheet: _Sheet, spec: P21Spec) -> dict[str, WhereClause | None]:
    """Where-clauses by ID; the rows sharing an ID are one composite clause (AND). A clause
    with a broken row maps to None (reported once: a ValueLevel row naming it is not)."""
    conditions: dict[str, list[Condition]] = {}
    datasets: dict[str, str] = {}
    broken: set[str] = set()
    for row, rec in sheet.rows:
        oid = _text(rec.get("ID"))
        if oid is None:
            sheet.error(row, "ID", None, "required")
            continue
        condition = _condition(sheet, row, rec, spec, oid, datasets)
        if condition is None:
            broken.add(oid)
        else:
            conditions.setdefault(oid, []).append(condition)
    out: dict[str, WhereClause | None] = dict.fromkeys(broken)
    for oid, conds in conditions.items():
        if oid not in broken:
            out[oid] = WhereClause(oid, datasets[oid], tuple(conds))
    return out


def _condition(
    sheet: _Sheet, row: int, rec: dict[str, Any], spec: P21Spec, oid: str,
    datasets: dict[str, str],
) -> Condition | None:  # fmt: skip
    ds_name, var = _text(rec.get("Dataset")), _text(rec.get("Variable"))
    ds = spec.datasets.get(ds_name or "")
    if ds is None:
        sheet.error(row, "Dataset", ds_name, "not a dataset of the Datasets sheet")
        return None
    if datasets.setdefault(oid, ds.name) != ds.name:
        sheet.error(row, "Dataset", ds_name, f"where-clause {oid} spans two datasets")
        return None
    if var is None or not any(v.name == var for v in ds.variables):
        sheet.error(row, "Variable", var, f"not a variable of {ds.name} (Variables)")
        return None
    comparator = _text(rec.get("Comparator"))
    comp = (comparator or "").upper()
    if comp not in COMPARATORS:
        sheet.error(row, "Comparator", comparator, f"not one of {', '.join(COMPARATORS)}")
        return None
    value = _text(rec.get("Value"))
    if value is None:
        sheet.error(row, "Value", None, "required")
        return None
    values = tuple(v.strip() for v in value.split(",")) if comp in ("IN", "NOTIN") else (value,)
    return Condition(var, comp, values)


def _read_value_level(
    sheet: _Sheet,
    spec: P21Spec,
    wheres: dict[str, WhereClause | None],
    methods: dict[str, str | None],
    comments: dict[str, str | None],
) -> None:
    for row, rec in sheet.rows:
        ds = spec.datasets.get(_text(rec.get("Dataset")) or "")
        if ds is None:
            sheet.error(row, "Dataset", rec.get("Dataset"), "not a dataset of the Datasets sheet")
            continue
        name = _text(rec.get("Variable"))
        var = next((v for v in ds.variables if v.name == name), None)
        if var is None:
            sheet.error(row, "Variable", name, f"not a variable of {ds.name} (Variables)")
            continue
        wid = _text(rec.get("Where Clause"))
        where = wheres.get(wid or "")
        if where is None and wid in wheres:
            continue  # the clause's own row is reported
        if where is None:
            sheet.error(row, "Where Clause", wid, "no such ID in the WhereClauses sheet")
            continue
        codelist, _ = _codelist_ref(sheet, row, rec.get("Codelist"), spec)
        origin, _ = _origin(sheet, row, rec.get("Origin"))
        dtype = rec.get("Data Type")
        if dtype is not None:
            _vtype(sheet, row, dtype)
        vlm = ValueLevelRow(
            dataset=ds.name, variable=var.name, where=where,
            label=_label(sheet, row, "Description", rec.get("Description")), codelist=codelist,
            data_type=_text(dtype), length=_int(sheet, row, "Length", rec.get("Length"), 1, 200),
            origin=origin,
            method=_ref(sheet, row, "Method", rec.get("Method"), methods, "Methods"),
            comment=_ref(sheet, row, "Comment", rec.get("Comment"), comments, "Comments"),
        )  # fmt: skip
        ds.value_level.append(vlm)
        if where.simple:  # what the dataset model (define.xml's ValueLevel) states
            cond = where.conditions[0]
            var.value_level = (
                *var.value_level,
                ValueLevel(cond.variable, cond.values[0], codelist, vlm.label, vlm.method),
            )


# ------------------------------------------------------------------------------- writing


def _pages(var: Variable) -> str:
    return " ".join(var.crf_pages)


def _oid(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_]", "_", p) for p in parts)


def _distinct_values(series: pd.Series) -> list[Any]:
    """A column's distinct non-missing values; a compacted column's are the categories some
    record has (no pass over every record's value)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return used_categories(series).tolist()
    return series.dropna().unique().tolist()


def write_p21_spec(
    datasets: Sequence[Dataset],
    path: Path,
    *,
    study: StudyInfo,
    standard: str,
) -> Path:
    """Write the datasets' metadata (what define.xml says) as a P21-format workbook, with
    fixed bytes; reading it back (`read_p21_spec`) gives the same metadata."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from cdiscforge import ct
    from cdiscforge.define.datatypes import define_data_type
    from cdiscforge.define.render import normalise_class
    from cdiscforge.xlsx import write_workbook

    wb = Workbook()
    sheets = {name: (wb.active if i == 0 else wb.create_sheet()) for i, name in enumerate(SHEETS)}
    for name, ws in sheets.items():
        ws.title = name
        ws.append(SHEETS[name])
    stage = "adam" if standard.upper() == "ADAM" else "sdtm"
    version = {"sdtm": "SDTMIG 3.4", "adam": "ADaMIG 1.3"}[stage]
    for attribute, value in (
        ("StudyName", study.name), ("StudyDescription", study.description),
        ("ProtocolName", study.protocol), ("StandardName", version.split()[0]),
        ("StandardVersion", version.split()[1]), ("Language", "en"),
    ):  # fmt: skip
        sheets["Study"].append([attribute, value])
    methods: dict[str, str] = {}
    comments: dict[str, str] = {}
    codelist_values: dict[str, tuple[bool, set[str]]] = {}
    dictionaries: set[str] = set()
    vlm_order = 0

    def row(sheet: str, **values: Any) -> None:
        sheets[sheet].append([values.get(c) for c in SHEETS[sheet]])

    for ds in datasets:
        com = _oid("COM", ds.name) if ds.comment else None
        if com:
            comments[com] = ds.comment  # type: ignore[assignment]
        row(
            "Datasets", Dataset=ds.name, Description=ds.label, Class=normalise_class(ds, standard),  # type: ignore[arg-type]
            Structure=ds.structure, Purpose="Analysis" if stage == "adam" else "Tabulation",
            **{"Key Variables": ", ".join(ds.keys), "Sub Class": ds.subclass},
            Standard=ds.standard, Comment=com,
        )  # fmt: skip
        for order, var in enumerate(ds.variables, start=1):
            mt = _oid("MT", ds.name, var.name) if var.method else None
            if mt:
                methods[mt] = var.method  # type: ignore[assignment]
            vc = _oid("COM", ds.name, var.name) if var.comment else None
            if vc:
                comments[vc] = var.comment  # type: ignore[assignment]
            series = ds.frame[var.name]
            for name in [var.codelist, *(vl.codelist for vl in var.value_level)]:
                if name and not var.dictionary:
                    numeric, seen = codelist_values.setdefault(name, (not var.is_char, set()))
                    seen.update(str(v) for v in _distinct_values(series))
            if var.dictionary:
                dictionaries.add(var.dictionary)
            row(
                "Variables", Order=order, Dataset=ds.name, Variable=var.name, Label=var.label,
                **{"Data Type": define_data_type(var, series), "Significant Digits":
                   var.significant_digits},
                Length=var.length, Format=var.format,
                Mandatory="Yes" if var.core == "Req" else "No",
                Codelist=var.dictionary or var.codelist, Origin=var.origin, Source=var.source,
                Pages=_pages(var) or None, Method=mt, Predecessor=var.predecessor,
                Role=var.role, Comment=vc,
            )  # fmt: skip
            for vl in var.value_level:
                vlm_order += 1
                wc = _oid("WC", ds.name, var.name, vl.by, vl.value)
                vmt = _oid("MT", ds.name, var.name, vl.value) if vl.method else None
                if vmt:
                    methods[vmt] = vl.method  # type: ignore[assignment]
                row("WhereClauses", ID=wc, Dataset=ds.name, Variable=vl.by, Comparator="EQ",
                    Value=vl.value)  # fmt: skip
                row(
                    "ValueLevel", Order=vlm_order, Dataset=ds.name,
                    Variable=var.name, **{"Where Clause": wc, "Data Type":
                    define_data_type(var, series)}, Description=vl.label,
                    Codelist=vl.codelist, Origin=var.origin, Method=vmt,
                )  # fmt: skip
    sponsor = {c.key: c for c in study.codelists}
    for name in sorted(codelist_values):
        numeric, seen = codelist_values[name]
        dtype = "integer" if numeric else "text"
        if name in sponsor:
            cl = sponsor[name]
            terms = [(t, None) for t in cl.terms] + [
                (t, None) for t in sorted(seen - set(cl.terms))
            ]
            head = {"Name": cl.name, "Terminology": None, "NCI Codelist Code": None}
        else:
            cdisc = ct.codelist(name)
            codes = dict(zip(cdisc.terms["value"], cdisc.terms["code"], strict=True))
            used = sorted(seen & set(codes)) + sorted(seen - set(codes))
            used = used or sorted(codes)  # a codelist none of whose terms occur: all of it
            terms = [(t, codes.get(t)) for t in used]
            head = {"Name": cdisc.name, "Terminology": "CDISC/NCI",
                    "NCI Codelist Code": cdisc.code}  # fmt: skip
        for order, (term, code) in enumerate(terms, start=1):
            row("Codelists", ID=name, **head, **{"Data Type": dtype, "NCI Term Code": code},
                Order=order, Term=term)  # fmt: skip
    for d in study.dictionaries:
        if d.key in dictionaries:
            row("Dictionaries", ID=d.key, Name=d.name, **{"Data Type": "text"},
                Dictionary=d.name, Version=d.version, Href=d.href)  # fmt: skip
    for oid in sorted(methods):
        row("Methods", ID=oid, Name=f"Algorithm for {oid[3:]}", Type="Computation",
            Description=methods[oid])  # fmt: skip
    for oid in sorted(comments):
        row("Comments", ID=oid, Description=comments[oid])
    for doc in study.documents:
        if stage in doc.stages:
            row("Documents", ID=doc.key, Title=doc.title, Href=doc.href)
    for ws in sheets.values():
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.freeze_panes = "A2"
    return write_workbook(wb, Path(path))


# ------------------------------------------------------------------------------- comparing

# Variable fields the P21 format carries (value_range and SUPP-- qualifiers it has no place for).
VARIABLE_FIELDS = (
    "label", "type", "length", "origin", "source", "codelist", "dictionary", "format",
    "significant_digits", "method", "comment", "predecessor", "role", "crf_pages", "core",
    "value_level",
)  # fmt: skip
DATASET_FIELDS = ("label", "klass", "structure", "keys", "standard", "subclass", "comment")


@dataclass(frozen=True)
class Difference:
    """One field where the workbook and our metadata disagree."""

    dataset: str
    variable: str | None
    field: str
    workbook: Any
    ours: Any

    def __str__(self) -> str:
        where = f"{self.dataset}.{self.variable}" if self.variable else self.dataset
        return f"{where} {self.field}: workbook {self.workbook!r}, YAML {self.ours!r}"


def _class_key(text: Any) -> list[str]:
    return re.sub(r"[^A-Z]", " ", str(text or "").upper()).split()


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == () or value == []


def _same(a: Any, b: Any) -> bool:
    return (_blank(a) and _blank(b)) or a == b


def from_dataset(ds: Dataset, standard: str | None = None) -> P21Dataset:
    """Our metadata of a dataset in the terms the workbook states it (class as define.xml
    names it, Mandatory as core Req or not)."""
    from cdiscforge.define.render import normalise_class

    std = standard or ("ADaM" if ds.standard.upper().startswith("ADAM") else "SDTM")
    return P21Dataset(
        name=ds.name, label=ds.label, klass=normalise_class(ds, std),  # type: ignore[arg-type]
        structure=ds.structure, keys=list(ds.keys), standard=ds.standard,
        subclass=ds.subclass, comment=ds.comment,
        variables=[replace(v, core="Req" if v.core == "Req" else None) for v in ds.variables],
    )  # fmt: skip


def compare(workbook: P21Dataset, ours: P21Dataset, *, strict: bool = False) -> list[Difference]:
    """Every field where the workbook's dataset and ours differ. Not `strict`: a blank
    workbook cell states nothing (no difference); `strict` (a round trip): blank must match
    blank."""
    out: list[Difference] = []

    def check(variable: str | None, name: str, a: Any, b: Any) -> None:
        if (not strict and _blank(a)) or _same(a, b):
            return
        if name == "klass" and _class_key(a) == _class_key(b):
            return  # "Special-Purpose" is define.xml's "SPECIAL PURPOSE"
        if not strict and name == "length" and b is None:
            return  # the YAML leaves it to the data (fitted when written): no disagreement
        out.append(Difference(workbook.name, variable, name, a, b))

    for name in DATASET_FIELDS:
        check(None, name, getattr(workbook, name), getattr(ours, name))
    for row in workbook.value_level:
        if not row.where.simple:  # the dataset model states one EQ condition per row
            out.append(Difference(workbook.name, row.variable, "value_level (composite)",
                                  f"where {row.where.text()}", "not stated"))  # fmt: skip
    mine = {v.name: v for v in ours.variables}
    theirs = {v.name: v for v in workbook.variables}
    for name in theirs.keys() - mine.keys():
        out.append(Difference(workbook.name, name, "variable", "listed", "not in the YAML"))
    for name in mine.keys() - theirs.keys():
        out.append(Difference(workbook.name, name, "variable", "not listed", "in the YAML"))
    common = [n for n in theirs if n in mine]
    if common != [n for n in mine if n in theirs]:
        check(None, "variable order", common, [n for n in mine if n in theirs])
    for name in common:
        a, b = theirs[name], mine[name]
        for attr in VARIABLE_FIELDS:
            check(name, attr, getattr(a, attr), getattr(b, attr))
    return sorted(out, key=lambda d: (d.dataset, d.variable or "", d.field))


def compare_study(spec: P21Spec, study: Any) -> list[Difference]:
    """The workbook against a loaded StudySpec's target metadata (its datasets the workbook
    lists; a workbook dataset the study lacks is a difference too)."""
    out: list[Difference] = []
    for name, ds in sorted(spec.datasets.items()):
        target = study.datasets.get(name)
        parent = study.datasets.get(name.removeprefix("SUPP"))
        if target is None and name.startswith("SUPP") and parent is not None and parent.supp:
            continue  # made from the parent's `supp:` items, not a spec of its own
        if target is None:
            out.append(Difference(name, None, "dataset", "listed", "no YAML spec"))
            continue
        out += compare(ds, from_spec(target, study), strict=False)
    return out + _compare_study_level(spec, study.info())


def _compare_study_level(spec: P21Spec, info: StudyInfo) -> list[Difference]:
    """Dictionaries (name, version), documents (title, href) and sponsor codelists (terms)
    the workbook and study.yaml both declare. Reported, not applied: study.yaml keeps them."""
    out: list[Difference] = []
    for d in info.dictionaries:
        theirs = spec.dictionaries.get(d.key)
        for name in ("name", "version") if theirs else ():
            if getattr(theirs, name) != getattr(d, name):
                out.append(Difference("Dictionaries", d.key, name, getattr(theirs, name),
                                      getattr(d, name)))  # fmt: skip
    for doc in info.documents:
        theirs_doc = spec.documents.get(doc.key)
        for name in ("title", "href") if theirs_doc else ():
            if getattr(theirs_doc, name) != getattr(doc, name):
                out.append(Difference("Documents", doc.key, name, getattr(theirs_doc, name),
                                      getattr(doc, name)))  # fmt: skip
    for cl in info.codelists:
        theirs_cl = spec.codelists.get(cl.key)
        terms = tuple(t[0] for t in theirs_cl.terms) if theirs_cl else None
        if terms is not None and terms != cl.terms:
            out.append(Difference("Codelists", cl.key, "terms", terms, cl.terms))
    return out


def from_spec(target: Any, study: Any) -> P21Dataset:
    """A StudySpec DatasetSpec's metadata (kept variables only) as a P21Dataset."""
    frame = pd.DataFrame({v.name: pd.Series(dtype="string") for v in target.variables if v.keep})
    metas = [replace(v.meta) for v in target.variables if v.keep]
    if target.stage == "sdtm":  # published in the IG's order, as the engine does
        from cdiscforge import standards

        order = standards.sdtm_variable_order(target.name, [v.name for v in metas])
        metas.sort(key=lambda v: order.index(v.name))
        frame = frame[[v.name for v in metas]]
    ds = Dataset(
        name=target.name, label=target.label, frame=frame, variables=metas,
        klass=target.klass, structure=target.structure, keys=list(target.keys),
        standard=target.standard, comment=target.comment, subclass=target.subclass,
    )  # fmt: skip
    return from_dataset(ds, "ADaM" if target.stage == "adam" else "SDTM")


# ------------------------------------------------------------------------------- applying

_APPLIED = tuple(f for f in VARIABLE_FIELDS if f not in ("type", "core", "value_level"))


def apply_p21(
    spec: P21Spec, datasets: Iterable[Dataset], precedence: Precedence = "workbook"
) -> tuple[list[Difference], list[str]]:
    """Settle the workbook's differences on built datasets (see the module docstring for the
    precedence); returns each difference once, for the build log, and the variables whose
    length the YAML leaves to the data and the workbook fixes (`DS.VAR=20`: applied under
    workbook precedence, not a disagreement; the XPT writer refuses longer values)."""
    found: list[Difference] = []
    fixed: list[str] = []
    datasets = list(datasets)
    built = {ds.name for ds in datasets}
    for name in sorted(set(spec.datasets) - built):
        found.append(Difference(name, None, "dataset", "listed", "not built (no YAML spec)"))
    for ds in datasets:
        wb = spec.datasets.get(ds.name)
        if wb is None:
            continue
        diffs = compare(wb, from_dataset(ds), strict=False)
        found += diffs
        if precedence != "workbook":
            continue
        for var in wb.variables:
            if var.length and var.name in ds.variable_names:
                ours = ds.variable(var.name)
                if ours.length is None:
                    ours.length = var.length
                    fixed.append(f"{ds.name}.{var.name}={var.length}")
        for d in diffs:
            if d.variable is None and d.field in ("label", "structure", "keys", "comment",
                                                  "subclass"):  # fmt: skip
                setattr(ds, d.field, d.workbook)
            elif d.variable is None and d.field == "klass":
                ds.klass = d.workbook
            elif d.variable and d.field in _APPLIED and d.variable in ds.variable_names:
                setattr(ds.variable(d.variable), d.field, d.workbook)
            elif d.variable and d.field == "value_level" and d.variable in ds.variable_names:
                ds.variable(d.variable).value_level = d.workbook
    return found, fixed


def describe(found: list[Difference], precedence: Precedence) -> list[str]:
    """Log lines, one per difference, each saying which side was kept."""
    kept = "kept the workbook's" if precedence == "workbook" else "kept the YAML's"
    lines = []
    for d in found:
        if d.field in ("variable", "dataset"):
            lines.append(f"{d}: the YAML decides which variables exist")
        elif d.field == "value_level (composite)":
            lines.append(f"{d}: not applied (the dataset model states one EQ condition per "
                         "value-level row; define.xml gives the YAML's)")  # fmt: skip
        elif d.field in ("type", "core", "variable order"):
            lines.append(f"{d}: kept the YAML's (the data decides)")
        else:
            lines.append(f"{d}: {kept} (p21_precedence: {precedence})")
    return lines

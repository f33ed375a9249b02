"""Loading study specs: YAML (safe_load) into typed models, with located errors.

A study folder holds `study.yaml` (study metadata, where the other specs are, the USUBJID
rule, spec tables) and the files it names: the raw-form contract, trial design, catalogues,
and one YAML per dataset under `sdtm/` and `adam/`. Everything study-specific is here; the
code only knows the rule vocabulary.

Every problem is a SpecError naming the file and the key path (`variables[3].codelist`):
unknown keys, missing fields, wrong types, unknown rules, raw columns the contract does not
declare, references to tables that do not exist.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cdiscforge import ct, spec_codelists, standards, yamlsafe
from cdiscforge.dates import DateFormat
from cdiscforge.errors import CdiscforgeError, SpecError, SpecErrors
from cdiscforge.model import (
    ORIGINS,
    Dictionary,
    Document,
    SponsorCodelist,
    StudyInfo,
    ValueLevel,
    Variable,
)
from cdiscforge.raw import (
    COLUMN_KEYS,
    ColumnSpec,
    FormSpec,
    check_references,
    column_extras,
    form_extras,
    partial_date_unknowns,
)
from cdiscforge.rules import GENERATORS, RULES, Condition, Params, RuleDef
from cdiscforge.rules.words import Words, describe_rule, method_text
from cdiscforge.vectorise import per_distinct
from cdiscforge.xpt import MAX_LABEL

VARIABLE_META = {
    "name", "label", "type", "length", "origin", "source", "codelist", "format",
    "significant_digits", "method", "comment", "predecessor", "crf_pages", "range", "keep",
    "rule", "core", "role", "dictionary", "value_level",
}  # fmt: skip
STAGES = ("sdtm", "adam")
ORIGIN_SOURCES = ("Investigator", "Sponsor", "Subject", "Vendor")  # Define-XML 2.1
# What the XPT v5 writer and the FDA's rules will refuse, checked when the spec loads
# (a label of 41 characters is a spec error, not a failed build an hour later).
DATASET_NAME_RE = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
DATASET_NAME_RULE = "1-8 upper-case letters and digits, starting with a letter"
VARIABLE_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")
VARIABLE_NAME_RULE = "1-8 upper-case letters, digits or _, starting with a letter"


class _Collect:
    """Collects the SpecErrors of independent parts of a spec (files, forms, variables), so
    one load reports every problem of the folder instead of the first."""

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    @contextmanager
    def part(self) -> Iterator[None]:
        try:
            yield
        except SpecError as exc:
            self.errors.append(exc)

    def raise_any(self) -> None:
        if self.errors:
            raise SpecErrors.combine(self.errors)


def check_label(file: Path, where: str, label: str | None, what: str) -> None:
    """A dataset/variable label the XPT writer would refuse: over 40 characters, not ASCII."""
    if label is None:
        return
    if len(label) > MAX_LABEL:
        raise SpecError(
            file, where, f"{what} is {len(label)} characters; XPT v5 allows {MAX_LABEL}: {label!r}"
        )
    if not label.isascii():
        raise SpecError(file, where, f"{what} must be ASCII (XPT v5): {label!r}")


def load_yaml(path: Path) -> Any:
    """A spec file through the guarded loader (cdiscforge.yamlsafe), every failure a
    SpecError naming the file and where: not UTF-8 (line and byte), not YAML, nested too
    deep, an alias bomb or a duplicated key (key path, line and column)."""
    try:
        return yamlsafe.load_file(path)
    except FileNotFoundError as exc:
        raise SpecError(path, "", "file not found") from exc
    except IsADirectoryError as exc:
        raise SpecError(path, "", "is a folder, not a YAML file") from exc
    except yamlsafe.NotUTF8 as exc:
        raise SpecError(
            path,
            f"line {exc.line}, byte {exc.offset}",
            f"not UTF-8 text (bytes {exc.sample!r}); save the file as UTF-8",
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        key_path = getattr(exc, "key_path", "")
        if key_path:
            where = f"{key_path} ({where})" if where else key_path
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yamlsafe.SpecYAMLError):
            raise SpecError(path, where, problem) from exc
        raise SpecError(path, where, f"not valid YAML: {problem}") from exc


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validated(model: type[BaseModel], data: Any, file: Path, prefix: str) -> Any:
    """`model` from `data`; every field error a SpecError (several: one SpecErrors)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found: list[SpecError] = []
        for err in exc.errors():
            path = _loc((*(p for p in [prefix] if p), *err["loc"])).replace("from_", "from")
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "missing required field"
            elif err["type"] == "value_error":
                msg = msg.removeprefix("Value error, ")
            found.append(SpecError(file, path, msg))
        raise SpecErrors.combine(found) from exc
    except TypeError as exc:  # e.g. a YAML mapping with a non-text key
        raise SpecError(file, prefix, f"malformed entry: {exc}") from exc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudyMeta(_Strict):
    studyid: str
    name: str
    description: str
    protocol: str
    sponsor: str = ""
    creation_datetime: str = "2020-01-01T00:00:00"


class VariableMeta(BaseModel):
    """Type check of a variable's metadata keys (rule parameters are checked by the rule)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    label: str | None = None
    type: Literal["Char", "Num"] | None = None
    length: int | None = Field(None, ge=1, le=200)
    origin: Literal[ORIGINS] | None = None  # type: ignore[valid-type]
    source: str | None = None
    codelist: str | None = None
    format: str | None = None
    significant_digits: int | None = Field(None, ge=0)
    method: str | None = None
    comment: str | None = None
    predecessor: str | None = None
    crf_pages: list[str | int] = []
    range: tuple[float | None, float | None] | None = None
    keep: bool = True
    core: Literal["Req", "Exp", "Perm", "Cond"] | None = None
    role: str | None = None
    dictionary: str | None = None
    value_level: ValueLevelMeta | None = None


class ValueLevelUse(_Strict):
    codelist: str | None = None
    label: str | None = None
    method: str | None = None


class ValueLevelMeta(_Strict):
    """`value_level: {by: DSCAT, values: {PROTOCOL MILESTONE: {codelist: PROTMLST}, ...}}`."""

    by: str
    values: dict[str, ValueLevelUse]


class DictionaryMeta(_Strict):
    """An external dictionary, declared once (study.yaml `dictionaries`); `variables` names
    the variables (in any dataset, SDTM and ADaM) it codes, or a variable says
    `dictionary: KEY` itself."""

    name: str
    version: str
    href: str | None = None
    ref: str | None = None
    variables: list[str] = []
    # Who codes the values, when not the form's provider: coded terms are Assigned by the
    # sponsor's coder (Define-XML 2.1), unless a variable's entry says its own origin.
    origin: Literal["Assigned", "Collected"] | None = None
    source: Literal[ORIGIN_SOURCES] | None = None  # type: ignore[valid-type]


class DocumentMeta(_Strict):
    """A document define.xml links to; the sponsor supplies the file at `href`."""

    kind: Literal["AnnotatedCRF", "SupplementalDoc"]
    title: str
    href: str
    stages: list[Literal["sdtm", "adam"]] = ["sdtm", "adam"]


class TableRef(_Strict):
    """A spec table: a list in a study YAML file, with the checks its rows must pass when
    the spec loads (a catalogue's misspelt key or blank unit is a spec error, never a value
    silently left unconverted)."""

    file: str
    path: str  # top-level key holding the list
    explode: str | None = None  # a nested list to expand into one row per item
    columns: list[str] | None = None  # the keys an item may have (others: unknown key)
    explode_columns: list[str] | None = None  # the keys an exploded sub-item may have
    required: list[str] = []  # filled (not blank) in every row
    unique: list[str] = []  # together unique per row (compared as lookups compare)
    positive: list[str] = []  # numbers > 0 where filled
    integers: list[str] = []  # whole numbers >= 0 where filled
    codelists: dict[str, str] = {}  # column -> CT codelist its values must be in


class UsubjidPart(_Strict):
    """One part of the USUBJID template: exactly one of a study metadata key (`meta:
    studyid`), a raw column (`column: SUBJNO`, renamed per form by `subject_columns`) or a
    literal (`value: "P"`)."""

    meta: Literal["studyid", "protocol", "sponsor", "name"] | None = None
    column: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> UsubjidPart:
        if sum(x is not None for x in (self.meta, self.column, self.value)) != 1:
            raise ValueError("a USUBJID part is exactly one of meta, column or value")
        return self


class UsubjidTemplate(_Strict):
    """study.yaml `usubjid`: USUBJID = the parts joined by `separator`; the same key joins
    every form's records to their subject (aggregates, cross-form checks, generators)."""

    parts: list[UsubjidPart] = Field(min_length=1)
    separator: str = "-"


class StudyFile(_Strict):
    study: StudyMeta
    usubjid: UsubjidTemplate | None = None
    usubjid_separator: str = "-"
    ascii: str = "transliterate"
    raw_forms: str = "raw_forms.yaml"
    simulation: str | None = None
    tables: dict[str, TableRef] = {}
    sdtm: list[str] = []
    adam: list[str] = []
    ts: list[dict[str, Any]] = []
    dictionaries: dict[str, DictionaryMeta] = {}
    documents: dict[str, DocumentMeta] = {}
    # Sponsor codelists (the older place; also codelists.yaml, codelists/*.csv): checked by
    # cdiscforge.spec_codelists. ct_version: CT release per package (ct.Terminology).
    codelists: dict[str, Any] = {}
    sponsor_codelists: dict[str, Any] = {}
    ct_version: dict[str, str] = {}
    # Spellings of an unknown date part (or in raw_forms.yaml; cdiscforge.raw).
    partial_dates: dict[str, Any] | None = None
    # A Pinnacle 21 specification workbook (relative to the folder) whose define-level
    # metadata the build settles with the YAML's (cdiscforge.p21: precedence, differences).
    p21_spec: str | None = None
    p21_precedence: Literal["workbook", "yaml"] = "workbook"


class Split(_Strict):
    """One record per item of a delimited list in `column` (e.g. "Methotrexate, leflunomide"):
    the column then holds the item, trimmed; empty items are dropped."""

    column: str  # a raw column (or a column of the table / upstream dataset)
    sep: str = ","  # a regular expression


class PivotValue(_Strict):
    """A pivot test's unit or qualifier: a raw column of the form, or a constant."""

    column: str | None = Field(None, description="raw column of the form holding the value")
    value: str | None = Field(None, description="a constant for every record of the test")


class PivotNotDone(_Strict):
    """Rows where the test was not done: STAT = NOT DONE (and REASND from `reason`), even
    with a blank result."""

    column: str = Field(description="raw column saying whether the test was done")
    equals: str | list[str] = Field(description="the value(s) of `column` meaning not done")
    reason: str | None = Field(None, description="raw column holding the reason not done")


class PivotTest(_Strict):
    """One test of a wide form: which column holds its result, its unit and qualifiers."""

    TESTCD: str = Field(description="the test's short code (e.g. SYSBP)")
    TEST: str = Field(description="the test's name (e.g. Systolic Blood Pressure)")
    result: str = Field(description="raw column holding the test's result")
    unit: PivotValue | None = Field(None, description="the result's unit: column or constant")
    qualifiers: dict[str, PivotValue] = Field(
        {}, description="more columns of the records (e.g. LOC, POS): name -> column or value"
    )
    not_done: PivotNotDone | None = Field(
        None, description="this test's own not-done columns (default: the pivot's)"
    )


class Pivot(_Strict):
    """A wide form (one column per test) read once as findings records: one record per
    (row, test) with TESTCD, TEST, ORRES, ORRESU, STAT, REASND and the qualifiers beside
    the form's own columns; the reconciliation counts each form row once."""

    tests: list[PivotTest] = Field(min_length=1, description="the tests, in record order")
    not_done: PivotNotDone | None = Field(
        None, description="the row-level not-done flag and reason, for every test"
    )
    skip_empty: bool = Field(
        True, description="a test with a blank result (and not NOT DONE) gives no record"
    )

    def columns(self) -> list[tuple[str, str]]:
        """(key path under `pivot`, raw column) for every column the pivot reads."""
        out: list[tuple[str, str]] = []

        def not_done(where: str, nd: PivotNotDone | None) -> None:
            if nd is not None:
                out.append((f"{where}.column", nd.column))
                if nd.reason:
                    out.append((f"{where}.reason", nd.reason))

        not_done("not_done", self.not_done)
        for j, test in enumerate(self.tests):
            at = f"tests[{j}]"
            out.append((f"{at}.result", test.result))
            if test.unit is not None and test.unit.column:
                out.append((f"{at}.unit.column", test.unit.column))
            for name, q in test.qualifiers.items():
                if q.column:
                    out.append((f"{at}.qualifiers.{name}.column", q.column))
            not_done(f"{at}.not_done", test.not_done)
        return out


class Block(_Strict):
    source: str | None = None  # a raw form
    table: str | None = None  # a spec table
    dataset: str | None = None  # an already built dataset (ADaM from SDTM)
    generator: str | None = None  # a registered record generator (e.g. SE)
    params: dict[str, Any] = {}
    filter: Condition | None = None
    filter_reason: str = "not for this dataset (filter)"
    split: Split | None = None
    pivot: Pivot | None = None  # a wide form as findings records (one per row and test)
    variables: dict[str, dict[str, Any]] = {}


class Dedupe(_Strict):
    by: list[str]
    order: list[str] = []
    keep: str = "first"
    reason: str = "duplicate record"


class SuppItem(_Strict):
    qnam: str
    qlabel: str
    var: str  # a (helper) variable of the parent dataset holding the value
    qorig: str | None = None  # default: the origin of `var` (a Define-XML 2.1 origin type)
    qeval: str | None = None
    idvar: str | None = None  # default: --SEQ


class DatasetFile(_Strict):
    dataset: str
    label: str | None = None
    klass: str | None = None
    structure: str | None = None
    standard: str | None = None
    keys: list[str] = []
    records: list[Block]
    dedupe: Dedupe | None = None
    variables: list[dict[str, Any]]
    supp: list[SuppItem] = []
    sort: list[str] = []
    value_level_by: str | None = None
    comment: str | None = None
    adam_structure: str | None = None  # ADSL | BDS | OCCDS
    subclass: str | None = None  # Define-XML 2.1 def:SubClass (OCCDS: ADVERSE EVENT ...)


@dataclass
class VariableSpec:
    """A target variable: its metadata and the rule (with checked parameters) computing it."""

    meta: Variable
    keep: bool
    rule: RuleDef | None
    params: Params | None
    key_path: str

    @property
    def name(self) -> str:
        return self.meta.name


@dataclass
class DatasetSpec:
    name: str
    stage: str
    file: Path
    label: str
    klass: str
    structure: str
    standard: str
    keys: list[str]
    records: list[Block]
    variables: list[VariableSpec]
    block_rules: list[dict[str, tuple[RuleDef, Params]]]
    dedupe: Dedupe | None = None
    # A generator block's checked `params` (None for other blocks), by block index.
    block_params: list[Params | None] = field(default_factory=list)
    supp: list[SuppItem] = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    value_level_by: str | None = None
    comment: str | None = None
    subclass: str | None = None

    def depends_on(self) -> set[str]:
        """Datasets that must be built before this one (from blocks and rule parameters)."""
        deps: set[str] = set()
        for block in self.records:
            if block.dataset:
                deps.add(block.dataset)
        for params in self.block_params:
            if params is not None:
                deps |= params.domains()
        for var in self.variables:
            if var.params is not None:
                deps |= var.params.domains()
        for rules in self.block_rules:
            for _, params in rules.values():
                deps |= params.domains()
        deps.discard(self.name)
        return deps


class StudySpec:
    """A loaded, checked study: metadata, raw-form contract, tables and dataset specs."""

    def __init__(self, folder: Path) -> None:
        """Load every file of the folder, collecting the SpecErrors of each independent part
        (study.yaml first: without it nothing else can be found), then raise them together."""
        self.folder = folder
        self.file = folder / "study.yaml"
        self.config: StudyFile = _validated(StudyFile, load_yaml(self.file), self.file, "")
        found = _Collect()
        self.sponsor_codelists: list[SponsorCodelist] = []
        self._broken_codelists: set[str] = set()  # reported already: not "unknown" again
        try:
            self.sponsor_codelists = spec_codelists.load(
                folder, self.file, {**self.config.codelists, **self.config.sponsor_codelists}
            )
        except spec_codelists.SponsorCodelistErrors as exc:
            found.errors.append(exc.error)
            self.sponsor_codelists, self._broken_codelists = exc.loaded, exc.broken
        # Bad ct_version: reported, and the rest checked against the default releases.
        self.terminology = ct.Terminology(None, self.sponsor_codelists)
        with found.part():
            self.terminology = self._terminology()
        self.forms: dict[str, FormSpec] = {}
        # Filled by _load_forms; empty when the contract itself is broken.
        self.form_sources: dict[str, str] = {}
        self.form_pages: dict[str, tuple[str, ...]] = {}  # aCRF pages of a form, if named
        self._forms_ok = False  # a broken contract: its datasets' form checks are skipped
        with found.part():
            self.forms = self._load_forms()
            self._forms_ok = True
        self._tables: dict[str, pd.DataFrame] = {}
        for name in self.config.tables:
            with found.part():
                self.table(name)  # load and check every table up front
        self.datasets: dict[str, DatasetSpec] = {}
        # Dataset files that did not load: while there are any, a reference to a dataset not
        # found is not reported (it may be the broken one's: one error, not a cascade).
        self._broken: list[Path] = []
        for stage in STAGES:
            for rel in getattr(self.config, stage):
                path = folder / rel
                files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
                for f in files:
                    with found.part():
                        try:
                            spec = self._load_dataset(f, stage)
                        except SpecError:
                            self._broken.append(f)
                            raise
                        if spec.name in self.datasets:
                            raise SpecError(f, "dataset", f"dataset {spec.name} is defined twice")
                        self.datasets[spec.name] = spec
        for spec in self.datasets.values():
            self._check_references(spec, found)
        found.raise_any()

    def _check_references(self, spec: DatasetSpec, found: _Collect) -> None:
        """The forms, tables, datasets and columns every rule and generator of `spec` names
        exist (checked once all files are read: a rule may name a dataset of another file)."""
        checks: list[tuple[str, Params]] = []
        for i, (block, params) in enumerate(zip(spec.records, spec.block_params, strict=True)):
            if params is not None:
                checks.append((f"records[{i}].params", params))
            with found.part():
                missing = block.dataset and block.dataset not in self.datasets
                if missing and not self._broken:
                    raise SpecError(
                        spec.file,
                        f"records[{i}].dataset",
                        f"unknown dataset {block.dataset!r}; datasets: {sorted(self.datasets)}",
                    )
        checks += [(v.key_path, v.params) for v in spec.variables if v.params is not None]
        for i, rules in enumerate(spec.block_rules):
            checks += [(f"records[{i}].variables.{n}", p) for n, (_, p) in rules.items()]
        for where, params in checks:
            for key, problem in params.check_references(self):
                if self._broken and problem.startswith("unknown dataset"):
                    continue
                with found.part():
                    raise SpecError(spec.file, f"{where}.{key}", problem)

    # --- study-level facts -------------------------------------------------------------------

    @property
    def studyid(self) -> str:
        return self.config.study.studyid

    @cached_property
    def creation_datetime(self) -> str:
        """Build timestamp written into every output: SOURCE_DATE_EPOCH if set, else the spec's."""
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if epoch:
            return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return self.config.study.creation_datetime

    def _terminology(self) -> ct.Terminology:
        """The study's one CT lookup: its chosen releases and its sponsor codelists."""
        for key, version in self.config.ct_version.items():
            if key not in ct.PACKAGES:
                raise SpecError(
                    self.file, f"ct_version.{key}", f"unknown CT package; one of {ct.PACKAGES}"
                )
            if version not in ct.bundled_versions(key):
                raise SpecError(
                    self.file, f"ct_version.{key}", ct.unknown_version_message(key, version)
                )
        return ct.Terminology(self.config.ct_version, self.sponsor_codelists)

    def check_codelist(self, path: Path, where: str, name: object) -> None:
        """A codelist id a spec names is a sponsor codelist or a CDISC one (located error)."""
        if name in self._broken_codelists:
            return
        if not isinstance(name, str) or not self.terminology.has(name):
            dataset = f"dataset {self._dataset}: " if getattr(self, "_dataset", "") else ""
            raise SpecError(path, where, dataset + self.terminology.unknown_message(str(name)))

    def info(self, sdtm_ct: str = "", adam_ct: str = "") -> StudyInfo:
        s = self.config.study
        return StudyInfo(
            studyid=s.studyid,
            name=s.name,
            description=s.description,
            protocol=s.protocol,
            sponsor=s.sponsor,
            sdtm_ct_version=sdtm_ct or self.terminology.version("sdtm"),
            adam_ct_version=adam_ct or self.terminology.version("adam"),
            creation_datetime=self.creation_datetime,
            dictionaries=tuple(
                Dictionary(key, d.name, d.version, d.href, d.ref)
                for key, d in self.config.dictionaries.items()
            ),
            documents=tuple(
                Document(key, d.kind, d.title, d.href, tuple(d.stages))
                for key, d in self.config.documents.items()
            ),
            codelists=tuple(self.sponsor_codelists),
        )

    def placeholders(self) -> dict[str, str]:
        s = self.config.study
        return {"studyid": s.studyid, "protocol": s.protocol, "sponsor": s.sponsor}

    @cached_property
    def usubjid_template(self) -> UsubjidTemplate:
        """study.yaml `usubjid`, or the old rule: STUDYID, `usubjid_separator`, SUBJECT."""
        if self.config.usubjid is not None:
            return self.config.usubjid
        return UsubjidTemplate(
            parts=[UsubjidPart(meta="studyid"), UsubjidPart(column="SUBJECT")],
            separator=self.config.usubjid_separator,
        )

    def _usubjid_words(self) -> tuple[str, ...]:
        """The template's parts for define.xml method text (none: the old rule's words)."""
        if self.config.usubjid is None:
            return ()
        return tuple(
            f"{p.column} as collected" if p.column is not None
            else (p.meta.upper() if p.meta == "studyid" else f"the study {p.meta}")
            if p.meta is not None
            else f'"{p.value}"'
            for p in self.config.usubjid.parts
        )  # fmt: skip

    def subject_columns(self, form: str) -> dict[str, str]:
        """Template column -> the column of `form` holding it (`subject_columns` of the
        form; a form's `subject` stands for the template's only column part)."""
        return dict(self.forms[form].subject_columns) if form in self.forms else {}

    def subject_key(self, frame: pd.DataFrame, form: str | None = None) -> pd.Series:
        """The one subject key (USUBJID) of each row of `frame`, a raw form's rows when `form`
        is given: the template's parts, each column part read from the form's own column
        (see `subject_columns`), stripped, joined by the separator. The `usubjid` rule,
        aggregates over forms and generators all call this, so a subject is the same subject
        in every form."""
        template = self.usubjid_template
        names = self.subject_columns(form) if form else {}
        meta = {**self.placeholders(), "name": self.config.study.name}
        columns = [
            frame[names.get(part.column, part.column)]
            for part in template.parts
            if part.column is not None
        ]

        def join(*values: pd.Series) -> pd.Series | str:
            column = iter(values)
            pieces: list[pd.Series | str] = []
            for part in template.parts:
                if part.column is not None:
                    pieces.append(next(column).astype("string").str.strip())
                elif part.meta is not None:
                    pieces.append(meta[part.meta])
                else:
                    pieces.append(part.value or "")
            out: pd.Series | str = pieces[0]
            for piece in pieces[1:]:
                out = out + template.separator + piece
            return out

        if not columns:  # no column part: one key for every row
            return pd.Series(join(), index=frame.index, dtype="string")
        # Built once per distinct subject and broadcast (a lab form repeats each subject
        # ~150 times): the key's codes are then known to every later grouping by USUBJID.
        return per_distinct(lambda *v: join(*v).astype("string"), *columns)  # type: ignore[union-attr]

    def usubjid(self, subject: pd.Series) -> pd.Series:
        """USUBJID from the subject numbers of a form holding the template's only column
        part (kept for callers holding one subject column)."""
        columns = [p.column for p in self.usubjid_template.parts if p.column is not None]
        if len(columns) != 1:
            raise SpecError(
                self.file, "usubjid", "this step needs a template with exactly one column part"
            )
        return self.subject_key(pd.DataFrame({columns[0]: subject}))

    def stage_of(self, dataset: str) -> str:
        spec = self.datasets.get(dataset)
        return spec.stage if spec else "sdtm"

    # --- raw-form contract --------------------------------------------------------------------

    def _load_forms(self) -> dict[str, FormSpec]:
        path = self.folder / self.config.raw_forms
        data = load_yaml(path)
        forms = data.get("forms", data) if isinstance(data, dict) else None
        if not isinstance(forms, dict):
            raise SpecError(path, "forms", "expected a mapping of form name to form")
        out: dict[str, FormSpec] = {}
        self.form_sources = {}
        self.form_pages = {}
        found = _Collect()  # every bad column (e.g. each unreadable date format) at once
        declared = data.get("partial_dates") if "forms" in data else None
        if declared is not None and self.config.partial_dates is not None:
            raise SpecError(path, "partial_dates", "declared in study.yaml too: keep one")
        if declared is None and self.config.partial_dates is not None:
            unknown = partial_date_unknowns(self.file, "partial_dates", self.config.partial_dates)
        else:
            unknown = partial_date_unknowns(path, "partial_dates", declared)
        for name, form in forms.items():
            where = f"forms.{name}"
            if not isinstance(form, dict) or "file" not in form or "columns" not in form:
                raise SpecError(path, where, "a form needs 'file' and 'columns'")
            # Who provides the form's data (define.xml def:Origin Source of Collected values).
            source = form.get("source")
            if source is not None and source not in ORIGIN_SOURCES:
                raise SpecError(
                    path, f"{where}.source", f"must be one of {', '.join(ORIGIN_SOURCES)}"
                )
            if source:
                self.form_sources[name] = source
            pages = form.get("crf_pages", [])
            if not isinstance(pages, list) or not all(isinstance(x, (str, int)) for x in pages):
                raise SpecError(path, f"{where}.crf_pages", "expected a list of aCRF page numbers")
            if pages:
                self.form_pages[name] = tuple(str(x) for x in pages)
            cols: dict[str, ColumnSpec] = {}
            broken = len(found.errors)
            for col, cdef in form["columns"].items():
                cdef = cdef or {}
                allowed = COLUMN_KEYS
                extra = set(cdef) - allowed
                if extra:
                    raise SpecError(
                        path, f"{where}.columns.{col}.{sorted(extra)[0]}", "unknown key"
                    )
                if cdef.get("type", "str") not in (
                    "str",
                    "int",
                    "float",
                    "date",
                    "time",
                    "datetime",
                ):
                    raise SpecError(path, f"{where}.columns.{col}.type", "unknown column type")
                with found.part():
                    cols[col] = ColumnSpec(
                        col,
                        cdef.get("type", "str"),
                        bool(cdef.get("required")),
                        cdef.get("format"),
                        cdef.get("description", ""),
                        **column_extras(path, f"{where}.columns.{col}", cdef, unknown),
                        values=_codes(
                            path, f"{where}.columns.{col}.values", cdef.get("values", [])
                        ),
                    )
            if len(found.errors) > broken:
                continue  # the form's own checks would only repeat its columns' errors
            subject = form.get("subject") or next(
                (c for c in ("SUBJECT", "PATID", "SUBJID", "USUBJID") if c in cols), None
            )
            names = self._subject_columns(path, where, form, cols)
            out[name] = FormSpec(
                name,
                form["file"],
                cols,
                tuple(form.get("key", [])),
                names[0][1] if len(names) == 1 else (subject or "SUBJECT"),
                form.get("description", ""),
                **form_extras(path, where, form, cols),
                subject_columns=names,
            )
        found.raise_any()
        check_references(path, out)
        return out

    def _subject_columns(
        self, path: Path, where: str, form: dict[str, Any], cols: dict[str, ColumnSpec]
    ) -> tuple[tuple[str, str], ...]:
        """Template column -> this form's column, for every column part of the USUBJID
        template: the form's `subject_columns` entry, else (a template with one column part)
        the form's `subject` or the part's own name, else the part's own name. A mapping
        naming a template column or a form column that does not exist is a spec error."""
        parts = [p.column for p in self.usubjid_template.parts if p.column is not None]
        given = form.get("subject_columns") or {}
        at = f"{where}.subject_columns"
        if not isinstance(given, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in given.items()
        ):
            raise SpecError(path, at, "expected a mapping of template column -> form column")
        for part, column in given.items():
            if part not in parts:
                raise SpecError(
                    path, f"{at}.{part}",
                    f"{part!r} is not a column part of the USUBJID template (study.yaml "
                    f"usubjid: {parts})",
                )  # fmt: skip
            if column not in cols:
                raise SpecError(
                    path, f"{at}.{part}", f"{column!r} is not a column of form {where[6:]!r}"
                )
        single = form.get("subject") or next(
            (c for c in (parts[0], "SUBJECT", "PATID", "SUBJID", "USUBJID") if c in cols),
            parts[0],
        ) if len(parts) == 1 else None  # fmt: skip
        return tuple((p, given.get(p) or single or p) for p in parts)

    def date_formats(self, form: str) -> dict[str, DateFormat]:
        """The parsed `format` of each date/time column of a form (cdiscforge.dates)."""
        spec = self.forms[form]
        return {c: s.date_format for c, s in spec.columns.items() if s.date_format}

    # --- spec tables --------------------------------------------------------------------------

    def table(self, name: str) -> pd.DataFrame:
        """A spec table (joints, lab catalogue, visits ...) as a frame of text/number columns."""
        if name in self._tables:
            return self._tables[name]
        ref = self.config.tables.get(name)
        if ref is None:
            raise SpecError(self.file, f"tables.{name}", f"no table {name!r} declared")
        path = self.folder / ref.file
        data = load_yaml(path)
        node: Any = data
        for part in ref.path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise SpecError(path, ref.path, f"no list at {ref.path!r} for table {name!r}")
            node = node[part]
        if not isinstance(node, list):
            raise SpecError(path, ref.path, "expected a list of records")
        found = _Collect()
        rows, wheres = _table_rows(path, ref, node, found)
        _check_table(path, name, ref, rows, wheres, found, self.terminology)
        found.raise_any()
        frame = pd.json_normalize(rows, sep="_") if rows else pd.DataFrame()
        self._tables[name] = frame
        return frame

    def table_file(self, name: str) -> Path:
        return self.folder / self.config.tables[name].file

    # --- dataset specs ------------------------------------------------------------------------

    def _load_dataset(self, path: Path, stage: str) -> DatasetSpec:
        """One dataset spec, every independent problem (name, label, each block, each
        variable, keys) collected and raised together."""
        raw = load_yaml(path)
        spec: DatasetFile = _validated(DatasetFile, raw, path, "")
        name = spec.dataset
        if not DATASET_NAME_RE.match(name):  # the IG defaults hang on it: stop here
            raise SpecError(path, "dataset", f"{name!r}: a dataset name is {DATASET_NAME_RULE}")
        self._dataset = name  # named in codelist errors (check_codelist)
        found = _Collect()
        with found.part():
            if spec.supp and len(f"SUPP{name}") > 8:
                raise SpecError(path, "supp", f"SUPP{name} would be longer than 8 characters")
        if stage == "sdtm":
            ig = standards.domain_variables(name)
            igds = standards.sdtmig_datasets()
            igrow = igds[igds["name"] == (name[:2] if not name.startswith("SUPP") else name)]
            default_label = igrow["label"].iloc[0] if not igrow.empty else None
            default_class = igrow["klass"].iloc[0] if not igrow.empty else ""
            default_structure = igrow["structure"].iloc[0] if not igrow.empty else ""
            standard = spec.standard or f"SDTMIG {standards.SDTMIG_VERSION}"
        else:
            structure = spec.adam_structure or ("ADSL" if name == "ADSL" else "BDS")
            ig = standards.adam_variables(structure if structure != "OCCDS" else "BDS")
            default_label, default_class, default_structure = None, structure, ""
            standard = spec.standard or f"ADaMIG {standards.ADAMIG_VERSION}"
        label = spec.label or default_label
        with found.part():
            if not label:
                raise SpecError(path, "label", "required (not a standard dataset)")
            check_label(path, "label", label, "dataset label")

        good_blocks: set[int] = set()
        for i, block in enumerate(spec.records):
            with found.part():
                kinds = [
                    k for k in ("source", "table", "dataset", "generator") if getattr(block, k)
                ]
                if len(kinds) != 1:
                    raise SpecError(
                        path,
                        f"records[{i}]",
                        "give exactly one of source, table, dataset or generator",
                    )
                if block.source and block.source not in self.forms:
                    if not self._forms_ok:
                        continue  # the contract's own error is already reported
                    raise SpecError(
                        path,
                        f"records[{i}].source",
                        f"unknown raw form {block.source!r}; forms: {sorted(self.forms)}",
                    )
                if block.table and block.table not in self.config.tables:
                    raise SpecError(path, f"records[{i}].table", f"unknown table {block.table!r}")
                if block.pivot is not None:
                    self._check_pivot(path, i, block, found)
                good_blocks.add(i)
        block_params: list[Params | None] = []
        for i, block in enumerate(spec.records):
            block_params.append(None)
            with found.part():
                block_params[i] = self._generator_params(block, path, f"records[{i}]")

        variables: list[VariableSpec] = []
        # Names as written (a variable whose spec is broken still exists for the checks below,
        # so one broken variable is one error, not one more per reference to it).
        names = [str(e["name"]) for e in spec.variables if isinstance(e, dict) and "name" in e]
        for i, entry in enumerate(spec.variables):
            with found.part():
                variables.append(self._variable(entry, ig, path, f"variables[{i}]", stage))
        with found.part():
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise SpecError(path, "variables", f"variables defined twice: {dupes}")

        block_rules: list[dict[str, tuple[RuleDef, Params]]] = []
        for i, block in enumerate(spec.records):
            rules: dict[str, tuple[RuleDef, Params]] = {}
            block_ok = True
            for vname, entry in block.variables.items():
                where = f"records[{i}].variables.{vname}"
                with found.part():
                    block_ok = False
                    if vname not in names:
                        raise SpecError(path, where, f"{vname} is not in the dataset's variables")
                    rules[vname] = self._rule(entry, path, where)
                    block_ok = True
            block_rules.append(rules)
            # A broken variable or block rule is reported already; the others are checked.
            if block.source and block.source in self.forms and i in good_blocks and block_ok:
                self._check_raw_columns(path, i, block, variables, rules, found)
        self._check_values(path, spec, variables, block_rules, set(names), found)
        for key in spec.keys:
            with found.part():
                if key not in names:
                    raise SpecError(path, "keys", f"key variable {key} is not in variables")
        for j, item in enumerate(spec.supp):
            with found.part():
                if not VARIABLE_NAME_RE.match(item.qnam):
                    raise SpecError(
                        path, f"supp[{j}].qnam", f"{item.qnam!r}: a QNAM is {VARIABLE_NAME_RULE}"
                    )
            with found.part():
                check_label(path, f"supp[{j}].qlabel", item.qlabel, "QLABEL")
            with found.part():
                if item.var not in names:
                    raise SpecError(path, f"supp[{j}].var", f"{item.var} is not in variables")
        found.raise_any()
        self._define_metadata(spec, stage, default_class, variables, block_rules)
        return DatasetSpec(
            name=name, stage=stage, file=path, label=label,
            klass=spec.klass or default_class, structure=spec.structure or default_structure,
            standard=standard, keys=spec.keys, records=spec.records, variables=variables,
            block_rules=block_rules, dedupe=spec.dedupe, supp=spec.supp, sort=spec.sort,
            block_params=block_params,
            value_level_by=spec.value_level_by, comment=spec.comment, subclass=spec.subclass,
        )  # fmt: skip

    def _define_metadata(
        self,
        spec: DatasetFile,
        stage: str,
        default_class: str,
        variables: list[VariableSpec],
        block_rules: list[dict[str, tuple[RuleDef, Params]]],
    ) -> None:
        """What define.xml says about each variable beyond its own entry: the Source of a
        collected value (the raw form's `source`), Protocol for trial-design content, the
        predecessor of an ADaM copy, and method text for derivations without one."""
        forms = [b.source for b in spec.records if b.source]
        source = next((self.form_sources[f] for f in forms if f in self.form_sources), None)
        pages = next((self.form_pages[f] for f in forms if f in self.form_pages), ())
        design = (spec.klass or default_class).upper() == "TRIAL DESIGN"
        parent = next((b.dataset for b in spec.records if b.dataset), None)
        first = spec.records[0] if spec.records else None
        kinds = [
            k for k in ("source", "table", "dataset", "generator") if first and getattr(first, k)
        ]
        kind = kinds[0] if kinds else "source"
        words = Words(
            helpers={
                v.name: (v.rule, v.params, v.meta.method or _blocks_method(v.name, spec))
                for v in variables
                if v.name.startswith("_")
            },
            placeholders=self.placeholders(),
            usubjid_separator=self.usubjid_template.separator,
            usubjid_parts=self._usubjid_words(),
            records=(
                "form" if kind == "source" else kind,
                str(getattr(first, kind, "") or "") if first else "",
            ),
        )
        derived_only = not forms and any(b.generator for b in spec.records)
        pivot_set = {
            name
            for b in spec.records
            if b.pivot is not None
            for name in (
                "TESTCD", "TEST",
                *(q for t in b.pivot.tests for q, v in t.qualifiers.items() if v.value is not None),
            )
        }  # fmt: skip
        for var in variables:
            meta = var.meta
            explicit = next((e for e in spec.variables if e.get("name") == var.name), {})
            per_block = [
                (block, rules[var.name])
                for block, rules in zip(spec.records, block_rules, strict=True)
                if var.name in rules
            ]
            named = {getattr(params, "codelist", None) for _, (_, params) in per_block}
            if meta.codelist is None and not meta.value_level and len(named) == 1:
                # Every block maps it with the same codelist (ct/map `codelist:`): define.xml
                # gives the variable that CodeList.
                meta.codelist = named.pop()
            if var.rule is None and per_block and "origin" not in explicit:
                # Set per record block only: the blocks' common origin, else Derived.
                kinds = {rdef.origin_for(params) for _, (rdef, params) in per_block}
                meta.origin = kinds.pop() if len(kinds) == 1 else "Derived"
            if (
                "origin" not in explicit
                and var.rule is not None
                and var.rule.name == "assign"
                and getattr(var.params, "from_", None) in pivot_set
            ):
                # A pivot's test code/name and constant qualifiers are the spec's, not the CRF's.
                meta.origin = "Assigned"
            copied = meta.origin in ("Collected", "Assigned") and var.name != "DOMAIN"
            if design and "origin" not in explicit and copied:
                # Trial-design content is the protocol's, whether copied or assigned.
                meta.origin = "Protocol"
            if derived_only and "origin" not in explicit and meta.origin == "Collected":
                # Records a generator derives (SE) hold no collected value.
                meta.origin = "Derived"
            coder = self.config.dictionaries.get(meta.dictionary or "")
            if coder and coder.origin and "origin" not in explicit and stage == "sdtm":
                meta.origin = coder.origin
                meta.source = meta.source or coder.source
            if meta.origin == "Collected" and meta.source is None:
                meta.source = source
            if meta.origin == "Collected" and not meta.crf_pages:
                meta.crf_pages = pages
            if (
                stage == "adam"
                and meta.origin == "Predecessor"
                and not meta.predecessor
                and parent
                and var.params is not None
            ):
                column = getattr(var.params, "from_", None) or getattr(var.params, "var", None)
                if isinstance(column, str) and not column.startswith("_"):
                    meta.predecessor = f"{parent}.{column.removeprefix('raw.')}"
            if meta.method is None and meta.origin == "Derived" and var.rule and var.params:
                meta.method = method_text(var.name, var.rule, var.params, words)
            elif meta.method is None and meta.origin == "Derived" and per_block:
                parts = [
                    f"{describe_rule(rdef, params, words, target=var.name)} for "
                    f"{_block_words(block)}"
                    for block, (rdef, params) in per_block
                ]
                meta.method = f"{var.name}: {'; '.join(parts)}."

    def _generator_params(self, block: Block, path: Path, where: str) -> Params | None:
        """A generator block's `params`, checked against the generator's model; `params` on
        any other block is an error (it would be ignored)."""
        if not block.generator:
            if block.params:
                raise SpecError(path, f"{where}.params", "only a generator block takes params")
            return None
        gdef = GENERATORS.get(block.generator)
        if gdef is None:
            raise SpecError(
                path,
                f"{where}.generator",
                f"unknown generator {block.generator!r}; known: {', '.join(sorted(GENERATORS))}",
            )
        return _validated(gdef.params, block.params, path, f"{where}.params")

    def _rule(self, entry: dict[str, Any], path: Path, where: str) -> tuple[RuleDef, Params]:
        if not isinstance(entry, dict) or "rule" not in entry:
            raise SpecError(path, where, "needs a 'rule'")
        name = entry["rule"]
        if name not in RULES:
            raise SpecError(
                path,
                f"{where}.rule",
                f"unknown rule {name!r}; known rules: {', '.join(sorted(RULES))}",
            )
        rdef = RULES[name]
        own = set(rdef.params.model_fields) | {
            f.alias for f in rdef.params.model_fields.values() if f.alias
        }
        params = {
            k: v for k, v in entry.items() if k != "rule" and (k in own or k not in VARIABLE_META)
        }
        checked = _validated(rdef.params, params, path, where)
        # References to forms, tables, datasets and their columns (spec_problems included)
        # are checked once every file is read: StudySpec._check_references.
        named = getattr(checked, "codelist", None)
        if named is not None:  # ct, map, ct_code ...: a codelist the study's CT has
            self.check_codelist(path, f"{where}.codelist", named)
        return rdef, checked

    def _variable(
        self, entry: Any, ig: pd.DataFrame, path: Path, where: str, stage: str
    ) -> VariableSpec:
        if not isinstance(entry, dict) or "name" not in entry:
            raise SpecError(path, where, "a variable needs a 'name'")
        name = str(entry["name"])
        where = f"{where}({name})"
        _validated(VariableMeta, entry, path, where)
        rdef, params = self._rule(entry, path, where) if "rule" in entry else (None, None)
        igrow = standards.ig_row(ig, name)
        label = entry.get("label") or (igrow["label"] if igrow is not None else None)
        vtype = entry.get("type") or (igrow["type"] if igrow is not None else None)
        helper = name.startswith("_")
        if not helper and not VARIABLE_NAME_RE.match(name):
            raise SpecError(
                path, f"{where}.name", f"{name!r}: a variable name is {VARIABLE_NAME_RULE}"
            )
        if not helper and not label:
            raise SpecError(path, f"{where}.label", "required for a variable not in the IG")
        if not helper:
            check_label(path, f"{where}.label", label, "variable label")
        if not helper and vtype not in ("Char", "Num"):
            raise SpecError(path, f"{where}.type", "must be Char or Num (not in the IG)")
        origin = entry.get("origin") or (rdef.origin_for(params) if rdef else "Derived")
        if stage == "adam" and origin == "Collected":
            origin = "Predecessor"
        rng = entry.get("range")
        vl = entry.get("value_level")
        value_level = ()
        if vl:
            vlm = _validated(ValueLevelMeta, vl, path, f"{where}.value_level")
            value_level = tuple(
                ValueLevel(vlm.by, value, use.codelist, use.label, use.method)
                for value, use in vlm.values.items()
            )
            for value, use in vlm.values.items():
                if use.codelist:
                    self.check_codelist(
                        path, f"{where}.value_level.values.{value}.codelist", use.codelist
                    )
        named = entry.get("codelist")
        if named:
            self.check_codelist(path, f"{where}.codelist", named)
        dictionary = entry.get("dictionary") or next(
            (k for k, d in self.config.dictionaries.items() if name in d.variables), None
        )
        if dictionary and dictionary not in self.config.dictionaries:
            raise SpecError(
                path,
                f"{where}.dictionary",
                f"unknown dictionary {dictionary!r}; study.yaml dictionaries: "
                f"{sorted(self.config.dictionaries)}",
            )
        meta = Variable(
            name=name,
            label=label or name,
            type=vtype or "Char",
            length=entry.get("length"),
            origin=origin,
            source=entry.get("source"),
            codelist=entry.get("codelist") or (getattr(params, "codelist", None)),
            format=entry.get("format"),
            significant_digits=entry.get("significant_digits"),
            method=entry.get("method"),
            comment=entry.get("comment"),
            predecessor=entry.get("predecessor"),
            role=entry.get("role") or (igrow["role"] if igrow is not None else None),
            core=entry.get("core") or (igrow["core"] if igrow is not None else None),
            crf_pages=tuple(str(p) for p in entry.get("crf_pages", [])),
            value_range=tuple(rng) if rng else None,
            dictionary=dictionary,
            value_level=value_level,
        )
        unknown_meta = set(entry) - VARIABLE_META - set(rdef.params.model_fields if rdef else ())
        unknown_meta -= {
            f.alias for f in (rdef.params.model_fields.values() if rdef else []) if f.alias
        }
        if unknown_meta and rdef is None:
            raise SpecError(path, f"{where}.{sorted(unknown_meta)[0]}", "unknown key")
        return VariableSpec(
            meta,
            keep=not helper and entry.get("keep", True),
            rule=rdef,
            params=params,
            key_path=where,
        )

    def _check_values(
        self,
        path: Path,
        spec: DatasetFile,
        variables: list[VariableSpec],
        block_rules: list[dict[str, tuple[RuleDef, Params]]],
        names: set[str],
        found: _Collect,
    ) -> None:
        """Conditions and value expressions, against what the dataset and the raw forms name:
        a bare text in lt/le/gt/ge naming a variable or raw column (once a reference, now
        always a literal), and a variable reference (arithmetic, date_shift) to no variable
        of the dataset."""
        columns = {c for form in self.forms.values() for c in form.columns}
        checked: list[tuple[str, Any]] = [(v.key_path, v.params) for v in variables]
        for i, (block, rules) in enumerate(zip(spec.records, block_rules, strict=True)):
            checked.append((f"records[{i}].filter", block.filter))
            checked += [(f"records[{i}].variables.{n}", p) for n, (_, p) in rules.items()]
        for where, params in checked:
            for at, cond in _conditions(params, where):
                for op, text in cond.bare_texts():
                    name = text.removeprefix("raw.")
                    if text.startswith("raw.") or text in names or name in columns:
                        with found.part():
                            raise SpecError(
                                path,
                                f"{at}.{op}",
                                f"{op}: {text!r} is a literal text; write {{var: {text}}} to "
                                f"compare with the variable {text}, or {{value: {text}}} for "
                                "the text",
                            )
            for field_name, ref in getattr(params, "variable_refs", lambda: [])():
                if not ref.startswith("raw.") and ref not in names:
                    with found.part():
                        raise SpecError(
                            path,
                            f"{where}.{field_name}",
                            f"unknown reference {ref!r}: not a variable of {spec.dataset} "
                            "(write raw.NAME for a raw column)",
                        )

    def _check_pivot(self, path: Path, i: int, block: Block, found: _Collect) -> None:
        """A pivot reads a raw form (not with `split`); every column it names is one of the
        form's (each unknown one its own located error); test codes are unique; the
        record columns it adds do not clash with the form's own."""
        pivot = block.pivot
        assert pivot is not None
        at = f"records[{i}].pivot"
        if not block.source or block.split is not None:
            raise SpecError(path, at, "a pivot reads a raw form (`source`), without `split`")
        form = self.forms[block.source]
        for where, column in pivot.columns():
            with found.part():
                if column not in form.columns:
                    raise SpecError(
                        path, f"{at}.{where}",
                        f"unknown raw column {column!r} in form {form.name!r} ({form.file})",
                    )  # fmt: skip
        codes = [t.TESTCD for t in pivot.tests]
        with found.part():
            dupes = sorted({c for c in codes if codes.count(c) > 1})
            if dupes:
                raise SpecError(path, f"{at}.tests", f"test codes given twice: {dupes}")
        added = {"TESTCD", "TEST", "ORRES", "ORRESU", "STAT", "REASND"}
        for j, test in enumerate(pivot.tests):
            for name, q in test.qualifiers.items():
                with found.part():
                    if (q.column is None) == (q.value is None):
                        raise SpecError(
                            path, f"{at}.tests[{j}].qualifiers.{name}", "give column or value"
                        )
                added.add(name)
            with found.part():
                if test.unit is not None and (test.unit.column is None) == (
                    test.unit.value is None
                ):
                    raise SpecError(path, f"{at}.tests[{j}].unit", "give column or value")
        with found.part():
            clash = sorted(added & set(form.columns))
            if clash:
                raise SpecError(
                    path, at,
                    f"the pivot's record columns {clash} have the names of columns of form "
                    f"{form.name!r}: name the qualifiers otherwise",
                )  # fmt: skip

    def _check_raw_columns(
        self,
        path: Path,
        i: int,
        block: Block,
        variables: list[VariableSpec],
        overrides: dict[str, tuple[RuleDef, Params]],
        found: _Collect,
    ) -> None:
        """Every raw column a block's filter and rules name is in its form (each variable
        checked on its own, so all unknown columns are reported at once)."""
        form = self.forms[block.source]  # type: ignore[index]
        known = set(form.columns)

        def check(cols: list[str], where: str) -> None:
            for col in cols:
                if col not in known:
                    raise SpecError(
                        path,
                        where,
                        f"unknown raw column {col!r} in form {form.name!r} ({form.file})",
                    )

        if block.filter is not None:
            with found.part():
                refs = [r[4:] for r in block.filter.refs() if r.startswith("raw.")]
                check(refs, f"records[{i}].filter")  # on the form's rows, before a pivot
        if block.pivot is not None:  # the record columns a pivot adds
            known |= {"TESTCD", "TEST", "ORRES", "ORRESU", "STAT", "REASND"}
            known |= {q for t in block.pivot.tests for q in t.qualifiers}
        for var in variables:
            rdef, rule_params = overrides.get(var.name, (var.rule, var.params))
            if rule_params is not None:
                with found.part():
                    check(rule_params.raw_columns(), var.key_path)
            if rdef is not None and rdef.name == "usubjid" and not rule_params.raw_columns():
                with found.part():
                    for part, col in form.subject_columns:
                        if col not in known:
                            raise SpecError(
                                path, var.key_path,
                                f"form {form.name!r} ({form.file}) has no column {col!r} for "
                                f"the USUBJID template part {part!r}: declare its "
                                "subject_columns in raw_forms.yaml",
                            )  # fmt: skip


def _conditions(node: Any, where: str) -> Iterator[tuple[str, Condition]]:
    """Every Condition inside a rule's parameters (or a block filter), with its key path."""
    if isinstance(node, Condition):
        yield where, node
        for name in ("all", "any"):
            for i, sub in enumerate(getattr(node, name) or []):
                yield from _conditions(sub, f"{where}.{name}[{i}]")
        if node.not_ is not None:
            yield from _conditions(node.not_, f"{where}.not")
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            key = type(node).model_fields[name].alias or name
            yield from _conditions(getattr(node, name), f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _conditions(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _conditions(item, f"{where}.{key}")


def _codes(path: Path, where: str, codes: Any) -> tuple[str, ...]:
    """A raw column's `values`: the only codes it may hold (e.g. [Y, N])."""
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        raise SpecError(path, where, "must be a list of code texts")
    return tuple(codes)


def _table_rows(
    path: Path, ref: TableRef, node: list[Any], found: _Collect
) -> tuple[list[dict[str, Any]], list[str]]:
    """A table's rows (exploded items merged with their parent) and each row's key path;
    items that are not mappings and keys outside the declared columns are spec errors."""
    rows: list[dict[str, Any]] = []
    wheres: list[str] = []
    for i, item in enumerate(node):
        where = f"{ref.path}[{i}]"
        with found.part():
            if not isinstance(item, dict):
                raise SpecError(path, where, "expected a mapping (one table row)")
            with found.part():  # the row is still checked (a misspelt key: a missing one)
                _check_keys(path, where, item, ref.columns)
            if not ref.explode:
                rows.append(item)
                wheres.append(where)
                continue
            subs = item.get(ref.explode) or []
            if not isinstance(subs, list):
                raise SpecError(path, f"{where}.{ref.explode}", "expected a list")
            base = {k: v for k, v in item.items() if k != ref.explode}
            for j, sub in enumerate(subs):
                sub_where = f"{where}.{ref.explode}[{j}]"
                with found.part():
                    if not isinstance(sub, dict):
                        raise SpecError(path, sub_where, "expected a mapping")
                    with found.part():
                        _check_keys(path, sub_where, sub, ref.explode_columns)
                    rows.append({**base, **sub})
                    wheres.append(sub_where)
    return rows, wheres


def _check_keys(path: Path, where: str, item: dict[str, Any], allowed: list[str] | None) -> None:
    if allowed is None:
        return
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        raise SpecError(
            path, f"{where}.{unknown[0]}", f"unknown key (a misspelling?); allowed: {allowed}"
        )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _check_table(
    path: Path,
    name: str,
    ref: TableRef,
    rows: list[dict[str, Any]],
    wheres: list[str],
    found: _Collect,
    terminology: ct.Terminology | None = None,
) -> None:
    """The row checks a table declares (required, unique, positive, integers, codelists),
    every failing row collected with its key path."""
    from cdiscforge import ct as ct_module

    seen: dict[tuple[str, ...], str] = {}
    for row, where in zip(rows, wheres, strict=True):
        for col in ref.required:
            with found.part():
                if _blank(row.get(col)):
                    raise SpecError(path, f"{where}.{col}", f"required in table {name!r}")
        for col in ref.positive:
            value = row.get(col)
            with found.part():
                if value is not None and not (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                ):
                    raise SpecError(path, f"{where}.{col}", f"must be a number > 0: {value!r}")
        for col in ref.integers:
            value = row.get(col)
            with found.part():
                if value is not None and not (
                    isinstance(value, int) and not isinstance(value, bool) and value >= 0
                ):
                    raise SpecError(path, f"{where}.{col}", f"must be a whole number: {value!r}")
        for col, listname in ref.codelists.items():
            value = row.get(col)
            with found.part():
                if value is not None and not _blank(value):
                    try:
                        cl = (terminology or ct_module.default_terminology()).codelist(listname)
                    except CdiscforgeError as exc:
                        raise SpecError(path, f"tables.{name}.codelists", str(exc)) from exc
                    if str(value) not in cl.values:
                        raise SpecError(
                            path,
                            f"{where}.{col}",
                            f"{value!r} is not a submission value of codelist {listname}",
                        )
        if ref.unique:
            key = tuple(ct_module.normalise_text(row.get(c)) for c in ref.unique)
            with found.part():
                if key in seen:
                    raise SpecError(
                        path, where, f"{ref.unique} {list(key)} repeats {seen[key]} in {name!r}"
                    )
                seen[key] = where


def _block_words(block: Block) -> str:
    """Which records a block maps, in words: `records from the enrolment form where ...`."""
    name = str(block.source or block.table or block.dataset or block.generator or "")
    where = f"records from the {name.replace('_', ' ')}" + (" form" if block.source else "")
    if block.filter is not None:
        where += f" where {Words().condition(block.filter)}"
    return where


def _blocks_method(name: str, spec: DatasetFile) -> str | None:
    """What a helper set per record block holds (DS `_ORDER`: 1 for consent records ...), for
    method text that names it."""
    parts = []
    for block in spec.records:
        entry = block.variables.get(name)
        if not entry or entry.get("rule") != "constant":
            return None
        where = f"the {str(block.source or block.table or block.dataset or '').replace('_', ' ')}"
        where += " form" if block.source else ""
        parts.append(f"{entry.get('value')} for {where}")
        if block.filter is not None:
            parts[-1] += f" where {Words().condition(block.filter)}"
    return f"the source order: {', '.join(parts)}" if parts else None


def load_study(folder: Path) -> StudySpec:
    """Load and check every spec of a study folder."""
    if not (folder / "study.yaml").is_file():
        raise SpecError(folder / "study.yaml", "", "no study.yaml in the spec folder")
    # Each stage package (sdtm/, adam/) registers its own rules into the vocabulary when
    # imported; a spec may use any of them.
    for stage in STAGES:
        importlib.import_module(f"cdiscforge.{stage}")
    return StudySpec(folder)

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdiscforge import standards
from cdiscforge.errors import SpecError
from cdiscforge.model import ORIGINS, StudyInfo, Variable
from cdiscforge.raw import ColumnSpec, FormSpec
from cdiscforge.rules import RULES, Condition, Params, RuleDef

VARIABLE_META = {
    "name", "label", "type", "length", "origin", "source", "codelist", "format",
    "significant_digits", "method", "comment", "predecessor", "crf_pages", "range", "keep",
    "rule", "core", "role",
}  # fmt: skip
STAGES = ("sdtm", "adam")


def load_yaml(path: Path) -> Any:
    """yaml.safe_load with the file named in any error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(path, "", "file not found") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validated(model: type[BaseModel], data: Any, file: Path, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = _loc((*(p for p in [prefix] if p), *err["loc"])).replace("from_", "from")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing required field"
        raise SpecError(file, path, msg) from exc
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


class TableRef(_Strict):
    file: str
    path: str  # top-level key holding the list
    explode: str | None = None  # a nested list to expand into one row per item


class StudyFile(_Strict):
    study: StudyMeta
    usubjid_separator: str = "-"
    ascii: str = "transliterate"
    raw_forms: str = "raw_forms.yaml"
    simulation: str | None = None
    tables: dict[str, TableRef] = {}
    sdtm: list[str] = []
    adam: list[str] = []
    ts: list[dict[str, Any]] = []


class Split(_Strict):
    """One record per item of a delimited list in `column` (e.g. "Methotrexate, leflunomide"):
    the column then holds the item, trimmed; empty items are dropped."""

    column: str  # a raw column (or a column of the table / upstream dataset)
    sep: str = ","  # a regular expression


class Block(_Strict):
    source: str | None = None  # a raw form
    table: str | None = None  # a spec table
    dataset: str | None = None  # an already built dataset (ADaM from SDTM)
    generator: str | None = None  # a registered record generator (e.g. SE)
    params: dict[str, Any] = {}
    filter: Condition | None = None
    filter_reason: str = "not for this dataset (filter)"
    split: Split | None = None
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
    qorig: str = "CRF"
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
    supp: list[SuppItem] = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    value_level_by: str | None = None
    comment: str | None = None

    def depends_on(self) -> set[str]:
        """Datasets that must be built before this one (from blocks and rule parameters)."""
        deps: set[str] = set()
        for block in self.records:
            if block.dataset:
                deps.add(block.dataset)
            deps |= set(block.params.get("datasets", []))
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
        self.folder = folder
        self.file = folder / "study.yaml"
        self.config: StudyFile = _validated(StudyFile, load_yaml(self.file), self.file, "")
        self.forms = self._load_forms()
        self._tables: dict[str, pd.DataFrame] = {}
        for name in self.config.tables:
            self.table(name)  # load and check every table up front
        self.datasets: dict[str, DatasetSpec] = {}
        for stage in STAGES:
            for rel in getattr(self.config, stage):
                path = folder / rel
                files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
                for f in files:
                    spec = self._load_dataset(f, stage)
                    if spec.name in self.datasets:
                        raise SpecError(f, "dataset", f"dataset {spec.name} is defined twice")
                    self.datasets[spec.name] = spec

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

    def info(self, sdtm_ct: str = "", adam_ct: str = "") -> StudyInfo:
        s = self.config.study
        return StudyInfo(
            studyid=s.studyid,
            name=s.name,
            description=s.description,
            protocol=s.protocol,
            sponsor=s.sponsor,
            sdtm_ct_version=sdtm_ct,
            adam_ct_version=adam_ct,
            creation_datetime=self.creation_datetime,
        )

    def placeholders(self) -> dict[str, str]:
        s = self.config.study
        return {"studyid": s.studyid, "protocol": s.protocol, "sponsor": s.sponsor}

    def usubjid(self, subject: pd.Series) -> pd.Series:
        """The study's one USUBJID rule: STUDYID, separator, the EDC subject number."""
        text = subject.astype("string").str.strip()
        return (self.studyid + self.config.usubjid_separator + text).astype("string")

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
        for name, form in forms.items():
            where = f"forms.{name}"
            if not isinstance(form, dict) or "file" not in form or "columns" not in form:
                raise SpecError(path, where, "a form needs 'file' and 'columns'")
            cols: dict[str, ColumnSpec] = {}
            for col, cdef in form["columns"].items():
                cdef = cdef or {}
                allowed = {"type", "required", "format", "description"}
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
                cols[col] = ColumnSpec(
                    col,
                    cdef.get("type", "str"),
                    bool(cdef.get("required")),
                    cdef.get("format"),
                    cdef.get("description", ""),
                )
            subject = form.get("subject") or next(
                (c for c in ("SUBJECT", "PATID", "SUBJID", "USUBJID") if c in cols), None
            )
            out[name] = FormSpec(
                name,
                form["file"],
                cols,
                tuple(form.get("key", [])),
                subject or "SUBJECT",
                form.get("description", ""),
            )
        return out

    def date_formats(self, form: str) -> dict[str, str]:
        spec = self.forms[form]
        return {c: s.format for c, s in spec.columns.items() if s.format}

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
        rows: list[dict[str, Any]] = []
        for item in node:
            if ref.explode:
                for sub in item.get(ref.explode) or []:
                    base = {k: v for k, v in item.items() if k != ref.explode}
                    rows.append({**base, **sub})
            else:
                rows.append(item)
        frame = pd.json_normalize(rows, sep="_") if rows else pd.DataFrame()
        self._tables[name] = frame
        return frame

    def table_file(self, name: str) -> Path:
        return self.folder / self.config.tables[name].file

    # --- dataset specs ------------------------------------------------------------------------

    def _load_dataset(self, path: Path, stage: str) -> DatasetSpec:
        raw = load_yaml(path)
        spec: DatasetFile = _validated(DatasetFile, raw, path, "")
        name = spec.dataset
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
        if not label:
            raise SpecError(path, "label", "required (not a standard dataset)")

        for i, block in enumerate(spec.records):
            kinds = [k for k in ("source", "table", "dataset", "generator") if getattr(block, k)]
            if len(kinds) != 1:
                raise SpecError(
                    path, f"records[{i}]", "give exactly one of source, table, dataset or generator"
                )
            if block.source and block.source not in self.forms:
                raise SpecError(
                    path,
                    f"records[{i}].source",
                    f"unknown raw form {block.source!r}; forms: {sorted(self.forms)}",
                )
            if block.table and block.table not in self.config.tables:
                raise SpecError(path, f"records[{i}].table", f"unknown table {block.table!r}")

        variables: list[VariableSpec] = []
        for i, entry in enumerate(spec.variables):
            variables.append(self._variable(entry, ig, path, f"variables[{i}]", stage))
        names = [v.name for v in variables]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(path, "variables", f"variables defined twice: {dupes}")

        block_rules: list[dict[str, tuple[RuleDef, Params]]] = []
        for i, block in enumerate(spec.records):
            rules: dict[str, tuple[RuleDef, Params]] = {}
            for vname, entry in block.variables.items():
                where = f"records[{i}].variables.{vname}"
                if vname not in names:
                    raise SpecError(path, where, f"{vname} is not in the dataset's variables")
                rules[vname] = self._rule(entry, path, where)
            block_rules.append(rules)
            if block.source:
                self._check_raw_columns(path, i, block, variables, rules)
        for key in spec.keys:
            if key not in names:
                raise SpecError(path, "keys", f"key variable {key} is not in variables")
        return DatasetSpec(
            name=name, stage=stage, file=path, label=label,
            klass=spec.klass or default_class, structure=spec.structure or default_structure,
            standard=standard, keys=spec.keys, records=spec.records, variables=variables,
            block_rules=block_rules, dedupe=spec.dedupe, supp=spec.supp, sort=spec.sort,
            value_level_by=spec.value_level_by, comment=spec.comment,
        )  # fmt: skip

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
        return rdef, _validated(rdef.params, params, path, where)

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
        if not helper and not label:
            raise SpecError(path, f"{where}.label", "required for a variable not in the IG")
        if not helper and vtype not in ("Char", "Num"):
            raise SpecError(path, f"{where}.type", "must be Char or Num (not in the IG)")
        origin = entry.get("origin") or (rdef.origin if rdef else "Derived")
        if stage == "adam" and origin == "Collected":
            origin = "Predecessor"
        rng = entry.get("range")
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
            method=entry.get("method") or _rule_method(origin, rdef, params),
            comment=entry.get("comment"),
            predecessor=entry.get("predecessor"),
            role=entry.get("role") or (igrow["role"] if igrow is not None else None),
            core=entry.get("core") or (igrow["core"] if igrow is not None else None),
            crf_pages=tuple(str(p) for p in entry.get("crf_pages", [])),
            value_range=tuple(rng) if rng else None,
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

    def _check_raw_columns(
        self,
        path: Path,
        i: int,
        block: Block,
        variables: list[VariableSpec],
        overrides: dict[str, tuple[RuleDef, Params]],
    ) -> None:
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
            check(
                [r[4:] for r in block.filter.refs() if r.startswith("raw.")], f"records[{i}].filter"
            )
        for var in variables:
            rule_params = overrides.get(var.name, (var.rule, var.params))[1]
            if rule_params is not None:
                check(rule_params.raw_columns(), var.key_path)


def _rule_method(origin: str, rdef: RuleDef | None, params: Params | None) -> str | None:
    """A derivation's method text when the spec writes none: the rule's one-line contract
    and its parameters, so define.xml never shows a Derived variable without a method."""
    if origin != "Derived" or rdef is None or params is None:
        return None
    summary = " ".join(rdef.doc.split("\n\n")[0].split())
    shown = params.model_dump(by_alias=True, exclude_defaults=True, exclude_none=True)
    args = "; ".join(f"{k}={v}" for k, v in shown.items())
    return f"Rule {rdef.name}({args}): {summary}" if args else f"Rule {rdef.name}: {summary}"


def load_study(folder: Path) -> StudySpec:
    """Load and check every spec of a study folder."""
    if not (folder / "study.yaml").is_file():
        raise SpecError(folder / "study.yaml", "", "no study.yaml in the spec folder")
    # Each stage package (sdtm/, adam/) registers its own rules into the vocabulary when
    # imported; a spec may use any of them.
    for stage in STAGES:
        importlib.import_module(stage)
    return StudySpec(folder)

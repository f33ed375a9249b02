"""The mapping-rule vocabulary: small, named, vectorised functions with typed parameters.

A spec names a rule per target variable (`rule: ct`, `rule: iso8601` ...) with parameters;
the spec loader validates the parameters against the rule's pydantic model (unknown keys and
wrong types are spec errors naming the file and key path), and the engine calls the rule with
a `RuleContext`. Rules never evaluate Python expressions from a spec.

Column references inside parameters: a `from:` parameter always names a raw column of the
record source; any other reference names a target variable computed earlier in the same
spec (or a helper variable starting with `_`), or a raw column when written `raw.NAME`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdiscforge.compact import frame_as_text
from cdiscforge.errors import Located, SpecError, raise_first
from cdiscforge.vectorise import as_text, broadcast, factorize_rows, isin

if TYPE_CHECKING:
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.model import Dataset
    from cdiscforge.spec import StudySpec


class Params(BaseModel):
    """Base of every rule's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # Names of fields holding raw column names / references / dataset names: used by the spec
    # checker (unknown raw columns) and the engine (build order).
    raw_fields: ClassVar[tuple[str, ...]] = ()
    ref_fields: ClassVar[tuple[str, ...]] = ()
    # Checked when the spec loads (`check_references`): fields naming a raw form, a spec
    # table or a dataset of the study; fields naming columns of that form / table / dataset
    # (a dict field: its keys); groups of fields of which exactly one must be given.
    form_fields: ClassVar[tuple[str, ...]] = ()
    table_fields: ClassVar[tuple[str, ...]] = ()
    dataset_fields: ClassVar[tuple[str, ...]] = ()
    form_columns: ClassVar[tuple[str, ...]] = ()
    table_columns: ClassVar[tuple[str, ...]] = ()
    dataset_columns: ClassVar[tuple[str, ...]] = ()
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @model_validator(mode="after")
    def _exactly_one(self) -> Params:
        for group in self.one_of:
            given = [f for f in group if getattr(self, f, None) is not None]
            if len(given) != 1:
                names = " or ".join(repr(_key(type(self), f)) for f in group)
                raise ValueError(f"give exactly one of {names}")
        return self

    def check_references(self, study: StudySpec) -> list[tuple[str, str]]:
        """(key, problem) for each form, table, dataset or column this rule names that the
        study does not have; nested parameter models are checked too. Run by the loader
        after every spec file is read, so a typo is a located spec error, not a traceback
        at build time."""
        out: list[tuple[str, str]] = []
        cls = type(self)
        # A broken raw-form contract is reported where it is; naming its forms here would
        # only repeat it once per rule.
        forms_ok = getattr(study, "_forms_ok", True)
        for kind, fields, names in (
            ("raw form", self.form_fields if forms_ok else (), set(study.forms)),
            ("spec table", self.table_fields, set(study.config.tables)),
            ("dataset", self.dataset_fields, set(study.datasets)),
        ):
            for name in fields:
                for value in _strings(getattr(self, name, None)):
                    if value not in names:
                        out.append(
                            (_key(cls, name), f"unknown {kind} {value!r}; known: {sorted(names)}")
                        )
        out += self._check_columns(study)
        # A rule with references the generic fields cannot express checks them itself
        # (aggregate: `by`, `where`, subject columns); skipped when the raw contract failed.
        own = getattr(self, "spec_problems", None)
        if own is not None and getattr(study, "_forms_ok", True):
            out += own(study)
        for name in cls.model_fields:
            for where, sub in _models(getattr(self, name, None), _key(cls, name)):
                out += [(f"{where}.{k}", m) for k, m in sub.check_references(study)]
        return out

    def _check_columns(self, study: StudySpec) -> list[tuple[str, str]]:
        cls = type(self)
        out: list[tuple[str, str]] = []
        targets: list[tuple[tuple[str, ...], str, set[str] | None]] = []
        for kind, fields, columns, lookup in (
            ("raw form", self.form_fields, self.form_columns, _form_columns),
            ("spec table", self.table_fields, self.table_columns, _table_columns),
            ("dataset", self.dataset_fields, self.dataset_columns, _dataset_columns),
        ):
            for name in fields:
                for value in _strings(getattr(self, name, None)):
                    targets.append((columns, f"{kind} {value!r}", lookup(study, value)))
        for columns, owner, known in targets:
            if known is None:
                continue
            for name in columns:
                value = getattr(self, name, None)
                listed = list(value) if isinstance(value, dict) else _strings(value)
                for col in listed:
                    if col not in known:
                        out.append((_key(cls, name), f"{owner} has no column {col!r}"))
        return out

    def raw_columns(self) -> list[str]:
        out: list[str] = []
        for name in self.raw_fields:
            value = getattr(self, name, None)
            if isinstance(value, str):
                out.append(value)
        for name in self.ref_fields:
            out += [r[4:] for r in _strings(getattr(self, name, None)) if r.startswith("raw.")]
        return out

    def domains(self) -> set[str]:
        """Datasets this rule reads (for ordering the build)."""
        return set()

    def variable_refs(self) -> list[tuple[str, str]]:
        """(parameter, reference) of each reference the spec loader checks names a variable
        of the dataset (raw.NAME references are checked against the form instead)."""
        return []


def _key(cls: type[BaseModel], name: str) -> str:
    """A field's name as the spec writes it (`from`, not `from_`)."""
    field = cls.model_fields.get(name)
    return (field.alias if field is not None and field.alias else name).rstrip("_")


def _models(value: Any, where: str) -> list[tuple[str, Params]]:
    """Nested parameter models in a field's value, with their key paths."""
    if isinstance(value, Params):
        return [(where, value)]
    if isinstance(value, (list, tuple)):
        return [m for i, v in enumerate(value) for m in _models(v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [m for k, v in value.items() for m in _models(v, f"{where}.{k}")]
    return []


def _form_columns(study: StudySpec, name: str) -> set[str] | None:
    form = study.forms.get(name)
    return set(form.columns) if form is not None else None


def _table_columns(study: StudySpec, name: str) -> set[str] | None:
    if name not in study.config.tables:
        return None
    try:
        return set(study.table(name).columns)
    except SpecError:
        return None  # the table's own problem is reported where it is loaded


def _dataset_columns(study: StudySpec, name: str) -> set[str] | None:
    spec = study.datasets.get(name)
    return {v.name for v in spec.variables if v.keep} if spec is not None else None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, BaseModel):
        return _strings(value.model_dump(by_alias=True))
    return []


@dataclass(frozen=True)
class RuleDef:
    name: str
    params: type[Params]
    fn: Callable[[RuleContext, Any], pd.Series]
    origin: str
    final: bool  # runs on the stacked record set (seq, last-observation flags)
    doc: str
    # Plain-English method text from the parameters (cdiscforge.rules.words): define.xml
    # shows it for a Derived variable whose spec writes no method.
    describe: Callable[[Any, Any], str] | None = None
    # The origin for these parameters when it depends on them (a unit conversion makes a
    # collected number Derived); None: `origin`.
    origin_of: Callable[[Any], str] | None = None

    def origin_for(self, params: Params | None) -> str:
        if self.origin_of is not None and params is not None:
            return self.origin_of(params)
        return self.origin


RULES: dict[str, RuleDef] = {}


def rule(
    name: str,
    params: type[Params],
    *,
    origin: str = "Derived",
    final: bool = False,
    describe: Callable[[Any, Any], str] | None = None,
    origin_of: Callable[[Any], str] | None = None,
) -> Callable[[Callable[[RuleContext, Any], pd.Series]], Callable[[RuleContext, Any], pd.Series]]:
    """Register a rule under `name`; `origin` is its default define.xml origin, `describe`
    its method-text renderer (params, words) -> phrase (see cdiscforge.rules.words)."""

    def deco(fn: Callable[[RuleContext, Any], pd.Series]) -> Callable[..., pd.Series]:
        if name in RULES:
            raise RuntimeError(f"rule {name!r} registered twice")
        doc = (fn.__doc__ or "").strip()
        RULES[name] = RuleDef(name, params, fn, origin, final, doc, describe, origin_of)
        return fn

    return deco


@dataclass(frozen=True)
class GeneratorDef:
    """A record generator: makes a block's records (SE from dated events, missed visits,
    derived parameters) instead of reading them. Its `params` model checks the block's
    `params:` when the spec loads, as a rule's model checks its parameters."""

    name: str
    params: type[Params]
    fn: Callable[[RuleContext, Any], pd.DataFrame]
    doc: str


GENERATORS: dict[str, GeneratorDef] = {}


def generator(
    name: str, params: type[Params]
) -> Callable[[Callable[[RuleContext, Any], pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """Register a record generator under `name`; a block `generator: NAME` with `params:`
    (validated against `params`) gets its records from it."""

    def deco(fn: Callable[[RuleContext, Any], pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        if name in GENERATORS or name in RULES:
            raise RuntimeError(f"generator {name!r} registered twice")
        GENERATORS[name] = GeneratorDef(name, params, fn, (fn.__doc__ or "").strip())
        return fn

    return deco


@dataclass
class Source:
    """The records a block maps from: a raw form, a spec table or a built dataset, with row
    numbers. `texts`: a categorical column of `frame` (a built dataset held compact,
    cdiscforge.compact) is read as its text (`RuleContext.raw`), made once when first read,
    so that a block makes text of the columns its rules read only."""

    name: str
    file: str
    frame: pd.DataFrame
    rows: np.ndarray
    date_formats: dict[str, str] = field(default_factory=dict)
    subject: str | None = None
    texts: bool = False


@dataclass
class RuleContext:
    """What a rule may read: the block's source, the target columns so far, built datasets."""

    study: StudySpec
    dataset: str
    variable: str
    out: pd.DataFrame
    source: Source | None
    domains: dict[str, Dataset]
    log: BuildLog
    spec_file: str = ""
    store: Any = None  # the engine's raw-form store (reads each raw export once)
    # A rule may return a repeated-value text column as a categorical (vectorise.broadcast's
    # keep_codes): the engine keeps it so, and `ref` gives a later rule its strings.
    keep_codes: bool = False
    _texts: dict[str, tuple[Any, pd.Series]] = field(default_factory=dict, repr=False)

    def raw(self, column: str, held: bool = False) -> pd.Series:
        """A column of the block's source, as text (`Source.texts`), or `held` as the
        source holds it (a categorical read per category: `Condition.evaluate`)."""
        if self.source is None:
            raise SpecError(
                self.spec_file, self.variable, f"raw column {column!r} used after stack"
            )
        if column not in self.source.frame.columns:
            raise SpecError(
                self.spec_file,
                self.variable,
                f"raw column {column!r} is not in source {self.source.name!r}",
            )
        values = self.source.frame[column]
        if self.source.texts and not held and isinstance(values.dtype, pd.CategoricalDtype):
            values = as_text(values)
            self.source.frame[column] = values  # the block's own frame: read once
        return values

    def ref(self, reference: str, held: bool = False) -> pd.Series:
        """A target variable computed earlier, or a raw column written `raw.NAME`; `held`:
        a categorical as it is held (kept as codes, `keep_codes`, or a compact dataset's
        column: a condition is tested per category, not on its strings), see `raw`."""
        if reference.startswith("raw."):
            return self.raw(reference[4:], held)
        if reference in self.out.columns:
            return self.out[reference] if held else self.text(reference)
        raise SpecError(
            self.spec_file,
            self.variable,
            f"{reference!r} is not a variable computed before {self.variable} "
            "(order the variables, or write raw.NAME for a raw column)",
        )

    def text(self, name: str) -> pd.Series:
        """The target column `name` as rules read it: a column kept as codes (a categorical,
        see `keep_codes`) as its strings, made once per column (vectorise.as_text)."""
        column = self.out[name]
        if not isinstance(column.dtype, pd.CategoricalDtype):
            return column
        seen = self._texts.get(name)
        if seen is None or seen[0] is not column.array:
            seen = (column.array, as_text(column))
            self._texts[name] = seen
        return seen[1]

    def located(self, column: str) -> Located:
        if self.source is None:
            return Located(f"{self.dataset} (derived)", column)
        return Located(self.source.file, column, self.source.rows)

    def domain(self, name: str) -> Dataset:
        if name not in self.domains:
            raise SpecError(self.spec_file, self.variable, f"dataset {name} is not built yet")
        return self.domains[name]

    def subject_values(self, name: str, column: str) -> pd.Series:
        """Per-record value of `column` from dataset `name` (one record per USUBJID)."""
        other = self.domain(name).frame[["USUBJID", column]].drop_duplicates("USUBJID")
        other = frame_as_text(other)  # one row per subject: as text if compacted
        mapping = pd.Series(other[column].to_numpy(), index=other["USUBJID"].to_numpy())
        mine = self.ref("USUBJID")
        codes, first = factorize_rows(mine)  # its codes, when known (vectorise.coded)
        subjects = mine.iloc[first].reset_index(drop=True)  # each mapped once
        known = other["USUBJID"]  # mapping's index, as Arrow text
        if len(mapping) and subjects.notna().any() and not isin(subjects, known).any():
            # A join matching no subject: null for every record, which validation cannot see.
            self.log.warn(self.study.stage_of(self.dataset), self.dataset,
                          f"dataset {name}: none of this dataset's {mine.nunique()} USUBJID(s) "
                          f"is one of {name}'s; {self.variable} is null for every record",
                          variable=self.variable, count=len(mine),
                          examples=[str(mine.dropna().iloc[0])])  # fmt: skip
        return broadcast(subjects.map(mapping), codes, mine.index)

    def report(
        self, mask: pd.Series, message: str, *, warn: bool = False, examples: list | None = None
    ) -> None:
        """Log `message` for the records where `mask` holds (none: nothing is logged), with
        their count, under this dataset and variable: how rules say what they changed."""
        count = int(mask.fillna(False).astype(bool).sum())
        if count:
            log = self.log.warn if warn else self.log.info
            log(self.study.stage_of(self.dataset), self.dataset, message, variable=self.variable,
                count=count, examples=examples or [])  # fmt: skip

    def input_error(self, mask: pd.Series, column: str, values: pd.Series, problem: str) -> None:
        """Report the records where `mask` holds as located input errors (source file, row,
        `column`: the raw column whose value is wrong, and its value). Inside the engine's
        stage every such record is collected and the rule goes on: it must give those
        records a value (null) so the stage can finish and report all errors at once."""
        # A column that is not raw (a variable computed from raw values) is reported only for
        # records without an error yet: the bad raw cell it came from is the one to fix.
        derived = self.source is None or column not in self.source.frame.columns
        # A helper variable (_NAME) means nothing to the reader: name the dataset only.
        where = self.dataset if self.variable.startswith("_") else f"{self.dataset}.{self.variable}"
        problem = f"{where}: {problem}"
        raise_first(mask, values, self.located(column), problem, secondary=derived)


# --- conditions: a small structured vocabulary, never evaluated code ----------------------

# Tests whose right side is a value (a bare scalar is always a literal; `{var: REF}` a
# reference, `{value: X}` an explicit literal); text tests take a literal text only.
VALUE_TESTS = ("eq", "ne", "lt", "le", "gt", "ge")
LIST_TESTS = ("in_", "not_in")
TEXT_TESTS = ("startswith", "endswith", "contains", "matches")
ORDER_TESTS = ("lt", "le", "gt", "ge")
_COMPARE = {"eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge"}


def _operand_error(value: Any) -> str | None:
    """Why a right-hand side is malformed (a mapping other than {var: REF} / {value: X})."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("var", "value"):
            return f"expected a value, {{var: REF}} or {{value: X}}, got {value!r}"
        if "var" in value and not isinstance(value["var"], str):
            return f"{{var: ...}} names a variable or raw.COLUMN, got {value['var']!r}"
    if isinstance(value, list):
        return f"expected one value, got a list {value!r}"
    return None


class Condition(BaseModel):
    """Which records a rule or block applies to: a structured test, never code.

    `{col: REF, TEST: ...}` (`var:` is an alias of `col:`; REF a target variable, a helper
    `_NAME` or `raw.COLUMN`), several tests in one mapping all holding, with the tests
    `eq`/`ne`/`lt`/`le`/`gt`/`ge` (right side: a bare scalar is a literal, `{var: REF}` a
    reference, `{value: X}` an explicit literal), `in`/`not_in` (a list of such values),
    `startswith`/`endswith`/`contains` (literal text), `matches` (a regular expression,
    searched; checked when the spec loads), `missing: true|false`; or the combinators
    `{all: [...]}`, `{any: [...]}`, `{not: {...}}`. A number compared with text compares the
    text as a number (raw columns are text); a missing value fails every test but `ne`,
    `not_in` and `missing: true`.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    col: str | None = None
    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = None
    not_in: list[Any] | None = None
    missing: bool | None = None
    lt: Any = None
    le: Any = None
    gt: Any = None
    ge: Any = None
    startswith: str | None = Field(None, description="holds when the value starts with this text")
    endswith: str | None = Field(None, description="holds when the value ends with this text")
    contains: str | None = Field(None, description="holds when the value contains this text")
    matches: str | None = Field(
        None, description="holds when this regular expression is found in the value (searched)"
    )
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = None

    @model_validator(mode="before")
    @classmethod
    def _spelling(cls, data: Any) -> Any:
        """`in`, `not` and `var` as written in a spec (Python keywords / an alias)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "in" in data:
            data["in_"] = data.pop("in")
        if "not" in data:
            data["not_"] = data.pop("not")
        if "var" in data:
            if "col" in data:
                raise ValueError("give col or var (the same thing), not both")
            data["col"] = data.pop("var")
        return data

    @model_validator(mode="after")
    def _check(self) -> Condition:
        tests = [t for t in (*VALUE_TESTS, *LIST_TESTS, *TEXT_TESTS, "missing")
                 if getattr(self, t) is not None]  # fmt: skip
        combinators = [c for c in ("all", "any", "not_") if getattr(self, c) is not None]
        shown = [t.rstrip("_") for t in tests]
        if combinators:
            if len(combinators) > 1 or tests or self.col is not None:
                raise ValueError(
                    "a condition is either {col: REF, tests...} or one of all/any/not, "
                    f"not both (got {[c.rstrip('_') for c in combinators] + shown})"
                )
            return self
        if self.col is None:
            raise ValueError("a condition needs col (or var) with a test, or all/any/not")
        if not tests:
            raise ValueError(
                f"the condition on {self.col} has no test (eq, ne, lt, le, gt, ge, in, not_in, "
                "startswith, endswith, contains, matches, missing)"
            )
        for name in VALUE_TESTS:
            problem = _operand_error(getattr(self, name))
            if problem:
                raise ValueError(f"{name}: {problem}")
        for name in LIST_TESTS:
            for item in getattr(self, name) or []:
                problem = _operand_error(item)
                if problem:
                    raise ValueError(f"{name.rstrip('_')}: {problem}")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(
                    f"matches: {self.matches!r} is not a valid regular expression ({exc})"
                ) from None
        return self

    def refs(self) -> list[str]:
        """Every reference: the left side and each `{var: REF}` operand, nested ones too."""
        out = [self.col] if self.col else []
        for name in VALUE_TESTS:
            value = getattr(self, name)
            if isinstance(value, dict) and "var" in value:
                out.append(value["var"])
        for name in LIST_TESTS:
            out += [
                v["var"] for v in getattr(self, name) or [] if isinstance(v, dict) and "var" in v
            ]
        for sub in (self.all or []) + (self.any or []):
            out += sub.refs()
        if self.not_:
            out += self.not_.refs()
        return out

    def bare_texts(self) -> list[tuple[str, str]]:
        """(test, text) of each bare text in this condition's own lt/le/gt/ge (not nested
        ones): the spec loader refuses one that names a variable or raw column (it used to
        be a reference)."""
        return [(op, v) for op in ORDER_TESTS if isinstance(v := getattr(self, op), str)]

    def evaluate(self, ctx: RuleContext) -> pd.Series:
        index = ctx.out.index if ctx.source is None else ctx.source.frame.index
        if self.all is not None:
            result = pd.Series(True, index=index)
            for sub in self.all:
                result &= sub.evaluate(ctx)
            return result
        if self.any is not None:
            result = pd.Series(False, index=index)
            for sub in self.any:
                result |= sub.evaluate(ctx)
            return result
        if self.not_ is not None:
            return ~self.not_.evaluate(ctx)
        assert self.col is not None  # checked when the spec loaded
        values = ctx.ref(self.col, held=True)
        if isinstance(values.dtype, pd.CategoricalDtype):
            if self._references():  # compared row by row with another column: as text
                return self._test(as_text(values), ctx)
            # Tested once per category (and once for missing, the last slot: code -1), as
            # the text it stands for; each record then takes its category's answer.
            categories = values.dtype.categories
            distinct = pd.Series([*categories, None], dtype=categories.dtype)
            hits = self._test(distinct, ctx).to_numpy(dtype=bool)
            return pd.Series(hits[values.cat.codes.to_numpy()], index=values.index)
        return self._test(values, ctx)

    def _references(self) -> bool:
        """Whether this test's right side names a column (`{var: REF}`), not a literal."""
        return len(self.refs()) > 1

    def _test(self, values: pd.Series, ctx: RuleContext) -> pd.Series:
        """This condition's own tests (not a combinator) on `values`."""
        result = pd.Series(True, index=values.index)
        if self.missing is not None:
            result &= values.isna() if self.missing else values.notna()
        for op in VALUE_TESTS:
            operand = getattr(self, op)
            if operand is not None:
                hit = _compare(values, op, _operand(ctx, operand))
                result &= hit.fillna(op == "ne").astype(bool)
        for op in LIST_TESTS:
            items = getattr(self, op)
            if items is None:
                continue
            literals = [v["value"] if isinstance(v, dict) else v for v in items
                        if not (isinstance(v, dict) and "var" in v)]  # fmt: skip
            hit = values.isin(literals)
            for item in items:
                if isinstance(item, dict) and "var" in item:
                    hit |= _compare(values, "eq", ctx.ref(item["var"])).fillna(False).astype(bool)
            result &= hit if op == "in_" else ~hit
        text = values.astype("string") if any(getattr(self, t) for t in TEXT_TESTS) else None
        if text is not None:
            for op in TEXT_TESTS:
                literal = getattr(self, op)
                if literal is None:
                    continue
                if op == "matches":
                    hit = text.str.contains(literal, regex=True)
                elif op == "contains":
                    hit = text.str.contains(literal, regex=False)
                else:
                    hit = getattr(text.str, op)(literal)
                result &= hit.fillna(False).astype(bool)
        return result.astype(bool)


def _operand(ctx: RuleContext, value: Any) -> Any:
    """A right-hand side: `{var: REF}` -> the referenced column, `{value: X}` / X -> X."""
    if isinstance(value, dict):
        return ctx.ref(value["var"]) if "var" in value else value["value"]
    return value


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _compare(values: pd.Series, op: str, other: Any) -> pd.Series:
    """`values OP other`, element-wise; text against a number compares as numbers (raw
    columns are text), so `{col: raw.AGE, lt: 40}` means what it says; text that is no
    number then fails the test (passes `ne`)."""
    if isinstance(other, pd.Series):
        if _numeric(values) != _numeric(other):
            values = pd.to_numeric(values, errors="coerce")
            other = pd.to_numeric(other, errors="coerce")
    elif isinstance(other, (int, float)) and not isinstance(other, bool):
        if not _numeric(values):
            values = pd.to_numeric(values, errors="coerce")
    elif isinstance(other, str) and _numeric(values):
        number = pd.to_numeric(pd.Series([other]), errors="coerce").iloc[0]
        if pd.isna(number):
            return pd.Series(op == "ne", index=values.index)
        other = float(number)
    return getattr(values, _COMPARE[op])(other)


Condition.model_rebuild()


def render(template: Any, ctx: RuleContext) -> Any:
    """Fill `{studyid}`-style placeholders in a constant from the study metadata."""
    if isinstance(template, str) and "{" in template:
        return template.format(**ctx.study.placeholders())
    return template


# Register the vocabulary (import for side effects).
from cdiscforge.rules import basic as _basic  # noqa: E402,F401
from cdiscforge.rules import values as _values  # noqa: E402,F401

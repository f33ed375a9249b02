"""The general mapping rules (any study, any standard). Each docstring is the rule's contract.

SDTM-specific rules (visits, epochs, last observation before exposure) live in `sdtm/rules.py`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from cdiscforge import ct as ct_module
from cdiscforge import dates
from cdiscforge.errors import Located, SpecError
from cdiscforge.rules import Condition, Params, RuleContext, render, rule
from cdiscforge.rules.words import Words, describes, join
from cdiscforge.vectorise import (
    as_text,
    broadcast,
    coded,
    factorize_rows,
    isin,
    map_distinct,
    per_distinct,
    stable_order,
)

Unmatched = Literal["error", "keep", "upper", "null"]


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string")


# --- copying and constants -----------------------------------------------------------------


class ConstantParams(Params):
    value: Any = Field(
        None,
        description="the value every record gets ({studyid} placeholders filled); omitted: null",
    )


@rule("constant", ConstantParams, origin="Assigned")
def constant(ctx: RuleContext, p: ConstantParams) -> pd.Series:
    """Every record gets `value` (null when omitted); `{studyid}` placeholders are filled.

    Example: `{name: DOMAIN, rule: constant, value: DM}`.
    """
    index = ctx.out.index
    value = render(p.value, ctx)
    if value is None:
        return pd.Series(pd.NA, index=index, dtype="object")
    if isinstance(value, str):  # text: what the engine types it to (`_typed`), directly;
        # broadcast from its one value, so grouping or sorting by it needs no hashing
        one = pd.Series([value], dtype="string")
        return broadcast(one, np.zeros(len(index), dtype=np.intp), index, ctx.keep_codes)
    return pd.Series([value] * len(index), index=index)


class AssignParams(Params):
    from_: str | None = Field(
        None, alias="from", description="a raw column of the block's source to copy"
    )
    var: str | None = Field(None, description="a variable computed earlier (or raw.NAME) to copy")
    upper: bool = Field(False, description="upper-case the copied text")
    raw_fields = ("from_",)
    one_of = (("from_", "var"),)
    ref_fields = ("var",)


@rule("assign", AssignParams, origin="Collected")
def assign(ctx: RuleContext, p: AssignParams) -> pd.Series:
    """Copy a raw column (`from`) or a variable (`var`), trimmed; `upper: true` upper-cases.

    Example: `{name: AETERM, rule: assign, from: AETERM}`.
    """
    values = _source(ctx, p.from_, p.var)
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        if coded(values) is not None:  # a raw column (its codes from the check), or one
            # broadcast: trimmed per distinct value and, where the context allows, kept as
            # codes (the dataset's de-duplication and sort then move integers, not strings)
            return per_distinct(lambda v: _trimmed(v, p.upper), values, keep_codes=ctx.keep_codes)
        return _trimmed(values, p.upper)
    return values


def _trimmed(values: pd.Series, upper: bool) -> pd.Series:
    """`assign`'s text: stripped, upper-cased with `upper`."""
    values = _text(values).str.strip()
    return values.str.upper() if upper else values


def _source(ctx: RuleContext, raw: str | None, var: str | None) -> pd.Series:
    if (raw is None) == (var is None):
        raise SpecError(ctx.spec_file, ctx.variable, "give exactly one of 'from' or 'var'")
    return ctx.raw(raw) if raw is not None else ctx.ref(var)  # type: ignore[arg-type]


class NumberParams(Params):
    from_: str | None = Field(
        None, alias="from", description="a raw column of the block's source holding the number"
    )
    var: str | None = Field(
        None, description="a variable computed earlier (or raw.NAME) holding the number"
    )
    factor: float | str | None = Field(
        None, description="multiply by this number, or by a per-record reference"
    )
    offset: float | str | None = Field(
        None,
        description="added after the factor (value x factor + offset): a number or a reference "
        "to a per-record offset; for exact formulas prefer the arithmetic rule",
    )
    decimals: int | None = Field(None, description="round to this many decimals")
    raw_fields = ("from_",)
    one_of = (("from_", "var"),)
    ref_fields = ("var", "offset")


@rule("number", NumberParams, origin="Collected")
def number(ctx: RuleContext, p: NumberParams) -> pd.Series:
    """Numeric value of a raw column or variable, optionally times `factor` plus `offset`
    (F -> C: factor 0.5555555556, offset -17.7777777778), rounded to `decimals`.

    Text that is not a number is an input error naming the row and value (use `result_num`
    for results that may carry `<`/`>` qualifiers).
    """
    values = _source(ctx, p.from_, p.var)
    nums = per_distinct(lambda v: pd.to_numeric(v, errors="coerce"), values)
    ctx.input_error(values.notna() & nums.isna(), p.from_ or p.var or "", values, "not a number")
    nums = nums.astype("Float64") * _factor(ctx, p.factor)
    if p.offset is not None:
        nums = nums + _offset(ctx, p.offset)
    return nums.round(p.decimals) if p.decimals is not None else nums


def _factor(ctx: RuleContext, factor: float | str | None) -> Any:
    if factor is None:
        return 1.0
    if isinstance(factor, str):  # a per-record factor has few values: parsed once each
        return per_distinct(_to_number, ctx.ref(factor)).astype("Float64")
    return factor


def _to_number(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def _offset(ctx: RuleContext, offset: float | str) -> Any:
    """An offset: a number, or a per-record reference (a missing one leaves the value null)."""
    if isinstance(offset, str):
        return per_distinct(_to_number, ctx.ref(offset)).astype("Float64")
    return offset


# --- controlled terminology and sponsor mappings ---------------------------------------------


class CtParams(Params):
    from_: str | None = Field(
        None,
        alias="from",
        description="a raw column of the block's source holding the collected text",
    )
    var: str | None = Field(
        None, description="a variable computed earlier (or raw.NAME) holding the collected text"
    )
    codelist: str = Field(
        description="the codelist to map to: CDISC short name or NCI code, or a sponsor codelist id"
    )
    synonyms: dict[str, str] = Field(
        {}, description="collected text -> submission value, tried first (case/space-insensitive)"
    )
    unmatched: Unmatched = Field(
        "error", description="a value not in the codelist: error, keep, upper or null"
    )
    raw_fields = ("from_",)
    one_of = (("from_", "var"),)
    ref_fields = ("var",)


@rule("ct", CtParams, origin="Collected")
def ct(ctx: RuleContext, p: CtParams) -> pd.Series:
    """Map collected text to a codelist's submission values.

    Cases, in order: missing stays missing; the spec's `synonyms` (case/space-insensitive);
    the CT submission value, CDISC synonym or NCI preferred term (case/space-insensitive);
    otherwise the `unmatched` policy: error (stop, naming row and value), keep (raw text,
    logged), upper (upper-cased raw text, logged: for extensible codelists), null (logged).

    Example: `{name: SEX, rule: ct, from: SEX, codelist: SEX, synonyms: {Female: F}}`.
    """
    values = _source(ctx, p.from_, p.var)
    codelist = _terminology(ctx).codelist(p.codelist)
    mapped, unmatched = _map_distinct_codelist(codelist, values, p.synonyms, ctx.keep_codes)
    return _apply_unmatched(
        ctx, values, mapped, unmatched, p.unmatched, p.from_ or p.var or "", _cl_words(codelist)
    )


def _map_distinct_codelist(
    codelist: ct_module.Codelist,
    values: pd.Series,
    spellings: dict[str, Any],
    keep_codes: bool = False,
) -> tuple[pd.Series, pd.Series]:
    """`codelist.map_values` run on the distinct values only (element-wise), broadcast
    (the mapped text as codes with `keep_codes`, vectorise.broadcast)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    distinct = pd.Series(uniques, dtype=values.dtype, name=values.name)
    mapped, unmatched = codelist.map_values(distinct, spellings)
    return (
        broadcast(mapped, codes, values.index, keep_codes),
        broadcast(unmatched, codes, values.index),
    )


def _terminology(ctx: RuleContext) -> ct_module.Terminology:
    """The study's one CT lookup (chosen CT releases and its sponsor codelists)."""
    return getattr(ctx.study, "terminology", None) or ct_module.default_terminology()


def _cl_words(codelist: ct_module.Codelist) -> str:
    if codelist.sponsor:
        return f"sponsor codelist {codelist.short_name}"
    return f"codelist {codelist.short_name} ({codelist.code})"


def _apply_unmatched(
    ctx: RuleContext,
    values: pd.Series,
    mapped: pd.Series,
    unmatched: pd.Series,
    policy: Unmatched,
    column: str,
    what: str,
) -> pd.Series:
    if not unmatched.any():
        return mapped
    mapped = as_text(mapped)  # kept as codes (keep_codes): a value not among them may come
    if policy == "error":
        ctx.input_error(unmatched, column, values, f"value not in {what}")
        return mapped  # reached only while errors are collected: unmatched records are null
    examples = sorted(values[unmatched].astype(str).unique().tolist())[:5]
    action = {"keep": "kept as collected", "upper": "kept upper-cased", "null": "set to null"}
    ctx.report(unmatched, f"value(s) not in {what}: {action[policy]}", warn=True,
               examples=examples)  # fmt: skip
    if policy == "keep":
        return mapped.mask(unmatched, _text(values).str.strip())
    if policy == "upper":
        return mapped.mask(unmatched, _text(values).str.strip().str.upper())
    return mapped


class MapParams(Params):
    from_: str | None = Field(
        None,
        alias="from",
        description="a raw column of the block's source holding the collected text",
    )
    var: str | None = Field(
        None, description="a variable computed earlier (or raw.NAME) holding the collected text"
    )
    values: dict[str, Any] = Field(
        {},
        description="collected text -> value (keys case/space-insensitive); with `codelist`, "
        "spellings tried first",
    )
    codelist: str | None = Field(
        None,
        description="a sponsor or CDISC codelist: its codes and decodes map to the code; the "
        "variable gets its CodeList in define.xml",
    )
    unmatched: Unmatched = Field(
        "error", description="a value not in `values`: error, keep, upper or null"
    )
    raw_fields = ("from_",)
    one_of = (("from_", "var"),)
    ref_fields = ("var",)

    @model_validator(mode="after")
    def _table_or_codelist(self) -> MapParams:
        if not self.values and self.codelist is None:
            raise ValueError("give `values` (the map) or `codelist` (or both)")
        return self


@rule("map", MapParams, origin="Collected")
def map_values(ctx: RuleContext, p: MapParams) -> pd.Series:
    """Map collected text through the spec's own table (case/space-insensitive keys), or to
    the codes of a codelist.

    For sponsor-defined value lists (e.g. AEREL). With `codelist` (a sponsor codelist of the
    study's codelists.yaml / codelists/*.csv, or a CDISC one), a value matching a term's code
    or decode (case/space-insensitive) gives the code, after the spellings in `values`; the
    variable then has that CodeList in define.xml. Unmatched values follow `unmatched` as in
    `ct`. Example: `{name: AEREL, rule: map, from: AEREL, codelist: AEREL_SP}`.
    """
    values = _source(ctx, p.from_, p.var)
    if p.codelist is not None:
        codelist = _terminology(ctx).codelist(p.codelist)
        mapped, unmatched = _map_distinct_codelist(codelist, values, p.values, ctx.keep_codes)
        what = f"the spec's map or {_cl_words(codelist)}" if p.values else _cl_words(codelist)
        return _apply_unmatched(
            ctx, values, mapped, unmatched, p.unmatched, p.from_ or p.var or "", what
        )
    table = {ct_module.normalise_text(k): v for k, v in p.values.items()}
    mapped = per_distinct(
        lambda distinct: map_distinct(_text(distinct), ct_module.normalise_text).map(table),
        values,
        keep_codes=ctx.keep_codes,
    )
    unmatched = values.notna() & mapped.isna()
    return _apply_unmatched(
        ctx, values, mapped, unmatched, p.unmatched, p.from_ or p.var or "", "the spec's map"
    )


# --- dates -----------------------------------------------------------------------------------


class Iso8601Params(Params):
    date: str = Field(description="raw date (or datetime) column; its format from raw_forms.yaml")
    time: str | None = Field(None, description="raw time column joined to the date")
    raw_fields = ("date", "time")


@rule("iso8601", Iso8601Params, origin="Collected")
def iso8601(ctx: RuleContext, p: Iso8601Params) -> pd.Series:
    """ISO 8601 text from a raw date column (and optional time column), formats from the
    raw-form contract. Partial dates stay partial (truncated, never imputed); a time beside a
    partial date is dropped and logged; impossible dates stop the build (see `dates`).

    Example: `{name: AESTDTC, rule: iso8601, date: AESTDAT}`.
    """
    src = ctx.source
    assert src is not None
    fmt = src.date_formats.get(p.date)
    if fmt is None or not (dates.parse_format(fmt) if isinstance(fmt, str) else fmt).has_date:
        raise SpecError(ctx.spec_file, ctx.variable, f"raw column {p.date!r} is not a date column")
    times = ctx.raw(p.time) if p.time else None
    out = dates.to_iso8601(
        ctx.raw(p.date),
        fmt,
        ctx.located(p.date),
        times=times,
        time_fmt=src.date_formats.get(p.time or "", "HH:MM"),
        time_where=ctx.located(p.time) if p.time else None,
    )
    partial = out.notna() & (out.str.len() < 10)
    ctx.report(partial, "partial date kept partial (not imputed)",
               examples=ctx.raw(p.date)[partial].astype(str).unique().tolist()[:3])  # fmt: skip
    if times is not None:
        ctx.report(times.notna() & partial, "time dropped because its date is partial", warn=True)
    elif (dates.parse_format(fmt) if isinstance(fmt, str) else fmt).has_time:
        dropped = partial & dates.has_time(ctx.raw(p.date), fmt)
        ctx.report(dropped, "time dropped because its date is partial", warn=True)
    return out


class StudyDayParams(Params):
    date: str = Field(description="the ISO 8601 date: a variable computed earlier (or raw.NAME)")
    reference: str = Field(
        "RFSTDTC", description="DM variable (or one of this dataset) that is day 1"
    )
    ref_fields = ("date",)

    def domains(self) -> set[str]:
        return {"DM"}


@rule("study_day", StudyDayParams)
def study_day(ctx: RuleContext, p: StudyDayParams) -> pd.Series:
    """--DY: days from DM.<reference> (default RFSTDTC) to `date`, +1 on/after, no day 0.

    Null when either date is partial or missing.
    """
    # In DM itself the reference is a variable of the record set being built.
    if p.reference in ctx.out.columns:
        reference = ctx.text(p.reference)
    else:
        reference = ctx.subject_values("DM", p.reference)
    return dates.study_day(ctx.ref(p.date), reference)


# --- combining -------------------------------------------------------------------------------


class ConcatParams(Params):
    parts: list[str | dict[str, Any]] = Field(
        min_length=1, description="references, or {value: text} literals, joined in order"
    )
    sep: str = Field("", description="text put between parts")
    skip_null: bool = Field(
        True, description="skip null parts (false: any null part makes the result null)"
    )
    ref_fields = ("parts",)


@rule("concat", ConcatParams)
def concat(ctx: RuleContext, p: ConcatParams) -> pd.Series:
    """Join references and literal `{value: text}` parts with `sep`; null parts are skipped
    (or make the result null with `skip_null: false`).

    Example: `{name: USUBJID, rule: concat, parts: [STUDYID, raw.SUBJECT], sep: "-"}`.
    """
    refs = [ctx.ref(part) for part in p.parts if not isinstance(part, dict)]
    literals = {i: render(part.get("value"), ctx) for i, part in enumerate(p.parts)
                if isinstance(part, dict)}  # fmt: skip

    def join(*columns: pd.Series, index: pd.Index = ctx.out.index) -> pd.Series:
        given = iter(columns)
        pieces = [
            pd.Series([literals[i]] * len(index), index=index) if i in literals
            else _text(next(given))
            for i in range(len(p.parts))
        ]  # fmt: skip
        frame = pd.concat([s.astype("string") for s in pieces], axis=1)
        if not p.skip_null:
            joined = frame.iloc[:, 0]
            for i in range(1, frame.shape[1]):
                joined = joined + p.sep + frame.iloc[:, i]
            return joined
        result = frame.iloc[:, 0]
        for i in range(1, frame.shape[1]):
            col = frame.iloc[:, i]
            both = result.notna() & col.notna()
            result = result.mask(both, result + p.sep + col).fillna(col)
        return result

    if not refs or not all(r.index.equals(ctx.out.index) for r in refs):
        return join(*refs)
    # once per distinct combination of the referenced values (element-wise), broadcast
    return per_distinct(lambda *small: join(*small, index=small[0].index), *refs)


class ExtractParams(Params):
    from_: str | None = Field(
        None, alias="from", description="a raw column of the block's source to search"
    )
    var: str | None = Field(None, description="a variable computed earlier (or raw.NAME) to search")
    pattern: str = Field(description="regular expression; its first capture group is the value")
    unmatched: Literal["error", "null", "keep"] = Field(
        "error",
        description="a value the pattern does not match: error (stop, naming the row), "
        "null (set to null, counted in the build log) or keep (kept whole, counted)",
    )
    raw_fields = ("from_",)
    one_of = (("from_", "var"),)
    ref_fields = ("var",)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from None
        if compiled.groups < 1:
            raise ValueError(f"{value!r} has no capture group: put the part to keep in (...)")
        return value


@rule("extract", ExtractParams, origin="Collected")
def extract(ctx: RuleContext, p: ExtractParams) -> pd.Series:
    """First capture group of a regular expression (e.g. SITEID from `101-001`).

    A non-missing value that does not match follows `unmatched`: error (default: an input
    error naming the row and value), null or keep (the whole value, trimmed); both logged
    as a warning with the count.
    """
    values = _text(_source(ctx, p.from_, p.var))
    got = values.str.extract(p.pattern, expand=False)
    if isinstance(got, pd.DataFrame):
        got = got.iloc[:, 0]
    missed = values.notna() & got.isna()
    if p.unmatched == "error":
        ctx.input_error(
            missed, p.from_ or p.var or "", values, f"does not match pattern {p.pattern!r}"
        )
        return got
    examples = sorted(values[missed].astype(str).unique().tolist())[:5]
    action = "kept whole" if p.unmatched == "keep" else "set to null"
    ctx.report(missed, f"value(s) not matching pattern {p.pattern!r}: {action}", warn=True,
               examples=examples)  # fmt: skip
    return got.mask(missed, values.str.strip()) if p.unmatched == "keep" else got


class CoalesceParams(Params):
    refs: list[str] = Field(
        min_length=1, description="references tried in order; the first non-missing wins"
    )
    ref_fields = ("refs",)


@rule("coalesce", CoalesceParams)
def coalesce(ctx: RuleContext, p: CoalesceParams) -> pd.Series:
    """The first non-missing of the listed references, in order."""
    result = ctx.ref(p.refs[0])
    for ref in p.refs[1:]:
        result = result.fillna(ctx.ref(ref))
    return result


class Case(Params):
    when: Condition = Field(description="the condition selecting the records of this case")
    value: Any = Field(None, description="the value those records get")
    ref: str | None = Field(None, description="or: the reference whose value they get")


class ConditionParams(Params):
    cases: list[Case] = Field(
        min_length=1, description="cases tried in order; a record takes the first that holds"
    )
    default: Any = Field(None, description="value when no case holds (default null)")
    default_ref: str | None = Field(
        None, description="or: a reference whose value records get when no case holds"
    )

    def raw_columns(self) -> list[str]:
        refs = [r for c in self.cases for r in c.when.refs() + ([c.ref] if c.ref else [])]
        refs += [self.default_ref] if self.default_ref else []
        return [r[4:] for r in refs if r.startswith("raw.")]


@rule("condition", ConditionParams)
def condition(ctx: RuleContext, p: ConditionParams) -> pd.Series:
    """The value (or reference) of the first case whose `when` holds, else the default.

    Example: `{name: ARMNRS, rule: condition, cases: [{when: {col: raw.ENROLLED, eq: N},
    value: SCREEN FAILURE}]}`.
    """
    index = ctx.out.index
    default = None if p.default_ref else render(p.default, ctx)
    hits: list[pd.Series] = []
    values: list[Any] = []
    done = pd.Series(False, index=index)
    for case in p.cases:
        hit = case.when.evaluate(ctx) & ~done
        hits.append(hit)
        values.append(ctx.ref(case.ref) if case.ref else render(case.value, ctx))
        done |= hit
    refs = [v for v in values if isinstance(v, pd.Series)]
    refs += [ctx.ref(p.default_ref)] if p.default_ref else []
    if all(isinstance(r.dtype, pd.StringDtype) for r in refs) and all(
        v is None or isinstance(v, str) for v in [default, *values] if not isinstance(v, pd.Series)
    ):
        # Text only: the same as the object path below (which _tidy makes string), without
        # the round trip of every record through Python objects.
        if not refs:  # literals only: each record the number of its case, the texts once
            choice = np.full(len(index), len(values), dtype=np.intp)
            for j, hit in enumerate(hits):
                choice[hit.to_numpy(dtype=bool)] = j  # the hits are disjoint
            texts = pd.Series([*values, default], dtype="string")
            text = broadcast(texts, choice, index, ctx.keep_codes)
            if text.notna().any():
                return text
        text = (
            ctx.ref(p.default_ref).astype("string")
            if p.default_ref
            else pd.Series(default, index=index, dtype="string")
        )
        for hit, value in zip(hits, values, strict=True):
            text = text.mask(hit, value.astype("string") if isinstance(value, pd.Series) else value)
        if text.notna().any():
            return text
    result = (
        ctx.ref(p.default_ref).astype(object)
        if p.default_ref
        else pd.Series([default] * len(index), index=index, dtype=object)
    )
    for hit, value in zip(hits, values, strict=True):
        result = result.mask(hit, value)
    return _tidy(result)


def _tidy(series: pd.Series) -> pd.Series:
    """Object results of mixed rules: numbers to Float64, text to string."""
    non_null = series.dropna()
    if non_null.empty:
        return series
    kind = pd.api.types.infer_dtype(non_null, skipna=True)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        return pd.to_numeric(series, errors="coerce").astype("Float64")
    return series.astype("string")


# --- lookups and aggregates ------------------------------------------------------------------


class LookupParams(Params):
    table: str = Field(description="the spec table (study.yaml `tables:`)")
    match: dict[str, str] = Field(
        min_length=1,
        description="table column -> reference compared with it (as text, case-insensitively)",
    )
    column: str = Field(description="the table column whose value the record gets")
    unmatched: Literal["error", "null"] = Field(
        "error", description="a key not in the table: error, or null (logged)"
    )
    ref_fields = ("match",)
    table_fields = ("table",)
    table_columns = ("match", "column")


@rule("lookup", LookupParams)
def lookup(ctx: RuleContext, p: LookupParams) -> pd.Series:
    """A column of a spec table (joints, lab catalogue, trial visits ...) matched on keys.

    Keys are compared as text, case/space-insensitively. An unmatched non-missing key is an
    input error naming the row and value (`unmatched: null` logs instead); a key matching
    two table rows is a spec error.
    """
    table = ctx.study.table(p.table)
    missing = [c for c in [*p.match, p.column] if c not in table.columns]
    if missing:
        raise SpecError(ctx.spec_file, ctx.variable, f"table {p.table!r} has no column {missing}")
    tkeys = [f"__k{i}" for i in range(len(p.match))]
    right = table[[*p.match, p.column]].copy()
    right.columns = [*tkeys, "__value"]
    refs = [ctx.ref(ref) for ref in p.match.values()]
    for key in tkeys:
        right[key] = _norm(right[key])
    if right.duplicated(tkeys).any():
        raise SpecError(ctx.spec_file, ctx.variable, f"table {p.table!r} keys are not unique")
    # Matched once per distinct combination of keys (a joint label repeats on every
    # assessment), broadcast back by codes; a record-level error goes through every row.
    codes, first = factorize_rows(*refs)
    small = [r.iloc[first].reset_index(drop=True) for r in refs]
    values, found, left = _lookup_rows(small, right, tkeys, pd.RangeIndex(len(first)))
    unmatched = left.notna().all(axis=1) & ~found
    if unmatched.any():
        if p.unmatched == "error":
            values, found, left = _lookup_rows(refs, right, tkeys, ctx.out.index)
            unmatched = left.notna().all(axis=1) & ~found
            _blame_lookup_keys(ctx, p, left, right, tkeys, unmatched)
            return _tidy(values.astype(object))
        ctx.report(
            broadcast(unmatched, codes, ctx.out.index),
            f"no match in table {p.table!r}: set to null",
            warn=True,
        )
    return broadcast(_tidy(values.astype(object)), codes, ctx.out.index, ctx.keep_codes)


def _lookup_rows(
    refs: list[pd.Series], right: pd.DataFrame, tkeys: list[str], index: pd.Index
) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """(value, found, normalised keys) of each row of `refs` looked up in `right`."""
    left = pd.DataFrame(index=index)
    for key, ref in zip(tkeys, refs, strict=True):
        left[key] = _norm(ref)  # ref is on `index`
    merged = left.reset_index().merge(right, on=tkeys, how="left", indicator=True)
    merged = merged.set_index("index")
    values = merged["__value"].reindex(index)
    # A key found in the table whose column is empty (e.g. no LBSCAT) is a match, not a miss.
    found = (merged["_merge"] == "both").reindex(index).fillna(False).astype(bool)
    return values, found, left


def _blame_lookup_keys(
    ctx: RuleContext,
    p: LookupParams,
    left: pd.DataFrame,
    right: pd.DataFrame,
    tkeys: list[str],
    unmatched: pd.Series,
) -> None:
    """Name the key column whose value is wrong: keys are tried in the spec's `match` order,
    and a record is blamed on the first key whose value (with the keys before it) is not in
    the table. A lab unit missing from the catalogue for a known test is the unit column's
    error, not the test code's."""
    refs = list(p.match.values())
    blamed = pd.Series(False, index=left.index)
    for i, ref in enumerate(refs):
        keys = tkeys[: i + 1]
        known = right[keys].drop_duplicates().assign(__known=True)
        hit = left[keys].reset_index().merge(known, on=keys, how="left").set_index("index")
        found = hit["__known"].reindex(left.index).fillna(False).astype(bool)
        miss = unmatched & ~blamed & ~found
        if i == len(refs) - 1:
            miss = unmatched & ~blamed  # every key known alone, not together: the last
        if miss.any():
            _blame(ctx, p.table, list(p.match)[i], ref, refs[:i], miss)
        blamed |= miss


def _blame(
    ctx: RuleContext, table: str, tcol: str, ref: str, earlier: list[str], miss: pd.Series
) -> None:
    """One located error per record of `miss` on `ref`'s column, the message naming the
    earlier key values it was looked up with (per distinct combination of them)."""
    if not earlier:
        ctx.input_error(
            miss, ref.removeprefix("raw."), ctx.ref(ref), f"not in table {table!r} ({tcol})"
        )
        return
    keys = pd.DataFrame({r: ctx.ref(r).astype("string") for r in earlier})[miss]
    for combo, group in keys.groupby(earlier, dropna=False, sort=True):
        values = combo if isinstance(combo, tuple) else (combo,)
        named = ", ".join(
            f"{r.removeprefix('raw.')} {v!r}" for r, v in zip(earlier, values, strict=True)
        )
        mask = pd.Series(False, index=miss.index)
        mask[group.index] = True
        ctx.input_error(
            mask, ref.removeprefix("raw."), ctx.ref(ref),
            f"not in table {table!r} ({tcol}) for {named}",
        )  # fmt: skip


def _norm(series: pd.Series) -> pd.Series:
    """Lookup keys compared case- and whitespace-insensitively (as CT matching does)."""
    return map_distinct(series.astype("string"), ct_module.normalise_text, "string")


class AggregateParams(Params):
    """One value per subject (and per any `by` keys, e.g. visit) from the records of another
    raw form or built dataset: RFSTDTC from the infusion form, SVSTDTC per visit. Joined by
    the study's one subject key, so a USUBJID template reaches every aggregate."""

    dataset: str | None = Field(None, description="an already built dataset to aggregate")
    form: str | None = Field(
        None, description="a raw form to aggregate (its dates converted through the contract)"
    )
    column: str | None = Field(None, description="the column whose values are aggregated")
    date: str | None = Field(
        None, description="raw date column of `form`, converted to ISO 8601 first"
    )
    time: str | None = Field(None, description="raw time column joined to `date`")
    func: Literal["min", "max", "first", "last", "count", "any"] = Field(
        "min",
        description="min/max (partial dates left out), first/last in record order, count of "
        "records, any: Y when a record exists (null otherwise)",
    )
    where: Condition | None = Field(
        None, description="condition on the aggregated records' own columns"
    )
    by: list[str] | dict[str, str] = Field(
        [],
        description="keys beside the subject: [VISIT] (same column name on both sides) or "
        "{FOLDER: VISIT} (aggregated column -> this block's raw column or variable)",
    )
    # spec_problems checks the form, its columns and one of dataset/form (one report each).

    def domains(self) -> set[str]:
        return {self.dataset} if self.dataset else set()

    def by_pairs(self) -> list[tuple[str, str]]:
        """(column of the aggregated records, reference in this block) per `by` key."""
        if isinstance(self.by, dict):
            return list(self.by.items())
        return [(k, k) for k in self.by]

    def spec_problems(self, study: Any) -> list[tuple[str, str]]:
        """(key, problem) for every reference the loader can check: the form, its columns
        (column, date, time, `by`, `where`) and its subject columns."""
        if (self.dataset is None) == (self.form is None):
            return [("form", "give exactly one of 'dataset' or 'form'")]
        if self.form is None:
            return [] if self.column else [("column", "an aggregate over a dataset needs column")]
        forms = study.forms
        if self.form not in forms:
            return [("form", f"unknown raw form {self.form!r}; forms: {sorted(forms)}")]
        spec = forms[self.form]
        known = set(spec.columns)
        out: list[tuple[str, str]] = []

        def need(key: str, column: str | None) -> None:
            if column is not None and column not in known:
                out.append((key, f"unknown raw column {column!r} in form {self.form!r}"))

        if self.date is None and self.column is None and self.func not in ("count", "any"):
            out.append(("date", "an aggregate over a form needs date or column"))
        need("column", self.column)
        need("date", self.date)
        need("time", self.time)
        if self.date is not None and self.date in known and not spec.columns[self.date].format:
            out.append(("date", f"raw column {self.date!r} declares no date format"))
        for i, (theirs, _) in enumerate(self.by_pairs()):
            need(f"by[{i}]" if isinstance(self.by, list) else f"by.{theirs}", theirs)
        if self.where is not None:
            for ref in self.where.refs():
                need("where", ref.removeprefix("raw."))
        for part, column in spec.subject_columns:
            if column not in known:
                out.append(
                    ("form", f"form {self.form!r} has no column {column!r} for the USUBJID "
                     f"template part {part!r}: declare its subject_columns in raw_forms.yaml")
                )  # fmt: skip
        return out


@rule("aggregate", AggregateParams)
def aggregate(ctx: RuleContext, p: AggregateParams) -> pd.Series:
    """Per subject (and `by` keys) min/max/first/last/count/any of another form or dataset.

    With `form` and `date` (and `time`), raw dates are converted to ISO 8601 first through
    the contract, so RFSTDTC can come from the infusion form before EX exists. ISO 8601
    text sorts in time order at equal precision; partial dates are left out of min/max.
    A join that matches none of this dataset's subjects is a build warning (a wrong
    USUBJID template or subject column would otherwise give null for every subject).
    Example: `{name: RFSTDTC, rule: aggregate, form: infusion, date: EXSTDAT, time: EXSTTIM}`.
    """
    for key, problem in p.spec_problems(ctx.study) if p.dataset is None else []:
        raise SpecError(ctx.spec_file, f"{ctx.variable}.{key}", problem)
    kept: np.ndarray | None = None  # the records `where` keeps (all: None)
    if p.dataset is not None:
        frame = ctx.domain(p.dataset).frame
        if p.column is None:
            raise SpecError(ctx.spec_file, ctx.variable, "aggregate over a dataset needs column")
        sub_ctx = _context_on(ctx, frame, p.dataset)
        if p.where is not None:  # first (per category on a compact dataset): only the
            kept = p.where.evaluate(sub_ctx).to_numpy(dtype=bool)  # records kept made text
            frame = frame[kept]
        keys = frame["USUBJID"]
        values = as_text(frame[p.column])  # its values (a compacted column's as text)
        what = f"dataset {p.dataset}"
    else:
        source = ctx.store.source(p.form)  # type: ignore[arg-type]
        frame = source.frame
        sub_ctx = _context_on(ctx, frame, p.form or "", source)
        keys = ctx.study.subject_key(frame, p.form)
        what = f"form {p.form}"
        if p.date:
            values = dates.to_iso8601(
                frame[p.date],
                source.date_formats[p.date],
                Located(source.file, p.date, source.rows),
                times=frame[p.time] if p.time else None,
                time_fmt=source.date_formats.get(p.time or "", "HH:MM"),
                time_where=Located(source.file, p.time, source.rows) if p.time else None,
            )
        elif p.column:
            values = frame[p.column]
        else:
            values = pd.Series(True, index=frame.index)
    pairs = p.by_pairs()
    for theirs, _ in pairs:
        if theirs not in frame.columns:
            raise SpecError(ctx.spec_file, f"{ctx.variable}.by", f"{what} has no {theirs!r}")
    kcols = ["__k0", *(f"__k{i + 1}" for i in range(len(pairs)))]
    right = pd.DataFrame({"__k0": keys.astype("string").to_numpy()})
    for col, (theirs, _) in zip(kcols[1:], pairs, strict=True):
        right[col] = _key_text(frame[theirs]).to_numpy()
    right["v"] = values.to_numpy()
    if p.where is not None and kept is None:
        right = right[p.where.evaluate(sub_ctx).to_numpy(dtype=bool)]
    if p.func in ("min", "max") and p.date:
        right = right[(right["v"].str.len() >= 10).fillna(False).to_numpy(dtype=bool)]
    right = right.dropna(subset=["v"]) if p.func != "count" else right
    grouped = right.groupby(kcols, sort=True)["v"]
    # any: "Y" for every group with a record left (groups exist only where one does)
    if p.func == "any":
        agg = pd.Series("Y", index=grouped.size().index, dtype="string")
    else:
        agg = getattr(grouped, p.func)()
    agg = agg.rename("__value").reset_index()
    left = pd.DataFrame({"__k0": ctx.ref("USUBJID").astype("string")}, index=ctx.out.index)
    for col, (_, ours) in zip(kcols[1:], pairs, strict=True):
        left[col] = _key_text(_by_ref(ctx, ours))
    merged = left.reset_index().merge(agg, on=kcols, how="left", indicator=True).set_index("index")
    result = merged["__value"].reindex(ctx.out.index)
    warned = _warn_no_subject_match(ctx, what, right["__k0"], left["__k0"])
    if not warned and pairs and len(agg) and len(left) and not (merged["_merge"] == "both").any():
        ctx.log.warn(
            ctx.study.stage_of(ctx.dataset), ctx.dataset,
            f"{what}: subjects match but none of its (subject, "
            f"{', '.join(t for t, _ in pairs)}) keys matches a record of {ctx.dataset} "
            f"by {', '.join(o for _, o in pairs)}; {ctx.variable} is null for every record",
            variable=ctx.variable, count=len(left),
        )  # fmt: skip
    if p.func == "count":
        result = result.fillna(0)
    return _tidy(result.astype(object))


def _key_text(values: pd.Series) -> pd.Series:
    """Join keys compared as trimmed text (whole numbers without a trailing .0)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        from cdiscforge.vectorise import integers_as_text

        return integers_as_text(values).astype("string")
    return values.astype("string").str.strip()


def _by_ref(ctx: RuleContext, ref: str) -> pd.Series:
    """A `by` key on this block's side: a variable computed earlier, else a raw column."""
    if ref.startswith("raw.") or ref in ctx.out.columns:
        return ctx.ref(ref)
    if ctx.source is not None and ref in ctx.source.frame.columns:
        return ctx.raw(ref)
    return ctx.ref(ref)  # the SpecError naming what is known


def _warn_no_subject_match(ctx: RuleContext, what: str, theirs: pd.Series, ours: pd.Series) -> bool:
    """A build warning when the joined records have subjects but none is one of this
    dataset's: the result is null for every record, which validation cannot see. True when
    it warned."""
    their_keys = pd.Index(theirs.dropna().unique())
    our_keys = pd.Index(ours.dropna().unique())
    if len(their_keys) and len(our_keys) and not isin(their_keys, our_keys).any():
        ctx.log.warn(
            ctx.study.stage_of(ctx.dataset), ctx.dataset,
            f"{what}: none of its {len(their_keys)} subject key(s) matches a USUBJID of "
            f"{ctx.dataset} ({len(our_keys)} subject(s)); {ctx.variable} is null for every "
            "subject. Check study.yaml usubjid and the form's subject_columns",
            variable=ctx.variable, count=len(ours),
            examples=[f"{what}: {their_keys[0]}", f"{ctx.dataset}: {our_keys[0]}"],
        )  # fmt: skip
        return True
    return False


def _context_on(ctx: RuleContext, frame: pd.DataFrame, name: str, source: Any = None) -> Any:
    """A context whose references resolve to another frame (for `where` in aggregates)."""
    from cdiscforge.rules import RuleContext as Ctx
    from cdiscforge.rules import Source

    src = source or Source(name, name, frame, np.arange(1, len(frame) + 1))
    return Ctx(
        ctx.study,
        ctx.dataset,
        ctx.variable,
        frame,
        src,
        ctx.domains,
        ctx.log,
        ctx.spec_file,
        ctx.store,
    )


class UsubjidParams(Params):
    """USUBJID from the study's template (study.yaml `usubjid`), the same key every
    aggregate and generator joins subjects by."""

    from_: str | None = Field(
        None,
        alias="from",
        description="raw column standing for the template's only column part (default: the "
        "form's subject columns)",
    )
    raw_fields = ("from_",)


@rule("usubjid", UsubjidParams)
def usubjid(ctx: RuleContext, p: UsubjidParams) -> pd.Series:
    """USUBJID by the study's one rule (study.yaml `usubjid`), from the source's subject
    column (the form contract's `subject`, default SUBJECT) or `from`."""
    assert ctx.source is not None
    if p.from_:
        return ctx.study.usubjid(ctx.raw(p.from_))
    form = ctx.source.name if ctx.source.name in ctx.study.forms else None
    return ctx.study.subject_key(ctx.source.frame, form)


# --- sequence numbers and results ------------------------------------------------------------


class SeqParams(Params):
    by: list[str] = Field(description="sort keys within the group before numbering")
    within: list[str] = Field(
        ["USUBJID"], description="the group numbered 1..n ([] numbers the whole dataset)"
    )
    ref_fields = ("by", "within")


@rule("seq", SeqParams, final=True)
def seq(ctx: RuleContext, p: SeqParams) -> pd.Series:
    """--SEQ: 1..n within `within` (default USUBJID) after sorting by `by` (stable; the
    record set is final). Trial-summary sequences number within another key (TSSEQ within
    TSPARMCD); `within: []` numbers the whole dataset.

    Example: `{name: AESEQ, rule: seq, by: [AESTDTC, AETERM]}`;
    `{name: TSSEQ, rule: seq, by: [], within: [TSPARMCD]}`.
    """
    keys = [*p.within, *p.by]
    n = len(ctx.out)
    order = stable_order(ctx.out, keys) if keys else np.arange(n)
    numbers = np.empty(n, dtype=np.int64)
    if not p.within:
        numbers[order] = np.arange(1, n + 1)
    else:
        # Sorted by `within` first, each group is one run: number 1..n along each run.
        groups = factorize_rows(*(ctx.out[c] for c in p.within))[0][order]
        starts = np.ones(n, dtype=bool)
        starts[1:] = groups[1:] != groups[:-1]
        positions = np.arange(n)
        numbers[order] = positions - np.maximum.accumulate(np.where(starts, positions, 0)) + 1
    return pd.Series(numbers, index=ctx.out.index).astype("Float64")


class ResultCharParams(Params):
    var: str = Field(description="the collected result (--ORRES)")
    factor: float | str | None = Field(
        None, description="conversion factor: a number or a per-record reference"
    )
    offset: float | str | None = Field(
        None,
        description="added to a numeric result after the factor (result x factor + offset): "
        "a number or a per-record reference",
    )
    decimals: int | str | None = Field(
        None, description="decimals after conversion: a number or a per-record reference"
    )
    unit: str | None = Field(
        None,
        description="reference to the record's unit (named in the error when a factor is missing)",
    )
    ref_fields = ("var", "factor", "offset", "decimals", "unit")


_QUALIFIED = r"^\s*(?P<q>[<>]=?)?\s*(?P<n>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"


def _split_result(values: pd.Series) -> pd.DataFrame:
    """Qualifier (`<`, `>=` ...) and number of each result; parsed once per distinct value."""
    return per_distinct(_split_each, values)


def _split_each(values: pd.Series) -> pd.DataFrame:
    text = _text(values)
    distinct = pd.Series(text.dropna().unique(), dtype="string")
    parts = distinct.str.extract(_QUALIFIED)
    parts.index = distinct.to_numpy()
    out = pd.DataFrame(
        {"q": text.map(parts["q"]), "n": text.map(parts["n"])}, index=values.index
    ).astype("string")
    out["num"] = pd.to_numeric(out["n"], errors="coerce")
    return out


def _format_numbers(nums: pd.Series, decimals: int | pd.Series | None) -> pd.Series:
    """Numbers as text without float noise: rounded to `decimals` (one number, or one per
    record; missing: 10), trailing zeros stripped."""
    if isinstance(decimals, pd.Series):
        places = per_distinct(_to_number, decimals).fillna(10).astype(int)
        rounded = nums.copy()
        for d in places.unique():
            rows = places == d
            rounded[rows] = nums[rows].round(int(d))
    else:
        rounded = nums.round(decimals if decimals is not None else 10)
    return map_distinct(rounded, lambda v: f"{v:.10f}".rstrip("0").rstrip("."), "string")


@rule("result_char", ResultCharParams)
def result_char(ctx: RuleContext, p: ResultCharParams) -> pd.Series:
    """--STRESC from --ORRES: numbers converted with `factor`, rounded to `decimals` and
    formatted without trailing zeros; a `<0.5`-style result keeps its qualifier with the
    converted limit; other text is kept as collected (upper-cased).

    With a per-record `factor`, a numeric result whose factor is missing (its unit, `unit`,
    blank or without a conversion) is an input error naming the unit, never copied unconverted.

    Example: `{name: LBSTRESC, rule: result_char, var: LBORRES, factor: _FACTOR,
    decimals: _STDDEC, unit: raw.UNIT}` (factor and decimals per record, from the lab
    catalogue).
    """
    values = ctx.ref(p.var)
    factor = _factor(ctx, p.factor)
    if isinstance(p.factor, str):
        # A number without a factor would be published unconverted under the standard unit
        # (HGB 14.3 g/dL as 14.3 g/L): stop, naming the record's unit.
        column = (p.unit or p.var).removeprefix("raw.")
        shown = ctx.ref(p.unit) if p.unit else values
        ctx.input_error(
            _split_result(values)["num"].notna() & factor.isna(),
            column,
            shown,
            "a numeric result whose unit has no conversion factor to the standard unit",
        )
    offset = _offset(ctx, p.offset) if p.offset is not None else None
    decimals = ctx.ref(p.decimals) if isinstance(p.decimals, str) else p.decimals
    # Element-wise in (result, factor, offset, decimals): worked out per distinct
    # combination (LB at 10,000 subjects: a few ten thousand in 1.6 million records).
    given = {"values": values, "factor": factor, "offset": offset, "decimals": decimals}
    per_record = [k for k, v in given.items() if isinstance(v, pd.Series)]

    def each(*columns: pd.Series) -> pd.Series:
        return _result_text(**{**given, **dict(zip(per_record, columns, strict=True))})

    return per_distinct(each, *(given[k] for k in per_record))


def _result_text(values: pd.Series, factor: Any, offset: Any, decimals: Any) -> pd.Series:
    """`result_char` of each record (`factor`, `offset`, `decimals`: a number or one per
    record, aligned with `values`)."""
    parts = _split_result(values)
    converted = parts["num"].astype("Float64") * factor
    if offset is not None:
        converted = converted + offset
    text = _format_numbers(converted, decimals)
    qual = parts["q"].fillna("")
    out = _text(values).str.strip().str.upper()
    numeric = parts["num"].notna() & converted.notna()
    return out.mask(numeric, qual + text)


class ResultNumParams(Params):
    var: str = Field(description="the standard character result (--STRESC)")
    ref_fields = ("var",)


@rule("result_num", ResultNumParams)
def result_num(ctx: RuleContext, p: ResultNumParams) -> pd.Series:
    """--STRESN from --STRESC: the number when the result is a plain number; null for
    qualified (`<0.5`) or text results, per SDTMIG."""
    parts = _split_result(ctx.ref(p.var))
    return parts["num"].where(parts["q"].isna()).astype("Float64")


class NrindParams(Params):
    var: str = Field(description="the numeric result")
    low: str = Field(description="reference to the range's lower limit")
    high: str = Field(description="reference to the range's upper limit")
    ref_fields = ("var", "low", "high")


@rule("nrind", NrindParams)
def nrind(ctx: RuleContext, p: NrindParams) -> pd.Series:
    """LOW / HIGH / NORMAL from a numeric result and its range; null when the result is
    missing or qualified (`<0.5` has no --STRESN) or the range is missing."""
    value, v_missing = _numbers(ctx.ref(p.var))
    low, low_missing = _numbers(ctx.ref(p.low))
    high, high_missing = _numbers(ctx.ref(p.high))
    known = ~v_missing & (~low_missing | ~high_missing)
    # One small code per record (0 NORMAL, 1 LOW, 2 HIGH, 3 null), each later case over the
    # earlier as the masks were applied, broadcast from the four values (kept as codes
    # where the context allows) instead of text masked three times over every record.
    codes = np.full(len(value), 3, dtype=np.int8)
    codes[known] = 0
    codes[known & (value < low) & ~low_missing] = 1
    codes[known & (value > high) & ~high_missing] = 2
    names = pd.Series(["NORMAL", "LOW", "HIGH", None], dtype="string")
    return broadcast(names, codes, ctx.out.index, ctx.keep_codes)


def _numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`pd.to_numeric(values, errors="coerce")` as float64 and its missing mask (a NaN the
    column holds as a value compares as NaN, as pandas compares it)."""
    nums = pd.to_numeric(values, errors="coerce")
    return nums.to_numpy(dtype="float64", na_value=np.nan), nums.isna().to_numpy()


class AgeParams(Params):
    birth: str = Field(description="the ISO 8601 birth date (may be partial)")
    at: str = Field(description="the ISO 8601 date the age is taken at")
    partial: Literal["null", "lower"] = Field(
        "null", description="age ambiguous from a partial birth date: null, or the lower age"
    )
    ref_fields = ("birth", "at")


@rule("age", AgeParams)
def age(ctx: RuleContext, p: AgeParams) -> pd.Series:
    """Age in completed years at `at` from birth date `birth` (ISO 8601 variables).

    Cases, in order: either date missing -> null; complete birth date -> exact age; partial
    birth date -> the ages of the earliest and latest possible birth dates are computed, and
    if they agree that is the age (no imputation needed); if they differ, `partial: null`
    gives null and `partial: lower` the lower age; both are logged.
    """
    birth = ctx.ref(p.birth).astype("string")
    at = dates.iso_to_datetime(ctx.ref(p.at))
    year = pd.to_numeric(birth.str.slice(0, 4), errors="coerce")
    month = pd.to_numeric(birth.str.slice(5, 7), errors="coerce")
    day = pd.to_numeric(birth.str.slice(8, 10), errors="coerce")
    early_m, late_m = month.fillna(1), month.fillna(12)
    early_d = day.fillna(1)
    # Latest possible day: the month's last day when the day is unknown.
    late_month_start = pd.to_datetime(
        {"year": year.fillna(2000), "month": late_m, "day": 1}, errors="coerce"
    )
    late_d = day.fillna(late_month_start.dt.days_in_month)

    def years(m: pd.Series, d: pd.Series) -> pd.Series:
        before = (at.dt.month < m) | ((at.dt.month == m) & (at.dt.day < d))
        return (at.dt.year - year - before.astype("Float64")).astype("Float64")

    oldest, youngest = years(early_m, early_d), years(late_m, late_d)
    result = oldest.where(oldest == youngest)
    ambiguous = oldest.notna() & youngest.notna() & (oldest != youngest)
    if ambiguous.any():
        if p.partial == "lower":
            result = result.mask(ambiguous, youngest)
        used = "lower possible age used" if p.partial == "lower" else "left null"
        ctx.report(ambiguous, f"age not exact from a partial birth date: {used}", warn=True)
    return result


class CtCodeParams(Params):
    var: str = Field(description="the submission value whose C-code is wanted")
    codelist: str | None = Field(None, description="the codelist of every record")
    codelist_var: str | None = Field(
        None, description="or: a reference naming each record's codelist"
    )
    ref_fields = ("var", "codelist_var")
    one_of = (("codelist", "codelist_var"),)


@rule("ct_code", CtCodeParams, origin="Assigned")
def ct_code(ctx: RuleContext, p: CtCodeParams) -> pd.Series:
    """NCI C-code of each value in its codelist (e.g. TSVALCD); null for sponsor terms.

    The codelist is fixed (`codelist`) or per record (`codelist_var`, e.g. TS rows).
    """
    values = ctx.ref(p.var).astype("string")
    lists = (
        ctx.ref(p.codelist_var).astype("string")
        if p.codelist_var
        else pd.Series(p.codelist, index=values.index, dtype="string")
    )
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    for name in lists.dropna().unique():
        rows = lists == name
        terms = _terminology(ctx).codelist(str(name)).terms
        mapping = dict(zip(terms["value"], terms["code"], strict=True))
        out = out.mask(rows, values[rows].map(mapping))
    return out


class CtVersionParams(Params):
    when: Condition | None = Field(
        None, description="only records where this holds get the version (others null)"
    )

    def raw_columns(self) -> list[str]:
        refs = self.when.refs() if self.when is not None else []
        return [r[4:] for r in refs if r.startswith("raw.")]


@rule("ct_version", CtVersionParams, origin="Assigned")
def ct_version(ctx: RuleContext, p: CtVersionParams) -> pd.Series:
    """The SDTM CT version the build codes against (e.g. TSVCDVER), so the value follows the
    bundled terminology instead of being typed into a spec.

    Cases, in order: `when` given and false -> null; otherwise the CT version (`2025-03-28`).
    Example: `{name: TSVCDVER, rule: ct_version, when: {col: TSVCDREF, eq: CDISC CT}}`.
    """
    index = ctx.out.index
    out = pd.Series(_terminology(ctx).version("sdtm"), index=index, dtype="string")
    if p.when is not None:
        out = out.where(p.when.evaluate(ctx).to_numpy(dtype=bool))
    return out


# --- method text: each rule in a reviewer's words (cdiscforge.rules.words) -------------------

_UNMATCHED_WORDS = {
    "error": "",
    "keep": "; a value not in the list is kept as collected",
    "upper": "; a value not in the list is kept upper-cased",
    "null": "; a value not in the list is set to null",
}
_FUNC_WORDS = {"min": "earliest", "max": "latest", "first": "first", "last": "last",
               "count": "number of records", "any": "presence (Y) of"}  # fmt: skip


@describes("constant")
def _say_constant(p: ConstantParams, w: Words) -> str:
    return "null for every record" if p.value is None else f"{w.value(p.value)} for every record"


@describes("assign")
def _say_assign(p: AssignParams, w: Words) -> str:
    if w.target.startswith("_"):  # a helper named inside another phrase: just the value
        return w.source(p.from_, p.var)
    return f"{w.source(p.from_, p.var)}, trimmed" + (", upper-cased" if p.upper else "")


def _number_origin(p: NumberParams) -> str:
    # A number scaled by a unit factor is a converted value, not the collected one.
    return "Derived" if p.factor is not None or p.offset is not None else "Collected"


def _say_offset(offset: float | str | None, w: Words) -> str:
    if offset is None:
        return ""
    if isinstance(offset, str):
        return f" plus {w.ref(offset)}"
    return f" minus {w.value(-offset)}" if offset < 0 else f" plus {w.value(offset)}"


@describes("number", origin_of=_number_origin)
def _say_number(p: NumberParams, w: Words) -> str:
    text = f"the numeric value of {w.source(p.from_, p.var)}"
    if p.factor is not None:
        factor = w.ref(p.factor) if isinstance(p.factor, str) else w.value(p.factor)
        text += f" multiplied by {factor}"
    text += _say_offset(p.offset, w)
    if p.decimals is not None:
        text += f", rounded to {p.decimals} decimal places"
    return text


@describes("ct")
def _say_ct(p: CtParams, w: Words) -> str:
    kind = "CDISC codelist" if ct_module.has_codelist(p.codelist) else "sponsor codelist"
    text = f"{w.source(p.from_, p.var)} mapped to the submission value of {kind} {p.codelist}"
    if p.synonyms:
        pairs = [f"{k} as {v}" for k, v in sorted(p.synonyms.items())]
        text += f", reading {join(pairs)}"
    return text + _UNMATCHED_WORDS[p.unmatched]


@describes("map")
def _say_map(p: MapParams, w: Words) -> str:
    pairs = [f"{k} to {w.value(v)}" for k, v in p.values.items()]
    if p.codelist is None:
        return f"{w.source(p.from_, p.var)} mapped {join(pairs)}" + _UNMATCHED_WORDS[p.unmatched]
    kind = "CDISC codelist" if ct_module.has_codelist(p.codelist) else "sponsor codelist"
    text = (
        f"{w.source(p.from_, p.var)} mapped to the code of {kind} {p.codelist} (by code or decode)"
    )
    if pairs:
        text += f", reading {join(pairs)}"
    return text + _UNMATCHED_WORDS[p.unmatched]


@describes("iso8601")
def _say_iso8601(p: Iso8601Params, w: Words) -> str:
    text = f"{p.date} as collected in ISO 8601"
    if p.time:
        text += f", with the time {p.time} when the date is complete"
    return text + "; a partial date stays partial"


@describes("study_day")
def _say_study_day(p: StudyDayParams, w: Words) -> str:
    return (
        f"study day of {w.ref(p.date)}: the number of days from DM.{p.reference} to "
        f"{w.ref(p.date)}, plus 1 on or after DM.{p.reference}, so there is no day 0; "
        f"null when {w.ref(p.date)} is partial"
    )


@describes("concat")
def _say_concat(p: ConcatParams, w: Words) -> str:
    parts = [w.value(x.get("value")) if isinstance(x, dict) else w.ref(x) for x in p.parts]
    sep = f"joined by {p.sep!s}" if p.sep.strip() else "joined by a space" if p.sep else "joined"
    return f"{join(parts)} {sep}" + ("" if p.skip_null else "; null if any part is null")


@describes("extract")
def _say_extract(p: ExtractParams, w: Words) -> str:
    text = f"the part of {w.source(p.from_, p.var)} the spec's text pattern picks out"
    if p.unmatched == "keep":
        text += "; a value the pattern does not fit is kept whole"
    elif p.unmatched == "null":
        text += "; null for a value the pattern does not fit"
    return text


@describes("coalesce")
def _say_coalesce(p: CoalesceParams, w: Words) -> str:
    return f"the first non-missing of {join([w.ref(r) for r in p.refs], last='or')}"


@describes("condition")
def _say_condition(p: ConditionParams, w: Words) -> str:
    cases = [
        f"{w.ref(c.ref) if c.ref else w.value(c.value)} when {w.condition(c.when)}" for c in p.cases
    ]
    default = w.ref(p.default_ref) if p.default_ref else w.value(p.default)
    return "; ".join(cases) + f"; otherwise {default}"


@describes("lookup")
def _say_lookup(p: LookupParams, w: Words) -> str:
    keys = [f"{col.replace('_', ' ')} equals {w.ref(ref)}" for col, ref in p.match.items()]
    column = p.column.replace("_", " ")
    if w.target.startswith("_"):  # named inside another phrase
        return f"the {column} value of the row of {w.table(p.table)} whose {join(keys)}"
    return f"{column} from {w.table(p.table)}, on the row whose {join(keys)}"


@describes("aggregate")
def _say_aggregate(p: AggregateParams, w: Words) -> str:
    what = p.column or p.date or "records"
    where = f"{p.dataset}" if p.dataset else f"the {p.form.replace('_', ' ')} form"  # type: ignore[union-attr]
    per = "per subject" + "".join(f" and {ours}" for _, ours in p.by_pairs())
    text = f"{per}, the {_FUNC_WORDS[p.func]} {what} in {where}"
    if p.form and p.date:
        text = f"{per}, the {_FUNC_WORDS[p.func]} date {p.date}"
        text += f" with time {p.time}" if p.time else ""
        text += f" in {where}, in ISO 8601"
    if p.where is not None:
        text += f", among records where {w.condition(p.where)}"
    return text


@describes("usubjid")
def _say_usubjid(p: UsubjidParams, w: Words) -> str:
    subject = f"{p.from_} as collected" if p.from_ else "the subject number as collected"
    sep = w.usubjid_separator
    joined = {"-": "a hyphen", "": "nothing", " ": "a space"}.get(sep, f'"{sep}"')
    if w.usubjid_parts and not p.from_:
        return f"{join(list(w.usubjid_parts), last='and')}, joined by {joined}"
    return f"STUDYID and {subject}, joined by {joined}"


@describes("seq")
def _say_seq(p: SeqParams, w: Words) -> str:
    within = f"within {w.refs(p.within)}" if p.within else "in the dataset"
    order = f", ordered by {w.refs(p.by)}" if p.by else ""
    return f"sequential number of the record {within}{order}"


@describes("result_char")
def _say_result_char(p: ResultCharParams, w: Words) -> str:
    text = f"{w.ref(p.var)} in the standard unit"
    if p.factor is not None:
        factor = w.ref(p.factor) if isinstance(p.factor, str) else w.value(p.factor)
        text += f": a number is multiplied by {factor}"
    if p.offset is not None:
        lead = ": a number" if p.factor is None else ","
        text += lead + _say_offset(p.offset, w)
    if p.decimals is not None:
        dec = w.ref(p.decimals) if isinstance(p.decimals, str) else f"{p.decimals} decimal places"
        text += f", rounded to {dec}"
    return (
        text + " and written without trailing zeros; a result with a < or > qualifier keeps "
        "it with the converted limit; other text is kept as reported"
    )


@describes("result_num")
def _say_result_num(p: ResultNumParams, w: Words) -> str:
    return (
        f"{w.ref(p.var)} as a number when it is a plain number; null for a qualified or text result"
    )


@describes("nrind")
def _say_nrind(p: NrindParams, w: Words) -> str:
    return (
        f"LOW when {w.ref(p.var)} is below {w.ref(p.low)}, HIGH when above {w.ref(p.high)}, "
        "NORMAL otherwise; null when the result or the range is missing"
    )


@describes("age")
def _say_age(p: AgeParams, w: Words) -> str:
    partial = "the lower possible age" if p.partial == "lower" else "null"
    return (
        f"age in completed years from {w.ref(p.birth)} to {w.ref(p.at)}; with a partial birth "
        f"date, the age both ends of the possible range agree on, else {partial}"
    )


@describes("ct_code")
def _say_ct_code(p: CtCodeParams, w: Words) -> str:
    where = (
        f"codelist {p.codelist}" if p.codelist else f"the codelist {w.ref(p.codelist_var)} names"
    )
    return f"the NCI code of {w.ref(p.var)} in {where}; null for a sponsor term"


@describes("ct_version")
def _say_ct_version(p: CtVersionParams, w: Words) -> str:
    text = "the version of CDISC controlled terminology the values are coded against"
    return text + (f", where {w.condition(p.when)}" if p.when is not None else "")

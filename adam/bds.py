"""BDS derivations: analysis windows, baseline, change from baseline, analysis flags.

Each derivation has a plain function (Series in, Series out; tested on hand-made cases) and a
rule wrapper the ADaM specs call. Grouped derivations (ABLFL, BASE, CHG, ANL01FL, windows that
defer to ABLFL) are `final` rules: they run on the stacked record set of the dataset, in spec
order, so a spec lists ADY, ABLFL, AVISITN/AVISIT, BASE, CHG, PCHG, ANL01FL in that order.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from cdiscforge.errors import SpecError
from cdiscforge.rules import Condition, Params, RuleContext, rule
from cdiscforge.rules.words import Words, describes
from cdiscforge.spec import load_yaml
from cdiscforge.vectorise import factorize_rows, last_in_groups, map_distinct, per_distinct

# --- analysis windows --------------------------------------------------------------------------


@cache
def _windows_file(path: Path, key: str) -> pd.DataFrame:
    data = load_yaml(path)
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise SpecError(path, key, "expected a non-empty list of analysis windows")
    frame = pd.DataFrame(rows)
    need = {"AVISITN", "AVISIT", "target", "low", "high"}
    if need - set(frame.columns):
        raise SpecError(path, key, f"each window needs {sorted(need)}")
    frame = frame.sort_values("low", kind="stable").reset_index(drop=True)
    overlap = (frame["low"].iloc[1:].to_numpy() <= frame["high"].iloc[:-1].to_numpy()).any()
    if overlap:
        raise SpecError(path, key, "analysis windows overlap: a day must fall in one window")
    return frame


def _check_windows(params: Any, study: Any) -> list[tuple[str, str]]:
    """The analysis windows a rule names, read and checked when the spec loads (a broken
    windows list is a spec error then, not a failed build)."""
    try:
        table = _windows_file(study.folder / params.file, params.key)
    except SpecError as exc:
        return [("file", str(exc))]
    visit = getattr(params, "baseline_visit", None)
    if getattr(params, "baseline_flag", None) and visit is None:
        return [("baseline_visit", "baseline_flag needs baseline_visit")]
    if visit is not None and (table["AVISITN"].astype(float) == float(visit)).sum() != 1:
        return [("baseline_visit", f"{visit} is not the AVISITN of one window")]
    return []


def windows_table(ctx: RuleContext, file: str, key: str) -> pd.DataFrame:
    """The analysis windows (AVISITN, AVISIT, target, low, high; days relative to treatment
    start) declared in the study's spec folder."""
    return _windows_file(ctx.study.folder / file, key)


def assign_window(day: pd.Series, windows: pd.DataFrame) -> pd.Series:
    """Index of the window row whose [low, high] holds `day` (both ends inclusive); -1 if none."""
    values = pd.to_numeric(day, errors="coerce").astype("Float64").to_numpy(na_value=np.nan)
    lows = windows["low"].to_numpy(dtype=float)
    highs = windows["high"].to_numpy(dtype=float)
    pos = np.searchsorted(lows, values, side="right") - 1
    ok = (pos >= 0) & ~np.isnan(values)
    ok &= values <= highs[np.clip(pos, 0, None)]
    return pd.Series(np.where(ok, pos, -1), index=day.index)


class WindowParams(Params):
    day: str = Field("ADY", description="the relative day placed in a window")
    output: Literal["AVISITN", "AVISIT"] = Field(
        "AVISITN", description="which window column the rule gives"
    )
    file: str = Field(
        "tables.yaml", description="spec file (in the study folder) holding the windows"
    )
    key: str = Field("windows", description="top-level key of the windows list")
    baseline_flag: str | None = Field(
        None, description="reference to a flag (ABLFL): its Y record goes to baseline_visit"
    )
    baseline_visit: float | None = Field(None, description="AVISITN of the baseline window")
    ref_fields = ("day", "baseline_flag")

    def check_references(self, study: Any) -> list[tuple[str, str]]:
        return super().check_references(study) + _check_windows(self, study)


@rule("window", WindowParams, final=True)
def window(ctx: RuleContext, p: WindowParams) -> pd.Series:
    """AVISITN / AVISIT from analysis windows on the relative day (spec: target, low, high).

    Cases, in order: the record flagged `baseline_flag` (ABLFL = Y) -> the `baseline_visit`
    window, whatever its day; a day inside a window -> that window; a day outside every window
    or missing -> null (counted in the build log; such records are not analysed by visit).
    Which of two records in one window is analysed is ANL01FL's rule (`analysis_flag`).

    Example: `{name: AVISITN, rule: window, output: AVISITN, baseline_flag: ABLFL,
    baseline_visit: 0}`.
    """
    table = windows_table(ctx, p.file, p.key)
    pos = assign_window(ctx.ref(p.day), table)
    if p.baseline_flag:
        if p.baseline_visit is None:
            raise SpecError(ctx.spec_file, ctx.variable, "baseline_flag needs baseline_visit")
        base_pos = np.flatnonzero(table["AVISITN"].astype(float).to_numpy() == p.baseline_visit)
        if base_pos.size != 1:
            raise SpecError(ctx.spec_file, ctx.variable, "baseline_visit is not one window")
        flagged = (ctx.ref(p.baseline_flag) == "Y").fillna(False).to_numpy(dtype=bool)
        pos = pos.mask(flagged, int(base_pos[0]))
    column = table[p.output].to_numpy(dtype=object)
    values = pd.Series(np.where(pos >= 0, column[pos.clip(lower=0)], None), index=pos.index)
    outside = pos < 0
    if p.output == "AVISITN":
        ctx.report(
            outside,
            "records outside every analysis window or without a relative day: AVISIT/AVISITN null",
        )
    if p.output == "AVISITN":
        return pd.to_numeric(values, errors="coerce").astype("Float64")
    return values.astype("string")


# --- baseline ----------------------------------------------------------------------------------


def baseline_flag(
    frame: pd.DataFrame,
    by: list[str],
    date: str,
    reference: str,
    value: str,
    tie: Literal["last", "first"] = "last",
) -> pd.Series:
    """ABLFL: Y on one record per `by` group, null elsewhere.

    Cases, in order: records with a missing `value` or `date` are never baseline; records dated
    after `reference` (treatment start; the same date counts as before: assessments on the
    infusion day are pre-dose) are never baseline; of the rest, the latest date wins; two on
    that date -> the last (`tie: last`) or first in record order. No candidate -> no baseline
    (BASE and CHG stay null for the group).
    """
    when = pd.to_datetime(frame[date]).dt.normalize()
    ref = pd.to_datetime(frame[reference]).dt.normalize()
    ok = frame[value].notna() & when.notna() & ref.notna() & (when <= ref).fillna(False)
    cand = frame.loc[ok.to_numpy(dtype=bool), by].copy()
    cand["__t"] = when[ok]
    cand["__i"] = np.arange(len(frame))[ok.to_numpy(dtype=bool)]
    cand = cand.sort_values([*by, "__t", "__i"], kind="stable")
    picked = cand.groupby(by, dropna=False).tail(1) if tie == "last" else None
    if tie == "first":
        last_day = cand.groupby(by, dropna=False)["__t"].transform("max")
        picked = cand[cand["__t"] == last_day].groupby(by, dropna=False).head(1)
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    out.iloc[picked["__i"].to_numpy()] = "Y"  # type: ignore[index]
    return out


class AblflParams(Params):
    by: list[str] = Field(["USUBJID", "PARAMCD"], description="one baseline per group")
    date: str = Field("ADT", description="the record's numeric analysis date")
    reference: str = Field(
        "TRTSDT", description="numeric date the baseline must not follow (treatment start)"
    )
    value: str = Field("AVAL", description="the value that must be non-missing")
    tie: Literal["last", "first"] = Field(
        "last", description="two candidates on one date: last or first"
    )
    ref_fields = ("by", "date", "reference", "value")


@rule("ablfl", AblflParams, final=True)
def ablfl(ctx: RuleContext, p: AblflParams) -> pd.Series:
    """ABLFL: the last non-missing `value` dated on or before `reference`, per `by`
    (cases in `baseline_flag`). Example: `{name: ABLFL, rule: ablfl}`."""
    return baseline_flag(ctx.out, p.by, p.date, p.reference, p.value, p.tie)


def baseline_value(frame: pd.DataFrame, by: list[str], flag: str, var: str) -> pd.Series:
    """The `var` of the group's flagged (`flag` = Y) record on every record of the group."""
    # The groups' codes (a missing key a value of its own, as a merge matches it), each
    # group's flagged record by them, and its value taken for every record of the group:
    # what a left merge on `by` gives, without hashing the key columns' text twice.
    codes, first = factorize_rows(*(frame[c] for c in by))
    flagged = np.flatnonzero((frame[flag] == "Y").fillna(False).to_numpy(dtype=bool))
    if len(flagged) and np.bincount(codes[flagged], minlength=len(first)).max() > 1:
        raise ValueError(f"more than one {flag} = Y record in a {by} group")
    record = np.full(len(first), -1, dtype=np.intp)
    record[codes[flagged]] = flagged
    values = pd.api.extensions.take(frame[var].array, record[codes], allow_fill=True)
    return pd.Series(pd.Series(values).to_numpy(), index=frame.index)


class BaseParams(Params):
    by: list[str] = Field(["USUBJID", "PARAMCD"], description="the groups")
    flag: str = Field("ABLFL", description="the baseline flag variable")
    var: str = Field("AVAL", description="the variable copied from the baseline record")
    ref_fields = ("by", "flag", "var")


@rule("base", BaseParams, final=True)
def base(ctx: RuleContext, p: BaseParams) -> pd.Series:
    """BASE (or BNRIND with `var: ANRIND`): `var` of the group's ABLFL = Y record; null for a
    group without baseline. Example: `{name: BNRIND, rule: base, var: ANRIND}`."""
    try:
        return baseline_value(ctx.out, p.by, p.flag, p.var)
    except ValueError as exc:
        raise SpecError(ctx.spec_file, ctx.variable, str(exc)) from exc


def change(value: pd.Series, base_value: pd.Series, post: pd.Series) -> pd.Series:
    """AVAL - BASE on post-baseline records (`post` True), null elsewhere or when missing."""
    diff = pd.to_numeric(value).astype("Float64") - pd.to_numeric(base_value).astype("Float64")
    return diff.where(post.fillna(False).astype(bool))


def percent_change(chg: pd.Series, base_value: pd.Series) -> pd.Series:
    """100 x CHG / BASE; null when BASE is 0 or missing (no percent change from zero)."""
    b = pd.to_numeric(base_value).astype("Float64")
    return (100 * pd.to_numeric(chg).astype("Float64") / b).where(b != 0)


class ChgParams(Params):
    var: str = Field("AVAL", description="the analysis value")
    base: str = Field("BASE", description="the baseline value")
    post: Condition = Field(description="which records are post-baseline")
    ref_fields = ("var", "base")


@rule("chg", ChgParams, final=True)
def chg(ctx: RuleContext, p: ChgParams) -> pd.Series:
    """CHG = AVAL - BASE on post-baseline records (the spec's `post` condition), else null.

    Example: `{name: CHG, rule: chg, post: {col: ADY, gt: 1}}`."""
    return change(ctx.ref(p.var), ctx.ref(p.base), p.post.evaluate(ctx))


class PchgParams(Params):
    chg: str = Field("CHG", description="the change from baseline")
    base: str = Field("BASE", description="the baseline value")
    ref_fields = ("chg", "base")


@rule("pchg", PchgParams, final=True)
def pchg(ctx: RuleContext, p: PchgParams) -> pd.Series:
    """PCHG = 100 x CHG / BASE; null when BASE = 0 (counted in the build log)."""
    b = pd.to_numeric(ctx.ref(p.base)).astype("Float64")
    zero = (b == 0).fillna(False) & ctx.ref(p.chg).notna()
    ctx.report(zero, "BASE = 0: PCHG null")
    return percent_change(ctx.ref(p.chg), b)


# --- analysis record flag ----------------------------------------------------------------------


def analysis_flag(
    frame: pd.DataFrame,
    by: list[str],
    visit: str,
    day: str,
    value: str,
    target: pd.Series,
    baseline: str | None = None,
    tie: Literal["later", "earlier"] = "later",
) -> pd.Series:
    """ANL01FL: Y on the one record analysed per `by` group and analysis visit.

    Cases, in order: no visit (outside every window) or missing `value` -> null; the baseline
    record (`baseline` = Y) is the one analysed in its window; otherwise the record whose `day`
    is closest to the window's target day; equally close -> the later (`tie: later`) or
    earlier day; still tied (same day) -> the last in record order.
    """
    ok = frame[visit].notna() & frame[value].notna()
    keys = [*by, visit]
    cand = frame.loc[ok.to_numpy(dtype=bool), keys].copy()
    d = pd.to_numeric(frame[day], errors="coerce").astype("Float64")[ok]
    cand["__base"] = (frame[baseline] == "Y").fillna(False).astype(int)[ok] if baseline else 0
    cand["__dist"] = (d - pd.to_numeric(target)[ok]).abs().fillna(np.inf)
    cand["__dir"] = d.fillna(0) if tie == "later" else -d.fillna(0)
    rows = np.arange(len(frame))[ok.to_numpy(dtype=bool)]
    cand["__neg"] = -cand["__dist"]
    # the last of each group sorted by these (the candidates are in record order: a stable
    # sort leaves records equal on all of them in it, the last in record order last)
    picked = rows[last_in_groups(cand, keys, ["__base", "__neg", "__dir"])]
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    out.iloc[picked] = "Y"
    return out


class AnlflParams(Params):
    by: list[str] = Field(["USUBJID", "PARAMCD"], description="the groups (with the visit)")
    visit: str = Field("AVISITN", description="the analysis visit variable")
    day: str = Field("ADY", description="the relative day compared with the window's target day")
    value: str = Field("AVAL", description="the value that must be non-missing")
    baseline: str | None = Field(
        "ABLFL", description="the baseline flag: its record is the one analysed in its window"
    )
    tie: Literal["later", "earlier"] = Field(
        "later", description="equally close to target: later or earlier day"
    )
    file: str = Field("tables.yaml", description="spec file holding the windows")
    key: str = Field("windows", description="top-level key of the windows list")
    ref_fields = ("by", "visit", "day", "value", "baseline")

    def check_references(self, study: Any) -> list[tuple[str, str]]:
        return super().check_references(study) + _check_windows(self, study)


@rule("analysis_flag", AnlflParams, final=True)
def analysis_flag_rule(ctx: RuleContext, p: AnlflParams) -> pd.Series:
    """ANL01FL: one analysed record per subject, parameter and analysis visit (the rule for two
    records in one window: closest to the window's target day, `tie` decides equal distances;
    cases in `analysis_flag`). Records not chosen are counted in the build log.

    Example: `{name: ANL01FL, rule: analysis_flag, tie: later}`."""
    table = windows_table(ctx, p.file, p.key)
    targets = dict(zip(table["AVISITN"].astype(float), table["target"].astype(float), strict=True))
    visit = pd.to_numeric(ctx.ref(p.visit), errors="coerce").astype("Float64")
    target = map_distinct(visit, lambda v: targets.get(float(v), np.nan), "Float64")
    flag = analysis_flag(
        ctx.out, p.by, p.visit, p.day, p.value, target.astype(float), p.baseline, p.tie
    )
    extra = visit.notna() & ctx.ref(p.value).notna() & flag.isna()
    ctx.report(
        extra,
        "two or more records in one analysis window: the one closest to the target day "
        f"analysed (ANL01FL), tie -> {p.tie}",
    )
    return flag


# --- analysis values ---------------------------------------------------------------------------


class CensoredParams(Params):
    char: str = Field(description="the character result (may be <x or >x)")
    num: str = Field(description="the numeric result (null for qualified results)")
    below: Literal["half", "limit", "null"] = Field(
        "half", description="a <x result: half, limit or null"
    )
    above: Literal["limit", "null"] = Field("limit", description="a >x result: limit or null")
    ref_fields = ("char", "num")


def censored_value(
    char: pd.Series, num: pd.Series, below: str = "half", above: str = "limit"
) -> pd.Series:
    """AVAL from a result that may be outside the assay limits: plain numbers as they are;
    `<x` -> x/2 (`below: half`), x (`limit`) or null; `>x` -> x (`above: limit`) or null.
    The limits are read once per distinct result text (a lab repeats them)."""

    def limits(distinct: pd.Series) -> pd.DataFrame:
        text = distinct.astype("string").str.strip()
        limit = pd.to_numeric(text.str.extract(r"^[<>]=?\s*([-+]?[\d.]+)$", expand=False))
        lt = text.str.startswith("<").fillna(False) & limit.notna()
        gt = text.str.startswith(">").fillna(False) & limit.notna()
        lo = {"half": limit / 2, "limit": limit, "null": limit * np.nan}[below]
        hi = limit if above == "limit" else limit * np.nan
        return pd.DataFrame(
            {
                "lt": lt.astype(bool),
                "gt": gt.astype(bool),
                "lo": lo.astype("Float64"),
                "hi": hi.astype("Float64"),
            }
        )

    cut = per_distinct(limits, char)
    value = pd.to_numeric(num, errors="coerce").astype("Float64")
    value = value.mask(cut["lt"], cut["lo"]).mask(cut["gt"], cut["hi"])
    return value


@rule("censored_value", CensoredParams)
def censored_value_rule(ctx: RuleContext, p: CensoredParams) -> pd.Series:
    """AVAL from --STRESN, with results below/above the assay limits replaced by the spec's
    rule (counted in the build log). Example: `{name: AVAL, rule: censored_value,
    char: raw.LBSTRESC, num: raw.LBSTRESN, below: half}`."""
    char = ctx.ref(p.char)
    out = censored_value(char, ctx.ref(p.num), p.below, p.above)
    qualified = per_distinct(
        lambda d: d.astype("string").str.strip().str.match(r"^[<>]").fillna(False), char
    )
    ctx.report(qualified, f"results outside the assay limits: <x -> {p.below}, >x -> {p.above}")
    return out


class CensoredTypeParams(Params):
    char: str = Field(description="the character result (may be <x or >x)")
    below: str | None = Field("HALFLLOQ", description="DTYPE for a <x result")
    above: str | None = Field("ULOQ", description="DTYPE for a >x result")
    ref_fields = ("char",)


@rule("censored_dtype", CensoredTypeParams)
def censored_dtype(ctx: RuleContext, p: CensoredTypeParams) -> pd.Series:
    """DTYPE of an AVAL `censored_value` imputed: `below` (HALFLLOQ: one half of the lower
    limit of quantification) for a `<x` result, `above` (ULOQ) for a `>x` result, null for
    a plain number (ADaMIG 1.3: DTYPE is populated when AVAL is imputed differently from the
    parameter's other values). Example: `{name: DTYPE, rule: censored_dtype,
    char: raw.LBSTRESC, codelist: DTYPE}`."""

    def dtype_of(distinct: pd.Series) -> pd.Series:
        text = distinct.astype("string").str.strip()
        qualified = text.str.match(r"^[<>]=?\s*[-+]?[\d.]+$").fillna(False).astype(bool)
        out = pd.Series(pd.NA, index=text.index, dtype="string")
        if p.below is not None:
            out = out.mask(qualified & text.str.startswith("<").fillna(False), p.below)
        if p.above is not None:
            out = out.mask(qualified & text.str.startswith(">").fillna(False), p.above)
        return out

    out = per_distinct(dtype_of, ctx.ref(p.char))  # once per distinct result text
    out.index = ctx.out.index
    return out


class MergeParams(Params):
    dataset: str = Field("ADSL", description="the subject-level dataset read")
    var: str | None = Field(None, description="its variable (default: the target's name)")
    dataset_fields = ("dataset",)

    def domains(self) -> set[str]:
        return {self.dataset}


@rule("merge_adsl", MergeParams, origin="Predecessor")
def merge_adsl(ctx: RuleContext, p: MergeParams) -> pd.Series:
    """A subject-level variable of ADSL (or `dataset`) on every record, by USUBJID.

    Example: `{name: TRTSDT, rule: merge_adsl, predecessor: ADSL.TRTSDT}`."""
    return ctx.subject_values(p.dataset, p.var or ctx.variable)


# --- method text (cdiscforge.rules.words) ----------------------------------------------------


@describes("window")
def _say_window(p: WindowParams, w: Words) -> str:
    text = (
        f"{p.output} of the study's analysis window whose low and high days enclose {w.ref(p.day)}"
    )
    if p.baseline_flag and p.baseline_visit is not None:
        text += (
            f"; the record with {p.baseline_flag} = Y is the baseline visit {p.baseline_visit:g}"
        )
    return text


@describes("ablfl")
def _say_ablfl(p: AblflParams, w: Words) -> str:
    return (
        f"Y on the {p.tie} record per {w.refs(p.by)} with a non-missing {w.ref(p.value)} and "
        f"{w.ref(p.date)} on or before {w.ref(p.reference)}; null on every other record"
    )


@describes("base")
def _say_base(p: BaseParams, w: Words) -> str:
    return (
        f"{w.ref(p.var)} of the record with {w.ref(p.flag)} = Y in the same {w.refs(p.by)}; "
        "null when there is no such record"
    )


@describes("chg")
def _say_chg(p: ChgParams, w: Words) -> str:
    return (
        f"{w.ref(p.var)} minus {w.ref(p.base)} on post-baseline records, those where "
        f"{w.condition(p.post)}; null otherwise"
    )


@describes("pchg")
def _say_pchg(p: PchgParams, w: Words) -> str:
    return f"100 times {w.ref(p.chg)} divided by {w.ref(p.base)}; null when {w.ref(p.base)} is 0"


@describes("analysis_flag")
def _say_analysis_flag(p: AnlflParams, w: Words) -> str:
    text = (
        f"Y on one record per {w.refs(p.by)} and {w.ref(p.visit)} with a non-missing "
        f"{w.ref(p.value)}: the one whose {w.ref(p.day)} is closest to the analysis window's "
        f"target day, the {p.tie} one on equal distance"
    )
    if p.baseline:
        text += f"; the baseline record, {w.ref(p.baseline)} = Y, is flagged"
    return text


@describes("censored_value")
def _say_censored_value(p: CensoredParams, w: Words) -> str:
    below = {"half": "half the limit", "limit": "the limit", "null": "null"}[p.below]
    above = {"limit": "the limit", "null": "null"}[p.above]
    return (
        f"{w.ref(p.num)}; a result reported as below a limit in {w.ref(p.char)} is set to "
        f"{below}, one reported as above a limit to {above}"
    )


@describes("censored_dtype")
def _say_censored_dtype(p: CensoredTypeParams, w: Words) -> str:
    parts = []
    if p.below is not None:
        parts.append(f"{p.below} when {w.ref(p.char)} is reported as below a limit (<x)")
    if p.above is not None:
        parts.append(f"{p.above} when it is reported as above a limit (>x)")
    return "; ".join(parts) + "; null for a plain numeric result"


@describes("merge_adsl")
def _say_merge_adsl(p: MergeParams, w: Words) -> str:
    return f"{p.dataset}.{p.var or w.target} of the subject, by USUBJID"

"""ADaM numeric dates: ISO 8601 text to dates, imputation of partial dates, relative days.

ADaM analysis dates (ADT, ASTDT, TRTSDT ...) are numeric: datetime64 values in the frame with
a DATE9./DATETIME20. format; the XPT writer turns them into SAS dates. Imputation is the one
place a partial SDTM date becomes a full analysis date, so its cases are stated in order and
every imputed value is flagged (--DTF) and counted in the build log.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from cdiscforge.errors import SpecError
from cdiscforge.rules import Params, RuleContext, rule
from cdiscforge.rules.words import Words, describes
from cdiscforge.vectorise import per_distinct

DAY = np.timedelta64(1, "D")


def iso_to_date(iso: pd.Series, *, keep_time: bool = False) -> pd.Series:
    """Complete ISO 8601 dates (YYYY-MM-DD[Thh:mm[:ss]]) as datetime64; partial/missing -> NaT.

    Dates are floored to midnight unless `keep_time` (for --DTM variables)."""
    return per_distinct(lambda distinct: _iso_to_date(distinct, keep_time), iso)


def _iso_to_date(iso: pd.Series, keep_time: bool) -> pd.Series:
    text = iso.astype("string").str.strip()
    full = text.where(text.str.len() >= 10)
    if not keep_time:
        full = full.str.slice(0, 10)
    values = pd.to_datetime(full.str.replace("T", " "), format="mixed", errors="coerce")
    return values.astype("datetime64[ns]")


def _parts(iso: pd.Series) -> pd.DataFrame:
    text = iso.astype("string").str.strip()
    parts = text.str.extract(r"^(?P<y>\d{4})(?:-(?P<m>\d{2}))?(?:-(?P<d>\d{2}))?")
    return parts.apply(pd.to_numeric, errors="coerce")


def impute_dates(
    iso: pd.Series,
    *,
    fill: Literal["first", "last"],
    min_date: pd.Series | None = None,
    max_date: pd.Series | None = None,
    not_after: pd.Series | None = None,
) -> pd.DataFrame:
    """Impute partial ISO 8601 dates; returns columns `date` (datetime64) and `flag` (D/M/None).

    Cases, in the order applied (admiral's `derive_vars_dt` with highest imputation "M"):
    1. complete date -> itself, flag null (a time part is ignored);
    2. no year (missing or unparseable) -> null, flag null (never imputed);
    3. year and month known -> the month's first day (`fill: first`) or last day (`last`),
       flag D; year only -> 1 January or 31 December, flag M;
    4. `min_date` (e.g. treatment start): if it lies in the range of dates the partial date
       could be, the imputed date is `min_date` (so an AE starting "in the infusion month" is
       not placed before the infusion);
    5. `max_date` (e.g. end of study): if it lies in the possible range, the imputed date is
       never after it (an end date "in the last month" does not run past study end).
    `not_after` (e.g. the AE's end date) first cuts the possible range (a start date cannot
    follow the end), so steps 3-5 only choose dates that could be true; when the cut range
    is empty (inconsistent data) it is ignored.

    >>> impute_dates(pd.Series(["2019-03", "2019"]), fill="first")["flag"].tolist()
    ['D', 'M']
    """
    possible = per_distinct(_possible_days, iso)  # steps 1-3 depend on the value only
    lo, hi, partial = possible["lo"], possible["hi"], possible["partial"]
    if not_after is not None:
        cap = pd.to_datetime(not_after).dt.normalize()
        cut = partial & (cap < hi).fillna(False) & (cap >= lo).fillna(False)
        hi = hi.mask(cut, cap)
    imputed = (lo if fill == "first" else hi).copy()
    if min_date is not None:
        m = pd.to_datetime(min_date).dt.normalize()
        inside = partial & (m >= lo).fillna(False) & (m <= hi).fillna(False)
        imputed = imputed.mask(inside & (imputed < m).fillna(False), m)
    if max_date is not None:
        m = pd.to_datetime(max_date).dt.normalize()
        inside = partial & (m >= lo).fillna(False) & (m <= hi).fillna(False)
        imputed = imputed.mask(inside & (imputed > m).fillna(False), m)
    flag = pd.Series(pd.NA, index=iso.index, dtype="string")
    has_month = possible["has_month"]
    flag = flag.mask(partial & has_month, "D").mask(partial & ~has_month, "M")
    return pd.DataFrame({"date": imputed.astype("datetime64[ns]"), "flag": flag})


def _possible_days(iso: pd.Series) -> pd.DataFrame:
    """The first (`lo`) and last (`hi`) day each ISO date can be (null without a year),
    whether it is `partial`, and whether its month is known (impute_dates, steps 1-3)."""
    parts = _parts(iso)
    year, month, day = parts["y"], parts["m"], parts["d"]
    has_year = year.notna()
    first_m = month.fillna(1)
    last_m = month.fillna(12)
    lo = pd.to_datetime(
        pd.DataFrame({"year": year.fillna(2000), "month": first_m.fillna(1), "day": 1}),
        errors="coerce",
    )
    hi_month_start = pd.to_datetime(
        pd.DataFrame({"year": year.fillna(2000), "month": last_m, "day": 1}), errors="coerce"
    )
    hi = hi_month_start + pd.to_timedelta(hi_month_start.dt.days_in_month - 1, unit="D")
    complete = has_year & month.notna() & day.notna()
    exact = iso_to_date(iso)
    lo = lo.where(~complete, exact).where(has_year)
    hi = hi.where(~complete, exact).where(has_year)
    partial = has_year & ~complete
    return pd.DataFrame(
        {"lo": lo, "hi": hi, "partial": partial, "has_month": month.notna()}, index=iso.index
    )


def relative_day(date: pd.Series, reference: pd.Series) -> pd.Series:
    """Study day of `date` relative to `reference` (both datetime64): +1 on/after, no day 0."""
    d = pd.to_datetime(date).dt.normalize()
    r = pd.to_datetime(reference).dt.normalize()
    days = ((d - r) / DAY).astype("Float64")
    return days.mask(days >= 0, days + 1)


# --- rules -------------------------------------------------------------------------------------


class NumericDateParams(Params):
    var: str | None = Field(None, description="an ISO 8601 variable (or raw.NAME)")
    dataset: str | None = Field(None, description="or: a per-subject dataset (DM)")
    column: str | None = Field(None, description="with dataset: its ISO 8601 variable")
    time: bool = Field(False, description="keep the time part (a datetime, for --DTM)")
    ref_fields = ("var",)
    dataset_fields = ("dataset",)
    dataset_columns = ("column",)

    def domains(self) -> set[str]:
        return {self.dataset} if self.dataset else set()


@rule("numeric_date", NumericDateParams)
def numeric_date(ctx: RuleContext, p: NumericDateParams) -> pd.Series:
    """A numeric analysis date (or datetime with `time: true`) from a complete ISO 8601 value.

    Source: `var` (a source column written `raw.NAME`, or a variable computed earlier), or
    `dataset` + `column` for a per-subject value (e.g. TRTSDT from DM.RFXSTDTC). Partial dates
    give null here: use `impute_date` when the spec imputes them.

    Example: `{name: TRTSDT, rule: numeric_date, dataset: DM, column: RFXSTDTC}`.
    """
    if p.dataset:
        if not p.column:
            raise SpecError(ctx.spec_file, ctx.variable, "numeric_date with dataset needs column")
        values = ctx.subject_values(p.dataset, p.column)
    elif p.var:
        values = ctx.ref(p.var)
    else:
        raise SpecError(ctx.spec_file, ctx.variable, "give 'var' or 'dataset' + 'column'")
    return iso_to_date(values, keep_time=p.time)


class ImputeDateParams(Params):
    var: str = Field(description="the possibly partial ISO 8601 date")
    fill: Literal["first", "last"] = Field(description="impute the first or last possible day")
    min_date: str | None = Field(
        None, description="numeric date the imputed date is moved up to when possible"
    )
    max_date: str | None = Field(
        None, description="numeric date the imputed date is capped at when possible"
    )
    not_after: str | None = Field(None, description="numeric date the result may never follow")
    output: Literal["date", "flag"] = Field(
        "date", description="the date, or its imputation flag (D, M)"
    )
    ref_fields = ("var", "min_date", "max_date", "not_after")


@rule("impute_date", ImputeDateParams)
def impute_date(ctx: RuleContext, p: ImputeDateParams) -> pd.Series:
    """Analysis date from a possibly partial ISO 8601 date (`output: date`), or its
    imputation flag --DTF (`output: flag`: D day imputed, M month and day imputed).

    The cases are those of `impute_dates`, in order: complete -> as is; no year -> null;
    partial -> first/last possible day (`fill`), moved to `min_date` / capped at `max_date`
    when those fall inside the possible range. Each imputation is counted in the build log.

    Example: `{name: ASTDT, rule: impute_date, var: AESTDTC, fill: first, min_date: TRTSDT}`.
    """
    iso = ctx.ref(p.var)
    got = impute_dates(
        iso,
        fill=p.fill,
        min_date=ctx.ref(p.min_date) if p.min_date else None,
        max_date=ctx.ref(p.max_date) if p.max_date else None,
        not_after=ctx.ref(p.not_after) if p.not_after else None,
    )
    if p.output == "flag":
        return got["flag"]
    imputed = got["flag"].notna()
    bounds = "".join(
        f", {word} {ref}"
        for word, ref in (("not before", p.min_date), ("not after", p.max_date),
                          ("never after", p.not_after))
        if ref
    )  # fmt: skip
    ctx.report(imputed, f"partial {p.var} imputed ({p.fill} possible day{bounds})",
               examples=iso[imputed].astype(str).unique().tolist()[:3])  # fmt: skip
    unknown = iso.notna() & got["date"].isna()
    ctx.report(unknown, f"{p.var} without a year: analysis date left null", warn=True)
    return got["date"]


class RelativeDayParams(Params):
    date: str = Field(description="the numeric date")
    reference: str = Field("TRTSDT", description="the numeric day-1 date")
    ref_fields = ("date", "reference")


@rule("relative_day", RelativeDayParams)
def relative_day_rule(ctx: RuleContext, p: RelativeDayParams) -> pd.Series:
    """ADY / ASTDY: days from `reference` (default TRTSDT) to `date`, +1 on/after, no day 0.

    Null when either date is missing. Example: `{name: ADY, rule: relative_day, date: ADT}`.
    """
    return relative_day(ctx.ref(p.date), ctx.ref(p.reference))


class DateDiffParams(Params):
    start: str = Field(description="the numeric start date")
    end: str = Field(description="the numeric end date")
    unit: Literal["days", "weeks", "years"] = Field("days", description="days, weeks or years")
    add_one: bool = Field(False, description="count days inclusively (same day = 1)")
    decimals: int | None = Field(None, description="round to this many decimals")
    ref_fields = ("start", "end")


@rule("date_diff", DateDiffParams)
def date_diff(ctx: RuleContext, p: DateDiffParams) -> pd.Series:
    """`end - start` in days (+1 with `add_one`), weeks (/7) or years (/365.25), rounded to
    `decimals`; null when either date is missing.

    Example: `{name: ADURN, rule: date_diff, start: ASTDT, end: AENDT, add_one: true}`.
    """
    start = pd.to_datetime(ctx.ref(p.start)).dt.normalize()
    end = pd.to_datetime(ctx.ref(p.end)).dt.normalize()
    days = ((end - start) / DAY).astype("Float64") + (1 if p.add_one else 0)
    value = days / {"days": 1.0, "weeks": 7.0, "years": 365.25}[p.unit]
    return value.round(p.decimals) if p.decimals is not None else value


# --- method text (cdiscforge.rules.words) ----------------------------------------------------


@describes("numeric_date")
def _say_numeric_date(p: NumericDateParams, w: Words) -> str:
    what = w.ref(p.var) if p.var else f"{p.dataset}.{p.column}"
    kind = "datetime" if p.time else "date"
    return f"the numeric {kind} of {what}; null when {what} is partial or missing"


@describes("impute_date")
def _say_impute_date(p: ImputeDateParams, w: Words) -> str:
    if p.output == "flag":
        return (
            f"imputation flag of the analysis date from {w.ref(p.var)}: D when the day was "
            "imputed, M when month and day were imputed, null when the date was complete"
        )
    text = (
        f"{w.ref(p.var)} as a numeric date; a partial date is imputed to the {p.fill} day of "
        "its month, or of its year when the month is unknown"
    )
    if p.min_date:
        text += f", but to {w.ref(p.min_date)} when that falls in the possible range"
    if p.max_date:
        text += f", never after {w.ref(p.max_date)} when that falls in the possible range"
    if p.not_after:
        text += f", never after {w.ref(p.not_after)}"
    return text + "; a date without a year is not imputed"


@describes("relative_day")
def _say_relative_day(p: RelativeDayParams, w: Words) -> str:
    return (
        f"days from {w.ref(p.reference)} to {w.ref(p.date)}, plus 1 on or after "
        f"{w.ref(p.reference)}, so there is no day 0; null when either date is missing"
    )


@describes("date_diff")
def _say_date_diff(p: DateDiffParams, w: Words) -> str:
    text = f"{w.ref(p.end)} minus {w.ref(p.start)} in days"
    if p.add_one:
        text += " plus 1"
    if p.unit == "weeks":
        text += ", divided by 7"
    elif p.unit == "years":
        text += ", divided by 365.25"
    if p.decimals is not None:
        text += f", rounded to {p.decimals} decimal places"
    return text + "; null when either date is missing"

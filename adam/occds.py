"""OCCDS derivations (ADAE): treatment-emergent flag and first-occurrence flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from cdiscforge.rules import Condition, Params, RuleContext, rule
from cdiscforge.rules.words import Words, describes


def treatment_emergent(
    start: pd.Series,
    end: pd.Series,
    trt_start: pd.Series,
    trt_end: pd.Series | None = None,
    window_days: float | None = None,
) -> pd.Series:
    """TRTEMFL: Y or null, admiral's `derive_var_trtemfl` without worsening.

    Cases, in the order applied:
    1. not treated (no treatment start) -> null;
    2. ended before treatment start -> null;
    3. no start date (not even imputable) -> Y (cannot be shown to precede treatment);
    4. started before treatment start -> null;
    5. started after treatment end + `window_days` (when both are given) -> null;
    6. otherwise (started on or after treatment start) -> Y.
    Dates are compared as dates: an AE on the infusion day is treatment-emergent.
    """
    s = pd.to_datetime(start).dt.normalize()
    e = pd.to_datetime(end).dt.normalize()
    t0 = pd.to_datetime(trt_start).dt.normalize()
    out = pd.Series("Y", index=start.index, dtype="string")
    decided = pd.Series(False, index=start.index)

    def case(mask: pd.Series, value: object) -> None:
        nonlocal out, decided
        hit = mask.fillna(False).astype(bool) & ~decided
        out = out.mask(hit, value)
        decided |= hit

    case(t0.isna(), pd.NA)
    case(e < t0, pd.NA)
    case(s.isna(), "Y")
    case(s < t0, pd.NA)
    if trt_end is not None and window_days is not None:
        limit = pd.to_datetime(trt_end).dt.normalize() + pd.to_timedelta(window_days, unit="D")
        case(s > limit, pd.NA)
    return out


class TrtemflParams(Params):
    start: str = Field("ASTDT", description="analysis start date")
    end: str = Field("AENDT", description="analysis end date")
    trt_start: str = Field("TRTSDT", description="treatment start date")
    trt_end: str | None = Field(None, description="treatment end date")
    window_days: float | None = Field(None, description="days after treatment end still emergent")
    ref_fields = ("start", "end", "trt_start", "trt_end")


@rule("trtemfl", TrtemflParams)
def trtemfl(ctx: RuleContext, p: TrtemflParams) -> pd.Series:
    """TRTEMFL from analysis start/end dates and treatment start (cases in
    `treatment_emergent`). Example: `{name: TRTEMFL, rule: trtemfl}`."""
    return treatment_emergent(
        ctx.ref(p.start),
        ctx.ref(p.end),
        ctx.ref(p.trt_start),
        ctx.ref(p.trt_end) if p.trt_end else None,
        p.window_days,
    )


def first_occurrence(
    frame: pd.DataFrame, by: list[str], order: list[str], where: pd.Series | None = None
) -> pd.Series:
    """Y on the first record per `by` group in `order` (stable; missing sort values last)
    among records where `where` holds; null elsewhere."""
    keep = np.ones(len(frame), dtype=bool) if where is None else where.fillna(False).to_numpy(bool)
    cand = frame.loc[keep, [*by, *order]].copy()
    cand["__i"] = np.flatnonzero(keep)
    cand = cand.sort_values([*by, *order, "__i"], kind="stable", na_position="last")
    picked = cand.groupby(by, dropna=False).head(1)
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    out.iloc[picked["__i"].to_numpy()] = "Y"
    return out


class FirstParams(Params):
    by: list[str] = Field(description="one flag per group")
    order: list[str] = Field(description="sort keys: the first record is flagged")
    where: Condition | None = Field(
        None, description="only records where this holds are candidates"
    )
    ref_fields = ("by", "order")


@rule("first_occurrence", FirstParams, final=True)
def first_occurrence_rule(ctx: RuleContext, p: FirstParams) -> pd.Series:
    """AOCCFL-style flag: Y on each subject's first record (per `by`, in `order`) among those
    meeting `where` (e.g. TRTEMFL = Y). Example: `{name: AOCCPFL, rule: first_occurrence,
    by: [USUBJID, AEDECOD], order: [ASTDT, AESEQ], where: {col: TRTEMFL, eq: "Y"}}`."""
    where = p.where.evaluate(ctx) if p.where is not None else None
    return first_occurrence(ctx.out, p.by, p.order, where)


# --- method text (cdiscforge.rules.words) ----------------------------------------------------


@describes("trtemfl")
def _say_trtemfl(p: TrtemflParams, w: Words) -> str:
    text = (
        f"Y when the subject was treated and the event started on or after {w.ref(p.trt_start)}, "
        f"comparing dates, or has no {w.ref(p.start)}, unless it ended, {w.ref(p.end)}, before "
        f"{w.ref(p.trt_start)}"
    )
    if p.trt_end and p.window_days is not None:
        text += f"; null when it started over {p.window_days:g} days after {w.ref(p.trt_end)}"
    return text + "; null otherwise"


@describes("first_occurrence")
def _say_first_occurrence(p: FirstParams, w: Words) -> str:
    text = f"Y on the first record per {w.refs(p.by)}, ordered by {w.refs(p.order)}"
    if p.where is not None:
        text += f", among records where {w.condition(p.where)}"
    return text + "; null on every other record"

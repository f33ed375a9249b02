"""Derived parameters: new BDS records summarising an SDTM findings dataset (derive_param_*).

SJC66 / TJC68 are counts of joints with result 'Y' per subject and visit from MK. The spec
states which records count, which result is positive, and what happens to joints that were not
evaluable: `zero` (count only the positives: a replaced joint cannot be swollen), `prorate`
(count x assessed / evaluable, rounded, null below `min_evaluable`), or `missing` (any joint
not evaluable makes the count null).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from cdiscforge.compact import frame_as_text
from cdiscforge.errors import SpecError
from cdiscforge.rules import Condition, Params, RuleContext, generator
from cdiscforge.rules.basic import _context_on
from cdiscforge.vectorise import per_distinct, sorted_groups


class CountParam(Params):
    """One derived parameter: its code, name and which source records it counts."""

    PARAMCD: str = Field(description="the parameter's code (PARAMCD)")
    PARAM: str = Field(description="the parameter's name (PARAM)")
    where: Condition = Field(description="which records of the dataset this parameter counts")


class CountParams(Params):
    """Derived BDS parameter records counting positive results of an SDTM findings dataset
    (e.g. swollen and tender joint counts from per-joint records), with a stated rule for
    records that could not be evaluated, so a sum is never silently biased."""

    datasets: list[str] = Field(
        min_length=1, max_length=1, description="the one dataset read (listed so it is built first)"
    )
    by: list[str] = Field(min_length=1, description="variables of the dataset: one count per group")
    result: str = Field(description="the dataset's result variable (e.g. MKSTRESC)")
    positive: list[str] = Field(
        ["Y"], description="result values counted as positive (case-insensitive)"
    )
    not_evaluable: Condition = Field(description="which records could not be evaluated")
    not_evaluable_rule: Literal["zero", "prorate", "missing"] = Field(
        description="zero: count positives only; prorate: scale to all records; missing: null count"
    )
    min_evaluable: int = Field(
        1, ge=0, description="with prorate: fewest evaluable records for a count"
    )
    seq: str | None = Field(
        None, description="the dataset's --SEQ: the group's first is kept as SRCSEQ"
    )
    parameters: list[CountParam] = Field(
        min_length=1, description="the parameters derived, each with its records"
    )
    dataset_fields = ("datasets",)
    dataset_columns = ("by", "result", "seq")

    def domains(self) -> set[str]:
        return set(self.datasets)


def count_positive(
    frame: pd.DataFrame,
    by: list[str],
    positive: pd.Series,
    not_evaluable: pd.Series,
    rule: str,
    min_evaluable: int = 1,
    seq: str | None = None,
    rows: np.ndarray | None = None,
    groups: tuple[np.ndarray, int] | None = None,
) -> pd.DataFrame:
    """Per `by` group of the records `rows` selects (a boolean mask; all without):
    N_ASSESSED, N_NE, N_POS and AVAL by the not-evaluable `rule` (module docstring), and
    with `seq` SRCSEQ (the group's smallest). Groups keep their `by` values (as text where
    the frame holds them compact); order follows `by`, missing values a group of their own
    sorted last, as groupby(dropna=False, sort=True) of the selected records.

    Grouped by the `by` columns' sorted codes (vectorise.sorted_groups) and counted with
    bincount: a compacted column (MK at 10,000 subjects: 9M records) is grouped by its
    codes and only each group's first record is made text. `groups` is
    `sorted_groups(frame, by)` when the caller has it: a caller counting several selections
    of one frame (count_records: one per parameter) groups it once and passes `rows`,
    instead of copying and grouping each selection (the groups present in a selection keep
    their sorted order, renumbered 0, 1 ...)."""
    full, total = groups if groups is not None else sorted_groups(frame, by)
    at = np.flatnonzero(rows) if rows is not None else np.arange(len(frame), dtype=np.intp)
    group = full[at]
    present = np.bincount(group, minlength=total) > 0
    group = (np.cumsum(present) - 1)[group]
    count = int(present.sum())
    ne = not_evaluable.to_numpy(dtype=bool, na_value=False)[at]
    pos = positive.to_numpy(dtype=bool, na_value=False)[at] & ~ne
    first = np.full(count, len(frame), dtype=np.int64)
    np.minimum.at(first, group, at)
    agg = frame_as_text(frame[by].iloc[first].reset_index(drop=True))
    agg["N_POS"] = np.bincount(group, weights=pos, minlength=count).astype(np.int64)
    agg["N_NE"] = np.bincount(group, weights=ne, minlength=count).astype(np.int64)
    agg["N_ASSESSED"] = np.bincount(group, minlength=count).astype(np.int64)
    evaluable = agg["N_ASSESSED"] - agg["N_NE"]
    count_ = agg["N_POS"].astype("Float64")
    if rule == "prorate":
        scaled = (count_ * agg["N_ASSESSED"] / evaluable.where(evaluable > 0)).round(0)
        count_ = scaled.where(evaluable >= min_evaluable).astype("Float64")
    elif rule == "missing":
        count_ = count_.where(agg["N_NE"] == 0)
    agg["AVAL"] = count_
    if seq is not None:
        values = frame[seq].iloc[at].reset_index(drop=True)
        agg["SRCSEQ"] = values.groupby(group, sort=True).min().to_numpy()
    return agg


@generator("count_records", CountParams)
def count_records(ctx: RuleContext, p: CountParams) -> pd.DataFrame:
    """Parameter records counting positive results of an SDTM dataset (SJC66, TJC68 from MK).

    One record per parameter and `by` group with columns: the `by` variables, PARAMCD, PARAM,
    AVAL, N_ASSESSED, N_NE, N_POS, SRCDOM, SRCVAR and SRCSEQ (the first --SEQ of the group:
    the derived sum's documented trace is "all records of the group", stated in the spec).
    """
    name = p.datasets[0]
    frame = ctx.domain(name).frame.reset_index(drop=True)
    sub = _context_on(ctx, frame, name)
    missing = [c for c in [*p.by, p.result] if c not in frame.columns]
    if missing:
        raise SpecError(ctx.spec_file, "records.params", f"{name} has no {missing}")
    wanted = [v.upper() for v in p.positive]
    positive = per_distinct(  # per distinct result (a categorical's codes: no text)
        lambda r: r.astype("string").str.strip().str.upper().isin(wanted), frame[p.result]
    )
    ne = p.not_evaluable.evaluate(sub)
    # The frame is grouped once for all parameters, each counts its records by a mask (MK
    # has ~900 records per subject: copying and grouping them per parameter was most of
    # the cost).
    groups = sorted_groups(frame, p.by)
    out = []
    for param in p.parameters:
        rows = param.where.evaluate(sub).to_numpy(dtype=bool)
        if not rows.any():
            ctx.log.warn("adam", ctx.dataset, f"no {name} records for {param.PARAMCD}")
            continue
        agg = count_positive(
            frame, p.by, positive, ne, p.not_evaluable_rule, p.min_evaluable, p.seq,
            rows=rows, groups=groups,
        )  # fmt: skip
        agg.insert(len(p.by), "PARAMCD", param.PARAMCD)
        agg.insert(len(p.by) + 1, "PARAM", param.PARAM)
        agg["SRCDOM"] = name
        agg["SRCVAR"] = p.result
        if not p.seq:
            agg["SRCSEQ"] = np.nan
        else:  # after SRCVAR, as the columns always were
            agg["SRCSEQ"] = agg.pop("SRCSEQ")
        ne_groups = int((agg["N_NE"] > 0).sum())
        if ne_groups:
            ctx.log.info(
                "adam",
                ctx.dataset,
                f"{param.PARAMCD}: joints not evaluable in {ne_groups} count(s); rule "
                f"'{p.not_evaluable_rule}' applied",
                count=ne_groups,
            )
        out.append(agg)
    if not out:
        return pd.DataFrame(columns=[*p.by, "PARAMCD", "PARAM", "AVAL"])
    return pd.concat(out, ignore_index=True)

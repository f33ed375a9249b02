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

from cdiscforge.errors import SpecError
from cdiscforge.rules import Condition, Params, RuleContext, generator
from cdiscforge.rules.basic import _context_on


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
) -> pd.DataFrame:
    """Per `by` group: N_ASSESSED, N_NE, N_POS and AVAL by the not-evaluable `rule`
    (module docstring). Groups keep their `by` values; order follows `by`."""
    work = frame[by].copy()
    work["__pos"] = (positive.fillna(False) & ~not_evaluable.fillna(False)).astype(int).to_numpy()
    work["__ne"] = not_evaluable.fillna(False).astype(int).to_numpy()
    work["__n"] = 1
    agg = work.groupby(by, dropna=False, sort=True)[["__pos", "__ne", "__n"]].sum().reset_index()
    agg = agg.rename(columns={"__pos": "N_POS", "__ne": "N_NE", "__n": "N_ASSESSED"})
    evaluable = agg["N_ASSESSED"] - agg["N_NE"]
    count = agg["N_POS"].astype("Float64")
    if rule == "prorate":
        scaled = (count * agg["N_ASSESSED"] / evaluable.where(evaluable > 0)).round(0)
        count = scaled.where(evaluable >= min_evaluable).astype("Float64")
    elif rule == "missing":
        count = count.where(agg["N_NE"] == 0)
    agg["AVAL"] = count
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
    result = frame[p.result].astype("string").str.strip().str.upper()
    positive = result.isin([v.upper() for v in p.positive])
    ne = p.not_evaluable.evaluate(sub)
    # Only the columns a count reads are filtered per parameter (MK has ~900 records per
    # subject and a dozen columns; copying all of them per parameter was most of the cost).
    needed = frame[list(dict.fromkeys([*p.by, *([p.seq] if p.seq else [])]))]
    out = []
    for param in p.parameters:
        rows = param.where.evaluate(sub).to_numpy(dtype=bool)
        if not rows.any():
            ctx.log.warn("adam", ctx.dataset, f"no {name} records for {param.PARAMCD}")
            continue
        part = needed[rows]
        agg = count_positive(
            part, p.by, positive[rows], ne[rows], p.not_evaluable_rule, p.min_evaluable
        )
        agg.insert(len(p.by), "PARAMCD", param.PARAMCD)
        agg.insert(len(p.by) + 1, "PARAM", param.PARAM)
        agg["SRCDOM"] = name
        agg["SRCVAR"] = p.result
        if p.seq:
            first = part.groupby(p.by, dropna=False, sort=True)[p.seq].min().to_numpy()
            agg["SRCSEQ"] = first
        else:
            agg["SRCSEQ"] = np.nan
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

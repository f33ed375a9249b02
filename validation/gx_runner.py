"""Run generated suites with Great Expectations as a library, quietly.

One ephemeral context per run (nothing written to disk), one pandas data asset and one
validation per dataset. GX's import turns on `logging.captureWarnings(True)` and its progress
bars write to stderr; both would leak into a build log a programmer reads, so they are undone
here, and warnings raised inside GX are kept inside.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import replace
from functools import cache
from types import ModuleType
from typing import Any

from cdiscforge.validation.findings import DEFAULT_MAX_EXAMPLES, Check, Finding
from cdiscforge.validation.suites import (
    MESSAGE_VALUES,
    Expectation,
    ExpectationOutcome,
    SuitePlan,
    interpret,
)

ENGINE = "great_expectations"
POSITION = "cdiscforge_position"


@cache
def _gx() -> ModuleType:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    was_capturing = logging.getLogger("py.warnings").handlers != []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
    if not was_capturing:
        logging.captureWarnings(False)
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gx


def gx_expectations() -> ModuleType:
    """`great_expectations.expectations`, imported the quiet way."""
    _gx()
    import great_expectations.expectations as gxe

    return gxe


def _context() -> Any:
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _examples(result: dict[str, Any], index_columns: list[str], limit: int) -> list[dict]:
    rows = result.get("unexpected_index_list") or []
    out = []
    for row in rows[:limit]:
        if isinstance(row, dict):
            # GX renders a missing (pd.NA) locating value as the text "<NA>": it is missing.
            out.append(
                {k: (None if k in index_columns and v == "<NA>" else v) for k, v in row.items()}
            )
        else:  # no locating columns: GX gives the frame index
            out.append({"row": int(row) + 1})
    return out


def gx_expectation(exp: Expectation, position: int | None = None) -> Any:
    """The real GX expectation object for one generated expectation.

    `position` is kept in meta so a result can be paired with its expectation: GX does not
    return results in the suite's order.
    """
    meta = dict(exp.meta)
    if position is not None:
        meta[POSITION] = position
    return getattr(gx_expectations(), exp.gx_class)(meta=meta, **exp.kwargs)


def run_suites(
    plans: list[SuitePlan], *, max_examples: int = DEFAULT_MAX_EXAMPLES
) -> tuple[list[Finding], list[Check]]:
    """Validate each plan's frame against its expectations through GX; findings and checks."""
    findings: list[Finding] = []
    checks: list[Check] = []
    if not plans:
        return findings, checks
    gx = _gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = _context()
        source = context.data_sources.add_pandas("cdiscforge")
        for plan in plans:
            checks.extend(replace(c, engine=ENGINE) for c in plan.not_applicable)
            if not plan.expectations:
                continue
            asset = source.add_dataframe_asset(plan.dataset)
            batch_def = asset.add_batch_definition_whole_dataframe(plan.dataset)
            suite = gx.ExpectationSuite(name=plan.dataset)
            for i, exp in enumerate(plan.expectations):
                suite.add_expectation(gx_expectation(exp, i))
            # COMPLETE: every unexpected record (the report lists them all, up to max_examples).
            result_format: dict[str, Any] = {
                "result_format": "COMPLETE",
                "partial_unexpected_count": MESSAGE_VALUES,
            }
            if plan.index_columns:
                result_format["unexpected_index_column_names"] = plan.index_columns
            batch = batch_def.get_batch(batch_parameters={"dataframe": plan.frame})
            outcome = batch.validate(suite, result_format=result_format)
            for res in outcome.results:
                exp = plan.expectations[res.expectation_config.meta[POSITION]]
                found, check = interpret(
                    plan.dataset, exp, _outcome(res, plan, max_examples), ENGINE
                )
                checks.append(check)
                findings.extend(found)
    return findings, checks


def _outcome(res: Any, plan: SuitePlan, max_examples: int) -> ExpectationOutcome:
    info = res.exception_info or {}
    if info.get("raised_exception"):
        return ExpectationOutcome(False, error=str(info.get("exception_message")))
    result = dict(res.result or {})
    if res.success:
        return ExpectationOutcome(True)
    return ExpectationOutcome(
        False,
        count=int(result.get("unexpected_count") or 0),
        values=list(result.get("partial_unexpected_list") or []),
        examples=_examples(result, plan.index_columns, max_examples),
        missing=list(result.get("details", {}).get("mismatched", {}).get("missing", [])),
    )

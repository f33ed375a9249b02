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
from functools import cache
from types import ModuleType
from typing import Any

from validation.catalogue import rule
from validation.findings import Check, Finding, plain
from validation.suites import SuitePlan, helper_label

PRESENCE_RULES = ("CF-DS-0001", "CF-DS-0003")


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


def _message(description: str, rule_id: str, count: int, values: list[Any]) -> str:
    title = rule(rule_id).title
    shown = ", ".join(repr(plain(v)) for v in values[:5])
    tail = f" (e.g. {shown})" if shown else ""
    return f"{title}: {count} record(s) fail '{description}'{tail}"


def _examples(result: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    rows = result.get("partial_unexpected_index_list") or []
    out = []
    for row in rows[:limit]:
        if isinstance(row, dict):
            out.append({helper_label(k): v for k, v in row.items()})
        else:  # no locating columns: GX gives the frame index
            out.append({"row": int(row) + 1})
    return out


def run_suites(
    plans: list[SuitePlan], *, max_examples: int = 5
) -> tuple[list[Finding], list[Check]]:
    """Validate each plan's frame against its expectations; return findings and checks run."""
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
            checks.extend(plan.not_applicable)
            if not plan.expectations:
                continue
            asset = source.add_dataframe_asset(plan.dataset)
            batch_def = asset.add_batch_definition_whole_dataframe(plan.dataset)
            suite = gx.ExpectationSuite(name=plan.dataset)
            for exp in plan.expectations:
                suite.add_expectation(exp)
            result_format: dict[str, Any] = {
                "result_format": "SUMMARY",
                "partial_unexpected_count": max_examples,
            }
            if plan.index_columns:
                result_format["unexpected_index_column_names"] = plan.index_columns
            batch = batch_def.get_batch(batch_parameters={"dataframe": plan.frame})
            outcome = batch.validate(suite, result_format=result_format)
            for res in outcome.results:
                found, check = _interpret(plan.dataset, res, max_examples)
                checks.append(check)
                findings.extend(found)
    return findings, checks


def _interpret(dataset: str, res: Any, max_examples: int) -> tuple[list[Finding], Check]:
    meta = res.expectation_config.meta or {}
    rule_id = meta["rule_id"]
    variables = tuple(meta.get("variables", ()))
    description = meta.get("description", res.expectation_config.type)
    info = res.exception_info or {}
    if info.get("raised_exception"):
        reason = f"check could not run: {info.get('exception_message')}"
        check = Check(
            rule_id, dataset, variables, description, "not applicable", "great_expectations", reason
        )
        return [], check
    status = "pass" if res.success else "fail"
    check = Check(rule_id, dataset, variables, description, status, "great_expectations")
    if res.success:
        return [], check
    result = dict(res.result or {})
    if rule_id in PRESENCE_RULES:
        missing = result.get("details", {}).get("mismatched", {}).get("missing", [])
        title = rule(rule_id).title
        return [Finding.of(rule_id, dataset, [v], 1, f"{title}: {v}") for v in missing], check
    count = int(result.get("unexpected_count") or 0)
    values = result.get("partial_unexpected_list") or []
    finding = Finding.of(
        rule_id,
        dataset,
        variables,
        count,
        _message(description, rule_id, count, values),
        _examples(result, max_examples),
    )
    return [finding], check

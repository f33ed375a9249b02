"""The native engine: the generated GX suites evaluated with vectorised pandas / pyarrow.

Great Expectations costs 50-80 ms per expectation here whatever the data (metric graphs,
validators, result rendering); a submission has hundreds of expectations, so GX alone was
most of a build. This engine evaluates the *same* `Expectation` objects (the ones exported as
GX JSON and run by `--engine gx`) with one vectorised mask per expectation, and reproduces
GX's result semantics exactly, which tests/test_validation_engine.py asserts expectation type
by expectation type:

- column-value expectations ignore missing values (GX's map metrics), except
  expect_column_values_to_not_be_null, whose unexpected values are the missing ones;
- expect_compound_columns_to_be_unique ignores rows where every column is missing and counts
  every member of a duplicated group (pandas `duplicated(keep=False)`);
- expect_column_pair_values_to_be_equal with ignore_row_if="both_values_are_missing" counts a
  row where only one side is missing;
- examples list the checked column first, then the locating columns, then the other checked
  columns; without locating columns, the frame row number.

An expectation type the engine does not know is reported as a check that could not run (never
silently passed), so adding a type to `suites.py` without teaching it here fails the parity
test rather than the user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from cdiscforge.validation import operations as op
from cdiscforge.validation.findings import DEFAULT_MAX_EXAMPLES, Check, Finding
from cdiscforge.validation.operations import as_string
from cdiscforge.validation.suites import (
    MESSAGE_VALUES,
    Expectation,
    ExpectationOutcome,
    SuitePlan,
    interpret,
)

ENGINE = "native"

Mask = np.ndarray  # boolean, one entry per frame row: True = unexpected


def _text(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.StringDtype):
        return series
    return as_string(series)


def _mask(values: pd.Series) -> Mask:
    return values.fillna(False).to_numpy(dtype=bool)


# Column-value expectations are element-wise: each is tested once per distinct value
# (`op.per_distinct`, on the column codes shared with the rules) and spread back to the records.


def _in_set(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    return _mask(
        op.per_distinct(lambda col: _not_in_set(col, kw["value_set"]), frame[kw["column"]])
    )


def _not_in_set(col: pd.Series, value_set: Any) -> pd.Series:
    return col.notna() & ~op.isin(col, value_set)


def _not_null(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    return frame[kw["column"]].isna().to_numpy(dtype=bool)


def _regex(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    return _mask(op.per_distinct(lambda col: _regex_fails(col, kw["regex"]), frame[kw["column"]]))


def _regex_fails(col: pd.Series, regex: str) -> pd.Series:
    matched = _text(col).str.contains(regex, regex=True)
    return col.notna() & ~matched.fillna(False).astype(bool)


def _lengths(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    return _mask(op.per_distinct(lambda col: _length_fails(col, kw), frame[kw["column"]]))


def _length_fails(col: pd.Series, kw: dict[str, Any]) -> pd.Series:
    length = _text(col).str.len()
    bad = pd.Series(False, index=col.index)
    if kw.get("min_value") is not None:
        bad |= (length < kw["min_value"]).fillna(False).astype(bool)
    if kw.get("max_value") is not None:
        bad |= (length > kw["max_value"]).fillna(False).astype(bool)
    return col.notna() & bad


def _between(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    col = frame[kw["column"]]
    bad = pd.Series(False, index=col.index)
    if kw.get("min_value") is not None:
        below = col <= kw["min_value"] if kw.get("strict_min") else col < kw["min_value"]
        bad |= below.fillna(False).astype(bool)
    if kw.get("max_value") is not None:
        above = col >= kw["max_value"] if kw.get("strict_max") else col > kw["max_value"]
        bad |= above.fillna(False).astype(bool)
    return _mask(col.notna() & bad)


def _repeated(group: np.ndarray, keep: np.ndarray) -> Mask:
    """Kept rows whose group (integer codes) has more than one kept row: pandas
    `duplicated(keep=False)` on the kept rows, counted on codes."""
    if keep.all():  # every row counted (a key column that is never missing)
        return np.bincount(group)[group] > 1 if len(group) else np.zeros(0, dtype=bool)
    out = np.zeros(len(group), dtype=bool)
    kept = group[keep]
    if len(kept):
        out[keep] = np.bincount(kept)[kept] > 1
    return out


def _unique(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    col = frame[kw["column"]]
    present = col.notna().to_numpy(dtype=bool)
    return _repeated(op.codes_of(col)[0], present)


def _compound_unique(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    sub = frame[list(kw["column_list"])]
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    if ignore == "all_values_are_missing":
        keep = sub.notna().any(axis=1).to_numpy(dtype=bool)
    elif ignore == "any_value_is_missing":
        keep = sub.notna().all(axis=1).to_numpy(dtype=bool)
    else:
        keep = np.ones(len(sub), dtype=bool)
    if not len(sub):
        return np.zeros(0, dtype=bool)
    return _repeated(op.groups([frame[c] for c in kw["column_list"]])[0], keep)


def _pair_equal(frame: pd.DataFrame, kw: dict[str, Any]) -> Mask:
    a, b = frame[kw["column_A"]], frame[kw["column_B"]]
    ignore = kw.get("ignore_row_if", "both_values_are_missing")
    if ignore == "both_values_are_missing":
        considered = a.notna() | b.notna()
    elif ignore == "either_value_is_missing":
        considered = a.notna() & b.notna()
    else:
        considered = pd.Series(True, index=a.index)
    equal = (a == b).fillna(False).astype(bool)
    return _mask(considered & ~equal)


COLUMN_MAPS: dict[str, Callable[[pd.DataFrame, dict[str, Any]], Mask]] = {
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_match_regex": _regex,
    "expect_column_value_lengths_to_be_between": _lengths,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_pair_values_to_be_equal": _pair_equal,
}
TABLE_TYPES = frozenset({"expect_table_columns_to_match_set"})
SUPPORTED = frozenset(COLUMN_MAPS) | TABLE_TYPES


def _table_columns(frame: pd.DataFrame, kw: dict[str, Any]) -> ExpectationOutcome:
    wanted, present = set(kw["column_set"]), set(frame.columns)
    missing = sorted(wanted - present)
    unexpected = sorted(present - wanted)
    success = not missing and not (kw.get("exact_match", True) and unexpected)
    return ExpectationOutcome(success, missing=missing)


def _records(
    frame: pd.DataFrame, exp: Expectation, rows: np.ndarray, index_columns: list[str]
) -> list[dict[str, Any]]:
    """The unexpected records the way GX lists them (see the module docstring)."""
    if len(rows) == 0:
        return []
    checked = exp.columns()
    if not index_columns:
        return [{"row": int(label) + 1} for label in frame.index[rows]]
    order = list(dict.fromkeys([checked[0], *index_columns, *checked[1:]]))
    return frame.iloc[rows][order].to_dict("records")


def _values(frame: pd.DataFrame, exp: Expectation, rows: np.ndarray) -> list[Any]:
    """The first unexpected values, as GX's partial_unexpected_list has them."""
    sub = frame.iloc[rows[:MESSAGE_VALUES]]
    kw = exp.kwargs
    if "column_list" in kw:
        return sub[list(kw["column_list"])].to_dict("records")
    if "column_A" in kw:
        return sub[[kw["column_A"], kw["column_B"]]].to_numpy().tolist()
    return sub[kw["column"]].tolist()


def evaluate(
    frame: pd.DataFrame, exp: Expectation, index_columns: list[str], max_examples: int
) -> ExpectationOutcome:
    """One expectation on one frame, with GX's result semantics."""
    try:
        if exp.type in TABLE_TYPES:
            return _table_columns(frame, exp.kwargs)
        fn = COLUMN_MAPS.get(exp.type)
        if fn is None:
            return ExpectationOutcome(
                False, error=f"the native engine does not evaluate {exp.type}"
            )
        missing = [c for c in exp.columns() if c not in frame.columns]
        if missing:
            return ExpectationOutcome(False, error=f"column(s) {missing} not in the data")
        mask = fn(frame, exp.kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        return ExpectationOutcome(False, error=f"{type(exc).__name__}: {exc}")
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return ExpectationOutcome(True)
    return ExpectationOutcome(
        False,
        count=len(rows),
        values=_values(frame, exp, rows),
        examples=_records(frame, exp, rows[:max_examples], index_columns),
    )


def run_suites(
    plans: list[SuitePlan], *, max_examples: int = DEFAULT_MAX_EXAMPLES
) -> tuple[list[Finding], list[Check]]:
    """Evaluate each plan's expectations on its frame; the same findings GX would give."""
    findings: list[Finding] = []
    checks: list[Check] = []
    with op.shared_codes():  # a column several expectations read is factorized once
        for plan in plans:
            checks.extend(replace(c, engine=ENGINE) for c in plan.not_applicable)
            for exp in plan.expectations:
                out = evaluate(plan.frame, exp, plan.index_columns, max_examples)
                found, check = interpret(plan.dataset, exp, out, ENGINE)
                checks.append(check)
                findings.extend(found)
    return findings, checks

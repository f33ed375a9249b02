"""What validation reports: findings, the list of checks run, and the result holding both.

A reviewer needs two lists: what failed (findings, each with records to look at and a fix) and
what was checked (so a clean report proves something). Both are plain data with a stable sort
order, so results.json is byte-identical for the same datasets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from cdiscforge.validation.catalogue import SEVERITIES, Rule, Severity, rule

Status = Literal["pass", "fail", "not applicable"]
Engine = Literal["native", "great_expectations"]
ENGINES: tuple[Engine, ...] = ("native", "great_expectations")
# Records kept per finding: every affected record up to this bound (P21 caps its messages per
# rule too); the finding's count is always the full number.
DEFAULT_MAX_EXAMPLES = 1000


def plain(value: Any) -> Any:
    """A JSON-ready Python value: numpy scalars unwrapped, NaN/NA as None, 3.0 as 3, dates ISO."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Finding:
    """One failed check on one dataset: which rule, where, how many records, and examples."""

    rule_id: str
    severity: Severity
    dataset: str
    variables: tuple[str, ...]
    count: int
    message: str
    fix: str
    examples: tuple[dict[str, Any], ...] = ()
    mirrors: str = ""
    waiver: dict[str, Any] | None = None  # set by validation.waivers: explained, not blocking

    @classmethod
    def of(
        cls,
        rule_id: str,
        dataset: str,
        variables: tuple[str, ...] | list[str],
        count: int,
        message: str,
        examples: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        *,
        severity: Severity | None = None,
    ) -> Finding:
        """A finding whose severity, fix hint and mirrored rule come from the catalogue."""
        r: Rule = rule(rule_id)
        return cls(
            rule_id=rule_id,
            severity=severity or r.severity,
            dataset=dataset,
            variables=tuple(variables),
            count=int(count),
            message=message,
            fix=r.fix,
            examples=tuple({k: plain(v) for k, v in e.items()} for e in examples),
            mirrors=r.mirrors,
        )

    def sort_key(self) -> tuple:
        return (self.dataset, SEVERITIES.index(self.severity), self.rule_id, self.variables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "dataset": self.dataset,
            "variables": list(self.variables),
            "count": self.count,
            "message": self.message,
            "fix": self.fix,
            "mirrors": self.mirrors,
            "examples": [dict(e) for e in self.examples],
            **({"waiver": dict(self.waiver)} if self.waiver else {}),
        }


@dataclass(frozen=True)
class Check:
    """One check that was run (or could not be): the report's "what was checked" list."""

    rule_id: str
    dataset: str
    variables: tuple[str, ...]
    description: str
    status: Status
    engine: Literal["native", "great_expectations", "rule"] = "rule"
    reason: str = ""

    def sort_key(self) -> tuple:
        return (self.dataset, self.rule_id, self.variables, self.description)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "dataset": self.dataset,
            "variables": list(self.variables),
            "description": self.description,
            "status": self.status,
            "engine": self.engine,
            "reason": self.reason,
        }


@dataclass
class ValidationOptions:
    """Switches for a validation run.

    `ct=False` skips controlled-terminology checks (e.g. when no CT package is available);
    `skip_rules` silences rule ids a study has justified in its reviewer's guide (they are still
    listed as checked, with the reason). `max_examples` bounds the records kept per finding.
    `check_lengths` adds the 200-byte length check, for input no XPT writer or file format
    bounds (Dataset-JSON). `ig` / `adamig` / `ct_version` name the standards validated
    against (the bundled ones by default; `validation.standards_select` checks a choice).
    """

    ct: bool = True
    skip_rules: frozenset[str] = frozenset()
    max_examples: int = DEFAULT_MAX_EXAMPLES
    check_lengths: bool = False
    ig: str = "3.4"
    adamig: str = "1.3"
    ct_version: str = ""
    # The CT lookup (cdiscforge.ct.Terminology) a build validates against: the study's CT
    # releases and sponsor codelists; None: the bundled default releases.
    terminology: Any = None


@dataclass
class ValidationResult:
    """Findings and checks of one run; `timings` (seconds) is kept out of results.json."""

    findings: list[Finding] = field(default_factory=list)
    checked: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    datasets: dict[str, int] = field(default_factory=dict)  # name -> record count
    # What was run: tool version, standards, CT, engine, rules (the report header).
    run: dict[str, Any] = field(default_factory=dict)
    # The generated suites as GX ExpectationSuite JSON, by dataset (written to validation/gx/).
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" and not f.waiver for f in self.findings)

    def by_rule(self, rule_id: str) -> list[Finding]:
        return [f for f in self.findings if f.rule_id == rule_id]

    def summary(self) -> dict[str, dict[str, int]]:
        """Per dataset, the number of findings at each severity (datasets without findings too)."""
        out = {name: dict.fromkeys(SEVERITIES, 0) for name in sorted(self.datasets)}
        for f in self.findings:
            out.setdefault(f.dataset, dict.fromkeys(SEVERITIES, 0))[f.severity] += 1
        return dict(sorted(out.items()))

    def sort(self) -> None:
        self.findings.sort(key=Finding.sort_key)
        self.checked.sort(key=Check.sort_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "has_errors": self.has_errors,
            "run": dict(self.run),
            "datasets": dict(sorted(self.datasets.items())),
            "summary": self.summary(),
            "findings": [f.to_dict() for f in sorted(self.findings, key=Finding.sort_key)],
            "checked": [c.to_dict() for c in sorted(self.checked, key=Check.sort_key)],
        }

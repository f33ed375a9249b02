"""Waivers: findings a study team has justified (Pinnacle 21 "explanations").

A study lists them in `specs/<study>/waivers.yaml`:

    waivers:
      - rule: CF-SD-0026          # catalogue rule id (required)
        dataset: TS               # dataset name (required)
        variable: TSPARMCD        # optional: one of the finding's variables
        where: {USUBJID: [X-001]} # optional record filter on the finding's example records
        max_count: 8              # optional: waive only while at most this many records fail
        reason: "..."             # required: why this is acceptable
        by: "J. Smith"            # required: who accepted it
        date: 2026-12-01          # required: when

A waived finding stays in the report, with its severity, marked as explained by the waiver; it
does not block publishing. A waiver that matches no finding is itself a warning (CF-WV-0001),
so stale waivers are noticed and deleted. `where` is checked against the records a finding
shows: it waives a finding only when every failing record is shown and each matches, so it
can never hide records nobody looked at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cdiscforge.errors import SpecError
from cdiscforge.validation.catalogue import RULES
from cdiscforge.validation.findings import Finding, ValidationResult

WAIVERS_FILE = "waivers.yaml"
_KEYS = {"rule", "dataset", "variable", "where", "max_count", "reason", "by", "date"}
_REQUIRED = ("rule", "dataset", "reason", "by", "date")


@dataclass(frozen=True)
class Waiver:
    """One justified finding: which rule on which dataset (and variable/records), and why."""

    rule: str
    dataset: str
    reason: str
    by: str
    date: str
    variable: str | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    max_count: int | None = None
    source: str = ""  # "file: waivers[i]", for messages

    def matches(self, finding: Finding) -> bool:
        if finding.rule_id != self.rule or finding.dataset.upper() != self.dataset.upper():
            return False
        if self.variable and self.variable not in finding.variables:
            return False
        if self.max_count is not None and finding.count > self.max_count:
            return False
        if self.where:
            if len(finding.examples) < finding.count:
                return False  # not every failing record is shown: cannot vouch for the rest
            for example in finding.examples:
                for column, values in self.where:
                    if str(example.get(column)) not in values:
                        return False
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "by": self.by, "date": self.date}
        if self.source:
            out["source"] = self.source
        return out


def load_waivers(path: Path) -> list[Waiver]:
    """The waivers of a study file; [] when the file does not exist.

    Every problem in the file is reported in one SpecError (file, key path, what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        return []
    from cdiscforge.spec import load_yaml  # the one guarded spec reader (located errors)

    data = load_yaml(path) or {}
    entries = data.get("waivers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SpecError(path, "waivers", "expected a list of waivers under the key 'waivers'")
    problems: list[str] = []
    out: list[Waiver] = []
    for i, entry in enumerate(entries):
        where = f"waivers[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping, got {entry!r}")
            continue
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown} (allowed: {sorted(_KEYS)})")
        missing = [k for k in _REQUIRED if not entry.get(k)]
        if missing:
            problems.append(f"{where}: missing {missing}")
            continue
        if entry["rule"] not in RULES:
            problems.append(f"{where}.rule: {entry['rule']!r} is not a catalogue rule id")
        filt = entry.get("where") or {}
        if not isinstance(filt, dict):
            problems.append(f"{where}.where: expected a mapping of column to value(s)")
            filt = {}
        date = entry["date"]
        if not isinstance(date, dt.date):
            try:
                date = dt.date.fromisoformat(str(date))
            except ValueError:
                problems.append(f"{where}.date: {entry['date']!r} is not a YYYY-MM-DD date")
        max_count = entry.get("max_count")
        if max_count is not None and (not isinstance(max_count, int) or max_count < 1):
            problems.append(f"{where}.max_count: {max_count!r} is not a positive integer")
        out.append(
            Waiver(
                rule=str(entry["rule"]),
                dataset=str(entry["dataset"]),
                reason=" ".join(str(entry["reason"]).split()),
                by=str(entry["by"]),
                date=str(date),
                variable=str(entry["variable"]) if entry.get("variable") else None,
                where=tuple(
                    (str(k), tuple(str(x) for x in (v if isinstance(v, list) else [v])))
                    for k, v in sorted(filt.items())
                ),
                max_count=max_count,
                source=f"{path.name}: {where}",
            )
        )
    if problems:
        raise SpecError(path, "waivers", "; ".join(problems))
    return out


def apply_waivers(result: ValidationResult, waivers: Sequence[Waiver]) -> ValidationResult:
    """Mark the findings each waiver explains; add a CF-WV-0001 warning per unused waiver."""
    used: set[int] = set()
    findings: list[Finding] = []
    for finding in result.findings:
        hit = next((i for i, w in enumerate(waivers) if w.matches(finding)), None)
        if hit is None:
            findings.append(finding)
            continue
        used.add(hit)
        w = waivers[hit]
        findings.append(
            replace(
                finding,
                waiver=w.to_dict(),
                message=f"{finding.message} [waived: {w.reason} ({w.by}, {w.date})]",
            )
        )
    ran = {(c.rule_id, c.dataset.upper()) for c in result.checked if c.status != "not applicable"}
    for i, w in enumerate(waivers):
        # Stale only if the rule ran on that dataset and found nothing to explain: a define.xml
        # waiver is not stale in a build, which validates before define.xml exists.
        if i in used or (w.rule, w.dataset.upper()) not in ran:
            continue
        what = f"{w.rule} on {w.dataset}" + (f".{w.variable}" if w.variable else "")
        findings.append(
            Finding.of(
                "CF-WV-0001",
                w.dataset.upper(),
                [w.variable] if w.variable else [],
                1,
                f"Waiver matches no finding: {what} ({w.source}; reason: {w.reason})",
                [{"rule": w.rule, "dataset": w.dataset, "variable": w.variable or ""}],
            )
        )
    result.findings = findings
    result.sort()
    return result


def study_waivers(spec_folder: Path) -> list[Waiver]:
    """The waivers of a study spec folder (specs/<study>/waivers.yaml), [] when it has none."""
    return load_waivers(Path(spec_folder) / WAIVERS_FILE)

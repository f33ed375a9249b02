"""The rule catalogue: every check cdiscforge's validator can report, loaded from data.

The rules themselves are a shipped data file, `validation/rules.yaml`: id, the Pinnacle 21
(P21) and CDISC CORE ids a rule mirrors, the standards and versions it applies to, severity,
message, plain-English description, fix hint and the parameters its check reads. Code holds
only the small check functions (validation/rules*.py, the generated suites); a test fails if a
check has no entry here or an entry has no check. One home for ids, severities, messages and
fix hints, so the suites, the rules, the waivers and the report all speak of a rule the same way.

Id prefixes: CF-DS single-dataset checks generated as suites; CF-MD dataset metadata against
the IG; CF-SD SDTM record and cross-dataset rules; CF-AD ADaM rules; CF-DF define.xml against
the data; CF-WV waivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

Severity = Literal["error", "warning", "notice"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "notice")
ENGINES = ("suite", "rule", "define", "waiver")
CATALOGUE_FILE = "rules.yaml"


@dataclass(frozen=True)
class Rule:
    """What a rule checks, how bad a failure is, and what the programmer should do about it."""

    id: str
    severity: Severity
    title: str
    fix: str
    mirrors: str = ""
    description: str = ""
    engine: str = "rule"
    p21: tuple[str, ...] = ()
    core: tuple[str, ...] = ()
    standards: dict[str, tuple[str, ...]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    calibration: str = ""

    def applies_to(self, standard: str) -> bool:
        """Whether the rule applies to e.g. "SDTMIG 3.4" (name and version as catalogued)."""
        name, _, version = standard.partition(" ")
        versions = self.standards.get(name)
        return versions is not None and (not version or version in versions)


_REQUIRED = ("id", "engine", "severity", "message", "description", "fix", "standards")


def _rule(entry: dict[str, Any], where: str) -> Rule:
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise ValueError(f"{where}: rule entry lacks {missing}")
    if entry["severity"] not in SEVERITIES:
        raise ValueError(f"{where}: severity {entry['severity']!r} not one of {SEVERITIES}")
    if entry["engine"] not in ENGINES:
        raise ValueError(f"{where}: engine {entry['engine']!r} not one of {ENGINES}")
    p21 = tuple(str(x) for x in entry.get("p21") or ())
    core = tuple(str(x) for x in entry.get("core") or ())
    mirrors = "; ".join(
        part
        for part in (
            f"P21 {' / '.join(p21)}" if p21 else "",
            f"CORE {' / '.join(core)}" if core else "",
        )
        if part
    )
    return Rule(
        id=str(entry["id"]),
        severity=entry["severity"],
        title=str(entry["message"]).strip(),
        fix=" ".join(str(entry["fix"]).split()),
        mirrors=mirrors,
        description=" ".join(str(entry["description"]).split()),
        engine=entry["engine"],
        p21=p21,
        core=core,
        standards={k: tuple(str(v) for v in vs) for k, vs in entry["standards"].items()},
        params=dict(entry.get("params") or {}),
        calibration=" ".join(str(entry.get("calibration") or "").split()),
    )


@cache
def load_catalogue() -> dict[str, Rule]:
    """The shipped catalogue by rule id (ValueError naming the entry if the file is malformed)."""
    text = (resources.files("cdiscforge.validation") / CATALOGUE_FILE).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    out: dict[str, Rule] = {}
    for i, entry in enumerate(data["rules"]):
        r = _rule(entry, f"{CATALOGUE_FILE} rules[{i}]")
        if r.id in out:
            raise ValueError(f"{CATALOGUE_FILE} rules[{i}]: rule id {r.id} listed twice")
        out[r.id] = r
    return out


RULES: dict[str, Rule] = load_catalogue()


def rule(rule_id: str) -> Rule:
    """The catalogue entry for `rule_id` (KeyError names the id when a caller mistypes it)."""
    return RULES[rule_id]


def params(rule_id: str) -> dict[str, Any]:
    """The parameters a rule's check reads from the catalogue (empty when it has none)."""
    return RULES[rule_id].params

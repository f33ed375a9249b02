"""The rule catalogue: every check cdiscforge's validator can report, with its id.

One home for rule ids, severities, messages and fix hints, so the generated suites, the
cross-dataset rules and the report all speak of a rule the same way. Ids are our own; where a
Pinnacle 21 (P21) or CDISC CORE rule checks the same thing, `mirrors` names it so a reviewer can
put our report next to theirs.

Id prefixes: CF-DS single-dataset checks run by Great Expectations (suites generated from
metadata); CF-MD dataset metadata against the implementation guide; CF-SD cross-dataset SDTM
rules; CF-AD cross-dataset ADaM rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "notice"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "notice")


@dataclass(frozen=True)
class Rule:
    """What a rule checks, how bad a failure is, and what the programmer should do about it."""

    id: str
    severity: Severity
    title: str
    fix: str
    mirrors: str = ""


_RULES = [
    # --- single dataset, Great Expectations -------------------------------------------------
    Rule(
        "CF-DS-0001",
        "error",
        "Required variable not found in dataset",
        "Add the variable to the dataset spec: the IG marks it Req.",
        "P21 SD0056",
    ),
    Rule(
        "CF-DS-0002",
        "error",
        "Null value in a Required variable",
        "Populate the variable on every record (check the source form and the mapping rule).",
        "P21 SD0002",
    ),
    Rule(
        "CF-DS-0003",
        "warning",
        "Expected variable not found in dataset",
        "Add the variable (it may be null where not collected); the IG marks it Exp.",
        "P21 SD0057",
    ),
    Rule(
        "CF-DS-0004",
        "error",
        "Value not found in non-extensible codelist",
        "Map the raw value to a submission value of the codelist (see the spec's ct rule "
        "and its synonyms); new terms cannot be added to a non-extensible codelist.",
        "P21 CT2001",
    ),
    Rule(
        "CF-DS-0005",
        "warning",
        "Value not found in extensible codelist",
        "Use the codelist's submission value if one means the same; otherwise keep the sponsor "
        "term and list it in define.xml as an extended value.",
        "P21 CT2002",
    ),
    Rule(
        "CF-DS-0006",
        "error",
        "Invalid ISO 8601 date/time value",
        "Write dates as YYYY-MM-DD[Thh:mm[:ss]]; partial dates keep only the known leading "
        "parts (2019-01, 2019). Fix the iso8601 rule's input format in the spec.",
        "P21 SD0003",
    ),
    Rule(
        "CF-DS-0007",
        "error",
        "Duplicate records for the dataset's natural keys",
        "The spec's keys must identify one record; add the missing key variable or remove "
        "the duplicate source records.",
        "",
    ),
    Rule(
        "CF-DS-0008",
        "error",
        "Duplicate --SEQ within USUBJID",
        "Derive --SEQ after the record set is final, numbering 1..n per USUBJID.",
        "P21 SD0005",
    ),
    Rule(
        "CF-DS-0009",
        "error",
        "Character value longer than 200 bytes",
        "SAS XPT v5 holds at most 200 bytes: split the text into the IG's overflow variables "
        "(e.g. --TERM into SUPP-- QNAMs) per the SDTMIG.",
        "P21 SD1096",
    ),
    Rule(
        "CF-DS-0010",
        "warning",
        "Value outside the range the spec declares",
        "Check the source value and its unit conversion; widen the spec's range only if the "
        "value is plausible.",
        "",
    ),
    Rule(
        "CF-DS-0011",
        "error",
        "--STRESN does not equal --STRESC as a number",
        "Derive --STRESN from --STRESC (numeric results only); leave it null when --STRESC is "
        "not numeric.",
        "",
    ),
    Rule(
        "CF-DS-0012",
        "error",
        "DOMAIN value does not match the dataset",
        "Set DOMAIN to the dataset's two-letter domain code.",
        "P21 SD0004",
    ),
    # --- metadata against the IG -----------------------------------------------------------
    Rule(
        "CF-MD-0001",
        "error",
        "Variable type differs from the implementation guide",
        "Use the IG's type (Char/Num) in the spec; standard variables must not change type.",
        "P21 SD0055",
    ),
    Rule(
        "CF-MD-0002",
        "warning",
        "Variable label differs from the implementation guide",
        "Leave the label out of the spec so the IG label is used, or copy it exactly.",
        "P21 SD0063 / AD0018",
    ),
    Rule(
        "CF-MD-0003",
        "error",
        "Frame data type does not match the variable's type",
        "Numeric variables need numeric values and character variables text: fix the mapping "
        "rule's output type.",
        "P21 SD0055",
    ),
    # --- SDTM cross-dataset -------------------------------------------------------------
    Rule(
        "CF-SD-0001",
        "error",
        "Subject is not present in DM",
        "Every USUBJID must have a DM record: check the subject id rule and the DM source.",
        "P21 SD0064",
    ),
    Rule(
        "CF-SD-0002",
        "error",
        "ARMCD not found in TA",
        "Planned arm codes must be TA arms (or SCRNFAIL/NOTASSGN per older IGs); fix the "
        "arm mapping in the DM spec or add the arm to the TA spec.",
        "P21 SD0066",
    ),
    Rule(
        "CF-SD-0003",
        "error",
        "ACTARMCD not found in TA",
        "Actual arm codes must be TA arms; fix the actual-arm mapping in the DM spec.",
        "P21 SD0066 (actual arm)",
    ),
    Rule(
        "CF-SD-0004",
        "error",
        "ARMCD/ACTARMCD null without ARMNRS, or populated with it",
        "SDTMIG 3.4: leave ARMCD/ARM (ACTARMCD/ACTARM) null exactly when ARMNRS gives the "
        "reason the subject has no arm.",
        "",
    ),
    Rule(
        "CF-SD-0005",
        "warning",
        "ACTARMCD does not equal ARMCD",
        "Expected when a subject got a treatment other than planned; otherwise fix the "
        "actual-arm derivation.",
        "P21 SD2236",
    ),
    Rule(
        "CF-SD-0006",
        "error",
        "EPOCH not found in TA",
        "Record EPOCH values must be epochs of the trial design (TA).",
        "P21 SD1015",
    ),
    Rule(
        "CF-SD-0007",
        "warning",
        "EPOCH not among the subject's SE elements",
        "Derive EPOCH from the subject's SE element containing the record date.",
        "",
    ),
    Rule(
        "CF-SD-0008",
        "error",
        "USUBJID/VISITNUM/VISIT not found in SV",
        "Every visit a record names must be a subject visit in SV; derive VISIT from "
        "VISITNUM via the TV lookup.",
        "P21 SD0065",
    ),
    Rule(
        "CF-SD-0009",
        "warning",
        "Planned VISITNUM/VISIT not found in TV",
        "Scheduled visits (integer VISITNUM) must be TV visits with the same name.",
        "",
    ),
    Rule(
        "CF-SD-0010",
        "warning",
        "AEENDTC populated while AEOUT says not recovered",
        "An event with outcome NOT RECOVERED/NOT RESOLVED is ongoing: AEENDTC should be null "
        "(or the outcome is wrong).",
        "",
    ),
    Rule(
        "CF-SD-0011",
        "error",
        "SUPP-- RDOMAIN is not a dataset of the study",
        "RDOMAIN must name the parent domain present in the submission.",
        "P21 SD0072",
    ),
    Rule(
        "CF-SD-0012",
        "error",
        "SUPP-- record does not point at a parent record",
        "RDOMAIN + USUBJID + IDVAR + IDVARVAL must identify an existing parent record; "
        "build SUPP-- after the parent's --SEQ is final.",
        "P21 SD0077",
    ),
    Rule(
        "CF-SD-0013",
        "error",
        "--DY inconsistent with --DTC and DM.RFSTDTC",
        "Study day = date - RFSTDTC (+1 on or after RFSTDTC); there is no day 0. Derive --DY "
        "with the study_day rule from the full dates.",
        "P21 SD0038 (day 0)",
    ),
    # --- ADaM cross-dataset ------------------------------------------------------------
    Rule(
        "CF-AD-0001",
        "error",
        "ADSL subject not found in DM",
        "ADSL must be built from DM: one record per DM subject.",
        "P21 AD0053",
    ),
    Rule(
        "CF-AD-0002",
        "error",
        "DM subject missing from ADSL",
        "ADSL must hold every DM subject (screen failures included unless the SAP says otherwise).",
        "",
    ),
    Rule(
        "CF-AD-0003",
        "error",
        "Subject not found in ADSL",
        "Every subject of an ADaM dataset must be in ADSL.",
        "P21 AD0053",
    ),
    Rule(
        "CF-AD-0004",
        "error",
        "BASE differs from AVAL of the baseline (ABLFL='Y') record",
        "Derive BASE from the ABLFL record of the same USUBJID/PARAMCD(/BASETYPE).",
        "P21 AD0152",
    ),
    Rule(
        "CF-AD-0005",
        "error",
        "TRTEMFL='Y' on a record that started before treatment",
        "Treatment-emergent needs ASTDT >= TRTSDT (and a treated subject).",
        "",
    ),
    Rule(
        "CF-AD-0006",
        "warning",
        "Record started during treatment but TRTEMFL is not 'Y'",
        "A record with TRTSDT <= ASTDT <= TRTEDT is treatment-emergent; check the trtemfl "
        "derivation's window.",
        "",
    ),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def rule(rule_id: str) -> Rule:
    """The catalogue entry for `rule_id` (KeyError names the id when a caller mistypes it)."""
    return RULES[rule_id]

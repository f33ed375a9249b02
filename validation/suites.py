"""Great Expectations suites generated from a Dataset's metadata and the IG tables.

Nobody writes a suite by hand: for every dataset the checks follow from what the spec (the
Dataset's variables) and SDTMIG 3.4 / ADaMIG 1.3 already say, in the dbt spirit of "metadata
once, used everywhere". Each expectation carries `meta` naming its catalogue rule, so the
runner can turn GX results into findings without knowing how the suite was built.

Checks that cannot be generated (no codelist package, a codelist the IG leaves ambiguous, a
variable absent from the frame) are returned as "not applicable" with the reason, so the
report says what was *not* checked too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import Dataset, Variable
from cdiscforge.standards import adam_variables, domain_variables, sdtmig_variables
from validation.findings import Check, ValidationOptions

# Partial dates keep only the known leading parts (SDTMIG 4.4.4): 2019, 2019-01, 2019-01-05,
# 2019-01-05T10, ...T10:30, ...T10:30:15(.5) with an optional UTC offset. Groups are
# non-capturing so pandas does not warn about match groups.
ISO8601 = (
    r"^\d{4}(?:-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01])"
    r"(?:T(?:[01]\d|2[0-3])(?::[0-5]\d(?::[0-5]\d(?:\.\d+)?)?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?)?)?$"
)
MAX_CHAR_LENGTH = 200
HELPER_PREFIX = "__CF_"
RELATIONSHIP_DATASETS = frozenset({"RELREC", "RELSUB", "RELSPEC"})


@dataclass
class SuitePlan:
    """A generated suite for one dataset, with the batch frame it runs on."""

    dataset: str
    expectations: list[Any]
    frame: pd.DataFrame
    index_columns: list[str]
    not_applicable: list[Check] = field(default_factory=list)


def ig_table(dataset: Dataset) -> pd.DataFrame:
    """The IG variable table that governs `dataset` (empty for custom or OCCDS datasets)."""
    if dataset.standard.upper().startswith("ADAM"):
        if dataset.name.upper() == "ADSL":
            return adam_variables("ADSL")
        if is_bds(dataset):
            return adam_variables("BDS")
        return adam_variables("ADSL").iloc[0:0]
    domain = sdtm_domain(dataset)
    if not domain.startswith("SUPP") and domain not in set(sdtmig_variables()["dataset"]):
        return domain_variables("SUPPQUAL").iloc[0:0]  # RELREC and custom domains
    return domain_variables(domain)


def is_bds(dataset: Dataset) -> bool:
    """BDS datasets are told by their structure metadata or, for read-back XPT, PARAMCD + AVAL."""
    text = f"{dataset.klass} {dataset.structure}".upper()
    if "BASIC DATA STRUCTURE" in text or "BDS" in text:
        return True
    names = set(dataset.variable_names)
    return {"PARAMCD", "AVAL"} <= names or {"PARAMCD", "AVALC"} <= names


def sdtm_domain(dataset: Dataset) -> str:
    """The SDTM domain a dataset belongs to (SUPPAE stays SUPPAE; LBCH split data is LB)."""
    name = dataset.name.upper()
    if name.startswith("SUPP") or name in RELATIONSHIP_DATASETS:
        return name
    return (dataset.domain or name[:2]).upper()


def seq_variable(dataset: Dataset) -> str | None:
    """--SEQ of an SDTM general-observation dataset (the one USUBJID + --SEQ must identify)."""
    if dataset.standard.upper().startswith("ADAM"):
        return None
    name = f"{sdtm_domain(dataset)}SEQ"
    names = dataset.variable_names
    return name if name in names and "USUBJID" in names else None


def index_columns(dataset: Dataset) -> list[str]:
    """Columns that locate an example record for a reviewer: USUBJID and --SEQ / ASEQ / PARAMCD."""
    names = dataset.variable_names
    wanted = ["USUBJID", seq_variable(dataset) or "", "ASEQ", "PARAMCD", "AVISITN", "QNAM"]
    return [c for c in dict.fromkeys(wanted) if c and c in names][:3]


def _round_sig(values: pd.Series, digits: int = 12) -> pd.Series:
    """Round to significant digits, so 0.1 parsed from text equals 0.1 read back from XPT."""
    x = values.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(x == 0, 0, np.floor(np.log10(np.abs(x))))
        scale = 10.0 ** (digits - 1 - mag)
        out = np.round(x * scale) / scale
    return pd.Series(np.where(np.isfinite(x), out, np.nan), index=values.index)


def batch_frame(dataset: Dataset) -> pd.DataFrame:
    """The frame GX validates: blank character values as missing (SAS has no other null)."""
    frame = dataset.frame.copy()
    for var in dataset.variables:
        col = frame[var.name]
        if var.is_char and not pd.api.types.is_numeric_dtype(col):
            stripped = col.astype("string[pyarrow]").str.strip()
            frame[var.name] = col.where(stripped.fillna("") != "", None)
    return frame


def _expect(cls_name: str, rule_id: str, variables: list[str], description: str, **kwargs: Any):
    import validation.gx_runner as runner

    gxe = runner.gx_expectations()
    meta = {"rule_id": rule_id, "variables": variables, "description": description}
    return getattr(gxe, cls_name)(meta=meta, **kwargs)


@dataclass(frozen=True)
class _ValueSet:
    """The values a variable may take: one codelist, or the union of the IG's codelists."""

    short_name: str
    code: str
    extensible: bool
    values: frozenset[str]


def _codelist(var: Variable, ig_row: pd.Series | None) -> tuple[Any, str]:
    """The CT value set for a variable or a reason why none.

    The spec's codelist, else the IG's. Where the IG names several codelists for one variable
    (DSDECOD: NCOMPLT, PROTMLST, OTHEVENT, chosen per record by DSCAT), a value is accepted
    if it is in any of them, and the check is extensible if any of them is.
    """
    from cdiscforge import ct

    ig_codes = []
    if ig_row is not None:
        ig_codes = [c.strip() for c in str(ig_row["codelist_codes"]).split(";") if c.strip()]
    names = [var.codelist] if var.codelist else []
    if len(ig_codes) > 1:
        names = list(dict.fromkeys([*names, *ig_codes]))
    elif not names:
        names = ig_codes
    if not names:
        return None, ""
    try:
        lists = [ct.codelist(n) for n in names]
    except (KeyError, LookupError, CdiscforgeError) as exc:
        return None, f"codelist {names} not in the shipped CT ({exc})"
    if len(lists) == 1:
        return lists[0], ""
    return _ValueSet(
        " | ".join(c.short_name for c in lists),
        ", ".join(c.code for c in lists),
        any(c.extensible for c in lists),
        frozenset().union(*(c.values for c in lists)),
    ), ""


# Codelists that describe character results only (e.g. LBSTRESC C102580: POSITIVE, TRACE):
# a numeric result is not a codelist value, so only non-numeric values are checked.
_CHARACTER_RESULT_CODELISTS = {"C102580"}
_NUMERIC_RESULT = r"^\s*[<>]?=?\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def build_suite(dataset: Dataset, options: ValidationOptions | None = None) -> SuitePlan:
    """Generate the expectations for one dataset from its metadata and the IG.

    Order of generation (and of the "checked" list): IG Req/Exp presence, Req not null, frame
    types, CT value sets, ISO 8601 dates, key and --SEQ uniqueness, lengths, declared ranges,
    --STRESN vs --STRESC, DOMAIN value.
    """
    options = options or ValidationOptions()
    name = dataset.name
    names = dataset.variable_names
    ig = ig_table(dataset)
    frame = batch_frame(dataset)
    exps: list[Any] = []
    na: list[Check] = []

    def not_applicable(rule_id: str, variables: list[str], description: str, why: str) -> None:
        na.append(
            Check(
                rule_id,
                name,
                tuple(variables),
                description,
                "not applicable",
                "great_expectations",
                why,
            )
        )

    # Presence: one table-level expectation per core status; the runner reports each missing
    # variable as its own finding. ADaMIG placeholders (TRTxxP, ANLzzFL) name no one variable.
    standard_names = ig["name"][ig["name"].str.isupper()] if not ig.empty else ig["name"]
    for core, rule_id in (("Req", "CF-DS-0001"), ("Exp", "CF-DS-0003")):
        wanted = [n for n in standard_names[ig["core"] == core]] if not ig.empty else []
        if wanted:
            exps.append(
                _expect(
                    "ExpectTableColumnsToMatchSet",
                    rule_id,
                    wanted,
                    f"{len(wanted)} {core} variables present",
                    column_set=wanted,
                    exact_match=False,
                )
            )
    for var in (
        [n for n in standard_names[ig["core"] == "Req"] if n in names] if not ig.empty else []
    ):
        exps.append(
            _expect(
                "ExpectColumnValuesToNotBeNull",
                "CF-DS-0002",
                [var],
                f"{var} (Req) never null",
                column=var,
            )
        )
    if ig.empty:
        not_applicable(
            "CF-DS-0001",
            [],
            "IG Req/Exp variables present",
            "no IG variable table for this dataset (custom domain or OCCDS)",
        )

    for var in dataset.variables:
        v = var.name
        ig_row = ig.loc[v] if v in ig.index else None
        if options.ct and var.is_char:
            codelist, why = _codelist(var, ig_row)
            if codelist is not None:
                rule_id = "CF-DS-0005" if codelist.extensible else "CF-DS-0004"
                kind = "extensible" if codelist.extensible else "non-extensible"
                column = v
                description = f"{v} in {kind} codelist {codelist.short_name} ({codelist.code})"
                if codelist.code in _CHARACTER_RESULT_CODELISTS:
                    column = f"{HELPER_PREFIX}{v}_NON_NUMERIC"
                    text = frame[v].astype("string")
                    frame[column] = text.where(~text.str.match(_NUMERIC_RESULT).fillna(True))
                    description += " (non-numeric results)"
                exps.append(
                    _expect(
                        "ExpectColumnValuesToBeInSet",
                        rule_id,
                        [v],
                        description,
                        column=column,
                        value_set=sorted(codelist.values),
                    )
                )
            elif why:
                not_applicable("CF-DS-0004", [v], f"{v} in its codelist", why)
        if var.is_char and v.endswith("DTC"):
            exps.append(
                _expect(
                    "ExpectColumnValuesToMatchRegex",
                    "CF-DS-0006",
                    [v],
                    f"{v} is ISO 8601",
                    column=v,
                    regex=ISO8601,
                )
            )
        # A declared length <= 200 (e.g. read back from XPT) already bounds every value.
        if var.is_char and (var.length is None or var.length > MAX_CHAR_LENGTH):
            exps.append(
                _expect(
                    "ExpectColumnValueLengthsToBeBetween",
                    "CF-DS-0009",
                    [v],
                    f"{v} at most {MAX_CHAR_LENGTH} characters",
                    column=v,
                    max_value=MAX_CHAR_LENGTH,
                )
            )
        elif var.value_range is not None:
            lo, hi = var.value_range
            exps.append(
                _expect(
                    "ExpectColumnValuesToBeBetween",
                    "CF-DS-0010",
                    [v],
                    f"{v} within [{lo}, {hi}]",
                    column=v,
                    min_value=lo,
                    max_value=hi,
                )
            )

    seq = seq_variable(dataset)
    if seq:
        exps.append(
            _expect(
                "ExpectCompoundColumnsToBeUnique",
                "CF-DS-0008",
                ["USUBJID", seq],
                f"USUBJID + {seq} unique",
                column_list=["USUBJID", seq],
            )
        )
    keys = [k for k in dataset.keys if k in names]
    # A key that contains USUBJID + --SEQ is unique whenever they are: one rule, one finding.
    if keys and not (seq and {"USUBJID", seq} <= set(keys)):
        if len(keys) == 1:
            exp = _expect(
                "ExpectColumnValuesToBeUnique",
                "CF-DS-0007",
                keys,
                f"{keys[0]} unique",
                column=keys[0],
            )
        else:
            exp = _expect(
                "ExpectCompoundColumnsToBeUnique",
                "CF-DS-0007",
                keys,
                f"{' + '.join(keys)} unique",
                column_list=keys,
            )
        exps.append(exp)

    for stresn in [v for v in names if v.endswith("STRESN") and len(v) == 8]:
        stresc = stresn[:-1] + "C"
        if stresc not in names:
            continue
        helper = f"{HELPER_PREFIX}{stresc}_AS_NUMBER"
        rounded = f"{HELPER_PREFIX}{stresn}_ROUNDED"
        frame[helper] = _round_sig(pd.to_numeric(frame[stresc], errors="coerce"))
        frame[rounded] = _round_sig(pd.to_numeric(frame[stresn], errors="coerce"))
        exps.append(
            _expect(
                "ExpectColumnPairValuesToBeEqual",
                "CF-DS-0011",
                [stresn, stresc],
                f"{stresn} equals {stresc} as a number",
                column_A=rounded,
                column_B=helper,
                ignore_row_if="both_values_are_missing",
            )
        )

    if "DOMAIN" in names and not dataset.standard.upper().startswith("ADAM"):
        domain = sdtm_domain(dataset)
        exps.append(
            _expect(
                "ExpectColumnValuesToBeInSet",
                "CF-DS-0012",
                ["DOMAIN"],
                f"DOMAIN is {domain}",
                column="DOMAIN",
                value_set=[domain],
            )
        )

    return SuitePlan(name, exps, frame, index_columns(dataset), na)


def helper_label(column: str) -> str:
    """Name a helper column the way a reviewer would: '__CF_LBSTRESC_AS_NUMBER' -> 'LBSTRESC'."""
    if not column.startswith(HELPER_PREFIX):
        return column
    return column[len(HELPER_PREFIX) :].split("_", 1)[0]

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

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import Dataset, Variable
from cdiscforge.standards import adam_variables, domain_variables, sdtmig_variables
from cdiscforge.validation import operations as op
from cdiscforge.validation.catalogue import rule
from cdiscforge.validation.findings import Check, Finding, ValidationOptions, plain
from cdiscforge.validation.operations import as_string

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
class Expectation:
    """One generated expectation, as plain data in Great Expectations' own vocabulary.

    `type` is GX's snake_case name (expect_column_values_to_be_in_set), `kwargs` its arguments
    and `meta` our rule id, the variables a reviewer should look at and a description. Kept as
    data (not a GX object) so the native engine never imports GX, the GX engine builds the
    real expectation from it, and the GX JSON export is exactly what GX itself would load.
    """

    type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any]

    @property
    def rule_id(self) -> str:
        return str(self.meta["rule_id"])

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.meta.get("variables", ()))

    @property
    def description(self) -> str:
        return str(self.meta.get("description", self.type))

    @property
    def gx_class(self) -> str:
        """GX's class name: expect_column_values_to_be_in_set -> ExpectColumnValuesToBeInSet."""
        return "".join(part.capitalize() for part in self.type.split("_"))

    def columns(self) -> list[str]:
        """Frame columns the expectation reads, first the one GX reports first."""
        kw = self.kwargs
        if "column" in kw:
            return [kw["column"]]
        if "column_A" in kw:
            return [kw["column_A"], kw["column_B"]]
        return list(kw.get("column_list", []))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "kwargs": dict(self.kwargs), "meta": dict(self.meta)}


@dataclass
class SuitePlan:
    """A generated suite for one dataset, with the batch frame it runs on."""

    dataset: str
    expectations: list[Expectation]
    frame: pd.DataFrame
    index_columns: list[str]
    not_applicable: list[Check] = field(default_factory=list)


def ig_table(dataset: Dataset) -> pd.DataFrame:
    """The IG variable table that governs `dataset` (empty for custom or OCCDS datasets).

    Shared and cached (every rule asks for it): callers must not modify the frame.
    """
    if dataset.standard.upper().startswith("ADAM"):
        if dataset.name.upper() == "ADSL":
            return _ig_table("ADAM", "ADSL")
        return _ig_table("ADAM", "BDS" if is_bds(dataset) else "")
    return _ig_table("SDTM", sdtm_domain(dataset))


@cache
def _ig_table(kind: str, key: str) -> pd.DataFrame:
    if kind == "ADAM":
        return adam_variables(key) if key else adam_variables("ADSL").iloc[0:0]
    if not key.startswith("SUPP") and key not in set(sdtmig_variables()["dataset"]):
        return domain_variables("SUPPQUAL").iloc[0:0]  # RELREC and custom domains
    return domain_variables(key)


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


def _as_rounded_number(values: pd.Series) -> pd.Series:
    return _round_sig(pd.to_numeric(values, errors="coerce"))


def batch_frame(dataset: Dataset) -> pd.DataFrame:
    """The frame both engines validate: blank character values as missing (SAS has no other
    null). A shallow copy (copy-on-write): only columns holding blanks are rewritten."""
    frame = dataset.frame.copy(deep=False)
    for var in dataset.variables:
        col = frame[var.name]
        if var.is_char and isinstance(col.dtype, pd.CategoricalDtype):
            # read_xpt_fast's categoricals: look for blanks among the categories only
            cats = col.cat.categories
            blank = pd.Series(cats.astype("str"), dtype="str").str.strip().eq("").to_numpy()
            if blank.any():
                frame[var.name] = col.where(~col.isin(cats[blank]), None)
        elif var.is_char and not pd.api.types.is_numeric_dtype(col):
            blank = _blank(col)  # per record: cheaper in Arrow than factorizing the column
            if blank.any():
                frame[var.name] = col.where(~blank.to_numpy(dtype=bool), None)
    return frame


def _blank(col: pd.Series) -> pd.Series:
    """True where a text value is empty or only spaces (missing values are not blank)."""
    text = col if isinstance(col.dtype, pd.StringDtype) else col.astype("string[pyarrow]")
    arr = pa.chunked_array(pa.array(text, from_pandas=True))
    blank = pc.or_(pc.utf8_is_space(arr), pc.equal(pc.utf8_length(arr), 0))
    mask = pc.fill_null(blank, False).to_numpy(zero_copy_only=False).astype(bool)
    return pd.Series(mask, index=col.index)


def _snake(cls_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls_name).lower()


def _expect(
    cls_name: str, rule_id: str, variables: list[str], description: str, **kwargs: Any
) -> Expectation:
    meta = {"rule_id": rule_id, "variables": list(variables), "description": description}
    return Expectation(_snake(cls_name), kwargs, meta)


@dataclass(frozen=True)
class _ValueSet:
    """The values a variable may take: one codelist, or the union of the IG's codelists."""

    short_name: str
    code: str
    extensible: bool
    values: frozenset[str]


def _codelist(var: Variable, ig_row: pd.Series | None, terminology: Any = None) -> tuple[Any, str]:
    """The CT value set for a variable or a reason why none.

    The spec's codelist, else the IG's. Where the IG names several codelists for one variable
    (DSDECOD: NCOMPLT, PROTMLST, OTHEVENT, chosen per record by DSCAT), a value is accepted
    if it is in any of them, and the check is extensible if any of them is.
    """
    from cdiscforge import ct

    terms = terminology or ct.default_terminology()  # the one CT lookup
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
        lists = [terms.codelist(n) for n in names]
    except (KeyError, LookupError, CdiscforgeError) as exc:
        return None, f"codelist {names} not in the shipped CT ({exc})"
    if len(lists) == 1:
        return lists[0], ""
    return _ValueSet(
        " | ".join(c.short_name for c in lists),
        ", ".join(c.code or c.short_name for c in lists),
        any(c.extensible for c in lists),
        frozenset().union(*(c.values for c in lists)),
    ), ""


# Codelists that describe character results only (e.g. LBSTRESC C102580: POSITIVE, TRACE):
# a numeric result is not a codelist value, so only non-numeric values are checked.
_CHARACTER_RESULT_CODELISTS = {"C102580"}
_NUMERIC_RESULT = r"^\s*[<>]?=?\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def _non_numeric(values: pd.Series) -> pd.Series:
    """The values that are not numeric results (those as missing)."""
    text = as_string(values, "string")
    return text.where(~text.str.match(_NUMERIC_RESULT).fillna(True))


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
    exps: list[Expectation] = []
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
            codelist, why = _codelist(var, ig_row, options.terminology)
            if codelist is not None:
                rule_id = "CF-DS-0005" if codelist.extensible else "CF-DS-0004"
                kind = "extensible" if codelist.extensible else "non-extensible"
                column = v
                description = (
                    f"{v} in {kind} codelist {codelist.short_name} ({codelist.code or 'sponsor'})"
                )
                if codelist.code in _CHARACTER_RESULT_CODELISTS:
                    column = f"{HELPER_PREFIX}{v}_NON_NUMERIC"
                    frame[column] = op.per_distinct(_non_numeric, frame[v])
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
        # Lengths are checked only where nothing else guarantees them (Dataset-JSON input):
        # XPT v5 cannot hold more than 200 bytes per value, and cdiscforge's XPT writer
        # refuses (never truncates) a value over 200 bytes or over its fixed length before
        # anything is published (tests/test_validation_engine.py proves it).
        if var.is_char and options.check_lengths:
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
        if var.value_range is not None:
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
    if not options.check_lengths and any(v.is_char for v in dataset.variables):
        not_applicable(
            "CF-DS-0009",
            [],
            f"character values at most {MAX_CHAR_LENGTH} bytes",
            "guaranteed without a check: XPT v5 holds at most 200 bytes per value and the "
            "cdiscforge XPT writer refuses a longer value (it never truncates)",
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
        frame[helper] = op.per_distinct(_as_rounded_number, frame[stresc])
        frame[rounded] = op.per_distinct(_as_rounded_number, frame[stresn])
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


PRESENCE_RULES = ("CF-DS-0001", "CF-DS-0003")
MESSAGE_VALUES = 5  # unexpected values quoted in a finding's message


@dataclass
class ExpectationOutcome:
    """What one expectation found, engine-neutral: the GX result fields findings are made of.

    `values` are the first unexpected values (GX's partial_unexpected_list), `examples` the
    unexpected records as GX's unexpected_index_list gives them (the checked column first,
    then the locating columns, then the other checked columns; or {"row": n} without
    locating columns), `missing` the absent columns of a table-level expectation.
    """

    success: bool
    count: int = 0
    values: list[Any] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str | None = None


def interpret(
    dataset: str, exp: Expectation, out: ExpectationOutcome, engine: str
) -> tuple[list[Finding], Check]:
    """Turn one expectation's outcome into findings and the check that was run.

    Both engines end here, so a finding reads the same whichever engine produced it.
    """
    rule_id, variables, description = exp.rule_id, exp.variables, exp.description
    if out.error is not None:
        reason = f"check could not run: {out.error}"
        check = Check(rule_id, dataset, variables, description, "not applicable", engine, reason)
        return [], check
    status = "pass" if out.success else "fail"
    check = Check(rule_id, dataset, variables, description, status, engine)
    if out.success:
        return [], check
    title = rule(rule_id).title
    if rule_id in PRESENCE_RULES:
        return [Finding.of(rule_id, dataset, [v], 1, f"{title}: {v}") for v in out.missing], check
    shown = ", ".join(repr(plain(v)) for v in out.values[:MESSAGE_VALUES])
    tail = f" (e.g. {shown})" if shown else ""
    message = f"{title}: {out.count} record(s) fail '{description}'{tail}"
    examples = [{helper_label(k): v for k, v in row.items()} for row in out.examples]
    return [Finding.of(rule_id, dataset, variables, out.count, message, examples)], check


def _exportable(exp: Expectation) -> tuple[Expectation | None, str]:
    """The expectation as it runs on the dataset's own columns, or why it cannot.

    Helper columns exist only in our batch frame. The character-results codelist check
    (non-numeric values in the codelist) becomes the equivalent regex on the real column;
    --STRESN vs --STRESC needs both parsed and rounded, which no built-in GX expectation does.
    """
    helpers = [c for c in exp.columns() if c.startswith(HELPER_PREFIX)]
    if not helpers:
        return exp, ""
    if exp.type == "expect_column_values_to_be_in_set" and helpers[0].endswith("_NON_NUMERIC"):
        column = helper_label(helpers[0])
        alternatives = "|".join(re.escape(v) for v in exp.kwargs["value_set"])
        numeric = _NUMERIC_RESULT[1:-1]
        regex = f"^(?:{numeric}|{alternatives})$" if alternatives else _NUMERIC_RESULT
        kwargs = {"column": column, "regex": regex}
        return Expectation("expect_column_values_to_match_regex", kwargs, dict(exp.meta)), ""
    return None, (
        f"{exp.description}: compares values parsed and rounded to 12 significant digits, "
        "which no built-in GX expectation does; cdiscforge runs it on derived columns"
    )


def suite_json(plan: SuitePlan) -> dict[str, Any]:
    """The plan's suite as a Great Expectations ExpectationSuite JSON document.

    Load it with `great_expectations.ExpectationSuite(**json.load(fh))` and run it on the
    dataset read with blank character values as missing (as `batch_frame` does). Checks that
    cannot run on the dataset's own columns are listed under meta.cdiscforge.not_exported.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        gx_version = version("great_expectations")
    except PackageNotFoundError:  # pragma: no cover - GX is a dependency
        gx_version = ""
    exported, skipped = [], []
    for exp in plan.expectations:
        portable, why = _exportable(exp)
        if portable is None:
            skipped.append(why)
        else:
            exported.append(portable.to_json())
    return {
        "name": plan.dataset,
        "id": None,
        "expectations": exported,
        "meta": {
            "great_expectations_version": gx_version,
            "cdiscforge": {
                "dataset": plan.dataset,
                "locating_columns": list(plan.index_columns),
                "blank_text_is_missing": True,
                "not_exported": skipped,
            },
        },
        "notes": None,
    }

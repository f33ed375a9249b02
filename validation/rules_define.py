"""define.xml against the data: every dataset and variable described, types and lengths
equal, MedDRA-coded variables with a versioned external dictionary, Origin on every variable,
a method for every derived one, value-level metadata for every SUPP-- QNAM (and for every
--TESTCD where define.xml keys a result's value list on it), and the codelists the data use
present in define.xml and listing the data's values.

They run where a define.xml sits beside the data: `cdiscforge validate DIR`
(validation/api.py calls `define_findings`), and inside `cdiscforge build`, which validates the
datasets before define.xml exists and then, once write_outputs has written each stage's
define.xml into the staging folder, adds these rules' findings (`add_define_checks`) before
the publishing gate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree

from cdiscforge.errors import InputError
from cdiscforge.model import Dataset
from cdiscforge.validation import operations as op
from cdiscforge.validation.catalogue import params, rule
from cdiscforge.validation.findings import Check, Finding, ValidationResult
from cdiscforge.validation.operations import as_string
from cdiscforge.validation.waivers import Waiver, apply_waivers

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF_NAMESPACES = ("http://www.cdisc.org/ns/def/v2.1", "http://www.cdisc.org/ns/def/v2.0")
CHAR_TYPES = frozenset(
    {
        "text",
        "date",
        "datetime",
        "time",
        "partialDate",
        "partialTime",
        "partialDatetime",
        "incompleteDatetime",
        "durationDatetime",
        "intervalDatetime",
        "URI",
    }
)
NUM_TYPES = frozenset({"integer", "float", "date", "datetime", "time", "double", "decimal"})
EVENTS_CODED = frozenset({"AE", "MH", "CE"})
# Findings result variables (suffixes) value-level metadata by --TESTCD describes.
FINDINGS_RESULTS = ("ORRES", "ORRESU", "STRESC", "STRESN", "STRESU")


class _Define:
    """The parts of a define.xml the rules read, by OID and by dataset name."""

    def __init__(self, path: Path) -> None:
        try:
            root = etree.parse(str(path)).getroot()
        except (OSError, etree.XMLSyntaxError) as exc:
            raise InputError(path, f"define.xml cannot be read: {exc}") from None
        self.path = path
        ns = {"odm": ODM}
        defns = next((d for d in DEF_NAMESPACES if d in root.nsmap.values()), DEF_NAMESPACES[0])
        self.defns = defns
        self.items = {e.get("OID"): e for e in root.iterfind(".//odm:ItemDef", ns)}
        self.codelists = {e.get("OID"): e for e in root.iterfind(".//odm:CodeList", ns)}
        self.methods = {e.get("OID") for e in root.iterfind(".//odm:MethodDef", ns)}
        self.value_lists = {e.get("OID"): e for e in root.iterfind(f".//{{{defns}}}ValueListDef")}
        self.where_clauses = {
            e.get("OID"): e for e in root.iterfind(f".//{{{defns}}}WhereClauseDef")
        }
        self.groups: dict[str, list[etree._Element]] = {}
        for group in root.iterfind(".//odm:ItemGroupDef", ns):
            self.groups[group.get("Name", "").upper()] = group.findall(f"{{{ODM}}}ItemRef")

    def item(self, ref: etree._Element) -> etree._Element | None:
        return self.items.get(ref.get("ItemOID"))

    def origin(self, item: etree._Element) -> str | None:
        origin = item.find(f"{{{self.defns}}}Origin")
        return None if origin is None else origin.get("Type", "")

    def dictionary(self, item: etree._Element) -> tuple[str, str] | None:
        ref = item.find(f"{{{ODM}}}CodeListRef")
        codelist = self.codelists.get(ref.get("CodeListOID")) if ref is not None else None
        ext = codelist.find(f"{{{ODM}}}ExternalCodeList") if codelist is not None else None
        if ext is None:
            return None
        return ext.get("Dictionary", ""), ext.get("Version", "")

    def codelist_values(self, item: etree._Element) -> tuple[str | None, set[str] | None]:
        """The CodeList OID an ItemDef references and its coded values (None: no such CodeList;
        an empty set stands for an external dictionary, whose terms define.xml does not list)."""
        ref = item.find(f"{{{ODM}}}CodeListRef")
        if ref is None:
            return None, None
        oid = ref.get("CodeListOID", "")
        codelist = self.codelists.get(oid)
        if codelist is None:
            return oid, None
        if codelist.find(f"{{{ODM}}}ExternalCodeList") is not None:
            return oid, set()
        return oid, {
            e.get("CodedValue", "")
            for e in codelist
            if etree.QName(e).localname in ("CodeListItem", "EnumeratedItem")
        }

    def where_values(self, item: etree._Element, key: str) -> set[str] | None:
        """Values of variable `key` the item's value list describes (RangeCheck EQ/IN on an
        ItemDef named `key`); None when the item has no value list or none keyed on `key`."""
        ref = item.find(f"{{{self.defns}}}ValueListRef")
        value_list = self.value_lists.get(ref.get("ValueListOID")) if ref is not None else None
        if value_list is None:
            return None
        found: set[str] | None = None
        for vl_ref in value_list.iterfind(f"{{{ODM}}}ItemRef"):
            for wc_ref in vl_ref.iterfind(f"{{{self.defns}}}WhereClauseRef"):
                clause = self.where_clauses.get(wc_ref.get("WhereClauseOID"))
                if clause is None:
                    continue
                for check in clause.iterfind(f"{{{ODM}}}RangeCheck"):
                    on = self.items.get(check.get(f"{{{self.defns}}}ItemOID"))
                    if on is None or on.get("Name", "").upper() != key:
                        continue
                    if check.get("Comparator", "EQ") not in ("EQ", "IN"):
                        continue
                    found = found or set()
                    found |= {
                        (c.text or "").strip() for c in check.iterfind(f"{{{ODM}}}CheckValue")
                    }
        return found


def _values(series: pd.Series) -> pd.Series:
    """Values as define.xml spells them: text stripped, whole numbers without '.0'."""
    if pd.api.types.is_numeric_dtype(series):
        # XPT stores 9.3 as 9.299999999999999: compare numbers rounded to 9 decimals.
        num = series.astype("float64").round(9)
        whole = num.notna() & (num % 1 == 0)
        out = num.astype("string").where(~whole, num.round().astype("Int64").astype("string"))
        return out
    out = as_string(series, "string").str.strip()
    return out.where(out != "")


def _value_level(
    define: _Define, ds: Dataset, by_name: dict, key: str, targets: Iterable[str], rule_id: str
) -> list[Finding]:
    """Records whose `key` value has no value-level entry in the value list of a target
    variable (one finding per target variable, counting its records, naming the values)."""
    out = []
    frame = ds.frame
    if key not in frame.columns:
        return out
    # values repeat: each distinct key and target value is spelled and tested once, the
    # records only gather the booleans by their codes
    key_codes, keys = op.per_value(_values, frame[key])
    for target in targets:
        if target not in by_name or target not in frame.columns:
            continue
        described = define.where_values(by_name[target][1], key)
        if described is None and rule_id == "CF-DF-0010":
            continue  # findings: only where the define declares value-level metadata by key
        described = described or set()
        undescribed = _flags(keys.notna() & ~op.isin(keys, described).fillna(False))
        target_codes, populated = op.per_value(_populated, frame[target])
        missing = _flags(populated)[target_codes] & undescribed[key_codes]
        count = int(missing.sum())
        if count:
            values = sorted(set(keys.iloc[np.unique(key_codes[missing])].dropna().tolist()))
            out.append(
                Finding.of(
                    rule_id,
                    ds.name,
                    [target, key],
                    count,
                    f"{rule(rule_id).title}: {count} record(s); {key} "
                    + ", ".join(values[:10])
                    + (" ..." if len(values) > 10 else "")
                    + f" without a {target} ValueListDef/WhereClauseDef entry",
                    [{key: v, "variable": target} for v in values[:5]],
                )
            )
    return out


def _populated(series: pd.Series) -> pd.Series:
    return _values(series).notna()


def _not_listed(values: pd.Series, allowed: set[str]) -> pd.Series:
    """Values (as `_values` spells them) that are given and not among `allowed`."""
    return values.notna() & ~values.isin(allowed).fillna(False)


def _flags(mask: pd.Series) -> np.ndarray:
    """A boolean mask as numpy booleans, missing as False (as a mask selects records)."""
    return mask.to_numpy(dtype=bool, na_value=False)


def _one(rule_id: str, dataset: str, var: str, message: str, example: dict) -> Finding:
    variables = [var] if var else []
    return Finding.of(
        rule_id, dataset, variables, 1, f"{rule(rule_id).title}: {message}", [example]
    )


def check_define(
    define_path: Path, datasets: Sequence[Dataset]
) -> tuple[list[Finding], list[Check]]:
    """Compare a define.xml with the datasets it describes: findings and the checks made."""
    with op.shared_codes():  # the data's columns are read per distinct value, coded once
        return _check_define(_Define(Path(define_path)), datasets)


def _check_define(
    define: _Define, datasets: Sequence[Dataset]
) -> tuple[list[Finding], list[Check]]:
    findings: list[Finding] = []
    checks: list[Check] = []

    def check(rule_id: str, ds: str, desc: str, found: Iterable[Finding]) -> None:
        found = list(found)
        checks.append(Check(rule_id, ds, (), desc, "fail" if found else "pass"))
        findings.extend(found)

    coded = set(params("CF-DF-0006")["variables"])
    for ds in datasets:
        refs = define.groups.get(ds.name.upper())
        check(
            "CF-DF-0001",
            ds.name,
            "dataset described in define.xml",
            []
            if refs is not None
            else [_one("CF-DF-0001", ds.name, "", f"{ds.name} has no ItemGroupDef", {})],
        )
        if refs is None:
            continue
        by_name = {}
        for ref in refs:
            item = define.item(ref)
            if item is not None:
                by_name[item.get("Name", "")] = (ref, item)
        names = ds.variable_names
        check(
            "CF-DF-0002",
            ds.name,
            "every variable described",
            (
                _one("CF-DF-0002", ds.name, v, f"{v} has no ItemRef", {"variable": v})
                for v in names
                if v not in by_name
            ),
        )
        check(
            "CF-DF-0003",
            ds.name,
            "every described variable present",
            (
                _one("CF-DF-0003", ds.name, v, f"{v} is in define.xml only", {"variable": v})
                for v in by_name
                if v not in names
            ),
        )
        types, lengths, dictionaries, origins, methods = [], [], [], [], []
        for var in ds.variables:
            if var.name not in by_name:
                continue
            ref, item = by_name[var.name]
            dtype = item.get("DataType", "")
            allowed = CHAR_TYPES if var.is_char else NUM_TYPES
            if dtype not in allowed:
                types.append(
                    _one(
                        "CF-DF-0004",
                        ds.name,
                        var.name,
                        f"{var.name} is {var.type} but define.xml says DataType={dtype!r}",
                        {"variable": var.name, "type": var.type, "DataType": dtype},
                    )
                )
            length = item.get("Length")
            if var.is_char and var.length and length and int(length) != int(var.length):
                lengths.append(
                    _one(
                        "CF-DF-0005",
                        ds.name,
                        var.name,
                        f"{var.name} is {var.length} in the data, {length} in define.xml",
                        {"variable": var.name, "length": var.length, "Length": length},
                    )
                )
            domain = (ds.domain or ds.name[:2]).upper()
            if domain in EVENTS_CODED and var.name[2:] in coded and var.name[:2] == domain:
                dictionary = define.dictionary(item)
                if dictionary is None or dictionary[0].upper() != "MEDDRA" or not dictionary[1]:
                    dictionaries.append(
                        _one(
                            "CF-DF-0006",
                            ds.name,
                            var.name,
                            f"{var.name} has "
                            + ("no external dictionary" if dictionary is None else f"{dictionary}"),
                            {"variable": var.name, "dictionary": str(dictionary)},
                        )
                    )
            origin = define.origin(item)
            if not origin:
                origins.append(
                    _one(
                        "CF-DF-0007",
                        ds.name,
                        var.name,
                        f"{var.name} has no def:Origin",
                        {"variable": var.name},
                    )
                )
            elif origin == "Derived" and ref.get("MethodOID") not in define.methods:
                methods.append(
                    _one(
                        "CF-DF-0008",
                        ds.name,
                        var.name,
                        f"{var.name} is Derived without a MethodDef",
                        {"variable": var.name, "MethodOID": ref.get("MethodOID") or ""},
                    )
                )
        domain = (ds.domain or ds.name[:2]).upper()
        if "QNAM" in names and "QVAL" in names:
            check(
                "CF-DF-0009",
                ds.name,
                "value-level metadata for every QNAM",
                _value_level(define, ds, by_name, "QNAM", ["QVAL"], "CF-DF-0009"),
            )
        testcd = f"{domain}TESTCD"
        if testcd in names:
            results = [v for v in names if v[len(domain) :] in FINDINGS_RESULTS]
            check(
                "CF-DF-0010",
                ds.name,
                f"value-level metadata for every {testcd} where declared",
                _value_level(define, ds, by_name, testcd, results, "CF-DF-0010"),
            )
        refs_missing, not_listed = [], []
        for var in ds.variables:
            if var.name not in by_name or var.name not in ds.frame.columns:
                continue
            oid, allowed = define.codelist_values(by_name[var.name][1])
            if oid is None:
                continue
            if allowed is None:
                refs_missing.append(
                    _one(
                        "CF-DF-0011",
                        ds.name,
                        var.name,
                        f"{var.name} references CodeList {oid}, which define.xml lacks",
                        {"variable": var.name, "CodeListOID": oid},
                    )
                )
                continue
            if not allowed:
                continue  # external dictionary: its terms are not listed in define.xml
            codes, values = op.per_value(_values, ds.frame[var.name])
            bad = _flags(_not_listed(values, allowed))  # per distinct value
            count = int(bad[codes].sum())
            if count:  # every distinct value is some record's
                shown = sorted(set(values[bad].dropna().tolist()))
                not_listed.append(
                    Finding.of(
                        "CF-DF-0012",
                        ds.name,
                        [var.name],
                        count,
                        f"{rule('CF-DF-0012').title}: {count} record(s); {var.name} "
                        + ", ".join(repr(v) for v in shown[:5])
                        + (" ..." if len(shown) > 5 else "")
                        + f" not in CodeList {oid}",
                        [{var.name: v, "CodeListOID": oid} for v in shown[:5]],
                    )
                )
        check("CF-DF-0011", ds.name, "every CodeListRef names a CodeList", refs_missing)
        check("CF-DF-0012", ds.name, "data values listed in their define.xml codelist", not_listed)
        check("CF-DF-0004", ds.name, "define.xml DataTypes match the data", types)
        check("CF-DF-0005", ds.name, "define.xml lengths match the data", lengths)
        check("CF-DF-0006", ds.name, "MedDRA variables reference MedDRA + version", dictionaries)
        check("CF-DF-0007", ds.name, "every variable has an Origin", origins)
        check("CF-DF-0008", ds.name, "every Derived variable has a method", methods)
    return findings, checks


def define_findings(
    result: ValidationResult, define_path: Path, datasets: Sequence[Dataset]
) -> ValidationResult:
    """Add the define.xml rules to `result` when `define_path` exists (else unchanged)."""
    if not Path(define_path).is_file():
        return result
    findings, checks = check_define(define_path, datasets)
    result.findings.extend(findings)
    result.checked.extend(checks)
    result.sort()
    return result


def add_define_checks(
    result: ValidationResult,
    define_path: Path,
    datasets: Sequence[Dataset],
    waivers: Sequence[Waiver] = (),
) -> list[Finding]:
    """Add the define.xml rules' findings (with `waivers` applied to them) to a result whose
    own waivers were applied already, as a build does once define.xml is written; returns the
    new findings. Waivers are applied to the define findings and checks alone, so a waiver of
    another rule is neither applied twice nor reported as stale here."""
    findings, checks = check_define(define_path, datasets)
    part = ValidationResult(findings=findings, checked=checks)
    apply_waivers(part, waivers)
    result.findings.extend(part.findings)
    result.checked.extend(part.checked)
    result.sort()
    return part.findings

"""Conformance rules a single-table expectation cannot express: metadata against the IG and
checks that join datasets (subjects in DM, arms in TA, visits in SV, SUPP-- parents, ...).

Each rule is a small vectorised function over the study's datasets returning `Outcome`s: one
per dataset it looked at, failed or not, so the report lists what was checked. A rule whose
reference dataset is absent (no TA, no SE) is "not applicable", never a crash. Ids, severities
and fix hints live in `validation.catalogue`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cdiscforge.model import Dataset
from cdiscforge.validation import operations as op
from cdiscforge.validation.catalogue import RULES, rule
from cdiscforge.validation.findings import Check, Finding
from cdiscforge.validation.operations import as_string, plain
from cdiscforge.validation.suites import ig_table, index_columns, sdtm_domain

CheckFn = Callable[["Study"], Iterable["Outcome"]]
# rule id -> the check function that evaluates it (one function may evaluate several ids).
CHECKS: dict[str, CheckFn] = {}


def register(*rule_ids: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check function as the evaluation of catalogue rules `rule_ids`.

    A rule id must be in the catalogue (validation/rules.yaml) and registered once, so code and
    data cannot drift apart; tests/test_rules_catalogue.py checks the reverse direction.
    """

    def wrap(fn: CheckFn) -> CheckFn:
        for rule_id in rule_ids:
            if rule_id not in RULES:
                raise KeyError(f"{fn.__name__} registers {rule_id}, which is not in the catalogue")
            if rule_id in CHECKS and CHECKS[rule_id] is not fn:
                raise KeyError(f"{rule_id} registered twice ({CHECKS[rule_id].__name__})")
            CHECKS[rule_id] = fn
        return fn

    return wrap


# Arm codes older IGs and P21 accept outside TA for subjects without an arm.
NON_ARM_CODES = frozenset({"SCRNFAIL", "NOTASSGN", "NOTTRT", "UNPLAN"})


@dataclass
class Study:
    """The datasets of one run, by name, with the frames validation reads (blanks as missing)."""

    datasets: dict[str, Dataset]
    frames: dict[str, pd.DataFrame]
    max_examples: int = 5
    _ig: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def ig(self, dataset: Dataset) -> pd.DataFrame:
        """The IG table of a dataset, looked up once per run (many rules read it)."""
        if dataset.name not in self._ig:
            self._ig[dataset.name] = ig_table(dataset)
        return self._ig[dataset.name]

    def sdtm(self) -> list[Dataset]:
        return [d for n, d in sorted(self.datasets.items()) if not is_adam(d)]

    def adam(self) -> list[Dataset]:
        return [d for n, d in sorted(self.datasets.items()) if is_adam(d)]

    def get(self, name: str) -> pd.DataFrame | None:
        return self.frames.get(name)


@dataclass
class Outcome:
    check: Check
    finding: Finding | None = None


def is_adam(dataset: Dataset) -> bool:
    return dataset.standard.upper().startswith("ADAM")


def outcome(
    study: Study,
    rule_id: str,
    dataset: Dataset,
    variables: list[str],
    description: str,
    bad: pd.Series,
    message: str,
    show: list[str] | None = None,
) -> Outcome:
    """Turn a boolean mask of failing records into a Check and, if any fail, a Finding."""
    frame = study.frames[dataset.name]
    bad = bad.fillna(False).astype(bool)
    count = int(bad.sum())
    check = Check(rule_id, dataset.name, tuple(variables), description, "fail" if count else "pass")
    if not count:
        return Outcome(check)
    cols = list(dict.fromkeys(index_columns(dataset) + (show or variables)))
    cols = [c for c in cols if c in frame.columns]
    examples = frame.loc[bad, cols].head(study.max_examples).to_dict("records")
    return Outcome(
        check,
        Finding.of(
            rule_id,
            dataset.name,
            variables,
            count,
            f"{rule(rule_id).title}: {count} record(s); {message}",
            examples,
        ),
    )


def not_applicable(rule_id: str, dataset: str, description: str, why: str) -> Outcome:
    return Outcome(Check(rule_id, dataset, (), description, "not applicable", "rule", why))


def _dates(values: pd.Series) -> pd.Series:
    """Full dates (YYYY-MM-DD) of ISO 8601 text or datetimes; partial or bad values as NaT."""
    return op.full_dates(values)


def _num(values: pd.Series) -> pd.Series:
    return op.as_number(values)


# --- metadata --------------------------------------------------------------------------------


@register("CF-MD-0001", "CF-MD-0002")
def md_types_labels(study: Study) -> Iterable[Outcome]:
    """Variable type and label against the IG (where the IG lists the variable by name)."""
    # Every dataset's standard variables in one table, stripped in one pass (a merge per
    # dataset cost more than the comparisons).
    joined: dict[str, list[tuple[str, str, str, str, str]]] = {}
    for ds in study.datasets.values():
        ig = study.ig(ds)
        if ig.empty:
            continue
        standard = dict(zip(ig["name"], zip(ig["type"], ig["label"], strict=True), strict=True))
        joined[ds.name] = [
            (v.name, v.type, v.label, *standard[v.name]) for v in ds.variables if v.name in standard
        ]
    rows = [row for items in joined.values() for row in items]
    differs: dict[str, list[bool]] = {}
    for i, col in ((1, "type"), (2, "label")):
        if not rows:
            differs[col] = []
            continue
        ours = pd.Series([r[i] for r in rows]).str.strip()
        theirs = pd.Series([r[i + 2] for r in rows]).str.strip()
        differs[col] = (ours != theirs).tolist()
    at = 0
    for ds in study.datasets.values():
        if ds.name not in joined:
            yield not_applicable(
                "CF-MD-0001", ds.name, "types equal the IG", "no IG variable table for this dataset"
            )
            continue
        items = joined[ds.name]
        for rule_id, col, i in (("CF-MD-0001", "type", 1), ("CF-MD-0002", "label", 2)):
            bad = [r for r, d in zip(items, differs[col][at : at + len(items)], strict=True) if d]
            desc = f"variable {col}s equal the IG ({len(items)} standard variables)"
            check = Check(rule_id, ds.name, (), desc, "fail" if bad else "pass")
            yield Outcome(check)
            for row in bad:  # one finding per differing variable
                name, ours, theirs = row[0], row[i], row[i + 2]
                yield Outcome(
                    check,
                    Finding.of(
                        rule_id,
                        ds.name,
                        [name],
                        1,
                        f"{rule(rule_id).title}: {name} is {ours!r}, the IG says {theirs!r}",
                        [{"variable": name, col: ours, f"IG {col}": theirs}],
                    ),
                )
        at += len(items)


@register("CF-MD-0003")
def md_frame_types(study: Study) -> Iterable[Outcome]:
    """The frame's storage agrees with each variable's declared type (Num holds numbers)."""
    for ds in study.datasets.values():
        frame = ds.frame
        wrong = []
        for var in ds.variables:
            col = frame[var.name]
            numeric = (
                pd.api.types.is_numeric_dtype(col)
                or pd.api.types.is_datetime64_any_dtype(col)
                or pd.api.types.is_timedelta64_dtype(col)
            )
            if numeric == var.is_char and not (var.is_char and col.isna().all()):
                wrong.append((var.name, var.type, str(col.dtype)))
        desc = f"frame types match the {len(ds.variables)} variables' types"
        check = Check("CF-MD-0003", ds.name, (), desc, "fail" if wrong else "pass")
        yield Outcome(check)
        for name, vtype, dtype in wrong:
            yield Outcome(
                check,
                Finding.of(
                    "CF-MD-0003",
                    ds.name,
                    [name],
                    1,
                    f"{rule('CF-MD-0003').title}: {name} is {vtype} but the frame holds {dtype}",
                    [{"variable": name, "type": vtype, "dtype": dtype}],
                ),
            )


# --- SDTM cross-dataset ----------------------------------------------------------------------


@register("CF-SD-0001")
def sd_subject_in_dm(study: Study) -> Iterable[Outcome]:
    dm = study.get("DM")
    for ds in study.sdtm():
        if ds.name == "DM" or "USUBJID" not in ds.variable_names:
            continue
        if dm is None:
            yield not_applicable("CF-SD-0001", ds.name, "USUBJID in DM", "DM is absent")
            continue
        f = study.frames[ds.name]
        bad = f["USUBJID"].notna() & ~op.isin(f["USUBJID"], dm["USUBJID"].dropna())
        yield outcome(
            study,
            "CF-SD-0001",
            ds,
            ["USUBJID"],
            "every USUBJID in DM",
            bad,
            "USUBJID not found in DM",
        )


@register("CF-SD-0002", "CF-SD-0003", "CF-SD-0004", "CF-SD-0005")
def sd_arms(study: Study) -> Iterable[Outcome]:
    dm_ds = study.datasets.get("DM")
    if dm_ds is None:
        return
    dm = study.frames["DM"]
    ta = study.get("TA")
    for rule_id, var in (("CF-SD-0002", "ARMCD"), ("CF-SD-0003", "ACTARMCD")):
        if var not in dm.columns:
            continue
        if ta is None or "ARMCD" not in ta.columns:
            yield not_applicable(rule_id, "DM", f"{var} in TA", "TA is absent")
            continue
        codes = dm[var]
        exempt = as_string(codes, "string").str.upper().isin(NON_ARM_CODES)  # pilot: "Scrnfail"
        bad = codes.notna() & ~exempt & ~codes.isin(ta["ARMCD"].dropna())
        yield outcome(
            study,
            rule_id,
            dm_ds,
            [var],
            f"{var} is a TA arm",
            bad,
            f"{var} value not among TA.ARMCD",
        )
    if {"ARMCD", "ACTARMCD"} <= set(dm.columns):
        no_arm = dm["ARMCD"].isna() | dm["ACTARMCD"].isna()
        if "ARMNRS" in dm.columns:
            bad = no_arm != dm["ARMNRS"].notna()
            desc, why = "ARMNRS populated exactly when an arm code is null", "ARMNRS mismatch"
            show = ["ARMCD", "ACTARMCD", "ARMNRS"]
        else:
            bad = no_arm
            desc, why = "ARMCD/ACTARMCD populated (no ARMNRS variable)", "null arm code"
            show = ["ARMCD", "ACTARMCD"]
        yield outcome(study, "CF-SD-0004", dm_ds, show, desc, bad, why)
        differ = dm["ARMCD"].notna() & dm["ACTARMCD"].notna() & (dm["ARMCD"] != dm["ACTARMCD"])
        yield outcome(
            study,
            "CF-SD-0005",
            dm_ds,
            ["ARMCD", "ACTARMCD"],
            "ACTARMCD equals ARMCD",
            differ,
            "actual arm differs from planned arm",
        )


@register("CF-SD-0006", "CF-SD-0007")
def sd_epoch(study: Study) -> Iterable[Outcome]:
    ta, se = study.get("TA"), study.get("SE")
    for ds in study.sdtm():
        if "EPOCH" not in ds.variable_names or ds.name in ("TA", "SE", "TE", "TV"):
            continue
        f = study.frames[ds.name]
        if ta is None:
            yield not_applicable("CF-SD-0006", ds.name, "EPOCH in TA", "TA is absent")
        else:
            bad = f["EPOCH"].notna() & ~op.isin(f["EPOCH"], ta["EPOCH"].dropna())
            yield outcome(
                study,
                "CF-SD-0006",
                ds,
                ["EPOCH"],
                "EPOCH is a TA epoch",
                bad,
                "EPOCH not among TA.EPOCH",
            )
        if se is None:
            yield not_applicable("CF-SD-0007", ds.name, "EPOCH in subject's SE", "SE is absent")
        elif "USUBJID" in f.columns:
            # An EPOCH outside the trial design is CF-SD-0006's finding; not reported twice.
            known = op.isin(f["EPOCH"], ta["EPOCH"].dropna()) if ta is not None else True
            pairs = se[["USUBJID", "EPOCH"]].dropna()
            have = op.keys_in([f["USUBJID"], f["EPOCH"]], [pairs["USUBJID"], pairs["EPOCH"]])
            bad = pd.Series(~have, index=f.index) & f["EPOCH"].notna() & known
            yield outcome(
                study,
                "CF-SD-0007",
                ds,
                ["EPOCH"],
                "EPOCH among the subject's SE",
                bad,
                "subject has no SE element in this EPOCH",
                ["EPOCH"],
            )


def _visit_keys(frame: pd.DataFrame, cols: list[str]) -> list[pd.Series]:
    """Visit key columns, VISITNUM as a number (`op.keys_in` rounds it to 6 decimals)."""
    return [_number(frame[c]) if c == "VISITNUM" else frame[c] for c in cols]


def _number(values: pd.Series) -> pd.Series:
    """`_num(values)`, a number column as it is (no float copy of its records)."""
    return values if op.is_number(values) else _num(values)


@register("CF-SD-0008", "CF-SD-0009")
def sd_visits(study: Study) -> Iterable[Outcome]:
    sv, tv = study.get("SV"), study.get("TV")
    for ds in study.sdtm():
        names = ds.variable_names
        if ds.name in ("SV", "TV") or not {"USUBJID", "VISITNUM"} <= set(names):
            continue
        if sv is None:
            yield not_applicable("CF-SD-0008", ds.name, "visits in SV", "SV is absent")
            continue
        cols = ["USUBJID", "VISITNUM"] + (["VISIT"] if "VISIT" in names and "VISIT" in sv else [])
        f = study.frames[ds.name]
        visits = _visit_keys(sv.dropna(subset=["VISITNUM"]), cols)
        have = op.keys_in(_visit_keys(f, cols), visits, decimals=6)
        bad = pd.Series(~have, index=f.index) & f["VISITNUM"].notna()
        yield outcome(
            study,
            "CF-SD-0008",
            ds,
            cols,
            f"{'/'.join(cols)} in SV",
            bad,
            "visit not recorded in SV for this subject",
        )
    if sv is not None and "SV" in study.datasets:
        if tv is None:
            yield not_applicable("CF-SD-0009", "SV", "planned visits in TV", "TV is absent")
            return
        cols = ["VISITNUM"] + (["VISIT"] if "VISIT" in sv and "VISIT" in tv else [])
        num = _num(sv["VISITNUM"])
        planned = num.notna() & (num == np.floor(num))
        found = op.keys_in(_visit_keys(sv, cols), _visit_keys(tv, cols), decimals=6)
        bad = pd.Series(~found, index=sv.index)
        yield outcome(
            study,
            "CF-SD-0009",
            study.datasets["SV"],
            cols,
            "scheduled SV visits are TV visits",
            bad & planned,
            "integer VISITNUM not a TV visit",
        )


@register("CF-SD-0010")
def sd_ae_outcome(study: Study) -> Iterable[Outcome]:
    ae_ds = study.datasets.get("AE")
    if ae_ds is None or not {"AEOUT", "AEENDTC"} <= set(ae_ds.variable_names):
        return
    ae = study.frames["AE"]
    bad = ae["AEOUT"].isin(rule("CF-SD-0010").params["ongoing"]) & ae["AEENDTC"].notna()
    yield outcome(
        study,
        "CF-SD-0010",
        ae_ds,
        ["AEENDTC", "AEOUT"],
        "AEENDTC null when AEOUT is NOT RECOVERED/NOT RESOLVED",
        bad,
        "end date on an ongoing event",
    )


@register("CF-SD-0011", "CF-SD-0012")
def sd_supp_parents(study: Study) -> Iterable[Outcome]:
    by_domain: dict[str, list[str]] = {}
    for ds in study.sdtm():
        if not ds.name.startswith("SUPP"):
            by_domain.setdefault(sdtm_domain(ds), []).append(ds.name)
    for ds in study.sdtm():
        if not ds.name.startswith("SUPP") or "RDOMAIN" not in ds.variable_names:
            continue
        f = study.frames[ds.name]
        bad = f["RDOMAIN"].notna() & ~f["RDOMAIN"].isin(list(by_domain))
        yield outcome(
            study,
            "CF-SD-0011",
            ds,
            ["RDOMAIN"],
            "RDOMAIN is a study dataset",
            bad,
            "RDOMAIN names no dataset of the study",
        )
        parent_name = ds.name[4:]
        if parent_name in study.datasets:
            parents = [parent_name]
        elif len(parent_name) > 2:
            yield not_applicable(
                "CF-SD-0012",
                ds.name,
                "SUPP-- records point at parent records",
                f"parent dataset {parent_name} is absent",
            )
            continue
        else:
            parents = by_domain.get(parent_name, [])
        found = pd.Series(False, index=f.index)
        idvar = f["IDVAR"] if "IDVAR" in f.columns else pd.Series(pd.NA, index=f.index)
        for name in parents:
            pf = study.frames[name]
            subj = idvar.isna()
            found |= subj & op.isin(f["USUBJID"], pf["USUBJID"])
            for var in idvar.dropna().unique():  # one join per IDVAR (a handful), vectorised
                if var not in pf.columns:
                    continue
                rows = idvar == var
                if pd.api.types.is_numeric_dtype(pf[var]):
                    left, right = _num(f["IDVARVAL"]).round(6), pf[var].astype("float64").round(6)
                else:
                    left = as_string(f["IDVARVAL"], "string").str.strip()
                    right = as_string(pf[var], "string").str.strip()
                keys = pd.MultiIndex.from_arrays(
                    [pf["USUBJID"].astype("object"), right.astype("object")]
                )
                mine = pd.MultiIndex.from_arrays(
                    [f["USUBJID"].astype("object"), left.astype("object")]
                )
                found |= rows & pd.Series(mine.isin(keys), index=f.index)
        yield outcome(
            study,
            "CF-SD-0012",
            ds,
            ["RDOMAIN", "IDVAR", "IDVARVAL"],
            "SUPP-- records point at parent records",
            ~found,
            "no parent record with this USUBJID/IDVAR/IDVARVAL",
            ["RDOMAIN", "IDVAR", "IDVARVAL"],
        )


@register("CF-SD-0013")
def sd_study_day(study: Study) -> Iterable[Outcome]:
    dm = study.get("DM")
    for ds in study.sdtm():
        names = ds.variable_names
        pairs = []
        for dy in [n for n in names if n.endswith("DY") and len(n) >= 4]:
            dtc = dy[:-2] + "DTC"
            if dtc in names and not ds.variable(dy).is_char:
                pairs.append((dy, dtc))
        if not pairs or "USUBJID" not in names:
            continue
        if dm is None or "RFSTDTC" not in dm.columns:
            yield not_applicable(
                "CF-SD-0013", ds.name, "--DY from --DTC and RFSTDTC", "DM.RFSTDTC is absent"
            )
            continue
        f = study.frames[ds.name]
        by_subject = _dates(dm["RFSTDTC"]).set_axis(dm["USUBJID"]).groupby(level=0).first()
        # numpy datetimes whatever the columns' kind (a categorical USUBJID maps to Arrow
        # timestamps, whose arithmetic differs)
        rf = plain(op.map_values(f["USUBJID"], by_subject)).astype("datetime64[us]")
        for dy, dtc in pairs:
            days = (_dates(f[dtc]).astype("datetime64[us]") - rf).dt.days.astype("float64")
            expected = days + (days >= 0)
            actual = _num(f[dy])
            bad = actual.notna() & expected.notna() & (actual != expected)
            yield outcome(
                study,
                "CF-SD-0013",
                ds,
                [dy, dtc],
                f"{dy} from {dtc} and RFSTDTC",
                bad,
                f"{dy} is not {dtc} - RFSTDTC (+1 on/after, no day 0)",
            )


# --- ADaM cross-dataset ----------------------------------------------------------------------


@register("CF-AD-0001", "CF-AD-0002", "CF-AD-0003")
def ad_subjects(study: Study) -> Iterable[Outcome]:
    adsl_ds, dm = study.datasets.get("ADSL"), study.get("DM")
    if adsl_ds is not None:
        adsl = study.frames["ADSL"]
        if dm is None:
            yield not_applicable("CF-AD-0001", "ADSL", "ADSL subjects in DM", "DM is absent")
        else:
            bad = ~op.isin(adsl["USUBJID"], dm["USUBJID"])
            yield outcome(
                study,
                "CF-AD-0001",
                adsl_ds,
                ["USUBJID"],
                "ADSL subjects in DM",
                bad,
                "USUBJID not in DM",
            )
            missing = ~op.isin(dm["USUBJID"], adsl["USUBJID"])
            yield outcome(
                study,
                "CF-AD-0002",
                study.datasets["DM"],
                ["USUBJID"],
                "DM subjects in ADSL",
                missing,
                "DM subject absent from ADSL",
            )
    for ds in study.adam():
        if ds.name == "ADSL" or "USUBJID" not in ds.variable_names:
            continue
        if adsl_ds is None:
            yield not_applicable("CF-AD-0003", ds.name, "subjects in ADSL", "ADSL is absent")
            continue
        f = study.frames[ds.name]
        bad = f["USUBJID"].notna() & ~op.isin(f["USUBJID"], study.frames["ADSL"]["USUBJID"])
        yield outcome(
            study, "CF-AD-0003", ds, ["USUBJID"], "subjects in ADSL", bad, "USUBJID not in ADSL"
        )


@register("CF-AD-0004")
def ad_base(study: Study) -> Iterable[Outcome]:
    for ds in study.adam():
        if not {"USUBJID", "PARAMCD", "AVAL", "BASE", "ABLFL"} <= set(ds.variable_names):
            continue
        f = study.frames[ds.name]
        by = ["USUBJID", "PARAMCD"] + (["BASETYPE"] if "BASETYPE" in f.columns else [])
        base_rec = f.loc[f["ABLFL"] == "Y", [*by, "AVAL"]].drop_duplicates(by)
        merged = f[by].merge(base_rec.rename(columns={"AVAL": "_BL"}), on=by, how="left")
        bl = merged["_BL"].set_axis(f.index).astype("float64").round(9)
        base = _num(f["BASE"]).round(9)
        bad = base.notna() & (bl.isna() | (base != bl))
        yield outcome(
            study,
            "CF-AD-0004",
            ds,
            ["BASE"],
            "BASE = AVAL of the ABLFL record",
            bad,
            "BASE disagrees with its baseline record (or has none)",
            ["PARAMCD", "BASE", "AVAL", "ABLFL"],
        )


@register("CF-AD-0005", "CF-AD-0006")
def ad_trtemfl(study: Study) -> Iterable[Outcome]:
    adsl = study.get("ADSL")
    for ds in study.adam():
        names = set(ds.variable_names)
        if not {"TRTEMFL", "ASTDT", "USUBJID"} <= names:
            continue
        f = study.frames[ds.name]
        dates = {}
        for var in ("TRTSDT", "TRTEDT"):
            if var in f.columns:
                dates[var] = _dates(f[var])
            elif adsl is not None and var in adsl.columns:
                # first record per subject: a duplicated ADSL subject is CF-AD-0007's finding
                by_subject = _dates(adsl[var]).set_axis(adsl["USUBJID"]).groupby(level=0).first()
                dates[var] = plain(op.map_values(f["USUBJID"], by_subject))
        if "TRTSDT" not in dates:
            yield not_applicable(
                "CF-AD-0005",
                ds.name,
                "TRTEMFL vs ASTDT >= TRTSDT",
                "TRTSDT is in neither the dataset nor ADSL",
            )
            continue
        ast, start = _dates(f["ASTDT"]), dates["TRTSDT"]
        flagged = f["TRTEMFL"] == "Y"
        bad = flagged & (start.isna() | (ast.notna() & (ast < start)))
        yield outcome(
            study,
            "CF-AD-0005",
            ds,
            ["TRTEMFL", "ASTDT", "TRTSDT"],
            "TRTEMFL='Y' only when ASTDT >= TRTSDT",
            bad,
            "flagged treatment-emergent before treatment start or untreated",
            ["TRTEMFL", "ASTDT"],
        )
        if "TRTEDT" in dates:
            end = dates["TRTEDT"]
            during = ast.notna() & start.notna() & end.notna() & (ast >= start) & (ast <= end)
            bad = during & ~flagged.fillna(False)
            yield outcome(
                study,
                "CF-AD-0006",
                ds,
                ["TRTEMFL", "ASTDT"],
                "records starting on treatment are TRTEMFL='Y'",
                bad,
                "started between TRTSDT and TRTEDT but not flagged",
            )


def rule_set() -> list[CheckFn]:
    """Every registered check function once, in registration order (SDTM, then ADaM)."""
    import cdiscforge.validation.rules_adam
    import cdiscforge.validation.rules_sdtm  # noqa: F401  (registers its checks)

    return list(dict.fromkeys(CHECKS.values()))


def run_rules(study: Study) -> tuple[list[Finding], list[Check]]:
    """Run every registered check over the study: the findings and the checks made."""
    findings: list[Finding] = []
    checks: dict[tuple, Check] = {}
    with op.shared_codes():  # a column read by many rules is factorized once
        for rule_fn in rule_set():
            for out in rule_fn(study):
                checks[out.check.sort_key()] = out.check
                if out.finding is not None:
                    findings.append(out.finding)
    return findings, list(checks.values())

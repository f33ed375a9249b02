"""SDTM rules: variable metadata against the IG and the SDTM model, record consistency, and
cross-dataset / trial-level rules. Each check is one small vectorised function registered
for its catalogue id(s) (validation/rules.yaml holds severity, message, fix and parameters).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import numpy as np
import pandas as pd

from cdiscforge.model import Dataset, char_max_bytes
from cdiscforge.standards import _data_file, sdtmig_datasets
from cdiscforge.validation import operations as op
from cdiscforge.validation.catalogue import params, rule
from cdiscforge.validation.findings import Check, Finding
from cdiscforge.validation.rules import Outcome, Study, not_applicable, outcome, register
from cdiscforge.validation.suites import sdtm_domain

NON_ARM = frozenset({"SCRNFAIL", "NOTASSGN", "NOTTRT", "UNPLAN"})
# What identifies "one test" for baseline flags: the test at one location, method, time point.
TEST_IDENTITY = ("CAT", "SCAT", "TESTCD", "SPEC", "LOC", "LAT", "DIR", "METHOD", "POS", "TPTNUM")
TRIAL_DESIGN = frozenset({"TA", "TE", "TV", "TI", "TS", "TD", "TM"})


def _standard_domains(study: Study) -> Iterable[tuple[Dataset, str, pd.DataFrame]]:
    """SDTM datasets of an IG domain (not SUPP--/RELREC/custom) with their domain and frame."""
    for ds in study.sdtm():
        domain = sdtm_domain(ds)
        if domain.startswith("SUPP") or study.ig(ds).empty:
            continue
        yield ds, domain, study.frames[ds.name]


def _per_variable(
    study: Study, rule_id: str, ds: Dataset, items: list[tuple[str, str, dict]], desc: str
) -> Iterable[Outcome]:
    """One check for the dataset and one finding per listed (variable, message, example)."""
    check = Check(rule_id, ds.name, (), desc, "fail" if items else "pass")
    yield Outcome(check)
    for var, message, example in items:
        yield Outcome(
            check,
            Finding.of(rule_id, ds.name, [var], 1, f"{rule(rule_id).title}: {message}", [example]),
        )


# --- dataset / variable level ----------------------------------------------------------------


@cache
def _model_variables() -> pd.DataFrame:
    """SDTM v2.0 model variables: class, dataset (special purpose / trial design), name."""
    with _data_file("SDTM_v2.0_Variables.csv").open("r", encoding="utf-8-sig") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {"klass": raw["Class"], "dataset": raw["Dataset Name"], "name": raw["Variable Name"]}
    )


def _model_names(domain: str) -> frozenset[str]:
    """Variables the SDTM model allows in `domain`: its class's variables with the prefix set."""
    table = sdtmig_datasets()
    klass = table.loc[table["name"] == domain, "klass"]
    model = _model_variables()
    if klass.empty:
        return frozenset()
    k = klass.iloc[0].upper()
    general = {"EVENTS": "Events", "FINDINGS": "Findings", "INTERVENTIONS": "Interventions"}
    if k in general or k == "FINDINGS ABOUT":
        classes = ["General Observations", general.get(k, "Findings")]
        if k == "FINDINGS ABOUT":
            classes.append("Findings About")
        names = model.loc[model["klass"].isin(classes), "name"]
    else:  # special purpose: the dataset's own variables plus the general timing variables
        own = model["dataset"] == domain
        timing = (model["klass"] == "General Observations") & (k == "SPECIAL-PURPOSE")
        names = model.loc[own | timing, "name"]
    return frozenset(n.replace("--", domain) for n in names)


@register("CF-MD-0004", "CF-MD-0005")
def md_model_variables(study: Study) -> Iterable[Outcome]:
    """Variables outside the IG's domain table: model-permissible (notice) or not in the model."""
    for ds, domain, _ in _standard_domains(study):
        ig = set(study.ig(ds)["name"])
        model = _model_names(domain)
        extra = [v for v in ds.variable_names if v not in ig]
        permissible = [
            (v, f"{v} is not in the SDTMIG {domain} table (model permits it)", {"variable": v})
            for v in extra
            if v in model
        ]
        foreign = [
            (
                v,
                f"{v} is neither in the SDTMIG {domain} table nor in the SDTM model",
                {"variable": v},
            )
            for v in extra
            if v not in model
        ]
        yield from _per_variable(
            study, "CF-MD-0004", ds, permissible, "non-IG variables are model-permissible"
        )
        yield from _per_variable(
            study, "CF-MD-0005", ds, foreign, "variables are in the SDTM model"
        )


@register("CF-MD-0006")
def md_variable_order(study: Study) -> Iterable[Outcome]:
    """IG variables appear in the IG's order (a variable after one the IG lists later is out)."""
    for ds, _, _ in _standard_domains(study):
        ig = study.ig(ds)
        order = ig["order"].astype(int).to_dict() if "order" in ig else {}
        ranks = pd.Series([order.get(v) for v in ds.variable_names], index=ds.variable_names)
        ranks = ranks.dropna().astype(int)
        late = ranks < ranks.cummax()
        wrong = list(ranks.index[late.to_numpy()])
        expected = list(ranks.sort_values(kind="stable").index)
        items = []
        if wrong:
            items.append(
                (
                    wrong[0],
                    f"{len(wrong)} variable(s) out of IG order ({', '.join(wrong)}); IG order: "
                    f"{', '.join(expected)}",
                    {"out_of_order": ", ".join(wrong), "ig_order": ", ".join(expected)},
                )
            )
        yield from _per_variable(study, "CF-MD-0006", ds, items, "variables in IG order")


def _lengths(ds: Dataset, frame: pd.DataFrame) -> dict[str, int]:
    """Character variables' lengths (declared, else the longest value); all-null ones left out."""
    out = {}
    for var in ds.variables:
        column = frame[var.name]
        if var.is_char and isinstance(column.dtype, pd.CategoricalDtype):
            column = pd.Series(op.codes_of(column)[1].array)  # its distinct values (shared)
        if not var.is_char or column.isna().all():
            continue
        if var.length:
            out[var.name] = int(var.length)
        else:
            # UTF-8 byte lengths in Arrow (a per-value str.encode was 9% of a 1,000-subject
            # build: 10.8M Python calls), a categorical's per used category: the one measure
            # the writers fit lengths with (no per-record string column, no de-duplication).
            out[var.name] = max(char_max_bytes(column), 1)
    return out


@register("CF-MD-0007")
def md_length_consistency(study: Study) -> Iterable[Outcome]:
    """One length per character variable across the datasets of a standard (SDTM, ADaM)."""
    # FDA TCG 4.1.5.1: the same length across all datasets, except SUPP-- (each its own).
    sdtm = [d for d in study.sdtm() if not d.name.startswith("SUPP")]
    for group in (sdtm, study.adam()):
        rows = [
            (ds.name, v, n) for ds in group for v, n in _lengths(ds, study.frames[ds.name]).items()
        ]
        if not rows:
            continue
        table = pd.DataFrame(rows, columns=["dataset", "name", "length"])
        longest = table.groupby("name")["length"].transform("max")
        table["longest"] = longest
        for ds in group:
            mine = table[(table["dataset"] == ds.name) & (table["length"] < table["longest"])]
            items = []
            for row in mine.itertuples(index=False):  # per differing variable, not per record
                others = table[(table["name"] == row.name) & (table["length"] == row.longest)]
                where = ", ".join(others["dataset"].head(3))
                items.append(
                    (
                        row.name,
                        f"{row.name} is {row.length} here but {row.longest} in {where}",
                        {
                            "variable": row.name,
                            "length": row.length,
                            "longest": row.longest,
                            "in": where,
                        },
                    )
                )
            yield from _per_variable(
                study, "CF-MD-0007", ds, items, "character lengths equal those of other datasets"
            )


@register("CF-SD-0014")
def sd_dm_one_per_subject(study: Study) -> Iterable[Outcome]:
    ds = study.datasets.get("DM")
    if ds is None or "USUBJID" not in ds.variable_names:
        return
    dm = study.frames["DM"]
    bad = op.duplicated_by(dm, ["USUBJID"])
    yield outcome(
        study,
        "CF-SD-0014",
        ds,
        ["USUBJID"],
        "one DM record per USUBJID",
        bad,
        "USUBJID appears on more than one DM record",
    )


# --- record consistency ----------------------------------------------------------------------


@register("CF-SD-0015")
def sd_start_after_end(study: Study) -> Iterable[Outcome]:
    for ds, domain, f in _standard_domains(study):
        st, en = f"{domain}STDTC", f"{domain}ENDTC"
        if st in f.columns and en in f.columns:
            yield outcome(
                study,
                "CF-SD-0015",
                ds,
                [st, en],
                f"{st} <= {en}",
                op.iso_after(f[st], f[en]),
                f"{st} later than {en}",
            )


@register("CF-SD-0016")
def sd_end_timepoint(study: Study) -> Iterable[Outcome]:
    for ds, domain, f in _standard_domains(study):
        if domain not in params("CF-SD-0016")["domains"]:
            continue
        ends = [c for c in (f"{domain}ENDTC", f"{domain}ENRF", f"{domain}ENRTPT") if c in f]
        if not ends:
            continue
        bad = ~pd.concat([op.present(f, c) for c in ends], axis=1).any(axis=1)
        yield outcome(
            study,
            "CF-SD-0016",
            ds,
            [ends[0]],
            f"one of {'/'.join(ends)} populated",
            bad,
            f"none of {', '.join(ends)} populated",
            ends,
        )


def _needs_unit(f: pd.DataFrame, domain: str, result: str, rule_id: str) -> pd.Series:
    """Records whose result is a number that needs a unit: each test per distinct result and
    test code (no stripped text column of the records is made)."""
    p = params(rule_id)
    needs = op.per_distinct(lambda v: _unit_result(v, p["exempt_results"]), f[result])
    if f"{domain}TESTCD" in f:
        unitless = p["unitless_tests"]
        needs &= op.per_distinct(lambda t: _not_in(t, unitless), f[f"{domain}TESTCD"])
    return needs


def _unit_result(values: pd.Series, exempt: list[str]) -> pd.Series:
    return op.numeric_text(values) & _not_in(values, exempt)


def _not_in(values: pd.Series, listed: list[str]) -> pd.Series:
    """Not one of `listed` once stripped (missing values are not listed)."""
    return ~op.isin(op.text(values), listed).fillna(False)


@register("CF-SD-0017", "CF-SD-0018")
def sd_result_units(study: Study) -> Iterable[Outcome]:
    for ds, domain, f in _standard_domains(study):
        if domain in params("CF-SD-0017")["exclude_domains"]:
            continue
        orres, orresu = f"{domain}ORRES", f"{domain}ORRESU"
        stresc, stresu = f"{domain}STRESC", f"{domain}STRESU"
        if orres in f and orresu in f:
            bad = _needs_unit(f, domain, orres, "CF-SD-0017") & ~op.present(f, orresu)
            yield outcome(
                study,
                "CF-SD-0017",
                ds,
                [orresu, orres],
                f"{orresu} populated when {orres} is a result",
                bad,
                f"numeric {orres} without {orresu}",
                [f"{domain}TESTCD", orres, orresu],
            )
        if stresc in f and stresu in f:
            bad = _needs_unit(f, domain, stresc, "CF-SD-0018") & ~op.present(f, stresu)
            if orresu in f:  # a record with no unit at all is CF-SD-0017's finding
                bad &= op.present(f, orresu)
            yield outcome(
                study,
                "CF-SD-0018",
                ds,
                [stresu, stresc],
                f"{stresu} populated when {stresc} is a result",
                bad,
                f"numeric {stresc} without {stresu} (original unit given)",
                [f"{domain}TESTCD", stresc, stresu],
            )


def _baseline_flag(domain: str, f: pd.DataFrame) -> str | None:
    for name in (f"{domain}BLFL", f"{domain}LOBXFL"):
        if name in f.columns and op.present(f, name).any():
            return name
    for name in (f"{domain}BLFL", f"{domain}LOBXFL"):
        if name in f.columns:
            return name
    return None


def _assigned(dm: pd.DataFrame) -> pd.Series:
    """DM subjects assigned to an arm (screen failures and not-assigned excluded)."""
    arm = op.text(dm["ARMCD"]).str.upper() if "ARMCD" in dm else pd.Series(pd.NA, index=dm.index)
    return arm.notna() & ~arm.isin(NON_ARM).fillna(False)


@register("CF-SD-0019", "CF-SD-0020", "CF-SD-0021")
def sd_baseline(study: Study) -> Iterable[Outcome]:
    dm_ds = study.datasets.get("DM")
    by_domain: dict[str, list[tuple[Dataset, str]]] = {}
    for ds, domain, f in _standard_domains(study):
        flag = _baseline_flag(domain, f)
        if flag and "USUBJID" in f.columns:
            by_domain.setdefault(domain, []).append((ds, flag))
    for domain, items in sorted(by_domain.items()):
        for ds, flag in items:
            f = study.frames[ds.name]
            y = op.is_yes(f[flag])
            stresc = f"{domain}STRESC"
            if stresc in f:
                yield outcome(
                    study,
                    "CF-SD-0020",
                    ds,
                    [stresc, flag],
                    f"{stresc} populated on baseline records",
                    y & ~op.present(f, stresc),
                    f"{flag}='Y' with null {stresc}",
                )
            by = ["USUBJID"] + [f"{domain}{c}" for c in TEST_IDENTITY if f"{domain}{c}" in f]
            yield outcome(
                study,
                "CF-SD-0021",
                ds,
                [flag],
                f"one {flag} per {'/'.join(by)}",
                op.flagged_more_than_once(f, by, flag),
                f"more than one {flag}='Y' for the same {'/'.join(by)}",
                by,
            )
        if dm_ds is None:
            continue
        dm = study.frames["DM"]
        with_bl = pd.concat(
            [
                study.frames[ds.name].loc[op.is_yes(study.frames[ds.name][flag]), "USUBJID"]
                for ds, flag in items
            ]
        )
        # distinct subjects only: isin on pyarrow strings walks its values in Python
        subjects = op.plain(with_bl.dropna().drop_duplicates()).astype("object")
        bad = _assigned(dm) & ~dm["USUBJID"].isin(subjects)
        found = outcome(
            study,
            "CF-SD-0019",
            dm_ds,
            ["USUBJID"],
            f"every assigned subject has a {domain} baseline",
            bad,
            f"no baseline result in {domain} for subject",
            ["ARMCD", "ACTARMCD"],
        )
        if found.finding is not None:  # name the domain, as P21 does ("in LB for subject")
            msg = found.finding.message.replace(
                rule("CF-SD-0019").title, f"No baseline result in {domain} for subject"
            )
            found.finding = Finding.of(
                "CF-SD-0019", "DM", ["USUBJID"], found.finding.count, msg, found.finding.examples
            )
            found.check = Check(
                "CF-SD-0019", "DM", ("USUBJID", domain), found.check.description, "fail"
            )
        else:
            found.check = Check(
                "CF-SD-0019", "DM", ("USUBJID", domain), found.check.description, "pass"
            )
        yield found


@register("CF-SD-0022", "CF-SD-0023")
def sd_visit_names(study: Study) -> Iterable[Outcome]:
    for ds in study.sdtm():
        f = study.frames[ds.name]
        if not {"VISITNUM", "VISIT"} <= set(f.columns):
            continue
        yield outcome(
            study,
            "CF-SD-0022",
            ds,
            ["VISIT", "VISITNUM"],
            "one VISIT per VISITNUM",
            op.inconsistent_within(f, ["VISITNUM"], "VISIT"),
            "VISITNUM has more than one VISIT name",
        )
        yield outcome(
            study,
            "CF-SD-0023",
            ds,
            ["VISITNUM", "VISIT"],
            "one VISITNUM per VISIT",
            op.inconsistent_within(f, ["VISIT"], "VISITNUM"),
            "VISIT has more than one VISITNUM",
        )


@register("CF-SD-0024")
def sd_epoch_missing(study: Study) -> Iterable[Outcome]:
    se = study.get("SE")
    for ds, domain, f in _standard_domains(study):
        if "EPOCH" not in f.columns or domain in TRIAL_DESIGN or "USUBJID" not in f.columns:
            continue
        if domain in ("SE", "DM"):
            continue
        date = next((c for c in (f"{domain}DTC", f"{domain}STDTC") if c in f.columns), None)
        if date is None:
            continue
        if se is None or "SESTDTC" not in se:
            yield not_applicable("CF-SD-0024", ds.name, "EPOCH on dated records", "SE is absent")
            continue
        first = op.full_dates(se["SESTDTC"]).groupby(se["USUBJID"]).min()
        when = op.full_dates(f[date])
        start = op.plain(op.map_values(f["USUBJID"], first))
        bad = ~op.present(f, "EPOCH") & when.notna() & (when >= start)
        yield outcome(
            study,
            "CF-SD-0024",
            ds,
            ["EPOCH"],
            f"EPOCH populated when {date} is",
            bad,
            "null EPOCH on a record dated within the subject's SE",
            [date],
        )


# --- cross-dataset / trial level ---------------------------------------------------------------


@register("CF-SD-0025")
def sd_screen_failures_in_ie(study: Study) -> Iterable[Outcome]:
    dm_ds = study.datasets.get("DM")
    if dm_ds is None:
        return
    dm = study.frames["DM"]
    marks = set(params("CF-SD-0025")["screen_failure"])
    sf = pd.Series(False, index=dm.index)
    for col in ("ARMCD", "ARMNRS", "ACTARMCD"):
        if col in dm.columns:
            sf |= op.text(dm[col]).str.upper().isin(marks).fillna(False)
    ie = study.get("IE")
    have = ie["USUBJID"].dropna() if ie is not None else pd.Series([], dtype=object)
    why = "no IE record" + ("" if ie is not None else " (IE dataset absent)")
    yield outcome(
        study,
        "CF-SD-0025",
        dm_ds,
        ["USUBJID"],
        "screen failures have IE records",
        sf & ~dm["USUBJID"].isin(have),
        why,
        [c for c in ("ARMCD", "ARMNRS") if c in dm.columns],
    )


@register("CF-SD-0026", "CF-SD-0027")
def sd_trial_summary(study: Study) -> Iterable[Outcome]:
    ts_ds = study.datasets.get("TS")
    if ts_ds is None:
        yield not_applicable("CF-SD-0026", "TS", "FDA-required TS parameters", "TS is absent")
        yield not_applicable("CF-SD-0027", "TS", "TSVAL or TSVALNF populated", "TS is absent")
        return
    ts = study.frames["TS"]
    p = params("CF-SD-0026")
    codes = op.text(ts["TSPARMCD"])
    start = op.text(ts.loc[codes == "SSTDTC", "TSVAL"]).dropna()
    if len(start) and start.min()[:10] < p["from_sstdtc"]:
        yield not_applicable(
            "CF-SD-0026",
            "TS",
            "FDA-required TS parameters",
            f"study started {start.min()} before {p['from_sstdtc']} (FDA TCG TS requirement)",
        )
    else:
        missing = [c for c in p["required"] if c not in set(codes.dropna())]
        check = Check(
            "CF-SD-0026",
            "TS",
            ("TSPARMCD",),
            f"{len(p['required'])} FDA-required TS parameters present",
            "fail" if missing else "pass",
        )
        yield Outcome(check)
        if missing:
            yield Outcome(
                check,
                Finding.of(
                    "CF-SD-0026",
                    "TS",
                    ["TSPARMCD"],
                    len(missing),
                    f"{rule('CF-SD-0026').title}: {len(missing)} missing: {', '.join(missing)}",
                    [{"TSPARMCD": c} for c in missing[: study.max_examples]],
                ),
            )
    if "TSVAL" in ts.columns:
        bad = ~op.present(ts, "TSVAL") & ~op.present(ts, "TSVALNF")
        yield outcome(
            study,
            "CF-SD-0027",
            ts_ds,
            ["TSVAL", "TSVALNF"],
            "TSVAL or TSVALNF populated",
            bad,
            "neither TSVAL nor TSVALNF",
            ["TSPARMCD", "TSVAL", "TSVALNF"],
        )


@register("CF-SD-0028")
def sd_elements(study: Study) -> Iterable[Outcome]:
    te = study.get("TE")
    for name in ("SE", "TA"):
        ds = study.datasets.get(name)
        if ds is None or "ETCD" not in ds.variable_names:
            continue
        if te is None:
            yield not_applicable("CF-SD-0028", name, "ETCD in TE", "TE is absent")
            continue
        f = study.frames[name]
        etcd = op.text(f["ETCD"])
        bad = etcd.notna() & (etcd != "UNPLAN") & ~etcd.isin(op.text(te["ETCD"]).dropna())
        yield outcome(
            study, "CF-SD-0028", ds, ["ETCD"], "ETCD is a TE element", bad, "ETCD not among TE.ETCD"
        )


@register("CF-SD-0029", "CF-SD-0030", "CF-SD-0031")
def sd_supp_qualifiers(study: Study) -> Iterable[Outcome]:
    for ds in study.sdtm():
        if not ds.name.startswith("SUPP") or "QNAM" not in ds.variable_names:
            continue
        f = study.frames[ds.name]
        if "QLABEL" in f.columns:
            yield outcome(
                study,
                "CF-SD-0029",
                ds,
                ["QLABEL", "QNAM"],
                "one QLABEL per QNAM",
                op.inconsistent_within(f, ["QNAM"], "QLABEL"),
                "QNAM has more than one QLABEL",
                ["QNAM", "QLABEL"],
            )
        qnam = op.text(f["QNAM"])
        bad = qnam.notna() & ~qnam.str.match(r"^[A-Za-z_][A-Za-z0-9_]{0,7}$").fillna(False)
        yield outcome(
            study,
            "CF-SD-0030",
            ds,
            ["QNAM"],
            "QNAM is a valid name",
            bad,
            "QNAM longer than 8, or not letters/digits/underscore",
        )
        keys = [
            c
            for c in ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM")
            if c in f.columns
        ]
        yield outcome(
            study,
            "CF-SD-0031",
            ds,
            ["QNAM"],
            f"{'+'.join(keys)} unique",
            op.duplicated_by(f, keys),
            "same qualifier twice for one parent",
            ["IDVAR", "IDVARVAL", "QNAM"],
        )


@register("CF-SD-0032")
def sd_ae_treatment_emergent(study: Study) -> Iterable[Outcome]:
    ae_ds = study.datasets.get("AE")
    if ae_ds is None:
        return
    ae = study.frames["AE"]
    if "AETRTEM" in ae.columns:
        bad = ~op.present(ae, "AETRTEM")
    else:
        bad = pd.Series(True, index=ae.index)
        supp = study.get("SUPPAE")
        if supp is not None and {"QNAM", "IDVAR", "IDVARVAL"} <= set(supp.columns):
            te = supp[(op.text(supp["QNAM"]) == "AETRTEM").fillna(False)]
            seq = te[(op.text(te["IDVAR"]) == "AESEQ").fillna(False)]
            right = pd.DataFrame(
                {"USUBJID": seq["USUBJID"], "AESEQ": op.as_number(seq["IDVARVAL"])}
            )
            if "AESEQ" in ae.columns and len(right):
                left = pd.DataFrame({"USUBJID": ae["USUBJID"], "AESEQ": op.as_number(ae["AESEQ"])})
                bad = op.not_in(left, ["USUBJID", "AESEQ"], right, ["USUBJID", "AESEQ"])
            subject_level = te[~op.present(te, "IDVAR")]["USUBJID"]
            bad &= ~ae["USUBJID"].isin(subject_level)
    yield outcome(
        study,
        "CF-SD-0032",
        ae_ds,
        ["AETRTEM"],
        "treatment-emergent flag for every AE",
        bad,
        "no AETRTEM in AE or SUPPAE for the record",
        ["AETERM"],
    )


@register("CF-SD-0033")
def sd_disposition(study: Study) -> Iterable[Outcome]:
    dm_ds, ds_frame = study.datasets.get("DM"), study.get("DS")
    if dm_ds is None:
        return
    if ds_frame is None:
        yield not_applicable("CF-SD-0033", "DM", "a DS record per subject", "DS is absent")
        return
    dm = study.frames["DM"]
    yield outcome(
        study,
        "CF-SD-0033",
        dm_ds,
        ["USUBJID"],
        "a DS record per subject",
        ~op.isin(dm["USUBJID"], ds_frame["USUBJID"].dropna()),
        "subject has no DS record",
    )


@register("CF-SD-0034")
def sd_occur_unsolicited(study: Study) -> Iterable[Outcome]:
    for ds, domain, f in _standard_domains(study):
        occur, presp = f"{domain}OCCUR", f"{domain}PRESP"
        if occur not in f.columns:
            continue
        solicited = (op.text(f[presp]) == "Y").fillna(False) if presp in f else False
        bad = op.present(f, occur) & ~solicited
        yield outcome(
            study,
            "CF-SD-0034",
            ds,
            [occur, presp],
            f"{occur} only when {presp}='Y'",
            bad,
            f"{occur} populated but {presp} is not 'Y'",
            [occur],
        )


# --- disposition against the visits and the protocol's duration --------------------------------


def _completers(study: Study) -> pd.Series | None:
    """USUBJIDs with a study-completion DS record (params of CF-SD-0035), or None without DS."""
    ds = study.get("DS")
    if ds is None or "DSDECOD" not in ds.columns:
        return None
    p = params("CF-SD-0035")
    done = op.text(ds["DSDECOD"]).str.upper().isin([c.upper() for c in p["completed"]])
    if "DSCAT" in ds.columns and p.get("categories"):
        cats = [c.upper() for c in p["categories"]]
        done &= op.text(ds["DSCAT"]).str.upper().isin(cats) | op.text(ds["DSCAT"]).isna()
    return ds.loc[done.fillna(False).astype(bool), "USUBJID"].dropna()


def _last_planned(tv: pd.DataFrame) -> pd.DataFrame:
    """The last planned visit (VISITNUM, VISITDY) per arm ('' for every arm).

    Last is the latest VISITDY where TV gives planned days (conditional visits without a day,
    such as an unscheduled follow-up numbered 101, are not the protocol's end), else the
    largest VISITNUM. Arm-specific TV rows (ARMCD populated) apply to their arm only.
    """
    tv = tv.copy()
    tv["_ARM"] = op.text(tv["ARMCD"]).fillna("") if "ARMCD" in tv.columns else ""
    tv["_NUM"] = op.as_number(tv["VISITNUM"])
    tv["_DY"] = op.as_number(tv["VISITDY"]) if "VISITDY" in tv.columns else np.nan
    tv = tv[tv["_NUM"].notna()]
    dated = tv["_DY"].notna()
    tv = tv[dated].sort_values(["_DY", "_NUM"]) if dated.any() else tv.sort_values("_NUM")
    rows = []
    common = tv[tv["_ARM"] == ""]
    for arm in sorted(set(tv["_ARM"])):  # per distinct arm code, not per record
        part = tv[(tv["_ARM"] == arm) | (tv["_ARM"] == "")] if arm else common
        if len(part):
            last = part.iloc[-1]
            rows.append(
                {
                    "ARM": arm,
                    "VISITNUM": last["_NUM"],
                    "VISITDY": last["_DY"],
                    "VISIT": last.get("VISIT"),
                }
            )
    return pd.DataFrame(rows, columns=["ARM", "VISITNUM", "VISITDY", "VISIT"]).set_index("ARM")


def _subject_arm(dm: pd.DataFrame, planned: pd.DataFrame) -> pd.Series:
    """Each DM record's key into `planned`: its ARMCD where TV has arm-specific rows, else ''."""
    arm = op.text(dm["ARMCD"]).fillna("") if "ARMCD" in dm.columns else pd.Series("", dm.index)
    return arm.where(arm.isin(planned.index), "")


@register("CF-SD-0035")
def sd_completed_last_visit(study: Study) -> Iterable[Outcome]:
    ds_ds, tv, sv = study.datasets.get("DS"), study.get("TV"), study.get("SV")
    desc = "completers attended the last planned visit"
    if ds_ds is None:
        return
    if tv is None or sv is None or "VISITNUM" not in tv or "VISITNUM" not in sv:
        yield not_applicable("CF-SD-0035", "DS", desc, "TV or SV (with VISITNUM) is absent")
        return
    completers = _completers(study)
    planned = _last_planned(tv)
    dm = study.get("DM")
    if completers is None or planned.empty:
        yield not_applicable("CF-SD-0035", "DS", desc, "no DSDECOD or no planned TV visit")
        return
    f = study.frames["DS"]
    last_seen = op.as_number(sv["VISITNUM"]).groupby(sv["USUBJID"]).max()
    if dm is not None and "ARMCD" in dm.columns:
        arm_of = pd.Series(_subject_arm(dm, planned).to_numpy(), index=dm["USUBJID"])
        arm_of = arm_of[~arm_of.index.duplicated()]
        arm = op.plain(f["USUBJID"].map(arm_of)).fillna("")
    else:
        arm = pd.Series("", index=f.index)
    arm = arm.where(arm.isin(planned.index), "")
    target = arm.map(planned["VISITNUM"])
    seen = op.plain(f["USUBJID"].map(last_seen))
    is_completion = f.index.isin(completers.index)
    bad = pd.Series(is_completion, index=f.index) & target.notna() & ~(seen >= target)
    last = planned.iloc[-1]
    yield outcome(
        study,
        "CF-SD-0035",
        ds_ds,
        ["DSDECOD"],
        desc,
        bad,
        f"the subject completed but SV has no visit at or after the last planned visit "
        f"(TV VISITNUM {last['VISITNUM']:g} {last['VISIT']})",
        [c for c in ("DSDECOD", "DSSTDTC") if c in f.columns],
    )


def _planned_days(study: Study) -> tuple[float | None, str, str]:
    """The protocol's planned participation in days, what it was read from, and the start date
    participation is counted from: TV's last planned VISITDY (a study day, counted from
    RFSTDTC), else TS PLANDUR (the whole participation, counted from RFICDTC where DM has it)."""
    tv = study.get("TV")
    if tv is not None and "VISITDY" in tv.columns and "VISITNUM" in tv.columns:
        planned = _last_planned(tv)
        if not planned.empty and planned["VISITDY"].notna().any():
            last = planned.iloc[-1]
            return float(planned["VISITDY"].max()), f"TV {last['VISIT']} VISITDY", "RFSTDTC"
    ts = study.get("TS")
    code = params("CF-SD-0036")["duration_parameter"]
    if ts is not None and {"TSPARMCD", "TSVAL"} <= set(ts.columns):
        rows = ts[op.text(ts["TSPARMCD"]) == code]
        days = op.duration_days(rows["TSVAL"]).dropna()
        if len(days):
            dm = study.get("DM")
            start = "RFICDTC" if dm is not None and "RFICDTC" in dm.columns else "RFSTDTC"
            return float(days.iloc[0]), f"TS {code} {rows['TSVAL'].iloc[0]}", start
    return None, "", ""


@register("CF-SD-0036")
def sd_completed_duration(study: Study) -> Iterable[Outcome]:
    dm_ds = study.datasets.get("DM")
    desc = "completers took part for the protocol's duration"
    if dm_ds is None:
        return
    dm = study.frames["DM"]
    completers = _completers(study)
    days, source, start = _planned_days(study)
    if completers is None or days is None or "RFPENDTC" not in dm.columns:
        why = "DS, RFPENDTC, or a planned duration (TV VISITDY / TS PLANDUR) is absent"
        yield not_applicable("CF-SD-0036", "DM", desc, why)
        return
    if start not in dm.columns:
        yield not_applicable("CF-SD-0036", "DM", desc, f"DM has no {start}")
        return
    window = float(params("CF-SD-0036")["window_days"])
    took = (op.full_dates(dm["RFPENDTC"]) - op.full_dates(dm[start])).dt.days + 1
    bad = op.isin(dm["USUBJID"], completers) & took.notna() & (took < days - window)
    yield outcome(
        study,
        "CF-SD-0036",
        dm_ds,
        ["RFPENDTC", start],
        desc,
        bad,
        f"RFPENDTC - {start} + 1 is under {days:g} days ({source}) less the {window:g}-day window",
        ["RFPENDTC", start],
    )

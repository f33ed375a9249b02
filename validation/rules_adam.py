"""ADaM rules: ADSL structure and population flags, BDS parameter and baseline arithmetic,
analysis flags, traceability to SDTM and date-imputation flags. One small vectorised function
per rule, registered for its catalogue id (validation/rules.yaml).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from cdiscforge.validation import operations as op
from cdiscforge.validation.rules import Outcome, Study, not_applicable, outcome, register
from cdiscforge.validation.suites import is_bds

POPULATION_FLAGS = ("ITTFL", "SAFFL", "EFFFL", "FASFL", "PPROTFL", "COMPLFL", "RANDFL", "ENRLFL")


def _bds(study: Study) -> Iterable:
    for ds in study.adam():
        if ds.name != "ADSL" and is_bds(ds) and "PARAMCD" in ds.variable_names:
            yield ds, study.frames[ds.name]


def _base_keys(f: pd.DataFrame) -> list[str]:
    return ["USUBJID", "PARAMCD"] + (["BASETYPE"] if "BASETYPE" in f.columns else [])


@register("CF-AD-0007", "CF-AD-0013")
def ad_adsl_structure(study: Study) -> Iterable[Outcome]:
    ds = study.datasets.get("ADSL")
    if ds is None:
        return
    f = study.frames["ADSL"]
    yield outcome(
        study,
        "CF-AD-0007",
        ds,
        ["USUBJID"],
        "one ADSL record per USUBJID",
        op.duplicated_by(f, ["USUBJID"]),
        "USUBJID on more than one ADSL record",
    )
    for flag in [v for v in POPULATION_FLAGS if v in f.columns]:
        bad = ~op.text(f[flag]).isin(["Y", "N"]).fillna(False)
        yield outcome(
            study, "CF-AD-0013", ds, [flag], f"{flag} is Y or N", bad, f"{flag} null or not Y/N"
        )


@register("CF-AD-0008", "CF-AD-0009", "CF-AD-0010", "CF-AD-0011", "CF-AD-0012")
def ad_bds(study: Study) -> Iterable[Outcome]:
    for ds, f in _bds(study):
        if "PARAM" in f.columns:
            bad = op.inconsistent_within(f, ["PARAMCD"], "PARAM") | op.inconsistent_within(
                f, ["PARAM"], "PARAMCD"
            )
            yield outcome(
                study,
                "CF-AD-0008",
                ds,
                ["PARAMCD", "PARAM"],
                "PARAMCD and PARAM one-to-one",
                bad,
                "PARAMCD with several PARAMs or PARAM with several PARAMCDs",
            )
        if "ABLFL" in f.columns:
            yield outcome(
                study,
                "CF-AD-0009",
                ds,
                ["ABLFL"],
                f"one ABLFL='Y' per {'/'.join(_base_keys(f))}",
                op.flagged_more_than_once(f, _base_keys(f), "ABLFL"),
                "several baseline records",
                _base_keys(f),
            )
        aval = op.as_number(f["AVAL"]) if "AVAL" in f.columns else None
        base = op.as_number(f["BASE"]) if "BASE" in f.columns else None
        if aval is not None and base is not None and "CHG" in f.columns:
            chg = op.as_number(f["CHG"])
            expected = aval - base
            # CHG may be null (baseline and pre-baseline records); where given it must add up.
            close = np.isclose(chg.fillna(0), expected.fillna(0), atol=1e-9, rtol=1e-12)
            bad = chg.notna() & (expected.isna() | ~close)
            yield outcome(
                study,
                "CF-AD-0010",
                ds,
                ["CHG", "AVAL", "BASE"],
                "CHG = AVAL - BASE",
                bad,
                "CHG differs from AVAL - BASE",
                ["PARAMCD", "AVAL", "BASE", "CHG"],
            )
        if aval is not None and base is not None and "PCHG" in f.columns:
            pchg = op.as_number(f["PCHG"])
            expected = (100 * (aval - base) / base).where(base != 0)
            close = np.isclose(pchg.fillna(0), expected.fillna(0), atol=1e-6, rtol=1e-9)
            bad = pchg.notna() & (expected.isna() | ~close)  # BASE = 0 with PCHG: P21 AD0225A
            yield outcome(
                study,
                "CF-AD-0011",
                ds,
                ["PCHG", "AVAL", "BASE"],
                "PCHG = 100 * (AVAL - BASE) / BASE",
                bad,
                "PCHG differs from 100 * (AVAL - BASE) / BASE",
                ["PARAMCD", "AVAL", "BASE", "PCHG"],
            )
        if "ANL01FL" in f.columns and "AVISITN" in f.columns:
            by = [*_base_keys(f), "AVISITN"]
            yield outcome(
                study,
                "CF-AD-0012",
                ds,
                ["ANL01FL"],
                f"one ANL01FL='Y' per {'/'.join(by)}",
                op.flagged_more_than_once(f, by, "ANL01FL"),
                "several analysis records in one window",
                by,
            )


# ADaM --SEQ variables that trace a record to its SDTM domain.
_TRACE = {
    "AESEQ": "AE",
    "CMSEQ": "CM",
    "LBSEQ": "LB",
    "VSSEQ": "VS",
    "EXSEQ": "EX",
    "QSSEQ": "QS",
    "EGSEQ": "EG",
    "MHSEQ": "MH",
    "DSSEQ": "DS",
    "FTSEQ": "FT",
}


@register("CF-AD-0014")
def ad_traceability(study: Study) -> Iterable[Outcome]:
    sdtm = {}
    for ds in study.sdtm():
        dom = (ds.domain or ds.name[:2]).upper()
        sdtm.setdefault(dom, []).append(study.frames[ds.name])
    for ds in study.adam():
        f = study.frames[ds.name]
        for seq, dom in _TRACE.items():
            if seq not in f.columns or "USUBJID" not in f.columns:
                continue
            if dom not in sdtm:
                yield not_applicable("CF-AD-0014", ds.name, f"{seq} in {dom}", f"{dom} is absent")
                continue
            parents = pd.concat([p[["USUBJID", seq]] for p in sdtm[dom] if seq in p.columns])
            rows = op.present(f, seq)
            bad = rows & op.not_in(f, ["USUBJID", seq], parents, ["USUBJID", seq])
            yield outcome(
                study,
                "CF-AD-0014",
                ds,
                [seq],
                f"USUBJID/{seq} is a {dom} record",
                bad,
                f"no {dom} record with this USUBJID/{seq}",
            )


@register("CF-AD-0015")
def ad_imputation_flags(study: Study) -> Iterable[Outcome]:
    for ds in study.adam():
        f = study.frames[ds.name]
        for adt, dtf, src in (("ASTDT", "ASTDTF", "STDTC"), ("AENDT", "AENDTF", "ENDTC")):
            if adt not in f.columns:
                continue
            seq = next((s for s in _TRACE if s in f.columns), None)
            dom = _TRACE.get(seq or "")
            parent = study.get(dom) if dom else None
            column = f"{dom}{src}" if dom else ""
            if parent is None or column not in parent.columns:
                continue
            sdtm_date = op.lookup(
                f.assign(
                    _K=op.as_string(f["USUBJID"], "string")
                    + "|"
                    + op.as_number(f[seq]).astype("string")
                ),
                "_K",
                parent.assign(
                    _K=op.as_string(parent["USUBJID"], "string")
                    + "|"
                    + op.as_number(parent[seq]).astype("string")
                ),
                "_K",
                column,
            )
            partial = op.text(sdtm_date).str.len().fillna(0).between(1, 9)
            bad = partial & op.present(f, adt) & ~op.present(f, dtf)
            yield outcome(
                study,
                "CF-AD-0015",
                ds,
                [dtf, adt],
                f"{dtf} set where {adt} was imputed from a partial {column}",
                bad,
                f"{adt} from a partial {column} without {dtf}",
                [adt],
            )

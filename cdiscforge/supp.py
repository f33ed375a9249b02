"""SUPP-- datasets (SDTMIG 8.4): non-standard variables and overflow text, as QNAM records.

Built after the parent's --SEQ is final, so IDVAR/IDVARVAL point at real parent records.
For DM (one record per subject) IDVAR and IDVARVAL stay null, as SDTMIG asks.
"""

from __future__ import annotations

import pandas as pd

from cdiscforge import standards
from cdiscforge.buildlog import BuildLog
from cdiscforge.model import Dataset, Variable
from cdiscforge.spec import DatasetSpec, StudySpec
from cdiscforge.vectorise import integers_as_text

SUPP_VARIABLES = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL",
                  "QVAL", "QORIG", "QEVAL"]  # fmt: skip


def build_supp(
    spec: DatasetSpec,
    study: StudySpec,
    records: pd.DataFrame,
    values: dict[str, pd.Series],
    overflow: dict[str, pd.DataFrame],
    log: BuildLog,
) -> Dataset | None:
    """SUPP<spec.name> from the spec's `supp` items and split overflow text; None if empty."""
    parent = spec.name
    seq_var = f"{parent}SEQ"
    parts: list[pd.DataFrame] = []
    metas_by_name = {v.name: v.meta for v in spec.variables}
    # What define.xml says about each QNAM's QVAL (value-level metadata); QORIG is that
    # origin, so the data and define.xml agree.
    qualifiers: dict[str, Variable] = {}
    for item in spec.supp:
        value = values[item.var].astype("string")
        has = value.notna() & (value.str.strip() != "")
        idvar = item.idvar or (seq_var if seq_var in records else None)
        source = metas_by_name[item.var]
        qorig = define_origin(item.qorig or source.origin)
        qualifiers[item.qnam] = _qualifier(source, item.qlabel, qorig)
        parts.append(
            _records(
                records[has],
                parent,
                idvar,
                item.qnam,
                item.qlabel,
                value[has],
                qorig,
                item.qeval,
            )
        )
    for var, pieces in overflow.items():
        label = spec.variables[[v.name for v in spec.variables].index(var)].meta.label
        for part, chunk in pieces.groupby("part"):
            rows = records.loc[chunk["row"].to_numpy()]
            qnam = f"{var}{int(part)}"[:8]
            qorig = define_origin(metas_by_name[var].origin)
            qualifiers[qnam] = _qualifier(metas_by_name[var], f"{label} {int(part)}"[:40], qorig)
            parts.append(
                _records(
                    rows,
                    parent,
                    seq_var if seq_var in records else None,
                    qnam,
                    f"{label} {int(part)}"[:40],
                    pd.Series(chunk["value"].to_numpy(), index=rows.index),
                    qorig,
                    None,
                )
            )
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values(["USUBJID", "QNAM", "IDVARVAL"], kind="stable").reset_index(drop=True)
    ig = standards.domain_variables("SUPP" + parent)
    metas = [
        Variable(
            name=n,
            label=ig.loc[n, "label"],
            type=ig.loc[n, "type"],
            origin="Assigned"
            if n in ("STUDYID", "RDOMAIN", "IDVAR", "QNAM", "QLABEL", "QORIG", "QEVAL")
            else "Derived",
            method=_METHODS.get(n, "").format(parent=parent) or None,
            role=ig.loc[n, "role"],
            core=ig.loc[n, "core"],
        )
        for n in SUPP_VARIABLES
    ]
    name = f"SUPP{parent}"
    log.info(spec.stage, name, f"built: {len(frame)} records")
    return Dataset(
        name=name,
        label=f"Supplemental Qualifiers for {parent}",
        frame=frame[SUPP_VARIABLES],
        variables=metas,
        klass="RELATIONSHIP",
        structure="One record per supplemental qualifier per related parent domain record(s)",
        keys=["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM"],
        standard=spec.standard,
        domain=name,
        value_level_by="QNAM",
        qualifiers={q: qualifiers[q] for q in sorted(set(frame["QNAM"].dropna()))},
    )


# define.xml method text of the SUPP-- variables that are not assigned.
_METHODS = {
    "USUBJID": "USUBJID of the {parent} record the qualifier belongs to.",
    "IDVARVAL": "Value of IDVAR in the {parent} record the qualifier belongs to; null for a "
    "subject-level qualifier.",
    "QVAL": "The qualifier's value from the {parent} mapping; what each QNAM holds and where it "
    "comes from is in the value-level metadata.",
}

# SUPP-- QORIG spellings older specs use, as Define-XML 2.1 origin types.
_QORIG_ALIASES = {"CRF": "Collected", "EDT": "Collected", "ECRF": "Collected"}


def define_origin(qorig: str) -> str:
    """QORIG as a Define-XML 2.1 origin type (CRF -> Collected), so that QORIG and the
    define.xml origin of the QNAM are the same word."""
    text = qorig.strip()
    return _QORIG_ALIASES.get(text.upper(), text[:1].upper() + text[1:])


def _qualifier(source: Variable, qlabel: str, qorig: str) -> Variable:
    """QVAL's metadata for one QNAM: the parent-side variable's origin, source and method."""
    return Variable(
        name="QVAL",
        label=qlabel,
        type="Char",
        origin=qorig,
        source=source.source if qorig == "Collected" else None,
        method=source.method if qorig == "Derived" else None,
        comment=source.comment,
        predecessor=source.predecessor if qorig == "Predecessor" else None,
        crf_pages=source.crf_pages if qorig == "Collected" else (),
    )


def _records(
    rows: pd.DataFrame,
    parent: str,
    idvar: str | None,
    qnam: str,
    qlabel: str,
    qval: pd.Series,
    qorig: str,
    qeval: str | None,
) -> pd.DataFrame:
    n = len(rows)
    if idvar:
        idval = integers_as_text(rows[idvar])
    else:
        idval = pd.Series(pd.NA, index=rows.index, dtype="string")
    return pd.DataFrame(
        {
            "STUDYID": rows["STUDYID"].to_numpy(),
            "RDOMAIN": [parent] * n,
            "USUBJID": rows["USUBJID"].to_numpy(),
            "IDVAR": [idvar] * n,
            "IDVARVAL": idval.to_numpy(),
            "QNAM": [qnam] * n,
            "QLABEL": [qlabel] * n,
            "QVAL": qval.astype("string").to_numpy(),
            "QORIG": [qorig] * n,
            "QEVAL": [qeval] * n,
        }
    ).astype("string")

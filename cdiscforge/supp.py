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
    for item in spec.supp:
        value = values[item.var].astype("string")
        has = value.notna() & (value.str.strip() != "")
        idvar = item.idvar or (seq_var if seq_var in records else None)
        parts.append(
            _records(
                records[has],
                parent,
                idvar,
                item.qnam,
                item.qlabel,
                value[has],
                item.qorig,
                item.qeval,
            )
        )
    for var, pieces in overflow.items():
        label = spec.variables[[v.name for v in spec.variables].index(var)].meta.label
        for part, chunk in pieces.groupby("part"):
            rows = records.loc[chunk["row"].to_numpy()]
            qnam = f"{var}{int(part)}"[:8]
            parts.append(
                _records(
                    rows,
                    parent,
                    seq_var if seq_var in records else None,
                    qnam,
                    f"{label} {int(part)}"[:40],
                    pd.Series(chunk["value"].to_numpy(), index=rows.index),
                    "CRF",
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

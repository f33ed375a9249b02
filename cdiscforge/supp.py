"""SUPP-- datasets (SDTMIG 8.4): non-standard variables and overflow text, as QNAM records.

Built after the parent's --SEQ is final, so IDVAR/IDVARVAL point at real parent records.
For DM (one record per subject) IDVAR and IDVARVAL stay null, as SDTMIG asks.

Text over 200 characters (SDTMIG 3.4 section 4.5.3.2): the first 200 characters stay in the
parent variable and each further piece of at most 200 goes to a SUPP-- record whose QNAM is
the variable name with a sequential number appended (AETERM1, AETERM2 ...); a name already 8
characters long gives up its last character(s) to the number (AEACNOTH -> AEACNOT1,
MKREASND -> MKREASN1, and for a tenth piece MKREAS10). Text is cut between words where a word
boundary falls inside the piece. A SUPP-- value of its own (`supp` item) over 200 characters
is split the same way: QNAM, then QNAM1, QNAM2 ... Two pieces never share a QNAM: a name the
convention would give twice is an error naming both, never a silent collision.
"""

from __future__ import annotations

import pandas as pd

from cdiscforge import standards
from cdiscforge.buildlog import BuildLog
from cdiscforge.errors import SpecError
from cdiscforge.model import Dataset, Variable
from cdiscforge.spec import DatasetSpec, StudySpec
from cdiscforge.vectorise import integers_as_text

SUPP_VARIABLES = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL",
                  "QVAL", "QORIG", "QEVAL"]  # fmt: skip
MAX_TEXT = 200  # characters of one XPT v5 value (ASCII by then: one byte each)


def split_text(text: str, size: int = MAX_TEXT) -> list[str]:
    """`text` in pieces of at most `size` characters, cut at the last blank inside each piece
    (no blank: cut at `size`); blanks at a cut are dropped. Linear in len(text): the rest is
    never copied, each piece is sliced once."""
    out: list[str] = []
    start, n = 0, len(text)
    while n - start > size:
        end = start + size
        cut = text.rfind(" ", start + 1, end + 1)
        if cut <= start:
            cut = end
        piece = text[start:cut].rstrip(" ")
        out.append(piece if piece else text[start:end])
        start = cut
        while start < n and text[start] == " ":
            start += 1
    if start < n or not out:
        out.append(text[start:])
    return out


def split_series(values: pd.Series, size: int = MAX_TEXT) -> tuple[pd.Series, pd.DataFrame]:
    """Values over `size` characters split (`split_text`, once per distinct long value):
    the first pieces as a series aligned with `values` (short values unchanged) and the
    further pieces as a frame of (row: index label, part: 1, 2 ..., value)."""
    text = values.astype("string")
    long = text.notna() & (text.str.len() > size)
    first = text.copy()
    if not long.any():
        return first, pd.DataFrame({"row": [], "part": [], "value": []})
    distinct = pd.unique(text[long].to_numpy())
    pieces = {v: split_text(v, size) for v in distinct}
    chosen = text[long]
    first[long] = chosen.map(lambda v: pieces[v][0])
    rest = chosen.map(lambda v: pieces[v][1:]).explode()
    rest = rest[rest.notna()]
    part = rest.groupby(level=0).cumcount() + 1
    frame = pd.DataFrame(
        {"row": rest.index.to_numpy(), "part": part.to_numpy(), "value": rest.to_numpy()}
    )
    return first, frame


def suffixed(name: str, part: int) -> str:
    """QNAM of the `part`-th extra piece of `name`: the number appended, the name cut so the
    whole stays within 8 characters (SDTMIG 4.5.3.2)."""
    digits = str(part)
    return name[: 8 - len(digits)] + digits


def _qnams(name: str, parts: pd.Series) -> pd.Series:
    """`suffixed` per distinct part number."""
    names = {int(k): suffixed(name, int(k)) for k in pd.unique(parts.to_numpy())}
    return parts.astype(int).map(names).astype("string")


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
    seq_idvar = seq_var if seq_var in records else None
    parts: list[pd.DataFrame] = []
    owners: dict[str, str] = {}  # QNAM -> what it holds, to refuse a collision
    metas_by_name = {v.name: v.meta for v in spec.variables}
    # What define.xml says about each QNAM's QVAL (value-level metadata); QORIG is that
    # origin, so the data and define.xml agree.
    qualifiers: dict[str, Variable] = {}

    def claim(qnams: pd.Series, owner: str, meta: Variable) -> None:
        for qnam in pd.unique(qnams.to_numpy()):
            other = owners.setdefault(str(qnam), owner)
            if other != owner:
                raise SpecError(
                    spec.file, "supp", f"QNAM {qnam} would hold both {other} and {owner}"
                )
            qualifiers[str(qnam)] = meta

    for item in spec.supp:
        value = values[item.var].astype("string")
        has = value.notna() & (value.str.strip() != "")
        idvar = item.idvar or seq_idvar
        # A supp item may carry a helper variable the dataset does not keep: it is Derived.
        source = metas_by_name.get(item.var) or Variable(item.var, item.qlabel)
        qorig = define_origin(item.qorig or source.origin)
        meta = _qualifier(source, item.qlabel, qorig)
        first, extra = split_series(value[has])
        rows = records[has]
        qnam = pd.Series(item.qnam, index=rows.index, dtype="string")
        claim(qnam, f"supp item {item.qnam}", meta)
        parts.append(_records(rows, parent, idvar, qnam, item.qlabel, first, qorig,
                              item.qeval))  # fmt: skip
        if len(extra):
            more = records.loc[extra["row"].to_numpy()]
            names = _qnams(item.qnam, extra["part"])
            names.index = more.index
            claim(names, f"the pieces of supp item {item.qnam} over {MAX_TEXT} characters", meta)
            parts.append(
                _records(more, parent, idvar, names, item.qlabel,
                         pd.Series(extra["value"].to_numpy(), index=more.index),
                         qorig, item.qeval)
            )  # fmt: skip
            _log_split(log, spec, records, extra, item.qnam, seq_var, f"supp item {item.qnam}")
    for var, pieces in overflow.items():
        label = metas_by_name[var].label
        qorig = define_origin(metas_by_name[var].origin)
        meta = _qualifier(metas_by_name[var], label, qorig)
        rows = records.loc[pieces["row"].to_numpy()]
        names = _qnams(var, pieces["part"])
        names.index = rows.index
        claim(names, f"the text of {var} over {MAX_TEXT} characters", meta)
        parts.append(
            _records(rows, parent, seq_idvar, names, label,
                     pd.Series(pieces["value"].to_numpy(), index=rows.index), qorig, None)
        )  # fmt: skip
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


def _log_split(
    log: BuildLog,
    spec: DatasetSpec,
    records: pd.DataFrame,
    pieces: pd.DataFrame,
    name: str,
    seq_var: str,
    what: str,
) -> None:
    """One warning naming every record whose text was split (USUBJID, --SEQ, pieces)."""
    message, examples = split_message(records, pieces, name, seq_var, what)
    log.warn(spec.stage, f"SUPP{spec.name}", message, variable=name,
             count=int(pieces["row"].nunique()), examples=examples)  # fmt: skip


def split_message(
    records: pd.DataFrame, pieces: pd.DataFrame, name: str, seq_var: str, what: str
) -> tuple[str, list[str]]:
    """The log line of a split and its examples: each split record with its piece count."""
    counts = pieces.groupby("row").size()
    rows = records.loc[counts.index]
    seq = (
        (f" {seq_var} " + integers_as_text(rows[seq_var])).to_numpy()
        if seq_var in rows
        else [""] * len(rows)
    )
    examples = [
        f"{u}{s}: {n + 1} pieces"
        for u, s, n in zip(rows["USUBJID"].to_numpy(), seq, counts.to_numpy(), strict=True)
    ]
    top = int(counts.max()) if len(counts) else 0
    last = f"..{suffixed(name, top)}" if top > 1 else ""
    message = (
        f"{what} over {MAX_TEXT} characters in {len(counts)} record(s): split between words "
        f"into {name} (first {MAX_TEXT}) and SUPP-- QNAM {suffixed(name, 1)}{last} "
        "(SDTMIG 4.5.3.2)"
    )
    return message, examples


def _records(
    rows: pd.DataFrame,
    parent: str,
    idvar: str | None,
    qnam: pd.Series,
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
            "QNAM": qnam.astype("string").to_numpy(),
            "QLABEL": [qlabel] * n,
            "QVAL": qval.astype("string").to_numpy(),
            "QORIG": [qorig] * n,
            "QEVAL": [qeval] * n,
        }
    ).astype("string")

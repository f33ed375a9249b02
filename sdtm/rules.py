"""SDTM timing rules: visits, epochs, subject elements, last observation before exposure.

Registered into the same vocabulary as the general rules; study facts (visit table, element
definitions, unscheduled-visit conventions) come from the spec parameters and tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cdiscforge.engine import generator
from cdiscforge.errors import SpecError
from cdiscforge.rules import Params, RuleContext, rule
from cdiscforge.rules.basic import AggregateParams, aggregate
from cdiscforge.rules.words import Words, describes
from cdiscforge.vectorise import map_distinct


def _datetime(iso: pd.Series) -> pd.Series:
    """ISO 8601 text to datetime64; date-only values at 00:00, partial dates NaT."""
    text = iso.astype("string")
    full = text.where(text.str.len() >= 10)
    return pd.to_datetime(full.str.replace("T", " "), format="mixed", errors="coerce")


class VisitnumParams(Params):
    folder: str  # reference to the collected visit label (e.g. raw.FOLDER)
    key: str  # visits-table column holding that label (edc_folder, lab_visit)
    date: str  # the record's ISO 8601 date (for unscheduled visits)
    table: str = "visits"
    unscheduled: str = "UNS"  # labels starting with this are unscheduled
    step: float = 0.01
    # The dataset whose visit numbers unscheduled records on the same date reuse (SV), so
    # LB, MK ... agree with SV; it is built first. Null: number them within this dataset.
    unscheduled_from: str | None = "SV"
    ref_fields = ("folder", "date")

    def domains(self) -> set[str]:
        return {self.unscheduled_from} if self.unscheduled_from else set()


@rule("visitnum", VisitnumParams)
def visitnum(ctx: RuleContext, p: VisitnumParams) -> pd.Series:
    """VISITNUM from the trial visits table (TV), matched on the collected visit label.

    Cases, in order: a scheduled label -> the table's VISITNUM; an unscheduled label (starts
    with `unscheduled`) -> the VISITNUM `unscheduled_from` (SV) gave that subject's visit on
    the same date (SV is built first: the rule declares it); otherwise the last scheduled
    visit of the subject before that date (in this dataset) + `step` x n, n counting that
    subject's unscheduled dates after that visit;
    any other label -> input error naming the row and value.
    """
    table = ctx.study.table(p.table)
    labels = ctx.ref(p.folder).astype("string").str.strip().str.upper()
    mapping = dict(
        zip(table[p.key].astype("string").str.upper(), table["VISITNUM"].astype(float), strict=True)
    )
    nums = labels.map(mapping).astype("Float64")
    unmatched = labels.notna() & nums.isna()
    unsched = unmatched & labels.str.startswith(p.unscheduled.upper()).fillna(False)
    ctx.input_error(
        unmatched & ~unsched,
        p.folder.removeprefix("raw."),
        labels,
        f"visit label not in table {p.table!r} ({p.key})",
    )
    if not unsched.any():
        return nums
    usubjid = ctx.ref("USUBJID")
    day = ctx.ref(p.date).astype("string").str.slice(0, 10)
    src = p.unscheduled_from
    if src and src in ctx.domains and ctx.dataset != src:
        sv = ctx.domains[src].frame
        sv_day = sv[f"{src}STDTC"].astype("string").str.slice(0, 10)
        sv_key = sv["USUBJID"].astype("string") + "|" + sv_day
        sv_map = dict(zip(sv_key, sv["VISITNUM"].astype(float), strict=False))
        from_sv = (usubjid + "|" + day).map(sv_map).astype("Float64")
        nums = nums.mask(unsched, from_sv)
        unsched = unsched & nums.isna()
        # The record's date has no visit in SV: say so, then number it here.
        ctx.report(
            unsched,
            f"unscheduled record(s) with no {src} visit on the same date: numbered after the "
            "subject's previous planned visit in this dataset",
            warn=True,
            examples=(usubjid + " " + day)[unsched].unique().tolist()[:3],
        )
    if unsched.any():
        nums = nums.mask(unsched, _after_previous(usubjid, day, nums, unsched, p.step))
    return nums


def _after_previous(
    usubjid: pd.Series, day: pd.Series, nums: pd.Series, unsched: pd.Series, step: float
) -> pd.Series:
    when = pd.to_datetime(day, errors="coerce")
    sched = pd.DataFrame({"u": usubjid, "t": when, "v": nums})[~unsched & nums.notna()]
    sched = sched.dropna(subset=["t"]).groupby(["u", "t"], as_index=False)["v"].max()
    uns = pd.DataFrame({"u": usubjid, "t": when, "i": np.arange(len(day))})[unsched.to_numpy()]
    uns = uns.dropna(subset=["t"])
    if uns.empty:
        return pd.Series(pd.NA, index=nums.index, dtype="Float64")
    merged = pd.merge_asof(
        uns.sort_values("t"), sched.sort_values("t"), on="t", by="u", direction="backward"
    )
    merged["v"] = merged["v"].fillna(0)
    dense = merged.groupby(["u", "v"])["t"].rank(method="dense")
    merged["num"] = (merged["v"] + step * dense).round(6)
    out = pd.Series(pd.NA, index=nums.index, dtype="Float64")
    out.iloc[merged["i"].to_numpy()] = merged["num"].to_numpy()
    return out


class VisitParams(Params):
    num: str = "VISITNUM"
    table: str = "visits"
    unscheduled_label: str = "UNSCHEDULED"
    ref_fields = ("num",)


@rule("visit", VisitParams)
def visit(ctx: RuleContext, p: VisitParams) -> pd.Series:
    """VISIT from VISITNUM: the table's name for planned visits, `UNSCHEDULED n.nn` else."""
    table = ctx.study.table(p.table)
    nums = ctx.ref(p.num).astype("Float64")
    mapping = dict(zip(table["VISITNUM"].astype(float), table["VISIT"].astype(str), strict=True))
    names = map_distinct(nums, lambda v: mapping.get(float(v)))
    unplanned = nums.notna() & names.isna()
    labels = map_distinct(nums, lambda v: f"{p.unscheduled_label} {v:.2f}")
    return names.mask(unplanned, labels).astype("string")


class VisitdyParams(Params):
    num: str = "VISITNUM"
    table: str = "visits"
    ref_fields = ("num",)


@rule("visitdy", VisitdyParams, origin="Protocol")
def visitdy(ctx: RuleContext, p: VisitdyParams) -> pd.Series:
    """VISITDY: the planned study day of a planned visit (null for unscheduled ones)."""
    table = ctx.study.table(p.table)
    mapping = dict(
        zip(table["VISITNUM"].astype(float), table["VISITDY"].astype(float), strict=True)
    )
    return map_distinct(
        ctx.ref(p.num).astype("Float64"), lambda v: mapping.get(float(v), pd.NA), "Float64"
    )


class EpochParams(Params):
    date: str
    ref_fields = ("date",)

    def domains(self) -> set[str]:
        return {"SE"}


@rule("epoch", EpochParams)
def epoch(ctx: RuleContext, p: EpochParams) -> pd.Series:
    """EPOCH of the subject element (SE) in which `date` falls: SESTDTC <= date < SEENDTC,
    the last element including its end. A date-only record counts as 00:00 that day, so a
    pre-dose assessment on the infusion day without a time falls before the infusion; a
    date-only element end (SEENDTC) covers its whole day, so a timed record on the last day
    of the subject's last element is inside it. A partial date (YYYY-MM, YYYY) gets the
    epoch only when its first and last possible days fall in the same epoch (e.g. an AE
    started in a month wholly within screening). Null for missing dates and dates outside
    every element.
    """
    se = ctx.domain("SE").frame
    dtc = ctx.ref(p.date).astype("string")
    when = _datetime(dtc)
    out = pd.Series(pd.NA, index=ctx.out.index, dtype="string")
    end = _datetime(se["SEENDTC"])
    date_only_end = se["SEENDTC"].astype("string").str.len().eq(10).fillna(False).to_numpy()
    end = end.mask(date_only_end, end + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1))
    elements = pd.DataFrame(
        {
            "u": se["USUBJID"].astype("string"),
            "t": _datetime(se["SESTDTC"]),
            "end": end,
            "EPOCH": se["EPOCH"].astype("string"),
        }
    ).dropna(subset=["t"])
    if elements.empty:
        return out
    usubjid = ctx.ref("USUBJID").astype("string")
    found = _epoch_at(usubjid, when, elements)
    low, high = _partial_bounds(dtc)
    partial = when.isna() & low.notna()
    if partial.any():
        first = _epoch_at(usubjid, low.where(partial), elements)
        last = _epoch_at(usubjid, high.where(partial), elements)
        found = found.mask(partial & (first == last).fillna(False), first)
    return found


def _epoch_at(usubjid: pd.Series, when: pd.Series, elements: pd.DataFrame) -> pd.Series:
    """The epoch of the element each (subject, datetime) falls in; null outside them all."""
    out = pd.Series(pd.NA, index=usubjid.index, dtype="string")
    rec = pd.DataFrame(
        {
            "u": usubjid.astype("string").reset_index(drop=True),
            "t": pd.Series(when.to_numpy()).astype(elements["t"].dtype),
            "i": np.arange(len(when)),
        }
    )
    rec = rec.dropna(subset=["t"])
    if rec.empty:
        return out
    merged = pd.merge_asof(
        rec.sort_values("t"), elements.sort_values("t"), on="t", by="u", direction="backward"
    )
    last_end = elements.groupby("u")["end"].max()
    inside = merged["EPOCH"].notna() & (merged["t"] <= merged["u"].map(last_end))
    merged = merged[inside]
    out.iloc[merged["i"].to_numpy()] = merged["EPOCH"].astype("string").to_numpy()
    return out


def _partial_bounds(dtc: pd.Series) -> tuple[pd.Series, pd.Series]:
    """First and last possible instant of a partial ISO 8601 date (YYYY-MM or YYYY);
    NaT for complete and missing dates."""
    text = dtc.astype("string")
    month = text.str.fullmatch(r"\d{4}-\d{2}").fillna(False)
    year = text.str.fullmatch(r"\d{4}").fillna(False)
    low = pd.to_datetime(text.where(month) + "-01", format="%Y-%m-%d", errors="coerce")
    low = low.fillna(
        pd.to_datetime(text.where(year) + "-01-01", format="%Y-%m-%d", errors="coerce")
    )
    high = (low + pd.offsets.MonthBegin(1)).where(month)
    high = high.fillna((low + pd.offsets.YearBegin(1)).where(year))
    return low, high - pd.Timedelta(microseconds=1)


class LobxflParams(Params):
    by: list[str]
    date: str
    result: str
    reference: str = "RFXSTDTC"
    ref_fields = ("by", "date", "result")

    def domains(self) -> set[str]:
        return {"DM"}


@rule("lobxfl", LobxflParams, final=True)
def lobxfl(ctx: RuleContext, p: LobxflParams) -> pd.Series:
    """--LOBXFL = Y on the last record per USUBJID and `by` with a non-missing result and a
    complete date on or before DM.<reference> (first exposure); null elsewhere.
    Ties on the same datetime: the last in --SEQ order wins (the spec orders records)."""
    when = _datetime(ctx.ref(p.date))
    ref = _datetime(ctx.subject_values("DM", p.reference))
    eligible = when.notna() & ref.notna() & (when <= ref) & ctx.ref(p.result).notna()
    frame = ctx.out[["USUBJID", *p.by]].copy()
    frame["__t"] = when
    cand = frame[eligible.to_numpy()].sort_values([*frame.columns], kind="stable")
    last = cand.groupby(["USUBJID", *p.by], dropna=False).tail(1).index
    out = pd.Series(pd.NA, index=ctx.out.index, dtype="string")
    out.loc[last] = "Y"
    return out


class TreatmentEmergentParams(Params):
    start: str
    end: str | None = None
    reference: str = "RFXSTDTC"
    ref_fields = ("start", "end")

    def domains(self) -> set[str]:
        return {"DM"}


@rule("treatment_emergent", TreatmentEmergentParams)
def treatment_emergent(ctx: RuleContext, p: TreatmentEmergentParams) -> pd.Series:
    """Treatment-emergent flag (e.g. SUPPAE AETRTEM): Y or N, compared as dates with the
    subject's first exposure (DM.<reference>, default RFXSTDTC), as ADaM TRTEMFL is.

    Cases, in the order applied: subject not exposed -> null; event ended (complete end
    date) before the first exposure day -> N; no start date -> Y (cannot be shown to
    precede treatment); start (at its own precision: day, month or year) before the first
    exposure at that precision -> N; otherwise (on or after, including a partial date in
    the month or year of first exposure) -> Y.
    """
    ref = ctx.subject_values("DM", p.reference).astype("string[python]").str.slice(0, 10)
    start = ctx.ref(p.start).astype("string[python]").str.slice(0, 10)
    out = pd.Series("Y", index=ctx.out.index, dtype="string")
    before = pd.Series(False, index=ctx.out.index)
    for width in start.str.len().dropna().unique():
        rows = (start.str.len() == width).fillna(False)
        earlier = (start < ref.str.slice(0, int(width))).fillna(False).astype(bool)
        before |= rows.astype(bool) & earlier
    if p.end is not None:
        end = ctx.ref(p.end).astype("string[python]").str.slice(0, 10)
        complete = (end.str.len() == 10).fillna(False).astype(bool)
        before |= complete & (end < ref).fillna(False).astype(bool)
    out = out.mask(before, "N")
    return out.mask(ref.isna() | (ref.str.len() < 10).fillna(True), pd.NA)


@generator("missed_visits")
def missed_visits(ctx: RuleContext, params: dict[str, Any]) -> pd.DataFrame:
    """Planned visits a subject missed, for SV's SVPRESP = Y / SVOCCUR = N records (SDTMIG 3.4).

    A planned visit (the `table`, default `visits`) is missed when the subject has no row for
    its label (`key` column, e.g. edc_folder) in the raw visits `form` (`folder` column)
    although its whole window had passed while the subject was in the study: first
    exposure (DM.`reference`, default RFSTDTC) + VISITDY - 1 + `window_after` days is on
    or before the end of participation (DM.`end`, default RFPENDTC). Subjects never exposed
    (screen failures) miss nothing. Columns: USUBJID, VISITNUM, VISIT.
    """
    for name in ("form", "folder", "key"):
        if name not in params:
            raise SpecError(ctx.spec_file, f"records.params.{name}", "required")
    table = ctx.study.table(params.get("table", "visits"))
    window = params.get("window_after")
    source = ctx.store.source(params["form"])
    seen = pd.DataFrame(
        {
            "USUBJID": ctx.study.subject_key(source.frame, params["form"]),
            "label": source.frame[params["folder"]].astype("string").str.strip().str.upper(),
        }
    )
    dm = ctx.domain("DM").frame
    start = pd.to_datetime(
        dm[params.get("reference", "RFSTDTC")].astype("string").str.slice(0, 10), errors="coerce"
    )
    end = pd.to_datetime(
        dm[params.get("end", "RFPENDTC")].astype("string").str.slice(0, 10), errors="coerce"
    )
    subjects = pd.DataFrame({"USUBJID": dm["USUBJID"].astype("string"), "t0": start, "t1": end})
    subjects = subjects.dropna(subset=["t0", "t1"])
    planned = pd.DataFrame(
        {
            "label": table[params["key"]].astype("string").str.upper(),
            "VISITNUM": table["VISITNUM"].astype(float),
            "VISIT": table["VISIT"].astype("string"),
            "days": table["VISITDY"].astype(float).where(table["VISITDY"] < 0,
                                                         table["VISITDY"] - 1),
            "after": table[window].astype(float) if window else 0.0,
        }
    )  # fmt: skip
    grid = subjects.merge(planned, how="cross")
    due = grid["t0"] + pd.to_timedelta(grid["days"] + grid["after"], unit="D")
    grid = grid[(due <= grid["t1"]).to_numpy()]
    attended = grid.merge(seen.drop_duplicates(), on=["USUBJID", "label"], how="left",
                          indicator=True)["_merge"].eq("both").to_numpy()  # fmt: skip
    missed = grid[~attended]
    return missed[["USUBJID", "VISITNUM", "VISIT"]].reset_index(drop=True)


@generator("subject_elements")
def subject_elements(ctx: RuleContext, params: dict[str, Any]) -> pd.DataFrame:
    """SE records: one per element a subject entered, from dated events.

    `params.elements` lists, in planned order, ETCD and `start` (an `aggregate` rule's
    parameters: a dataset column or a raw form's date). An element starts at its start date;
    it ends where the next entered element starts; the last ends at `params.end` (e.g.
    DM.RFPENDTC). Elements without a start date were not entered (e.g. screen failures).
    Columns: USUBJID, ETCD, SESTDTC, SEENDTC, TAETORD (the element's planned order).
    """
    dm = ctx.domain("DM").frame
    base = pd.DataFrame({"USUBJID": dm["USUBJID"].astype("string")})
    sub = type(ctx)(
        ctx.study, ctx.dataset, "", base, None, ctx.domains, ctx.log, ctx.spec_file, ctx.store
    )
    if "elements" not in params or "end" not in params:
        raise SpecError(ctx.spec_file, "records.params", "needs 'elements' and 'end'")
    starts = []
    for order, element in enumerate(params["elements"], 1):
        sub.variable = f"SE {element['ETCD']}"
        values = aggregate(sub, AggregateParams.model_validate(element["start"]))
        starts.append(
            pd.DataFrame(
                {
                    "USUBJID": base["USUBJID"],
                    "ETCD": element["ETCD"],
                    "SESTDTC": values.astype("string"),
                    "TAETORD": order,
                }
            )
        )
    end = aggregate(sub, AggregateParams.model_validate(params["end"])).astype("string")
    frame = pd.concat(starts, ignore_index=True).dropna(subset=["SESTDTC"])
    frame = frame.sort_values(["USUBJID", "TAETORD"], kind="stable")
    frame["SEENDTC"] = frame.groupby("USUBJID")["SESTDTC"].shift(-1)
    last = frame["SEENDTC"].isna()
    frame.loc[last, "SEENDTC"] = frame.loc[last, "USUBJID"].map(
        dict(zip(base["USUBJID"], end, strict=True))
    )
    return frame.reset_index(drop=True)


# --- method text (cdiscforge.rules.words) ----------------------------------------------------


@describes("visitnum")
def _say_visitnum(p: VisitnumParams, w: Words) -> str:
    text = (
        f"VISITNUM of the planned visit in {w.table(p.table)} whose "
        f"{p.key.replace('_', ' ')} label matches {w.ref(p.folder)}; an unscheduled visit"
    )
    if p.unscheduled_from:
        text += f" takes the VISITNUM {p.unscheduled_from} gives the subject's visit on that date"
        text += ", else"
    return text + (
        f" follows the subject's last planned visit before {w.ref(p.date)} in steps of {p.step:g}"
    )


@describes("visit")
def _say_visit(p: VisitParams, w: Words) -> str:
    return (
        f"name of the planned visit {w.ref(p.num)} in {w.table(p.table)}; for an unscheduled "
        f"visit {p.unscheduled_label} followed by {w.ref(p.num)}"
    )


@describes("visitdy")
def _say_visitdy(p: VisitdyParams, w: Words) -> str:
    return f"planned study day of visit {w.ref(p.num)} in {w.table(p.table)}; null when unscheduled"


@describes("epoch")
def _say_epoch(p: EpochParams, w: Words) -> str:
    return (
        f"EPOCH of the subject's element in SE whose start and end enclose {w.ref(p.date)} "
        "(an end given as a date only covers that whole day); a partial date takes the EPOCH "
        "its whole month or year falls in; null when the date is missing, outside every "
        "element, or its period spans two elements"
    )


@describes("treatment_emergent")
def _say_treatment_emergent(p: TreatmentEmergentParams, w: Words) -> str:
    end = f", or when {w.ref(p.end)} is a complete date before DM.{p.reference}" if p.end else ""
    return (
        f"N when {w.ref(p.start)}, compared at its own precision (day, month or year), is "
        f"before the subject's first exposure DM.{p.reference}{end}; otherwise Y (a missing "
        "start cannot be shown to precede treatment); null for a subject never exposed"
    )


@describes("lobxfl")
def _say_lobxfl(p: LobxflParams, w: Words) -> str:
    return (
        f"Y on the last record per USUBJID and {w.refs(p.by)} with a non-missing "
        f"{w.ref(p.result)} and a complete {w.ref(p.date)} on or before DM.{p.reference}; "
        "null on every other record"
    )

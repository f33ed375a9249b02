"""SDTM timing rules: visits, epochs, subject elements, last observation before exposure.

Registered into the same vocabulary as the general rules; study facts (visit table, element
definitions, unscheduled-visit conventions) come from the spec parameters and tables.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from cdiscforge.rules import Params, RuleContext, generator, rule
from cdiscforge.rules.basic import AggregateParams, aggregate
from cdiscforge.rules.words import Words, describes
from cdiscforge.vectorise import (
    broadcast,
    factorize_rows,
    isin,
    map_distinct,
    per_distinct,
)


def _datetime(iso: pd.Series) -> pd.Series:
    """ISO 8601 text to datetime64; date-only values at 00:00, partial dates NaT. Parsed
    once per distinct text (a visit date repeats over every joint and test of the visit)."""
    return per_distinct(_datetime_each, iso.astype("string"))


def _datetime_each(text: pd.Series) -> pd.Series:
    full = text.where(text.str.len() >= 10)
    return pd.to_datetime(full.str.replace("T", " "), format="mixed", errors="coerce")


class VisitnumParams(Params):
    folder: str = Field(description="reference to the collected visit label (e.g. raw.FOLDER)")
    key: str = Field(description="visits-table column holding that label (edc_folder, lab_visit)")
    date: str = Field(description="the record's ISO 8601 date (places unscheduled visits)")
    table: str = Field("visits", description="the spec table of planned visits")
    unscheduled: str = Field("UNS", description="labels starting with this are unscheduled visits")
    step: float = Field(
        0.01, description="VISITNUM increment per unscheduled visit after a planned one"
    )
    # The dataset whose visit numbers unscheduled records on the same date reuse (SV), so
    # LB, MK ... agree with SV; it is built first. Null: number them within this dataset.
    unscheduled_from: str | None = Field(
        "SV",
        description="dataset whose VISITNUM same-date unscheduled visits reuse (null: number here)",
    )
    label_pattern: str | None = Field(
        None,
        description="regular expression with a group named num (case-insensitive): a label "
        "matching it is an unscheduled visit numbered by its label, VISITNUM = num",
    )
    ref_fields = ("folder", "date")
    table_fields = ("table",)
    table_columns = ("key",)

    @field_validator("label_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return _label_pattern(value)

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
    mapping = dict(
        zip(table[p.key].astype("string").str.upper(), table["VISITNUM"].astype(float), strict=True)
    )
    # Per distinct collected label (a visit label repeats over all of its records).
    folder = ctx.ref(p.folder)
    codes, uniques = pd.factorize(folder, use_na_sentinel=False)
    distinct = pd.Series(uniques, dtype=folder.dtype, name=folder.name)
    distinct = distinct.astype("string").str.strip().str.upper()
    labels = broadcast(distinct, codes, folder.index)
    nums = broadcast(distinct.map(mapping).astype("Float64"), codes, folder.index)
    if p.label_pattern:
        numbered = _numbered(ctx.ref(p.folder), p.label_pattern)
        by_label = pd.to_numeric(numbered, errors="coerce").astype("Float64")
        clash = by_label.notna() & by_label.isin(list(mapping.values()))
        ctx.report(
            clash,
            f"unscheduled visit label numbered like a planned visit of table {p.table!r}",
            warn=True,
            examples=labels[clash].unique().tolist()[:3],
        )
        nums = nums.mask(nums.isna() & by_label.notna(), by_label)
    unmatched = labels.notna() & nums.isna()
    starts = distinct.str.startswith(p.unscheduled.upper()).fillna(False).to_numpy(dtype=bool)
    unsched = unmatched & pd.Series(starts[codes], index=folder.index)  # per distinct label
    ctx.input_error(
        unmatched & ~unsched,
        p.folder.removeprefix("raw."),
        labels,
        f"visit label not in table {p.table!r} ({p.key})",
    )
    if not unsched.any():
        return nums
    usubjid = ctx.ref("USUBJID")
    src = p.unscheduled_from
    if src and src in ctx.domains and ctx.dataset != src:
        # Only the unscheduled records are looked up (LB at 10,000 subjects: 13,000 of 1.6
        # million), in the SV records whose key one of them has (the same value for each
        # key as from all of SV: the last record's), not every record's key built and mapped.
        rows = np.flatnonzero(unsched.to_numpy())
        who = usubjid.iloc[rows].astype("string")
        day = ctx.ref(p.date).iloc[rows].astype("string").str.slice(0, 10)
        key = who + "|" + day
        sv = ctx.domains[src].frame
        sv_day = sv[f"{src}STDTC"].astype("string").str.slice(0, 10)
        sv_key = sv["USUBJID"].astype("string") + "|" + sv_day
        wanted = isin(sv_key, key)
        sv_map = dict(zip(sv_key[wanted], sv["VISITNUM"][wanted].astype(float), strict=False))
        nums = nums.mask(unsched, key.map(sv_map).astype("Float64"))
        found = nums.iloc[rows].notna().to_numpy()
        unsched = unsched & nums.isna()
        # The record's date has no visit in SV: say so, then number it here.
        ctx.report(
            unsched,
            f"unscheduled record(s) with no {src} visit on the same date: numbered after the "
            "subject's previous planned visit in this dataset",
            warn=True,
            examples=(who + " " + day)[~found].unique().tolist()[:3],
        )
    if unsched.any():
        day = ctx.ref(p.date).astype("string").str.slice(0, 10)
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
    num: str = Field("VISITNUM", description="reference to the record's VISITNUM")
    table: str = Field("visits", description="the spec table of planned visits")
    unscheduled_label: str = Field(
        "UNSCHEDULED", description="VISIT text for unscheduled visits, followed by the number"
    )
    folder: str | None = Field(
        None,
        description="reference to the collected visit label (e.g. raw.FOLDER), read with "
        "label_pattern",
    )
    label_pattern: str | None = Field(
        None,
        description="the visitnum rule's label_pattern: a label matching it gives VISIT = "
        "unscheduled_label and num as written (Unscheduled 1.10 -> UNSCHEDULED 1.10)",
    )
    ref_fields = ("num", "folder")
    table_fields = ("table",)

    @field_validator("label_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return _label_pattern(value)

    @model_validator(mode="after")
    def _both(self) -> VisitParams:
        if (self.folder is None) != (self.label_pattern is None):
            raise ValueError("give folder and label_pattern together")
        return self


@rule("visit", VisitParams)
def visit(ctx: RuleContext, p: VisitParams) -> pd.Series:
    """VISIT from VISITNUM: the table's name for planned visits, `UNSCHEDULED n.nn` else;
    with `folder`/`label_pattern`, a label numbered by the pattern keeps its number as
    written (`Unscheduled 1.1` -> `UNSCHEDULED 1.1`)."""
    table = ctx.study.table(p.table)
    mapping = dict(zip(table["VISITNUM"].astype(float), table["VISIT"].astype(str), strict=True))
    columns = [ctx.ref(p.num).astype("Float64")]
    if p.folder and p.label_pattern:
        columns.append(ctx.ref(p.folder))
    # Element-wise in (VISITNUM, folder): worked out per distinct pair (a handful of visits
    # over MK's 8.8 million records at 10,000 subjects) and kept as codes where the
    # context allows, not text masked and copied record by record.
    return per_distinct(
        lambda *columns: _visit_names(mapping, p, *columns), *columns, keep_codes=ctx.keep_codes
    )


def _visit_names(
    mapping: dict[float, str], p: VisitParams, nums: pd.Series, folder: pd.Series | None = None
) -> pd.Series:
    """The visit rule for each (VISITNUM, folder) row (see `visit`)."""
    names = map_distinct(nums, lambda v: mapping.get(float(v)))
    unplanned = nums.notna() & names.isna()
    labels = map_distinct(nums, lambda v: f"{p.unscheduled_label} {v:.2f}")
    if folder is not None and p.label_pattern:
        numbered = _numbered(folder, p.label_pattern)
        labels = labels.mask(numbered.notna(), p.unscheduled_label + " " + numbered)
        unplanned = unplanned | (numbered.notna() & nums.notna())
    return names.mask(unplanned, labels).astype("string")


def _label_pattern(value: str | None) -> str | None:
    """A visit label pattern: a valid regular expression with a group named num."""
    if value is None:
        return None
    try:
        compiled = re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from None
    if "num" not in compiled.groupindex:
        raise ValueError(f"{value!r} needs a group named num, e.g. (?P<num>\\d+(\\.\\d+)?)")
    return value


def _numbered(labels: pd.Series, pattern: str) -> pd.Series:
    """The visit number as written in each label matching `pattern` (null elsewhere)."""
    text = labels.astype("string").str.strip()
    got = text.str.extract(re.compile(pattern, re.IGNORECASE), expand=True)["num"]
    number = pd.to_numeric(got, errors="coerce")
    return got.astype("string").where(number.notna())


class VisitdyParams(Params):
    num: str = Field("VISITNUM", description="reference to the record's VISITNUM")
    table: str = Field("visits", description="the spec table of planned visits")
    ref_fields = ("num",)
    table_fields = ("table",)


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
    date: str = Field(
        description="the record's ISO 8601 date, placed among the subject's SE elements"
    )
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
    # Element-wise in (subject, date): placed once per distinct pair, then broadcast.
    return per_distinct(
        lambda usubjid, dtc: _epoch_of(usubjid, dtc, elements),
        ctx.ref("USUBJID").astype("string"),
        ctx.ref(p.date).astype("string"),
        keep_codes=ctx.keep_codes,
    )


def _epoch_of(usubjid: pd.Series, dtc: pd.Series, elements: pd.DataFrame) -> pd.Series:
    """The epoch rule for each (subject, ISO date) row (see `epoch`)."""
    when = _datetime(dtc)
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
    by: list[str] = Field(
        description="variables besides USUBJID: one flag per group (e.g. LBTESTCD)"
    )
    date: str = Field(description="the record's ISO 8601 date")
    result: str = Field(description="the result that must be non-missing")
    reference: str = Field("RFXSTDTC", description="DM variable: first exposure")
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
    rows = np.flatnonzero(eligible.to_numpy())
    # The last candidate of each (USUBJID, by) group in date order (ties: the later record):
    # sorted by group code, then date, stably, each group is one run and its last row wins.
    # The groups' codes come from the whole columns (the mapped columns' codes are known:
    # vectorise.coded), not from the candidates copied out and hashed again; which group
    # sorts first does not matter, only that each is contiguous.
    groups = factorize_rows(*(ctx.out[c] for c in ["USUBJID", *p.by]))[0][rows]
    dates, _ = pd.factorize(when.iloc[rows], sort=True)  # ranks; none missing
    order = np.lexsort((dates, groups))  # stable: ties stay in record order
    groups = groups[order]
    ends = np.ones(len(groups), dtype=bool)
    ends[:-1] = groups[1:] != groups[:-1]
    flag = np.ones(len(ctx.out), dtype=np.int8)  # each record: Y (0) or null (1)
    flag[rows[order[ends]]] = 0
    return broadcast(pd.Series(["Y", None], dtype="string"), flag, ctx.out.index, ctx.keep_codes)


class TreatmentEmergentParams(Params):
    start: str = Field(description="the event's ISO 8601 start date")
    end: str | None = Field(None, description="the event's ISO 8601 end date")
    reference: str = Field("RFXSTDTC", description="DM variable: first exposure")
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


class MissedVisitsParams(Params):
    """Planned visits a subject missed, as SV records (SVPRESP = Y, SVOCCUR = N; SDTMIG 3.4),
    so a visit that never happened is visible instead of silently absent."""

    datasets: list[str] = Field(
        ["DM"], description="datasets read first (DM: the reference and end dates)"
    )
    form: str = Field(description="raw form of attended visits, one row per subject and visit")
    folder: str = Field(description="column of `form` holding the visit label")
    key: str = Field(
        description="column of `table` holding the same label (matched case-insensitively)"
    )
    table: str = Field(
        "visits", description="spec table of planned visits (VISITNUM, VISIT, VISITDY)"
    )
    window_after: str | None = Field(
        None, description="column of `table`: days after VISITDY the visit may still happen"
    )
    reference: str = Field("RFSTDTC", description="DM variable: the subject's day 1")
    end: str = Field("RFPENDTC", description="DM variable: end of the subject's participation")
    form_fields = ("form",)
    form_columns = ("folder",)
    table_fields = ("table",)
    table_columns = ("key", "window_after")
    dataset_fields = ("datasets",)

    def domains(self) -> set[str]:
        return {"DM", *self.datasets}


@generator("missed_visits", MissedVisitsParams)
def missed_visits(ctx: RuleContext, params: MissedVisitsParams) -> pd.DataFrame:
    """Planned visits a subject missed, for SV's SVPRESP = Y / SVOCCUR = N records (SDTMIG 3.4).

    A planned visit (the `table`, default `visits`) is missed when the subject has no row for
    its label (`key` column, e.g. edc_folder) in the raw visits `form` (`folder` column)
    although its whole window had passed while the subject was in the study: first
    exposure (DM.`reference`, default RFSTDTC) + VISITDY - 1 + `window_after` days is on
    or before the end of participation (DM.`end`, default RFPENDTC). Subjects never exposed
    (screen failures) miss nothing. Columns: USUBJID, VISITNUM, VISIT.
    """
    p = params
    table = ctx.study.table(p.table)
    window = p.window_after
    source = ctx.store.source(p.form)
    seen = pd.DataFrame(
        {
            "USUBJID": ctx.study.subject_key(source.frame, p.form),
            "label": source.frame[p.folder].astype("string").str.strip().str.upper(),
        }
    )
    dm = ctx.domain("DM").frame
    start = pd.to_datetime(dm[p.reference].astype("string").str.slice(0, 10), errors="coerce")
    end = pd.to_datetime(dm[p.end].astype("string").str.slice(0, 10), errors="coerce")
    subjects = pd.DataFrame({"USUBJID": dm["USUBJID"].astype("string"), "t0": start, "t1": end})
    subjects = subjects.dropna(subset=["t0", "t1"])
    planned = pd.DataFrame(
        {
            "label": table[p.key].astype("string").str.upper(),
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


class ElementStart(Params):
    """One planned element and where its start date comes from."""

    ETCD: str = Field(description="the element's code (TE/TA ETCD)")
    start: AggregateParams = Field(
        description="an `aggregate` rule's parameters giving each subject's start"
    )


class SubjectElementsParams(Params):
    """SE records, one per element a subject entered, dated from events the study collects,
    so SE and EPOCH follow what happened rather than the plan."""

    elements: list[ElementStart] = Field(min_length=1, description="the elements in planned order")
    end: AggregateParams = Field(
        description="an `aggregate` rule's parameters: end of the last element entered"
    )

    def domains(self) -> set[str]:
        out = {"DM"} | self.end.domains()
        for element in self.elements:
            out |= element.start.domains()
        return out


@generator("subject_elements", SubjectElementsParams)
def subject_elements(ctx: RuleContext, params: SubjectElementsParams) -> pd.DataFrame:
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
    starts = []
    for order, element in enumerate(params.elements, 1):
        sub.variable = f"SE {element.ETCD}"
        values = aggregate(sub, element.start)
        starts.append(
            pd.DataFrame(
                {
                    "USUBJID": base["USUBJID"],
                    "ETCD": element.ETCD,
                    "SESTDTC": values.astype("string"),
                    "TAETORD": order,
                }
            )
        )
    end = aggregate(sub, params.end).astype("string")
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
    text += (
        f" follows the subject's last planned visit before {w.ref(p.date)} in steps of {p.step:g}"
    )
    if p.label_pattern:
        text += "; a label naming its own number (such as Unscheduled 1.1) takes that number"
    return text


@describes("visit")
def _say_visit(p: VisitParams, w: Words) -> str:
    return (
        f"name of the planned visit {w.ref(p.num)} in {w.table(p.table)}; for an unscheduled "
        f"visit {p.unscheduled_label} followed by {w.ref(p.num)}"
    ) + (
        f", as written in {w.ref(p.folder)} when the label names its number"
        if p.label_pattern
        else ""
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

"""Rule-level checks of every SDTM dataset built from the default (messy) 15-subject export.

Each check recomputes a convention independently of the rule that produced it: --DY by the
no-day-0 rule against DM.RFSTDTC, --SEQ 1..n per subject, VISITNUM/VISIT against TV and SV,
EPOCH against the subject's SE elements, CT values against their codelists; records are
conserved for every raw file; every dataset writes as XPT and reads back with pyreadstat.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from cdiscforge import (
    ct,
    sdtm,  # noqa: F401  (registers the SDTM rules)
)
from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.model import Dataset
from cdiscforge.spec import StudySpec, load_study
from cdiscforge.xpt import write_xpt

EXPECTED = {"DM", "EX", "PR", "LB", "AE", "MK", "SV", "DS", "SE", "TS", "TA", "TE", "TV", "TI",
            "MH", "SUPPDM", "SUPPAE", "SUPPPR", "IE", "CM", "IS"}  # fmt: skip
Built = tuple[StudySpec, dict[str, Dataset], BuildLog]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, seed_spec: Path, default_raw: Path) -> Built:
    # A copy of the study without its ADaM specs: these checks are about SDTM alone.
    spec = tmp_path_factory.mktemp("spec") / "spec"
    shutil.copytree(seed_spec, spec)
    shutil.rmtree(spec / "adam", ignore_errors=True)
    (spec / "adam").mkdir()
    study = load_study(spec)
    log = BuildLog()
    out = build_stage(study, "sdtm", RawStore(study, default_raw, log), log)
    return study, out, log


def _subject_datasets(out: dict[str, Dataset]) -> list[Dataset]:
    return [d for n, d in out.items() if not n.startswith("SUPP") and "USUBJID" in d.frame]


def _day(dtc: pd.Series) -> pd.Series:
    text = dtc.astype("string")
    return pd.to_datetime(text.str.slice(0, 10).where(text.str.len() >= 10), errors="coerce")


def test_every_dataset_is_built(built: Built) -> None:
    _, out, _ = built
    assert set(out) >= EXPECTED
    for name in EXPECTED:
        assert len(out[name].frame) > 0, name
    assert (
        len(out["MK"].frame)
        == out["MK"]
        .frame.drop_duplicates(["USUBJID", "VISITNUM", "MKTESTCD", "MKLOC", "MKLAT"])
        .shape[0]
    )


def test_study_days_have_no_day_zero(built: Built) -> None:
    _, out, _ = built
    dm = out["DM"].frame.set_index("USUBJID")["RFSTDTC"]
    checked = 0
    for ds in _subject_datasets(out):
        f = ds.frame
        for dy in [c for c in f.columns if c.endswith("DY") and c != "VISITDY"]:
            dtc = dy[:-2] + "DTC"
            if dtc not in f:
                continue
            ref = _day(f["USUBJID"].map(dm))
            delta = (_day(f[dtc]) - ref).dt.days
            expected = delta.where(delta < 0, delta + 1).astype("Float64")
            got = f[dy].astype("Float64")
            same = (got == expected).fillna(False) | (got.isna() & expected.isna())
            assert same.all(), f"{ds.name}.{dy}: {f.loc[~same, ['USUBJID', dtc, dy]].head()}"
            assert not (got == 0).any(), f"{ds.name}.{dy} has a day 0"
            checked += int(got.notna().sum())
    assert checked > 10000


def test_seq_is_one_to_n_per_subject(built: Built) -> None:
    _, out, _ = built
    for ds in _subject_datasets(out):
        seq = f"{ds.name}SEQ"
        if seq not in ds.frame:
            continue
        f = ds.frame
        assert f[seq].notna().all() and (f[seq] % 1 == 0).all(), ds.name
        assert not f.duplicated(["USUBJID", seq]).any(), ds.name
        per = f.groupby("USUBJID")[seq].agg(["min", "max", "size"])
        # unique whole numbers from 1 to the record count: exactly 1..n
        assert (per["min"] == 1).all() and (per["max"] == per["size"]).all(), ds.name
    ts = out["TS"].frame
    per = ts.groupby("TSPARMCD")["TSSEQ"].agg(["min", "max", "size"])
    assert (per["min"] == 1).all() and (per["max"] == per["size"]).all()
    assert per.loc["TTYPE", "size"] == 2


def test_visits_agree_with_tv_and_sv(built: Built) -> None:
    _, out, _ = built
    tv = out["TV"].frame
    planned = dict(zip(tv["VISITNUM"].astype(float), tv["VISIT"], strict=True))
    sv = out["SV"].frame
    sv_visits = set(zip(sv["USUBJID"], sv["VISITNUM"].astype(float), sv["VISIT"], strict=True))
    unscheduled = sv[~sv["VISITNUM"].astype(float).isin(planned)]
    assert len(unscheduled) >= 1  # the messy export has an unscheduled visit
    assert unscheduled["VISIT"].str.startswith("UNSCHEDULED ").all()
    seen_unscheduled = 0
    for ds in _subject_datasets(out):
        f = ds.frame
        if "VISITNUM" not in f:
            continue
        nums = f["VISITNUM"].astype(float)
        assert nums.notna().all(), ds.name
        is_planned = nums.isin(planned)
        assert (f.loc[is_planned, "VISIT"] == nums[is_planned].map(planned)).all(), ds.name
        if "VISITDY" in f:
            tv_dy = dict(zip(tv["VISITNUM"].astype(float), tv["VISITDY"], strict=True))
            assert (f.loc[is_planned, "VISITDY"] == nums[is_planned].map(tv_dy)).all()
        pairs = set(zip(f["USUBJID"], nums, f["VISIT"], strict=True))
        unplanned = {p for p in pairs if p[1] not in planned}
        assert unplanned <= sv_visits, f"{ds.name}: unscheduled visits not in SV: {unplanned}"
        seen_unscheduled += len(unplanned) if ds.name != "SV" else 0
    assert seen_unscheduled >= 1  # LB's unscheduled sample took SV's number


def test_epoch_agrees_with_subject_elements(built: Built) -> None:
    _, out, _ = built
    se = out["SE"].frame

    def when(s: pd.Series) -> pd.Series:
        text = s.astype("string")
        return pd.to_datetime(
            text.where(text.str.len() >= 10).str.replace("T", " "), format="mixed", errors="coerce"
        )

    # A date-only element end covers its whole day (a timed record that day is inside).
    end = when(se["SEENDTC"])
    end = end.mask(se["SEENDTC"].str.len() == 10, end + pd.Timedelta(hours=23, minutes=59))
    elements = pd.DataFrame(
        {"USUBJID": se["USUBJID"], "start": when(se["SESTDTC"]), "end": end,
         "EPOCH_SE": se["EPOCH"], "last": se.groupby("USUBJID")["TAETORD"].transform("max")
         == se["TAETORD"]}
    )  # fmt: skip
    checked = 0
    for ds in _subject_datasets(out):
        f = ds.frame
        if "EPOCH" not in f or ds.name == "SE":
            continue
        dtc = next(c for c in (f"{ds.name}DTC", f"{ds.name}STDTC") if c in f)
        rec = pd.DataFrame({"USUBJID": f["USUBJID"], "t": when(f[dtc]), "EPOCH": f["EPOCH"]})
        rec["i"] = range(len(rec))
        pairs = rec.merge(elements, on="USUBJID")
        inside = (pairs["t"] >= pairs["start"]) & (
            (pairs["t"] < pairs["end"]) | (pairs["last"] & (pairs["t"] <= pairs["end"]))
        )
        # the element that started last at or before t (elements are contiguous)
        hit = pairs[inside].sort_values("start").groupby("i").tail(1).set_index("i")["EPOCH_SE"]
        expected = rec["i"].map(hit)
        same = (rec["EPOCH"] == expected).fillna(False) | (rec["EPOCH"].isna() & expected.isna())
        # partial dates (YYYY-MM, YYYY) are checked in test_sdtm_package.py
        same |= (f[dtc].str.len() < 10).fillna(False).to_numpy()
        assert same.all(), f"{ds.name}: {rec[~same].head()}"
        checked += int(rec["EPOCH"].notna().sum())
    assert checked > 10000
    assert set(se["EPOCH"]) == {"SCREENING", "TREATMENT", "FOLLOW-UP"}


def test_ct_values_are_in_their_codelists(built: Built) -> None:
    study, out, _ = built
    per_category = {"PROTOCOL MILESTONE": "PROTMLST", "DISPOSITION EVENT": "NCOMPLT"}
    # Sponsor codelists (study.yaml `codelists`, e.g. AEREL) hold their declared terms.
    sponsor = {cl.key: set(cl.terms) for cl in study.sponsor_codelists}
    assert sponsor["AEREL"]
    checked = 0
    for name, ds in out.items():
        for var in ds.variables:
            if not var.codelist or var.name not in ds.frame:
                continue
            values = ds.frame[var.name].dropna().astype("string")
            if name == "DS" and var.name == "DSDECOD":
                for cat, codelist in per_category.items():
                    sub = ds.frame.loc[ds.frame["DSCAT"] == cat, "DSDECOD"]
                    assert set(sub) <= ct.codelist(codelist).values, (cat, set(sub))
                continue
            allowed = sponsor.get(var.codelist) or ct.codelist(var.codelist).values
            bad = set(values) - allowed
            assert not bad, f"{name}.{var.name}: {bad} not in {var.codelist}"
            checked += len(values)
    assert checked > 50000


def test_reconciliation_balances_for_every_raw_file(built: Built, default_raw: Path) -> None:
    study, out, log = built
    recon = log.reconciliation_frame()
    assert recon["balanced"].all()
    assert (recon["read"] == recon["written"] + recon["rejected"]).all()
    assert set(study.forms) <= set(recon["source"])
    raw_lab = pd.read_csv(default_raw / "lab.csv", dtype=str)
    sent_twice = int(raw_lab.duplicated(["PATID", "ACCESSION", "TESTCODE"]).sum())
    assert sent_twice >= 1  # the messy export repeats a lab record
    lab = recon[(recon["source"] == "lab") & (recon["dataset"] == "LB")].iloc[0]
    assert lab["read"] == len(raw_lab)
    assert lab["rejected"] == sent_twice and "duplicate lab record" in lab["reasons"]
    assert lab["written"] == len(out["LB"].frame) == len(raw_lab) - sent_twice
    dup = [e for e in log.warnings if e.dataset == "LB" and "duplicate" in e.message]
    assert dup and dup[0].count == sent_twice and 1 <= len(dup[0].examples) <= sent_twice
    enrol = recon[(recon["source"] == "enrolment") & (recon["dataset"] == "DS")]
    screened = len(out["DM"].frame)
    assert sorted(enrol["read"]) == [screened, screened]
    assert enrol["written"].sum() == screened + int(out["DM"].frame["ARMNRS"].eq(
        "SCREEN FAILURE").sum())  # fmt: skip


def test_mess_is_resolved_and_logged(built: Built) -> None:
    _, out, log = built
    ae = out["AE"].frame
    not_resolved = ae["AEOUT"] == "NOT RECOVERED/NOT RESOLVED"
    assert ae.loc[not_resolved, "AEENDTC"].isna().all()
    partial = ae["AESTDTC"].str.len() < 10
    assert partial.any() and ae.loc[partial, "AESTDY"].isna().all()
    assert (ae["AETERM"].str.len() <= 200).all()
    supp = out["SUPPAE"].frame
    assert (supp["QNAM"] == "AETERM1").sum() >= 1
    assert out["EX"].frame["EXROUTE"].eq("INTRAVENOUS").all()  # IV / intravenous variants
    lb = out["LB"].frame
    qualified = lb["LBSTRESC"].str.match(r"^[<>]")
    assert qualified.any() and lb.loc[qualified, "LBSTRESN"].isna().all()
    assert lb.loc[qualified, "LBNRIND"].isna().all()
    crp = lb[(lb["LBTESTCD"] == "CRP") & (lb["LBORRESU"] == "mg/dL")]
    assert len(crp) >= 1 and (crp["LBSTRESU"] == "mg/L").all()
    plain = crp[~crp["LBORRES"].str.match(r"^[<>]")]
    assert ((plain["LBSTRESN"] - pd.to_numeric(plain["LBORRES"]) * 10).abs() < 1e-9).all()
    assert (lb.groupby(["USUBJID", "LBTESTCD"])["LBLOBXFL"].count() <= 1).all()
    transliterated = [e for e in log.warnings if "non-ASCII" in e.message]
    assert transliterated
    for ds in out.values():
        for col in ds.frame.select_dtypes(include=["string", "object"]).columns:
            assert ds.frame[col].dropna().astype(str).str.isascii().all(), (ds.name, col)


def test_every_dataset_writes_xpt_and_reads_back(built: Built, tmp_path: Path) -> None:
    study, out, _ = built
    created = datetime.fromisoformat(study.creation_datetime)
    for name, ds in out.items():
        path = write_xpt(ds, tmp_path / f"{name.lower()}.xpt", created=created)
        frame, meta = pyreadstat.read_xport(str(path))
        assert frame.shape == ds.frame.shape, name
        assert list(frame.columns) == list(ds.frame.columns), name
        assert meta.table_name == name
        labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
        assert all(labels[v.name] == v.label for v in ds.variables), name
        read = pd.read_sas(path, format="xport", encoding="ascii")
        assert len(read) == len(ds.frame), name
    lb, _ = pyreadstat.read_xport(str(tmp_path / "lb.xpt"))
    assert sorted(lb["LBSTRESC"].unique()) == sorted(out["LB"].frame["LBSTRESC"].dropna().unique())

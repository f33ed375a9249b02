"""The second example study, CFDEMO-02 (specs/cfdemo02), built through the real CLI.

Its hand-made raw export (specs/cfdemo02/raw, README there) is shaped unlike the bundled
study's: US dates (MM/DD/YYYY, 12-hour times), a subject key of two columns (site and
subject number, the same number at both sites) with a USUBJID template, a wide vitals form
in degrees F, inches and pounds, a sponsor relationship scale, unscheduled visits numbered by
label ("Unscheduled 1.1") and partial dates; SDTM only. Every expected value below is worked
out by hand from the raw CSV files (the arithmetic is in the comments), never read from a
build, so a wrong conversion, key or visit number fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from lxml import etree

from cdiscforge.studies import study_dir

SPEC = study_dir("cfdemo02")
RAW = SPEC / "raw"
ODM = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}
SUBJECTS = [f"CFDEMO-02/{site}/{n}" for site, n in
            [("01", "001"), ("01", "002"), ("01", "003"), ("01", "004"),
             ("02", "001"), ("02", "002"), ("02", "003")]]  # fmt: skip
# Records per dataset, from the raw files: 7 subjects in dm.csv, ex.csv and ds.csv; DS holds
# a consent milestone and an end-of-study record per subject; 29 rows in visits.csv (27
# planned visits attended + 2 unscheduled); 6 rows in ae.csv; SE: 3 elements entered by each
# of the 7 subjects (all reached the Day 3 visit); TV 4 visits, TA 3 elements, TE 3, TI 4.
# VS from the 29 vitals rows, counting the filled test columns: a subject with all four
# planned visits has 6 (screening: BP x2, pulse, temperature, weight, height) + 4 (Day 1) +
# 4 (Day 3) + 5 (Day 8: + weight) = 19 records; five such subjects = 95; 02/002 without Day 8
# 14, plus 6 NOT DONE records for its Day 8 row (VSPERF = N: one per test of the form);
# 02/003 (no Day 8) 14; the unscheduled rows 3 (BP repeat: SYSBP, DIABP, PULSE) and
# 4 (+ temperature): 95 + 14 + 6 + 14 + 3 + 4 = 136.
COUNTS = {"DM": 7, "EX": 7, "DS": 14, "SV": 29, "AE": 6, "SUPPAE": 6, "SE": 21, "VS": 136,
          "TV": 4, "TA": 3, "TE": 3, "TI": 4}  # fmt: skip


@dataclass
class Built:
    out: Path
    proc: subprocess.CompletedProcess[str]

    def xpt(self, name: str) -> pd.DataFrame:
        frame, _ = pyreadstat.read_xport(str(self.out / "sdtm" / f"{name.lower()}.xpt"))
        return frame


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("cfdemo02") / "out"
    cmd = [sys.executable, "-m", "cdiscforge.cli", "build", "--spec", str(SPEC),
           "--raw", str(RAW), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return Built(out, proc)


def _ok(built: Built) -> None:
    assert built.proc.returncode == 0, built.proc.stderr[-3000:]


def _one(frame: pd.DataFrame, **where: object) -> pd.Series:
    rows = frame
    for col, value in where.items():
        rows = rows[rows[col] == value]
    assert len(rows) == 1, (where, len(rows))
    return rows.iloc[0]


def test_builds_sdtm_only_and_validates_clean(built: Built) -> None:
    _ok(built)
    assert "validation clean" in built.proc.stdout
    sdtm = {p.stem.upper() for p in (built.out / "sdtm").glob("*.xpt")}
    assert sdtm == set(COUNTS) | {"TS"}
    # An SDTM-only study: no ADaM, no efficacy tables, no ADaM Dataset-JSON.
    assert not (built.out / "adam").exists()
    assert not (built.out / "tables").exists()
    assert not (built.out / "datasetjson" / "adam").exists()
    assert "0 ADaM" in built.proc.stdout
    results = json.loads((built.out / "validation" / "results.json").read_text("utf-8"))
    open_findings = [
        (f["rule_id"], f["dataset"], f["severity"]) for f in results["findings"]
        if not f.get("waiver")
    ]  # fmt: skip
    assert open_findings == []  # every finding is explained by specs/cfdemo02/waivers.yaml


def test_record_counts(built: Built) -> None:
    _ok(built)
    got = {name: len(built.xpt(name)) for name in COUNTS}
    assert got == COUNTS
    # The wide form is read once: its 29 rows are routed to 136 records, none rejected.
    recon = pd.read_csv(built.out / "reconciliation.csv", dtype=str, keep_default_na=False)
    vitals = _one(recon, source="vitals", dataset="VS")
    assert (vitals["read"], vitals["written"], vitals["rejected"]) == ("29", "29", "0")
    assert "136" in vitals["routed"]
    # The one imputed value (AGE from the partial birth date) is in the build log.
    log = (built.out / "build.log").read_text("utf-8")
    assert "age not exact from a partial birth date: lower possible age used" in log


def test_validate_command_agrees(built: Built, tmp_path: Path) -> None:
    """`cdiscforge validate` on the published package, with the study's waivers: exit 0."""
    _ok(built)
    cmd = [sys.executable, "-m", "cdiscforge.cli", "validate", str(built.out), "--report",
           str(tmp_path / "report"), "--waivers", str(SPEC / "waivers.yaml")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = json.loads((tmp_path / "report" / "results.json").read_text("utf-8"))
    assert [f["rule_id"] for f in results["findings"] if not f.get("waiver")] == []


def test_usubjid_template_and_subject_keys(built: Built) -> None:
    _ok(built)
    dm = built.xpt("DM")
    assert sorted(dm["USUBJID"]) == SUBJECTS
    row = _one(dm, USUBJID="CFDEMO-02/02/001")
    assert (row["SUBJID"], row["SITEID"]) == ("02-001", "02")
    # Subject 001 exists at both sites: every aggregate joins on site and number together.
    assert _one(dm, USUBJID="CFDEMO-02/01/001")["RFSTDTC"] == "2025-03-17T08:05"
    assert row["RFSTDTC"] == "2025-04-15T07:55"
    assert row["RFPENDTC"] == "2025-04-22"
    for name in ("AE", "EX", "DS", "SV", "VS", "SE"):
        assert set(built.xpt(name)["USUBJID"]) <= set(SUBJECTS), name


def test_us_dates_times_and_partial_dates(built: Built) -> None:
    _ok(built)
    dm = built.xpt("DM")
    # 12-hour clock: 01:30 PM is 13:30.
    ex = built.xpt("EX")
    assert _one(ex, USUBJID="CFDEMO-02/02/003")["EXSTDTC"] == "2025-04-17T13:30"
    assert _one(ex, USUBJID="CFDEMO-02/01/002")["EXSTDTC"] == "2025-03-18T08:20"
    assert _one(dm, USUBJID="CFDEMO-02/01/003")["RFICDTC"] == "2025-03-05"
    # UN/UN/1988 -> 1988; age at consent 2025-04-01: 36 or 37, the lower is taken.
    row = _one(dm, USUBJID="CFDEMO-02/02/001")
    assert (row["BRTHDTC"], row["AGE"]) == ("1988", 36)
    # 02/28/1979 to 2025-03-05: 46 completed years.
    assert _one(dm, USUBJID="CFDEMO-02/01/003")["AGE"] == 46
    ae = built.xpt("AE")
    fatigue = _one(ae, USUBJID="CFDEMO-02/02/001")
    assert fatigue["AESTDTC"] == "2025-04"  # 04/UN/2025: the day is unknown
    assert pd.isna(fatigue["AESTDY"])  # no study day from a partial date
    assert fatigue["AEENDTC"] == "2025-04-22"
    assert fatigue["AEENDY"] == 8  # 2025-04-15 is day 1
    ongoing = _one(ae, USUBJID="CFDEMO-02/02/003")
    assert ongoing["AEENDTC"] == "" and ongoing["AEENRTPT"] == "ONGOING"


def test_vitals_pivot_and_unit_conversions(built: Built) -> None:
    _ok(built)
    vs = built.xpt("VS")

    def rec(subject: str, visitnum: float, testcd: str) -> pd.Series:
        return _one(vs, USUBJID=f"CFDEMO-02/{subject}", VISITNUM=visitnum, VSTESTCD=testcd)

    # 100.4 F: (100.4 - 32) * 5 / 9 = 38.0 C (the fever at the unscheduled visit 2.1).
    fever = rec("01/003", 2.1, "TEMP")
    assert (fever["VSORRES"], fever["VSORRESU"]) == ("100.4", "F")
    assert (fever["VSSTRESN"], fever["VSSTRESC"], fever["VSSTRESU"]) == (38.0, "38", "C")
    assert fever["VSLOC"] == "ORAL CAVITY"
    # A date-only record on the dosing day (pre-dose vitals) falls before the 08:05 dose.
    assert rec("01/001", 2, "SYSBP")["EPOCH"] == "SCREENING"
    assert rec("01/001", 3, "SYSBP")["EPOCH"] == "FOLLOW-UP"  # Day 3: discharge
    # 98.2 F: 66.2 * 5 / 9 = 36.777... -> 36.8 C.
    temp = rec("01/001", 1, "TEMP")
    assert (temp["VSSTRESN"], temp["VSSTRESC"]) == (36.8, "36.8")
    # 70 in * 2.54 = 177.8 cm; 176.4 lb * 0.45359237 = 80.0137 -> 80.0 kg.
    height = rec("01/001", 1, "HEIGHT")
    assert (height["VSORRESU"], height["VSSTRESN"], height["VSSTRESU"]) == ("in", 177.8, "cm")
    weight = rec("01/001", 1, "WEIGHT")
    assert (weight["VSORRESU"], weight["VSSTRESN"], weight["VSSTRESU"]) == ("LB", 80.0, "kg")
    # 64.5 in * 2.54 = 163.83 -> 163.8 cm.
    assert rec("01/002", 1, "HEIGHT")["VSSTRESN"] == 163.8
    # Every converted record, recomputed from its VSORRES (no value of the export sits on a
    # rounding tie at 0.1).
    formulas = {"TEMP": (lambda f: (f - 32) * 5 / 9, "F", "C"),
                "HEIGHT": (lambda i: i * 2.54, "in", "cm"),
                "WEIGHT": (lambda lb: lb * 0.45359237, "LB", "kg")}  # fmt: skip
    done = vs[vs["VSORRES"] != ""]
    for testcd, (convert, orresu, stresu) in formulas.items():
        rows = done[done["VSTESTCD"] == testcd]
        # 29 rows less the BP-only repeat and the NOT DONE row; 7 screenings; + 5 Day 8 rows
        assert len(rows) == {"TEMP": 27, "HEIGHT": 7, "WEIGHT": 7 + 5}[testcd]
        expected = [round(convert(float(v)), 1) for v in rows["VSORRES"]]
        assert rows["VSSTRESN"].tolist() == expected, testcd
        assert set(rows["VSORRESU"]) == {orresu} and set(rows["VSSTRESU"]) == {stresu}
    # Blood pressure stays as collected, with its position from the sponsor's list.
    bp = rec("01/003", 2.1, "SYSBP")
    assert (bp["VSORRES"], bp["VSSTRESN"], bp["VSSTRESU"], bp["VSPOS"]) == (
        "132", 132.0, "mmHg", "SUPINE",
    )  # fmt: skip
    # The whole Day 8 row of 02/002 was not done: NOT DONE records with the reason, no result.
    nd = vs[(vs["USUBJID"] == "CFDEMO-02/02/002") & (vs["VISITNUM"] == 4)]
    assert len(nd) == 6
    assert set(nd["VSSTAT"]) == {"NOT DONE"}
    assert set(nd["VSREASND"]) == {"Subject declined"}
    assert set(nd["VSORRES"]) == {""} and nd["VSSTRESN"].isna().all()
    # Baseline: the last result on or before the dose: the Day 1 (pre-dose) record, except
    # weight and height, measured at screening (and weight again on Day 8).
    flagged = vs[vs["VSLOBXFL"] == "Y"]
    assert len(flagged) == 7 * 6
    assert set(flagged.loc[flagged["VSTESTCD"].isin(["HEIGHT", "WEIGHT"]), "VISITNUM"]) == {1}
    assert set(flagged.loc[flagged["VSTESTCD"] == "TEMP", "VISITNUM"]) == {2}


def test_unscheduled_visits_numbered_by_label(built: Built) -> None:
    _ok(built)
    sv = built.xpt("SV")
    uns = _one(sv, USUBJID="CFDEMO-02/01/002", VISITNUM=1.1)
    assert uns["VISIT"] == "UNSCHEDULED 1.1"
    assert uns["SVSTDTC"] == "2025-03-10"
    assert uns["SVPRESP"] == "" and uns["SVOCCUR"] == ""
    assert _one(sv, USUBJID="CFDEMO-02/01/003", VISITNUM=2.1)["VISIT"] == "UNSCHEDULED 2.1"
    planned = _one(sv, USUBJID="CFDEMO-02/01/002", VISITNUM=4)
    assert (planned["VISIT"], planned["VISITDY"], planned["SVSTDY"]) == ("DAY 8", 8, 8)
    vs = built.xpt("VS")
    assert set(vs.loc[vs["VISITNUM"] == 1.1, "VISIT"]) == {"UNSCHEDULED 1.1"}
    assert sorted(set(sv["VISITNUM"])) == [1, 1.1, 2, 2.1, 3, 4]


def test_sponsor_codelists(built: Built) -> None:
    _ok(built)
    ae = built.xpt("AE")
    nausea = _one(ae, USUBJID="CFDEMO-02/01/003", AESPID="1")
    assert nausea["AEREL"] == "RELATED"
    assert set(ae["AEREL"]) == {"RELATED", "POSSIBLY RELATED", "UNLIKELY RELATED", "NOT RELATED"}
    assert _one(ae, USUBJID="CFDEMO-02/01/001", AESPID="1")["AESER"] == "N"  # "No" -> N
    define = etree.parse(str(built.out / "sdtm" / "define.xml"))
    lists = {
        cl.get("OID"): cl
        for cl in define.iterfind(".//odm:CodeList", ODM)
        if "AEREL_SP" in cl.get("OID", "") or "VSPOS_SP" in cl.get("OID", "")
    }
    aerel = next(cl for oid, cl in lists.items() if "AEREL_SP" in oid)
    codes = [
        item.get("CodedValue")
        for item in aerel
        if etree.QName(item).localname in ("CodeListItem", "EnumeratedItem")
    ]
    assert codes == ["RELATED", "POSSIBLY RELATED", "UNLIKELY RELATED", "NOT RELATED"]
    assert aerel.find("odm:Alias", ODM) is None  # a sponsor list: no NCI code
    item = next(
        i for i in define.iterfind(".//odm:ItemDef", ODM) if i.get("OID", "").endswith("AE.AEREL")
    )
    assert item.find("odm:CodeListRef", ODM).get("CodeListOID") == aerel.get("OID")
    # The CSV list (a subset of CDISC POSITION) keeps the CDISC codes of its terms.
    vspos = next(cl for oid, cl in lists.items() if "VSPOS_SP" in oid)
    sitting = next(i for i in vspos if i.get("CodedValue") == "SITTING")
    assert sitting.find("odm:Alias", ODM).get("Name") == "C62122"

# ruff: noqa: E501  (raw CSV rows are kept whole, as an export has them)
"""A hand-checked mini export mapped to SDTM, and spec-only changes (a new lab test, a visit).

Three subjects written here as raw CSVs (every form the SDTM specs read): 101-001 enrolled with
an unscheduled visit, a `<2` lab result, a CRP in mg/dL from the local lab, a partial AE start
date and a lab record sent twice; 101-002 a screen failure; 101-003 enrolled with a joint that
could not be evaluated. Expected values below were worked out by hand from these rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cdiscforge import sdtm  # noqa: F401  (registers the SDTM rules)
from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.model import Dataset
from cdiscforge.spec import load_study

EDC = "STUDY,SITENUMBER,SUBJECT"
S1, S2, S3 = "NCT03691909,101,101-001", "NCT03691909,101,101-002", "NCT03691909,101,101-003"
U1, U2, U3 = (f"NCT03691909-101-00{i}" for i in (1, 2, 3))

RAW: dict[str, str] = {
    "enrolment.csv": f"""{EDC},SCRNDAT,ICDAT,ENROLLED,IEFAILID,SFREAS
{S1},03-SEP-2018,01-SEP-2018,Y,,
{S2},10-SEP-2018,10-SEP-2018,N,INCL03,Fewer than 6 swollen joints at screening
{S3},05-SEP-2018,04-SEP-2018,Y,,
""",
    "demographics.csv": f"""{EDC},DMDAT,BRTHDAT,SEX,RACE,RACEOTH,ETHNIC
{S1},03-SEP-2018,15-MAR-1970,Female,White,,Not Hispanic or Latino
{S2},10-SEP-2018,02-FEB-1980,Male,Other,Mestizo,Hispanic or Latino
{S3},05-SEP-2018,UN-JUN-1960,female,White,,Not Hispanic or Latino
""",
    "ra_history.csv": f"""{EDC},RADIAGDAT,RFSTAT,ACCPSTAT,PRIORDMARD
{S1},UN-MAR-2010,Positive,Negative,"Methotrexate, leflunomide"
{S2},12-JAN-2015,Negative,Negative,
{S3},UNK-UNK-2001, Positive,Positive,Sulfasalazine
""",
    "liposuction.csv": f"""{EDC},FOLDER,PRSTDAT,PRSTTIM,PRLOC,FATVOL
{S1},LIPO,01-OCT-2018,08:30,Abdomen,100
{S3},LIPO,02-OCT-2018,09:00,Abdomen,95.5
""",
    "infusion.csv": f"""{EDC},FOLDER,EXDOSE,EXDOSU,EXSTDAT,EXSTTIM,EXENDAT,EXENTIM,EXROUTE,EXLOT
{S1},BASELINE,200000000,cells,22-OCT-2018,09:00,22-OCT-2018,09:45,IV,LOT-001
{S3},BASELINE,200000000,cells,23-OCT-2018,10:00,23-OCT-2018,10:40,Intravenous,LOT-002
""",
    "visits.csv": f"""{EDC},FOLDER,VISDAT
{S1},SCREEN,03-SEP-2018
{S1},LIPO,01-OCT-2018
{S1},BASELINE,22-OCT-2018
{S1},WEEK1,29-OCT-2018
{S1},UNS1,05-NOV-2018
{S1},WEEK4,19-NOV-2018
{S2},SCREEN,10-SEP-2018
{S3},SCREEN,05-SEP-2018
{S3},LIPO,02-OCT-2018
{S3},BASELINE,23-OCT-2018
""",
    "joints.csv": f"""{EDC},FOLDER,ASMDAT,JOINT,ASSESSMENT,RESULT,NEREAS
{S1},BASELINE,22-OCT-2018,Wrist - Left,Swollen,Y,
{S1},BASELINE,22-OCT-2018,Wrist - Left,Tender,N,
{S1},WEEK4,19-NOV-2018,Wrist - Left,Swollen,N,
{S3},BASELINE,23-OCT-2018,Hip - Left,Tender,Not evaluable,Joint replacement
""",
    "lab.csv": """PATID,ACCESSION,LABVISIT,COLLDATE,COLLTIME,LABID,TESTCODE,TESTNAME,RESULT,UNIT,REFLOW,REFHIGH,SPECIMEN
101-001,A1,SCR,2018-09-03,08:00,CLAB01,CRP,"C-Reactive Protein, Quant",12.3,mg/L,0.0,4.9,Serum
101-001,A2,DAY 1,2018-10-22,08:15,LLAB02,CRP,"C-Reactive Protein, Quant",1.2,mg/dL,0.0,0.49,Serum
101-001,A3,WEEK 01,2018-10-29,08:30,CLAB01,TBIL,"Bilirubin, Total",0.5,mg/dL,0.0,1.2,Serum
101-001,A3,WEEK 01,2018-10-29,08:30,CLAB01,TBIL,"Bilirubin, Total",0.5,mg/dL,0.0,1.2,Serum
101-001,A4,UNSCHED,2018-11-05,09:10,CLAB01,IL6,"Interleukin-6, Serum",<2,pg/mL,0.0,15.5,Serum
101-003,B1,SCR,2018-09-05,08:00,CLAB01,CRP,"C-Reactive Protein, Quant",7.0,mg/L,0.0,4.9,Serum
""",
    "adverse_events.csv": f"""{EDC},AESPID,AETERM,LLT_NAME,LLT_CODE,PT_NAME,PT_CODE,HLT_NAME,HLT_CODE,HLGT_NAME,HLGT_CODE,SOC_NAME,SOC_CODE,AESTDAT,AEENDAT,AEONGO,AESEV,AESER,AESDTH,AESLIFE,AESHOSP,AESDISAB,AESCONG,AESMIE,AEREL,AERELPR,AEACN,AEOUT
{S1},1,headache,Headache,10019211,Headache,10019211,Headaches NEC,10019233,Headaches,10019231,Nervous system disorders,10029205,UN-NOV-2018,10-NOV-2018,N,Mild,N,N,N,N,N,N,N,Possibly related,Not related,Not applicable,Recovered/Resolved
{S3},1,RA flare,Rheumatoid arthritis,10039073,Rheumatoid arthritis,10039073,Rheumatoid arthropathies,10039075,Joint disorders,10023213,Musculoskeletal and connective tissue disorders,10028395,25-OCT-2018,,Y,moderate,N,N,N,N,N,N,N,Not related,Not related,Not applicable,Not recovered/Not resolved
""",
    "disposition.csv": f"""{EDC},DSDECOD,DSSTDAT,LASTCONTDAT
{S1},Completed,21-OCT-2019,21-OCT-2019
{S3},Completed,22-OCT-2019,22-OCT-2019
""",
}


def sdtm_only_copy(spec: Path, dest: Path) -> Path:
    """The study's spec folder without its ADaM specs (SDTM tests must not hang on them)."""
    shutil.copytree(spec, dest)
    shutil.rmtree(dest / "adam", ignore_errors=True)
    (dest / "adam").mkdir()
    return dest


def build(spec: Path, raw: Path) -> tuple[dict[str, Dataset], BuildLog]:
    study = load_study(spec)
    log = BuildLog()
    return build_stage(study, "sdtm", RawStore(study, raw, log), log), log


def write_raw(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def row(ds: Dataset, **match: object) -> dict[str, object]:
    frame = ds.frame
    mask = pd.Series(True, index=frame.index)
    for col, value in match.items():
        if isinstance(value, (int, float)):
            mask &= (frame[col].astype("Float64") == value).fillna(False)
        else:
            mask &= (frame[col].astype("string") == value).fillna(False)
    hits = frame[mask.to_numpy()]
    assert len(hits) == 1, f"{ds.name}: {len(hits)} rows match {match}"
    return {k: (None if pd.isna(v) else v) for k, v in hits.iloc[0].items()}


@pytest.fixture(scope="module")
def mini(
    tmp_path_factory: pytest.TempPathFactory, seed_spec: Path
) -> tuple[dict[str, Dataset], BuildLog]:
    base = tmp_path_factory.mktemp("mini")
    spec = sdtm_only_copy(seed_spec, base / "spec")
    return build(spec, write_raw(base / "raw", RAW))


def test_mini_builds_every_domain(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, _ = mini
    expected = {"DM", "EX", "PR", "SV", "DS", "SE", "TA", "TE", "TV", "TI", "TS", "MH", "AE",
                "LB", "MK", "SUPPPR", "SUPPAE", "SUPPDM", "IE", "CM", "IS"}  # fmt: skip
    assert expected <= set(out)
    assert len(out["DM"].frame) == 3
    assert len(out["EX"].frame) == 2
    assert len(out["DS"].frame) == 3 + 1 + 2  # consent x3, one screen failure, two completions


def test_mini_ex_pr(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, _ = mini
    ex = row(out["EX"], USUBJID=U1)
    assert ex["EXROUTE"] == "INTRAVENOUS"  # collected as IV
    assert ex["EXDOSU"] == "Therapeutic Cells"  # collected as cells
    assert ex["EXDOSE"] == 200000000
    assert (ex["EXSTDTC"], ex["EXENDTC"]) == ("2018-10-22T09:00", "2018-10-22T09:45")
    assert (ex["EXSTDY"], ex["EXENDY"], ex["EXSEQ"]) == (1, 1, 1)
    assert (ex["VISITNUM"], ex["VISIT"], ex["EPOCH"]) == (3, "BASELINE", "TREATMENT")
    pr = row(out["PR"], USUBJID=U3)
    assert pr["PRLOC"] == "ABDOMINAL REGION"
    assert (pr["PRSTDTC"], pr["PRSTDY"], pr["EPOCH"]) == ("2018-10-02T09:00", -21, "SCREENING")
    supp = row(out["SUPPPR"], USUBJID=U3)
    assert (supp["QNAM"], supp["QVAL"], supp["IDVAR"], supp["IDVARVAL"]) == (
        "FATVOL", "95.5", "PRSEQ", "1"
    )  # fmt: skip


def test_mini_sv_unscheduled_visit(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, _ = mini
    sv = out["SV"]
    attended = sv.frame[sv.frame["SVOCCUR"].ne("N").fillna(True)]
    assert len(attended) == 10
    # planned visits whose window passed before U1's last contact (2019-10-21) but that the
    # visit form lacks are SVOCCUR = N records without dates; WEEK 52's window ends later
    missed = sv.frame[(sv.frame["USUBJID"] == U1) & (sv.frame["SVOCCUR"] == "N")]
    assert missed["VISIT"].tolist() == ["WEEK 8", "WEEK 12", "WEEK 26"]
    assert missed["SVSTDTC"].isna().all() and (missed["SVPRESP"] == "Y").all()
    assert sv.frame.loc[sv.frame["USUBJID"] == U2, "SVOCCUR"].tolist() == ["Y"]  # screen failure
    uns = row(sv, USUBJID=U1, SVSTDTC="2018-11-05")
    # after WEEK 1 (VISITNUM 4): 4.01; 5 Nov is 14 days after the 22 Oct infusion: day 15
    assert (uns["VISITNUM"], uns["VISIT"], uns["VISITDY"]) == (4.01, "UNSCHEDULED 4.01", None)
    assert (uns["SVSTDY"], uns["EPOCH"]) == (15, "FOLLOW-UP")
    scr = row(sv, USUBJID=U1, VISITNUM=1)
    planned = row(out["TV"], VISITNUM=1)["VISITDY"]  # the protocol's day, not the actual one
    assert (scr["VISIT"], scr["VISITDY"], scr["SVSTDY"]) == ("SCREENING", planned, -49)


def test_mini_lb(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, log = mini
    lb = out["LB"]
    assert len(lb.frame) == 5  # six rows sent, one twice
    il6 = row(lb, USUBJID=U1, LBTESTCD="INTLK6")
    assert (il6["LBORRES"], il6["LBSTRESC"], il6["LBSTRESN"]) == ("<2", "<2", None)
    assert (il6["LBNRIND"], il6["LBSTRESU"]) == (None, "ng/L")
    assert (il6["VISITNUM"], il6["VISIT"]) == (4.01, "UNSCHEDULED 4.01")  # SV's number
    crp_local = row(lb, USUBJID=U1, LBREFID="A2")
    assert (crp_local["LBORRES"], crp_local["LBORRESU"]) == ("1.2", "mg/dL")
    assert (crp_local["LBSTRESC"], crp_local["LBSTRESN"], crp_local["LBSTRESU"]) == (
        "12", 12, "mg/L"
    )  # fmt: skip
    assert (crp_local["LBSTNRLO"], crp_local["LBSTNRHI"], crp_local["LBNRIND"]) == (0, 4.9, "HIGH")
    # 08:15 on the infusion day, before the 09:00 start: the last value before exposure
    assert (crp_local["LBLOBXFL"], crp_local["LBDY"], crp_local["EPOCH"]) == (
        "Y", 1, "SCREENING"
    )  # fmt: skip
    crp_scr = row(lb, USUBJID=U1, LBREFID="A1")
    assert (crp_scr["LBLOBXFL"], crp_scr["LBDY"], crp_scr["VISITNUM"]) == (None, -49, 1)
    bili = row(lb, USUBJID=U1, LBTESTCD="BILI")
    # 0.5 mg/dL x 17.104 = 8.552 umol/L, rounded to the catalogue's 0 decimals in umol/L
    assert (bili["LBSTRESC"], bili["LBSTRESN"], bili["LBSTRESU"]) == ("9", 9, "umol/L")
    assert (bili["LBCAT"], bili["LBSCAT"], bili["LBSPEC"]) == ("CHEMISTRY", "HEPATIC", "SERUM")
    assert sorted(lb.frame.loc[lb.frame["USUBJID"] == U1, "LBSEQ"]) == [1, 2, 3, 4]
    recon = log.reconciliation_frame()
    lab = recon[(recon["source"] == "lab") & (recon["dataset"] == "LB")].iloc[0]
    assert (lab["read"], lab["written"], lab["rejected"]) == (6, 5, 1)
    assert any("duplicate" in e.message and e.dataset == "LB" for e in log.warnings)


def test_mini_ae_partial_dates(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, _ = mini
    ae1 = row(out["AE"], USUBJID=U1)
    # November 2018 lies wholly in U1's follow-up (infusion ended 22-OCT-2018): EPOCH is known
    assert (ae1["AESTDTC"], ae1["AESTDY"], ae1["EPOCH"]) == ("2018-11", None, "FOLLOW-UP")
    assert (ae1["AEENDTC"], ae1["AEENDY"]) == ("2018-11-10", 20)
    assert (ae1["AESEV"], ae1["AEREL"], ae1["AEACN"]) == (
        "MILD",
        "POSSIBLY RELATED",
        "NOT APPLICABLE",
    )
    assert (ae1["AEDECOD"], ae1["AEPTCD"], ae1["AESOCCD"]) == ("Headache", 10019211, 10029205)
    ae3 = row(out["AE"], USUBJID=U3)
    assert (ae3["AESEV"], ae3["AEOUT"]) == ("MODERATE", "NOT RECOVERED/NOT RESOLVED")
    assert (ae3["AEENDTC"], ae3["AEENRTPT"], ae3["AEENTPT"]) == (None, "ONGOING", "END OF STUDY")
    assert (ae3["AESTDY"], ae3["EPOCH"]) == (3, "FOLLOW-UP")
    relpr = row(out["SUPPAE"], USUBJID=U1, QNAM="AERELPR")
    assert relpr["QVAL"] == "NOT RELATED"


def test_mini_mk_not_evaluable(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, _ = mini
    mk = out["MK"]
    hip = row(mk, USUBJID=U3)
    assert (hip["MKTESTCD"], hip["MKTEST"]) == ("TNDRIND", "Tenderness Indicator")
    assert (hip["MKLOC"], hip["MKLAT"]) == ("HIP JOINT", "LEFT")
    assert (hip["MKORRES"], hip["MKSTRESC"]) == (None, None)
    assert (hip["MKSTAT"], hip["MKREASND"], hip["MKLOBXFL"]) == (
        "NOT DONE",
        "Joint replacement",
        None,
    )
    swl = row(mk, USUBJID=U1, MKTESTCD="SWLLIND", VISITNUM=3)
    assert (swl["MKORRES"], swl["MKSTRESC"], swl["MKLOC"], swl["MKLAT"]) == (
        "Y", "Y", "WRIST JOINT", "LEFT"
    )  # fmt: skip
    # date-only assessment on the infusion day counts as pre-dose: baseline flag, SCREENING
    assert (swl["MKLOBXFL"], swl["MKDY"], swl["EPOCH"]) == ("Y", 1, "SCREENING")
    wk4 = row(mk, USUBJID=U1, VISITNUM=5)
    assert (wk4["MKDY"], wk4["MKLOBXFL"], wk4["EPOCH"]) == (29, None, "FOLLOW-UP")


def test_mini_ds_mh_se(mini: tuple[dict[str, Dataset], BuildLog]) -> None:
    out, _ = mini
    sf = row(out["DS"], USUBJID=U2, DSCAT="DISPOSITION EVENT")
    assert (sf["DSDECOD"], sf["DSTERM"]) == (
        "SCREEN FAILURE",
        "Fewer than 6 swollen joints at screening",
    )
    assert (sf["DSSTDTC"], sf["DSSTDY"], sf["EPOCH"], sf["DSSEQ"]) == (
        "2018-09-10",
        None,
        "SCREENING",
        2,
    )
    ic = row(out["DS"], USUBJID=U1, DSCAT="PROTOCOL MILESTONE")
    assert (ic["DSDECOD"], ic["DSSTDTC"], ic["DSSEQ"], ic["DSSTDY"]) == (
        "INFORMED CONSENT OBTAINED", "2018-09-01", 1, -51
    )  # fmt: skip
    eos = row(out["DS"], USUBJID=U1, DSDECOD="COMPLETED")
    assert (eos["DSSTDY"], eos["EPOCH"]) == (365, "FOLLOW-UP")
    mh = row(out["MH"], USUBJID=U1)
    assert (mh["MHSTDTC"], mh["MHTERM"]) == ("2010-03", "RHEUMATOID ARTHRITIS")
    assert row(out["MH"], USUBJID=U3)["MHSTDTC"] == "2001"
    rf = row(out["IS"], USUBJID=U3, ISTESTCD="RFATAB")
    assert rf["ISORRES"] == "POSITIVE"  # collected as " Positive"
    assert row(out["IS"], USUBJID=U1, ISBDAGNT="CYCLIC CITRULLINATED PEPTIDE")["ISORRES"] == (
        "NEGATIVE"
    )
    # one CM record per listed drug; none for a blank list
    cm = out["CM"].frame
    assert cm.loc[cm["USUBJID"] == U1, "CMTRT"].tolist() == ["Methotrexate", "leflunomide"]
    assert set(cm["USUBJID"]) == {U1, U3}
    ie = row(out["IE"], USUBJID=U2)
    assert (ie["IETESTCD"], ie["IECAT"], ie["IEORRES"], ie["EPOCH"]) == (
        "INCL03", "INCLUSION", "N", "SCREENING"
    )  # fmt: skip
    se = out["SE"].frame
    s1 = se[se["USUBJID"] == U1].sort_values("SESEQ")
    assert s1["ETCD"].tolist() == ["SCRN", "LIPO", "ADMSC", "FU"]
    assert s1["SESTDTC"].tolist() == [
        "2018-09-01", "2018-10-01T08:30", "2018-10-22T09:00", "2018-10-22T09:45"
    ]  # fmt: skip
    assert s1["SEENDTC"].tolist()[-1] == "2019-10-21"
    assert se.loc[se["USUBJID"] == U2, "ETCD"].tolist() == ["SCRN"]


def test_adding_a_lab_test_and_a_visit_is_a_spec_change(tmp_path: Path, seed_spec: Path) -> None:
    spec = sdtm_only_copy(seed_spec, tmp_path / "spec")
    catalogue = spec / "lab_tests.yaml"
    data = yaml.safe_load(catalogue.read_text())
    data["tests"].append(
        {"vendor_code": "GLUF", "vendor_name": "Glucose, Fasting", "LBTESTCD": "GLUC",
         "LBTEST": "Glucose", "LBCAT": "CHEMISTRY", "LBSPEC": "SERUM",
         "vendor_specimen": "Serum", "standard_unit": "mmol/L",
         "units": [{"unit": "mg/dL", "to_standard": 0.0555, "std_decimals": 3,
                    "labs": ["CLAB01"]}],
         "decimals": 0, "ref_range": {"low": 65, "high": 99}}
    )  # fmt: skip
    catalogue.write_text(yaml.safe_dump(data, sort_keys=False))
    design = spec / "trial_design.yaml"
    td = yaml.safe_load(design.read_text())
    td["visits"].append(
        {"VISITNUM": 8.5, "VISIT": "WEEK 39", "VISITDY": 274, "edc_folder": "WEEK39",
         "lab_visit": "WEEK 39", "target_day": 274, "window_before": 14, "window_after": 14,
         "epoch": "FOLLOW-UP", "TVSTRL": "39 weeks after infusion"}
    )  # fmt: skip
    design.write_text(yaml.safe_dump(td, sort_keys=False))
    files = dict(RAW)
    files["lab.csv"] += (
        '101-001,A9,WEEK 39,2019-07-22,08:00,CLAB01,GLUF,"Glucose, Fasting",90,mg/dL,65,99,Serum\n'
    )
    files["visits.csv"] += "NCT03691909,101,101-001,WEEK39,22-JUL-2019\n"
    out, _ = build(spec, write_raw(tmp_path / "raw", files))
    gluc = row(out["LB"], LBTESTCD="GLUC")
    assert (gluc["LBTEST"], gluc["LBSTRESC"], gluc["LBSTRESN"], gluc["LBSTRESU"]) == (
        "Glucose", "4.995", 4.995, "mmol/L"
    )  # fmt: skip
    assert (gluc["VISITNUM"], gluc["VISIT"], gluc["VISITDY"]) == (8.5, "WEEK 39", 274)
    assert row(out["TV"], VISITNUM=8.5)["VISIT"] == "WEEK 39"
    sv = row(out["SV"], USUBJID=U1, VISIT="WEEK 39")
    assert (sv["VISITNUM"], sv["SVSTDY"]) == (8.5, 274)


def test_unscheduled_lab_without_sv_visit_is_numbered_and_reported(
    tmp_path: Path, seed_spec: Path
) -> None:
    spec = sdtm_only_copy(seed_spec, tmp_path / "spec")
    files = dict(RAW)
    files["lab.csv"] += (
        '101-001,A8,UNSCHED,2018-11-12,08:00,CLAB01,CRP,"C-Reactive Protein, Quant",3.0,mg/L,0.0,4.9,Serum\n'
    )
    out, log = build(spec, write_raw(tmp_path / "raw", files))
    crp = row(out["LB"], LBREFID="A8")
    # SV has no visit on 12 Nov: after that subject's last planned lab visit (WEEK 1, 4)
    # and its unscheduled sample of 5 Nov (4.01, from SV), the second unscheduled one: 4.02
    assert (crp["VISITNUM"], crp["VISIT"]) == (4.02, "UNSCHEDULED 4.02")
    warned = [e for e in log.warnings if e.dataset == "LB" and "no SV visit" in e.message]
    assert warned and warned[0].count == 1


def test_remembered_codes_change_nothing_and_end_with_each_dataset(
    tmp_path: Path, seed_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The codes of broadcast text columns (vectorise.coded) are a shortcut only: the
    datasets and the log are the same without them, and none is left after the build."""
    from cdiscforge import vectorise

    spec = sdtm_only_copy(seed_spec, tmp_path / "spec")
    raw = write_raw(tmp_path / "raw", RAW)
    made: list[int] = []
    remember = vectorise._remember
    monkeypatch.setattr(
        vectorise, "_remember", lambda *a: (remember(*a), made.append(len(vectorise._CODED)))
    )
    with_codes, log_with = build(spec, raw)
    assert max(made) > 0  # the shortcut was taken
    assert vectorise._CODED == {}  # and dropped when each dataset was done
    monkeypatch.setattr(vectorise, "_remember", lambda *a: None)
    without, log_without = build(spec, raw)
    assert with_codes.keys() == without.keys()
    for name, ds in with_codes.items():
        pd.testing.assert_frame_equal(ds.frame, without[name].frame, check_exact=True)
    assert [e.__dict__ for e in log_with.events] == [e.__dict__ for e in log_without.events]

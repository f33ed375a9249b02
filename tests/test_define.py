"""define.xml 2.1: escaping, value-level metadata, ADaM origins, schema checks, cross-checks,
and the stylesheet rendering in headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lxml import etree

from cdiscforge.datasetjson import write_dataset_json
from cdiscforge.define import crosscheck, validate_define, write_define
from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import Dataset, StudyInfo, Variable
from cdiscforge.xpt import write_xpt

# Small copies of public reference files (tests/fixtures/README.md names their sources).
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The full reference folder beside the repository, when present (tests needing it skip).
REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
NS = {
    "odm": "http://www.cdisc.org/ns/odm/v1.3",
    "def": "http://www.cdisc.org/ns/def/v2.1",
    "xlink": "http://www.w3.org/1999/xlink",
}
CREATED = "2026-01-15T09:30:00"
STUDY = StudyInfo(
    studyid="NCT03691909",
    name="NCT03691909",
    description="Adipose-derived MSCs in rheumatoid arthritis",
    protocol="NCT03691909",
    sponsor="Test Sponsor",
    sdtm_ct_version="2025-03-28",
    adam_ct_version="2025-03-28",
)


def _dm(label: str = "Demographics") -> Dataset:
    frame = pd.DataFrame(
        {
            "STUDYID": ["NCT03691909"] * 3,
            "DOMAIN": ["DM"] * 3,
            "USUBJID": ["NCT03691909-01-001", "NCT03691909-01-002", "NCT03691909-01-003"],
            "AGE": [54.0, 61.0, 47.0],
            "SEX": ["F", "F", "M"],
            "BRTHDTC": ["1970-03-02", "1963", "1977-11"],
        }
    )
    variables = [
        Variable("STUDYID", "Study Identifier", core="Req", origin="Protocol"),
        Variable("DOMAIN", "Domain Abbreviation", core="Req", origin="Assigned"),
        Variable("USUBJID", "Unique Subject Identifier", core="Req", method="STUDYID-SUBJID"),
        Variable("AGE", "Age", type="Num", method="Years from BRTHDTC to RFICDTC"),
        Variable(
            "SEX",
            "Sex",
            codelist="SEX",
            origin="Collected",
            source="Investigator",
            crf_pages=("4",),
        ),
        Variable("BRTHDTC", "Date/Time of Birth", origin="Collected", source="Investigator"),
    ]
    return Dataset(
        "DM", label, frame, variables, klass="SPECIAL PURPOSE", keys=["STUDYID", "USUBJID"],
        domain="DM", structure="One record per subject",
    )  # fmt: skip


def _lb() -> Dataset:
    frame = pd.DataFrame(
        {
            "STUDYID": ["NCT03691909"] * 4,
            "DOMAIN": ["LB"] * 4,
            "USUBJID": ["NCT03691909-01-001"] * 4,
            "LBSEQ": [1.0, 2.0, 3.0, 4.0],
            "LBTESTCD": ["ALB", "ALB", "CRP", "CRP"],
            "LBTEST": ["Albumin", "Albumin", "C Reactive Protein", "C Reactive Protein"],
            "LBORRES": ["3.9", "4.1", "12", "<5"],
            "LBSTRESN": [39.0, 41.5, 12.0, np.nan],
            "LBDTC": ["2019-01-07T08:30", "2019-02-04T09:00", "2019-01-07T08:30", "2019-02-04"],
        }
    )
    variables = [
        Variable("STUDYID", "Study Identifier", core="Req"),
        Variable("DOMAIN", "Domain Abbreviation", core="Req"),
        Variable("USUBJID", "Unique Subject Identifier", core="Req"),
        Variable("LBSEQ", "Sequence Number", type="Num", core="Req"),
        Variable("LBTESTCD", "Lab Test or Examination Short Name", codelist="LBTESTCD"),
        Variable("LBTEST", "Lab Test or Examination Name", codelist="LBTEST"),
        Variable("LBORRES", "Result or Finding in Original Units", origin="Collected"),
        Variable("LBSTRESN", "Numeric Result/Finding in Standard Units", type="Num"),
        Variable("LBDTC", "Date/Time of Specimen Collection", origin="Collected"),
    ]
    return Dataset(
        "LB", "Laboratory Test Results", frame, variables, klass="FINDINGS",
        keys=["STUDYID", "USUBJID", "LBTESTCD", "LBDTC"], domain="LB",
        structure="One record per lab test per time point per visit per subject",
        value_level_by="LBTESTCD",
    )  # fmt: skip


def _adsl() -> Dataset:
    frame = pd.DataFrame(
        {
            "STUDYID": ["NCT03691909"] * 2,
            "USUBJID": ["NCT03691909-01-001", "NCT03691909-01-002"],
            "AGE": [54.0, 61.0],
            "TRTSDT": pd.to_datetime(["2019-01-07", "2019-01-21"]),
            "SAFFL": ["Y", "Y"],
        }
    )
    variables = [
        Variable("STUDYID", "Study Identifier", origin="Predecessor", predecessor="DM.STUDYID"),
        Variable("USUBJID", "Unique Subject Identifier", origin="Predecessor",
                 predecessor="DM.USUBJID"),
        Variable("AGE", "Age", type="Num", origin="Predecessor", predecessor="DM.AGE"),
        Variable("TRTSDT", "Date of First Exposure to Treatment", type="Num", format="DATE9.",
                 origin="Derived", method="Date part of the first EX.EXSTDTC"),
        Variable("SAFFL", "Safety Population Flag", codelist="NY", origin="Derived",
                 method="Y if the subject received the infusion"),
    ]  # fmt: skip
    return Dataset(
        "ADSL", "Subject-Level Analysis Dataset", frame, variables, standard="ADaMIG 1.3",
        klass="SUBJECT LEVEL ANALYSIS DATASET", structure="One record per subject",
        keys=["STUDYID", "USUBJID"],
    )  # fmt: skip


def _parse(path: Path) -> etree._ElementTree:
    return etree.parse(str(path))


def test_labels_with_markup_characters_come_out_as_valid_xml(tmp_path: Path) -> None:
    label = "Demographics & <baseline> \"quoted\" 'single'"
    dm = _dm(label)
    dm.variables[3].label = 'Age <years> & "completed"'
    out = write_define([dm], tmp_path / "define.xml", study=STUDY, standard="SDTM", created=CREATED)

    assert validate_define(out) == []
    doc = _parse(out)
    ig = doc.find(".//odm:ItemGroupDef[@OID='IG.DM']", NS)
    assert ig.findtext("odm:Description/odm:TranslatedText", namespaces=NS) == label
    age = doc.find(".//odm:ItemDef[@OID='IT.DM.AGE']", NS)
    assert (
        age.findtext("odm:Description/odm:TranslatedText", namespaces=NS) == dm.variables[3].label
    )


def test_sdtm_define_is_schema_valid_reproducible_and_has_the_stylesheet(tmp_path: Path) -> None:
    first = write_define(
        [_dm(), _lb()], tmp_path / "a" / "define.xml", study=STUDY, standard="SDTM",
        created=CREATED,
    )  # fmt: skip
    second = write_define(
        [_dm(), _lb()], tmp_path / "b" / "define.xml", study=STUDY, standard="SDTM",
        created=CREATED,
    )  # fmt: skip
    assert validate_define(first) == []
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "define2-1.xsl").stat().st_size > 100_000
    doc = _parse(first)
    root = doc.getroot()
    assert root.get("FileType") == "Snapshot"
    assert root.get("CreationDateTime") == CREATED
    assert root.get(f"{{{NS['def']}}}Context") == "Submission"
    standards = {
        (s.get("Name"), s.get("Type"), s.get("Version")) for s in doc.findall(".//def:Standard", NS)
    }
    assert ("SDTMIG", "IG", "3.4") in standards
    assert ("CDISC/NCI", "CT", "2025-03-28") in standards
    dm = doc.find(".//odm:ItemGroupDef[@OID='IG.DM']", NS)
    assert dm.get("Repeating") == "No"
    assert dm.find("def:Class", NS).get("Name") == "SPECIAL PURPOSE"
    assert dm.find("def:leaf", NS).get(f"{{{NS['xlink']}}}href") == "dm.xpt"
    keys = {r.get("ItemOID"): r.get("KeySequence") for r in dm.findall("odm:ItemRef", NS)}
    assert keys["IT.DM.USUBJID"] == "2" and keys["IT.DM.AGE"] is None
    # Codelists list the terms in the data, with NCI codes.
    sex = doc.find(".//odm:CodeList[@OID='CL.SEX']", NS)
    assert sex.get(f"{{{NS['def']}}}StandardOID") == "STD.CT.SDTM"
    assert [i.get("CodedValue") for i in sex.findall("odm:EnumeratedItem", NS)] == ["F", "M"]
    assert sex.find("odm:Alias", NS).get("Name") == "C66731"
    # Collected with CRF pages: a DocumentRef to the annotated CRF leaf.
    page = doc.find(
        ".//odm:ItemDef[@OID='IT.DM.SEX']/def:Origin/def:DocumentRef/def:PDFPageRef", NS
    )
    assert page.get("PageRefs") == "4"
    assert doc.find(".//def:AnnotatedCRF/def:DocumentRef", NS).get("leafID") == "LF.acrf"
    # Partial ISO 8601 dates are typed as such and carry no Length.
    brth = doc.find(".//odm:ItemDef[@OID='IT.DM.BRTHDTC']", NS)
    assert (brth.get("DataType"), brth.get("Length")) == ("partialDate", None)


def test_value_level_metadata_for_one_lab_test(tmp_path: Path) -> None:
    out = write_define(
        [_lb()], tmp_path / "define.xml", study=STUDY, standard="SDTM", created=CREATED
    )
    assert validate_define(out) == []
    doc = _parse(out)
    parent = doc.find(".//odm:ItemDef[@OID='IT.LB.LBSTRESN']", NS)
    assert parent.find("def:ValueListRef", NS).get("ValueListOID") == "VL.LB.LBSTRESN"
    vl = doc.find(".//def:ValueListDef[@OID='VL.LB.LBSTRESN']", NS)
    refs = {
        r.get("ItemOID"): r.find("def:WhereClauseRef", NS).get("WhereClauseOID")
        for r in vl.findall("odm:ItemRef", NS)
    }
    assert refs["IT.LB.LBSTRESN.ALB"] == "WC.LB.LBTESTCD.ALB"
    check = doc.find(".//def:WhereClauseDef[@OID='WC.LB.LBTESTCD.ALB']/odm:RangeCheck", NS)
    assert check.get("Comparator") == "EQ"
    assert check.get(f"{{{NS['def']}}}ItemOID") == "IT.LB.LBTESTCD"
    assert [v.text for v in check.findall("odm:CheckValue", NS)] == ["ALB"]
    alb = doc.find(".//odm:ItemDef[@OID='IT.LB.LBSTRESN.ALB']", NS)
    # ALB results 39 and 41.5: a float with one decimal; CRP's 12 alone is an integer.
    assert (alb.get("DataType"), alb.get("SignificantDigits")) == ("float", "1")
    assert "Albumin" in alb.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
    crp = doc.find(".//odm:ItemDef[@OID='IT.LB.LBSTRESN.CRP']", NS)
    assert crp.get("DataType") == "integer"
    # LBTESTCD decodes come from LBTEST in the data.
    item = doc.find(".//odm:CodeList[@OID='CL.LBTESTCD']/odm:CodeListItem[@CodedValue='CRP']", NS)
    assert item.findtext("odm:Decode/odm:TranslatedText", namespaces=NS) == "C Reactive Protein"


def test_adam_derived_method_predecessor_and_date_format(tmp_path: Path) -> None:
    out = write_define(
        [_adsl()], tmp_path / "define.xml", study=STUDY, standard="ADaM", created=CREATED
    )
    assert validate_define(out) == []
    doc = _parse(out)
    names = {s.get("Name"): s.get("Version") for s in doc.findall(".//def:Standard", NS)}
    assert names["ADaMIG"] == "1.3"
    ig = doc.find(".//odm:ItemGroupDef[@OID='IG.ADSL']", NS)
    assert ig.get("Purpose") == "Analysis" and ig.get("Domain") is None
    assert ig.find("def:Class", NS).get("Name") == "SUBJECT LEVEL ANALYSIS DATASET"
    ref = ig.find("odm:ItemRef[@ItemOID='IT.ADSL.TRTSDT']", NS)
    method = doc.find(f".//odm:MethodDef[@OID='{ref.get('MethodOID')}']", NS)
    assert method.findtext("odm:Description/odm:TranslatedText", namespaces=NS) == (
        "Date part of the first EX.EXSTDTC"
    )
    trtsdt = doc.find(".//odm:ItemDef[@OID='IT.ADSL.TRTSDT']", NS)
    assert trtsdt.get("DataType") == "integer"
    assert trtsdt.get(f"{{{NS['def']}}}DisplayFormat") == "DATE9."
    assert trtsdt.find("def:Origin", NS).get("Type") == "Derived"
    age = doc.find(".//odm:ItemDef[@OID='IT.ADSL.AGE']/def:Origin", NS)
    assert age.get("Type") == "Predecessor"
    assert age.findtext("odm:Description/odm:TranslatedText", namespaces=NS) == "DM.AGE"
    ny = doc.find(".//odm:CodeList[@OID='CL.NY']", NS)
    assert [i.get("CodedValue") for i in ny.findall("odm:EnumeratedItem", NS)] == ["Y"]


def _assert_standard_typo_located(errors: list[str], line: int) -> None:
    assert errors, "the typo define must fail the schema"
    assert f"line {line}" in errors[0]
    assert "def:Standard" in errors[0] and "'STDTMIG'" in errors[0]
    assert "{http" not in errors[0]


def test_define_with_standard_name_typo_is_rejected_with_a_located_message(
    tmp_path: Path,
) -> None:
    """The CDISC example define with its IG's Standard Name misspelt, as CDISC's own
    define-with-typo.xml has it: the schema error names the line."""
    good = (FIXTURES / "define-examples" / "defineV21-SDTM.xml").read_text(encoding="utf-8")
    lines = good.splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if "<def:Standard " in ln and 'Name="SDTMIG"' in ln)
    lines[at] = lines[at].replace('Name="SDTMIG"', 'Name="STDTMIG"', 1)
    typo = tmp_path / "define-typo.xml"
    typo.write_text("".join(lines), encoding="utf-8")
    _assert_standard_typo_located(validate_define(typo), at + 1)


def test_cdisc_define_with_typo_from_the_reference_folder_is_rejected() -> None:
    typo = REF / "dataset-json-examples" / "sdtm" / "define-with-typo.xml"
    if not typo.is_file():
        pytest.skip("shared/reference (CDISC Dataset-JSON examples) not beside the repository")
    _assert_standard_typo_located(validate_define(typo), 63)


def test_cdisc_reference_define_is_valid() -> None:
    assert validate_define(FIXTURES / "define-examples" / "defineV21-SDTM.xml") == []


def test_write_define_fails_the_build_on_a_schema_error(tmp_path: Path) -> None:
    dm = _dm()
    dm.variables[3].origin = "Guessed"
    with pytest.raises(CdiscforgeError, match=r"define\.xml line \d+: .*'Guessed'") as err:
        write_define([dm], tmp_path / "define.xml", study=STUDY, standard="SDTM", created=CREATED)
    # the offending line itself is quoted (a build's staging folder does not survive it)
    assert '> <def:Origin Type="Guessed"' in str(err.value)


def test_write_define_rejects_a_creation_time_that_is_not_iso(tmp_path: Path) -> None:
    with pytest.raises(CdiscforgeError, match="not an ISO 8601 datetime"):
        write_define([_dm()], tmp_path / "d.xml", study=STUDY, standard="SDTM", created="today")


def _write_package(tmp_path: Path, datasets: list[Dataset]) -> tuple[Path, Path, Path]:
    xpt_dir, json_dir = tmp_path / "sdtm", tmp_path / "json"
    xpt_dir.mkdir()
    for ds in datasets:
        ds.fit_lengths()
        write_xpt(ds, xpt_dir / f"{ds.name.lower()}.xpt", created=datetime(2026, 1, 15, 9, 30))
        write_dataset_json(
            ds, json_dir / f"{ds.name.lower()}.json", study=STUDY, created=CREATED,
            define_path="../../sdtm/define.xml",
        )  # fmt: skip
    define = write_define(
        datasets, xpt_dir / "define.xml", study=STUDY, standard="SDTM", created=CREATED
    )
    return define, xpt_dir, json_dir


def test_crosscheck_passes_on_a_consistent_package(tmp_path: Path) -> None:
    define, xpt_dir, json_dir = _write_package(tmp_path, [_dm(), _lb()])
    assert crosscheck(define, xpt_dir, json_dir) == []


def test_crosscheck_reports_each_kind_of_drift(tmp_path: Path) -> None:
    dm, lb = _dm(), _lb()
    define, xpt_dir, json_dir = _write_package(tmp_path, [dm, lb])
    # An XPT the define does not know, a JSON file short of rows, a value outside the codelist
    # and a longer variable than define.xml states.
    extra = _dm()
    extra.name = "XX"
    extra.fit_lengths()
    write_xpt(extra, xpt_dir / "xx.xpt", created=datetime(2026, 1, 15))
    short = Dataset(lb.name, lb.label, lb.frame.iloc[:2], lb.variables, keys=lb.keys)
    write_dataset_json(short, json_dir / "lb.json", study=STUDY, created=CREATED)
    drifted = _dm()
    drifted.frame.loc[0, "SEX"] = "UNDIFFERENTIATED"
    drifted.fit_lengths()
    write_xpt(drifted, xpt_dir / "dm.xpt", created=datetime(2026, 1, 15))

    problems = crosscheck(define, xpt_dir, json_dir)
    text = "\n".join(problems)
    assert "xx.xpt: no ItemGroupDef" in text
    assert "LB: lb.json has 2 rows, lb.xpt has 4" in text
    assert "SEX has values not in CodeList CL.SEX: 'UNDIFFERENTIATED'" in text
    assert "SEX has Length 1 in define.xml but 16 in the XPT" in text
    assert len(problems) == 4


@pytest.mark.parametrize("chunk_rows", [1, 2, 3])
def test_crosscheck_reads_codelist_values_across_chunks(tmp_path: Path, chunk_rows: int) -> None:
    """The values outside a codelist are found whichever chunk holds them (here the last row
    and the first), and the XPT row count is the sum of the chunks."""
    dm, lb = _dm(), _lb()
    define, xpt_dir, json_dir = _write_package(tmp_path, [dm, lb])
    assert crosscheck(define, xpt_dir, json_dir, chunk_rows=chunk_rows) == []
    drifted = _dm()
    drifted.frame.loc[2, "SEX"] = "X"
    drifted.frame.loc[0, "SEX"] = "Y"
    drifted.variable("SEX").length = 1
    write_xpt(drifted, xpt_dir / "dm.xpt", created=datetime(2026, 1, 15))
    short = Dataset(lb.name, lb.label, lb.frame.iloc[:3], lb.variables, keys=lb.keys)
    write_dataset_json(short, json_dir / "lb.json", study=STUDY, created=CREATED)
    assert crosscheck(define, xpt_dir, json_dir, chunk_rows=chunk_rows) == [
        "DM (dm.xpt): SEX has values not in CodeList CL.SEX: 'X', 'Y'",
        "LB: lb.json has 3 rows, lb.xpt has 4",
    ]


@pytest.mark.parametrize(("name", "encoding"), [("dm.xpt", None), ("ts.xpt", "windows-1252")])
def test_xpt_chunks_of_a_sas_written_file_are_read_xpt_in_pieces(
    name: str, encoding: str | None
) -> None:
    """CDISC pilot files (written by SAS; TS is Windows-1252): header, row length and values
    as read_xpt reads them, seven rows at a time."""
    from cdiscforge.xpt import iter_xpt_chunks, read_xpt, read_xpt_variables

    path = FIXTURES / "cdiscpilot01" / "sdtm" / name
    whole = read_xpt(path)
    assert read_xpt_variables(path) == whole.variables
    names = [v.name for v in whole.variables]
    chunks = list(iter_xpt_chunks(path, names, encoding=encoding, chunk_rows=7))
    assert len(chunks) == -(-len(whole) // 7)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole.frame)
    if encoding:
        with pytest.raises(UnicodeDecodeError):
            list(iter_xpt_chunks(path, ["TSVAL"], chunk_rows=7))


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 100])
def test_xpt_chunks_keep_blank_observations_inside_the_file(
    tmp_path: Path, chunk_rows: int
) -> None:
    """readstat drops all-blank observations at the end of what it reads, so a chunk must not
    end on one; at the end of the file they are the last card's padding and are dropped."""
    from cdiscforge.xpt import iter_xpt_chunks, read_xpt

    frame = pd.DataFrame({"A": ["x", "", None, "", "y"], "B": ["1", None, "", "", "2"]})
    blank = Dataset("BL", "Blank rows", frame, [Variable("A", "A"), Variable("B", "B")])
    path = write_xpt(blank, tmp_path / "bl.xpt", created=datetime(2026, 1, 15))
    whole = read_xpt(path)
    assert len(whole) == 5  # rows 1-3 blank; the 35 two-byte "rows" of padding are not rows
    chunks = list(iter_xpt_chunks(path, ["A", "B"], chunk_rows=chunk_rows))
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole.frame)
    assert sum(len(c) for c in iter_xpt_chunks(path, [], chunk_rows=chunk_rows)) == 5


def test_supp_qval_value_level_metadata_takes_each_qorig(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "STUDYID": ["NCT03691909"] * 3,
            "RDOMAIN": ["DM"] * 3,
            "USUBJID": ["NCT03691909-01-001", "NCT03691909-01-002", "NCT03691909-01-001"],
            "QNAM": ["RACEOTH", "RACEOTH", "ITTFL"],
            "QLABEL": ["Race, Other", "Race, Other", "Intent to Treat Flag"],
            "QVAL": ["MESTIZO", "MIXED", "Y"],
            "QORIG": ["CRF", "CRF", "Derived"],
        }
    )
    variables = [Variable(c, c.title()) for c in frame.columns]
    supp = Dataset(
        "SUPPDM", "Supplemental Qualifiers for DM", frame, variables,
        keys=["STUDYID", "RDOMAIN", "USUBJID", "QNAM"], value_level_by="QNAM",
    )  # fmt: skip
    out = write_define(
        [supp], tmp_path / "define.xml", study=STUDY, standard="SDTM", created=CREATED
    )
    assert validate_define(out) == []
    doc = _parse(out)
    ig = doc.find(".//odm:ItemGroupDef[@OID='IG.SUPPDM']", NS)
    assert ig.find("def:Class", NS).get("Name") == "RELATIONSHIP"  # from SDTMIG's SUPPQUAL
    race = doc.find(".//odm:ItemDef[@OID='IT.SUPPDM.QVAL.RACEOTH']", NS)
    assert race.find("def:Origin", NS).get("Type") == "Collected"  # QORIG CRF
    assert race.get("Length") == "7"
    assert "Race, Other" in race.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
    ittfl = doc.find(".//odm:ItemDef[@OID='IT.SUPPDM.QVAL.ITTFL']", NS)
    assert ittfl.find("def:Origin", NS).get("Type") == "Derived"


PILOT_FIXTURES = ["dm.xpt", "suppdm.xpt", "ts.xpt", "ta.xpt", "relrec.xpt"]
PILOT_FULL = [*PILOT_FIXTURES, "ae.xpt", "lbur.xpt"]


@pytest.mark.parametrize(
    ("folder", "names"),
    [
        (FIXTURES / "cdiscpilot01" / "sdtm", PILOT_FIXTURES),
        (REF / "cdiscpilot01" / "sdtm", PILOT_FULL),
    ],
    ids=["fixtures", "reference"],
)
def test_cdisc_pilot_xpts_give_a_valid_define_and_a_clean_crosscheck(
    tmp_path: Path, folder: Path, names: list[str]
) -> None:
    """Real SDTM files (CDISC pilot), metadata from the XPTs: the small copies under
    tests/fixtures always, the larger AE and LBUR too when shared/reference is beside us."""
    from cdiscforge.xpt import read_xpt

    if not all((folder / n).is_file() for n in names):
        pytest.skip(f"CDISC pilot files {names} not all present in {folder}")
    datasets = []
    for name in names:
        shutil.copyfile(folder / name, tmp_path / name)
        ds = read_xpt(tmp_path / name)
        if ds.name.startswith("SUPP"):
            ds.value_level_by = "QNAM"
        datasets.append(ds)
    define = write_define(
        datasets, tmp_path / "define.xml", study=STUDY, standard="SDTM", created=CREATED
    )
    for ds in datasets:
        write_dataset_json(ds, tmp_path / "json" / f"{ds.name.lower()}.json", study=STUDY,
                           created=CREATED)  # fmt: skip
    assert validate_define(define) == []
    assert crosscheck(define, tmp_path, tmp_path / "json") == []
    doc = _parse(define)
    classes = {
        ig.get("Name"): ig.find("def:Class", NS).get("Name")
        for ig in doc.findall(".//odm:ItemGroupDef", NS)
    }
    assert classes["TA"] == "TRIAL DESIGN" and classes["DM"] == "SPECIAL PURPOSE"
    if "LBUR" in classes:
        assert classes["LBUR"] == "FINDINGS"
    ta = doc.find(".//odm:ItemGroupDef[@OID='IG.TA']", NS)
    assert ta.get("IsReferenceData") == "Yes"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_define_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI must install it: apt-get install chromium)")
        pytest.skip("chromium is not installed; apt-get install -y chromium to run this test")
    _, xpt_dir, _ = _write_package(tmp_path, [_dm(), _lb()])
    port = _free_port()
    # Chromium blocks XSLT from file:// URLs, so the folder is served on loopback.
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=xpt_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/define.xml"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        dom = subprocess.run(
            [*common, "--virtual-time-budget=5000", "--dump-dom", url],
            capture_output=True, text=True, timeout=90, check=True,
        ).stdout  # fmt: skip
        png = tmp_path / "define-sdtm.png"
        subprocess.run(
            [*common, "--window-size=1400,1000", f"--screenshot={png}", url],
            capture_output=True, timeout=90, check=True,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    html = etree.HTML(dom)
    tables = html.xpath("//table[.//a[contains(@href, 'dm.xpt')]]")
    assert tables, "the datasets table with a link to dm.xpt did not render"
    text = " ".join(tables[0].itertext())
    assert "Demographics" in text and "Laboratory Test Results" in text
    assert png.stat().st_size > 10_000
    print(f"screenshot: {png}")


def test_codelist_of_an_all_null_variable_lists_the_ct_terms(tmp_path: Path) -> None:
    """A CodeList needs an item: when no value occurs (no joint NOT DONE), all CT terms."""
    adsl = _adsl()
    adsl.frame["SAFFL"] = pd.Series([None, None], dtype="string")
    out = write_define([adsl], tmp_path / "define.xml", study=STUDY, standard="ADaM",
                       created=CREATED)  # fmt: skip
    assert validate_define(out) == []
    items = _parse(out).findall(".//odm:CodeList[@OID='CL.NY']/odm:EnumeratedItem", NS)
    assert sorted(i.get("CodedValue") for i in items) == ["N", "NA", "U", "Y"]

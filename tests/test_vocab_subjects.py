"""Issue 14 parts 2, 6, 7: subject identity from a USUBJID template, the pivot record block
and aggregates by declared keys, on a small hand-written study (two sites, three subjects),
plus planted spec errors through the real CLI on a copy of the bundled study.

The mini study's USUBJID is `<protocol>/<SITE>/<SUBJNO>` (a protocol prefix and a slash),
its dosing form names the parts SITEID and PATID (`subject_columns`); every expected value
below was worked out by hand from the rows written here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.errors import InputError, InputErrors
from cdiscforge.model import Dataset
from cdiscforge.spec import load_study

STUDY_YAML = """
study:
  studyid: XY201
  name: XY-201
  description: A small hand-made study for the subject-identity tests.
  protocol: PROT-XY-201
  sponsor: Nobody
usubjid:
  parts: [{meta: protocol}, {column: SITE}, {column: SUBJNO}]
  separator: "/"
raw_forms: raw_forms.yaml
tables:
  cohorts: {file: tables.yaml, path: cohorts}
sdtm: [sdtm]
"""

RAW_FORMS = """
forms:
  demog:
    file: demog.csv
    key: [SITE, SUBJNO]
    columns:
      SITE: {type: str, required: true}
      SUBJNO: {type: str, required: true}
      SEX: {type: str}
  dosing:
    file: dosing.csv
    subject_columns: {SITE: SITEID, SUBJNO: PATID}
    columns:
      SITEID: {type: str, required: true}
      PATID: {type: str, required: true}
      DOSDAT: {type: date, format: "%Y-%m-%d"}
      DOSTIM: {type: time, format: "%H:%M"}
"""

TABLES = """
cohorts:
  - {USUBJID: PROT-XY-201/01/001, COHORT: LOW}
  - {USUBJID: PROT-XY-201/02/001, COHORT: HIGH}
  - {USUBJID: PROT-XY-201/01/002, COHORT: LOW}
"""

DM = """
dataset: DM
keys: [STUDYID, USUBJID]
records:
  - source: demog
variables:
  - {name: STUDYID, rule: constant, value: "{studyid}"}
  - {name: DOMAIN, rule: constant, value: DM}
  - {name: USUBJID, rule: usubjid}
  - {name: SUBJID, rule: assign, from: SUBJNO}
  - {name: SITEID, rule: assign, from: SITE}
  - {name: RFSTDTC, rule: aggregate, form: dosing, date: DOSDAT, time: DOSTIM, func: min}
  - {name: RFENDTC, rule: aggregate, form: dosing, date: DOSDAT, func: max}
  - {name: _NDOSE, type: Num, rule: aggregate, form: dosing, func: count}
  - {name: ARMCD, rule: lookup, table: cohorts, match: {USUBJID: USUBJID}, column: COHORT}
  - {name: SEX, rule: assign, from: SEX}
"""

DEMOG = """SITE,SUBJNO,SEX
01,001,F
02,001,M
01,002,F
"""

# Subject 001 of site 02 and subject 001 of site 01 share a subject number: only the
# template's SITE part tells their doses apart. 01/002 was never dosed.
DOSING = """SITEID,PATID,DOSDAT,DOSTIM
01,001,2021-03-02,09:30
01,001,2021-03-01,10:00
02,001,2021-04-05,20:15
"""


def write_study(root: Path, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    """The mini study's spec folder and raw folder under `root` (`extra`: more files,
    path relative to the spec folder or `raw/NAME`)."""
    spec, raw = root / "spec", root / "raw"
    (spec / "sdtm").mkdir(parents=True)
    raw.mkdir()
    files = {
        "study.yaml": STUDY_YAML,
        "raw_forms.yaml": RAW_FORMS,
        "tables.yaml": TABLES,
        "sdtm/dm.yaml": DM,
        "raw/demog.csv": DEMOG,
        "raw/dosing.csv": DOSING,
        **(extra or {}),
    }
    for rel, text in files.items():
        target = root / rel if rel.startswith("raw/") else spec / rel
        target.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return spec, raw


def build(spec: Path, raw: Path) -> tuple[dict[str, Dataset], BuildLog]:
    study = load_study(spec)
    log = BuildLog()
    return build_stage(study, "sdtm", RawStore(study, raw, log), log), log


def by_subject(ds: Dataset, column: str) -> dict[str, object]:
    frame = ds.frame
    return {
        u: (None if pd.isna(v) else v) for u, v in zip(frame["USUBJID"], frame[column], strict=True)
    }


def warnings_of(log: BuildLog, dataset: str) -> list[str]:
    return [f"{e.variable}: {e.message}" for e in log.warnings if e.dataset == dataset]


# --- 2. subject identity -----------------------------------------------------------------


def test_usubjid_template_reaches_dm_aggregate_and_lookup(tmp_path: Path) -> None:
    out, log = build(*write_study(tmp_path))
    dm = out["DM"]
    assert dm.frame["USUBJID"].tolist() == [
        "PROT-XY-201/01/001", "PROT-XY-201/01/002", "PROT-XY-201/02/001"
    ]  # fmt: skip
    # aggregate over the dosing form, keyed by its SITEID/PATID columns: earliest dose with
    # its time, latest dose date, number of doses (0 for the undosed subject)
    assert by_subject(dm, "RFSTDTC") == {
        "PROT-XY-201/01/001": "2021-03-01T10:00",
        "PROT-XY-201/01/002": None,
        "PROT-XY-201/02/001": "2021-04-05T20:15",
    }
    assert by_subject(dm, "RFENDTC")["PROT-XY-201/01/001"] == "2021-03-02"
    study = load_study(tmp_path / "spec")
    doses = study.subject_key(pd.read_csv(tmp_path / "raw/dosing.csv", dtype=str), "dosing")
    assert doses.tolist() == ["PROT-XY-201/01/001"] * 2 + ["PROT-XY-201/02/001"]
    # a spec table keyed by the template's USUBJID text
    assert by_subject(dm, "ARMCD") == {
        "PROT-XY-201/01/001": "LOW", "PROT-XY-201/01/002": "LOW", "PROT-XY-201/02/001": "HIGH"
    }  # fmt: skip
    assert not warnings_of(log, "DM")
    # define.xml's method text names the template's parts
    usubjid = next(v for v in dm.variables if v.name == "USUBJID")
    assert "SITE as collected" in (usubjid.method or "") and '"/"' in (usubjid.method or "")


def test_join_matching_no_subject_is_a_warning(tmp_path: Path) -> None:
    """The issue's case: USUBJID hand-built by `concat` with another separator than the
    template's, so no dosing record finds its subject. RFSTDTC is null for every subject
    (as before), but now the build log says so, naming dataset, variable and form."""
    spec, raw = write_study(tmp_path)
    dm = spec / "sdtm" / "dm.yaml"
    dm.write_text(
        dm.read_text()
        .replace(
            "{name: USUBJID, rule: usubjid}",
            "{name: USUBJID, rule: concat, sep: '-',"
            " parts: [{value: PROT-XY-201}, raw.SITE, raw.SUBJNO]}",
        )
        .replace("column: COHORT}", 'column: COHORT, unmatched: "null"}')
    )
    out, log = build(spec, raw)
    assert out["DM"].frame["RFSTDTC"].isna().all()
    found = [e for e in log.warnings if e.dataset == "DM" and e.variable == "RFSTDTC"]
    assert len(found) == 1
    assert "form dosing" in found[0].message and "none of its 2 subject key(s)" in found[0].message
    assert found[0].examples == ["form dosing: PROT-XY-201/01/001", "DM: PROT-XY-201-01-001"]
    # every aggregate over the form is reported, each under its own variable
    assert {e.variable for e in log.warnings if "form dosing" in e.message} == {
        "RFSTDTC", "RFENDTC", "_NDOSE"
    }  # fmt: skip


def test_default_template_is_the_old_rule(seed_spec: Path) -> None:
    study = load_study(seed_spec)
    frame = pd.DataFrame({"SUBJECT": [" 101-001", "101-002"], "PATID": ["101-003", "x"]})
    assert study.subject_key(frame, "enrolment").tolist() == [
        "NCT03691909-101-001", "NCT03691909-101-002"
    ]  # fmt: skip
    # the lab transfer names its subject PATID (its `subject`): the same key
    assert study.subject_key(frame, "lab").tolist() == ["NCT03691909-101-003", "NCT03691909-x"]


def test_cross_form_checks_compare_by_the_whole_subject_key(tmp_path: Path) -> None:
    """Subject 001 of site 02 consented on 10 Apr and was dosed on 5 Apr: an error. Keyed
    by PATID alone, 001 of site 01 (consent 15 Feb) would have hidden it."""
    spec, raw = write_study(tmp_path)
    forms = spec / "raw_forms.yaml"
    text = forms.read_text()
    text = text.replace(
        "      SEX: {type: str}\n",
        '      SEX: {type: str}\n      ICDAT: {type: date, format: "%Y-%m-%d"}\n',
    )
    text = text.replace(
        "    subject_columns: {SITE: SITEID, SUBJNO: PATID}\n",
        "    subject_columns: {SITE: SITEID, SUBJNO: PATID}\n"
        "    checks:\n      - {column: DOSDAT, not_before: {form: demog, column: ICDAT}}\n",
    )
    forms.write_text(text)
    (raw / "demog.csv").write_text(
        "SITE,SUBJNO,SEX,ICDAT\n01,001,F,2021-02-15\n02,001,M,2021-04-10\n01,002,F,2021-01-01\n"
    )
    with pytest.raises(InputError) as info:
        build(spec, raw)
    errors = info.value.errors if isinstance(info.value, InputErrors) else [info.value]
    problems = [str(e) for e in errors]
    assert len(problems) == 1, problems
    assert "dosing.csv, row 3, column DOSDAT, value '2021-04-05'" in problems[0]
    assert "demog.ICDAT of the same subject" in problems[0]


def test_subject_columns_errors_are_located(tmp_path: Path) -> None:
    spec, _ = write_study(tmp_path)
    forms = spec / "raw_forms.yaml"
    forms.write_text(
        forms.read_text().replace("{SITE: SITEID, SUBJNO: PATID}", "{SITE: SITENO, SUBJ: PATID}")
    )
    with pytest.raises(Exception) as info:
        load_study(spec)
    text = str(info.value)
    assert "raw_forms.yaml" in text
    assert "forms.dosing.subject_columns" in text
    assert "'SITENO' is not a column of form 'dosing'" in text or "'SUBJ'" in text


# --- 6. pivot ----------------------------------------------------------------------------

VITALS_FORM = """
  vitals:
    file: vitals.csv
    columns:
      SITE: {type: str, required: true}
      SUBJNO: {type: str, required: true}
      VISIT: {type: str, required: true}
      VSPERF: {type: str, values: ["Y", "N"]}
      VSREASND: {type: str}
      SYSBP: {type: str}
      DIABP: {type: str}
      TEMP: {type: str}
      TEMPU: {type: str}
      WEIGHT: {type: str}
"""

# Row 1: every test; row 2: DIABP and WEIGHT blank; row 3: not done (all blank, a reason);
# row 4: done but nothing written: no record at all.
VITALS = """SITE,SUBJNO,VISIT,VSPERF,VSREASND,SYSBP,DIABP,TEMP,TEMPU,WEIGHT
01,001,SCREEN,Y,,120,80,36.8,C,70.5
01,001,WEEK 1,Y,,118,,98.1,F,
02,001,SCREEN,N,Subject refused,,,,,
01,002,SCREEN,Y,,,,,,
"""

VS = """
dataset: VS
keys: [STUDYID, USUBJID, VSTESTCD, VISIT]
sort: [STUDYID, USUBJID, VSSEQ]
records:
  - source: vitals
    pivot:
      tests:
        - {TESTCD: SYSBP, TEST: Systolic Blood Pressure, result: SYSBP, unit: {value: mmHg}}
        - {TESTCD: DIABP, TEST: Diastolic Blood Pressure, result: DIABP, unit: {value: mmHg}}
        - {TESTCD: TEMP, TEST: Temperature, result: TEMP, unit: {column: TEMPU},
           qualifiers: {LOC: {value: ORAL CAVITY}}}
        - {TESTCD: WEIGHT, TEST: Weight, result: WEIGHT, unit: {value: kg}}
      not_done: {column: VSPERF, equals: "N", reason: VSREASND}
variables:
  - {name: STUDYID, rule: constant, value: "{studyid}"}
  - {name: DOMAIN, rule: constant, value: VS}
  - {name: USUBJID, rule: usubjid}
  - {name: VSSEQ, rule: seq, by: [VISIT, VSTESTCD]}
  - {name: VSTESTCD, rule: assign, from: TESTCD}
  - {name: VSTEST, rule: assign, from: TEST}
  - {name: VSORRES, rule: assign, from: ORRES}
  - {name: VSORRESU, rule: assign, from: ORRESU}
  - {name: VSSTAT, rule: assign, from: STAT}
  - {name: VSREASND, rule: assign, from: REASND}
  - {name: VSLOC, rule: assign, from: LOC}
  - {name: VISIT, rule: assign, from: VISIT}
"""


def pivot_study(root: Path) -> tuple[Path, Path]:
    spec, raw = write_study(root, {"sdtm/vs.yaml": VS, "raw/vitals.csv": VITALS})
    forms = spec / "raw_forms.yaml"
    forms.write_text(forms.read_text() + textwrap.dedent(VITALS_FORM).replace("\n", "\n  ")[1:])
    return spec, raw


def test_pivot_wide_vitals_form(tmp_path: Path) -> None:
    out, log = build(*pivot_study(tmp_path))
    vs = out["VS"].frame
    cols = ["USUBJID", "VISIT", "VSTESTCD", "VSORRES", "VSORRESU", "VSSTAT", "VSREASND", "VSLOC"]
    got = [[None if pd.isna(v) else v for v in r] for r in vs[cols].itertuples(index=False)]
    u1, u3 = "PROT-XY-201/01/001", "PROT-XY-201/02/001"
    assert got == [
        [u1, "SCREEN", "DIABP", "80", "mmHg", None, None, None],
        [u1, "SCREEN", "SYSBP", "120", "mmHg", None, None, None],
        [u1, "SCREEN", "TEMP", "36.8", "C", None, None, "ORAL CAVITY"],
        [u1, "SCREEN", "WEIGHT", "70.5", "kg", None, None, None],
        [u1, "WEEK 1", "SYSBP", "118", "mmHg", None, None, None],
        [u1, "WEEK 1", "TEMP", "98.1", "F", None, None, "ORAL CAVITY"],
        [u3, "SCREEN", "DIABP", None, None, "NOT DONE", "Subject refused", None],
        [u3, "SCREEN", "SYSBP", None, None, "NOT DONE", "Subject refused", None],
        [u3, "SCREEN", "TEMP", None, None, "NOT DONE", "Subject refused", "ORAL CAVITY"],
        [u3, "SCREEN", "WEIGHT", None, None, "NOT DONE", "Subject refused", None],
    ]
    assert vs["VSTEST"].iloc[0] == "Diastolic Blood Pressure"
    # define.xml: the test code, name and the constant location are the spec's (Assigned),
    # the results and the unit column are collected
    origin = {v.name: v.origin for v in out["VS"].variables}
    assert [origin[n] for n in ("VSTESTCD", "VSTEST", "VSLOC", "VSORRES")] == [
        "Assigned", "Assigned", "Assigned", "Collected"
    ]  # fmt: skip
    # the form is read once: one reconciliation row, each form row counted once, the
    # routing shown apart from the one true reject (a row with no result at all)
    recon = log.reconciliation_frame()
    mine = recon[recon["dataset"] == "VS"]
    assert len(mine) == 1
    r = mine.iloc[0]
    assert (r["source"], r["read"], r["written"], r["rejected"]) == ("vitals", 4, 3, 1)
    assert r["reasons"] == "no result in any pivot test: 1"
    assert r["routed"] == "3 row(s) -> 10 record(s) (4 tests)"
    assert bool(r["balanced"])
    text = " ".join(e.message for e in log.events if e.dataset == "VS")
    assert "3 vitals row(s) pivoted into 10 record(s)" in text
    assert "6 blank result(s) gave no record" in text  # row 2: 2, row 4: 4


def test_pivot_keeps_blank_tests_without_skip_empty(tmp_path: Path) -> None:
    spec, raw = pivot_study(tmp_path)
    vs = spec / "sdtm" / "vs.yaml"
    vs.write_text(
        vs.read_text().replace("reason: VSREASND}", "reason: VSREASND}\n      skip_empty: false")
    )
    out, log = build(spec, raw)
    assert len(out["VS"].frame) == 16  # 4 rows x 4 tests
    r = log.reconciliation_frame().query("dataset == 'VS'").iloc[0]
    assert (r["read"], r["written"], r["rejected"]) == (4, 4, 0)


# --- 7. aggregates by declared keys --------------------------------------------------------

VISIT_FORMS = """
  visits:
    file: visits.csv
    columns:
      SITE: {type: str, required: true}
      SUBJNO: {type: str, required: true}
      VISIT: {type: str, required: true}
  assessments:
    file: assessments.csv
    columns:
      SITE: {type: str, required: true}
      SUBJNO: {type: str, required: true}
      VISIT: {type: str, required: true}
      ASMDAT: {type: date, format: "%Y-%m-%d"}
      ASMTIM: {type: time, format: "%H:%M"}
      KIND: {type: str}
      DONE: {type: str, values: ["Y", "N"]}
"""

VISITS = """SITE,SUBJNO,VISIT
01,001,SCREEN
01,001,WEEK 1
02,001,SCREEN
01,002,SCREEN
"""

# 01/001 SCREEN: three assessments, the earliest (the X-ray) not done; 02/001: one, not done.
ASSESSMENTS = """SITE,SUBJNO,VISIT,ASMDAT,ASMTIM,KIND,DONE
01,001,SCREEN,2021-02-01,08:00,LAB,Y
01,001,SCREEN,2021-02-03,09:30,ECG,Y
01,001,SCREEN,2021-01-31,07:00,XRAY,N
01,001,WEEK 1,2021-03-08,10:00,LAB,Y
02,001,SCREEN,2021-03-20,11:00,LAB,N
"""

AGG = "rule: aggregate, form: assessments"
SV = f"""
dataset: SV
keys: [STUDYID, USUBJID, VISIT]
records:
  - source: visits
variables:
  - {{name: STUDYID, rule: constant, value: "{{studyid}}"}}
  - {{name: DOMAIN, rule: constant, value: SV}}
  - {{name: USUBJID, rule: usubjid}}
  - {{name: VISIT, rule: assign, from: VISIT}}
  - {{name: SVSTDTC, {AGG}, date: ASMDAT, time: ASMTIM, func: min, by: [VISIT],
     where: {{col: DONE, eq: "Y"}}}}
  - {{name: SVENDTC, {AGG}, date: ASMDAT, func: max, by: {{VISIT: raw.VISIT}}}}
  - {{name: SVNDONE, label: Assessments done, type: Num, {AGG}, func: count, by: [VISIT],
     where: {{col: DONE, eq: "Y"}}}}
  - {{name: SVFIRST, label: First assessment, type: Char, {AGG}, column: KIND, func: first,
     by: [VISIT]}}
  - {{name: SVLAST, label: Last assessment, type: Char, {AGG}, column: KIND, func: last,
     by: [VISIT]}}
  - {{name: SVECGFL, label: ECG at the visit, type: Char, {AGG}, func: any, by: [VISIT],
     where: {{col: KIND, eq: ECG}}}}
"""


def visit_study(root: Path) -> tuple[Path, Path]:
    spec, raw = write_study(
        root,
        {"sdtm/sv.yaml": SV, "raw/visits.csv": VISITS, "raw/assessments.csv": ASSESSMENTS},
    )
    forms = spec / "raw_forms.yaml"
    forms.write_text(forms.read_text() + textwrap.dedent(VISIT_FORMS).replace("\n", "\n  ")[1:])
    return spec, raw


def test_aggregates_per_subject_and_visit(tmp_path: Path) -> None:
    out, log = build(*visit_study(tmp_path))
    sv = out["SV"].frame
    cols = ["USUBJID", "VISIT", "SVSTDTC", "SVENDTC", "SVNDONE", "SVFIRST", "SVLAST", "SVECGFL"]
    got = [[None if pd.isna(v) else v for v in r] for r in sv[cols].itertuples(index=False)]
    u1, u2, u3 = "PROT-XY-201/01/001", "PROT-XY-201/01/002", "PROT-XY-201/02/001"
    assert got == [
        # min among done records (the not-done X-ray of 31 Jan left out); max over all
        [u1, "SCREEN", "2021-02-01T08:00", "2021-02-03", 2, "LAB", "XRAY", "Y"],
        [u1, "WEEK 1", "2021-03-08T10:00", "2021-03-08", 1, "LAB", "LAB", None],
        [u2, "SCREEN", None, None, 0, None, None, None],  # no assessment at all
        [u3, "SCREEN", None, "2021-03-20", 0, "LAB", "LAB", None],  # only a not-done one
    ]
    assert not [e for e in log.warnings if e.dataset == "SV"]
    # define.xml method text names the keys beside the subject
    meta = {v.name: v for v in out["SV"].variables}
    assert (meta["SVSTDTC"].method or "").startswith(
        "SVSTDTC: per subject and VISIT, the earliest date ASMDAT with time ASMTIM"
    )


def test_aggregate_by_a_key_matching_nothing_warns(tmp_path: Path) -> None:
    """Subjects match but the visit key never does (the assessments' VISIT against the
    visit form's SUBJNO): null for every record, and a warning naming the keys."""
    spec, raw = visit_study(tmp_path)
    sv = spec / "sdtm" / "sv.yaml"
    sv.write_text(sv.read_text().replace("by: {VISIT: raw.VISIT}", "by: {VISIT: raw.SUBJNO}"))
    out, log = build(spec, raw)
    assert out["SV"].frame["SVENDTC"].isna().all()
    found = [e for e in log.warnings if e.dataset == "SV" and e.variable == "SVENDTC"]
    assert len(found) == 1 and "form assessments" in found[0].message


# --- planted spec errors through the real CLI ------------------------------------------------

CLI = [sys.executable, "-m", "cdiscforge.cli"]


def _cli_build(spec: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "build", "--spec", str(spec), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def _refused(result: subprocess.CompletedProcess[str], out: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert not out.exists() or not list(out.rglob("*.xpt"))


def _edit(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_planted_pivot_and_aggregate_errors_through_the_cli(
    seed_spec: Path, tmp_path: Path
) -> None:
    """A pivot naming an unknown result column and a unit column, and an aggregate whose
    `by`, `where` and `date` name columns its form lacks: every one located, in one run."""
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)

    def pivot(d: dict) -> None:
        d["records"] = [{
            "source": "ra_history",
            "pivot": {"tests": [
                {"TESTCD": "RFATAB", "TEST": "Autoantibody, Rheumatoid Factor",
                 "result": "RFSTATUS"},
                {"TESTCD": "ATAB", "TEST": "Autoantibody", "result": "ACCPSTAT",
                 "unit": {"column": "ACCPUNIT"}},
            ]},
        }]  # fmt: skip

    _edit(spec / "sdtm" / "is.yaml", pivot)

    def aggregate(d: dict) -> None:
        rf = next(v for v in d["variables"] if v["name"] == "RFSTDTC")
        rf.update(by=["VISITNO"], where={"col": "EXDONE", "eq": "Y"})
        ic = next(v for v in d["variables"] if v["name"] == "RFICDTC")
        ic.update(date="ICDATE")

    _edit(spec / "sdtm" / "dm.yaml", aggregate)
    out = tmp_path / "out"
    _refused(
        _cli_build(spec, out), out,
        "is.yaml: records[0].pivot.tests[0].result: unknown raw column 'RFSTATUS' in form "
        "'ra_history'",
        "is.yaml: records[0].pivot.tests[1].unit.column: unknown raw column 'ACCPUNIT'",
        "dm.yaml: variables[4](RFSTDTC).by[0]: unknown raw column 'VISITNO' in form 'infusion'",
        "dm.yaml: variables[4](RFSTDTC).where: unknown raw column 'EXDONE' in form 'infusion'",
        "dm.yaml: variables[8](RFICDTC).date: unknown raw column 'ICDATE' in form 'enrolment'",
    )  # fmt: skip


def test_planted_subject_columns_error_through_the_cli(seed_spec: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    forms = spec / "raw_forms.yaml"
    text = forms.read_text()
    anchor = "    key: [PATID, ACCESSION, TESTCODE]\n"
    assert anchor in text
    forms.write_text(text.replace(anchor, anchor + "    subject_columns: {SUBJECT: PATNO}\n"))
    out = tmp_path / "out"
    _refused(
        _cli_build(spec, out), out,
        "raw_forms.yaml: forms.lab.subject_columns.SUBJECT: 'PATNO' is not a column of form "
        "'lab'",
    )  # fmt: skip


def test_usubjid_template_errors_are_located(tmp_path: Path) -> None:
    spec, _ = write_study(tmp_path)
    study = spec / "study.yaml"
    study.write_text(
        study.read_text().replace("{column: SITE}", "{column: SITE, value: X}")
        .replace("{meta: protocol}", "{meta: protocl}")
    )  # fmt: skip
    with pytest.raises(Exception) as info:
        load_study(spec)
    text = str(info.value)
    assert "study.yaml: usubjid.parts[0].meta" in text  # an unknown study key
    assert "usubjid.parts[1]" in text and "exactly one of meta, column or value" in text


def test_subject_key_per_distinct_subject_is_the_per_record_key(seed_spec: Path) -> None:
    """Built once per distinct subject and broadcast (a form repeats each subject): the
    same keys, missing and blank-padded subjects included, and its codes are remembered
    for the groupings by USUBJID after it."""
    from cdiscforge.vectorise import coded, forget

    study = load_study(seed_spec)
    subjects = pd.Series(
        [" 101-001", "101-002", None, "101-001 ", "101-002"] * 20, dtype="str", name="SUBJECT"
    )
    forget()
    keys = study.subject_key(pd.DataFrame({"SUBJECT": subjects}), "enrolment")
    expected = ("NCT03691909-" + subjects.astype("string").str.strip()).astype("string")
    pd.testing.assert_series_equal(keys, expected, check_exact=True)
    assert coded(keys) is not None
    forget()

"""The raw-export simulator: contract, determinism, attendance, each kind of mess, chunking."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cdiscforge.errors import SpecError
from cdiscforge.simulate import simulate
from cdiscforge.simulate.profile import MESS_KINDS

STUDY = Path(__file__).resolve().parent.parent / "specs" / "nct03691909"


def read(out: Path, form: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{form}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("messy")
    simulate(STUDY, out)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    simulate(STUDY, out, mess=False)
    return out


def test_files_follow_the_raw_forms_contract(tmp_path: Path) -> None:
    result = simulate(STUDY, tmp_path)
    forms = yaml.safe_load((STUDY / "raw_forms.yaml").read_text(encoding="utf-8"))["forms"]
    assert set(result.files) == set(forms)
    for form, spec in forms.items():
        path = result.files[form]
        assert path == tmp_path / spec["file"]
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert list(frame.columns) == list(spec["columns"]), form
        assert len(frame) == result.rows[form], form
        for column, meta in spec["columns"].items():
            if meta["required"]:
                assert (frame[column].str.strip() != "").all(), (form, column)
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = simulate(STUDY, tmp_path / "a", seed=7)
    b = simulate(STUDY, tmp_path / "b", seed=7)
    c = simulate(STUDY, tmp_path / "c", seed=8)
    for form in a.files:
        assert a.files[form].read_bytes() == b.files[form].read_bytes(), form
    assert a.files["joints"].read_bytes() != c.files["joints"].read_bytes()


def test_enrolment_and_attendance_match_the_paper(messy: Path) -> None:
    enrol = read(messy, "enrolment")
    assert len(enrol) == 23
    assert (enrol["ENROLLED"] == "Y").sum() == 15
    failed = enrol[enrol["ENROLLED"] == "N"]
    criteria = yaml.safe_load((STUDY / "trial_design.yaml").read_text())["criteria"]
    assert set(failed["IEFAILID"]) <= {c["IETESTCD"] for c in criteria}
    visits = read(messy, "visits")
    counts = visits["FOLDER"].value_counts()
    assert counts["SCREEN"] == 23  # screen failures had their screening visit
    expected = {"BASELINE": 15, "WEEK1": 15, "WEEK4": 14, "WEEK8": 13, "WEEK12": 15,
                "WEEK26": 14, "WEEK52": 13}  # fmt: skip
    assert {f: int(counts[f]) for f in expected} == expected
    demo = read(messy, "demographics").merge(enrol[["SUBJECT", "ENROLLED"]])
    enrolled = demo[demo["ENROLLED"] == "Y"]
    assert enrolled["SEX"].str.strip().str.title().value_counts().to_dict() == {
        "Female": 14,
        "Male": 1,
    }
    assert (enrolled["ETHNIC"].str.strip().str.lower() == "hispanic or latino").sum() == 4
    assert (read(messy, "disposition")["DSDECOD"] == "Completed").sum() == 15


def test_joint_form_has_134_assessments_per_attended_visit(clean: Path) -> None:
    joints = read(clean, "joints")
    visits = read(clean, "visits")
    attended = visits[~visits["FOLDER"].isin(["SCREEN", "LIPO"])]
    assert len(joints) == 134 * len(attended)
    per_visit = joints.groupby(["SUBJECT", "FOLDER", "ASSESSMENT"]).size().unstack()
    assert (per_visit["Swollen"] == 66).all() and (per_visit["Tender"] == 68).all()
    hips = joints[joints["JOINT"].str.startswith("Hip")]
    assert set(hips["ASSESSMENT"]) == {"Tender"}
    assert set(joints["RESULT"]) <= {"Y", "N", "Not evaluable"}
    ne = joints[joints["RESULT"] == "Not evaluable"]
    assert (ne["NEREAS"] != "").all() and (
        joints.loc[joints["RESULT"] != "Not evaluable", "NEREAS"] == ""
    ).all()


def test_lab_transfer_uses_vendor_naming_and_catalogue(clean: Path) -> None:
    lab = read(clean, "lab")
    catalogue = yaml.safe_load((STUDY / "lab_tests.yaml").read_text(encoding="utf-8"))["tests"]
    assert set(lab["TESTCODE"]) == {t["vendor_code"] for t in catalogue}
    assert (lab["PATID"].str.match(r"^101-\d{3}$")).all()
    assert lab["COLLDATE"].str.match(r"^\d{4}-\d{2}-\d{2}$").all()
    assert pd.to_numeric(lab["RESULT"], errors="coerce").notna().all()  # clean: all numeric
    assert set(lab["LABID"]) == {"CLAB01"}


EDC_PARTIAL = re.compile(r"^(UN-[A-Z]{3}|UNK-UNK)-\d{4}$")
CODED = ["SEX", "RACE", "ETHNIC", "RFSTAT", "ACCPSTAT", "EXROUTE", "AESEV", "AEOUT"]
FORMS = ["enrolment", "demographics", "ra_history", "liposuction", "infusion", "visits",
         "joints", "lab", "adverse_events", "disposition"]  # fmt: skip


def _all(out: Path) -> dict[str, pd.DataFrame]:
    return {form: read(out, form) for form in FORMS}


def _clean_values(clean_out: Path) -> dict[str, set[str]]:
    frames = _all(clean_out)
    return {c: set(f[c]) for f in frames.values() for c in CODED if c in f.columns}


def mess_found(out: Path, clean_out: Path) -> dict[str, bool]:
    """Which kinds of mess an export shows, judged from the files alone."""
    f = _all(out)
    lab = f["lab"]
    dates = pd.concat(
        [f["demographics"]["BRTHDAT"], f["ra_history"]["RADIAGDAT"],
         f["adverse_events"]["AESTDAT"], f["adverse_events"]["AEENDAT"]]
    )  # fmt: skip
    canonical = _clean_values(clean_out)
    variants = any(
        not set(frame[c]) <= canonical[c]
        for frame in f.values()
        for c in CODED
        if c in frame.columns
    )
    text = b"".join((out / f"{form}.csv").read_bytes() for form in FORMS)
    found = {
        "partial_dates": dates.str.match(EDC_PARTIAL).any(),
        "censored_results": lab["RESULT"].str.startswith("<").any()
        and lab["RESULT"].str.startswith(">").any(),
        "lab_units": ((lab["TESTCODE"] == "CRP") & (lab["UNIT"] == "mg/dL")).any(),
        "coded_value_variants": variants,
        "unscheduled_visit": f["visits"]["FOLDER"].str.startswith("UNS").any()
        and (lab["LABVISIT"] == "UNSCHED").any(),
        "duplicate_lab_record": lab.duplicated().any(),
        "non_ascii_text": not text.isascii(),
        "long_ae_verbatim": (f["adverse_events"]["AETERM"].str.len() > 200).any(),
    }
    return {kind: bool(value) for kind, value in found.items()}


def test_every_kind_of_mess_present_when_on(messy: Path, clean: Path) -> None:
    found = mess_found(messy, clean)
    assert found == dict.fromkeys(MESS_KINDS, True)
    partial = pd.concat(
        [read(messy, "ra_history")["RADIAGDAT"], read(messy, "demographics")["BRTHDAT"]]
    )
    assert partial.str.startswith("UN-").any() and partial.str.startswith("UNK-UNK-").any()


def test_no_mess_when_off(clean: Path) -> None:
    assert mess_found(clean, clean) == dict.fromkeys(MESS_KINDS, False)


@pytest.mark.parametrize("kind", MESS_KINDS)
def test_each_kind_switches_off_alone(kind: str, tmp_path: Path, clean: Path) -> None:
    simulate(STUDY, tmp_path, mess={kind: False})
    found = mess_found(tmp_path, clean)
    assert found[kind] is False
    assert all(v for k, v in found.items() if k != kind), found


def test_mess_never_moves_clean_values(messy: Path, clean: Path) -> None:
    # joints carry no mess: identical bytes whether mess is on or off
    assert (messy / "joints.csv").read_bytes() == (clean / "joints.csv").read_bytes()
    m, c = read(messy, "lab"), read(clean, "lab")
    m = m.drop_duplicates()
    m = m[m["LABVISIT"] != "UNSCHED"].reset_index(drop=True)
    plain = ~m["RESULT"].str.match(r"^[<>]") & (m["UNIT"] == c["UNIT"])
    assert (m.loc[plain, "RESULT"] == c.loc[plain, "RESULT"]).all()


def test_long_verbatim_keeps_its_coding(messy: Path) -> None:
    ae = read(messy, "adverse_events")
    long = ae[ae["AETERM"].str.len() > 200]
    assert len(long) == 1 and long["LLT_NAME"].iloc[0] == "Procedural pain"
    assert ae["LLT_CODE"].str.match(r"^\d{8}$").all() and (ae["AESER"] == "N").all()


def _profile_copy(tmp_path: Path) -> Path:
    study = tmp_path / "study"
    shutil.copytree(STUDY, study)
    return study


def test_chunks_scale_counts_and_keep_ids_unique(tmp_path: Path) -> None:
    study = _profile_copy(tmp_path)
    sim = study / "simulation.yaml"
    sim.write_text(sim.read_text().replace("chunk_subjects: 500", "chunk_subjects: 13"))
    result = simulate(study, tmp_path / "out", subjects=60, seed=3)
    enrol = read(tmp_path / "out", "enrolment")
    assert len(enrol) == 92 and (enrol["ENROLLED"] == "Y").sum() == 60  # 60 x 23/15
    assert enrol["SUBJECT"].is_unique and enrol["SUBJECT"].is_monotonic_increasing
    visits = read(tmp_path / "out", "visits")
    counts = visits["FOLDER"].value_counts()
    assert counts["WEEK4"] == 56 and counts["WEEK52"] == 52  # 14/15 and 13/15 of 60
    assert result.rows["joints"] == 134 * int(
        counts[["BASELINE", "WEEK1", "WEEK4", "WEEK8", "WEEK12", "WEEK26", "WEEK52"]].sum()
    )
    again = simulate(study, tmp_path / "again", subjects=60, seed=3)
    assert all(result.files[f].read_bytes() == again.files[f].read_bytes() for f in result.files)


def test_broken_profile_names_file_and_key(tmp_path: Path) -> None:
    study = _profile_copy(tmp_path)
    sim = study / "simulation.yaml"
    sim.write_text(sim.read_text().replace("  reference_enrolled: 15\n", ""))
    with pytest.raises(SpecError) as err:
        simulate(study, tmp_path / "out")
    assert "simulation.yaml" in str(err.value)
    assert err.value.key_path == "attendance.reference_enrolled"
    assert not (tmp_path / "out").exists()


def test_unknown_mess_kind_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown mess kinds"):
        simulate(STUDY, tmp_path, mess={"typos": True})


def test_mess_rate_outside_0_1_is_a_spec_error(tmp_path: Path) -> None:
    study = _profile_copy(tmp_path)
    sim = study / "simulation.yaml"
    sim.write_text(sim.read_text().replace("rate: 0.0005", "rate: 5"))
    with pytest.raises(SpecError) as err:
        simulate(study, tmp_path / "out")
    assert err.value.key_path == "mess.duplicate_lab_record.rate"


def test_failed_run_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cdiscforge.simulate as sim_pkg

    study = _profile_copy(tmp_path)
    sim = study / "simulation.yaml"
    sim.write_text(sim.read_text().replace("chunk_subjects: 500", "chunk_subjects: 5"))
    real = sim_pkg.generate_chunk

    def fail_on_second_chunk(profile, plan, seed, switches):  # type: ignore[no-untyped-def]
        if plan.index == 1:
            raise RuntimeError("disk full")
        return real(profile, plan, seed, switches)

    monkeypatch.setattr(sim_pkg, "generate_chunk", fail_on_second_chunk)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(study, out, subjects=15)
    assert list(out.iterdir()) == []  # neither finished exports nor temporary files


def test_dates_and_times_follow_the_contract_formats(messy: Path) -> None:
    forms = yaml.safe_load((STUDY / "raw_forms.yaml").read_text(encoding="utf-8"))["forms"]
    shapes = {
        "DD-MON-YYYY": r"^(\d{2}|UN)-([A-Z]{3})-\d{4}$|^UNK-UNK-\d{4}$",
        "YYYY-MM-DD": r"^\d{4}-\d{2}-\d{2}$",
        "HH:MI": r"^([01]\d|2[0-3]):[0-5]\d$",
    }
    checked = 0
    for form, spec in forms.items():
        frame = read(messy, form)
        for column, meta in spec["columns"].items():
            if meta["type"] in ("date", "time"):
                values = frame.loc[frame[column] != "", column]
                bad = values[~values.str.match(shapes[meta["format"]])]
                assert bad.empty, (form, column, bad.head().tolist())
                checked += len(values)
    assert checked > 10_000


def test_csv_quoting_round_trips_awkward_text(tmp_path: Path) -> None:
    from cdiscforge.simulate.formats import csv_bytes

    frame = pd.DataFrame(
        {
            "A": pd.Series(['say "hi"', "a,b", "line\nbreak", None, "café"], dtype="str"),
            "B": pd.Series(["1", "", " lead", "trail ", "x"], dtype="str"),
        }
    )
    path = tmp_path / "t.csv"
    path.write_bytes(csv_bytes(frame, header=True))
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert back["A"].tolist() == ['say "hi"', "a,b", "line\nbreak", "", "café"]
    assert back["B"].tolist() == ["1", "", " lead", "trail ", "x"]
    assert path.read_bytes().startswith(b"A,B\n") and b'"a,b"' in path.read_bytes()


def test_raw_form_not_declared_in_simulation_yaml_is_not_written(tmp_path: Path) -> None:
    """Which forms are simulated is the simulation spec's choice: a raw form it does not
    declare is not generated (and no file appears), while the declared ones still are."""
    study = _profile_copy(tmp_path)
    forms = study / "raw_forms.yaml"
    forms.write_text(
        forms.read_text(encoding="utf-8")
        + "  vitals:\n    file: vitals.csv\n    columns: {VSDAT: {type: date}}\n",
        encoding="utf-8",
    )
    result = simulate(study, tmp_path / "out")
    assert "vitals" not in result.files and not (tmp_path / "out" / "vitals.csv").exists()
    assert (tmp_path / "out" / "joints.csv").exists()

"""The published SDTM package of the default build, read back from its XPT files, against
what an FDA reviewer checks: EPOCH on every subject-level record inside the subject's
elements, IE records for every screen failure, prior RA therapy in CM, every FDA-required TS
parameter, variable order as in SDTMIG 3.4, one length per shared variable, and unique
declared keys in every dataset (SDTM and ADaM).

The build runs once, through the real CLI (`python -m cdiscforge.cli build --out DIR`), and
must validate clean (exit 0).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

CLI = [sys.executable, "-m", "cdiscforge.cli"]
EPOCH_DOMAINS = {"LB": "LBDTC", "MK": "MKDTC", "AE": "AESTDTC", "EX": "EXSTDTC",
                 "PR": "PRSTDTC", "SV": "SVSTDTC", "DS": "DSSTDTC"}  # fmt: skip


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "out"
    result = subprocess.run([*CLI, "build", "--out", str(out)], capture_output=True, text=True,
                            timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _read(package: Path, stage: str, name: str) -> pd.DataFrame:
    frame = pd.read_sas(package / stage / f"{name.lower()}.xpt", format="xport", encoding="ascii")
    for col in frame.columns:
        if frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
            frame[col] = frame[col].astype("string").replace("", pd.NA)
    return frame


def _when(dtc: pd.Series) -> pd.Series:
    text = dtc.astype("string")
    full = text.where(text.str.len() >= 10).str.replace("T", " ")
    return pd.to_datetime(full, format="mixed", errors="coerce")


def _elements(se: pd.DataFrame) -> pd.DataFrame:
    """Each subject's span of elements: first start to last end (a date-only end: its day)."""
    end = _when(se["SEENDTC"])
    end = end.mask(se["SEENDTC"].str.len() == 10, end + pd.Timedelta(hours=23, minutes=59))
    spans = pd.DataFrame({"USUBJID": se["USUBJID"], "start": _when(se["SESTDTC"]), "end": end})
    return spans.groupby("USUBJID").agg(start=("start", "min"), end=("end", "max"))


def test_no_null_epoch_within_the_subjects_elements(package: Path) -> None:
    se = _read(package, "sdtm", "SE")
    spans = _elements(se)
    screen_failures = set(se["USUBJID"]) - set(se.loc[se["ETCD"] != "SCRN", "USUBJID"])
    assert len(screen_failures) == 8
    checked_sf = 0
    for name, dtc in EPOCH_DOMAINS.items():
        frame = _read(package, "sdtm", name)
        t = _when(frame[dtc])
        start = frame["USUBJID"].map(spans["start"])
        end = frame["USUBJID"].map(spans["end"])
        within = (t >= start) & (t <= end)
        nulls = frame[within.fillna(False).to_numpy() & frame["EPOCH"].isna().to_numpy()]
        assert nulls.empty, f"{name}: {len(nulls)} null EPOCH within SE: {nulls.head()}"
        checked_sf += int((within & frame["USUBJID"].isin(screen_failures)).sum())
    assert checked_sf > 0  # screen failures' screening records are covered too


def test_partial_ae_start_in_one_epoch_carries_it(package: Path) -> None:
    ae = _read(package, "sdtm", "AE")
    se = _read(package, "sdtm", "SE")
    partial = ae[ae["AESTDTC"].str.len() == 7]
    assert not partial.empty
    for _, rec in partial.iterrows():  # a handful of records: readable over vectorised
        first = pd.Timestamp(rec["AESTDTC"] + "-01")
        last = first + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=23, minutes=59)
        subj = se[se["USUBJID"] == rec["USUBJID"]]
        starts, ends = _when(subj["SESTDTC"]), _when(subj["SEENDTC"])
        overlap = (starts <= last) & (
            ends.isna() | (ends >= first) | (subj["SEENDTC"].str.len() == 10)
        )
        epochs = set(subj.loc[overlap.to_numpy(), "EPOCH"])
        inside = bool((starts <= first).any())
        if inside and len(epochs) == 1 and _elements(subj)["end"].iloc[0] >= last:
            assert rec["EPOCH"] == epochs.pop(), rec.to_dict()
        else:
            assert pd.isna(rec["EPOCH"]), rec.to_dict()


# Parameters the FDA requires in TS (FDA Study Data Technical Conformance Guide; the Pinnacle 21
# FDA rules "Missing <TSPARMCD> Trial Summary Parameter"), plus the versions FDA asks for.
FDA_TS = {"ACTSUB", "ADAPT", "ADDON", "AGEMAX", "AGEMIN", "DCUTDESC", "DCUTDTC", "FCNTRY",
          "HLTSUBJI", "INDIC", "INTMODEL", "INTTYPE", "LENGTH", "NARMS", "OBJPRIM", "OUTMSPRI",
          "PCLAS", "PLANSUB", "RANDOM", "REGID", "SENDTC", "SEXPOP", "SPONSOR", "SSTDTC",
          "STOPRULE", "STYPE", "TBLIND", "TCNTRL", "TDIGRP", "TINDTP", "TITLE", "TPHASE", "TRT",
          "TTYPE", "SDTIGVER", "SDTMVER", "THERAREA"}  # fmt: skip


def test_ts_holds_every_fda_required_parameter(package: Path) -> None:
    ts = _read(package, "sdtm", "TS")
    assert set(ts["TSPARMCD"]) >= FDA_TS, FDA_TS - set(ts["TSPARMCD"])
    # every record has a value or says why not (null flavor), never both
    assert (ts["TSVAL"].notna() ^ ts["TSVALNF"].notna()).all()
    value = ts.groupby("TSPARMCD")["TSVAL"].first()
    if value.get("ADDON") == "Y":
        assert "CURTRT" in value.index
    if value.get("TCNTRL") not in (None, "NONE", "PLACEBO"):
        assert "COMPTRT" in value.index
    if value.get("HLTSUBJI") == "N":
        assert value["TDIGRP"]
    coded = ts[ts["TSVCDREF"] == "CDISC CT"]
    assert coded["TSVALCD"].str.fullmatch(r"C\d+").all() and coded["TSVCDVER"].notna().all()
    assert (ts["TSVALCD"].isna() | ts["TSVCDREF"].notna()).all()
    for single in ("ADDON", "AGEMAX", "AGEMIN", "LENGTH", "PLANSUB", "RANDOM", "SEXPOP", "NARMS"):
        assert (ts["TSPARMCD"] == single).sum() == 1, single


def test_every_screen_failure_has_ie_records_from_ti(package: Path) -> None:
    dm, ie, ti = (_read(package, "sdtm", n) for n in ("DM", "IE", "TI"))
    failures = set(dm.loc[dm["ARMNRS"] == "SCREEN FAILURE", "USUBJID"])
    assert len(failures) == 8 and set(ie["USUBJID"]) == failures
    merged = ie.merge(ti, on="IETESTCD", suffixes=("", "_TI"))
    assert len(merged) == len(ie)  # every IETESTCD is a TI criterion
    assert (merged["IETEST"] == merged["IETEST_TI"]).all()
    assert (merged["IECAT"] == merged["IECAT_TI"]).all()
    not_met = merged["IECAT"].map({"INCLUSION": "N", "EXCLUSION": "Y"})
    assert (merged["IEORRES"] == not_met).all() and (merged["IESTRESC"] == not_met).all()
    raw = pd.read_csv(package / "raw" / "enrolment.csv", dtype=str)
    raw = raw[raw["ENROLLED"] == "N"]
    expected = set(zip("NCT03691909-" + raw["SUBJECT"], raw["IEFAILID"], strict=True))
    assert set(zip(ie["USUBJID"], ie["IETESTCD"], strict=True)) == expected
    recon = pd.read_csv(package / "reconciliation.csv")
    row = recon[(recon["source"] == "enrolment") & (recon["dataset"] == "IE")].iloc[0]
    assert (row["read"], row["written"], row["rejected"]) == (len(dm), 8, len(dm) - 8)


def test_cm_holds_the_prior_ra_therapies_one_record_per_drug(package: Path) -> None:
    cm = _read(package, "sdtm", "CM")
    raw = pd.read_csv(package / "raw" / "ra_history.csv", dtype=str)
    listed = raw[raw["PRIORDMARD"].notna() & ~raw["PRIORDMARD"].str.startswith("None")]
    drugs = listed.assign(CMTRT=listed["PRIORDMARD"].str.split(",")).explode("CMTRT")
    drugs["CMTRT"] = drugs["CMTRT"].str.strip().str.replace("\u00ae", "(R)")
    expected = sorted(zip("NCT03691909-" + drugs["SUBJECT"], drugs["CMTRT"], strict=True))
    assert sorted(zip(cm["USUBJID"], cm["CMTRT"], strict=True)) == expected
    assert (cm["CMCAT"] == "PRIOR RA THERAPY").all()
    assert len(cm) > len(listed)  # some lists name two drugs
    assert not (package / "sdtm" / "suppmh.xpt").exists()  # nothing left in SUPPMH


def test_ra_serology_is_in_is_per_current_ct(package: Path) -> None:
    is_ = _read(package, "sdtm", "IS")
    dm = _read(package, "sdtm", "DM")
    assert len(is_) == 2 * len(dm)
    rf = is_[is_["ISTESTCD"] == "RFATAB"]
    ccp = is_[is_["ISBDAGNT"] == "CYCLIC CITRULLINATED PEPTIDE"]
    assert len(rf) == len(ccp) == len(dm)
    assert (ccp["ISTESTCD"] == "ATAB").all()
    assert set(is_["ISORRES"]) == {"POSITIVE", "NEGATIVE"}


def test_suppae_aetrtem_is_derived_and_agrees_with_adae_trtemfl(package: Path) -> None:
    supp, ae = _read(package, "sdtm", "SUPPAE"), _read(package, "sdtm", "AE")
    adae = _read(package, "adam", "ADAE")
    flag = supp[supp["QNAM"] == "AETRTEM"]
    assert len(flag) == len(ae) and (flag["QORIG"] == "Derived").all()
    assert (flag["IDVAR"] == "AESEQ").all() and set(flag["QVAL"]) <= {"Y", "N"}
    both = flag.assign(AESEQ=flag["IDVARVAL"].astype(float)).merge(
        adae[["USUBJID", "AESEQ", "TRTEMFL"]], on=["USUBJID", "AESEQ"]
    )
    assert len(both) == len(ae)
    assert ((both["QVAL"] == "Y") == (both["TRTEMFL"] == "Y").fillna(False)).all()
    assert {"Y", "N"} <= set(flag["QVAL"])  # the default study has AEs both sides of Day 1


def test_sv_has_missed_planned_visits_and_no_svoccur_on_unplanned(package: Path) -> None:
    sv, tv = _read(package, "sdtm", "SV"), _read(package, "sdtm", "TV")
    planned = sv["VISITNUM"].isin(tv["VISITNUM"])
    assert (sv.loc[planned, "SVPRESP"] == "Y").all()
    assert sv.loc[~planned, ["SVPRESP", "SVOCCUR"]].isna().all().all()  # CORE-000038
    assert (~planned).any()
    missed = sv[sv["SVOCCUR"] == "N"]
    assert len(missed) > 0 and missed["SVSTDTC"].isna().all()
    assert (sv.loc[planned & (sv["SVOCCUR"] == "Y"), "SVSTDTC"]).notna().all()
    raw = pd.read_csv(package / "raw" / "visits.csv", dtype=str)
    attended = set(zip("NCT03691909-" + raw["SUBJECT"], raw["FOLDER"], strict=True))
    folder = {1: "SCREEN", 2: "LIPO", 3: "BASELINE", 4: "WEEK1", 5: "WEEK4", 6: "WEEK8",
              7: "WEEK12", 8: "WEEK26", 9: "WEEK52"}  # fmt: skip
    for _, rec in missed.iterrows():
        assert (rec["USUBJID"], folder[int(rec["VISITNUM"])]) not in attended
    # an attended planned visit is never also reported missed
    assert not sv.duplicated(["USUBJID", "VISITNUM"]).any()


def _ig_order() -> pd.DataFrame:
    """SDTMIG 3.4's variables table as the package ships it (CDISC Library export)."""
    from importlib import resources

    path = resources.files("cdiscforge") / "data" / "standards" / "SDTMIG_v3.4_Variables.csv"
    with path.open("r", encoding="utf-8-sig") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


# Model variables the IG does not list for these domains, allowed by the SDTM model (timing
# variables of the general-observation classes; EPOCH, which FDA asks for, in SV).
MODEL_EXTRAS = {"EX": ["VISITNUM", "VISIT"], "SV": ["EPOCH"]}


def test_every_sdtm_dataset_has_the_ig_variable_order(package: Path) -> None:
    import pyreadstat

    ig = _ig_order()
    checked = 0
    for path in sorted((package / "sdtm").glob("*.xpt")):
        _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
        name = meta.table_name
        key = "SUPPQUAL" if name.startswith("SUPP") else name
        rows = ig[ig["Dataset Name"] == key]
        order = dict(zip(rows["Variable Name"], rows["Variable Order"].astype(int), strict=True))
        columns = list(meta.column_names)
        extras = [c for c in columns if c not in order]
        assert extras == MODEL_EXTRAS.get(name, []), (name, extras)
        listed = [c for c in columns if c in order]
        assert listed == sorted(listed, key=order.__getitem__), name
        checked += 1
    assert checked >= 20
    # the model-permissible extras sit where the model's timing order puts them
    _, sv = pyreadstat.read_xport(str(package / "sdtm" / "sv.xpt"), metadataonly=True)
    assert sv.column_names.index("EPOCH") == sv.column_names.index("VISITDY") + 1
    _, ex = pyreadstat.read_xport(str(package / "sdtm" / "ex.xpt"), metadataonly=True)
    assert ex.column_names.index("VISITNUM") < ex.column_names.index("EPOCH")


def test_shared_variables_have_one_length_across_datasets(package: Path) -> None:
    import pyreadstat

    widths: dict[str, set[int]] = {}
    # FDA TCG: the maximum across the study's datasets, SUPP-- datasets excepted
    for path in sorted(p for p in (package / "sdtm").glob("*.xpt") if "supp" not in p.name):
        _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
        for col, width in meta.variable_storage_width.items():
            if meta.readstat_variable_types[col] == "string":
                widths.setdefault(col, set()).add(width)
    assert len(widths["VISIT"]) == 1 and len(widths["EPOCH"]) == 1
    assert {v: w for v, w in widths.items() if len(w) > 1} == {}


def test_declared_keys_are_unique_in_every_dataset(package: Path) -> None:
    from cdiscforge.spec import load_study
    from cdiscforge.studies import study_dir

    study = load_study(study_dir("nct03691909"))
    checked = 0
    for name, spec in study.datasets.items():
        frame = _read(package, spec.stage, name)
        assert spec.keys, name
        dup = frame[frame.duplicated(spec.keys, keep=False)]
        assert dup.empty, f"{name} keys {spec.keys} not unique: {dup[spec.keys].head()}"
        checked += 1
    assert checked >= 20


def test_imputed_adam_values_are_flagged_and_trace_to_lbstresc(package: Path) -> None:
    lb = _read(package, "sdtm", "LB")
    for name in ("ADLB", "ADEFF"):
        ad = _read(package, "adam", name)
        from_lb = ad[ad["SRCDOM"] == "LB"].merge(
            lb[["USUBJID", "LBSEQ", "LBSTRESC", "LBSTRESN"]],
            left_on=["USUBJID", "SRCSEQ"], right_on=["USUBJID", "LBSEQ"], validate="1:1",
        )  # fmt: skip
        below = from_lb["LBSTRESC"].str.startswith("<").fillna(False)
        above = from_lb["LBSTRESC"].str.startswith(">").fillna(False)
        assert below.any(), name
        limit = pd.to_numeric(from_lb["LBSTRESC"].str.lstrip("<>"), errors="coerce")
        assert (from_lb.loc[below, "DTYPE"] == "HALFLLOQ").all()
        assert (from_lb.loc[below, "AVAL"] == limit[below] / 2).all()
        assert (from_lb.loc[above, "DTYPE"] == "ULOQ").all()
        assert from_lb.loc[~below & ~above, "DTYPE"].isna().all()
        # SRCVAR names a variable that holds the value the AVAL came from
        assert (from_lb.loc[below | above, "SRCVAR"] == "LBSTRESC").all()
        measured = from_lb[~below & ~above & from_lb["LBSTRESN"].notna()]
        assert (measured["SRCVAR"] == "LBSTRESN").all()
        assert (measured["AVAL"] == measured["LBSTRESN"]).all()


def test_joint_counts_trace_by_method_not_one_record(package: Path) -> None:
    ad = _read(package, "adam", "ADEFF")
    counts = ad[ad["PARAMCD"].isin(["SJC66", "TJC68"])]
    assert len(counts) > 0
    assert counts["SRCSEQ"].isna().all() and counts["DTYPE"].isna().all()
    assert (counts["SRCDOM"] == "MK").all() and (counts["SRCVAR"] == "MKSTRESC").all()
    define = (package / "adam" / "define.xml").read_text(encoding="utf-8")
    assert "no single source record" in define  # SRCSEQ's method says how they trace


def test_adam_structure_statements_hold(package: Path) -> None:
    """The structure each BDS dataset declares is one record per its declared keys, and
    does not claim one record per analysis visit, which the data contradict."""
    define = (package / "adam" / "define.xml").read_text(encoding="utf-8")
    assert "per analysis visit" not in define
    for name in ("ADEFF", "ADLB"):
        ad = _read(package, "adam", name)
        assert ad.duplicated(["USUBJID", "PARAMCD", "AVISITN"]).any()  # why not per visit
        flagged = ad[ad["ANL01FL"] == "Y"]
        assert not flagged.duplicated(["USUBJID", "PARAMCD", "AVISITN"]).any()

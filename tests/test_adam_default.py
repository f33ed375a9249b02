"""ADaM end to end on the default 15-subject export: traceability, joint counts recomputed
from SDTM MK without the ADaM code (the efficacy table: tests/test_tables.py)."""

from __future__ import annotations

from cdiscforge import (
    adam,  # noqa: F401  (registers the ADaM rules)
    sdtm,  # noqa: F401
)


def test_adam_datasets_are_built_with_one_adsl_record_per_dm_subject(built) -> None:
    _, ds = built
    assert {"ADSL", "ADEFF", "ADLB", "ADAE"} <= set(ds)
    assert sorted(ds["ADSL"].frame["USUBJID"]) == sorted(ds["DM"].frame["USUBJID"])
    assert set(ds["ADEFF"].frame["PARAMCD"]) == {"SJC66", "TJC68", "CRP", "ESR", "IL6", "TNFA"}
    assert set(ds["ADLB"].frame["PARAMCD"]) == set(ds["LB"].frame["LBTESTCD"])


def test_every_adam_variable_says_where_it_comes_from(built) -> None:
    _, ds = built
    for name in ("ADSL", "ADEFF", "ADLB", "ADAE"):
        for v in ds[name].variables:
            traced = (v.origin == "Predecessor" and v.predecessor) or (
                v.origin == "Derived" and v.method
            )
            assert traced or v.origin == "Assigned", f"{name}.{v.name} ({v.origin}) has no trace"


def test_joint_counts_recomputed_from_mk(built) -> None:
    """Independent of the ADaM code: count MKSTRESC = 'Y' per subject, visit and test."""
    _, ds = built
    mk = ds["MK"].frame
    yes = mk.assign(y=(mk["MKSTRESC"] == "Y").fillna(False).astype(int))
    expected = yes.groupby(["USUBJID", "VISITNUM", "MKTESTCD"])["y"].sum()
    eff = ds["ADEFF"].frame
    eff = eff[eff["PARAMCD"].isin(["SJC66", "TJC68"])]
    subjects = sorted(eff["USUBJID"].unique())[:4]
    checked = 0
    for _, row in eff[eff["USUBJID"].isin(subjects)].iterrows():
        code = "SWLLIND" if row["PARAMCD"] == "SJC66" else "TNDRIND"
        mk_rows = mk[(mk["USUBJID"] == row["USUBJID"]) & (mk["MKTESTCD"] == code)]
        visit = mk_rows.loc[mk_rows["MKDTC"].str.slice(0, 10) == str(row["ADT"].date()), "VISITNUM"]
        assert row["AVAL"] == expected[(row["USUBJID"], visit.iloc[0], code)]
        checked += 1
    assert checked >= 20


def test_baseline_change_and_one_analysis_record_per_visit(built) -> None:
    _, ds = built
    eff = ds["ADEFF"].frame
    base = eff[eff["ABLFL"] == "Y"]
    assert not base.duplicated(["USUBJID", "PARAMCD"]).any()
    post = eff[eff["CHG"].notna()]
    assert ((post["AVAL"] - post["BASE"] - post["CHG"]).abs() < 1e-9).all()
    anl = eff[eff["ANL01FL"] == "Y"]
    assert not anl.duplicated(["USUBJID", "PARAMCD", "AVISITN"]).any()
    adsl = ds["ADSL"].frame.set_index("USUBJID")
    sj = base[base["PARAMCD"] == "SJC66"].set_index("USUBJID")["AVAL"]
    assert (adsl.loc[sj.index, "BSJC66"] == sj).all()


# The efficacy table (paper targets, scipy recompute, layout, determinism): tests/test_tables.py

"""SDTM rule families (dataset/variable level, record consistency, cross-dataset/trial level):
each rule is clean on the consistent study and fires, with the right record count, on a
planted fault."""

from __future__ import annotations

import pandas as pd
import pytest
from rules_helpers import (
    S2,
    add_column,
    assert_fault_found,
    drop_dataset,
    drop_rows,
    duplicate_row,
    findings,
    planted,
    reorder,
    rich_study,
    set_value,
)

from cdiscforge.validation.catalogue import RULES


@pytest.fixture(scope="module")
def base() -> dict[tuple, int]:
    return findings(rich_study())


def _visit_length(s):
    s["LB"].variable("VISIT").length = 20


def _swap_ae(s):
    names = s["AE"].variable_names
    i, j = names.index("AESEQ"), names.index("AETERM")
    names[i], names[j] = names[j], names[i]
    reorder(s, "AE", names)


def _drop_ts(code):
    def edit(s):
        rows = s["TS"].frame.index[s["TS"].frame["TSPARMCD"] == code].tolist()
        drop_rows(s, "TS", rows)

    return edit


# fault -> (edit, {expected (rule, dataset, variables): record count}). Each expected finding
# must appear with exactly that count; other rules may react too (a duplicated DM subject is
# also a duplicate DM key).
FAULTS = {
    # 1. dataset / variable level
    "model-permissible AEDTC": (
        lambda s: add_column(s, "AE", "AEDTC", ["2019-01-10"] * 3),
        {("CF-MD-0004", "AE", ("AEDTC",)): 1},
    ),
    "variable not in the model": (
        lambda s: add_column(s, "AE", "AEFOO", ["x"] * 3),
        {("CF-MD-0005", "AE", ("AEFOO",)): 1},
    ),
    "variables out of IG order": (_swap_ae, {("CF-MD-0006", "AE", ("AESEQ",)): 1}),
    "VISIT longer in LB than in SV and TV": (
        _visit_length,
        {("CF-MD-0007", "SV", ("VISIT",)): 1, ("CF-MD-0007", "TV", ("VISIT",)): 1},
    ),
    "duplicated USUBJID in DM": (
        lambda s: set_value(s, "DM", "USUBJID", 2, S2),
        {("CF-SD-0014", "DM", ("USUBJID",)): 2},
    ),
    # 2. record consistency
    "AE ends before it starts": (
        lambda s: set_value(s, "AE", "AEENDTC", 0, "2019-01-09"),
        {("CF-SD-0015", "AE", ("AESTDTC", "AEENDTC")): 1},
    ),
    "AE without any end time-point": (
        lambda s: set_value(s, "AE", "AEENDTC", 2, None),
        {("CF-SD-0016", "AE", ("AEENDTC",)): 1},
    ),
    "LBORRES without LBORRESU": (
        lambda s: set_value(s, "LB", "LBORRESU", 0, None),
        {("CF-SD-0017", "LB", ("LBORRESU", "LBORRES")): 1},
    ),
    "LBSTRESC without LBSTRESU": (
        lambda s: set_value(s, "LB", "LBSTRESU", 1, None),
        {("CF-SD-0018", "LB", ("LBSTRESU", "LBSTRESC")): 1},
    ),
    "subject without LB baseline": (
        lambda s: set_value(s, "LB", "LBBLFL", 2, None),
        {("CF-SD-0019", "DM", ("USUBJID",)): 1},
    ),
    "baseline record without result": (
        lambda s: (
            set_value(s, "LB", "LBSTRESC", 0, None),
            set_value(s, "LB", "LBSTRESN", 0, None),
        ),
        {("CF-SD-0020", "LB", ("LBSTRESC", "LBBLFL")): 1},
    ),
    "two baseline records for one test": (
        lambda s: set_value(s, "LB", "LBBLFL", 1, "Y"),
        {("CF-SD-0021", "LB", ("LBBLFL",)): 2},
    ),
    "two VISIT names for one VISITNUM": (
        lambda s: set_value(s, "LB", "VISIT", 1, "BASELINE"),
        {
            ("CF-SD-0022", "LB", ("VISIT", "VISITNUM")): 2,
            ("CF-SD-0023", "LB", ("VISITNUM", "VISIT")): 3,
        },
    ),
    "EPOCH null on a dated LB record": (
        lambda s: set_value(s, "LB", "EPOCH", 0, None),
        {("CF-SD-0024", "LB", ("EPOCH",)): 1},
    ),
    "SVOCCUR on an unplanned visit": (
        lambda s: set_value(s, "SV", "SVPRESP", 3, None),
        {("CF-SD-0034", "SV", ("SVOCCUR", "SVPRESP")): 1},
    ),
    "completer without the last planned visit": (
        lambda s: drop_rows(s, "SV", [3]),
        {("CF-SD-0035", "DS", ("DSDECOD",)): 1},
    ),
    "completer whose participation is shorter than the last visit's day": (
        lambda s: (
            set_value(s, "TV", "VISITDY", 1, 29.0),
            set_value(s, "DM", "RFPENDTC", 0, "2019-02-07"),
        ),
        {("CF-SD-0036", "DM", ("RFPENDTC", "RFSTDTC")): 1},
    ),
    # 3. cross-dataset / trial level
    "screen failure without IE records": (
        lambda s: drop_dataset(s, "IE"),
        {("CF-SD-0025", "DM", ("USUBJID",)): 1},
    ),
    "TS without ADDON and INDIC": (
        lambda s: (_drop_ts("ADDON")(s), _drop_ts("INDIC")(s)),
        {("CF-SD-0026", "TS", ("TSPARMCD",)): 2},
    ),
    "TS record without TSVAL or TSVALNF": (
        lambda s: set_value(s, "TS", "TSVAL", 3, None),
        {("CF-SD-0027", "TS", ("TSVAL", "TSVALNF")): 1},
    ),
    "SE element not in TE": (
        lambda s: set_value(s, "TE", "ETCD", 1, "MSC2"),
        {("CF-SD-0028", "SE", ("ETCD",)): 2, ("CF-SD-0028", "TA", ("ETCD",)): 1},
    ),
    "two QLABELs for one QNAM": (
        lambda s: set_value(s, "SUPPAE", "QLABEL", 2, "Treatment-emergent"),
        {("CF-SD-0029", "SUPPAE", ("QLABEL", "QNAM")): 3},
    ),
    "invalid QNAM": (
        lambda s: set_value(s, "SUPPAE", "QNAM", 0, "1TRTEMFLAG"),
        {("CF-SD-0030", "SUPPAE", ("QNAM",)): 1},
    ),
    "duplicate SUPPAE record": (
        lambda s: duplicate_row(s, "SUPPAE", 0),
        {("CF-SD-0031", "SUPPAE", ("QNAM",)): 2},
    ),
    "AE record without treatment-emergent flag": (
        lambda s: drop_rows(s, "SUPPAE", [1]),
        {("CF-SD-0032", "AE", ("AETRTEM",)): 1},
    ),
    "subject without DS record": (
        lambda s: drop_rows(s, "DS", [2]),
        {("CF-SD-0033", "DM", ("USUBJID",)): 1},
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_planted_fault_is_found(fault, base):
    edit, expected = FAULTS[fault]
    assert_fault_found(edit, expected, base)


def test_every_sdtm_rule_has_a_planted_fault():
    covered = {k[0] for _, expected in FAULTS.values() for k in expected}
    new_rules = {r for r in RULES if r.startswith(("CF-SD", "CF-MD")) and r >= "CF-SD-0014"}
    new_rules |= {"CF-MD-0004", "CF-MD-0005", "CF-MD-0006", "CF-MD-0007"}
    assert new_rules <= covered, sorted(new_rules - covered)


def test_dm_duplicate_is_reported_as_a_duplicate_subject(base):
    """A duplicated USUBJID in DM is named as such (P21 SD0083), not only as a key clash."""
    new = planted(lambda s: duplicate_row(s, "DM", 0), base)
    assert new[("CF-SD-0014", "DM", ("USUBJID",))] == 2
    assert RULES["CF-SD-0014"].severity == "error" and "SD0083" in RULES["CF-SD-0014"].p21


def test_partial_dates_compare_on_their_common_precision(base):
    """2019-01 vs 2019-01-11 is not 'start after end'; 2019-02 vs 2019-01-11 is."""
    same_month = planted(lambda s: set_value(s, "AE", "AESTDTC", 0, "2019-01"), base)
    assert ("CF-SD-0015", "AE", ("AESTDTC", "AEENDTC")) not in same_month
    later = planted(lambda s: set_value(s, "AE", "AESTDTC", 0, "2019-02"), base)
    assert later[("CF-SD-0015", "AE", ("AESTDTC", "AEENDTC"))] == 1


def test_unitless_tests_and_zero_results_need_no_unit(base):
    def edit(s):
        set_value(s, "LB", "LBTESTCD", 0, "PH")
        set_value(s, "LB", "LBTEST", 0, "pH")
        set_value(s, "LB", "LBORRESU", 0, None)
        set_value(s, "LB", "LBORRES", 2, "0")
        set_value(s, "LB", "LBORRESU", 2, None)

    assert not {k for k in planted(edit, base) if k[0] == "CF-SD-0017"}


def test_fda_ts_parameters_apply_from_the_tcg_date(base):
    """A study that started before 2016-12-17 is not held to the FDA TS list."""

    def edit(s):
        f = s["TS"].frame
        f.loc[f["TSPARMCD"] == "SSTDTC", "TSVAL"] = "2012-07-06"
        _drop_ts("ADDON")(s)

    assert ("CF-SD-0026", "TS", ("TSPARMCD",)) not in planted(edit, base)


def _plandur(s, value: str = "P4W") -> None:
    """TV without planned days and TS with PLANDUR: the duration comes from TS."""
    s["TV"].frame["VISITDY"] = pd.Series([None, None], dtype="float64")
    ts = s["TS"].frame
    row = ts.iloc[[0]].assign(TSPARMCD="PLANDUR", TSVAL=value, TSSEQ=1.0)
    s["TS"].frame = pd.concat([ts, row], ignore_index=True)
    set_value(s, "DM", "RFPENDTC", 0, "2019-02-07")  # day 29 of 28: complete


def test_duration_from_ts_plandur_when_tv_has_no_planned_days(base):
    """S2 ends on day 8 of a 28-day (P4W) participation: beyond the 14-day window."""
    found = planted(_plandur, base)
    assert found[("CF-SD-0036", "DM", ("RFPENDTC", "RFSTDTC"))] == 1
    assert RULES["CF-SD-0036"].severity == "warning"


def test_participation_within_the_window_is_not_a_finding(base):
    """A completer ending on day 16 of a last visit planned on day 29 is within 14 days."""

    def edit(s):
        set_value(s, "TV", "VISITDY", 1, 29.0)
        set_value(s, "DM", "RFPENDTC", 0, "2019-02-07")
        set_value(s, "DM", "RFPENDTC", 1, "2019-02-16")

    assert not {k for k in planted(edit, base) if k[0] == "CF-SD-0036"}


def test_a_non_completer_is_not_held_to_the_last_visit(base):
    def edit(s):
        drop_rows(s, "SV", [3])
        set_value(s, "DS", "DSDECOD", 1, "WITHDRAWAL BY SUBJECT")
        set_value(s, "DS", "DSTERM", 1, "WITHDRAWAL BY SUBJECT")

    assert not {k for k in planted(edit, base) if k[0] == "CF-SD-0035"}


def test_conditional_visits_without_a_planned_day_are_not_the_last_visit(base):
    """A TV follow-up visit (VISITNUM 101, no VISITDY) does not make completers incomplete."""

    def edit(s):
        tv = s["TV"].frame
        row = tv.iloc[[1]].assign(VISITNUM=101.0, VISIT="AE FOLLOW-UP", VISITDY=float("nan"))
        s["TV"].frame = pd.concat([tv, row], ignore_index=True)

    assert not {k for k in planted(edit, base) if k[0] == "CF-SD-0035"}


def test_lengths_from_data_count_utf8_bytes_of_plain_and_categorical_columns() -> None:
    """CF-MD-0007 compares lengths; one not declared is the longest value's UTF-8 bytes (as
    the XPT writer counts them), the same for a categorical column as for a string one."""
    from cdiscforge.model import Dataset, Variable
    from cdiscforge.validation.rules_sdtm import _lengths

    values = ["WEEK 1", "SEMAINE 1 \u00e9t\u00e9", None, "WEEK 1"]  # 13 characters, 15 bytes
    for dtype in ("string", "category"):
        frame = pd.DataFrame({"VISIT": pd.Series(values, dtype=dtype), "EMPTY": [None] * 4})
        ds = Dataset(
            "SV",
            "Subject Visits",
            frame,
            [Variable("VISIT", "Visit Name"), Variable("EMPTY", "Nothing", length=None)],
        )
        assert _lengths(ds, frame) == {"VISIT": 15}, dtype

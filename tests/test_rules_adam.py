"""ADaM rule family: ADSL structure and population flags, BDS parameters and baseline
arithmetic, analysis flags, traceability to SDTM, imputation flags. Clean on the consistent
study; each fires with the right count on a planted fault."""

from __future__ import annotations

import pandas as pd
import pytest
from rules_helpers import (
    assert_fault_found,
    drop_rows,
    duplicate_row,
    findings,
    planted,
    rich_study,
    set_value,
)

from cdiscforge.validation.catalogue import RULES


@pytest.fixture(scope="module")
def base() -> dict[tuple, int]:
    return findings(rich_study())


def _partial_ae_start(s):
    set_value(s, "AE", "AESTDTC", 2, "2019-01")
    set_value(s, "AE", "AESTDY", 2, None)


FAULTS = {
    "two ADSL records for one subject": (
        lambda s: duplicate_row(s, "ADSL", 0),
        {("CF-AD-0007", "ADSL", ("USUBJID",)): 2},
    ),
    "PARAM differs within PARAMCD": (
        lambda s: set_value(s, "ADLB", "PARAM", 3, "ALT (IU/L)"),
        {("CF-AD-0008", "ADLB", ("PARAMCD", "PARAM")): 4},
    ),
    "two baseline records per subject and parameter": (
        lambda s: set_value(s, "ADLB", "ABLFL", 1, "Y"),
        {("CF-AD-0009", "ADLB", ("ABLFL",)): 2},
    ),
    "CHG is not AVAL - BASE": (
        lambda s: set_value(s, "ADLB", "CHG", 1, 15.0),
        {("CF-AD-0010", "ADLB", ("CHG", "AVAL", "BASE")): 1},
    ),
    "PCHG is not the percent change": (
        lambda s: set_value(s, "ADLB", "PCHG", 3, -80.0),
        {("CF-AD-0011", "ADLB", ("PCHG", "AVAL", "BASE")): 1},
    ),
    "two ANL01FL records in one window": (
        lambda s: set_value(s, "ADLB", "AVISITN", 1, 1.0),
        {("CF-AD-0012", "ADLB", ("ANL01FL",)): 2},
    ),
    "null population flag": (
        lambda s: set_value(s, "ADSL", "SAFFL", 0, None),
        {("CF-AD-0013", "ADSL", ("SAFFL",)): 1},
    ),
    "ADAE.AESEQ names no AE record": (
        lambda s: set_value(s, "ADAE", "AESEQ", 1, 9.0),
        {("CF-AD-0014", "ADAE", ("AESEQ",)): 1},
    ),
    "imputed ASTDT without ASTDTF": (
        _partial_ae_start,
        {("CF-AD-0015", "ADAE", ("ASTDTF", "ASTDT")): 1},
    ),
    "ADSL subject missing": (
        lambda s: drop_rows(s, "ADSL", [1]),
        {("CF-AD-0002", "DM", ("USUBJID",)): 1, ("CF-AD-0003", "ADLB", ("USUBJID",)): 2},
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_planted_fault_is_found(fault, base):
    edit, expected = FAULTS[fault]
    assert_fault_found(edit, expected, base)


def test_every_new_adam_rule_has_a_planted_fault():
    covered = {k[0] for _, expected in FAULTS.values() for k in expected}
    adam = {r for r in RULES if r.startswith("CF-AD") and r >= "CF-AD-0007"}
    assert adam <= covered, sorted(adam - covered)


def test_chg_may_be_null_at_baseline(base):
    """ADaMIG: CHG/PCHG may be null on baseline and pre-baseline records."""
    assert ("CF-AD-0010", "ADLB", ("CHG", "AVAL", "BASE")) not in base
    new = planted(lambda s: set_value(s, "ADLB", "CHG", 0, 0.0), base)  # given, and right
    assert ("CF-AD-0010", "ADLB", ("CHG", "AVAL", "BASE")) not in new


def test_pchg_with_zero_base_is_a_finding(base):
    def edit(s):
        set_value(s, "ADLB", "BASE", 2, 0.0)
        set_value(s, "ADLB", "BASE", 3, 0.0)
        set_value(s, "ADLB", "AVAL", 2, 0.0)
        set_value(s, "ADLB", "CHG", 3, 2.5)

    new = planted(edit, base)
    assert new[("CF-AD-0011", "ADLB", ("PCHG", "AVAL", "BASE"))] == 1


def test_imputation_flag_present_is_clean(base):
    def edit(s):
        _partial_ae_start(s)
        s["ADAE"].frame["ASTDTF"] = pd.Series([None, None, "D"], dtype="object")

    assert ("CF-AD-0015", "ADAE", ("ASTDTF", "ASTDT")) not in planted(edit, base)

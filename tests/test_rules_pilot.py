"""On real CDISC pilot records (tests/fixtures/rules: DM, AE, LBUR of three sites), our rules
find what Pinnacle 21 found on exactly those records, with the same record counts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cdiscforge.validation import validate_directory

FIXTURES = Path(__file__).parent / "fixtures" / "rules"

# P21 rule -> our rule, and the dataset our finding is on.
OURS = {
    "SD0021": "CF-SD-0016",  # Missing End Time-Point value
    "SD0026": "CF-SD-0017",  # Missing --ORRESU when --ORRES is provided
    "SD0006": "CF-SD-0019",  # No baseline result in LB for subject
    "SD2236": "CF-SD-0005",  # ACTARMCD does not equal ARMCD
}


@pytest.fixture(scope="module")
def result():
    return validate_directory(FIXTURES)


def test_p21_issue_types_found_with_the_same_record_counts(result):
    expected = pd.read_csv(FIXTURES / "p21_expected.csv")
    assert set(expected["p21"]) == set(OURS)
    ours = {}
    for f in result.findings:
        ours[(f.rule_id, f.dataset)] = ours.get((f.rule_id, f.dataset), 0) + f.count
    for row in expected.itertuples(index=False):
        assert ours.get((OURS[row.p21], row.domain)) == row.records, (row, ours)


def test_pilot_records_give_no_error(result):
    assert not result.has_errors, [f for f in result.findings if f.severity == "error"]


def test_p21_permissible_variable_types(result):
    """SD1076 under SDTMIG 3.4: AEDTC/AEDY are model-permissible in AE (EPOCH now in the IG)."""
    permissible = {f.variables[0] for f in result.by_rule("CF-MD-0004") if f.dataset == "AE"}
    assert permissible == {"AEDTC", "AEDY"}

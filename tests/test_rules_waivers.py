"""Waivers: loading (all problems in one located error), matching by rule/dataset/variable,
record filter and count bound, explained findings not blocking, stale waivers warned."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdiscforge.errors import SpecError
from cdiscforge.studies import study_dir
from cdiscforge.validation.catalogue import RULES
from cdiscforge.validation.findings import Check, Finding, ValidationResult
from cdiscforge.validation.waivers import Waiver, apply_waivers, load_waivers, study_waivers


def _result() -> ValidationResult:
    finding = Finding.of(
        "CF-SD-0014",
        "DM",
        ["USUBJID"],
        2,
        "Duplicate USUBJID in DM: 2 record(s)",
        [{"USUBJID": "S-1"}, {"USUBJID": "S-1"}],
    )
    checks = [
        Check("CF-SD-0014", "DM", ("USUBJID",), "one DM record per USUBJID", "fail"),
        Check("CF-SD-0033", "DM", ("USUBJID",), "a DS record per subject", "pass"),
    ]
    return ValidationResult(findings=[finding], checked=checks, datasets={"DM": 2})


def _waiver(**kw) -> Waiver:
    base = {"rule": "CF-SD-0014", "dataset": "DM", "reason": "known", "by": "me", "date": "2026"}
    return Waiver(**{**base, **kw})


def test_waived_error_is_explained_and_does_not_block():
    result = apply_waivers(_result(), [_waiver()])
    (finding,) = result.findings
    assert finding.severity == "error" and finding.waiver["reason"] == "known"
    assert "waived: known" in finding.message
    assert not result.has_errors
    assert result.to_dict()["findings"][0]["waiver"]["by"] == "me"


@pytest.mark.parametrize(
    ("waiver", "waived"),
    [
        ({"variable": "USUBJID"}, True),
        ({"variable": "ARMCD"}, False),
        ({"dataset": "dm"}, True),
        ({"where": (("USUBJID", ("S-1",)),)}, True),
        ({"where": (("USUBJID", ("S-2",)),)}, False),
        ({"max_count": 2}, True),
        ({"max_count": 1}, False),  # the problem grew: the waiver no longer covers it
    ],
)
def test_waiver_matching(waiver, waived):
    result = apply_waivers(_result(), [_waiver(**waiver)])
    assert (not result.has_errors) is waived


def test_record_filter_needs_every_failing_record_shown():
    result = _result()
    result.findings[0] = Finding.of(
        "CF-SD-0014", "DM", ["USUBJID"], 9, "9 records", [{"USUBJID": "S-1"}]
    )
    assert apply_waivers(result, [_waiver(where=(("USUBJID", ("S-1",)),))]).has_errors


def test_stale_waiver_is_a_warning_only_when_its_rule_ran():
    stale = _waiver(rule="CF-SD-0033")
    not_run = _waiver(rule="CF-DF-0006", dataset="AE")
    result = apply_waivers(_result(), [_waiver(), stale, not_run])
    extra = [f for f in result.findings if f.rule_id == "CF-WV-0001"]
    assert len(extra) == 1 and extra[0].severity == "warning" and "CF-SD-0033" in extra[0].message


def test_load_reports_every_problem_with_its_key_path(tmp_path: Path):
    path = tmp_path / "waivers.yaml"
    path.write_text(
        "waivers:\n"
        "  - {rule: CF-SD-0014, dataset: DM, reason: r, by: b, date: 2026-12-01}\n"
        "  - {rule: CF-NOPE, dataset: DM, reason: r, by: b, date: 2026-12-01}\n"
        "  - {rule: CF-SD-0014, dataset: DM, by: b, date: 2026-12-01}\n"
        "  - {rule: CF-SD-0014, dataset: DM, reason: r, by: b, date: someday, colour: red}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as err:
        load_waivers(path)
    text = str(err.value)
    for part in ("waivers[1].rule", "waivers[2]: missing ['reason']", "waivers[3].date", "colour"):
        assert part in text, text
    assert "waivers[0]" not in text


def test_missing_file_means_no_waivers(tmp_path: Path):
    assert load_waivers(tmp_path / "waivers.yaml") == []


def test_the_bundled_study_waivers_load_and_name_real_rules():
    waivers = study_waivers(study_dir("nct03691909"))
    assert waivers and all(w.rule in RULES for w in waivers)
    # Every waiver says why, by whom and when; none is a placeholder for unfinished work.
    assert all(w.reason and w.by and w.date for w in waivers)
    assert not [w for w in waivers if w.reason.startswith(("PENDING", "OPEN"))]

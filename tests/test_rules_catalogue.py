"""The rule catalogue is data: every entry has a check, every check an entry, each entry is
complete, and the shipped file is the one the package loads."""

from __future__ import annotations

import inspect
import re

import pytest

import cdiscforge.validation.rules_define
import cdiscforge.validation.suites
import cdiscforge.validation.waivers
from cdiscforge.validation.catalogue import RULES, SEVERITIES, load_catalogue
from cdiscforge.validation.rules import CHECKS, register, rule_set


def test_every_rule_entry_has_a_check_and_every_check_an_entry():
    rule_set()  # imports every rule module, so every check is registered
    by_engine = {e: {r.id for r in RULES.values() if r.engine == e} for e in ("rule", "suite")}
    assert set(CHECKS) == by_engine["rule"]
    # Suite, define.xml and waiver rules are emitted by name in their modules.
    for module, engine in (
        (cdiscforge.validation.suites, "suite"),
        (cdiscforge.validation.rules_define, "define"),
        (cdiscforge.validation.waivers, "waiver"),
    ):
        source = inspect.getsource(module)
        ids = {r.id for r in RULES.values() if r.engine == engine}
        assert ids and all(f'"{i}"' in source for i in ids), (engine, ids)


def test_registering_an_uncatalogued_rule_fails():
    with pytest.raises(KeyError, match="CF-XX-9999"):
        register("CF-XX-9999")(lambda study: [])


def test_registering_a_rule_twice_fails():
    with pytest.raises(KeyError, match="registered twice"):
        register("CF-SD-0014")(lambda study: [])


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_entry_is_complete(rule_id):
    r = RULES[rule_id]
    assert re.fullmatch(r"CF-(DS|MD|SD|AD|DF|WV)-\d{4}", r.id)
    assert r.severity in SEVERITIES and r.title and r.fix and r.description
    assert r.standards and all(r.standards.values())
    assert all(re.fullmatch(r"(SD|AD|CT|DD)\d{4}[A-Z]?", p) for p in r.p21), r.p21
    if r.p21:
        assert r.mirrors.startswith("P21 ")


def test_applies_to_reads_the_standards_and_versions():
    assert RULES["CF-SD-0004"].applies_to("SDTMIG 3.4")
    assert not RULES["CF-SD-0004"].applies_to("SDTMIG 3.2")
    assert RULES["CF-AD-0004"].applies_to("ADaMIG 1.3")
    assert not RULES["CF-AD-0004"].applies_to("SDTMIG 3.4")


def test_catalogue_is_loaded_from_the_shipped_file():
    assert load_catalogue() is load_catalogue()  # cached, loaded once
    assert RULES["CF-SD-0017"].params["unitless_tests"] == ["PH", "SPGRAV"]
    assert "SD0021" in RULES["CF-SD-0016"].p21


def test_p21_warnings_are_not_errors_here():
    """Severity calibration: where P21 rates its rule a warning, ours is no error."""
    p21_warnings = {
        "SD0021",
        "SD0026",
        "SD0029",
        "SD0006",
        "SD1131",
        "SD1076",
        "SD1079",
        "SD0065",
        "SD1032",
        "SD2236",
        "SD0046",
        "SD1022",
        "SD1097",
        "SD0069",
    }
    for r in RULES.values():
        if set(r.p21) & p21_warnings:
            assert r.severity != "error" or r.calibration, r.id


def test_core_ids_are_well_formed_and_on_the_rules_they_mirror():
    cores = {r.id: r.core for r in RULES.values() if r.core}
    assert all(re.fullmatch(r"CORE-\d{6}", c) for ids in cores.values() for c in ids)
    # The ids checked against CORE's published rules (validation/rules.yaml header).
    assert cores["CF-MD-0006"] == ("CORE-000852",)
    assert cores["CF-SD-0024"] == ("CORE-000701",)
    assert "CORE-000741" in cores["CF-SD-0026"]
    assert cores["CF-SD-0034"] == ("CORE-000038",)
    assert "CORE" in RULES["CF-MD-0006"].mirrors

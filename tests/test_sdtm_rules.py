"""The rules added for the SDTM specs, one case each: seq `within`, ct_version, lookup of an
empty table cell, visitnum's declared SV dependency; and byte-identical rebuilds."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscforge import (
    ct,
    sdtm,  # noqa: F401  (registers the SDTM rules)
)
from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_order, build_stage
from cdiscforge.errors import InputError
from cdiscforge.rules import RULES, RuleContext, Source
from cdiscforge.spec import StudySpec, load_study
from cdiscforge.xpt import write_xpt


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, seed_spec: Path) -> StudySpec:
    spec = tmp_path_factory.mktemp("rules") / "spec"
    shutil.copytree(seed_spec, spec)
    shutil.rmtree(spec / "adam", ignore_errors=True)
    (spec / "adam").mkdir()
    return load_study(spec)


def _ctx(study: StudySpec, out: pd.DataFrame, raw: pd.DataFrame | None = None) -> RuleContext:
    source = None
    if raw is not None:
        source = Source("t", "t.csv", raw, np.arange(1, len(raw) + 1))
    return RuleContext(study, "XX", "V", out, source, {}, BuildLog(), "xx.yaml")


def _run(name: str, ctx: RuleContext, **params: object) -> pd.Series:
    rdef = RULES[name]
    return rdef.fn(ctx, rdef.params.model_validate(params))


def test_seq_within_another_key_and_whole_dataset(study: StudySpec) -> None:
    out = pd.DataFrame({"TSPARMCD": ["TTYPE", "AGEMIN", "TTYPE", "TTYPE"], "K": [3, 1, 1, 2]})
    got = _run("seq", _ctx(study, out), by=[], within=["TSPARMCD"])
    assert got.tolist() == [1, 1, 2, 3]  # source order within TSPARMCD
    got = _run("seq", _ctx(study, out), by=["K"], within=["TSPARMCD"])
    assert got.tolist() == [3, 1, 1, 2]
    got = _run("seq", _ctx(study, out), by=["K"], within=[])
    assert sorted(got.tolist()) == [1, 2, 3, 4] and got.iloc[0] == 4
    subj = pd.DataFrame({"USUBJID": ["A", "B", "A"], "D": ["2", "1", "1"]})
    assert _run("seq", _ctx(study, subj), by=["D"]).tolist() == [2, 1, 1]  # default: USUBJID


def test_ct_version_only_where_the_condition_holds(study: StudySpec) -> None:
    out = pd.DataFrame({"TSVCDREF": ["CDISC CT", None, "ISO 8601"]})
    got = _run("ct_version", _ctx(study, out), when={"col": "TSVCDREF", "eq": "CDISC CT"})
    assert got.tolist()[0] == ct.sdtm_ct_version()
    assert got.iloc[1:].isna().all()
    assert (_run("ct_version", _ctx(study, out)) == ct.sdtm_ct_version()).all()


def test_lookup_of_an_empty_cell_is_a_match_not_an_error(study: StudySpec) -> None:
    raw = pd.DataFrame({"TESTCODE": ["WBC", "CRP", None]})
    ctx = _ctx(study, pd.DataFrame(index=raw.index), raw)
    got = _run(
        "lookup", ctx, table="lab_tests", match={"vendor_code": "raw.TESTCODE"}, column="LBSCAT"
    )
    assert pd.isna(got.iloc[0]) and got.iloc[1] == "INFLAMMATION" and pd.isna(got.iloc[2])
    assert not ctx.log.warnings  # WBC has no LBSCAT: nothing unmatched to report
    bad = pd.DataFrame({"TESTCODE": ["WBC", "NOPE"]})
    with pytest.raises(InputError, match="NOPE"):
        _run(
            "lookup",
            _ctx(study, pd.DataFrame(index=bad.index), bad),
            table="lab_tests",
            match={"vendor_code": "raw.TESTCODE"},
            column="LBSCAT",
        )


def test_visitnum_declares_sv_so_sv_is_built_first(study: StudySpec) -> None:
    params = RULES["visitnum"].params
    assert params.model_validate({"folder": "raw.F", "key": "k", "date": "D"}).domains() == {"SV"}
    none = params.model_validate(
        {"folder": "raw.F", "key": "k", "date": "D", "unscheduled_from": None}
    )
    assert none.domains() == set()
    order = build_order(study, "sdtm")
    for name in ("LB", "EX", "PR", "MK"):
        assert "SV" in study.datasets[name].depends_on()
        assert order.index("SV") < order.index(name)
    assert order.index("DM") < order.index("SE") < order.index("SV")


def test_same_input_gives_byte_identical_xpt(
    study: StudySpec, default_raw: Path, tmp_path: Path
) -> None:
    created = datetime.fromisoformat(study.creation_datetime)
    digests = []
    for run in ("a", "b"):
        log = BuildLog()
        out = build_stage(study, "sdtm", RawStore(study, default_raw, log), log)
        folder = tmp_path / run
        folder.mkdir()
        digests.append(
            {n: write_xpt(d, folder / f"{n.lower()}.xpt", created=created).read_bytes()
             for n, d in out.items()}
        )  # fmt: skip
    assert digests[0].keys() == digests[1].keys()
    for name in digests[0]:
        assert digests[0][name] == digests[1][name], name


def _dataset(name: str, frame: pd.DataFrame) -> object:
    from cdiscforge.model import Dataset, Variable

    return Dataset(name, name, frame, [Variable(c, c) for c in frame.columns])


def _with(study: StudySpec, out: pd.DataFrame, **domains: pd.DataFrame) -> RuleContext:
    ctx = _ctx(study, out)
    ctx.domains = {name: _dataset(name, frame) for name, frame in domains.items()}
    return ctx


def _plain(values: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in values]


SE = pd.DataFrame(
    {
        "USUBJID": ["A", "A", "A", "B"],
        "SESTDTC": ["2019-01-02", "2019-01-20T09:00", "2019-01-20T10:00", "2019-03-01"],
        "SEENDTC": ["2019-01-20T09:00", "2019-01-20T10:00", "2019-12-31", "2019-03-05"],
        "EPOCH": ["SCREENING", "TREATMENT", "FOLLOW-UP", "SCREENING"],
    }
)


def test_epoch_date_only_end_covers_its_day_and_partials_need_one_epoch(study: StudySpec) -> None:
    out = pd.DataFrame(
        {
            "USUBJID": ["A", "A", "A", "B", "A", "A", "A", "B", "A"],
            "DTC": ["2019-12-31T08:00", "2020-01-01T00:00", "2019-01-20", "2019-03-05T07:00",
                    "2019-02", "2019-01", "2019", "2019-03", "2019-01-01"],
        }
    )  # fmt: skip
    got = _plain(_run("epoch", _with(study, out, SE=SE), date="DTC"))
    assert got[:4] == ["FOLLOW-UP", None, "SCREENING", "SCREENING"]  # date-only: 00:00
    # a month wholly in one epoch gets it; a month or year across two (or before the first
    # element) does not
    assert got[4:] == ["FOLLOW-UP", None, None, None, None]


def test_treatment_emergent_cases(study: StudySpec) -> None:
    dm = pd.DataFrame({"USUBJID": ["A", "S"], "RFXSTDTC": ["2019-01-20T09:00", None]})
    out = pd.DataFrame(
        {
            "USUBJID": ["A", "A", "A", "A", "A", "A", "A", "S"],
            "ST": ["2019-01-20T08:00", "2019-01-19", "2019-01", "2018-12", "2019", None,
                   "2019-01-25", "2019-01-25"],
            "EN": [None, None, None, None, None, None, None, None],
        }
    )  # fmt: skip
    out.loc[6, "ST"], out.loc[6, "EN"] = "2019-01-10", "2019-01-15"  # ended before day 1
    got = _plain(_run("treatment_emergent", _with(study, out, DM=dm), start="ST", end="EN"))
    assert got == ["Y", "N", "Y", "N", "Y", "Y", "N", None]


def test_sdtm_variable_order_follows_the_ig_and_places_model_extras() -> None:
    from cdiscforge.standards import sdtm_variable_order

    got = sdtm_variable_order("EX", ["EXSTDTC", "EPOCH", "VISIT", "STUDYID", "EXTRT", "VISITNUM",
                                     "USUBJID", "DOMAIN", "EXSEQ"])  # fmt: skip
    assert got == ["STUDYID", "DOMAIN", "USUBJID", "EXSEQ", "EXTRT", "VISITNUM", "VISIT",
                   "EPOCH", "EXSTDTC"]  # fmt: skip
    got = sdtm_variable_order("SV", ["SVSTDTC", "EPOCH", "VISITDY", "VISIT", "USUBJID"])
    assert got == ["USUBJID", "VISIT", "VISITDY", "EPOCH", "SVSTDTC"]
    assert sdtm_variable_order("SV", ["ZZNEW", "USUBJID"]) == ["USUBJID", "ZZNEW"]


def test_lobxfl_last_eligible_per_group_ties_to_the_later_record(study: StudySpec) -> None:
    from types import SimpleNamespace

    dm = pd.DataFrame({"USUBJID": ["A", "B"], "RFXSTDTC": ["2020-01-10", None]})
    out = pd.DataFrame(
        {
            "USUBJID": ["A", "A", "A", "A", "A", "A", "B", "A"],
            "T": ["X", "X", "X", "X", None, None, "X", "Y"],
            "DTC": [
                "2020-01-09", "2020-01-05", "2020-01-09", "2020-01-11",  # X: 0 and 2 tie
                "2020-01-01", "2020-01-02",  # a missing `by` is a group of its own
                "2020-01-01",  # B: no first exposure
                "2020-01-08",  # Y: its result is missing
            ],
            "R": ["1", "2", "3", "4", "5", "6", "7", None],
        }
    )  # fmt: skip
    ctx = _ctx(study, out)
    ctx.domains = {"DM": SimpleNamespace(frame=dm)}
    got = _run("lobxfl", ctx, by=["T"], date="DTC", result="R")
    assert got.tolist() == [pd.NA, pd.NA, "Y", pd.NA, pd.NA, "Y", pd.NA, pd.NA]
    assert str(got.dtype) == "string"

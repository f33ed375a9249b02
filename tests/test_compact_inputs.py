"""A built dataset may reach its readers compact (categoricals: a dataset built in the
SDTM stage's second process comes back so, cdiscforge.compact): everything that reads one
must give what it gives on the text columns, values, dtypes and order alike. The traps:
a categorical compares only with a categorical of the same categories, refuses lt/gt,
counts and groups its unused categories, and to_numpy gives NaN where text gives <NA>."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscforge.adam.params import count_positive
from cdiscforge.buildlog import BuildLog
from cdiscforge.compact import compact, compact_series, frame_as_text
from cdiscforge.engine import build_stage
from cdiscforge.model import Dataset
from cdiscforge.rules import Condition, RuleContext, Source
from cdiscforge.spec import StudySpec
from cdiscforge.vectorise import as_text, sorted_groups

# Text that sorts differently by code point than by eye ("B" < "a"), repeats, has missing
# values, numbers as text, and values another column lacks (categories that differ).
TEXT = pd.DataFrame(
    {
        "L": pd.Series(["a", "B", None, "a", "UNS1", "B", "b", None, "10", "9"], dtype="string"),
        "M": pd.Series(["a", "a", "x", None, "UNS1", "B", "b", None, "10", "8"], dtype="string"),
        "N": pd.Series(["1", "40", "40", None, "7", "x", "1", "40", "65", "7"], dtype="str"),
    }
)


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name in out.columns:
        out[name] = compact_series(out[name], max_share=1.0)
        assert isinstance(out[name].dtype, pd.CategoricalDtype)
    # a category no record has any more (a filtered frame keeps them): counts for nothing
    cats = out["L"].cat.categories
    out["L"] = out["L"].cat.set_categories(cats.append(pd.Index(["ZZZ"], dtype=cats.dtype)))
    assert out["L"].cat.categories.dtype == TEXT["L"].dtype
    return out


def _holds(study: StudySpec, cond: dict, frame: pd.DataFrame) -> list[bool]:
    source = Source("t", "t.csv", frame, np.arange(1, len(frame) + 1))
    ctx = RuleContext(study, "XX", "V", frame, source, {}, BuildLog(), "xx.yaml")
    got = Condition.model_validate(cond).evaluate(ctx)
    assert got.index.equals(frame.index) and got.dtype == bool
    return got.tolist()


@pytest.mark.parametrize(
    "cond",
    [
        {"col": "L", "eq": "a"},
        {"col": "L", "ne": "a"},
        {"col": "L", "eq": "not there"},
        {"col": "L", "lt": "a"},  # an unordered categorical refuses lt
        {"col": "L", "ge": "B"},
        {"col": "L", "in": ["a", "b", "ZZZ"]},
        {"col": "L", "not_in": ["a"]},
        {"col": "L", "missing": True},
        {"col": "L", "startswith": "U"},
        {"col": "L", "matches": "^[a-z]$"},
        {"col": "L", "eq": {"var": "M"}},  # categories differ: a categorical compare raises
        {"col": "L", "ne": {"var": "M"}},
        {"col": "L", "in": [{"var": "M"}, "9"]},
        {"col": "N", "lt": 40},  # text compared as a number
        {"col": "N", "ge": 7},
        {"col": "N", "eq": 40},
        {"all": [{"col": "L", "missing": False}, {"col": "N", "lt": 50}]},
        {"not": {"col": "M", "eq": "a"}},
    ],
)
def test_a_condition_holds_on_the_records_it_holds_on_as_text(
    built: tuple[StudySpec, dict[str, Dataset]], cond: dict
) -> None:
    study = built[0]
    assert _holds(study, cond, _compact(TEXT)) == _holds(study, cond, TEXT)


def test_as_text_gives_the_column_it_was() -> None:
    for name in TEXT.columns:
        back = as_text(_compact(TEXT)[name])
        pd.testing.assert_series_equal(back, TEXT[name])  # dtype and missing value too
    assert frame_as_text(TEXT) is TEXT  # nothing to convert: the frame itself


def test_sorted_groups_number_groups_as_groupby_sorts_them() -> None:
    frame = TEXT.assign(V=[1.0, 2.0, 1.0, np.nan, 3.0, 2.0, 1.0, 1.0, np.nan, 2.0])
    keys = ["L", "V"]
    expected = frame.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
    for f in (frame, _compact(frame[["L", "M", "N"]]).assign(V=frame["V"])):
        group, count = sorted_groups(f, keys)
        assert count == expected.max() + 1
        assert (group == expected).all()


def test_counts_group_a_compact_frame_as_its_text() -> None:
    frame = TEXT.assign(V=pd.array([1, 2, 1, None, 3, 2, 1, 1, None, 2], dtype="Float64"))
    positive = pd.Series([True, False, True, True, False, True, True, False, True, False])
    ne = pd.Series([False, False, True, False, False, False, True, False, False, True])
    by = ["L", "V", "M"]
    text = count_positive(frame, by, positive, ne, "prorate", seq="V")
    small = count_positive(_compact(frame[["L", "M", "N"]]).assign(V=frame["V"]), by,
                           positive, ne, "prorate", seq="V")  # fmt: skip
    pd.testing.assert_frame_equal(small, text, check_exact=True)
    # what groupby gives on the text: the same groups in the same order, missing last
    ref = frame.groupby(by, dropna=False, sort=True).size()
    keys = ref.reset_index()[by].set_axis(text[by].columns, axis=1)
    pd.testing.assert_frame_equal(text[by], keys, check_dtype=False)
    assert text["N_ASSESSED"].tolist() == ref.tolist()


@pytest.mark.parametrize("rule", ["zero", "prorate", "missing"])
def test_counts_of_a_selection_by_mask_as_of_the_selected_records(rule: str) -> None:
    """count_records groups the whole frame once and counts each parameter's records by a
    mask: the same as counting the selected records alone (groups only the unselected
    records have vanish, the rest keep their sorted order), text or compact."""
    frame = TEXT.assign(V=pd.array([1, 2, 1, None, 3, 2, 1, 1, None, 2], dtype="Float64"))
    positive = pd.Series([True, False, True, True, False, True, True, False, True, False])
    ne = pd.Series([False, False, True, False, False, False, True, False, False, True])
    by = ["L", "V", "M"]
    compacted = _compact(frame[["L", "M", "N"]]).assign(V=frame["V"])
    for rows in (
        np.array([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=bool),  # the "B" and None groups
        np.ones(10, dtype=bool),
        np.eye(1, 10, 9, dtype=bool)[0],  # one record
    ):
        for f in (frame, compacted):
            alone = count_positive(
                f[rows], by, positive[rows], ne[rows], rule, min_evaluable=2, seq="V"
            )
            masked = count_positive(
                f, by, positive, ne, rule, min_evaluable=2, seq="V",
                rows=rows, groups=sorted_groups(f, by),
            )  # fmt: skip
            pd.testing.assert_frame_equal(masked, alone, check_exact=True)
            # without the caller's groups: the same
            mine = count_positive(f, by, positive, ne, rule, 2, "V", rows=rows)
            pd.testing.assert_frame_equal(mine, alone, check_exact=True)


@pytest.fixture(scope="module")
def both_sdtm(
    built: tuple[StudySpec, dict[str, Dataset]],
) -> tuple[StudySpec, dict[str, Dataset], dict[str, Dataset]]:
    """The bundled study's SDTM as built (text) and every dataset of it compact."""
    study, datasets = built
    sdtm = {n: ds for n, ds in datasets.items() if study.stage_of(n) == "sdtm"}
    small = {n: compact(copy.deepcopy(ds), min_rows=0) for n, ds in sdtm.items()}
    assert isinstance(small["MK"].frame["MKTESTCD"].dtype, pd.CategoricalDtype)
    return study, sdtm, small


def test_adam_from_compact_sdtm_is_adam_from_text(
    both_sdtm: tuple[StudySpec, dict[str, Dataset], dict[str, Dataset]],
) -> None:
    study, text, small = both_sdtm
    want = build_stage(study, "adam", None, BuildLog(), upstream=text)
    got = build_stage(study, "adam", None, BuildLog(), upstream=small)
    assert got.keys() == want.keys()
    for name, ds in want.items():
        pd.testing.assert_frame_equal(got[name].frame, ds.frame, check_exact=True, obj=name)
        assert [(v.name, v.length) for v in got[name].variables] == [
            (v.name, v.length) for v in ds.variables
        ]


def test_the_efficacy_tables_from_compact_sdtm_are_those_from_text(
    both_sdtm: tuple[StudySpec, dict[str, Dataset], dict[str, Dataset]], tmp_path: Path
) -> None:
    from cdiscforge.adam.tables import write_efficacy_tables

    study, text, small = both_sdtm
    written = {}
    for kind, sdtm in (("text", text), ("compact", small)):
        adam = build_stage(study, "adam", None, BuildLog(), upstream=sdtm)
        out = tmp_path / kind
        out.mkdir()
        write_efficacy_tables({**sdtm, **adam}, study, out)
        written[kind] = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert written["compact"] and written["compact"] == written["text"]


def _frames(datasets: dict[str, Dataset]) -> dict[str, pd.DataFrame]:
    """Each dataset's frame as `compact.compact` holds it (whatever it was built as)."""
    return {n: compact(copy.deepcopy(ds), min_rows=0).frame for n, ds in datasets.items()}


def test_a_dataset_built_large_enough_to_hold_compact_is_what_compact_makes_of_its_text(
    seed_spec: Path, default_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset of at least CATEGORICAL_MIN_ROWS records is built compact in any process
    (no strings made only to be factorized again): SDTM and ADaM alike, ADaM then reading
    compact SDTM (a block of a built dataset makes text of the columns its rules read, of
    the records its filter keeps; an aggregate's `where` is tested first). The bundled
    study's datasets are all small: with every one "large", each must be exactly what
    `compact` makes of the dataset built as text, and the lengths the same."""
    from cdiscforge import xpt
    from cdiscforge.engine import RawStore
    from cdiscforge.spec import load_study

    study = load_study(seed_spec)
    text_log = BuildLog()
    text_sdtm = build_stage(study, "sdtm", RawStore(study, default_raw, text_log), text_log)
    text_adam = build_stage(study, "adam", None, text_log, upstream=text_sdtm)
    monkeypatch.setattr(xpt, "CATEGORICAL_MIN_ROWS", 1)
    log = BuildLog()
    sdtm = build_stage(study, "sdtm", RawStore(study, default_raw, log), log)
    assert isinstance(sdtm["LB"].frame["LBTESTCD"].dtype, pd.CategoricalDtype)  # built so
    adam = build_stage(study, "adam", None, log, upstream=sdtm)
    assert isinstance(adam["ADLB"].frame["PARAMCD"].dtype, pd.CategoricalDtype)
    want, got = _frames({**text_sdtm, **text_adam}), _frames({**sdtm, **adam})
    assert got.keys() == want.keys()
    for name, frame in want.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=name)
        mine = {**sdtm, **adam}[name].variables
        theirs = {**text_sdtm, **text_adam}[name].variables
        assert [(v.name, v.length) for v in mine] == [(v.name, v.length) for v in theirs]
    assert [e.message for e in log.events] == [e.message for e in text_log.events]
    assert log.reconciliation == text_log.reconciliation

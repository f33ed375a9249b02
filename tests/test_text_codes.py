"""Repeated-value text kept as codes through an SDTM build (vectorise.text_codes, as_text;
compact.tighten; engine `keep_codes` / `compact`): a shortcut only. The strings a rule
reads, the order the records are sorted in, the datasets, the log and what the build's child
sends back (compact.pack's categoricals) must be exactly what they are without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscforge import vectorise
from cdiscforge.buildlog import BuildLog
from cdiscforge.compact import compact_series, pack, tighten
from cdiscforge.engine import RawStore, _stackable, build_dataset, build_order
from cdiscforge.errors import collecting
from cdiscforge.model import Dataset, Variable
from cdiscforge.spec import load_study
from cdiscforge.vectorise import (
    as_text,
    broadcast,
    factorize_rows,
    forget,
    stable_order,
    text_codes,
)


def _distinct_and_codes(n: int = 3000, seed: int = 5) -> tuple[pd.Series, np.ndarray]:
    """Distinct values out of order, repeated, missing, one of them unused."""
    distinct = pd.Series(["KNEE", "ANKLE", None, "KNEE", "É-accent", "unused"], dtype="string")
    codes = np.random.default_rng(seed).integers(0, 5, n)
    return distinct, codes


def test_text_codes_stand_for_the_broadcast_strings() -> None:
    distinct, codes = _distinct_and_codes()
    index = pd.RangeIndex(len(codes)) * 3
    kept = text_codes(distinct, codes, index)
    assert isinstance(kept.dtype, pd.CategoricalDtype)
    categories = list(kept.dtype.categories)
    assert categories == sorted(set(categories)) and None not in categories  # sorted, unique
    assert (kept.array.codes[pd.isna(distinct.to_numpy()[codes])] == -1).all()  # missing: -1
    strings = broadcast(distinct, codes, index)
    pd.testing.assert_series_equal(as_text(kept), strings, check_exact=True)
    pd.testing.assert_series_equal(
        broadcast(distinct, codes, index, keep_codes=True), kept, check_exact=True
    )
    # text as objects (a dict's .map of the distinct values) is kept as codes too
    objects = broadcast(distinct.astype(object), codes, index, keep_codes=True)
    assert isinstance(objects.dtype, pd.CategoricalDtype)
    pd.testing.assert_series_equal(as_text(objects), strings, check_exact=True)
    # numbers never are
    numbers = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype="Float64")
    assert broadcast(numbers, codes, index, keep_codes=True).dtype == "Float64"


def test_grouping_and_sorting_read_a_categorical_as_its_strings() -> None:
    distinct, codes = _distinct_and_codes()
    strings = broadcast(distinct, codes, pd.RangeIndex(len(codes)))
    other = pd.Series(np.random.default_rng(2).choice(["x", None, "y"], len(codes)), dtype="string")
    # categories in code order (text_codes) and out of it (any categorical)
    reordered = strings.astype(pd.CategoricalDtype(["KNEE", "É-accent", "ANKLE", "unused"]))
    for kept in (text_codes(distinct, codes, strings.index), reordered):
        forget()
        frame = pd.DataFrame({"c": kept, "o": other})
        plain = pd.DataFrame({"c": strings, "o": other})
        for a, b in zip(factorize_rows(kept, other), factorize_rows(strings, other), strict=True):
            assert (a == b).all()
        for keys in (["c", "o"], ["o", "c"]):
            expected = frame.sort_values(keys, kind="stable", na_position="last").index
            assert (frame.index[stable_order(frame, keys)] == expected).all()
            if kept is not reordered:  # sorted categories: the strings' order
                assert (stable_order(frame, keys) == stable_order(plain, keys)).all()


def test_tighten_is_compact_series_of_the_strings() -> None:
    distinct, codes = _distinct_and_codes()
    kept = text_codes(distinct, codes, pd.RangeIndex(len(codes)))
    assert "unused" in kept.dtype.categories
    tight = tighten(kept)
    expected = compact_series(as_text(kept))
    pd.testing.assert_series_equal(tight, expected, check_exact=True)
    assert tight.dtype == expected.dtype and tight.array.codes.dtype == expected.array.codes.dtype
    assert tight.dtype.categories.dtype == expected.dtype.categories.dtype
    # compact_series would keep the strings: tighten says so
    assert tighten(text_codes(distinct, np.arange(5), pd.RangeIndex(5))) is None
    assert tighten(text_codes(distinct, np.zeros(0, dtype=int), pd.RangeIndex(0))) is None


def test_pack_counts_a_column_the_build_compacted_as_packed() -> None:
    distinct, codes = _distinct_and_codes()
    strings = broadcast(distinct, codes, pd.RangeIndex(len(codes)))
    variables = [Variable("MKLOC", "Location"), Variable("OTHER", "Other")]

    def dataset(loc: pd.Series) -> Dataset:
        frame = pd.DataFrame({"MKLOC": loc, "OTHER": strings.str.lower()})
        return Dataset("MK", "MK", frame, [Variable(**v.__dict__) for v in variables])

    plain, built = dataset(strings), dataset(tighten(text_codes(distinct, codes, strings.index)))
    pack(built)
    pack(plain)
    pd.testing.assert_frame_equal(built.frame, plain.frame, check_exact=True)
    for name in ("MKLOC", "OTHER"):  # the same categoricals, of the strings' own dtype
        assert built.frame[name].dtype == plain.frame[name].dtype
        assert built.frame[name].dtype.categories.dtype == strings.dtype
    assert (built.frame["MKLOC"].array.codes == plain.frame["MKLOC"].array.codes).all()
    pd.testing.assert_series_equal(as_text(built.frame["MKLOC"]), strings, check_names=False)


def test_blocks_stack_to_the_strings_they_stand_for() -> None:
    distinct, codes = _distinct_and_codes()
    index = pd.RangeIndex(len(codes))
    other = pd.Series(["b", "a", None], dtype="string")
    small = np.arange(len(codes)) % 3

    def blocks(keep: bool) -> list[pd.DataFrame]:
        make = text_codes if keep else broadcast
        return [
            pd.DataFrame({"both": make(distinct, codes, index), "one": make(other, small, index)}),
            pd.DataFrame(
                {"both": make(other, small, index), "one": broadcast(distinct, codes, index)}
            ),
        ]

    stacked = pd.concat(_stackable(blocks(True)), ignore_index=True)
    plain = pd.concat(blocks(False), ignore_index=True)
    assert isinstance(stacked["both"].dtype, pd.CategoricalDtype)  # categories united
    assert stacked["one"].dtype == plain["one"].dtype  # text in one block: text
    pd.testing.assert_series_equal(as_text(stacked["both"]), plain["both"], check_exact=True)
    pd.testing.assert_series_equal(stacked["one"], plain["one"], check_exact=True)


def _build_sdtm(
    seed_spec: Path, raw: Path, compact: bool = False
) -> tuple[dict[str, Dataset], BuildLog]:
    study = load_study(seed_spec)
    log = BuildLog()
    store = RawStore(study, raw, log)
    domains: dict[str, Dataset] = {}
    with collecting():
        store.check_all()
        for name in build_order(study, "sdtm"):
            for ds in build_dataset(study.datasets[name], study, store, domains, log):
                domains[ds.name] = ds
            if compact:  # the child's build of the same dataset, the same inputs
                child = build_dataset(study.datasets[name], study, store, domains, BuildLog(),
                                      compact=True)  # fmt: skip
                for ds in child:
                    domains[f"child {ds.name}"] = ds
    return domains, log


def test_the_child_sends_what_pack_makes_of_the_one_process_datasets(
    seed_spec: Path, default_raw: Path
) -> None:
    domains, _ = _build_sdtm(seed_spec, default_raw, compact=True)
    compared = 0
    for name in [n for n in domains if not n.startswith("child ")]:
        plain, child = domains[name], domains[f"child {name}"]
        categoricals = [
            n for n in child.frame if isinstance(child.frame[n].dtype, pd.CategoricalDtype)
        ]
        compared += len(categoricals)
        pack(child)
        pack(plain)
        pd.testing.assert_frame_equal(child.frame, plain.frame, check_exact=True)
        for column in plain.frame:
            a, b = child.frame[column], plain.frame[column]
            if isinstance(b.dtype, pd.CategoricalDtype):
                assert (a.array.codes == b.array.codes).all(), (name, column)
                assert a.array.codes.dtype == b.array.codes.dtype, (name, column)
                assert a.dtype.categories.dtype == b.dtype.categories.dtype, (name, column)
    assert compared > 10  # the child's build did keep columns as codes


def test_keeping_codes_changes_no_dataset_and_no_log_line(
    seed_spec: Path, default_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    keep = vectorise.text_codes

    def counted(distinct: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
        made.append(str(distinct.name))
        return keep(distinct, codes, index)

    monkeypatch.setattr(vectorise, "text_codes", counted)
    with_codes, log_with = _build_sdtm(seed_spec, default_raw)
    assert len(made) > 10  # the shortcut was taken
    monkeypatch.setattr(vectorise, "text_codes", lambda d, c, i: vectorise.take(d, c, i))
    without, log_without = _build_sdtm(seed_spec, default_raw)
    assert with_codes.keys() == without.keys()
    for name, ds in with_codes.items():
        assert not any(isinstance(t, pd.CategoricalDtype) for t in ds.frame.dtypes), name
        pd.testing.assert_frame_equal(ds.frame, without[name].frame, check_exact=True)
    assert [e.__dict__ for e in log_with.events] == [e.__dict__ for e in log_without.events]
    assert [r.__dict__ for r in log_with.reconciliation] == [
        r.__dict__ for r in log_without.reconciliation
    ]

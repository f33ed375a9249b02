"""cdiscforge.compact: built datasets held as categoricals, written to the same bytes.

The build makes each validated dataset's repeated-value text columns categoricals before it
is written (issue 15: memory at 10,000 subjects). Nothing a reviewer receives may change:
these tests compare the writers' bytes for the same data as strings and as categoricals,
down to a whole build with every dataset compacted.
"""

from __future__ import annotations

import copy
import filecmp
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdiscforge import build, xpt
from cdiscforge.compact import compact, compact_series
from cdiscforge.datasetjson import write_dataset_json
from cdiscforge.errors import XptError
from cdiscforge.model import Dataset, StudyInfo, Variable, char_max_bytes
from cdiscforge.xpt import write_xpt

CREATED = datetime(2024, 5, 17, 9, 30, 5)


def _mk(rows: int = 12) -> Dataset:
    frame = pd.DataFrame(
        {
            "USUBJID": pd.Series([f"S-{i % 3:03d}" for i in range(rows)], dtype="str"),
            "MKLOC": pd.Series((["KNEE", "WRIST", None, "ELBOW JOINT"] * rows)[:rows], dtype="str"),
            "MKREFID": pd.Series([f"R{i}" for i in range(rows)], dtype="str"),  # all distinct
            "MKSEQ": np.arange(1.0, rows + 1),
        }
    )
    variables = [
        Variable("USUBJID", "Unique Subject Identifier"),
        Variable("MKLOC", "Location"),
        Variable("MKREFID", "Reference ID"),
        Variable("MKSEQ", "Sequence Number", type="Num"),
    ]
    return Dataset("MK", "Musculoskeletal Findings", frame, variables)


def test_repeated_text_becomes_sorted_categories_and_the_rest_is_left() -> None:
    ds = compact(_mk(), min_rows=1)
    frame = ds.frame
    loc = frame["MKLOC"]
    assert isinstance(loc.dtype, pd.CategoricalDtype)
    assert list(loc.cat.categories) == ["ELBOW JOINT", "KNEE", "WRIST"]  # sorted, no NA
    assert loc.astype("str").tolist() == _mk().frame["MKLOC"].tolist()
    assert loc.isna().sum() == 3
    assert isinstance(frame["USUBJID"].dtype, pd.CategoricalDtype)
    assert frame["MKREFID"].dtype == "str"  # distinct in every record: strings are smaller
    assert frame["MKSEQ"].dtype == "float64"
    # sorted categories sort like the strings did
    order = _mk().frame.sort_values("MKLOC", kind="stable").index.tolist()
    assert frame.sort_values("MKLOC", kind="stable").index.tolist() == order


def test_small_datasets_and_non_text_columns_are_not_touched() -> None:
    ds = compact(_mk(), min_rows=1000)
    assert all(not isinstance(t, pd.CategoricalDtype) for t in ds.frame.dtypes)
    numbers = pd.Series([1.0, 1.0, 2.0])
    assert compact_series(numbers) is numbers
    objects = pd.Series(["a", 1, "a"], dtype=object)  # a writer must still refuse the 1
    assert compact_series(objects) is objects


def _pair(rows: int = 12) -> tuple[Dataset, Dataset]:
    plain = _mk(rows)
    cats = compact(copy.deepcopy(plain), min_rows=1)
    return plain, cats


def test_xpt_bytes_are_the_same_for_categoricals(tmp_path: Path) -> None:
    plain, cats = _pair(5000)  # several 1 MiB observation chunks
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_xpt(plain, a / "mk.xpt", created=CREATED)
    write_xpt(cats, b / "mk.xpt", created=CREATED)
    assert filecmp.cmp(a / "mk.xpt", b / "mk.xpt", shallow=False)
    assert [v.length for v in plain.variables] == [v.length for v in cats.variables]


def test_unused_categories_do_not_widen_or_fail_a_filtered_frame(tmp_path: Path) -> None:
    plain, cats = _pair()
    keep = plain.frame["MKLOC"] != "ELBOW JOINT"  # the longest value: no record has it now
    plain.frame = plain.frame[keep.fillna(True).to_numpy(bool)].reset_index(drop=True)
    cats.frame = cats.frame[keep.fillna(True).to_numpy(bool)].reset_index(drop=True)
    assert "ELBOW JOINT" in cats.frame["MKLOC"].cat.categories
    assert char_max_bytes(cats.frame["MKLOC"]) == char_max_bytes(plain.frame["MKLOC"]) == 5
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_xpt(plain, a / "mk.xpt", created=CREATED)
    write_xpt(cats, b / "mk.xpt", created=CREATED)
    assert filecmp.cmp(a / "mk.xpt", b / "mk.xpt", shallow=False)
    assert cats.variable("MKLOC").length == 5


def test_a_bad_category_is_named_at_its_first_record(tmp_path: Path) -> None:
    plain, cats = _pair()
    for ds in (plain, cats):
        loc = ds.frame["MKLOC"].astype("str").where(lambda s: s != "WRIST", "HANDGELENK\u00e9")
        ds.frame["MKLOC"] = loc if ds is plain else compact_series(loc, 1.0)
    messages = []
    for ds, folder in ((plain, tmp_path / "a"), (cats, tmp_path / "b")):
        folder.mkdir()
        with pytest.raises(XptError) as err:
            write_xpt(ds, folder / "mk.xpt", created=CREATED)
        messages.append(str(err.value))
        assert not list(folder.iterdir())  # nothing written
    assert messages[0] == messages[1]
    assert "row 1" in messages[0] and "2 more rows" in messages[0]


def test_fixed_length_overflow_is_refused_for_categoricals_too(tmp_path: Path) -> None:
    _, cats = _pair()
    cats.variable("MKLOC").length = 5  # "ELBOW JOINT" is 11 bytes: never truncated
    with pytest.raises(XptError, match="longer than the fixed length 5"):
        write_xpt(cats, tmp_path / "mk.xpt", created=CREATED)


def test_dataset_json_bytes_are_the_same_for_categoricals(tmp_path: Path) -> None:
    plain, cats = _pair(50)
    info = StudyInfo("S1", "Study", "A study", "P1")
    paths = []
    for ds, name in ((plain, "a"), (cats, "b")):
        paths.append(
            write_dataset_json(
                ds, tmp_path / name / "mk.json", study=info, created="2024-05-17T09:30:05",
                chunk_rows=7,
            )
        )  # fmt: skip
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_a_build_with_every_dataset_compacted_writes_the_same_files(
    tmp_path: Path, seed_spec: Path, default_raw: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 15-subject study built twice: as today (its datasets are all under the size the
    build compacts from) and with every dataset of at least one record compacted, so the
    validation (its report is compared too), every writer, define.xml, the P21 workbook and
    the tables see categoricals. Same files."""
    build.run_build(seed_spec, tmp_path / "plain", default_raw)
    monkeypatch.setattr(xpt, "CATEGORICAL_MIN_ROWS", 1)
    result = build.run_build(seed_spec, tmp_path / "compact", default_raw)
    assert isinstance(result.datasets["LB"].frame["LBTESTCD"].dtype, pd.CategoricalDtype)
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*"))
    same = sorted(p.relative_to(tmp_path / "compact") for p in (tmp_path / "compact").rglob("*"))
    assert plain == same
    for rel in plain:
        if (tmp_path / "plain" / rel).is_file() and rel.name != "timings.json":
            assert filecmp.cmp(tmp_path / "plain" / rel, tmp_path / "compact" / rel, False), rel


def test_the_engine_sort_moves_columns_in_sort_values_order() -> None:
    """engine._sorted (a column at a time, for memory) orders exactly as sort_values."""
    from cdiscforge.engine import _sorted

    rng = np.random.default_rng(7)
    n = 500
    frame = pd.DataFrame(
        {
            "K1": pd.Series(rng.choice(["B", "A", None], n), dtype="str"),
            "K2": rng.choice([2.0, 1.0, np.nan], n),
            "V": pd.Series([f"v{i}" for i in range(n)], dtype="str"),
            "N": pd.array(rng.integers(0, 5, n), dtype="Float64"),
        },
        index=pd.Index(rng.permutation(n) * 3),  # not a range: as after dedupe's drop
    )
    want = frame.sort_values(["K1", "K2"], kind="stable", na_position="last")
    got = _sorted(frame.copy(), ["K1", "K2"])
    pd.testing.assert_frame_equal(got, want)


def _compact_series_by_pandas(series: pd.Series, max_share: float = 0.5) -> pd.Series:
    """What compact_series was: pd.factorize(sort=True) of the records themselves."""
    codes, uniques = pd.factorize(series, sort=True)
    if len(uniques) > max_share * len(series):
        return series
    values = pd.Categorical.from_codes(codes, categories=uniques)
    return pd.Series(values, index=series.index, name=series.name, copy=False)


@pytest.mark.parametrize("dtype", ["string[pyarrow]", "string[python]", "str"])
@pytest.mark.parametrize(
    ("rows", "distinct", "missing"),
    [(1000, 3, 0.0), (1000, 3, 0.1), (5000, 127, 0.05), (2000, 126, 0.0), (3000, 1, 0.5),
     (100, 1, 0.0), (10, 10, 0.0), (4, 1, 1.0), (40_000, 300, 0.01)],
)  # fmt: skip
def test_compact_series_is_pandas_sorted_factorize(
    dtype: str, rows: int, distinct: int, missing: float
) -> None:
    """Arrow's encoding and a sort of the distinct values only give the categorical
    pd.factorize(sort=True) of the records gives: same categories (code point order, with
    non-ASCII and upper/lower case), codes, code type (int8 up to 126 categories, then
    int16), missing values -1, index and name; too many distinct values: the strings."""
    rng = np.random.default_rng(rows + distinct)
    values = np.array(
        [f"v{i:03d}é" if i % 7 else f"A{i}" if i % 2 else f"a{i}" for i in range(distinct)],
        dtype=object,
    )
    data = values[rng.integers(0, distinct, rows)]
    data[rng.random(rows) < missing] = None
    series = pd.Series(data, dtype=dtype, name="MKORRES", index=np.arange(rows) * 3 + 5)
    want, got = _compact_series_by_pandas(series), compact_series(series)
    assert got.dtype == want.dtype
    if not isinstance(want.dtype, pd.CategoricalDtype):
        assert got is series and want is series
        return
    assert got.array.codes.dtype == want.array.codes.dtype
    np.testing.assert_array_equal(got.array.codes, want.array.codes)
    assert got.dtype.categories.equals(want.dtype.categories)
    assert got.dtype.categories.dtype == want.dtype.categories.dtype
    assert got.index.equals(want.index) and got.name == want.name


def _tighten_by_renumbering(series: pd.Series, max_share: float = 0.5) -> pd.Series | None:
    """What compact.tighten was: every column renumbered through int64 codes."""
    from cdiscforge.vectorise import used_categories

    used = used_categories(series)
    if len(series) == 0 or len(used) > max_share * len(series):
        return None
    categories = series.dtype.categories
    keep = np.zeros(len(categories) + 1, dtype=bool)
    keep[: len(categories)] = categories.isin(used)
    renumber = np.full(len(categories) + 1, -1, dtype=np.int64)
    renumber[keep] = np.arange(int(keep.sum()))
    values = pd.Categorical.from_codes(renumber[series.array.codes], categories=used)
    return pd.Series(values, index=series.index, name=series.name, copy=False)


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("categories", [1, 2, 126, 127, 128, 300])
@pytest.mark.parametrize(("unused", "missing"), [(0, 0.0), (0, 0.1), (1, 0.0), (5, 0.1)])
def test_tighten_keeps_a_compact_column_and_renumbers_the_others(
    narrow: bool, categories: int, unused: int, missing: float
) -> None:
    """tighten returns a column whose categories all have records and whose codes are in the
    smallest type as it is (no pass over its records), and renumbers the others in the
    final code type: the same categorical either way as renumbering every column."""
    from cdiscforge.compact import tighten

    rng = np.random.default_rng(categories * 10 + unused)
    rows = 20 * categories
    codes = rng.integers(0, max(categories - unused, 1), rows)
    codes[rng.random(rows) < missing] = -1
    if categories == 1 and unused:
        codes[:] = -1
    names = pd.Index([f"v{i:04d}" for i in range(categories)], dtype="string")
    if narrow:
        codes = codes.astype(np.min_scalar_type(-categories))
    values = pd.Categorical.from_codes(codes, categories=names, validate=False)
    series = pd.Series(values, name="MKLOC", index=np.arange(rows) + 3)
    want, got = _tighten_by_renumbering(series), tighten(series)
    if want is None:
        assert got is None
        return
    assert got is not None and got.dtype == want.dtype
    assert got.array.codes.dtype == want.array.codes.dtype
    np.testing.assert_array_equal(got.array.codes, want.array.codes)
    assert got.dtype.categories.equals(want.dtype.categories)
    assert got.index.equals(want.index) and got.name == want.name

"""The raw exports are read by pyarrow's CSV reader itself, each column encoded by Arrow on
two threads, and a key checked on combined integer codes (cdiscforge.raw). Each shortcut
must give exactly what the pandas way gives (pd.read_csv, pd.factorize, one thread,
frame.duplicated): the same frame, distinct values and codes, notes and located errors,
or a published dataset or an error report would change. The pandas way is run here by
switching the shortcuts off, on exports with the problems each shortcut could miss."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cdiscforge import raw
from cdiscforge.concurrent import threaded
from cdiscforge.errors import InputError, InputErrors, collecting
from cdiscforge.raw import read_form
from cdiscforge.spec import load_study
from cdiscforge.vectorise import combine_codes, factorize_text, narrow_codes

JOINTS = "STUDY,SITENUMBER,SUBJECT,FOLDER,ASMDAT,JOINT,ASSESSMENT,RESULT,NEREAS"


@pytest.fixture(scope="module")
def study(seed_spec: Path):
    return load_study(seed_spec)


def _joints(rows: int) -> list[str]:
    """A joint export of `rows` records with a unique key (large enough for several Arrow
    blocks of the CSV reader, so the encoding's chunks are unified)."""
    i = np.arange(rows)
    subject = pd.Series(i // 40).map("101-{:05d}".format)
    folder = np.where((i // 20) % 2 == 0, "BASELINE", "WEEK 4")
    joint = pd.Series(i % 10).map("Joint {}".format)
    assess = np.where(i % 20 < 10, "Swollen", "Tender")
    result = np.where(i % 7 == 0, "Y", "N")
    line = (
        "NCT03691909,101," + subject + "," + folder + ",04-NOV-2018," + joint + "," + assess
        + "," + result + ","
    )  # fmt: skip
    return [JOINTS, *line.tolist()]


def _planted(rows: int) -> list[str]:
    lines = _joints(rows)
    lines[3] = lines[3].replace(",Swollen,", ",  Swollen ,")  # blank-padded: same as trimmed
    lines[5] = lines[5].replace(",BASELINE,", ", BASELINE,")
    lines.insert(9, lines[8])  # a repeated key: record 9 repeats record 8
    lines[20] = lines[20] + "Joint\x01replaced"  # a control character
    lines[30] = lines[30] + '"two\nlines"'  # a line break inside a quoted value
    lines[31] = lines[31] + "a\ttab"
    lines[40] = lines[40].replace(",N,", ",  ,")  # blank: a missing required value
    lines[41] = lines[41].replace("04-NOV-2018", "31-FEB-2019")  # impossible date
    lines[-1] = lines[-1].replace(",N,", ",ZZZ,").replace(",Y,", ",ZZZ,")
    return lines


def _write(folder: Path, lines: list[str]) -> Path:
    (folder / "joints.csv").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return folder


def _pandas_factorize(values: pd.Series, narrow: bool = False) -> tuple[np.ndarray, object]:
    """pd.factorize, its codes in the narrowest type (what the raw check keeps)."""
    codes, uniques = pd.factorize(values)
    return (codes.astype(narrow_codes(len(uniques))) if narrow else codes), uniques


def _pandas_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """What cdiscforge.raw did before: pandas reads, pandas factorizes, one thread."""
    monkeypatch.setattr(raw, "_read_csv_arrow", lambda path: None)
    monkeypatch.setattr(raw, "factorize_text", _pandas_factorize)
    monkeypatch.setattr(raw, "threaded", lambda fn, items: [fn(x) for x in items])


def _read(study, folder: Path) -> tuple[raw.RawForm | None, list[tuple]]:
    formats = study.date_formats("joints")
    try:
        with collecting():
            form = read_form(study.forms["joints"], folder, date_formats=formats)
    except InputErrors as exc:
        return None, [(e.file, e.row, e.column, e.value, e.problem) for e in exc.errors]
    return form, []


def _same_form(a: raw.RawForm, b: raw.RawForm) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    assert [str(t) for t in a.frame.dtypes] == [str(t) for t in b.frame.dtypes]
    assert list(a.distinct) == list(b.distinct)
    for col, (codes, values) in a.distinct.items():
        other_codes, other_values = b.distinct[col]
        assert codes.dtype == other_codes.dtype
        np.testing.assert_array_equal(codes, other_codes)
        pd.testing.assert_series_equal(values, other_values, check_exact=True)
    assert list(a.iso) == list(b.iso) and list(a.iso_distinct) == list(b.iso_distinct)
    for col in a.iso:
        pd.testing.assert_series_equal(a.iso[col], b.iso[col], check_exact=True)
    assert a.notes == b.notes
    for col, (codes, values) in a.distinct.items():  # held through the SDTM stage: narrow
        assert codes.dtype == narrow_codes(len(values)), (col, codes.dtype, len(values))


def test_clean_export_read_and_encoded_as_pandas_does(
    tmp_path: Path, study, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _write(tmp_path, _joints(60_000))
    form, errors = _read(study, folder)
    assert form is not None and not errors
    assert form.frame["SUBJECT"].array.__arrow_array__().num_chunks > 1  # several blocks
    _pandas_way(monkeypatch)
    before, _ = _read(study, folder)
    assert before is not None
    _same_form(form, before)


def test_planted_problems_reported_as_the_pandas_way_reports_them(
    tmp_path: Path, study, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _write(tmp_path, _planted(60_000))
    _, errors = _read(study, folder)
    problems = [(row, column, problem.split(":")[0]) for _, row, column, _, problem in errors]
    assert (9, "SUBJECT+FOLDER+JOINT+ASSESSMENT", "duplicate record key SUBJECT/FOLDER/JOINT/"
            "ASSESSMENT (declared unique in raw_forms.yaml)") in problems  # fmt: skip
    assert (3, "SUBJECT+FOLDER+JOINT+ASSESSMENT", "duplicate record key SUBJECT/FOLDER/JOINT/"
            "ASSESSMENT (declared unique in raw_forms.yaml)") not in problems  # fmt: skip
    assert (20, "NEREAS", "control character in text (NUL or another C0 control)") in problems
    assert (40, "RESULT", "required value is missing") in problems
    assert (41, "ASMDAT", "impossible calendar date") in problems
    assert (60_001, "RESULT", "not one of ['Y', 'N', 'y', 'n', 'Not evaluable', "
            "'NOT EVALUABLE', 'not evaluable']") in problems  # fmt: skip
    _pandas_way(monkeypatch)
    _, before = _read(study, folder)
    assert errors == before


def test_planted_problems_and_form_the_same_with_intp_codes(
    tmp_path: Path, study, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raw check's narrow codes (int8 for JOINT's 10 values, int16 for SUBJECT's 1,500,
    -1 missing, code + 1 in the key check) find the same located errors, frame, ISO dates
    and distinct values as the intp codes it held before."""
    folder = _write(tmp_path, _planted(60_000))
    _, errors = _read(study, folder)
    (tmp_path / "clean").mkdir()
    clean = _write(tmp_path / "clean", _joints(60_000))
    form, _ = _read(study, clean)
    assert form is not None
    assert form.distinct["SUBJECT"][0].dtype == np.int16
    assert form.distinct["JOINT"][0].dtype == np.int8
    wide = factorize_text
    monkeypatch.setattr(raw, "factorize_text", lambda values, narrow=False: wide(values))
    _, before = _read(study, folder)
    assert errors == before and len(errors) == 5
    old, _ = _read(study, clean)
    assert old is not None and old.distinct["SUBJECT"][0].dtype == np.intp
    pd.testing.assert_frame_equal(form.frame, old.frame, check_exact=True)
    for col, (codes, values) in form.distinct.items():
        np.testing.assert_array_equal(codes, old.distinct[col][0])
        pd.testing.assert_series_equal(values, old.distinct[col][1], check_exact=True)
    for col in form.iso:
        pd.testing.assert_series_equal(form.iso[col], old.iso[col], check_exact=True)


@pytest.mark.parametrize("quoted_line_break", [False, True])
def test_trimmed_and_line_break_columns_as_the_pandas_way(
    tmp_path: Path, study, monkeypatch: pytest.MonkeyPatch, quoted_line_break: bool
) -> None:
    # The same problems without the errors, so the form is returned and compared whole.
    lines = _joints(60_000)
    lines[3] = lines[3].replace(",Swollen,", ",  Swollen ,")
    lines[5] = lines[5].replace(",BASELINE,", ", BASELINE,")
    lines[30] = lines[30] + ('"two\nlines"' if quoted_line_break else "two\tlines")
    lines[31] = lines[31] + "a\ttab"
    folder = _write(tmp_path, lines)
    assert quoted_line_break or raw._read_csv_arrow(folder / "joints.csv") is not None
    form, errors = _read(study, folder)
    assert form is not None and not errors
    assert form.frame["ASSESSMENT"].iloc[2] == "Swollen"
    assert form.frame["NEREAS"].iloc[29] == "two lines" and pd.isna(form.frame["NEREAS"].iloc[0])
    assert form.notes[0][1:3] == ("NEREAS", 2)
    _pandas_way(monkeypatch)
    before, _ = _read(study, folder)
    assert before is not None
    _same_form(form, before)


@pytest.mark.parametrize(
    "header, line",
    [
        (JOINTS.replace("NEREAS", "RESULT"), None),  # repeated name: pandas calls it RESULT.1
        (JOINTS.replace("NEREAS", ""), None),  # empty name: pandas calls it Unnamed: 8
        (JOINTS, "NCT03691909,101,101-00001,BASELINE,04-NOV-2018,J,Swollen,N,,extra"),
    ],
)
def test_what_pyarrow_cannot_read_is_read_as_pandas_reads_it(
    tmp_path: Path, study, monkeypatch: pytest.MonkeyPatch, header: str, line: str | None
) -> None:
    lines = _joints(50)
    lines[0] = header
    if line is not None:
        lines.insert(20, line)
    folder = _write(tmp_path, lines)
    with pytest.raises(InputError) as new:
        read_form(study.forms["joints"], folder)
    _pandas_way(monkeypatch)
    with pytest.raises(InputError) as old:
        read_form(study.forms["joints"], folder)
    assert str(new.value) == str(old.value)
    assert (new.value.row, new.value.column) == (old.value.row, old.value.column)
    if line is not None:
        assert "line 21" in str(new.value)  # the C parser names the line


def test_not_utf8_export_still_names_the_row(tmp_path: Path, study) -> None:
    lines = _joints(50)
    lines[12] = lines[12].replace("Joint", "Jóint")
    (tmp_path / "joints.csv").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8") as err:
        read_form(study.forms["joints"], tmp_path)
    assert err.value.row == 12


def test_factorize_text_is_pandas_factorize() -> None:
    chunks = [["b", "a", None, "b"], [], ["c", "a", "d", None], ["", "e", "c"]]
    data = pa.chunked_array([pa.array(c, type=pa.large_string()) for c in chunks])
    for dtype in ("str", "string"):
        values = pd.Series(pd.StringDtype("pyarrow", na_value=pd.Series([], dtype=dtype)
                                          .dtype.na_value).__from_arrow__(data))  # fmt: skip
        assert values.dtype == dtype
        codes, uniques = factorize_text(values)
        expected_codes, expected = pd.factorize(values)
        assert codes.dtype == expected_codes.dtype
        assert codes.tolist() == expected_codes.tolist() == [0, 1, -1, 0, 2, 1, 3, -1, 4, 5, 2]
        pd.testing.assert_extension_array_equal(uniques, expected.array)
    for values in (pd.Series([], dtype="str"), pd.Series([None, None], dtype="str"),
                   pd.Series(["x", None, "x"], dtype=object)):  # fmt: skip
        codes, uniques = factorize_text(values)
        expected_codes, expected = pd.factorize(values)
        assert codes.tolist() == expected_codes.tolist()
        assert list(uniques) == list(expected)


@pytest.mark.parametrize("widths", [(3, 5, 2), (2**40, 2**30, 7)])  # the second overflows
def test_combine_codes_equal_integers_exactly_for_equal_combinations(
    widths: tuple[int, ...],
) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    parts = [(rng.integers(0, min(w, 6), n), w) for w in widths]
    combined, span = combine_codes(iter(parts), n)
    assert (combined >= 0).all() and (combined < span).all()
    frame = pd.DataFrame({i: p for i, (p, _) in enumerate(parts)})
    expected = frame.groupby(list(frame.columns), sort=False).ngroup().to_numpy()
    assert pd.factorize(combined)[0].tolist() == expected.tolist()


@pytest.mark.parametrize("n, repeat", [(4000, False), (4000, True), (3, True)])
def test_duplicated_is_frame_duplicated(n: int, repeat: bool) -> None:
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {
            "a": pd.Series(rng.choice(["x", "y", None], n), dtype="str"),
            "b": pd.Series(np.arange(n).astype(str), dtype="str"),
        }
    )
    if repeat:
        frame.loc[n - 1] = frame.loc[0]
    columns = [pd.factorize(frame[c]) for c in frame.columns]
    columns = [(codes, pd.Series(values)) for codes, values in columns]
    got = raw._duplicated(columns, n)
    assert got.tolist() == frame.duplicated(keep="first").tolist()
    assert got.any() == repeat


def test_duplicated_many_combinations_is_frame_duplicated() -> None:
    # More combinations than a count per integer allows: numbered instead.
    rng = np.random.default_rng(9)
    n = 3000
    values = [pd.Series(rng.integers(0, 10**6, n).astype(str), dtype="str") for _ in range(3)]
    frame = pd.DataFrame(dict(enumerate(values)))
    frame.loc[10] = frame.loc[3]
    frame.loc[20] = frame.loc[3]
    columns = [pd.factorize(frame[c]) for c in frame.columns]
    got = raw._duplicated([(c, pd.Series(v)) for c, v in columns], n)
    assert np.flatnonzero(got).tolist() == [10, 20]
    assert got.tolist() == frame.duplicated(keep="first").tolist()


def test_threaded_keeps_the_order_and_raises_the_first_failure() -> None:
    seen: set[int] = set()

    def work(i: int) -> int:
        seen.add(threading.get_ident())
        if i in (5, 7):
            raise ValueError(f"item {i}")
        return i * i

    assert threaded(work, list(range(5))) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="item 5"):
        threaded(work, list(range(10)))
    assert threaded(work, []) == []

"""The fast paths of define.xml's cross-check see what the slow ones saw.

`check_dataset_json` parses rows in blocks (simdjson, else json.loads) and falls back to the
row-by-row tokenizer; `scan_xpt_distinct` reads codelist columns as raw bytes instead of
pyreadstat chunks. Each test compares the fast answer with the slow one on the same file (the
slow path forced by monkeypatching) and checks the answer says what it should, on files big
enough to span many blocks, drifted deep inside.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cdiscforge import datasetjson
from cdiscforge.datasetjson import check_dataset_json, write_dataset_json
from cdiscforge.define import crosscheck, write_define
from cdiscforge.model import Dataset, StudyInfo, Variable
from cdiscforge.xpt import _scan_xpt_chunks, read_xpt, scan_xpt_distinct, write_xpt

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CREATED = "2026-01-15T09:30:00"
STUDY = StudyInfo(
    studyid="NCT03691909", name="NCT03691909", description="MSC in RA", protocol="NCT03691909"
)
N_ROWS = 3000
CHUNK = 2048  # characters: a 3,000-row file is ~100 blocks


def _big(n: int = N_ROWS) -> Dataset:
    i = np.arange(n)
    frame = pd.DataFrame(
        {
            "USUBJID": pd.Series([f"NCT03691909-01-{k // 10:03d}" for k in i], dtype="str"),
            "LBTESTCD": pd.Series(np.where(i % 3 == 0, "CRP", "ALB"), dtype="str"),
            "LBORRES": pd.Series([None if k % 7 == 0 else f"{k / 8}" for k in i], dtype="str"),
            "LBSTRESN": np.where(i % 5 == 0, np.nan, i / 4),
            "VISITNUM": (i % 4).astype("float64"),
        }
    )
    variables = [
        Variable("USUBJID", "Unique Subject Identifier"),
        Variable("LBTESTCD", "Lab Test or Examination Short Name", codelist="LBTESTCD"),
        Variable("LBORRES", "Result or Finding in Original Units"),
        Variable("LBSTRESN", "Numeric Result/Finding in Standard Units", type="Num"),
        Variable("VISITNUM", "Visit Number", type="Num"),
    ]
    ds = Dataset("LB", "Laboratory Test Results", frame, variables, keys=["USUBJID"], domain="LB")
    ds.fit_lengths()
    return ds


def _slow(monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[list[str], int]:
    """check_dataset_json with every block refused: rows decoded one by one (the old path)."""
    with monkeypatch.context() as m:
        m.setattr(datasetjson, "_bulk_rows", lambda stream, tally: float("inf"))
        m.setattr(datasetjson, "_simd_line_lengths", lambda parser, body, n: None)
        return check_dataset_json(path, chunk_chars=CHUNK)


def _written_doc(tmp_path: Path) -> dict[str, Any]:
    out = write_dataset_json(_big(), tmp_path / "w.json", study=STUDY, created=CREATED)
    return json.loads(out.read_text(encoding="utf-8"))


def _splice(items: list[Any], at: int, drop: int, new: list[Any]) -> list[Any]:
    return [*items[:at], *new, *items[at + drop :]]


def _set(doc: dict[str, Any], row: int, col: int, value: Any) -> dict[str, Any]:
    doc["rows"][row][col] = value
    return doc


DOC_EDITS = {
    "clean": lambda d: d,
    "short row deep inside": lambda d: {
        **d, "rows": _splice(d["rows"], 1700, 1, [d["rows"][1700][:-1]])
    },
    "nested object": lambda d: _set(d, 2100, 2, {"x": 1}),
    "nested array": lambda d: _set(d, 2200, 1, [1]),
    "row not an array": lambda d: {**d, "rows": _splice(d["rows"], 2500, 1, [5])},
    # one "[" per row all the same: only the rows' own types tell (simdjson's Array.__len__)
    "row a string holding [": lambda d: {**d, "rows": _splice(d["rows"], 2500, 1, ["["])},
    "records drift": lambda d: {**d, "records": N_ROWS - 1},
    "brackets and quotes in strings": lambda d: _set(d, 1000, 2, 'a "q" ],[ [x] {y} \\'),
    "non-ASCII": lambda d: _set(d, 10, 2, "é ü 日本 😀"),
    "NaN (json reads it)": lambda d: _set(d, 500, 3, float("nan")),
    "huge integer": lambda d: _set(d, 600, 3, 10**30),
}  # fmt: skip
EXPECTED = {
    "clean": [],
    "short row deep inside": ["rows/1700 is not an array of 5 values"],
    "nested object": ["rows/2100 holds a value that is not a scalar"],
    "nested array": ["rows/2200 holds a value that is not a scalar"],
    "row not an array": ["rows/2500 is not an array of 5 values"],
    "row a string holding [": ["rows/2500 is not an array of 5 values"],
    "records drift": [f"records is {N_ROWS - 1} but there are {N_ROWS} rows"],
}


@pytest.mark.parametrize("indent", [None, 1])
@pytest.mark.parametrize("edit", list(DOC_EDITS))
def test_block_parse_of_json_rows_reports_what_row_by_row_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str, indent: int | None
) -> None:
    doc = DOC_EDITS[edit](_written_doc(tmp_path))
    out = tmp_path / "lb.json"
    separators = (",", ":") if indent is None else None
    out.write_text(
        json.dumps(doc, ensure_ascii=False, separators=separators, indent=indent), "utf-8"
    )
    fast = check_dataset_json(out, chunk_chars=CHUNK)
    assert fast == _slow(monkeypatch, out)
    assert fast[1] == N_ROWS
    for expected in EXPECTED.get(edit, []):
        assert any(p.endswith(expected) for p in fast[0]), fast[0]
    if edit in ("clean", "brackets and quotes in strings", "non-ASCII", "NaN (json reads it)"):
        assert fast[0] == []


def test_a_clean_written_file_is_not_read_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks really are parsed in bulk: the row-by-row tally sees a handful of rows."""
    out = write_dataset_json(_big(), tmp_path / "lb.json", study=STUDY, created=CREATED)
    seen = []
    add = datasetjson._RowTally.add
    monkeypatch.setattr(
        datasetjson._RowTally, "add", lambda self, row: (seen.append(1), add(self, row))
    )
    assert check_dataset_json(out) == ([], N_ROWS)
    assert len(seen) < 5


def _nth(text: str, old: str, new: str, n: int) -> str:
    """`text` with only the `n`-th occurrence of `old` replaced."""
    at = -1
    for _ in range(n):
        at = text.index(old, at + 1)
    return text[:at] + new + text[at + len(old) :]


TEXT_CUTS = {
    "truncated in the rows": (lambda t: t[: len(t) * 3 // 5], "in rows/"),
    "rows not separated": (lambda t: _nth(t, "],[", "][", 1700), "expected ',' or ']' after a row"),
    "empty value": (lambda t: _nth(t, ",", ",,", 12000), "in rows/"),
    "control character in a string": (lambda t: _nth(t, '"CRP"', '"C\x01RP"', 600), "in rows/"),
    "quote lost": (lambda t: _nth(t, '"ALB"', '"ALB', 1900), "in rows/"),
}  # fmt: skip


@pytest.mark.parametrize("cut", list(TEXT_CUTS))
def test_malformed_json_deep_in_the_rows_gives_the_located_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    out = write_dataset_json(_big(), tmp_path / "lb.json", study=STUDY, created=CREATED)
    change, message = TEXT_CUTS[cut]
    text = out.read_text(encoding="utf-8")
    out.write_text(change(text), encoding="utf-8")
    assert out.read_text(encoding="utf-8") != text
    problems, rows = check_dataset_json(out, chunk_chars=CHUNK)
    assert (problems, rows) == _slow(monkeypatch, out)
    assert rows == 0 and len(problems) == 1
    assert problems[0].startswith(f"{out}: not readable JSON: ") and message in problems[0]
    assert "line 1 column" in problems[0]  # where: the writer writes one line


LINE_EDITS = {
    "clean": lambda lines: lines,
    "blank lines": lambda lines: [*lines[:900], "", "  ", *lines[900:]],
    # cut one row over two lines and join two others in the same block: the count still fits
    "row cut over two lines": lambda lines: _splice(
        _splice(lines, 1203, 2, [lines[1203] + lines[1204]]),
        1200, 1, [lines[1200][:20], lines[1200][20:]],
    ),
    "two rows on one line": lambda lines: _splice(
        lines, 2000, 2, [lines[2000] + "," + lines[2001]]
    ),
    "short row": lambda lines: _splice(
        lines, 2700, 1, [lines[2700][: lines[2700].rfind(",")] + "]"]
    ),
    "nested": lambda lines: [*lines[:300], '[[1],"a",1,2,3]', *lines[301:]],
    "truncated": lambda lines: [*lines[:-1], lines[-1][:-3]],
}  # fmt: skip


@pytest.mark.parametrize("encoding", ["ndjson", "dsjc"])
@pytest.mark.parametrize("edit", list(LINE_EDITS))
def test_block_parse_of_ndjson_lines_reports_what_line_by_line_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str, encoding: str
) -> None:
    import zlib

    nd = write_dataset_json(_big(), tmp_path / "w.ndjson", study=STUDY, created=CREATED)
    head, *lines = nd.read_text(encoding="utf-8").splitlines()
    text = "\n".join([head, *LINE_EDITS[edit](lines)]) + "\n"
    out = tmp_path / f"lb.{encoding}"
    data = text.encode("utf-8")
    out.write_bytes(zlib.compress(data, 9) if encoding == "dsjc" else data)
    fast = check_dataset_json(out, chunk_chars=CHUNK)
    assert fast == _slow(monkeypatch, out)
    if edit in ("clean", "blank lines"):
        assert fast == ([], N_ROWS)
    elif edit == "short row":
        assert fast[0] == [f"{out}: rows/2700 is not an array of 5 values"]
    elif edit == "nested":
        assert fast[0] == [f"{out}: rows/300 holds a value that is not a scalar"]
    else:
        assert len(fast[0]) == 1 and "not readable JSON" in fast[0][0] and ": line " in fast[0][0]


@pytest.mark.parametrize("name", ["dm.xpt", "suppdm.xpt", "ts.xpt", "ta.xpt", "relrec.xpt"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 100_000])
def test_xpt_distinct_values_from_bytes_are_those_pyreadstat_reads(
    name: str, chunk_rows: int
) -> None:
    """CDISC pilot files written by SAS (TS in Windows-1252): every column's distinct values
    and the row count, from the raw bytes, equal pyreadstat's (chunked and whole)."""
    path = FIXTURES / "cdiscpilot01" / "sdtm" / name
    whole = read_xpt(path)
    names = [v.name for v in whole.variables]
    rows, fast = scan_xpt_distinct(path, names, chunk_rows=chunk_rows)
    slow_rows, slow = _scan_xpt_chunks(path, names, chunk_rows)
    assert rows == slow_rows == len(whole)
    for column in names:
        expected = set(whole.frame[column].dropna().tolist())
        assert set(fast[column].tolist()) == set(slow[column].tolist()) == expected, column


def test_xpt_distinct_values_keep_blank_rows_inside_and_drop_the_padding(tmp_path: Path) -> None:
    frame = pd.DataFrame({"A": ["x", "", None, "", "y"], "B": ["1", None, "", "", " z"]})
    blank = Dataset("BL", "Blank rows", frame, [Variable("A", "A"), Variable("B", "B")])
    path = write_xpt(blank, tmp_path / "bl.xpt", created=datetime(2026, 1, 15))
    for chunk_rows in (1, 2, 100):
        rows, values = scan_xpt_distinct(path, ["A", "B"], chunk_rows=chunk_rows)
        assert rows == 5
        assert sorted(values["A"]) == ["x", "y"] and sorted(values["B"]) == [" z", "1"]
    assert scan_xpt_distinct(path, [])[0] == 5


def test_crosscheck_finds_a_value_outside_its_codelist_in_a_late_chunk(tmp_path: Path) -> None:
    """3,000 rows read 7 at a time: the one drifted value (row 2,996) and the one Dataset-JSON
    file short of a row are both reported, nothing else."""
    ds = _big()
    xpt_dir, json_dir = tmp_path / "sdtm", tmp_path / "json"
    xpt_dir.mkdir()
    write_xpt(ds, xpt_dir / "lb.xpt", created=datetime(2026, 1, 15, 9, 30))
    write_dataset_json(ds, json_dir / "lb.json", study=STUDY, created=CREATED)
    define = write_define([ds], xpt_dir / "define.xml", study=STUDY, standard="SDTM",
                          created=CREATED)  # fmt: skip
    assert crosscheck(define, xpt_dir, json_dir, chunk_rows=7) == []
    drifted = _big()
    drifted.frame.loc[2996, "LBTESTCD"] = "XYZ"
    write_xpt(drifted, xpt_dir / "lb.xpt", created=datetime(2026, 1, 15, 9, 30))
    short = Dataset(ds.name, ds.label, ds.frame.iloc[:-1], ds.variables, keys=ds.keys)
    write_dataset_json(short, json_dir / "lb.json", study=STUDY, created=CREATED)
    assert crosscheck(define, xpt_dir, json_dir, chunk_rows=7) == [
        "LB (lb.xpt): LBTESTCD has values not in CodeList CL.LBTESTCD: 'XYZ'",
        f"LB: lb.json has {N_ROWS - 1} rows, lb.xpt has {N_ROWS}",
    ]


@pytest.mark.skipif(datasetjson._simdjson is None, reason="simdjson not installed")
def test_simd_lengths_answer_only_for_arrays_of_scalars() -> None:
    """The lengths come from the rows themselves; a row that is not an array (even with the
    brackets counting right) or a nested value leaves the answer to json.loads (None)."""
    parser = datasetjson._simdjson.Parser()
    lengths = datasetjson._simd_lengths(parser, b'[[1,"a,b",null],[],["x"]]')
    assert lengths is not None and lengths.tolist() == [3, 0, 1]
    assert datasetjson._simd_lengths(parser, b"[]").tolist() == []
    for refused in (b'[[1],"["]', b'[[1],"x",[2,[3]]]', b'[[1],{"a":1}]', b"[[1],5]", b"[[1]"):
        assert datasetjson._simd_lengths(parser, refused) is None, refused


def _one_at_a_time(path: Path, names: list[str]) -> dict[str, list[str]]:
    """Each column's distinct values scanned alone: no run of adjacent columns (the old way)."""
    return {name: scan_xpt_distinct(path, [name], chunk_rows=3)[1][name].tolist() for name in names}


def test_xpt_distinct_values_of_adjacent_columns_cut_as_one_run(tmp_path: Path) -> None:
    """Columns side by side are hashed as one block of bytes (`_adjacent_runs`): each column's
    distinct values, in the order they first occur, are those it has scanned alone, with
    values planted late, in one column of a run whose other columns repeat, blank and
    non-ASCII (the Windows-1252 fallback), columns asked twice and out of order."""
    n = 40
    i = np.arange(n)
    frame = pd.DataFrame(
        {
            "A": pd.Series(np.where(i % 2 == 0, "x", "yy"), dtype="str"),
            "B": pd.Series(np.where(i % 3 == 0, "", "b"), dtype="str"),
            "C": pd.Series(np.where(i == 37, "late", "c"), dtype="str"),
            "N": (i % 4).astype("float64"),
            "D": pd.Series(np.where(i == 38, "d2", "d1"), dtype="str"),
        }
    )
    frame.loc[39, "A"] = "x"  # a combination seen before, with B's and C's usual values
    names = ["A", "B", "C", "N", "D"]

    def dataset(frame: pd.DataFrame) -> Dataset:
        variables = [Variable(c, c, type="Num" if c == "N" else "Char") for c in names]
        return Dataset("RU", "Runs", frame, variables)

    path = write_xpt(dataset(frame), tmp_path / "ru.xpt", created=datetime(2026, 1, 15))
    asked = ["D", "B", "A", "N", "C", "B"]
    rows, values = scan_xpt_distinct(path, asked, chunk_rows=3)
    assert rows == n
    assert {c: values[c].tolist() for c in names} == _one_at_a_time(path, names)
    assert values["C"].tolist() == ["c", "late"] and values["B"].tolist() == ["b"]
    for chunk_rows in (1, 7, 100):
        slow_rows, slow = _scan_xpt_chunks(path, asked, chunk_rows)
        fast_rows, fast = scan_xpt_distinct(path, asked, chunk_rows=chunk_rows)
        assert fast_rows == slow_rows == n
        assert all(set(fast[c]) == set(slow[c]) for c in names)
    latin = frame.copy()
    latin.loc[20, "B"] = "cafX"
    (tmp_path / "la").mkdir()
    path = write_xpt(dataset(latin), tmp_path / "la" / "ru.xpt", created=datetime(2026, 1, 15))
    data = path.read_bytes()
    assert data.count(b"cafX") == 1
    path.write_bytes(data.replace(b"cafX", b"caf\xe9"))  # not UTF-8: read as Windows-1252
    rows, values = scan_xpt_distinct(path, asked, chunk_rows=3)
    assert values["B"].tolist() == ["b", "caf\xe9"]
    assert {c: values[c].tolist() for c in names} == _one_at_a_time(path, names)

"""The writers' joined columns and reserved blocks change no byte.

`cdiscforge.xpt` writes adjacent categorical variables from one table of their joint bytes
(`_JoinedBlock`) and `cdiscforge.datasetjson` gathers adjacent fixed-dictionary columns as
one text (`_JoinedText`); both reserve the file's disk blocks ahead (`outputs.preallocate`).
Each is compared here with the path without it (joining switched off, no reservation) on a
frame with planted edge cases: missing values, empty strings, 200-byte values, constant
columns, transliterated text, unused categories longer than the rest, 8-, 16- and 32-bit
codes, integer ranges with and without missing values, a joint table just over and under
the limit, and zero rows. XPT files are also read back by pyreadstat and pandas.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from cdiscforge import datasetjson, outputs, xpt
from cdiscforge.datasetjson import SUFFIXES, write_dataset_json
from cdiscforge.model import Dataset, StudyInfo, Variable
from cdiscforge.xpt import write_xpt

CREATED = datetime(2024, 5, 17, 9, 30, 5)
STUDY = StudyInfo(studyid="STUDY1", name="STUDY1", description="d", protocol="P")
LONG = "X" * 199 + "Y"  # 200 bytes, the XPT limit


def _cycle(values: list[object], n: int) -> list[object]:
    return [values[i % len(values)] for i in range(n)]


def _cat(values: list[object], categories: list[str] | None = None) -> pd.Categorical:
    return pd.Categorical(values, categories=categories)


def _planted(n: int = 97, *, ascii_only: bool = True) -> Dataset:
    """Adjacent categoricals of every shape, numerics between them, `n` rows."""
    many = [f"S{i:05d}" for i in range(300)]  # 16-bit codes
    text = ["Sjogren", "Behcet", "", "naive"] if ascii_only else ["Sjögren", "Behçet", "", "naïve"]
    frame = pd.DataFrame(
        {
            "STUDYID": _cat(["STUDY1"] * n),  # constant
            "DOMAIN": _cat(["XX"] * n),  # constant
            "USUBJID": _cat(_cycle(many, n), many),
            "XXSEQ": np.arange(1, n + 1, dtype=np.float64),  # integer range, no missing
            "XXTESTCD": _cat(_cycle(["A", "B", None], n)),  # missing
            "XXEMPTY": _cat(_cycle(["", "Y"], n)),  # empty strings
            "XXLONG": _cat(_cycle([LONG, "short", None], n)),  # 200 bytes
            # an unused category longer than the fitted width: no row has it
            "XXUNUSED": _cat(_cycle(["a", "b"], n), ["a", "b", "unused and long"]),
            "XXTEXT": _cat(_cycle(text, n)),
            "XXALLNA": _cat([None] * n, ["never"]),  # every row missing
            "VISITNUM": _cycle([1.0, 2.0, np.nan, 3.0], n),  # integer range with missing
            "VISIT": _cat(_cycle(["WEEK 1", "WEEK 2", "WEEK 3"], n)),
            "XXORRES": pd.Series(_cycle(["1.5", None, "x"], n), dtype="str"),  # not categorical
            "XXFLAG": _cat(_cycle(["Y", None], n)),
            "XXSTRESN": _cycle([1.5, np.nan, -0.0, 1e-5], n),
        }
    )
    variables = [
        Variable("STUDYID", "Study Identifier"),
        Variable("DOMAIN", "Domain Abbreviation", length=2),
        Variable("USUBJID", "Unique Subject Identifier"),
        Variable("XXSEQ", "Sequence Number", type="Num"),
        Variable("XXTESTCD", "Test Code"),
        Variable("XXEMPTY", "Empty or Y"),
        Variable("XXLONG", "Long Values"),
        Variable("XXUNUSED", "Unused Category"),
        Variable("XXTEXT", "Text"),
        Variable("XXALLNA", "All Missing", length=5),
        Variable("VISITNUM", "Visit Number", type="Num"),
        Variable("VISIT", "Visit Name", length=16),
        Variable("XXORRES", "Result", length=10),
        Variable("XXFLAG", "Flag"),
        Variable("XXSTRESN", "Numeric Result", type="Num"),
    ]
    return Dataset("XX", "Planted", frame.iloc[:n].reset_index(drop=True), variables)


def _wide_codes(n: int = 40_000) -> Dataset:
    """A categorical of over 32,767 categories (32-bit codes) between two small ones."""
    values = [f"V{i:06d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "A": _cat(_cycle(["p", "q"], n)),
            "WIDE": _cat(values, values),
            "B": _cat(_cycle(["r", None], n)),
        }
    )
    variables = [Variable(name, name) for name in frame.columns]
    return Dataset("WD", "Wide codes", frame, variables)


def _fresh(make: object) -> Dataset:
    return make()  # type: ignore[operator]


def _xpt_bytes(ds: Dataset, folder: Path) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    return write_xpt(ds, folder / f"{ds.name.lower()}.xpt", created=CREATED).read_bytes()


XPT_CASES = [
    ("planted", lambda: _planted()),
    ("one row", lambda: _planted(1)),
    ("zero rows", lambda: _planted(0)),
    ("wide codes", lambda: _wide_codes()),
]


@pytest.mark.parametrize("limit", [xpt._JOINED_ROWS, 64, 2])
@pytest.mark.parametrize(("case", "make"), XPT_CASES, ids=[c for c, _ in XPT_CASES])
def test_xpt_joined_blocks_give_the_bytes_of_one_variable_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, make: object, limit: int
) -> None:
    monkeypatch.setattr(xpt, "_JOINED_ROWS", limit)
    monkeypatch.setattr(xpt, "_CHUNK_BYTES", 1000)  # several chunks, several code blocks
    monkeypatch.setattr(xpt, "_BLOCK", 13)
    joined = _xpt_bytes(_fresh(make), tmp_path / "a")
    with monkeypatch.context() as m:
        m.setattr(xpt, "_joined_blocks", lambda blocks: blocks)  # the old path
        m.setattr(xpt, "preallocate", lambda fd, size: False)  # no reservation
        alone = _xpt_bytes(_fresh(make), tmp_path / "b")
    assert joined == alone
    assert len(joined) % 80 == 0


def test_xpt_joins_what_it_should(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs of adjacent categoricals become one block each (a test of the test's frame:
    the comparison above does exercise joined tables)."""
    ds = _planted()
    blocks = xpt._encode(ds, None)
    kinds = [type(b).__name__ for b in xpt._joined_blocks(blocks)]
    assert kinds.count("_JoinedBlock") >= 2
    monkeypatch.setattr(xpt, "_JOINED_ROWS", 2)  # only constant neighbours still join
    assert len(xpt._joined_blocks(blocks)) > len(kinds)


def test_xpt_joined_reads_back_with_pyreadstat_and_pandas(tmp_path: Path) -> None:
    ds = _planted()
    expected = ds.frame.copy()
    path = write_xpt(ds, tmp_path / "xx.xpt", created=CREATED)
    for read in (
        lambda: pyreadstat.read_xport(str(path))[0],
        lambda: pd.read_sas(path, format="xport", encoding="ascii"),
    ):
        back = read()
        assert list(back.columns) == list(expected.columns)
        for name in expected.columns:
            column = expected[name]
            got = back[name]
            if ds.variable(name).is_char:
                want = column.astype(object).where(column.notna(), "").astype(str)
                assert got.fillna("").astype(str).str.rstrip().tolist() == [
                    v.rstrip() for v in want.tolist()
                ], name
            else:
                # (pandas reads the IBM zero as 5.4e-79, the smallest IBM double)
                np.testing.assert_allclose(
                    got.to_numpy(dtype=float), np.asarray(column, dtype=float), 0, 1e-70
                )


JSON_CASES = [
    ("planted", lambda: _planted(ascii_only=False)),
    ("one row", lambda: _planted(1, ascii_only=False)),
    ("zero rows", lambda: _planted(0)),
    ("wide codes", lambda: _wide_codes(300)),
]


@pytest.mark.parametrize("encoding", ["json", "ndjson", "dsjc"])
@pytest.mark.parametrize(("chunk_rows", "limit"), [(10_000, None), (7, None), (1, 4), (5, 1)])
@pytest.mark.parametrize(("case", "make"), JSON_CASES, ids=[c for c, _ in JSON_CASES])
def test_json_joined_texts_give_the_bytes_of_one_column_at_a_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    make: object,
    encoding: str,
    chunk_rows: int,
    limit: int | None,
) -> None:
    if limit is not None:
        monkeypatch.setattr(datasetjson, "_JOINED_TEXTS", limit)

    def write(folder: str) -> bytes:
        ds = _fresh(make)
        path = tmp_path / folder / f"{ds.name.lower()}{SUFFIXES[encoding]}"
        return write_dataset_json(
            ds, path, study=STUDY, created="2024-05-17T09:30:05", chunk_rows=chunk_rows
        ).read_bytes()

    joined = write("a")
    with monkeypatch.context() as m:
        m.setattr(datasetjson, "_joined", lambda columns: columns)  # the old path
        m.setattr(datasetjson, "preallocate", lambda fd, size: False)  # no reservation
        alone = write("b")
    assert joined == alone


def test_json_joins_what_it_should() -> None:
    ds = _planted()
    columns = [
        datasetjson._ColumnText(ds.frame[v.name], v, "string" if v.is_char else "integer", "", ",")
        for v in ds.variables
        if v.name not in ("XXSTRESN",)
    ]
    joined = datasetjson._joined(columns)
    assert sum(isinstance(c, datasetjson._JoinedText) for c in joined) >= 2
    assert len(joined) < len(columns)


def test_preallocate_reserves_and_the_writers_truncate(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with open(path, "wb") as fh:
        reserved = outputs.preallocate(fh.fileno(), 1 << 20)
        fh.write(b"abc")
        fh.truncate()
    assert path.read_bytes() == b"abc"
    if reserved:  # (a file system that cannot reserve: nothing else to see)
        with open(path, "wb") as fh:
            assert outputs.preallocate(fh.fileno(), 4096)
            assert os.fstat(fh.fileno()).st_size == 4096
    assert not outputs.preallocate(os.open(os.devnull, os.O_RDONLY), 0)


def test_a_written_file_holds_only_what_was_written(tmp_path: Path) -> None:
    """No reserved zeros left at the end of a Dataset-JSON file of any size."""
    for n in (0, 1, 50, 2000):
        ds = _planted(n)
        for encoding in ("json", "ndjson", "dsjc"):
            path = write_dataset_json(
                ds, tmp_path / f"xx{n}{SUFFIXES[encoding]}", study=STUDY,
                created="2024-05-17T09:30:05", chunk_rows=3,
            )  # fmt: skip
            data = path.read_bytes()
            assert data.endswith(b"\n") if encoding != "dsjc" else data[-1:] != b"\0"
            assert b"\0" not in data or encoding == "dsjc"

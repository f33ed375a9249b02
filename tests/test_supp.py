"""SUPP-- splitting of text over 200 characters (SDTMIG 3.4 section 4.5.3.2): QNAMs within 8
characters that never collide, supp values over 200 split too, linear cost, every split logged.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cdiscforge.supp import split_series, split_text, suffixed

CLI = [sys.executable, "-m", "cdiscforge.cli"]


def _words(n_chars: int, seed: int = 3) -> str:
    """Deterministic prose-like text of exactly n_chars (words of 1-14 letters)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 15, n_chars // 2 + 10)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    words = ["".join(map(chr, rng.choice(letters, k))) for k in lengths[:2000]]
    text = " ".join(words)
    while len(text) < n_chars:
        text = text + " " + text
    return text[:n_chars].rstrip() + "z" * (n_chars - len(text[:n_chars].rstrip()))


def _rejoin(pieces: list[str]) -> str:
    return " ".join(pieces)


@pytest.mark.parametrize(
    ("name", "part", "qnam"),
    [
        ("AETERM", 1, "AETERM1"),
        ("AETERM", 12, "AETERM12"),
        ("MHDECOD", 1, "MHDECOD1"),
        ("MHDECOD", 10, "MHDECO10"),  # a 7-character name with a 2-digit suffix is cut
        ("AEACNOTH", 1, "AEACNOT1"),  # an 8-character name gives up its last character
        ("MKREASND", 3, "MKREASN3"),
    ],
)
def test_qnam_suffix_keeps_within_8_characters(name: str, part: int, qnam: str) -> None:
    assert suffixed(name, part) == qnam


def test_split_text_cuts_between_words_and_loses_no_word() -> None:
    text = _words(704)
    pieces = split_text(text)
    assert all(0 < len(p) <= 200 for p in pieces)
    assert len(pieces) >= 4
    assert _rejoin(pieces) == text  # blanks at a cut are the only thing left out
    for left, right in itertools.pairwise(pieces):
        assert not left.endswith(" ") and not right.startswith(" ")


def test_split_text_without_blanks_cuts_at_200() -> None:
    text = "x" * 450
    assert [len(p) for p in split_text(text)] == [200, 200, 50]
    assert split_text("short") == ["short"]


def test_a_1_mb_value_splits_correctly() -> None:
    text = _words(1_000_000)
    first, rest = split_series(pd.Series([text, "short", None], dtype="string"))
    assert first.iloc[1] == "short" and pd.isna(first.iloc[2])
    pieces = [first.iloc[0], *rest["value"].tolist()]
    assert all(len(p) <= 200 for p in pieces)
    assert _rejoin(pieces) == text
    assert rest["row"].unique().tolist() == [0]
    assert rest["part"].tolist() == list(range(1, len(pieces)))


def _joints_with_long_reasons(raw: Path, reasons: list[str]) -> pd.DataFrame:
    joints = pd.read_csv(raw / "joints.csv", dtype=str, keep_default_na=False)
    rows = joints.index[joints["RESULT"] == "Not evaluable"].tolist()
    if len(rows) < len(reasons):  # the mess may plant fewer: make them
        rows = joints.index[: len(reasons)].tolist()
        joints.loc[rows, "RESULT"] = "Not evaluable"
    for row, reason in zip(rows, reasons, strict=False):
        joints.loc[row, "NEREAS"] = reason
    joints.to_csv(raw / "joints.csv", index=False)
    return joints


def test_long_texts_through_the_cli_never_collide(tmp_path: Path, default_raw: Path) -> None:
    """A 704- and a 2,000-character not-evaluable reason (MKREASND, 8 characters: the old
    code cut every QNAM to MKREASND and failed validation) and a 220-character SUPPDM value."""
    raw = tmp_path / "raw"
    shutil.copytree(default_raw, raw)
    reason_704, reason_2000 = _words(704, seed=1), _words(2000, seed=2)
    _joints_with_long_reasons(raw, [reason_704, reason_2000])
    demo = pd.read_csv(raw / "demographics.csv", dtype=str, keep_default_na=False)
    race_other = _words(220, seed=4)
    demo.loc[0, "RACEOTH"] = race_other
    demo.to_csv(raw / "demographics.csv", index=False)

    out = tmp_path / "out"
    result = subprocess.run([*CLI, "build", "--raw", str(raw), "--out", str(out)],
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    mk = pd.read_sas(out / "sdtm" / "mk.xpt", encoding="ascii")
    supp = pd.read_sas(out / "sdtm" / "suppmk.xpt", encoding="ascii")
    assert supp["QNAM"].str.len().max() <= 8 and supp["QVAL"].str.len().max() <= 200
    assert not supp.duplicated(["USUBJID", "IDVAR", "IDVARVAL", "QNAM"]).any()
    for text in (reason_704, reason_2000):
        parent = mk[mk["MKREASND"] == text[:201].rsplit(" ", 1)[0]]
        assert len(parent) == 1
        seq = str(int(parent["MKSEQ"].iloc[0]))
        recs = supp[(supp["USUBJID"] == parent["USUBJID"].iloc[0]) & (supp["IDVARVAL"] == seq)]
        recs = recs.assign(n=recs["QNAM"].str.extract(r"(\d+)$")[0].astype(int)).sort_values("n")
        assert recs["QNAM"].tolist() == [suffixed("MKREASND", k) for k in range(1, len(recs) + 1)]
        assert set(recs["IDVAR"]) == {"MKSEQ"}
        assert _rejoin([parent["MKREASND"].iloc[0], *recs["QVAL"]]) == text
    assert "MKREAS10" in set(supp["QNAM"])  # the 2,000-character reason needs 10+ pieces

    suppdm = pd.read_sas(out / "sdtm" / "suppdm.xpt", encoding="ascii")
    subject = suppdm["USUBJID"] == f"NCT03691909-{demo.loc[0, 'SUBJECT']}"
    race = suppdm[subject & suppdm["QNAM"].str.startswith("RACEOTH")].sort_values("QNAM")
    assert race["QNAM"].tolist() == ["RACEOTH", "RACEOTH1"]
    assert (suppdm["QNAM"] == "RACEOTH1").sum() == 1
    assert _rejoin(race["QVAL"].tolist()) == race_other

    events = json.loads((out / "build_events.json").read_text())
    splits = [e for e in events if "split between words" in e["message"]]
    mk_split = next(e for e in splits if e.get("variable") == "MKREASND")
    assert mk_split["count"] == 2 and len(mk_split["examples"]) == 2
    assert all("MKSEQ" in x and "pieces" in x for x in mk_split["examples"])
    assert any("RACEOTH" in e["message"] and e["count"] == 1 for e in splits)


def test_a_qnam_the_convention_would_give_twice_is_refused(seed_spec: Path) -> None:
    """A spec's own supp item named like an overflow piece (AETERM1): an error naming both,
    never two meanings under one QNAM."""
    from dataclasses import replace

    from cdiscforge.buildlog import BuildLog
    from cdiscforge.errors import SpecError
    from cdiscforge.spec import SuppItem, load_study
    from cdiscforge.supp import build_supp

    study = load_study(seed_spec)
    spec = replace(study.datasets["AE"], supp=[SuppItem(qnam="AETERM1", qlabel="Other", var="_X")])
    records = pd.DataFrame(
        {"STUDYID": ["S"], "USUBJID": ["S-1"], "AESEQ": [1.0], "AETERM": ["head"], "_X": ["v"]}
    )
    overflow = {"AETERM": pd.DataFrame({"row": [0], "part": [1], "value": ["tail"]})}
    with pytest.raises(SpecError, match="QNAM AETERM1 would hold both supp item AETERM1 and"):
        build_supp(spec, study, records, {"_X": records["_X"]}, overflow, BuildLog())
    ok = build_supp(replace(spec, supp=[]), study, records, {}, overflow, BuildLog())
    assert ok is not None
    assert ok.frame[["QNAM", "QVAL", "IDVAR", "IDVARVAL"]].values.tolist() == [
        ["AETERM1", "tail", "AESEQ", "1"]
    ]

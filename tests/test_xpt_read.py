"""read_xpt on XPT files cdiscforge did not write: the CDISC pilot study (read-only reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from cdiscforge.errors import InputError
from cdiscforge.xpt import parse_format, read_xpt

# Copies of CDISC pilot files (tests/fixtures/README.md names the source).
PILOT = Path(__file__).resolve().parent / "fixtures" / "cdiscpilot01"


def test_pilot_dm_metadata_and_values_match_pyreadstat() -> None:
    path = PILOT / "sdtm" / "dm.xpt"
    ds = read_xpt(path)
    raw, meta = pyreadstat.read_xport(str(path))

    assert ds.name == "DM"
    assert len(ds) == meta.number_rows == 306
    assert ds.variable_names == meta.column_names
    usubjid = ds.variable("USUBJID")
    assert (usubjid.type, usubjid.length, usubjid.label) == (
        "Char",
        11,
        "Unique Subject Identifier",
    )
    assert usubjid.origin == "Not Available"
    assert ds.variable("AGE").type == "Num"
    assert ds.variable("AGE").length == 8
    assert ds.frame["USUBJID"].tolist() == raw["USUBJID"].tolist()
    np.testing.assert_array_equal(ds.frame["AGE"].to_numpy(), raw["AGE"].to_numpy())
    # Blank character values are SAS's missing: they come back as missing, not "".
    assert ds.frame["DTHDTC"].isna().sum() == (raw["DTHDTC"] == "").sum() > 0


def test_pilot_ts_falls_back_to_windows_1252() -> None:
    ds = read_xpt(PILOT / "sdtm" / "ts.xpt")
    assert len(ds) == 48
    text = " ".join(ds.frame["TSVAL"].dropna())
    assert "\u2019" in text  # a Windows-1252 0x92 right single quote, decoded


def test_pilot_date_formats_become_datetime_columns() -> None:
    ds = read_xpt(PILOT / "adam" / "adsl.xpt")
    assert ds.variable("TRTSDT").format == "DATE9."
    col = ds.frame["TRTSDT"]
    assert pd.api.types.is_datetime64_dtype(col)
    raw, _ = pyreadstat.read_xport(str(PILOT / "adam" / "adsl.xpt"))
    assert col.iloc[0] == pd.Timestamp(raw["TRTSDT"].iloc[0])


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "dm.xpt"
    bad.write_bytes(b"not an xpt file at all" * 10)
    with pytest.raises(InputError, match=r"dm\.xpt.*cannot read as SAS XPT v5"):
        read_xpt(bad)


@pytest.mark.parametrize(
    ("text", "name", "width", "decimals", "kind"),
    [
        ("DATE9.", "DATE", 9, 0, "date"),
        ("DATE9", "DATE", 9, 0, "date"),
        ("E8601DA.", "E8601DA", 0, 0, "date"),
        ("E8601DT19.", "E8601DT", 19, 0, "datetime"),
        ("TIME8.", "TIME", 8, 0, "time"),
        ("8.2", "", 8, 2, None),
        ("$20.", "$", 20, 0, None),
        ("best12.", "BEST", 12, 0, None),
    ],
)
def test_parse_format(text: str, name: str, width: int, decimals: int, kind: str | None) -> None:
    fmt = parse_format(text)
    assert fmt is not None
    assert (fmt.name, fmt.width, fmt.decimals, fmt.kind) == (name, width, decimals, kind)


def test_parse_format_rejects_garbage() -> None:
    assert parse_format(None) is None
    with pytest.raises(ValueError, match="not a SAS format"):
        parse_format("DATE 9")

"""write_xpt: round trips through three readers, FDA limits, reproducibility, atomicity.

Every test writes a real file and reads it back with pyreadstat (exact), pandas.read_sas
(approximate: pandas bug #50670 reads 0.0 as 5.4e-79) and our own read_xpt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdiscforge import xpt
from cdiscforge.errors import XptError
from cdiscforge.model import Dataset, Variable
from cdiscforge.xpt import check_xpt_conformance, ieee_to_ibm, read_xpt, write_xpt

CREATED = datetime(2024, 5, 17, 9, 30, 5)
# A copy of the CDISC pilot DM (tests/fixtures/README.md names the source).
PILOT_DM = Path(__file__).resolve().parent / "fixtures" / "cdiscpilot01" / "sdtm" / "dm.xpt"


def _lb(**frame_overrides: object) -> Dataset:
    frame = pd.DataFrame(
        {
            "USUBJID": pd.Series(["S-001", "S-002", None], dtype="str"),
            "LBTESTCD": pd.Series(["ALT", "AST", "ALT"], dtype="str"),
            "LBSTRESN": [12.5, np.nan, 0.0],
        }
    )
    for name, values in frame_overrides.items():
        frame[name] = values
    return Dataset(
        name="LB",
        label="Laboratory Test Results",
        frame=frame,
        variables=[
            Variable("USUBJID", "Unique Subject Identifier"),
            Variable("LBTESTCD", "Lab Test or Examination Short Name", length=8),
            Variable("LBSTRESN", "Numeric Result/Finding in Standard Units", type="Num"),
        ],
    )


def _pandas_read(path: Path) -> pd.DataFrame:
    return pd.read_sas(path, format="xport", encoding="ascii")


# --------------------------------------------------------------------------------------------
# Known bit patterns and the writer's basic contract
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bits"),
    [
        (1.0, 0x4110000000000000),
        (-118.625, 0xC276A00000000000),  # IBM's own worked example
        (0.1, 0x401999999999999A),
        (0.0, 0),
        (-0.0, 0),  # SAS keeps no sign of zero
        (np.nan, 0x2E00000000000000),  # SAS missing '.'
        (2.0**-260, 0x0010000000000000),  # smallest normalised IBM double
    ],
)
def test_ieee_to_ibm_bit_patterns(value: float, bits: int) -> None:
    assert int(ieee_to_ibm(np.array([value]))[0]) == bits


def test_ieee_to_ibm_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="IBM 370 range"):
        ieee_to_ibm(np.array([1e300]))


def test_round_trip_metadata_and_values(tmp_path: Path) -> None:
    ds = _lb()
    path = write_xpt(ds, tmp_path / "lb.xpt", created=CREATED)

    frame, meta = pyreadstat.read_xport(str(path))
    assert meta.table_name == "LB"
    assert meta.file_label == "Laboratory Test Results"
    assert meta.column_names_to_labels["LBSTRESN"] == "Numeric Result/Finding in Standard Units"
    # USUBJID fitted to its longest value; LBTESTCD keeps the spec's fixed length.
    assert meta.variable_storage_width == {"USUBJID": 5, "LBTESTCD": 8, "LBSTRESN": 8}
    assert ds.variable("USUBJID").length == 5  # recorded back for define.xml
    assert frame["USUBJID"].tolist() == ["S-001", "S-002", ""]
    np.testing.assert_array_equal(frame["LBSTRESN"].to_numpy(), [12.5, np.nan, 0.0])
    assert meta.creation_time == CREATED
    assert meta.modification_time == CREATED

    back = read_xpt(path)
    assert (back.name, back.label) == ("LB", "Laboratory Test Results")
    assert [(v.name, v.label, v.type, v.length) for v in back.variables] == [
        (v.name, v.label, v.type, v.length) for v in ds.variables
    ]
    assert back.frame["USUBJID"].isna().tolist() == [False, False, True]

    pdf = _pandas_read(path)
    assert pdf["LBTESTCD"].tolist() == ["ALT", "AST", "ALT"]
    assert pdf["LBSTRESN"].iloc[0] == 12.5


def test_file_is_whole_80_byte_records(tmp_path: Path) -> None:
    path = write_xpt(_lb(), tmp_path / "lb.xpt", created=CREATED)
    data = path.read_bytes()
    assert len(data) % 80 == 0
    assert data.startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!")
    assert b"17MAY24:09:30:05" in data[:240]


def test_two_writes_are_byte_identical(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_xpt(_lb(), tmp_path / "a" / "lb.xpt", created=CREATED)
    second = write_xpt(_lb(), tmp_path / "b" / "lb.xpt", created=CREATED)
    assert first.read_bytes() == second.read_bytes()
    later = write_xpt(_lb(), tmp_path / "lb.xpt", created=datetime(2025, 1, 1))
    assert later.read_bytes() != first.read_bytes()  # the stamp comes from `created`, only


def test_numeric_dates_datetimes_and_times(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "ADT": pd.to_datetime(["2013-07-11", None, "1959-12-31"]),
            "ADTM": pd.to_datetime(["2013-07-11T08:15:30", "1960-01-01T00:00:00", None]),
            "ATM": pd.to_timedelta(["08:15:30", None, "23:59:59"]),
        }
    )
    ds = Dataset(
        "ADX",
        "Dates",
        frame,
        [
            Variable("ADT", "Analysis Date", type="Num", format="DATE9."),
            Variable("ADTM", "Analysis Datetime", type="Num", format="E8601DT19."),
            Variable("ATM", "Analysis Time", type="Num", format="TIME8."),
        ],
    )
    path = write_xpt(ds, tmp_path / "adx.xpt", created=CREATED)

    raw, meta = pyreadstat.read_xport(str(path), disable_datetime_conversion=True)
    days = (date(2013, 7, 11) - date(1960, 1, 1)).days
    np.testing.assert_array_equal(raw["ADT"].to_numpy(), [days, np.nan, -1.0])
    np.testing.assert_array_equal(
        raw["ADTM"].to_numpy(), [days * 86400 + 8 * 3600 + 15 * 60 + 30, 0.0, np.nan]
    )
    np.testing.assert_array_equal(raw["ATM"].to_numpy(), [29730.0, np.nan, 86399.0])
    # pyreadstat < 1.3 reports formats without the trailing period, 1.3+ with it.
    formats = {k: v.rstrip(".") for k, v in meta.original_variable_types.items()}
    assert formats == {"ADT": "DATE9", "ADTM": "E8601DT19", "ATM": "TIME8"}

    back = read_xpt(path)
    assert [v.format for v in back.variables] == ["DATE9.", "E8601DT19.", "TIME8."]
    for name in frame:
        pd.testing.assert_series_equal(back.frame[name], frame[name], check_dtype=False)


def test_integers_round_trip_exactly(tmp_path: Path) -> None:
    ints = pd.Series([2**53, -(2**53), 7, None], dtype="Int64")
    ds = Dataset("XX", "", pd.DataFrame({"N": ints}), [Variable("N", "n", type="Num")])
    raw, _ = pyreadstat.read_xport(str(write_xpt(ds, tmp_path / "xx.xpt", created=CREATED)))
    np.testing.assert_array_equal(raw["N"].to_numpy(), [2.0**53, -(2.0**53), 7.0, np.nan])


def test_failed_write_leaves_no_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lb.xpt"
    path.write_bytes(b"previous build")

    def broken(*args: object) -> object:
        yield b"x" * 80
        raise OSError("disk full")

    monkeypatch.setattr(xpt, "_observation_chunks", broken)
    with pytest.raises(OSError, match="disk full"):
        write_xpt(_lb(), path, created=CREATED)
    assert path.read_bytes() == b"previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb.xpt"]


def test_chunked_rows_match_unchunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _lb()
    whole = write_xpt(ds, tmp_path / "lb.xpt", created=CREATED).read_bytes()
    monkeypatch.setattr(xpt, "_CHUNK_BYTES", 1)  # one row per chunk
    (tmp_path / "c").mkdir()
    assert write_xpt(ds, tmp_path / "c" / "lb.xpt", created=CREATED).read_bytes() == whole


def test_pilot_dm_read_write_read(tmp_path: Path) -> None:
    original, original_meta = pyreadstat.read_xport(str(PILOT_DM))
    ds = read_xpt(PILOT_DM)
    path = write_xpt(ds, tmp_path / "dm.xpt", created=CREATED)
    again, meta = pyreadstat.read_xport(str(path))
    pd.testing.assert_frame_equal(again, original)
    assert meta.column_names_to_labels == original_meta.column_names_to_labels
    assert meta.variable_storage_width == original_meta.variable_storage_width
    pdf = _pandas_read(path)
    assert len(pdf) == 306
    assert pdf["USUBJID"].tolist() == original["USUBJID"].tolist()


# --------------------------------------------------------------------------------------------
# One clear error per limit
# --------------------------------------------------------------------------------------------


def _set(attr: str, value: object) -> Callable[[Dataset], None]:
    return lambda ds: setattr(ds, attr, value)


def _set_var(name: str, attr: str, value: object) -> Callable[[Dataset], None]:
    return lambda ds: setattr(ds.variable(name), attr, value)


def _set_cell(name: str, row: int, value: object) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        column = ds.frame[name].astype(object)
        column.iloc[row] = value
        ds.frame[name] = column

    return change


def _rename(old: str, new: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        ds.variable(old).name = new
        ds.frame = ds.frame.rename(columns={old: new})

    return change


LIMITS = [
    (
        "member name too long",
        _set("name", "LABORATORY"),
        r"dataset LABORATORY.*member \(dataset\) name must be 1-8",
    ),
    ("member name lower case", _set("name", "lb"), r"value 'lb'.*member \(dataset\) name"),
    (
        "dataset label > 40",
        _set("label", "L" * 41),
        r"dataset label is 41 characters; XPT v5 allows 40",
    ),
    ("dataset label non-ASCII", _set("label", "Résultats"), r"dataset label must be ASCII"),
    (
        "variable name too long",
        _rename("LBTESTCD", "LBTESTCODE"),
        r"variable LBTESTCODE: variable name must be 1-8",
    ),
    (
        "variable name bad char",
        _rename("LBTESTCD", "LB-TEST"),
        r"variable LB-TEST: variable name must be",
    ),
    (
        "variable label > 40",
        _set_var("LBSTRESN", "label", "X" * 41),
        r"variable LBSTRESN.*variable label is 41 characters",
    ),
    (
        "variable label non-ASCII",
        _set_var("USUBJID", "label", "Sujet µ"),
        r"variable USUBJID.*variable label must be ASCII",
    ),
    (
        "value non-ASCII",
        _set_cell("USUBJID", 1, "S-00é"),
        r"variable USUBJID, row 1, value 'S-00é': character values must be ASCII",
    ),
    (
        "value > 200 bytes",
        _set_cell("USUBJID", 2, "A" * 201),
        r"variable USUBJID, row 2.*longer than 200 bytes",
    ),
    (
        "value > fixed length",
        _set_cell("LBTESTCD", 0, "ALTALTALT"),
        r"variable LBTESTCD, row 0, value 'ALTALTALT'.*fixed length 8; it is not truncated",
    ),
    (
        "fixed length > 200",
        _set_var("LBTESTCD", "length", 201),
        r"variable LBTESTCD, value 201: character length must be 1-200",
    ),
    (
        "text in a Num column",
        _set_cell("LBSTRESN", 1, "12,5"),
        r"variable LBSTRESN, row 1, value '12,5': numeric variable holds a value that is not a",
    ),
    (
        "number in a Char column",
        _set_cell("USUBJID", 0, 12),
        r"variable USUBJID, row 0, value 12: character variable holds non-text",
    ),
    (
        "number too large for IBM",
        _set_cell("LBSTRESN", 2, 1e300),
        r"variable LBSTRESN, row 2, value 1e\+300: number is outside the IBM 370 range",
    ),
    (
        "number too small for IBM",
        _set_cell("LBSTRESN", 0, -1e-300),
        r"row 0, value -1e-300: number is outside the IBM 370 range",
    ),
    (
        "infinity",
        _set_cell("LBSTRESN", 0, float("inf")),
        r"row 0, value inf: number is outside the IBM 370 range",
    ),
    (
        "bad format",
        _set_var("LBSTRESN", "format", "8,2"),
        r"variable LBSTRESN, value '8,2': format is not a SAS format",
    ),
    (
        "char format on Num",
        _set_var("LBSTRESN", "format", "$8."),
        r"character variables take \$ formats",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [lim[1:] for lim in LIMITS], ids=[lim[0] for lim in LIMITS]
)
def test_each_limit_has_its_own_error(
    tmp_path: Path, change: Callable[[Dataset], None], message: str
) -> None:
    ds = _lb()
    change(ds)
    with pytest.raises(XptError, match=message):
        check_xpt_conformance(ds)
    target = tmp_path / f"{ds.name.lower()}.xpt"
    with pytest.raises(XptError, match=message):
        write_xpt(ds, target, created=CREATED)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_error_messages_are_all_different() -> None:
    problems = set()
    for _, change, _ in LIMITS:
        ds = _lb()
        change(ds)
        with pytest.raises(XptError) as info:
            check_xpt_conformance(ds)
        problems.add(re.sub(r"\(row is.*", "", info.value.problem))
    # Shared on purpose: two bad member names, two bad variable names, three IBM range cases.
    assert len(problems) == len(LIMITS) - 1 - 1 - 2


def test_file_name_must_match_member_name(tmp_path: Path) -> None:
    with pytest.raises(XptError, match=r"value 'LB\.xpt': file name must be .*\(lb\.xpt\)"):
        write_xpt(_lb(), tmp_path / "LB.xpt", created=CREATED)


def test_error_counts_the_other_rows() -> None:
    ds = _lb(LBTESTCD=pd.Series(["X" * 9, "Y" * 9, "ALT"], dtype="str"))
    with pytest.raises(XptError, match=r"row 0, .*0-based frame position; 1 more rows"):
        check_xpt_conformance(ds)


def test_integers_beyond_2_53_are_refused() -> None:
    ds = _lb(LBSTRESN=pd.Series([1, 2**53 + 1, 3], dtype="int64"))
    with pytest.raises(XptError, match=r"row 1, value 9007199254740993: integer is beyond 2\*\*53"):
        check_xpt_conformance(ds)


def test_date_format_never_drops_a_time_of_day() -> None:
    frame = pd.DataFrame(
        {"ADT": pd.to_datetime(["2020-01-01", "2020-01-02T10:00"], format="ISO8601")}
    )
    ds = Dataset("AD", "", frame, [Variable("ADT", "d", type="Num", format="DATE9.")])
    with pytest.raises(XptError, match=r"row 1.*date format would drop this value's time of day"):
        check_xpt_conformance(ds)
    ds.variable("ADT").format = None
    with pytest.raises(XptError, match=r"datetime column needs a SAS date"):
        check_xpt_conformance(ds)


def test_trailing_blank_rows_of_an_all_character_dataset_are_refused() -> None:
    frame = pd.DataFrame({"X": pd.Series(["a", None, ""], dtype="str")})
    ds = Dataset("CO", "", frame, [Variable("X", "x")])
    with pytest.raises(XptError, match=r"rows 1 to 2 .* entirely blank"):
        check_xpt_conformance(ds)


# --------------------------------------------------------------------------------------------
# Property: random frames round trip (or fail with an error naming the offending value)
# --------------------------------------------------------------------------------------------

ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
char_values = st.one_of(
    st.none(),
    st.just(""),
    st.text(ASCII, max_size=12),
    st.text(ASCII, min_size=200, max_size=200),
)
special_numbers = st.sampled_from(
    [0.0, -0.0, 1e-300, -1e-300, 1e300, 5.4e-79, 7.2e75, 2.0**53, -(2.0**53), 1 / 3, np.nan]
)
float_values = st.one_of(
    st.none(), special_numbers, st.floats(allow_nan=False, allow_infinity=False)
)
int_values = st.integers(min_value=-(2**62), max_value=2**62) | st.integers(-1000, 1000)


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, list[Variable]]:
    n = draw(st.integers(0, 12))
    columns: dict[str, pd.Series] = {}
    variables: list[Variable] = []
    for i in range(draw(st.integers(0, 3))):
        name = f"C{i}"
        columns[name] = pd.Series(draw(st.lists(char_values, min_size=n, max_size=n)), dtype="str")
        variables.append(Variable(name, f"Character {i}"))
    for i in range(draw(st.integers(1, 3))):
        name = f"N{i}"
        if draw(st.booleans()):
            values = draw(st.lists(float_values, min_size=n, max_size=n))
            columns[name] = pd.Series(values, dtype="float64")
        else:
            columns[name] = pd.Series(
                draw(st.lists(int_values, min_size=n, max_size=n)), dtype="int64"
            )
        variables.append(Variable(name, f"Numeric {i}", type="Num"))
    order = draw(st.permutations(variables))
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n))
    return frame[[v.name for v in order]], list(order)


def _representable(values: np.ndarray) -> np.ndarray:
    magnitude = np.abs(values)
    return np.isnan(values) | (magnitude == 0) | ((magnitude >= 2.0**-260) & (magnitude < 2.0**252))


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames())
def test_random_frames_round_trip(
    tmp_path: Path, drawn: tuple[pd.DataFrame, list[Variable]]
) -> None:
    frame, variables = drawn
    ds = Dataset(
        "RT", "Round trip", frame.copy(), [Variable(v.name, v.label, v.type) for v in variables]
    )
    path = tmp_path / "rt.xpt"
    path.unlink(missing_ok=True)

    # Values XPT v5 cannot hold must be refused with their row and value, never rounded.
    for v in variables:
        col = frame[v.name]
        if v.type == "Num" and col.dtype == "int64":
            bad = np.abs(col.to_numpy()) > 2**53
        elif v.type == "Num":
            bad = ~_representable(col.to_numpy(dtype="float64"))
        else:
            continue
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            with pytest.raises(XptError, match=rf"variable {v.name}, row {row}, value "):
                write_xpt(ds, path, created=CREATED)
            assert not path.exists()
            return

    write_xpt(ds, path, created=CREATED)
    raw, meta = pyreadstat.read_xport(str(path))
    assert meta.table_name == "RT"
    assert meta.file_label == "Round trip"
    assert meta.number_rows == len(frame)
    assert meta.column_names == [v.name for v in variables]
    assert meta.column_labels == [v.label for v in variables]
    back = read_xpt(path)
    for v in variables:
        col = frame[v.name]
        if v.type == "Char":
            # Missing and "" both become blanks; SAS drops trailing blanks.
            expected = [s.rstrip(" ") for s in col.fillna("")]
            assert raw[v.name].tolist() == expected
            assert back.frame[v.name].fillna("").tolist() == expected
            # Fitted to the longest value as given (trailing blanks included).
            fitted = max(1, max(map(len, col.fillna("")), default=0))
            assert meta.variable_storage_width[v.name] == fitted
        else:
            expected_num = col.to_numpy(dtype="float64")
            np.testing.assert_array_equal(raw[v.name].to_numpy(), expected_num)  # exact
            np.testing.assert_array_equal(back.frame[v.name].to_numpy(), expected_num)

    # pandas counts rows only reliably when an observation is longer than 80 bytes (it guesses
    # the padding of the last card from blank 8-byte words otherwise).
    if sum(v.length or 8 for v in ds.variables) > 80:
        pdf = _pandas_read(path)
        assert len(pdf) == len(frame)
        for v in variables:
            if v.type == "Num":
                expected_num = frame[v.name].to_numpy(dtype="float64")
                got = pdf[v.name].to_numpy()
                zero = expected_num == 0  # pandas #50670: 0.0 reads as 5.4e-79
                assert np.all(np.abs(got[zero]) < 1e-78)
                np.testing.assert_allclose(got[~zero], expected_num[~zero], rtol=1e-15)
            else:
                expected_txt = [s.rstrip(" ") for s in frame[v.name].fillna("")]
                assert pdf[v.name].fillna("").tolist() == expected_txt

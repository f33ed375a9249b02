"""The one date parser: partial dates stay partial, impossible dates are located errors."""

from __future__ import annotations

import pandas as pd
import pytest

from cdiscforge.dates import study_day, to_iso8601
from cdiscforge.errors import InputError, Located

WHERE = Located("ae.csv", "AESTDAT")


def test_edc_dates_partial_kept_partial_and_times_only_on_complete_dates() -> None:
    dates = pd.Series(["05-JAN-2019", "UN-JAN-2019", "UNK-UNK-2018", "", None, "5-feb-2020"])
    times = pd.Series(["10:30", "11:00", "", "9:05", "", ""])
    out = to_iso8601(dates, "%d-%b-%Y", WHERE, times=times)
    assert out.tolist()[:3] == ["2019-01-05T10:30", "2019-01", "2018"]
    assert out.isna().tolist()[3:5] == [True, True]
    assert out.iloc[5] == "2020-02-05"


def test_lab_iso_dates() -> None:
    assert to_iso8601(pd.Series(["2019-01-05", "2019-02-UN"]), "%Y-%m-%d", WHERE).tolist() == [
        "2019-01-05",
        "2019-02",
    ]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("31-FEB-2019", "impossible calendar date"),
        ("05-FOO-2019", "unknown month abbreviation"),
        ("2019/01/01", "not a date in format"),
    ],
)
def test_impossible_dates_name_file_row_column_value(bad: str, problem: str) -> None:
    with pytest.raises(InputError) as err:
        to_iso8601(pd.Series(["05-JAN-2019", bad]), "DD-MON-YYYY", WHERE)
    assert err.value.row == 2 and err.value.column == "AESTDAT" and err.value.value == bad
    assert problem in str(err.value) and "ae.csv" in str(err.value)


def test_bad_time_is_located() -> None:
    with pytest.raises(InputError, match="not a time"):
        to_iso8601(pd.Series(["05-JAN-2019"]), "DD-MON-YYYY", WHERE, times=pd.Series(["25:00"]))


def test_study_day_has_no_day_zero_and_ignores_partials() -> None:
    ref = pd.Series(["2019-01-05T09:00"] * 5)
    dtc = pd.Series(["2019-01-05", "2019-01-04T10:00", "2019-01", "2019-01-06", None])
    assert study_day(dtc, ref).tolist() == [1, -1, pd.NA, 2, pd.NA]


def test_repeated_dates_parsed_once_give_the_same_answer_and_locate_errors() -> None:
    dates = pd.Series(["05-JAN-2019", "UN-JAN-2019", None, "05-JAN-2019"] * 50)
    times = pd.Series(["10:30", "", None, "11:00"] * 50)
    out = to_iso8601(dates, "DD-MON-YYYY", WHERE, times=times)
    assert out.iloc[:4].tolist()[:2] == ["2019-01-05T10:30", "2019-01"]
    assert pd.isna(out.iloc[2]) and out.iloc[3] == "2019-01-05T11:00"
    assert out.tolist() == out.iloc[:4].tolist() * 50
    bad = dates.copy()
    bad.iloc[[7, 9]] = "31-FEB-2019"
    with pytest.raises(InputError) as err:
        to_iso8601(bad, "DD-MON-YYYY", WHERE)
    assert err.value.row == 8 and "1 more rows like it" in str(err.value)

"""Issue 14, spec vocabulary for values (contract sections 1, 3 and 4): raw date/time formats
and partial dates, conversions with an offset, the `arithmetic` and `date_shift` rules,
explicit literal-vs-reference conditions and the new condition tests, `extract`'s unmatched
policy, and unscheduled visits numbered by their label.

Planted spec errors go through the real CLI (`python -m cdiscforge.cli build`): each must be a
located spec error (file and key path), exit 2, no traceback, nothing published.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cdiscforge.dates import FormatError, parse_format, to_iso8601
from cdiscforge.errors import InputError, Located, SpecError

CLI = [sys.executable, "-m", "cdiscforge.cli"]
WHERE = Located("f.csv", "DAT")
MON = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _iso(values: list, fmt: str, **kw) -> list:
    out = to_iso8601(pd.Series(values, dtype="object"), fmt, WHERE, **kw)
    return [None if pd.isna(v) else v for v in out.tolist()]


# --- 1. raw date/time formats --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text", "iso"),
    [
        ("MM/DD/YYYY", "02/13/2019", "2019-02-13"),
        ("MM/DD/YYYY", "2/3/2019", "2019-02-03"),
        ("DD-MON-YYYY", "13-feb-2019", "2019-02-13"),
        ("YYYY-MM-DD", "2019-02-13", "2019-02-13"),
        ("MM-DD-YYYY HH:MI", "02-13-2019 09:05", "2019-02-13T09:05"),
        ("MM-DD-YYYY HH:MI", "02-13-2019   09:05", "2019-02-13T09:05"),  # a space: 1 or more
        ("DD/MM/YY", "13/02/19", "2019-02-13"),
        ("DD/MM/YY", "13/02/68", "2068-02-13"),
        ("DD/MM/YY", "13/02/69", "1969-02-13"),
        ("YYYYMMDD", "20190213", "2019-02-13"),
        ("DD.MM.YYYY HH:MI:SS", "13.02.2019 23:59:58", "2019-02-13T23:59:58"),
        ('YYYY-MM-DD"T"HH:MI', "2019-02-13T10:30", "2019-02-13T10:30"),
        ("MM/DD/YYYY HH:MI AM", "02/13/2019 12:15 AM", "2019-02-13T00:15"),
        ("MM/DD/YYYY HH:MI PM", "02/13/2019 12:15 pm", "2019-02-13T12:15"),
        ("MM/DD/YYYY HH:MI AM", "02/13/2019 01:15 PM", "2019-02-13T13:15"),
        ("mm/dd/yyyy", "02/13/2019", "2019-02-13"),  # tokens in any case
        ("iso8601", "2019", "2019"),
        ("iso8601", "2019-02", "2019-02"),
        ("ISO8601", "2019-02-13T10:30:05", "2019-02-13T10:30:05"),
        ("iso8601", "2019-02-13T10", "2019-02-13T10"),
        ("date9", "13FEB2019", "2019-02-13"),
        ("%m/%d/%Y", "02/13/2019", "2019-02-13"),
        ("%d-%b-%Y", "13-FEB-2019", "2019-02-13"),
        ("%Y-%m-%d", "2019-02-13", "2019-02-13"),
        ("%d/%m/%y %I:%M %p", "13/02/19 07:30 PM", "2019-02-13T19:30"),
        ("%Y-%m-%dT%H:%M:%S", "2019-02-13T10:30:05", "2019-02-13T10:30:05"),
    ],
)
def test_each_format_and_token_reads_its_dates(fmt: str, text: str, iso: str) -> None:
    assert _iso([text], fmt) == [iso]


@pytest.mark.parametrize(
    ("dates", "fmt", "times", "time_fmt", "iso"),
    [
        ("02/13/2019", "MM/DD/YYYY", "10:30", "HH:MI", "2019-02-13T10:30"),
        ("02/13/2019", "MM/DD/YYYY", "10:30:15", "HH:MI:SS", "2019-02-13T10:30:15"),
        ("02/13/2019", "MM/DD/YYYY", "10:30 PM", "HH:MI AM", "2019-02-13T22:30"),
        ("02/13/2019", "MM/DD/YYYY", "22:30", "%H:%M", "2019-02-13T22:30"),
        ("02/13/2019", "MM/DD/YYYY", "22:30", "HH:MM", "2019-02-13T22:30"),  # older spelling
        ("02/UN/2019", "MM/DD/YYYY", "22:30", "HH:MI", "2019-02"),  # no time on a partial
    ],
)
def test_separate_time_columns_in_their_own_format(
    dates: str, fmt: str, times: str, time_fmt: str, iso: str
) -> None:
    assert _iso([dates], fmt, times=pd.Series([times]), time_fmt=time_fmt) == [iso]


@pytest.mark.parametrize(
    ("fmt", "text", "iso"),
    [
        ("MM/DD/YYYY", "02/UN/2019", "2019-02"),  # unknown day
        ("DD/MM/YYYY", "UN/02/2019", "2019-02"),
        ("MM/DD/YYYY", "UN/02/2019", "2019"),  # unknown month, known day: right truncation
        ("MM/DD/YYYY", "UNK/UNK/2019", "2019"),
        ("MM/DD/YYYY", "--/--/2019", "2019"),
        ("MM/DD/YYYY", "02//2019", "2019-02"),  # a blank part
        ("DD-MON-YYYY", "UN-FEB-2019", "2019-02"),
        ("DD-MON-YYYY", "UNK-UNK-2019", "2019"),
        ("DD-MON-YYYY", "13-FEB-UNKN", None),  # unknown year: nothing is known
        ("MM-DD-YYYY HH:MI", "02-13-2019 10:UN", "2019-02-13T10"),  # unknown minute
        ("MM-DD-YYYY HH:MI", "02-13-2019 UN:UN", "2019-02-13"),  # unknown hour: no time
        ("MM-DD-YYYY HH:MI", "02-UN-2019 10:30", "2019-02"),  # no time on a partial date
        ("date9", "UNFEB2019", "2019-02"),
        ("date9", "UNUNK2019", "2019"),
    ],
)
def test_each_partial_form_is_right_truncated(fmt: str, text: str, iso: str | None) -> None:
    assert _iso([text], fmt) == [iso]


def test_declared_unknown_spellings_are_the_only_ones() -> None:
    only_un = parse_format("MM/DD/YYYY", ("UN",))
    assert _iso(["UN/UN/2019"], only_un) == ["2019"]
    with pytest.raises(InputError, match="not a date in format MM/DD/YYYY"):
        _iso(["NK/UN/2019"], only_un)
    with pytest.raises(InputError, match="not a date"):
        _iso(["02//2019"], only_un)  # blank is not declared unknown here


@pytest.mark.parametrize(
    ("fmt", "text", "problem"),
    [
        ("MM/DD/YYYY", "13/02/2019", "impossible month"),
        ("MM/DD/YYYY", "02/30/2019", "impossible calendar date"),
        ("MM/DD/YYYY", "2019-02-13", "not a date in format MM/DD/YYYY"),
        ("DD-MON-YYYY", "13-FOO-2019", "unknown month abbreviation"),
        ("MM/DD/YYYY HH:MI", "02/13/2019 24:00", "not a time"),
        ("MM/DD/YYYY HH:MI AM", "02/13/2019 13:00 PM", "not a time"),
        ("MM/DD/YYYY HH:MI", "02/13/2019 10:60", "not a time"),
    ],
)
def test_impossible_values_are_located_input_errors(fmt: str, text: str, problem: str) -> None:
    with pytest.raises(InputError) as err:
        _iso(["02/13/2019" if "MM/DD" in fmt and "HH" not in fmt else None, text], fmt)
    assert err.value.row == 2 and err.value.column == "DAT" and err.value.value == text.upper()
    assert problem in str(err.value)


@pytest.mark.parametrize(
    ("fmt", "problem"),
    [
        ("MM/DD/YYYX", "is not a date/time token"),
        ("DD-MMM-YYYY", "a month name is MON"),
        ("YYYY-MM-DD HH:MM", "minutes are MI"),
        ("DD/YYYY", "a day (DD) without a month"),
        ("MM/DD", "a month without a year"),
        ("HH:MI AM PM", "appears twice"),
        ("%d/%m/%Y %Z", "unsupported strftime directive %Z"),
        ("%j", "unsupported strftime directive %j"),
        ('YYYY-MM-DD"T', "unclosed quote"),
        ("", "non-empty"),
    ],
)
def test_unreadable_formats_say_why(fmt: str, problem: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_format(fmt)
    assert problem in str(err.value)


# Property tests: every real date written in a format reads back as itself; every partial
# written with unknown parts reads back right-truncated.

FORMATS = {
    "MM/DD/YYYY": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",
    "DD-MON-YYYY": lambda d: f"{d.day:02d}-{MON[d.month - 1]}-{d.year}",
    "YYYY-MM-DD": lambda d: d.isoformat(),
    "DD/MM/YY": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",
    "date9": lambda d: f"{d.day:02d}{MON[d.month - 1]}{d.year}",
    "%m-%d-%Y": lambda d: f"{d.month}-{d.day}-{d.year}",
    "iso8601": lambda d: d.isoformat(),
}


@settings(max_examples=150, deadline=None)
@given(
    day=st.dates(min_value=dt.date(1969, 1, 1), max_value=dt.date(2068, 12, 31)),
    fmt=st.sampled_from(sorted(FORMATS)),
    clock=st.one_of(st.none(), st.times()),
)
def test_round_trip_of_complete_dates_and_times(day: dt.date, fmt: str, clock) -> None:
    text = FORMATS[fmt](day)
    if clock is None:
        assert _iso([text], fmt) == [day.isoformat()]
        return
    hour12 = clock.hour % 12 or 12
    times = pd.Series([f"{hour12}:{clock.minute:02d}:{clock.second:02d} {clock:%p}"])
    expect = f"{day.isoformat()}T{clock:%H:%M:%S}"
    assert _iso([text], fmt, times=times, time_fmt="HH:MI:SS AM") == [expect]


@settings(max_examples=150, deadline=None)
@given(
    day=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
    unknown_day=st.booleans(),
    unknown_month=st.booleans(),
    spelling=st.sampled_from(["UN", "UNK", "--", ""]),
    fmt=st.sampled_from(["MM/DD/YYYY", "DD-MON-YYYY", "YYYY-MM-DD", "DD.MM.YYYY"]),
)
def test_partials_are_right_truncated_for_any_unknown_spelling(
    day: dt.date, unknown_day: bool, unknown_month: bool, spelling: str, fmt: str
) -> None:
    dd = spelling if unknown_day else f"{day.day:02d}"
    mm = spelling if unknown_month else f"{day.month:02d}"
    mon = spelling if unknown_month else MON[day.month - 1]
    text = {
        "MM/DD/YYYY": f"{mm}/{dd}/{day.year}",
        "DD-MON-YYYY": f"{dd}-{mon}-{day.year}",
        "YYYY-MM-DD": f"{day.year}-{mm}-{dd}",
        "DD.MM.YYYY": f"{dd}.{mm}.{day.year}",
    }[fmt]
    fmt_obj = parse_format(fmt, ("UN", "UNK", "--", ""))
    expect = (
        str(day.year) if unknown_month else day.isoformat()[:7] if unknown_day else day.isoformat()
    )
    assert _iso([text], fmt_obj) == [expect]


# --- the spec loader and the real CLI --------------------------------------------------------


@pytest.fixture
def spec(tmp_path: Path, seed_spec: Path) -> Path:
    dest = tmp_path / "spec"
    shutil.copytree(seed_spec, dest)
    return dest


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _var(data: dict, name: str) -> dict:
    return next(v for v in data["variables"] if v["name"] == name)


def _refused(spec: Path, tmp_path: Path, *needles: str) -> None:
    """The real CLI refuses the planted spec: exit 2, located message, nothing published."""
    out = tmp_path / "out"
    result = subprocess.run(
        [*CLI, "build", "--spec", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "spec error" in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert not out.exists() or not list(out.rglob("*.xpt"))


def _set_format(spec: Path, form: str, column: str, fmt: str) -> None:
    _edit(spec / "raw_forms.yaml", lambda d: d["forms"][form]["columns"][column].update(format=fmt))


def test_bundled_formats_load_parsed(seed_spec: Path) -> None:
    from cdiscforge.spec import load_study

    study = load_study(seed_spec)
    formats = study.date_formats("adverse_events")
    assert formats["AESTDAT"].text == "DD-MON-YYYY"
    assert formats["AESTDAT"].unknown == ("UN", "UNK")  # partial_dates.unknown


def test_bad_date_pattern_is_a_located_spec_error(spec: Path, tmp_path: Path) -> None:
    from cdiscforge.spec import load_study

    _set_format(spec, "adverse_events", "AESTDAT", "MM/DD/YYYQ")
    _set_format(spec, "adverse_events", "AEENDAT", "DD/MM")  # both reported in one run
    with pytest.raises(SpecError) as err:
        load_study(spec)
    text = str(err.value)
    assert "forms.adverse_events.columns.AESTDAT.format" in text and "MM/DD/YYYQ" in text
    assert "forms.adverse_events.columns.AEENDAT.format" in text
    _refused(spec, tmp_path, "raw_forms.yaml", "AESTDAT.format", "'MM/DD/YYYQ'")


def test_unsupported_strftime_directive_is_a_located_spec_error(spec: Path, tmp_path: Path) -> None:
    _set_format(spec, "lab", "COLLTIME", "%H:%M %Z")
    _refused(spec, tmp_path, "raw_forms.yaml", "forms.lab.columns.COLLTIME.format", "%Z")


def test_format_must_fit_the_column_type(spec: Path) -> None:
    from cdiscforge.spec import load_study

    _set_format(spec, "lab", "COLLTIME", "YYYY-MM-DD")
    with pytest.raises(SpecError, match="time column must have only time tokens"):
        load_study(spec)


def test_partial_dates_declaration_is_checked(spec: Path) -> None:
    from cdiscforge.spec import load_study

    _edit(spec / "raw_forms.yaml", lambda d: d.update(partial_dates={"unknwn": ["UN"]}))
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert err.value.key_path == "partial_dates.unknwn"


# --- rules, one context at a time -------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, seed_spec: Path):
    from cdiscforge import sdtm  # noqa: F401  (registers the SDTM rules)
    from cdiscforge.spec import load_study

    dest = tmp_path_factory.mktemp("values") / "spec"
    shutil.copytree(seed_spec, dest)
    return load_study(dest)


def _ctx(study, out: pd.DataFrame, raw: pd.DataFrame | None = None, log=None):
    import numpy as np

    from cdiscforge.buildlog import BuildLog
    from cdiscforge.rules import RuleContext, Source

    source = None if raw is None else Source("t", "t.csv", raw, np.arange(1, len(raw) + 1))
    return RuleContext(study, "XX", "V", out, source, {}, log or BuildLog(), "xx.yaml")


def _run(name: str, ctx, **params: object) -> list:
    from cdiscforge.rules import RULES

    rdef = RULES[name]
    got = rdef.fn(ctx, rdef.params.model_validate(params))
    return [None if pd.isna(v) else v for v in got.tolist()]


def _holds(study, cond: dict, out: pd.DataFrame, raw: pd.DataFrame | None = None) -> list:
    from cdiscforge.rules import Condition

    return Condition.model_validate(cond).evaluate(_ctx(study, out, raw)).tolist()


# --- 4. conditions ---------------------------------------------------------------------------

VISITS = pd.DataFrame(
    {
        "LABEL": ["UNS1", "Unscheduled 1.1", "WEEK 4", None, "UNS12"],
        "A": [1.0, 5.0, 3.0, None, 2.0],
        "B": [1.0, 4.0, 4.0, 2.0, None],
    }
)


@pytest.mark.parametrize(
    ("cond", "expect"),
    [
        ({"col": "LABEL", "startswith": "UNS"}, [True, False, False, False, True]),
        ({"col": "LABEL", "endswith": "1"}, [True, True, False, False, False]),
        ({"col": "LABEL", "contains": "ed"}, [False, True, False, False, False]),
        ({"col": "LABEL", "contains": "."}, [False, True, False, False, False]),  # not a regex
        ({"col": "LABEL", "matches": r"^UNS\d+$"}, [True, False, False, False, True]),
        ({"col": "LABEL", "missing": True}, [False, False, False, True, False]),
        ({"col": "LABEL", "missing": False}, [True, True, True, False, True]),
        ({"var": "LABEL", "in": ["WEEK 4", "UNS1"]}, [True, False, True, False, False]),
        ({"col": "LABEL", "not_in": ["WEEK 4", "UNS1"]}, [False, True, False, True, True]),
        ({"col": "A", "lt": {"var": "B"}}, [False, False, True, False, False]),
        ({"col": "A", "ge": {"var": "B"}}, [True, True, False, False, False]),
        ({"col": "A", "eq": {"var": "B"}}, [True, False, False, False, False]),
        ({"col": "A", "ne": {"var": "B"}}, [False, True, True, True, True]),
        ({"col": "A", "gt": 2}, [False, True, True, False, False]),
        ({"col": "A", "le": {"value": 2}}, [True, False, False, False, True]),
        ({"col": "A", "in": [{"var": "B"}, 5]}, [True, True, False, False, False]),
        ({"col": "LABEL", "eq": {"value": "WEEK 4"}}, [False, False, True, False, False]),
        ({"col": "LABEL", "lt": "V"}, [True, True, False, False, True]),  # bare text: literal
        (
            {"all": [{"col": "LABEL", "startswith": "UNS"}, {"col": "A", "gt": 1}]},
            [False, False, False, False, True],
        ),
        (
            {"any": [{"col": "LABEL", "eq": "WEEK 4"}, {"col": "B", "missing": True}]},
            [False, False, True, False, True],
        ),
        ({"not": {"col": "LABEL", "startswith": "UNS"}}, [False, True, True, True, False]),
    ],
)
def test_each_condition_test(study, cond: dict, expect: list) -> None:
    assert _holds(study, cond, VISITS) == expect


def test_raw_text_compares_as_a_number_with_a_number(study) -> None:
    raw = pd.DataFrame({"AGE": ["17", "40", "65", None, "n/a"]})
    out = pd.DataFrame(index=raw.index)
    assert _holds(study, {"col": "raw.AGE", "lt": 40}, out, raw) == [True] + [False] * 4
    assert _holds(study, {"col": "raw.AGE", "eq": 65}, out, raw) == [
        False,
        False,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("cond", "problem"),
    [
        ({"col": "X"}, "has no test"),
        ({"eq": 1}, "needs col"),
        ({"col": "X", "var": "Y", "eq": 1}, "not both"),
        ({"col": "X", "matches": "UNS("}, "not a valid regular expression"),
        ({"col": "X", "lt": {"vr": "Y"}}, "{var: REF} or {value: X}"),
        ({"all": [{"col": "X", "eq": 1}], "col": "Y"}, "either"),
    ],
)
def test_malformed_conditions_are_refused(cond: dict, problem: str) -> None:
    from pydantic import ValidationError

    from cdiscforge.rules import Condition

    with pytest.raises(ValidationError, match=re_escape(problem)):
        Condition.model_validate(cond)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_conditions_in_words() -> None:
    from cdiscforge.rules import Condition
    from cdiscforge.rules.words import Words

    cond = Condition.model_validate(
        {
            "all": [
                {"col": "raw.VISIT", "startswith": "UNS"},
                {"col": "A", "lt": {"var": "B"}},
                {"col": "C", "matches": "^X$"},
            ]
        }
    )
    assert Words().condition(cond) == (
        'VISIT as collected starts with "UNS", A is below B and C matches the text pattern "^X$"'
    )


def _dm_case(spec: Path, cond: dict) -> None:
    def change(data: dict) -> None:
        _var(data, "ARMNRS").setdefault("cases", [])[0]["when"] = cond

    _edit(spec / "sdtm" / "dm.yaml", change)


def test_literal_vs_reference_misuse_is_a_located_spec_error(spec: Path, tmp_path: Path) -> None:
    from cdiscforge.spec import load_study

    _dm_case(
        spec, {"all": [{"col": "RFXSTDTC", "missing": False}, {"col": "RFSTDTC", "lt": "RFICDTC"}]}
    )
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert "ARMNRS" in err.value.key_path and err.value.key_path.endswith("all[1].lt")
    assert "write {var: RFICDTC}" in err.value.problem
    _refused(spec, tmp_path, "dm.yaml", "write {var: RFICDTC} to compare with the variable RFICDTC")


def test_a_bad_regex_is_a_located_spec_error(spec: Path, tmp_path: Path) -> None:
    _dm_case(spec, {"col": "raw.ENROLLED", "matches": "^(N"})
    _refused(spec, tmp_path, "dm.yaml", "ARMNRS", "not a valid regular expression")


# --- extract's unmatched policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expect"),
    [("null", ["101", None, None]), ("keep", ["101", "X-9", None])],
)
def test_extract_unmatched_policy(study, policy: str, expect: list) -> None:
    from cdiscforge.buildlog import BuildLog

    raw = pd.DataFrame({"SUBJ": ["101-001", "X-9", None]})
    log = BuildLog()
    ctx = _ctx(study, pd.DataFrame(index=raw.index), raw, log)
    got = _run("extract", ctx, **{"from": "SUBJ", "pattern": r"^(\d{3})-", "unmatched": policy})
    assert got == expect
    assert "not matching pattern" in str(log.events) and "X-9" in str(log.events)


def test_extract_unmatched_error_by_default(study) -> None:
    raw = pd.DataFrame({"SUBJ": ["101-001", "X-9"]})
    with pytest.raises(InputError) as err:
        _run("extract", _ctx(study, pd.DataFrame(index=raw.index), raw),
             **{"from": "SUBJ", "pattern": r"^(\d{3})-"})  # fmt: skip
    assert err.value.row == 2 and err.value.value == "X-9"


# --- unscheduled visits numbered by their label --------------------------------------------


def test_unscheduled_visits_numbered_by_label(study) -> None:
    pattern = r"^Unscheduled (?P<num>\d+(\.\d+)?)$"
    raw = pd.DataFrame(
        {"FOLDER": ["SCREEN", "Unscheduled 1.1", "UNSCHEDULED 1.10", "Unscheduled 4"]}
    )
    out = pd.DataFrame(
        {"USUBJID": ["S-1"] * 4, "D": ["2019-01-01", "2019-01-05", "2019-01-06", "2019-02-01"]}
    )
    ctx = _ctx(study, out, raw)
    nums = _run("visitnum", ctx, folder="raw.FOLDER", key="edc_folder", date="D",
                unscheduled_from=None, label_pattern=pattern)  # fmt: skip
    assert nums == [1.0, 1.1, 1.1, 4.0]
    out["VISITNUM"] = pd.Series(nums, dtype="Float64")
    names = _run("visit", _ctx(study, out, raw), folder="raw.FOLDER", label_pattern=pattern)
    assert names == ["SCREENING", "UNSCHEDULED 1.1", "UNSCHEDULED 1.10", "UNSCHEDULED 4"]
    assert "numbered like a planned visit" in str(ctx.log.events)  # 4 is WEEK 1's number


def test_visit_label_pattern_needs_a_num_group() -> None:
    from pydantic import ValidationError

    from cdiscforge.rules import RULES

    with pytest.raises(ValidationError, match="group named num"):
        RULES["visitnum"].params.model_validate(
            {"folder": "raw.F", "key": "edc_folder", "date": "D", "label_pattern": r"^U(\d+)$"}
        )


# --- 3. values: offset, arithmetic, date_shift -------------------------------------------------


def test_number_with_factor_and_offset(study) -> None:
    raw = pd.DataFrame({"TEMP": ["98.6", "212", None], "OFF": ["1", "2", "3"]})
    out = pd.DataFrame(index=raw.index)
    got = _run("number", _ctx(study, out, raw), **{"from": "TEMP", "factor": 0.5555555556,
               "offset": -17.7777777778, "decimals": 1})  # fmt: skip
    assert got == [37.0, 100.0, None]
    out["OFF"] = pd.Series([1.0, 2.0, 3.0], dtype="Float64")
    got = _run("number", _ctx(study, out, raw), **{"from": "TEMP", "offset": "OFF"})
    assert got == [99.6, 214.0, None]


def test_result_char_converts_with_an_offset(study) -> None:
    out = pd.DataFrame({"ORRES": ["98.6", "<95", "HEMOLYSED"]})
    got = _run("result_char", _ctx(study, out), var="ORRES", factor=0.5555555556,
               offset=-17.7777777778, decimals=1)  # fmt: skip
    assert got == ["37", "<35", "HEMOLYSED"]


@pytest.mark.parametrize(
    ("expr", "expect"),
    [
        ("(raw.TEMP - 32) * 5 / 9", [37.0, 100.0, None, -40.0]),
        ("raw.TEMP - 32 * 5 / 9", [80.8, 194.2, None, -57.8]),  # * and / bind tighter
        ("-raw.TEMP + 1", [-97.6, -211.0, None, 41.0]),  # unary minus
        ("2 - -raw.TEMP", [100.6, 214.0, None, -38.0]),
        ("10 - 4 - 3", [3.0, 3.0, 3.0, 3.0]),  # left to right
        ("100 / 10 / 5", [2.0, 2.0, 2.0, 2.0]),
        ("(raw.TEMP)", [98.6, 212.0, None, -40.0]),
    ],
)
def test_arithmetic_precedence_and_unary_minus(study, expr: str, expect: list) -> None:
    raw = pd.DataFrame({"TEMP": ["98.6", "212", None, "-40"]})
    got = _run("arithmetic", _ctx(study, pd.DataFrame(index=raw.index), raw), expr=expr, round=1)
    assert got == expect


def test_arithmetic_division_by_zero_is_null_and_counted(study) -> None:
    from cdiscforge.buildlog import BuildLog

    out = pd.DataFrame({"WT": [70.0, 80.0, 90.0], "HT": [1.75, 0.0, 0.0]})
    log = BuildLog()
    got = _run("arithmetic", _ctx(study, out, log=log), expr="WT / (HT * HT)", round=2)
    assert got == [22.86, None, None]
    warned = [e for e in log.events if "division by zero" in e.message]
    assert [(e.level, e.count) for e in warned] == [("warning", 2)]


def test_arithmetic_text_that_is_no_number_is_a_located_input_error(study) -> None:
    raw = pd.DataFrame({"TEMP": ["98.6", "hot"]})
    with pytest.raises(InputError) as err:
        _run("arithmetic", _ctx(study, pd.DataFrame(index=raw.index), raw), expr="raw.TEMP * 2")
    assert err.value.row == 2 and err.value.column == "TEMP" and err.value.value == "hot"


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("(raw.TEMP - 32 * 5 / 9", "expected )"),
        ("raw.TEMP ^ 2", "unexpected '^' at character 10"),
        ("raw.TEMP +", "at the end"),
        ("__import__('os')", "unexpected"),
        ("1 / (2 - 2)", "divides by zero"),
        ("", "an expression is needed"),
    ],
)
def test_arithmetic_syntax_errors(expr: str, problem: str) -> None:
    from pydantic import ValidationError

    from cdiscforge.rules import RULES

    with pytest.raises(ValidationError, match=re_escape(problem)):
        RULES["arithmetic"].params.model_validate({"expr": expr})


def test_arithmetic_and_offset_in_words() -> None:
    from cdiscforge.rules import RULES
    from cdiscforge.rules.words import Words, describe_rule

    rdef = RULES["arithmetic"]
    params = rdef.params.model_validate({"expr": "(raw.TEMP - 32) * 5 / 9", "round": 1})
    assert describe_rule(rdef, params, Words()).startswith(
        "(TEMP as collected - 32) x 5 / 9, rounded to 1 decimal"
    )
    rdef = RULES["number"]
    params = rdef.params.model_validate({"from": "T", "factor": 0.5, "offset": -17.5})
    assert describe_rule(rdef, params, Words()) == (
        "the numeric value of T as collected multiplied by 0.5 minus 17.5"
    )
    assert rdef.origin_for(params) == "Derived"


@pytest.mark.parametrize(
    ("date", "amount", "unit", "expect"),
    [
        ("2019-01-31", 14, "days", "2019-02-14"),
        ("2019-01-31", -31, "days", "2018-12-31"),
        ("2019-01-31T10:30", 2, "weeks", "2019-02-14T10:30"),  # the time part is kept
        ("2019-01-31", 1, "months", "2019-02-28"),  # month end
        ("2020-01-31", 1, "months", "2020-02-29"),  # leap year
        ("2019-03-31", -1, "months", "2019-02-28"),
        ("2019-05-15", 13, "months", "2020-06-15"),
        ("2020-02-29", 1, "years", "2021-02-28"),
        ("2019-12-31", -2, "years", "2017-12-31"),
    ],
)
def test_date_shift(study, date: str, amount: int, unit: str, expect: str) -> None:
    out = pd.DataFrame({"D": [date]})
    assert _run("date_shift", _ctx(study, out), date="D", amount=amount, unit=unit) == [expect]


def test_date_shift_partial_and_per_record_amounts(study) -> None:
    from cdiscforge.buildlog import BuildLog

    out = pd.DataFrame(
        {
            "D": ["2019-01-31", "2019-01", None, "2019-03-01", "2019-03-01"],
            "N": [1.0, 1.0, 1.0, None, 1.5],
        }
    )
    log = BuildLog()
    got = _run("date_shift", _ctx(study, out, log=log), date="D", amount={"var": "N"},
               unit="months")  # fmt: skip
    assert got == ["2019-02-28", None, None, None, None]
    text = str(log.events)
    assert "partial or unreadable date" in text and "not a whole number" in text
    assert "month's last day used" in text


def _set_var(spec: Path, dataset: str, entry: dict) -> None:
    """Add `entry` after the last variable of a dataset spec."""
    _edit(spec / "sdtm" / f"{dataset}.yaml", lambda d: d["variables"].append(entry))


def test_arithmetic_syntax_error_is_a_located_spec_error(spec: Path, tmp_path: Path) -> None:
    _set_var(spec, "dm", {"name": "_X", "rule": "arithmetic", "expr": "(AGE + 1"})
    _refused(spec, tmp_path, "dm.yaml", "(_X).expr", "expected )")


def test_arithmetic_unknown_reference_is_a_located_spec_error(spec: Path, tmp_path: Path) -> None:
    from cdiscforge.spec import load_study

    _set_var(spec, "dm", {"name": "_X", "rule": "arithmetic", "expr": "AGEE * 12"})
    _set_var(spec, "dm", {"name": "_Y", "rule": "arithmetic", "expr": "raw.AGEE * 12"})
    _set_var(spec, "dm", {"name": "_Z", "rule": "date_shift", "date": "RFSTDT", "amount": 1,
                          "unit": "days"})  # fmt: skip
    with pytest.raises(SpecError) as err:
        load_study(spec)
    text = str(err.value)
    assert "(_X).expr: unknown reference 'AGEE'" in text
    assert "unknown raw column 'AGEE'" in text and "(_Y)" in text
    assert "(_Z).date: unknown reference 'RFSTDT'" in text
    _refused(spec, tmp_path, "dm.yaml", "unknown reference 'AGEE'")


@pytest.mark.parametrize("name", ["arithmetic", "date_shift"])
def test_rule_examples_run(study, name: str) -> None:
    """The example files of the new rules (cdiscforge/rules/examples, the contract's format)
    give what they say."""
    from cdiscforge.rules import RULES

    path = Path(__file__).parents[1] / "cdiscforge" / "rules" / "examples" / f"{name}.yaml"
    example = yaml.safe_load(path.read_text())
    entry = dict(example["spec"])
    assert entry.pop("rule") == name and entry.pop("name")
    raw = pd.DataFrame(example["raw"], dtype="string")
    params = RULES[name].params.model_validate(entry)
    got = RULES[name].fn(_ctx(study, pd.DataFrame(index=raw.index), raw), params)
    assert [None if pd.isna(v) else v for v in got.tolist()] == example["expect"]


def test_iso8601_rule_logs_a_time_dropped_from_a_partial_datetime(study) -> None:
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.dates import parse_format

    raw = pd.DataFrame({"DTM": ["02/13/2019 10:30", "02/UN/2019 10:30", "02/UN/2019 UN:UN"]})
    ctx = _ctx(study, pd.DataFrame(index=raw.index), raw, BuildLog())
    ctx.source.date_formats = {"DTM": parse_format("MM/DD/YYYY HH:MI")}
    assert _run("iso8601", ctx, date="DTM") == ["2019-02-13T10:30", "2019-02", "2019-02"]
    dropped = [e for e in ctx.log.events if "time dropped" in e.message]
    assert [(e.level, e.count) for e in dropped] == [("warning", 1)]


def test_iso8601_rule_on_a_time_column_is_a_spec_error_not_a_traceback(study) -> None:
    from cdiscforge.dates import parse_format

    raw = pd.DataFrame({"TIM": ["10:30"]})
    ctx = _ctx(study, pd.DataFrame(index=raw.index), raw)
    ctx.source.date_formats = {"TIM": parse_format("HH:MI")}
    with pytest.raises(SpecError, match="not a date column"):
        _run("iso8601", ctx, date="TIM")


@pytest.mark.parametrize("skip_null", [True, False])
def test_concat_of_repeated_values_is_joined_once_per_distinct_row_alike(
    study, skip_null: bool
) -> None:
    # repeated rows (the per-distinct path) and the same rows once each (every row joined)
    test = pd.Series(["CRP", "ESR", None, "CRP", "CRP", "ESR"] * 3, dtype="string")
    unit = pd.Series(["mg/L", None, "mm/h", "mg/L", "g/L", None] * 3, dtype="string")
    raw = pd.DataFrame({"T": test, "U": unit})
    parts = ["raw.T", {"value": " ("}, "raw.U", {"value": ")"}]
    got = _run("concat", _ctx(study, pd.DataFrame(index=raw.index), raw), parts=parts,
               skip_null=skip_null)  # fmt: skip
    once = raw.iloc[:6]
    each = _run("concat", _ctx(study, pd.DataFrame(index=once.index), once), parts=parts,
                skip_null=skip_null)  # fmt: skip
    assert got == each * 3
    if skip_null:
        assert each[:3] == ["CRP (mg/L)", "ESR ()", " (mm/h)"]
    else:
        assert each[:3] == ["CRP (mg/L)", None, None]

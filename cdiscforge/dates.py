"""The one date parser: collected date/time text to ISO 8601, vectorised.

A raw date/time column declares its layout in raw_forms.yaml (`format:`), as

- a token pattern: `DD-MON-YYYY`, `MM/DD/YYYY`, `YYYY-MM-DD`, `MM-DD-YYYY HH:MI`, `DD/MM/YY`,
  `HH:MI:SS AM`. Tokens: DD (day), MM (month number), MON (JAN..DEC, any case), YYYY, YY
  (two-digit year, 00-68 -> 20xx, 69-99 -> 19xx), HH (hour; 12-hour clock when the pattern
  has AM or PM), MI (minute), SS (second), AM/PM. Any other character that is not a letter is
  a literal separator (a space matches one or more spaces); letters in double quotes are a
  literal (`YYYY-MM-DD"T"HH:MI`). Any other letter is an error in the spec, found at load;
- a named format: `iso8601` (YYYY[-MM[-DD]][THH[:MI[:SS]]]: partial by right truncation) or
  `date9` (DDMONYYYY, SAS's DATE9.);
- a strftime string (`%d-%b-%Y`, `%m/%d/%Y`, `%H:%M` ...), translated to tokens: %d %m %b %Y
  %y %H %I %M %S %p %%; any other directive is an error in the spec.

EDC systems write unknown parts of a date as `UN`, `UNK`, `--` or leave them blank
(`UN-JAN-2019`, `UNK-UNK-2018`, `UN/02/2019`); the study declares its spellings
(`partial_dates: {unknown: [UN, UNK, "--", ""]}`), by default UN, UNK, UNKN, NK, XX, XXXX, --
and blank. SDTM keeps what was collected (SDTMIG 4.4.7): a partial date is right-truncated at
its first unknown part, never imputed (unknown day -> `YYYY-MM`; unknown month -> `YYYY`
even when the day is known; unknown year -> null), and a time is only attached to a complete
date. An impossible date (31-FEB-2019, month FOO, hour 25) is an input error naming the
file, row, column and value: the build stops rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from cdiscforge.errors import InputError, Located, raise_first, raising
from cdiscforge.vectorise import broadcast, factorize_rows, per_distinct

MONTHS = {
    m: f"{i:02d}"
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
# What an unknown part may be written as when the study declares nothing (partial_dates).
DEFAULT_UNKNOWN = ("UN", "UNK", "UNKN", "NK", "XX", "XXXX", "--", "")
# Tokens, longest first where one is the start of another (YYYY before YY).
TOKENS = ("YYYY", "MON", "DD", "MM", "YY", "HH", "MI", "SS", "AM", "PM")
DATE_TOKENS = frozenset({"YYYY", "YY", "MM", "MON", "DD"})
TIME_TOKENS = frozenset({"HH", "MI", "SS", "AM"})
# strftime directive -> token (%I is the 12-hour hour: %p must be in the pattern then).
STRFTIME = {
    "d": "DD", "m": "MM", "b": "MON", "Y": "YYYY", "y": "YY", "H": "HH", "I": "HH",
    "M": "MI", "S": "SS", "p": "AM",
}  # fmt: skip
NAMED = {"ISO8601": "iso8601", "DATE9": "DDMONYYYY"}
# Spellings of earlier versions, where MM after HH: meant minutes.
LEGACY = {"HH:MM": "HH:MI", "HH:MM:SS": "HH:MI:SS"}
# Regex group of each token (AM and PM are one token: the meridiem).
_GROUP = {"YYYY": "y", "YY": "yy", "MM": "m", "MON": "mon", "DD": "d", "HH": "h", "MI": "mi",
          "SS": "s", "AM": "ap"}  # fmt: skip
_DIGITS = {"YYYY": 4, "YY": 2, "MM": 2, "DD": 2, "HH": 2, "MI": 2, "SS": 2}
_ISO = (
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2}))?)?)?)?)?"
)


class FormatError(ValueError):
    """A declared date/time format that cannot be read (the spec loader locates it)."""


@dataclass(frozen=True)
class DateFormat:
    """A parsed date/time format: its tokens and literal separators, and the spellings of an
    unknown part. Built once per column when the spec loads (`parse_format`)."""

    text: str  # as written in the spec
    items: tuple[str, ...]  # tokens and ("=", literal) separators, in order
    unknown: tuple[str, ...] = DEFAULT_UNKNOWN
    iso: bool = False  # the iso8601 named format (partial by truncation only)

    @property
    def tokens(self) -> frozenset[str]:
        if self.iso:
            return frozenset({"YYYY", "MM", "DD", "HH", "MI", "SS"})
        return frozenset(i for i in self.items if i in _GROUP)

    @property
    def has_date(self) -> bool:
        return bool(self.tokens & DATE_TOKENS)

    @property
    def has_time(self) -> bool:
        return "HH" in self.tokens

    def regex(self) -> str:
        """The anchored regular expression a value (stripped, upper-cased) must match."""
        if self.iso:
            return f"^{_ISO}$"
        unknown = sorted({u.upper() for u in self.unknown}, key=lambda u: (-len(u), u))
        alternatives = "".join(f"|{re.escape(u)}" for u in unknown)
        out = []
        for pos, item in enumerate(self.items):
            if item.startswith("="):
                literal = item[1:]
                out.append(r"\s+" if literal.isspace() else re.escape(literal))
                continue
            group = _GROUP[item]
            if item == "AM":
                out.append(rf"(?P<{group}>AM|PM)")
                continue
            if item == "MON":
                body = "[A-Z]{3}"
            else:
                # Next to another number with no separator the width must be exact.
                width = _DIGITS[item]
                glued = any(
                    0 <= j < len(self.items) and self.items[j] in _DIGITS
                    for j in (pos - 1, pos + 1)
                )
                body = rf"\d{{{width}}}" if glued or width == 4 else rf"\d{{1,{width}}}"
            out.append(rf"(?P<{group}>{body}{alternatives})")
        return "^" + "".join(out) + "$"


@lru_cache(maxsize=256)
def parse_format(text: str, unknown: tuple[str, ...] = DEFAULT_UNKNOWN) -> DateFormat:
    """A declared format (token pattern, named format or strftime string) as a DateFormat.

    Raises FormatError naming what is wrong: a letter that is no token, an unsupported
    strftime directive, a token given twice, a day without a month, a month without a year,
    minutes without an hour, AM/PM without an hour.
    """
    if not isinstance(text, str) or not text.strip():
        raise FormatError("a date/time format must be a non-empty text")
    named = NAMED.get(text.strip().upper())
    if named == "iso8601":
        return DateFormat(text, (), tuple(unknown), iso=True)
    pattern = named or LEGACY.get(text.strip(), text)
    if "%" in pattern:
        pattern = _from_strftime(pattern)
    items = _tokenise(pattern, text)
    _check_items(items, text)
    return DateFormat(text, items, tuple(unknown))


def _from_strftime(text: str) -> str:
    """`%m/%d/%Y` -> `MM/DD/YYYY` (literal letters quoted, so they stay literal)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(f'"{ch}"' if ch.isalpha() else ch)
            i += 1
            continue
        directive = text[i + 1 : i + 2]
        if directive == "%":
            out.append("%")
        elif directive in STRFTIME:
            out.append(STRFTIME[directive])
        else:
            supported = " ".join(f"%{d}" for d in [*STRFTIME, "%"])
            raise FormatError(
                f"unsupported strftime directive %{directive} in format {text!r} "
                f"(supported: {supported}; or write a token pattern such as MM/DD/YYYY)"
            )
        i += 2
    return "".join(out)


def _tokenise(pattern: str, shown: str) -> tuple[str, ...]:
    items: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            end = pattern.find('"', i + 1)
            if end < 0:
                raise FormatError(f"unclosed quote in format {shown!r}")
            items.append("=" + pattern[i + 1 : end])
            i = end + 1
            continue
        if not ch.isalpha():
            items.append("=" + ch)
            i += 1
            continue
        token = next((t for t in TOKENS if pattern.upper().startswith(t, i)), None)
        if token is None:
            letters = re.match(r"[A-Za-z]+", pattern[i:]).group(0)  # type: ignore[union-attr]
            hint = (
                "; a month name is MON" if pattern.upper()[max(0, i - 2) : i + 1] == "MMM" else ""
            )
            raise FormatError(
                f"{letters!r} (character {i + 1}) in format {shown!r} is not a date/time token "
                "(DD, MM, MON, YYYY, YY, HH, MI, SS, AM/PM; other letters go in double quotes)"
                + hint
            )
        items.append("AM" if token == "PM" else token)
        i += len(token)
    return tuple(items)


def _check_items(items: tuple[str, ...], shown: str) -> None:
    tokens = [i for i in items if not i.startswith("=")]
    twice = sorted({t for t in tokens if tokens.count(t) > 1})
    if twice:
        hint = " (minutes are MI)" if twice[0] == "MM" and "HH" in tokens else ""
        raise FormatError(f"token {twice[0]} appears twice in format {shown!r}{hint}")
    have = set(tokens)
    needs = [
        ({"YYYY", "YY"} <= have, "both YYYY and YY"),
        ({"MM", "MON"} <= have, "both MM and MON"),
        ("DD" in have and not have & {"MM", "MON"}, "a day (DD) without a month"),
        (bool(have & {"MM", "MON"}) and not have & {"YYYY", "YY"}, "a month without a year"),
        ("MI" in have and "HH" not in have, "minutes (MI) without an hour (HH)"),
        ("SS" in have and "MI" not in have, "seconds (SS) without minutes (MI)"),
        ("AM" in have and "HH" not in have, "AM/PM without an hour (HH)"),
        (not have & {"YYYY", "YY", "HH"}, "no year and no hour"),
    ]
    for bad, what in needs:
        if bad:
            raise FormatError(f"format {shown!r} has {what}")


def _as_format(fmt: str | DateFormat) -> DateFormat:
    return fmt if isinstance(fmt, DateFormat) else parse_format(fmt)


def check_column_format(fmt: DateFormat, column_type: str) -> None:
    """A format fits its column's type: a date column's format has a date (and may have a
    time), a time column's only a time."""
    if column_type == "time" and (fmt.has_date or not fmt.has_time):
        raise FormatError(f"format {fmt.text!r} of a time column must have only time tokens")
    if column_type in ("date", "datetime") and not fmt.has_date:
        raise FormatError(f"format {fmt.text!r} of a {column_type} column has no date part")
    if column_type not in ("date", "datetime", "time"):
        raise FormatError(f"a format applies to date, datetime and time columns, not {column_type}")


def to_iso8601(
    dates: pd.Series,
    fmt: str | DateFormat,
    where: Located,
    times: pd.Series | None = None,
    time_fmt: str | DateFormat = "HH:MM",
    time_where: Located | None = None,
) -> pd.Series:
    """Convert collected dates (and optional times) to ISO 8601 text, keeping partials partial.

    Cases, in the order applied:
    1. missing or blank date -> missing;
    2. text not in the declared format -> InputError;
    3. unknown year -> missing (nothing is known), unknown month -> `YYYY`,
       unknown day -> `YYYY-MM` (right truncation, SDTMIG 4.4.7);
    4. a month that does not exist (13, FOO) or a complete date that does not (31-FEB)
       -> InputError;
    5. a time (from the date column's own format, or the `times` column) is attached
       (`YYYY-MM-DDThh:mm[:ss]`) only to a complete date; an unknown minute truncates it to
       the hour; a malformed or impossible time -> InputError; a time beside a partial date
       is dropped (the caller logs it).

    >>> to_iso8601(pd.Series(["05-JAN-2019", "UN-JAN-2019", "UNK-UNK-2018"]), "DD-MON-YYYY",
    ...            Located("f.csv", "D")).tolist()
    ['2019-01-05', '2019-01', '2018']

    Collected dates repeat (134 joint rows share a visit date), so each distinct date/time
    pair is parsed once and the result broadcast; a bad value is then located in the full
    column, so the error names its first row and how many rows share it.
    """
    columns = [dates.astype("string")]
    if times is not None:
        columns.append(times.astype("string"))
    codes, first = factorize_rows(*columns)
    if len(first) == len(codes):
        return _to_iso8601(dates, fmt, where, times, time_fmt, time_where)
    distinct = [col.iloc[first].reset_index(drop=True) for col in columns]
    try:
        with raising():  # positions in `distinct` are not rows: never collect from here
            parsed = _to_iso8601(
                distinct[0], fmt, where, distinct[1] if times is not None else None,
                time_fmt, time_where,
            )  # fmt: skip
    except InputError:
        # Locate the problem in the whole column (the slow path runs only on bad input).
        return _to_iso8601(dates, fmt, where, times, time_fmt, time_where)
    return broadcast(parsed.astype("string"), codes, dates.index)


def has_time(values: pd.Series, fmt: str | DateFormat) -> pd.Series:
    """Rows whose collected text (in a date-and-time format) holds a known hour: where a
    partial date drops a collected time, so the caller can log it (never raises)."""
    dfmt = _as_format(fmt)
    if not dfmt.has_time:
        return pd.Series(False, index=values.index)
    groups = _clean(values).str.extract(dfmt.regex())
    hour = groups["h"].astype("string") if "h" in groups.columns else None
    if hour is None:
        return pd.Series(False, index=values.index)
    known = hour.notna() & ~hour.isin([u.upper() for u in dfmt.unknown]) & (hour != "")
    return known.fillna(False).astype(bool)


def _clean(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.upper()
    return text.mask(text == "")


def _to_iso8601(
    dates: pd.Series,
    fmt: str | DateFormat,
    where: Located,
    times: pd.Series | None,
    time_fmt: str | DateFormat,
    time_where: Located | None,
) -> pd.Series:
    dfmt = _as_format(fmt)
    if not dfmt.has_date:
        raise FormatError(f"format {dfmt.text!r} has no date part")
    text = _clean(dates)
    parts = _parts(text, dfmt, where, "date")
    year, month, day = parts["y"], parts["m"], parts["d"]
    out = pd.Series(pd.NA, index=dates.index, dtype="string")
    has_y = year.notna()
    has_m = has_y & month.notna()
    has_d = has_m & day.notna()
    out = out.mask(has_y, year)
    out = out.mask(has_m, year + "-" + month)
    out = out.mask(has_d, year + "-" + month + "-" + day)
    full = out.where(has_d)
    parsed = pd.to_datetime(full, format="%Y-%m-%d", errors="coerce")
    impossible = has_d & parsed.isna()
    raise_first(impossible, text, where, "impossible calendar date")
    # Reached with bad values only while errors are being collected: those become null.
    out = out.mask((parts["invalid"] | impossible).fillna(False).astype(bool))

    if times is not None:
        tfmt = _as_format(time_fmt)
        tparts = _parts(_clean(times), tfmt, time_where or where, "time")
    elif dfmt.has_time:
        tparts = parts
    else:
        return out
    hour, minute, second = tparts["h"], tparts["mi"], tparts["s"]
    clock = hour.mask(minute.notna(), hour + ":" + minute)
    clock = clock.mask(minute.notna() & second.notna(), clock + ":" + second)
    clock = clock.mask(tparts["invalid"])
    attach = has_d & ~impossible.fillna(False).astype(bool) & clock.notna()
    return out.mask(attach, out + "T" + clock)


def _parts(text: pd.Series, fmt: DateFormat, where: Located, what: str) -> pd.DataFrame:
    """The known parts of each value as ISO text (y: 4 digits; m, d, h, mi, s: 2 digits;
    null when unknown or not in the format) and `invalid`: values reported as input errors
    (kept null while errors are collected)."""
    regex = fmt.regex()
    matched = text.str.fullmatch(regex).fillna(False).astype(bool)
    unmatched = text.notna() & ~matched
    raise_first(unmatched, text, where, f"not a {what} in format {fmt.text}")
    groups = text.where(matched).str.extract(regex)
    unknown = [u.upper() for u in fmt.unknown]
    blank = pd.Series(pd.NA, index=text.index, dtype="string")

    def known(group: str) -> pd.Series:
        if group not in groups.columns:
            return blank
        values = groups[group].astype("string")
        return values.mask(values.isin(unknown) | (values == ""))

    invalid = unmatched.copy()
    year = known("y")
    yy = pd.to_numeric(known("yy"), errors="coerce")
    year = year.fillna((yy + 2000).where(yy <= 68, yy + 1900).astype("Int64").astype("string"))
    mon = known("mon")
    month = mon.map(MONTHS).astype("string")
    bad_mon = mon.notna() & month.isna()
    raise_first(bad_mon, text, where, "unknown month abbreviation")
    number = pd.to_numeric(known("m"), errors="coerce")
    bad_month = number.notna() & ~number.between(1, 12)
    raise_first(bad_month, text, where, "impossible month")
    month = month.fillna(number.astype("Int64").astype("string").str.zfill(2))
    day = known("d").str.zfill(2)
    invalid |= bad_mon | bad_month

    hour = pd.to_numeric(known("h"), errors="coerce")
    minute = pd.to_numeric(known("mi"), errors="coerce")
    second = pd.to_numeric(known("s"), errors="coerce")
    meridiem = known("ap")
    if "AM" in fmt.tokens:
        bad_time = hour.notna() & ~hour.between(1, 12)
        hour = (hour % 12).where(meridiem != "PM", hour % 12 + 12)
        hour = hour.where(meridiem.notna())  # the hour means nothing without AM/PM
    else:
        bad_time = hour.notna() & ~hour.between(0, 23)
    bad_time |= (minute > 59).fillna(False) | (second > 59).fillna(False)
    bad_time = bad_time.fillna(False).astype(bool)
    raise_first(bad_time, text, where, f"not a time in format {fmt.text}")
    invalid |= bad_time

    def two(values: pd.Series) -> pd.Series:
        return values.astype("Int64").astype("string").str.zfill(2)

    return pd.DataFrame(
        {"y": year, "m": month.where(month.notna()), "d": day, "h": two(hour),
         "mi": two(minute), "s": two(second), "invalid": invalid.fillna(False).astype(bool)},
        index=text.index,
    )  # fmt: skip


def iso_to_datetime(iso: pd.Series) -> pd.Series:
    """Complete ISO 8601 dates/datetimes to datetime64 (partial -> NaT): for --DY and windows.
    Parsed once per distinct text (dates repeat over a visit's records), then broadcast."""
    return per_distinct(_iso_to_datetime, iso.astype("string"))


def _iso_to_datetime(text: pd.Series) -> pd.Series:
    date_part = text.str.slice(0, 10).where(text.str.len() >= 10)
    return pd.to_datetime(date_part, format="%Y-%m-%d", errors="coerce")


def study_day(dtc: pd.Series, reference: pd.Series) -> pd.Series:
    """SDTM study day: date - reference + 1 on or after the reference, date - reference before.

    There is no day 0. Missing when either date is partial or missing. Computed once per
    distinct (date, reference) pair, then broadcast.
    """
    if len(dtc) != len(reference) or not dtc.index.equals(reference.index):
        return _study_day(dtc, reference)
    return per_distinct(_study_day, dtc, reference)


def _study_day(dtc: pd.Series, reference: pd.Series) -> pd.Series:
    d = iso_to_datetime(dtc)
    r = iso_to_datetime(reference)
    delta = (d - r).dt.days.astype("Float64")
    return delta.where(delta < 0, delta + 1)

"""The one date parser: collected date/time text to ISO 8601, vectorised.

EDC systems export dates as `DD-MON-YYYY` with unknown parts written `UN`, `UNK` or `UNKN`
(`UN-JAN-2019`, `UNK-UNK-2018`); lab vendors send `YYYY-MM-DD`. SDTM keeps what was collected:
a partial date stays partial (truncated at the first unknown part, never imputed), and a time
is only attached to a complete date. An impossible date (31-FEB-2019, month FOO) is an input
error naming the file, row, column and value: the build stops rather than guess.
"""

from __future__ import annotations

import pandas as pd

from cdiscforge.errors import InputError, Located, raise_first, raising

MONTHS = {
    m: f"{i:02d}"
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
UNKNOWN = r"(?:UN|UNK|UNKN|NK|XX|XXXX|--|)"

# Named formats and the strptime spellings that mean the same thing.
DATE_FORMATS = {
    "DD-MON-YYYY": "DD-MON-YYYY",
    "%d-%b-%Y": "DD-MON-YYYY",
    "YYYY-MM-DD": "YYYY-MM-DD",
    "%Y-%m-%d": "YYYY-MM-DD",
    "ISO8601": "ISO8601",
}
TIME_FORMATS = {"HH:MM": "HH:MM", "%H:%M": "HH:MM", "HH:MM:SS": "HH:MM:SS", "%H:%M:%S": "HH:MM:SS"}

_PATTERNS = {
    "DD-MON-YYYY": (
        rf"^(?P<d>\d{{1,2}}|{UNKNOWN})-(?P<m>[A-Z]{{3}}|{UNKNOWN})-(?P<y>\d{{4}}|{UNKNOWN})$"
    ),
    "YYYY-MM-DD": rf"^(?P<y>\d{{4}}|{UNKNOWN})-(?P<m>\d{{2}}|{UNKNOWN})-(?P<d>\d{{2}}|{UNKNOWN})$",
    "ISO8601": r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2}))?)?$",
}
_TIME = r"^(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?$"


def to_iso8601(
    dates: pd.Series,
    fmt: str,
    where: Located,
    times: pd.Series | None = None,
    time_fmt: str = "HH:MM",
    time_where: Located | None = None,
) -> pd.Series:
    """Convert collected dates (and optional times) to ISO 8601 text, keeping partials partial.

    Cases, in the order applied:
    1. missing or blank date -> missing;
    2. text not in the declared format -> InputError;
    3. unknown year -> missing (nothing is known), unknown month -> `YYYY`,
       unknown day -> `YYYY-MM`;
    4. a complete date that does not exist (31-FEB) -> InputError;
    5. a time is attached (`YYYY-MM-DDThh:mm`) only to a complete date; a malformed time
       -> InputError; a time beside a partial date is dropped (the caller logs it).

    >>> to_iso8601(pd.Series(["05-JAN-2019", "UN-JAN-2019", "UNK-UNK-2018"]), "DD-MON-YYYY",
    ...            Located("f.csv", "D")).tolist()
    ['2019-01-05', '2019-01', '2018']

    Collected dates repeat (134 joint rows share a visit date), so each distinct date/time
    pair is parsed once and the result broadcast; a bad value is then located in the full
    column, so the error names its first row and how many rows share it.
    """
    frame = pd.DataFrame({"d": dates.astype("string")})
    if times is not None:
        frame["t"] = times.astype("string").to_numpy()
    distinct = frame.drop_duplicates(ignore_index=True)
    if len(distinct) == len(frame):
        return _to_iso8601(dates, fmt, where, times, time_fmt, time_where)
    try:
        with raising():  # positions in `distinct` are not rows: never collect from here
            parsed = _to_iso8601(
                distinct["d"], fmt, where, distinct["t"] if times is not None else None,
                time_fmt, time_where,
            )  # fmt: skip
    except InputError:
        # Locate the problem in the whole column (the slow path runs only on bad input).
        return _to_iso8601(dates, fmt, where, times, time_fmt, time_where)
    keys = list(frame.columns)
    looked_up = frame.merge(distinct.assign(iso=parsed.to_numpy()), on=keys, how="left")
    return pd.Series(looked_up["iso"].to_numpy(), index=dates.index, dtype="string")


def _to_iso8601(
    dates: pd.Series,
    fmt: str,
    where: Located,
    times: pd.Series | None,
    time_fmt: str,
    time_where: Located | None,
) -> pd.Series:
    kind = DATE_FORMATS.get(fmt)
    if kind is None:
        raise ValueError(f"unknown date format {fmt!r}; known: {sorted(DATE_FORMATS)}")
    text = dates.astype("string").str.strip().str.upper()
    text = text.mask(text == "")
    parts = text.str.extract(_PATTERNS[kind])
    bad = text.notna() & parts["y"].isna() & parts["m"].isna() & parts["d"].isna()
    # The regex alternatives accept an empty unknown part; a whole non-match leaves all NaN.
    unmatched = text.notna() & ~text.str.match(_PATTERNS[kind]).fillna(False).astype(bool)
    bad = bad | unmatched
    raise_first(bad, text, where, f"not a date in format {fmt}")

    year = parts["y"].where(parts["y"].str.fullmatch(r"\d{4}").fillna(False).astype(bool))
    month_raw = parts["m"]
    if kind == "DD-MON-YYYY":
        month = month_raw.map(MONTHS).astype("string")
        bad_month = (
            month_raw.notna()
            & month.isna()
            & ~month_raw.str.fullmatch(UNKNOWN).fillna(True).astype(bool)
        )
        raise_first(bad_month, text, where, "unknown month abbreviation")
    else:
        month = month_raw.where(month_raw.str.fullmatch(r"\d{2}").fillna(False).astype(bool))
    day = parts["d"].where(parts["d"].str.fullmatch(r"\d{1,2}").fillna(False).astype(bool))
    day = day.str.zfill(2)

    out = pd.Series(pd.NA, index=dates.index, dtype="string")
    has_y = year.notna()
    has_m = has_y & month.notna()
    has_d = has_m & day.notna()
    out = out.mask(has_y, year)
    out = out.mask(has_m, year + "-" + month)
    out = out.mask(has_d, year + "-" + month + "-" + day)

    full = out.where(has_d)
    parsed = pd.to_datetime(full, format="%Y-%m-%d", errors="coerce")
    raise_first(has_d & parsed.isna(), text, where, "impossible calendar date")
    month_num = pd.to_numeric(month, errors="coerce")
    raise_first(has_m & ~month_num.between(1, 12), text, where, "impossible month")
    # Reached with bad values only while errors are being collected: those become null.
    invalid = bad | (has_d & parsed.isna()) | (has_m & ~month_num.between(1, 12))
    if kind == "DD-MON-YYYY":
        invalid = invalid | bad_month
    out = out.mask(invalid.fillna(False).astype(bool))

    if times is not None:
        tw = time_where or where
        ttext = times.astype("string").str.strip()
        ttext = ttext.mask(ttext == "")
        tparts = ttext.str.extract(_TIME)
        tbad = ttext.notna() & tparts["h"].isna()
        hours = pd.to_numeric(tparts["h"], errors="coerce")
        minutes = pd.to_numeric(tparts["mi"], errors="coerce")
        seconds = pd.to_numeric(tparts["s"], errors="coerce")
        tbad = tbad | (hours > 23) | (minutes > 59) | (seconds > 59)
        raise_first(tbad.fillna(False).astype(bool), ttext, tw, f"not a time in format {time_fmt}")
        clock = tparts["h"].str.zfill(2) + ":" + tparts["mi"]
        clock = clock.mask(tparts["s"].notna(), clock + ":" + tparts["s"])
        clock = clock.mask(tbad.fillna(False).astype(bool))
        attach = has_d & clock.notna()
        out = out.mask(attach, out + "T" + clock)
    return out


def iso_to_datetime(iso: pd.Series) -> pd.Series:
    """Complete ISO 8601 dates/datetimes to datetime64 (partial -> NaT): for --DY and windows."""
    text = iso.astype("string")
    date_part = text.str.slice(0, 10).where(text.str.len() >= 10)
    return pd.to_datetime(date_part, format="%Y-%m-%d", errors="coerce")


def study_day(dtc: pd.Series, reference: pd.Series) -> pd.Series:
    """SDTM study day: date - reference + 1 on or after the reference, date - reference before.

    There is no day 0. Missing when either date is partial or missing.
    """
    d = iso_to_datetime(dtc)
    r = iso_to_datetime(reference)
    delta = (d - r).dt.days.astype("Float64")
    return delta.where(delta < 0, delta + 1)

"""What type a variable is, in define.xml's and Dataset-JSON's vocabularies.

One home for the decision, because define.xml and Dataset-JSON must agree on it: a reviewer who
sees DataType="float" in define.xml and "integer" in the JSON file has found a defect. The type
follows the metadata where it speaks (SAS temporal formats, significant digits) and the data
where it does not (ISO 8601 precision of --DTC values, whether numbers are whole), always
vectorised over the column.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

from cdiscforge.model import Variable
from cdiscforge.vectorise import used_categories
from cdiscforge.xpt import parse_format

TemporalKind = Literal["date", "datetime", "time"]

_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
_COMPLETE_DATE = re.compile(rf"^{_ISO_DATE}$")
_COMPLETE_DATETIME = re.compile(rf"^{_ISO_DATE}T{_ISO_TIME}$")
# Right-truncated ISO 8601 (SDTMIG 4.4.4): year, year-month, date, date with hour or minute.
_PARTIAL = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?)?)?$")
_MAX_DIGITS = 8


def temporal_kind(var: Variable) -> TemporalKind | None:
    """The kind of SAS date/time a numeric variable holds, from its display format.

    The format classification lives with the XPT writer (`cdiscforge.xpt.parse_format`), so
    XPT, define.xml and Dataset-JSON cannot disagree on which variables are dates.
    """
    if var.is_char or not var.format:
        return None
    try:
        fmt = parse_format(var.format)
    except ValueError:
        return None
    return fmt.kind if fmt is not None else None  # type: ignore[return-value]


def _is_iso_variable(var: Variable) -> bool:
    return var.is_char and (var.name.endswith("DTC") or var.name.endswith("DUR"))


def define_data_type(var: Variable, series: pd.Series) -> str:
    """Define-XML DataType of a variable given its values.

    In order: numeric SAS dates/times are "integer" (their def:DisplayFormat tells how to read
    them); other numerics are "float" when significant digits are declared or any value has a
    fraction, else "integer"; --DUR is "durationDatetime"; --DTC is "date" or "datetime" when
    every value is complete, "partialDate"/"partialDatetime" when some are right-truncated, and
    "text" when values are not ISO 8601 (validation reports those); other characters are "text".
    """
    if not var.is_char:
        if temporal_kind(var) is not None:
            return "integer"
        if var.significant_digits:
            return "float"
        return "integer" if _all_whole(series) else "float"
    if not _is_iso_variable(var):
        return "text"
    if var.name.endswith("DUR"):
        return "durationDatetime"
    values = _distinct_text(series)
    values = values[values != ""]
    if values.empty:
        return "partialDatetime"
    if values.str.fullmatch(_COMPLETE_DATE.pattern).all():
        return "date"
    if values.str.fullmatch(_COMPLETE_DATETIME.pattern).all():
        return "datetime"
    if values.str.fullmatch(_PARTIAL.pattern).all():
        return "partialDatetime" if values.str.contains("T", regex=False).any() else "partialDate"
    return "text"


def _distinct_text(series: pd.Series) -> pd.Series:
    """The non-missing values of a text column as Arrow strings, each distinct value once
    when the column is a categorical (the categories some row has: a filtered frame may keep
    categories no record has any more), else every value.

    Why: the data types ask whether ALL values (or ANY) match a pattern, which the distinct
    values answer alike; the built datasets are compact (cdiscforge.compact), so MKDTC at
    10,000 subjects is a few thousand categories over ~9M records."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return pd.Series(used_categories(series)).astype("string[pyarrow]")
    return series.dropna().astype("string[pyarrow]")


def _numeric(series: pd.Series) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values[np.isfinite(values)]


def _as_float(series: pd.Series) -> np.ndarray:
    """The column as float64 (NaN for missing or not a number); a numeric column without
    to_numeric (which leaves it as it is) and without a copy when it is float64 already."""
    if not pd.api.types.is_numeric_dtype(series.dtype):
        series = pd.to_numeric(series, errors="coerce")
    return series.to_numpy(dtype="float64", na_value=np.nan)


_BLOCK = 1 << 18  # values per block: the temporaries stay in cache


def _all_whole(series: pd.Series) -> bool:
    # Beyond 2**53 a double no longer holds every integer: call such a column float. An
    # integer has no sign of zero either: a -0.0 makes the column float, so Dataset-JSON
    # writes it as -0.0 and it reads back as written. Missing and non-finite values do not
    # count. Checked a block at a time, stopping at the first block with a fraction.
    values = _as_float(series)
    for start in range(0, len(values), _BLOCK):
        v = values[start : start + _BLOCK]
        whole = (v == np.round(v)) & (np.abs(v) <= 2.0**53)
        if not np.all(whole | ~np.isfinite(v)):
            return False
        if np.any(np.signbit(v) & (v == 0)):
            return False
    return True


def significant_digits(var: Variable, series: pd.Series) -> int | None:
    """Digits after the decimal point for a float variable: the spec's, else the data's.

    The data's is the fewest decimals (up to 8) that reproduce every value, found with one
    vectorised comparison per candidate, so 1.25 and 3.5 give 2.
    """
    if var.significant_digits is not None:
        return var.significant_digits
    values = _numeric(series)
    for digits in range(_MAX_DIGITS + 1):
        if np.allclose(np.round(values, digits), values, rtol=0, atol=10.0 ** -(digits + 6)):
            return digits
    return _MAX_DIGITS


def json_data_type(define_type: str, var: Variable) -> tuple[str, str | None]:
    """Dataset-JSON (dataType, targetDataType) for a variable of the given define DataType.

    Dataset-JSON 1.1 stores numeric SAS dates as ISO 8601 strings typed "date"/"datetime"/
    "time" with targetDataType "integer", so a reader can turn them back into SAS numbers.
    Partial ISO 8601 values and durations are not xs:date/xs:dateTime, hence "string". A
    float with significant digits declared in its spec is "decimal" (a string in the rows).
    """
    kind = temporal_kind(var)
    if kind is not None:
        return kind, "integer"
    if define_type == "float" and var.significant_digits is not None:
        # define.xml states SignificantDigits: the values are decimals, exchanged as decimal
        # strings (Dataset-JSON 1.1 "Decimal Variables") so no reader rounds them.
        return "decimal", "decimal"
    mapping = {"integer": "integer", "float": "float", "date": "date", "datetime": "datetime"}
    return mapping.get(define_type, "string"), None

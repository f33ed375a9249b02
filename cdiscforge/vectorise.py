"""Per-value Python work done once per distinct value, then broadcast.

Clinical data repeat themselves (a visit name, a unit, a subject's sequence number); running a
Python function per row on a 10-million-row form is what makes pipelines slow. These helpers
run it per distinct value and map the result back with a hash lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd


def map_distinct(
    series: pd.Series, fn: Callable[[Any], Any], dtype: str | None = None
) -> pd.Series:
    """`fn` applied to each distinct non-missing value of `series`; missing stays missing."""
    distinct = series.dropna().unique()
    mapping = {value: fn(value) for value in distinct}
    out = series.map(mapping)
    return out.astype(dtype) if dtype else out


def integers_as_text(series: pd.Series) -> pd.Series:
    """Numbers as text the way a reviewer writes them: 3.0 -> '3', 2.5 -> '2.5'."""
    return map_distinct(
        pd.to_numeric(series, errors="coerce"),
        lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)),
        "string",
    )

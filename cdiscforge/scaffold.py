"""`cdiscforge init`: a starting raw-form contract (raw_forms.yaml) from a folder of raw CSV
exports, so mapping a new study starts from its real headers instead of a blank file.

Each CSV file becomes a form; each column gets the type its values show (int, float, date,
time, datetime, else str) and, for dates and times, the format pattern every filled value
matches (tokens DD, MM, MON, YYYY, HH, MI, SS, AM; see docs/map-your-study.md). The guess
is a start: the file says which columns were ambiguous. An existing raw_forms.yaml is never
overwritten.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cdiscforge.errors import CdiscforgeError, InputError

_MON = r"(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
_UNK = r"(UN|UNK|--)"  # unknown day or month as EDC systems write them
_DD = rf"(0?[1-9]|[12]\d|3[01]|{_UNK})"
_MM = rf"(0?[1-9]|1[0-2]|{_UNK})"
_MONU = rf"({_MON}|{_UNK})"
# (type, format pattern, regex of a filled value), most specific first.
DATE_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("datetime", "iso8601", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"),
    ("date", "YYYY-MM-DD", r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"),
    ("date", "iso8601", r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?"),
    ("date", "DD-MON-YYYY", rf"{_DD}-{_MONU}-\d{{4}}"),
    ("date", "DD MON YYYY", rf"{_DD} {_MONU} \d{{4}}"),
    ("date", "DDMONYYYY", rf"(0[1-9]|[12]\d|3[01]|UN){_MON}\d{{4}}"),
    ("date", "MM/DD/YYYY", rf"{_MM}/{_DD}/\d{{4}}"),
    ("date", "DD/MM/YYYY", rf"{_DD}/{_MM}/\d{{4}}"),
    ("date", "MM-DD-YYYY", rf"{_MM}-{_DD}-\d{{4}}"),
    ("date", "DD.MM.YYYY", rf"{_DD}\.{_MM}\.\d{{4}}"),
    ("datetime", "MM/DD/YYYY HH:MI", rf"{_MM}/{_DD}/\d{{4}} ([01]?\d|2[0-3]):[0-5]\d"),
    ("datetime", "DD-MON-YYYY HH:MI", rf"{_DD}-{_MONU}-\d{{4}} ([01]?\d|2[0-3]):[0-5]\d"),
    ("time", "HH:MI:SS", r"([01]?\d|2[0-3]):[0-5]\d:[0-5]\d"),
    ("time", "HH:MI", r"([01]?\d|2[0-3]):[0-5]\d"),
    ("time", "HH:MI AM", r"(0?[1-9]|1[0-2]):[0-5]\d ?(AM|PM)"),
)
_INT = r"[-+]?\d+"
_FLOAT = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"


@dataclass(frozen=True)
class Column:
    """One raw column as guessed: its type, date/time format, and a note when ambiguous."""

    name: str
    type: str
    format: str | None = None
    note: str | None = None


def infer_column(name: str, values: pd.Series) -> Column:
    """The type and format of one column from its filled values (tested per distinct value:
    an export has few distinct dates per column compared with its rows)."""
    text = values.astype("string").str.strip()
    filled = pd.Series(text[text.notna() & (text != "")].unique(), dtype="string")
    if filled.empty:
        return Column(name, "str", note="every value is empty")
    upper = filled.str.upper()
    if bool(filled.str.fullmatch(_INT).all()):
        if bool(filled.str.fullmatch(r"[-+]?0\d+").any()):
            return Column(name, "str", note="digits with leading zeros: kept as text")
        return Column(name, "int")
    if bool(filled.str.fullmatch(_FLOAT).all()):
        return Column(name, "float")
    matches = [
        (kind, fmt) for kind, fmt, regex in DATE_PATTERNS if bool(upper.str.fullmatch(regex).all())
    ]
    if not matches:
        return Column(name, "str")
    kind, fmt = matches[0]
    note = None
    if fmt in ("MM/DD/YYYY", "DD/MM/YYYY"):
        parts = upper.str.extract(r"^(\w+)/(\w+)/")
        first = pd.to_numeric(parts[0], errors="coerce")
        second = pd.to_numeric(parts[1], errors="coerce")
        if not bool((first > 12).any()) and not bool((second > 12).any()):
            note = f"day and month both <= 12 in every value: {fmt} assumed, check it"
    return Column(name, kind, fmt, note)


def _form_name(path: Path) -> str:
    name = re.sub(r"[^0-9a-zA-Z]+", "_", path.stem).strip("_").lower()
    return name or "form"


def read_header_and_values(path: Path) -> pd.DataFrame:
    """A raw CSV as text (every value a string, empty cells empty), with a located error for
    a file that is not UTF-8 or not CSV."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path.name, f"not UTF-8 text (byte {exc.start})") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise InputError(path.name, f"not a readable CSV file: {exc}") from exc


def raw_forms_text(raw_dir: Path) -> str:
    """The raw_forms.yaml text for every CSV file of `raw_dir` (sorted by name)."""
    files = sorted(p for p in raw_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise CdiscforgeError(f"no .csv files in {raw_dir}")
    lines = [
        "# Raw-form contract drafted by `cdiscforge init` from the CSV headers and values in",
        f"# {raw_dir.name}/. Check every guess: types (str, int, float, date, time, datetime),",
        "# date formats (tokens DD, MM, MON, YYYY, YY, HH, MI, SS, AM: docs/map-your-study.md),",
        "# then add `required: true`, `values: [...]` for coded columns, `key: [...]` per form.",
        "forms:",
    ]
    names: dict[str, int] = {}
    for path in files:
        frame = read_header_and_values(path)
        name = _form_name(path)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}_{names[name]}"
        lines += [f"  {name}:", f"    file: {_quote(path.name)}",
                  f"    description: {_quote(f'{len(frame)} rows in the export')}",
                  "    columns:"]  # fmt: skip
        for col in frame.columns:
            column = infer_column(col, frame[col])
            entry = f"type: {column.type}"
            if column.format:
                entry += f", format: {_quote(column.format)}"
            # No example values: a raw export may hold patient data, a spec is shared.
            comment = f"  # {column.note}" if column.note else ""
            lines.append(f"      {_key(col)}: {{{entry}}}{comment}")
    return "\n".join(lines) + "\n"


def _key(text: str) -> str:
    """A column name as a YAML key: bare when it is a plain identifier."""
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else _quote(text)


def _quote(text: str) -> str:
    """A YAML double-quoted scalar (safe for any header or value)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def init_spec(raw_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir/raw_forms.yaml` from `raw_dir`'s CSV files; refuse (exit 2) when it
    exists: cdiscforge never overwrites a file it did not write."""
    if not raw_dir.is_dir():
        raise CdiscforgeError(f"raw export folder not found: {raw_dir}")
    target = out_dir / "raw_forms.yaml"
    if target.exists():
        raise CdiscforgeError(
            f"refusing to overwrite {target}: it exists (cdiscforge never overwrites a file it "
            "did not write); move it away or give another --out"
        )
    text = raw_forms_text(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with target.open("x", encoding="utf-8") as fh:  # "x": never over a file made meanwhile
        fh.write(text)
    return target

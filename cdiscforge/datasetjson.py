"""CDISC Dataset-JSON 1.1: writer, reader and schema check.

Dataset-JSON is the exchange format FDA is moving to beside XPT. The writer streams: it writes
the metadata, then the rows in chunks of `chunk_rows`, each chunk converted column-wise
(vectorised) and encoded with one `json.dumps` call, so a large LB never exists as one JSON
string in memory. Output is deterministic: keys in the order of the standard's examples,
compact separators, floats in Python's shortest round-trip form.

Conventions (the same as `cdiscforge.xpt`, so XPT and JSON read back to the same frame):

* Missing values are written as null; on reading, null and "" in a character column are both
  missing (SAS has no distinct empty string).
* Numeric SAS dates/datetimes/times (Num variables with a date format) are written as ISO 8601
  strings with dataType date/datetime/time and targetDataType "integer", as Dataset-JSON 1.1
  specifies, and read back as datetime64 / timedelta64 columns.
* Other numerics are read back as float64 (what every XPT reader returns).
* OIDs (itemGroupOID, itemOID, studyOID, metaDataVersionOID) are the ones define.xml uses.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd

from cdiscforge import __version__
from cdiscforge.define.datatypes import define_data_type, json_data_type, temporal_kind
from cdiscforge.define.oids import item_group_oid, item_oid, mdv_oid, oid_part, study_oid
from cdiscforge.errors import CdiscforgeError, InputError
from cdiscforge.model import Dataset, StudyInfo, Variable, char_max_bytes

DATASET_JSON_VERSION = "1.1.0"
DEFAULT_CHUNK_ROWS = 10_000
SAS_EPOCH = pd.Timestamp("1960-01-01")
_ISO_FORMATS = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%dT%H:%M:%S"}


def _columns(dataset: Dataset) -> list[dict[str, Any]]:
    keys = {k: i for i, k in enumerate(dataset.keys, start=1)}
    columns = []
    for var in dataset.variables:
        series = dataset.frame[var.name]
        data_type, target = json_data_type(define_data_type(var, series), var)
        column: dict[str, Any] = {
            "itemOID": item_oid(dataset.name, var.name),
            "name": var.name,
            "label": var.label,
            "dataType": data_type,
        }
        if target:
            column["targetDataType"] = target
        if var.is_char:
            column["length"] = var.length or max(1, char_max_bytes(series))
        if var.format and not var.is_char:
            column["displayFormat"] = var.format
        if var.name in keys:
            column["keySequence"] = keys[var.name]
        columns.append(column)
    return columns


def _with_nulls(values: np.ndarray, missing: np.ndarray) -> list[Any]:
    out = np.asarray(values, dtype=object)
    out[missing] = None
    return out.tolist()


def _temporal_as_iso(series: pd.Series, kind: str) -> list[Any]:
    if kind == "time":
        seconds = pd.to_timedelta(series).dt.total_seconds()
        missing = seconds.isna().to_numpy()
        secs = seconds.fillna(0).to_numpy().astype(np.int64)
        text = (
            pd.Series(secs // 3600).astype(str).str.zfill(2)
            + ":"
            + pd.Series(secs // 60 % 60).astype(str).str.zfill(2)
            + ":"
            + pd.Series(secs % 60).astype(str).str.zfill(2)
        )
        return _with_nulls(text.to_numpy(dtype=object), missing)
    if pd.api.types.is_datetime64_any_dtype(series):
        moments = series
    else:
        unit = "D" if kind == "date" else "s"
        moments = SAS_EPOCH + pd.to_timedelta(pd.to_numeric(series), unit=unit)
    text = moments.dt.strftime(_ISO_FORMATS[kind])
    return _with_nulls(text.to_numpy(dtype=object), moments.isna().to_numpy())


def _column_values(series: pd.Series, var: Variable, data_type: str) -> list[Any]:
    """JSON-ready values of one column (vectorised; None for missing)."""
    kind = temporal_kind(var)
    if kind is not None:
        return _temporal_as_iso(series, kind)
    if var.is_char:
        text = series.astype("string")
        missing = text.isna().to_numpy()
        return _with_nulls(text.fillna("").to_numpy(dtype=object), missing)
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        raise CdiscforgeError(
            f"Dataset-JSON: variable {var.name} holds dates but has no SAS date format "
            f"(format {var.format!r}); give it one (e.g. DATE9.) in its spec"
        )
    numbers = pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan)
    missing = ~np.isfinite(numbers)
    if data_type == "integer":
        whole = np.where(missing, 0, numbers).astype(np.int64).tolist()
        return _with_nulls(np.array(whole, dtype=object), missing)
    return _with_nulls(np.where(missing, 0.0, numbers).tolist(), missing)


def write_dataset_json(
    dataset: Dataset,
    path: Path,
    *,
    study: StudyInfo,
    created: str,
    define_path: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Path:
    """Write one dataset as Dataset-JSON 1.1, streaming rows in chunks.

    `created` is the build's fixed creation time (also used as dbLastModifiedDateTime: the
    datasets are snapshots of that build). `define_path` becomes metaDataRef.
    """
    path = Path(path)
    columns = _columns(dataset)
    header: dict[str, Any] = {
        "datasetJSONCreationDateTime": created,
        "datasetJSONVersion": DATASET_JSON_VERSION,
        "fileOID": f"{oid_part(study.studyid)}.{oid_part(dataset.name.upper())}",
        "dbLastModifiedDateTime": created,
        "originator": study.sponsor or "cdiscforge",
        "sourceSystem": {"name": "cdiscforge", "version": __version__},
        "studyOID": study_oid(study.studyid),
        "metaDataVersionOID": mdv_oid(study.studyid, dataset.standard),
    }
    if define_path:
        header["metaDataRef"] = define_path
    header.update(
        {
            "itemGroupOID": item_group_oid(dataset.name),
            "records": len(dataset),
            "name": dataset.name.upper(),
            "label": dataset.label,
            "columns": columns,
        }
    )
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(head[:-1] + ',"rows":[')
            frame = dataset.frame
            step = max(1, chunk_rows)
            for start in range(0, len(frame), step):
                chunk = frame.iloc[start : start + step]
                values = [
                    _column_values(chunk[var.name], var, col["dataType"])
                    for var, col in zip(dataset.variables, columns, strict=True)
                ]
                rows = list(zip(*values, strict=True))  # json writes tuples as arrays
                text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
                if start:
                    fh.write(",")
                fh.write(text[1:-1])
            fh.write("]}\n")
    except BaseException:
        # No half-written file is left behind for a later step to pick up.
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def _variable(column: dict[str, Any]) -> Variable:
    data_type = column.get("dataType", "string")
    target = column.get("targetDataType")
    numeric = target is not None or data_type in ("integer", "decimal", "float", "double")
    numeric = numeric or data_type == "boolean"
    return Variable(
        name=column["name"],
        label=column.get("label", ""),
        type="Num" if numeric else "Char",
        length=column.get("length") if not numeric else 8,
        origin="Not Available",
        format=column.get("displayFormat"),
    )


def _frame_column(values: list[Any], column: dict[str, Any], var: Variable) -> pd.Series:
    raw = pd.Series(values, dtype=object)
    data_type = column.get("dataType", "string")
    if column.get("targetDataType") == "integer" and data_type in ("date", "datetime"):
        return pd.to_datetime(raw, format="ISO8601")
    if column.get("targetDataType") == "integer" and data_type == "time":
        return pd.to_timedelta(raw)
    if var.is_char:
        text = raw.astype("str")
        return text.mask(raw.isna() | (text == ""))
    return pd.to_numeric(raw, errors="raise").astype("float64")


def read_dataset_json(path: Path) -> Dataset:
    """Read a Dataset-JSON 1.1 file into a `Dataset` (see the module docstring for types)."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read as Dataset-JSON: {exc}") from exc
    for key in ("name", "columns"):
        if key not in doc:
            raise InputError(path, f"not Dataset-JSON: no {key!r}")
    columns = doc["columns"]
    rows = doc.get("rows", [])
    width = len(columns)
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise InputError(
            path, f"has {len(rows[bad])} values where columns declare {width}", row=bad + 1
        )
    variables = [_variable(c) for c in columns]
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    data = {}
    for column, var, values in zip(columns, variables, by_column, strict=True):
        try:
            data[var.name] = _frame_column(list(values), column, var)
        except (ValueError, TypeError) as exc:
            raise InputError(
                path,
                f"values do not fit dataType {column.get('dataType')}: {exc}",
                column=var.name,
            ) from exc
    keyed = sorted((c["keySequence"], c["name"]) for c in columns if "keySequence" in c)
    name = str(doc["name"])
    return Dataset(
        name=name,
        label=str(doc.get("label", "")),
        frame=pd.DataFrame(data, index=pd.RangeIndex(len(rows))),
        variables=variables,
        keys=[n for _, n in keyed],
        standard="ADaMIG 1.3" if name.upper().startswith("AD") else "SDTMIG 3.4",
    )


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema_file = resources.files("cdiscforge") / "data" / "schemas" / "dataset-json-1.1"
    schema = json.loads((schema_file / "dataset.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_dataset_json(path: Path) -> list[str]:
    """Problems of a Dataset-JSON file (see `check_dataset_json`); empty if none."""
    return check_dataset_json(path)[0]


def check_dataset_json(path: Path) -> tuple[list[str], int]:
    """Problems of a Dataset-JSON file against the 1.1 schema and its own counts, and its
    number of rows (read once, so the build's cross-check parses each file once).

    The JSON schema is applied to the document with its rows set aside, because for rows the
    1.1 schema asks only that each is an array (jsonschema spent over a minute per million
    rows proving that); the rows are then checked here, more strictly than the schema:
    each is an array of one scalar (string, number, boolean or null) per column, and
    `records` equals their number.
    """
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{path}: not readable JSON: {exc}"], 0
    rows = doc.get("rows", []) if isinstance(doc, dict) else []
    head = {**doc, "rows": []} if isinstance(doc, dict) and "rows" in doc else doc
    problems = []
    for err in sorted(_validator().iter_errors(head), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        problems.append(f"{path}: {where}: {err.message}")
    if not isinstance(rows, list):
        return [*problems, f"{path}: rows: is not an array"], 0
    if isinstance(doc, dict) and doc.get("records") != len(rows):
        problems.append(f"{path}: records is {doc.get('records')} but there are {len(rows)} rows")
    width = len(doc.get("columns", [])) if isinstance(doc, dict) else 0
    scalar = (str, int, float, bool, type(None))
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            problems.append(f"{path}: rows/{i} is not an array of {width} values")
            break
        if not all(isinstance(v, scalar) for v in row):
            problems.append(f"{path}: rows/{i} holds a value that is not a scalar")
            break
    return problems, len(rows)


def require_valid_dataset_json(path: Path) -> None:
    """Raise `CdiscforgeError` listing the schema problems of a written file, if any."""
    problems = validate_dataset_json(path)
    if problems:
        raise CdiscforgeError("Dataset-JSON schema check failed:\n  " + "\n  ".join(problems))

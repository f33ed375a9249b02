"""The spec author's reference, generated from the one registry of rules and generators.

Everything here is read from the registry (cdiscforge.rules RULES and GENERATORS): each
entry's purpose (its Params docstring, else its function's), each parameter's type, default
and `Field(description=...)`, and its example file `cdiscforge/rules/examples/<name>.yaml`.
`cdiscforge rules` prints it on the terminal, `cdiscforge rules --markdown` writes
docs/rules.md, and tests/test_reference.py runs every example through the real rule code
and fails on any gap (`gaps()`), so the reference cannot drift from the code.

Example file format (vocab contract section 8): `spec` (a variable entry, or
`{generator: NAME, params: {...}}`), `expect` (the values, or for a generator
`{COL: [...]}`), and optional `purpose`, `raw`, `raw_columns`, `before`, `datasets`,
`forms`, `tables`, `study`, `expect_log`, `expect_error` (see `run_example`).
"""

from __future__ import annotations

import importlib
import json
import math
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pandas as pd
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cdiscforge.errors import CdiscforgeError
from cdiscforge.rules import GENERATORS, RULES, Condition, Params

EXAMPLES = Path(__file__).resolve().parent / "rules" / "examples"
EXAMPLE_KEYS = {
    "purpose", "spec", "raw", "raw_columns", "before", "datasets", "forms", "tables", "study",
    "expect", "expect_log", "expect_error", "dataset",
}  # fmt: skip
_BASE_DOC = (Params.__doc__ or "").strip()


def _load_vocabulary() -> None:
    """Each stage package registers its own rules when imported (as the spec loader does)."""
    from cdiscforge.spec import STAGES

    for stage in STAGES:
        importlib.import_module(f"cdiscforge.{stage}")


@dataclass(frozen=True)
class Field:
    """One parameter as a spec author writes it."""

    name: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Entry:
    """A rule or generator of the registry, as documented."""

    kind: Literal["rule", "generator"]
    name: str
    purpose: str
    doc: str
    params: type[Params]
    origin: str
    final: bool

    @property
    def example_file(self) -> Path:
        return EXAMPLES / f"{self.name}.yaml"

    def example(self) -> dict[str, Any] | None:
        if not self.example_file.is_file():
            return None
        from cdiscforge.spec import load_yaml

        data = load_yaml(self.example_file)
        return data if isinstance(data, dict) else None

    def fields(self) -> list[Field]:
        return model_fields(self.params)


def entries() -> list[Entry]:
    """Every rule, then every generator, by name."""
    _load_vocabulary()
    out = [
        Entry("rule", n, _purpose(r.params, r.doc), r.doc, r.params, r.origin, r.final)
        for n, r in sorted(RULES.items())
    ]
    out += [
        Entry("generator", n, _purpose(g.params, g.doc), g.doc, g.params, "Derived", False)
        for n, g in sorted(GENERATORS.items())
    ]
    return out


def _purpose(params: type[Params], doc: str) -> str:
    """The Params docstring when the class has its own, else the function docstring's first
    paragraph; one paragraph of plain text."""
    own = (params.__doc__ or "").strip()
    text = own if own and own != _BASE_DOC else doc
    first = text.split("\n\n")[0]
    return " ".join(first.split())


def model_fields(model: type[BaseModel], prefix: str = "") -> list[Field]:
    """A model's fields as written in a spec (aliases, `in` for `in_`), nested parameter
    models flattened (`cases[].when`) unless they are a rule's own model."""
    out: list[Field] = []
    rule_models = {r.params: n for n, r in RULES.items()}
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name).rstrip("_")
        default = "required" if info.is_required() else _default(info.get_default())
        nested = _nested(info.annotation)
        if nested is not None and nested not in rule_models:
            suffix = "[]" if get_origin(info.annotation) is list else ""
            out.append(Field(key, _type(info.annotation), default, info.description or ""))
            out += model_fields(nested, f"{key}{suffix}.")
            continue
        out.append(Field(key, _type(info.annotation), default, info.description or ""))
    return out


def _nested(annotation: Any) -> type[Params] | None:
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, Params):
            return arg
    return None


def _default(value: Any) -> str:
    if value is PydanticUndefined or value is None:
        return "null"
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return json.dumps(value, ensure_ascii=False)


def _type(annotation: Any) -> str:
    """A parameter type in a spec author's words (`text`, `list of text`, `one of: a, b`)."""
    rule_models = {r.params: n for n, r in RULES.items()}
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {_type(args[0])} -> {_type(args[1])}" if args else "mapping"
    if isinstance(annotation, type):
        if issubclass(annotation, Condition):
            return "condition"
        if annotation in rule_models:
            return f"`{rule_models[annotation]}` parameters"
        if issubclass(annotation, Params):
            return "mapping"
        return {"str": "text", "int": "integer", "float": "number", "bool": "true/false"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


# --- gaps: what the test enforces -------------------------------------------------------------


def gaps() -> list[str]:
    """Every missing piece of the reference, one line each: a rule or generator without a
    purpose, a parameter without a description, a missing example file, an example file
    naming no registered rule, an example with unknown keys."""
    out: list[str] = []
    names = set()
    for entry in entries():
        names.add(entry.name)
        what = f"{entry.kind} {entry.name!r}"
        if not entry.purpose:
            out.append(f"{what}: no purpose (a docstring on {entry.params.__name__})")
        for f in entry.fields():
            if not f.description:
                out.append(
                    f"{what}: parameter {f.name!r} has no Field(description=...) "
                    f"({entry.params.__module__}.{entry.params.__name__})"
                )
        if not entry.example_file.is_file():
            out.append(f"{what}: no example file cdiscforge/rules/examples/{entry.name}.yaml")
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.stem not in names:
            out.append(f"example {path.name}: names no registered rule or generator")
    return out


# --- running an example -----------------------------------------------------------------------


def run_example(entry: Entry, example: dict[str, Any]) -> list[str]:
    """Run `example` through the real rule (or generator) code and return what differs from
    its `expect` (empty: it holds).

    A throw-away study folder is written (study.yaml with `study:` keys merged in, a
    raw-form contract declaring `raw` as form `example` and each of `forms`, the `tables`),
    loaded by the real spec loader; the spec entry is checked as the loader checks a
    dataset's variable; raw exports are read through the real raw reader; `before` holds
    the target variables computed earlier (for a `final` rule: the stacked record set);
    `datasets` are the built datasets the rule reads. Output values are compared after the
    variable's type is applied, as the engine does."""
    unknown = sorted(set(example) - EXAMPLE_KEYS)
    if unknown:
        return [f"unknown key(s) {unknown}; allowed: {sorted(EXAMPLE_KEYS)}"]
    if "spec" not in example or ("expect" not in example and "expect_error" not in example):
        return ["needs `spec` and `expect` (or `expect_error`)"]
    with tempfile.TemporaryDirectory(prefix="cdiscforge-example-") as tmp:
        try:
            return _run(entry, example, Path(tmp))
        except CdiscforgeError as exc:
            if "expect_error" in example and str(example["expect_error"]) in str(exc):
                return []
            return [f"raised {type(exc).__name__}: {exc}"]


def _frame(columns: dict[str, list[Any]] | None) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in (columns or {}).items()})


def _write_csv(path: Path, columns: dict[str, list[Any]]) -> None:
    frame = _frame(columns).map(lambda v: "" if v is None else str(v))
    frame.to_csv(path, index=False)


def _run(entry: Entry, ex: dict[str, Any], tmp: Path) -> list[str]:
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.engine import RawStore, _typed
    from cdiscforge.model import Variable
    from cdiscforge.rules import RuleContext
    from cdiscforge.spec import _validated, load_study

    spec_dir, raw_dir = tmp / "spec", tmp / "raw"
    spec_dir.mkdir()
    raw_dir.mkdir()
    forms: dict[str, Any] = {}
    sources = dict(ex.get("forms") or {})
    if ex.get("raw") is not None:
        sources["example"] = {"columns": ex.get("raw_columns") or {}, "rows": ex["raw"]}
    for name, form in sources.items():
        rows = form.get("rows") or {}
        declared = form.get("columns") or {}
        columns = {c: declared.get(c) or {"type": "str"} for c in rows}
        forms[name] = {"file": f"{name}.csv", "columns": columns}
        _write_csv(raw_dir / f"{name}.csv", rows)
    tables = ex.get("tables") or {}
    study: dict[str, Any] = {
        "study": {"studyid": "STUDY01", "name": "Example", "description": "Example study",
                  "protocol": "EX-01"},
        "tables": {n: {"file": "tables.yaml", "path": n} for n in tables},
        "sdtm": [],
        "adam": [],
    }  # fmt: skip
    for key, value in (ex.get("study") or {}).items():
        if isinstance(value, dict) and isinstance(study.get(key), dict):
            study[key] = {**study[key], **value}
        else:
            study[key] = value
    dump = {"default_flow_style": False, "sort_keys": False, "allow_unicode": True}
    (spec_dir / "study.yaml").write_text(yaml.safe_dump(study, **dump))
    (spec_dir / "raw_forms.yaml").write_text(yaml.safe_dump({"forms": forms}, **dump))
    (spec_dir / "tables.yaml").write_text(yaml.safe_dump(tables, **dump))
    loaded = load_study(spec_dir)
    log = BuildLog()
    store = RawStore(loaded, raw_dir, log)
    domains = {
        name: types.SimpleNamespace(name=name, frame=_frame(cols).convert_dtypes())
        for name, cols in (ex.get("datasets") or {}).items()
    }
    dataset = str(ex.get("dataset", "XX"))
    file = entry.example_file
    spec = ex["spec"]
    if entry.kind == "generator":
        if not isinstance(spec, dict) or spec.get("generator") != entry.name:
            return [f"spec must be {{generator: {entry.name}, params: ...}}"]
        params = _validated(entry.params, spec.get("params") or {}, file, "spec.params")
        ctx = RuleContext(loaded, dataset, "", pd.DataFrame(), None, domains, log, str(file),
                          store)  # fmt: skip
        got = GENERATORS[entry.name].fn(ctx, params).reset_index(drop=True)
        return _compare_frame(got, ex.get("expect") or {}) + _check_log(ex, log)
    if not isinstance(spec, dict) or spec.get("rule") != entry.name or "name" not in spec:
        return [f"spec must be a variable entry {{name: ..., rule: {entry.name}, ...}}"]
    rdef, params = loaded._rule(spec, file, "spec")
    source = store.source("example") if ex.get("raw") is not None else None
    before = _frame(ex.get("before")).convert_dtypes()
    index = source.frame.index if source is not None else before.index
    out = pd.DataFrame(index=index)
    for col in before.columns:
        out[col] = before[col].to_numpy()
    ctx = RuleContext(loaded, dataset, str(spec["name"]), out, source, domains, log, str(file),
                      store)  # fmt: skip
    meta = Variable(name=str(spec["name"]), label="x", type=_var_type(spec))
    if rdef.final and source is not None:
        return ["a final rule runs on the stacked record set: give `before`, not `raw`"]
    got = _typed(rdef.fn(ctx, params), meta, ctx)
    return _compare(list(got), ex.get("expect"), "") + _check_log(ex, log)


def _var_type(spec: dict[str, Any]) -> str:
    """The variable's type as the loader gives it: the spec's `type`, else the SDTMIG or
    ADaMIG type of a variable of that name (AESTDY: Num), else Char."""
    from cdiscforge import standards

    if spec.get("type") in ("Char", "Num"):
        return str(spec["type"])
    name = str(spec["name"])
    for table in (standards.sdtmig_variables(), standards.adamig_variables()):
        types_ = table.loc[table["name"] == name, "type"]
        if not types_.empty:
            return "Num" if str(types_.iloc[0]).lower().startswith("num") else "Char"
    return "Char"


def _check_log(ex: dict[str, Any], log: Any) -> list[str]:
    want = ex.get("expect_log")
    if want is None:
        return []
    messages = [e.message for e in log.events]
    if any(str(want) in m for m in messages):
        return []
    return [f"no build-log message contains {want!r}; messages: {messages}"]


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, pd.Timestamp) and not pd.isna(got):
        got = got.date().isoformat() if got == got.normalize() else got.isoformat()
    if got is None or (not isinstance(got, (list, dict)) and pd.isna(got)):
        return want is None
    if want is None:
        return False
    if isinstance(want, bool) or isinstance(got, bool):
        return str(got) == str(want)
    if isinstance(want, (int, float)):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return str(got) == str(want)


def _compare(got: list[Any], want: Any, what: str) -> list[str]:
    if not isinstance(want, list):
        return [f"expect{what} must be a list of values, one per record"]
    if len(got) != len(want) or not all(_same(g, w) for g, w in zip(got, want, strict=False)):
        shown = [_shown(g) for g in got]
        return [f"expect{what}: wanted {want}, got {shown}"]
    return []


def _compare_frame(got: pd.DataFrame, want: Any) -> list[str]:
    if not isinstance(want, dict) or not want:
        return ["expect must be a mapping of column -> values for a generator"]
    out: list[str] = []
    for col, values in want.items():
        if col not in got.columns:
            out.append(f"expect: no column {col!r} in the generated records {list(got.columns)}")
            continue
        out += _compare([_plain(v) for v in got[col]], values, f".{col}")
    return out


def _shown(value: Any) -> Any:
    """A value as the example file would write it (for the failure message)."""
    if not isinstance(value, (str, list, dict)) and pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    value = _plain(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# --- rendering ----------------------------------------------------------------------------------


def _example_yaml(example: dict[str, Any]) -> str:
    """The example's spec snippet as a spec author writes it."""
    spec = example.get("spec")
    shown = [spec] if "rule" in (spec or {}) else {"records": [spec]}
    text = yaml.safe_dump(shown, sort_keys=False,
                          default_flow_style=None, allow_unicode=True, width=88)  # fmt: skip
    return text.rstrip()


def _io_table(example: dict[str, Any]) -> list[str]:
    """Input columns and expected output of a rule example, as a markdown table."""
    inputs: dict[str, list[Any]] = {}
    for col, values in (example.get("raw") or {}).items():
        inputs[f"raw {col}"] = values
    for col, values in (example.get("before") or {}).items():
        inputs[col] = values
    want = example.get("expect")
    name = str((example.get("spec") or {}).get("name", "result"))
    if isinstance(want, dict):
        columns, header = want, list(want)
    else:
        columns = {**inputs, f"→ {name}": want or []}
        header = list(columns)
    rows = max((len(v) for v in columns.values() if isinstance(v, list)), default=0)
    if not header or not rows:
        return []
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i in range(rows):
        cells = []
        for col in header:
            values = columns[col] if isinstance(columns[col], list) else []
            value = values[i] if i < len(values) else ""
            cells.append("*null*" if value is None else str(value).replace("|", "\\|"))
        out.append("| " + " | ".join(cells) + " |")
    return out


def markdown() -> str:
    """docs/rules.md: every rule and generator with purpose, parameters and its example."""
    lines = [
        "# Spec rule reference",
        "",
        "<!-- Generated from the rule registry by `cdiscforge rules --markdown > docs/rules.md`;",
        "     do not edit: tests/test_reference.py fails when this file is stale. -->",
        "",
        "Each target variable of a dataset spec (`specs/<study>/sdtm/*.yaml`, `adam/*.yaml`)",
        "names one **rule** with its parameters; a record block (`records:`) reads a raw form",
        "(`source:`), a spec table (`table:`), a built dataset (`dataset:`) or the records a",
        "**generator** makes (`generator:` with `params:`). Every parameter is checked when",
        "the spec loads: an unknown key, a wrong type, a missing required parameter, or a",
        "form, table, dataset or column that does not exist is a spec error naming the file",
        "and key path (exit 2), all of them in one run.",
        "",
        "References: `from:` names a raw column of the block's source; any other reference",
        "names a target variable computed earlier in the same spec (or a helper variable",
        "starting with `_`), or a raw column when written `raw.NAME`. A **condition**",
        "(`when:`, `where:`, `filter:`) is `{col: REF, eq|ne|in|not_in|lt|le|gt|ge|missing: ...}`",
        "or `{all: [...]}`, `{any: [...]}`, `{not: {...}}`. To start a new study see",
        "[map-your-study.md](map-your-study.md).",
        "",
        "Each example below is a file `cdiscforge/rules/examples/<name>.yaml` that the test",
        "suite runs through the rule: the input columns and the output shown are checked.",
        "",
        "## Contents",
        "",
    ]
    all_entries = entries()
    for kind in ("rule", "generator"):
        names = [f"[`{e.name}`](#{e.name})" for e in all_entries if e.kind == kind]
        lines.append(f"- {kind.capitalize()}s: " + ", ".join(names))
    lines.append("")
    for kind, title in (("rule", "Rules"), ("generator", "Record generators")):
        lines += [f"## {title}", ""]
        for entry in (e for e in all_entries if e.kind == kind):
            lines += _entry_markdown(entry)
    return "\n".join(lines).rstrip() + "\n"


def _entry_markdown(entry: Entry) -> list[str]:
    lines = [f"### {entry.name}", ""]
    example = entry.example() or {}
    lines += [str(example.get("purpose") or entry.purpose), ""]
    doc = " ".join(entry.doc.split("\n\n", 1)[1].split()) if "\n\n" in entry.doc else ""
    if doc and entry.purpose not in doc:
        lines += [doc, ""]
    if entry.kind == "rule":
        runs = "the stacked record set (after every block)" if entry.final else "each record block"
        lines += [f"Default origin: {entry.origin}. Runs on {runs}.", ""]
    fields = entry.fields()
    if fields:
        lines += ["| parameter | type | default | description |", "|---|---|---|---|"]
        for f in fields:
            cells = [f"`{f.name}`", f.type, f.default, f.description]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    else:
        lines += ["No parameters.", ""]
    if example:
        lines += ["Example:", "", "```yaml", _example_yaml(example), "```", ""]
        given = {k: example[k] for k in ("raw_columns", "study", "datasets", "forms", "tables")
                 if example.get(k)}  # fmt: skip
        if given:
            text = yaml.safe_dump(given, sort_keys=False, default_flow_style=None, width=88)
            lines += ["given (what the rule reads besides the record's columns):", "", "```yaml",
                      text.rstrip(), "```", ""]  # fmt: skip
        table = _io_table(example)
        if table:
            lines += [*table, ""]
    return lines


def _sentence(text: str, width: int = 96) -> str:
    """The first sentence, cut to `width` characters (a terminal line)."""
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def text(name: str | None = None) -> str:
    """Terminal text: every entry with its purpose, or one entry in full."""
    all_entries = entries()
    if name is None:
        out = []
        for kind, title in (("rule", "Rules"), ("generator", "Record generators")):
            out.append(f"{title}:")
            for e in (e for e in all_entries if e.kind == kind):
                out.append(f"  {e.name:<20} {_sentence(e.purpose)}")
            out.append("")
        out.append("`cdiscforge rules NAME` shows one in full; docs/rules.md has them all.")
        return "\n".join(out)
    entry = next((e for e in all_entries if e.name == name), None)
    if entry is None:
        known = ", ".join(e.name for e in all_entries)
        raise CdiscforgeError(f"unknown rule or generator {name!r}; known: {known}")
    return "\n".join(_entry_markdown(entry)).rstrip()

"""Sponsor codelists as study data: the part of the spec loader that reads them.

A study declares the lists CDISC CT does not have (a causality scale, its arms, visits) or its
extensions of an extensible CDISC list as data, in any of:

* `specs/<study>/codelists.yaml`: `codelists: [{id, name, extends, data_type, terms: [{code,
  decode, order, nci}]}]`;
* `specs/<study>/codelists/<ID>.csv`: header `code,decode,order,nci` (only `code` required),
  an optional first line `# name: ...; extends: C66729; data_type: text`;
* study.yaml `codelists:` / `sponsor_codelists:` (the older form: `{ID: {name, terms: [...]}}`,
  terms as texts or as the mappings above).

Every problem is a SpecError naming the file and where (an entry, a term, a CSV row and
column, the value), all of them collected in one load. The lists become
`model.SponsorCodelist`s that `ct.Terminology` looks up beside the CDISC packages.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cdiscforge import ct
from cdiscforge.errors import SpecError
from cdiscforge.model import SponsorCodelist

ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
CSV_COLUMNS = ("code", "decode", "order", "nci")
HEADER_KEYS = ("name", "extends", "data_type")


class SponsorTerm(BaseModel):
    """One term of a sponsor codelist."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str | int | float = Field(description="The submission value (CodedValue).")
    decode: str | None = Field(None, description="The decode shown in define.xml (optional).")
    order: int | None = Field(None, description="Display order (default: as listed).")
    nci: str | None = Field(None, description="NCI C-code of the term, if it has one.")


class SponsorCodelistEntry(BaseModel):
    """A sponsor codelist: its id (what `codelist:` in a spec names), name, terms, and the
    extensible CDISC codelist it extends, if any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Codelist id used by `codelist:` in specs and in its OID.")
    name: str = Field(description="Codelist name shown in define.xml.")
    extends: str | None = Field(
        None, description="NCI code (or short name) of the extensible CDISC codelist extended."
    )
    data_type: Literal["text", "integer", "float"] = Field(
        "text", description="define.xml DataType of the codes."
    )
    terms: list[SponsorTerm | str] = Field(description="The terms, in display order.")


class CodelistsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    codelists: list[SponsorCodelistEntry]


class SponsorCodelistErrors(Exception):
    """The problems of a study's sponsor codelists (`error`, one or a SpecErrors), with the
    lists that loaded fine (`loaded`) and the ids of the broken ones (`broken`), so the rest
    of the spec is still checked against the good lists and a reference to a broken one is
    not reported a second time as unknown."""

    def __init__(self, error: SpecError, loaded: list[SponsorCodelist], broken: set[str]) -> None:
        super().__init__(str(error))
        self.error, self.loaded, self.broken = error, loaded, broken


def load(
    folder: Path, study_file: Path, legacy: dict[str, dict[str, Any]]
) -> list[SponsorCodelist]:
    """Every sponsor codelist of a study folder, checked; all problems raised together as
    SponsorCodelistErrors."""
    from cdiscforge.errors import SpecErrors
    from cdiscforge.spec import _validated, load_yaml

    errors: list[SpecError] = []
    entries: list[tuple[Path, str, SponsorCodelistEntry]] = []
    broken: set[str] = set()

    def collect(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except SpecErrors as exc:
            errors.extend(exc.errors)
        except SpecError as exc:
            errors.append(exc)
        return None

    for key, body in legacy.items():
        where = f"codelists.{key}"
        data = {"id": key, **body} if isinstance(body, dict) else body
        entry = collect(_validated, SponsorCodelistEntry, data, study_file, where)
        if entry is not None:
            entries.append((study_file, where, entry))
        else:
            broken.add(str(key))
    yaml_file = folder / "codelists.yaml"
    if yaml_file.is_file():
        data = collect(load_yaml, yaml_file)
        if data is not None:
            parsed = collect(_validated, CodelistsFile, data, yaml_file, "")
            items = data.get("codelists") if isinstance(data, dict) else None
            if parsed is None and isinstance(items, list):
                broken |= {str(i["id"]) for i in items if isinstance(i, dict) and "id" in i}
            if parsed is not None:
                entries += [
                    (yaml_file, f"codelists[{i}]({e.id})", e)
                    for i, e in enumerate(parsed.codelists)
                ]
    csv_dir = folder / "codelists"
    if csv_dir.is_dir():
        for path in sorted(csv_dir.glob("*.csv")):
            entry = collect(_read_csv, path)
            if entry is not None:
                entries.append((path, "", entry))
            else:
                broken.add(path.stem)
    out: list[SponsorCodelist] = []
    seen: dict[str, str] = {}
    for path, where, entry in entries:
        result = collect(_checked, path, where, entry, seen)
        if result is not None:
            out.append(result)
        else:
            broken.add(entry.id)
    if errors:
        raise SponsorCodelistErrors(SpecErrors.combine(errors), out, broken)
    return out


def _read_csv(path: Path) -> SponsorCodelistEntry:
    """`codelists/<ID>.csv`: header code,decode,order,nci; optional `# name: ..` first line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"not UTF-8 text ({exc.reason}); save the file as UTF-8") from exc
    lines = text.splitlines()
    header: dict[str, str] = {}
    if lines and lines[0].lstrip().startswith("#"):
        for part in lines[0].lstrip()[1:].split(";"):
            if not part.strip():
                continue
            key, sep, value = part.partition(":")
            key = key.strip()
            if not sep or key not in HEADER_KEYS:
                raise SpecError(
                    path,
                    "line 1",
                    f"comment line: {part.strip()!r} is not `key: value` with a key of "
                    f"{', '.join(HEADER_KEYS)}",
                )
            header[key] = value.strip()
        lines = lines[1:]
    first = 2 if header else 1  # file line of the CSV header
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "code" not in columns:
        raise SpecError(path, f"line {first}", f"header must name `code` (columns {CSV_COLUMNS})")
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        raise SpecError(
            path, f"line {first}", f"unknown column(s) {unknown}; columns: {', '.join(CSV_COLUMNS)}"
        )
    errors: list[SpecError] = []
    terms: list[dict[str, Any]] = []
    for n, row in enumerate(reader, start=first + 1):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(row.values()):
            continue
        term: dict[str, Any] = {"code": row.get("code", "")}
        if not term["code"]:
            errors.append(SpecError(path, f"line {n}, column code", "empty code"))
            continue
        for col in ("decode", "nci"):
            if row.get(col):
                term[col] = row[col]
        if row.get("order"):
            try:
                term["order"] = int(row["order"])
            except ValueError:
                errors.append(
                    SpecError(
                        path, f"line {n}, column order", f"not a whole number: {row['order']!r}"
                    )
                )
        terms.append(term)
    if errors:
        from cdiscforge.errors import SpecErrors

        raise SpecErrors.combine(errors)
    from cdiscforge.spec import _validated

    data = {"id": path.stem, "name": header.get("name") or path.stem, "terms": terms}
    data |= {k: header[k] for k in ("extends", "data_type") if header.get(k)}
    return _validated(SponsorCodelistEntry, data, path, "")


def _checked(
    path: Path, where: str, entry: SponsorCodelistEntry, seen: dict[str, str]
) -> SponsorCodelist:
    """The checks across one list: id, extends, duplicate and typed codes, order."""
    at = f"{where}." if where else ""
    if not ID_RE.match(entry.id):
        raise SpecError(
            path, f"{at}id", f"{entry.id!r}: a codelist id is letters, digits, _ . - (letter first)"
        )
    if entry.id in seen:
        raise SpecError(
            path, f"{at}id", f"codelist {entry.id!r} is declared twice ({seen[entry.id]})"
        )
    seen[entry.id] = f"{path.name}{' ' + where if where else ''}"
    default = ct.default_terminology()
    if default.cdisc(entry.id) is not None:
        raise SpecError(
            path,
            f"{at}id",
            f"{entry.id!r} is a CDISC codelist; give the sponsor list its own id "
            f"(with `extends: {default.cdisc(entry.id).code}` to extend it)",  # type: ignore[union-attr]
        )
    extends = None
    if entry.extends:
        base = default.cdisc(entry.extends)
        if base is None:
            raise SpecError(
                path, f"{at}extends", f"{entry.extends!r} is not a CDISC codelist (NCI code)"
            )
        if not base.extensible:
            raise SpecError(
                path,
                f"{at}extends",
                f"{entry.extends} ({base.short_name}) is not extensible: its terms cannot be "
                "extended (use a sponsor codelist of its own, without `extends`)",
            )
        extends = base.code
    if not entry.terms:
        raise SpecError(path, f"{at}terms", "a codelist needs at least one term")
    terms = [t if isinstance(t, SponsorTerm) else SponsorTerm(code=t) for t in entry.terms]
    codes = [str(t.code) for t in terms]
    problems: list[SpecError] = []
    for i, code in enumerate(codes):
        if codes.index(code) != i:
            problems.append(SpecError(path, f"{at}terms[{i}].code", f"{code!r} is listed twice"))
        if entry.data_type != "text":
            try:
                number = float(code)
                if entry.data_type == "integer" and not number.is_integer():
                    raise ValueError
            except ValueError:
                problems.append(
                    SpecError(path, f"{at}terms[{i}].code", f"{code!r} is not {entry.data_type}")
                )
    if problems:
        from cdiscforge.errors import SpecErrors

        raise SpecErrors.combine(problems)
    ranked = sorted(
        range(len(terms)),
        key=lambda i: (terms[i].order is None, terms[i].order or 0, i),
    )
    return SponsorCodelist(
        key=entry.id,
        name=entry.name,
        terms=tuple(codes[i] for i in ranked),
        decodes=tuple(terms[i].decode for i in ranked),
        nci=tuple(terms[i].nci for i in ranked),
        extends=extends,
        data_type=entry.data_type,
        file=str(path),
    )

"""Cross-checks between define.xml and the files it describes.

The XSD says define.xml is well formed; it cannot say define.xml tells the truth about the
data. These checks read the written files (not the in-memory model, which is what could have
drifted) and report, one line per problem: an XPT without an ItemGroupDef or the reverse,
variables missing on either side, a define Length or DataType that disagrees with the XPT,
a CodeListRef to no CodeList or data values the codelist does not list, and a Dataset-JSON
file whose row count differs from its XPT.

They run in memory that does not grow with the data (a 10,000-subject study has ~12 million
SDTM records): each XPT's variables come from its header, only the columns that have a
CodeList are cut out of the fixed-width observations, a chunk at a time, keeping their distinct
byte strings, decoded once each (`scan_xpt_distinct`), and Dataset-JSON files are streamed
(`check_dataset_json`), their rows parsed in large blocks at C speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from lxml import etree

from cdiscforge.model import Variable
from cdiscforge.xpt import DEFAULT_CHUNK_ROWS, scan_xpt_distinct

NS = {
    "odm": "http://www.cdisc.org/ns/odm/v1.3",
    "def": "http://www.cdisc.org/ns/def/v2.1",
    "xlink": "http://www.w3.org/1999/xlink",
}
_NUMERIC_TYPES = {"integer", "float", "double", "hexFloat", "base64Float"}
_MAX_VALUES_SHOWN = 5
# Stands for the values of an ExternalCodeList, which define.xml does not enumerate.
EXTERNAL: set[str] = set()


@dataclass
class _DefItem:
    name: str
    data_type: str
    length: int | None
    codelist_oid: str | None


@dataclass
class _DefGroup:
    name: str
    href: str
    items: list[_DefItem] = field(default_factory=list)


def _read_define(path: Path) -> tuple[list[_DefGroup], dict[str, set[str]]]:
    doc = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    mdv = doc.find(".//odm:MetaDataVersion", NS)
    if mdv is None:
        return [], {}
    item_defs = {el.get("OID"): el for el in mdv.findall("odm:ItemDef", NS)}
    codelists: dict[str, set[str]] = {}
    for cl in mdv.findall("odm:CodeList", NS):
        if cl.find("odm:ExternalCodeList", NS) is not None:
            # An external dictionary (MedDRA, ISO 3166): its terms are not listed, so data
            # values cannot be checked against it here.
            codelists[cl.get("OID", "")] = EXTERNAL
            continue
        values = [
            el.get("CodedValue", "")
            for el in cl
            if etree.QName(el).localname in ("CodeListItem", "EnumeratedItem")
        ]
        codelists[cl.get("OID", "")] = set(values)
    groups = []
    for ig in mdv.findall("odm:ItemGroupDef", NS):
        name = ig.get("Name", "")
        leaf = ig.find("def:leaf", NS)
        href = leaf.get(f"{{{NS['xlink']}}}href", "") if leaf is not None else ""
        group = _DefGroup(name=name, href=href or f"{name.lower()}.xpt")
        for ref in ig.findall("odm:ItemRef", NS):
            item = item_defs.get(ref.get("ItemOID"))
            if item is None:
                group.items.append(_DefItem(f"<missing {ref.get('ItemOID')}>", "", None, None))
                continue
            length = item.get("Length")
            cl_ref = item.find("odm:CodeListRef", NS)
            group.items.append(
                _DefItem(
                    name=item.get("Name", ""),
                    data_type=item.get("DataType", ""),
                    length=int(length) if length else None,
                    codelist_oid=cl_ref.get("CodeListOID") if cl_ref is not None else None,
                )
            )
        groups.append(group)
    return groups, codelists


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name.lower(): p for p in sorted(folder.iterdir()) if p.suffix.lower() == suffix}


def _data_values(series: pd.Series) -> set[str]:
    values = series.dropna()
    if pd.api.types.is_numeric_dtype(values):
        return {str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values.unique()}
    text = values.astype("string")
    return set(text[text != ""].unique().tolist())


def _scan_xpt(path: Path, names: list[str], chunk_rows: int) -> tuple[int, dict[str, set[str]]]:
    """Row count of an XPT and the distinct values (as `_data_values` spells them) of `names`,
    as `read_xpt` reads them (text UTF-8 or else Windows-1252): `scan_xpt_distinct` reads the
    fixed-width observations `chunk_rows` at a time and decodes only the distinct values of
    those columns, nothing else."""
    rows, distinct = scan_xpt_distinct(path, names, chunk_rows=chunk_rows)
    return rows, {name: _data_values(distinct[name]) for name in names}


def _checked_codelists(
    group: _DefGroup, xpt_vars: dict[str, Variable], codelists: dict[str, set[str]]
) -> list[str]:
    """Variables whose values `_check_dataset` compares with a codelist: the only data read."""
    names = [
        i.name
        for i in group.items
        if i.codelist_oid in codelists
        and codelists[i.codelist_oid] is not EXTERNAL
        and i.name in xpt_vars
    ]
    return list(dict.fromkeys(names))  # an ItemRef repeated in define.xml is read once


def _check_dataset(
    group: _DefGroup,
    xpt_vars: dict[str, Variable],
    values: dict[str, set[str]],
    codelists: dict[str, set[str]],
) -> list[str]:
    """Problems of one XPT (its `xpt_vars`, and the distinct `values` of the variables
    `_checked_codelists` names) against its ItemGroupDef."""
    problems = []
    where = f"{group.name} ({group.href})"
    def_names = [i.name for i in group.items]
    for missing in [n for n in def_names if n not in xpt_vars]:
        problems.append(f"{where}: define.xml has variable {missing}, the XPT does not")
    for extra in [n for n in xpt_vars if n not in def_names]:
        problems.append(f"{where}: the XPT has variable {extra}, define.xml does not")
    for item in group.items:
        var = xpt_vars.get(item.name)
        if var is None:
            continue
        def_numeric = item.data_type in _NUMERIC_TYPES
        if def_numeric == var.is_char:
            problems.append(
                f"{where}: {item.name} is DataType {item.data_type} in define.xml "
                f"but {var.type} in the XPT"
            )
        if item.length is not None and var.length is not None and item.length != var.length:
            problems.append(
                f"{where}: {item.name} has Length {item.length} in define.xml "
                f"but {var.length} in the XPT"
            )
        if item.codelist_oid:
            if item.codelist_oid not in codelists:
                problems.append(
                    f"{where}: {item.name} refers to CodeList {item.codelist_oid}, "
                    "which define.xml does not contain"
                )
                continue
            if codelists[item.codelist_oid] is EXTERNAL:
                continue
            unlisted = sorted(values[item.name] - codelists[item.codelist_oid])
            if unlisted:
                shown = ", ".join(repr(v) for v in unlisted[:_MAX_VALUES_SHOWN])
                more = f" and {len(unlisted) - _MAX_VALUES_SHOWN} more" if len(unlisted) > 5 else ""
                problems.append(
                    f"{where}: {item.name} has values not in CodeList {item.codelist_oid}: "
                    f"{shown}{more}"
                )
    return problems


def crosscheck(
    define_path: Path,
    xpt_dir: Path,
    json_dir: Path | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    encodings: tuple[str, ...] = ("json",),
) -> list[str]:
    """Problems found comparing define.xml with the XPT (and Dataset-JSON) files; empty if none.

    Each Dataset-JSON file (one per dataset in each of `encodings`: json, ndjson, dsjc) is
    also checked against its schema (`check_dataset_json`). XPT values are read
    `chunk_rows` observations at a time (see the module docstring)."""
    check = CrossCheck(define_path, xpt_dir, json_dir, chunk_rows=chunk_rows, encodings=encodings)
    problems = check.undescribed_xpts()
    for group in check.groups:
        problems.extend(check.group(group))
    return problems + check.undescribed_jsons()


class CrossCheck:
    """`crosscheck` a part at a time, so that a build can check each dataset's files on
    whichever core is free (`cdiscforge.concurrent.share_jobs`): define.xml read once, then
    the files no ItemGroupDef describes, each ItemGroupDef's files, the Dataset-JSON files
    none describes. Those parts, in that order and each group in define.xml's order, are
    `crosscheck`'s problems. A part looks only at the files it names (the folders are listed
    when it runs), so one group can be checked while other datasets' files are being written.
    """

    def __init__(
        self,
        define_path: Path,
        xpt_dir: Path,
        json_dir: Path | None = None,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        encodings: tuple[str, ...] = ("json",),
    ) -> None:
        self.define_path, self.xpt_dir = Path(define_path), Path(xpt_dir)
        self.json_dir = Path(json_dir) if json_dir is not None else None
        self.chunk_rows, self.encodings = chunk_rows, encodings
        self.groups, self.codelists = _read_define(self.define_path)

    def _xpts(self) -> dict[str, Path]:
        return _files(self.xpt_dir, ".xpt")

    def _jsons(self) -> dict[str, Path]:
        from cdiscforge.datasetjson import SUFFIXES

        jsons: dict[str, Path] = {}
        if self.json_dir is not None:
            for encoding in self.encodings:
                jsons.update(_files(self.json_dir, SUFFIXES[encoding]))
        return jsons

    def undescribed_xpts(self) -> list[str]:
        """An XPT file no ItemGroupDef describes, one problem each."""
        xpts = self._xpts()
        described = {g.href.lower() for g in self.groups}
        return [
            f"{xpts[name]}: no ItemGroupDef in {self.define_path.name} describes it"
            for name in sorted(set(xpts) - described)
        ]

    def group(self, group: _DefGroup) -> list[str]:
        """Problems of one ItemGroupDef's XPT (and Dataset-JSON files)."""
        from cdiscforge.datasetjson import SUFFIXES, check_dataset_json
        from cdiscforge.xpt import read_xpt_variables

        json_dir = self.json_dir
        xpt_path = self._xpts().get(group.href.lower())
        if xpt_path is None:
            return [
                f"{self.define_path.name}: ItemGroupDef {group.name} points to {group.href}, "
                f"which is not in {self.xpt_dir}"
            ]
        xpt_vars = {v.name: v for v in read_xpt_variables(xpt_path)}
        names = _checked_codelists(group, xpt_vars, self.codelists)
        n_rows, values = 0, {}
        if names or json_dir is not None:  # the row count is only compared with the JSON
            n_rows, values = _scan_xpt(xpt_path, names, self.chunk_rows)
        problems = _check_dataset(group, xpt_vars, values, self.codelists)
        jsons = self._jsons()
        for encoding in self.encodings if json_dir is not None else ():
            json_name = f"{Path(group.href).stem.lower()}{SUFFIXES[encoding]}"
            json_path = jsons.get(json_name)
            if json_path is None:
                problems.append(f"{group.name}: no Dataset-JSON file {json_name} in {json_dir}")
                continue
            json_problems, rows = check_dataset_json(json_path)
            problems.extend(json_problems)
            if rows != n_rows:
                problems.append(
                    f"{group.name}: {json_path.name} has {rows} rows, {xpt_path.name} has {n_rows}"
                )
        return problems

    def undescribed_jsons(self) -> list[str]:
        """A Dataset-JSON file no ItemGroupDef describes, one problem each."""
        if self.json_dir is None:
            return []
        jsons = self._jsons()
        stems = {Path(g.href).stem.lower() for g in self.groups}
        return [
            f"{jsons[name]}: no ItemGroupDef in {self.define_path.name} describes it"
            for name in sorted(jsons)
            if Path(name).stem not in stems
        ]


def missing_documents(define_path: Path) -> list[str]:
    """Documents define.xml links to (def:leaf outside the datasets: aCRF, reviewer's guides)
    that are not beside it. The sponsor supplies them, so the build warns, never fails."""
    doc = etree.parse(str(define_path), etree.XMLParser(resolve_entities=False, no_network=True))
    mdv = doc.find(".//odm:MetaDataVersion", NS)
    if mdv is None:
        return []
    out = []
    for leaf in mdv.findall("def:leaf", NS):
        href = leaf.get(f"{{{NS['xlink']}}}href", "")
        if href and not (define_path.parent / href).exists():
            title = leaf.findtext("def:title", default="", namespaces=NS)
            out.append(f"{define_path.name} links {title or leaf.get('ID')} at {href}, not present")
    return out

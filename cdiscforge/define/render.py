"""Build define.xml 2.1 from the dataset model and render it with Jinja2.

Two steps, kept apart so each can be read alone: `build_define_model` turns Datasets +
StudyInfo + CT into plain records in define.xml's vocabulary (OIDs, ItemDefs, CodeLists...),
making every decision there; the Jinja2 template only lays those records out (autoescape on,
so a label with `&`, `<` or quotes stays valid XML). Everything is ordered by dataset and
variable order, and the creation time comes from the build, so the same input gives the same
bytes.

Codelist policy: each CodeList lists the terms that occur in the data (for every codelist,
extensible or not, large or small), in CT order, then sponsor extensions sorted; this is what
the FDA Technical Conformance Guide asks reviewers to see. A codelist none of whose terms
occur (a variable null in this build) lists all its CT terms, as the schema needs one item.
A code variable whose decode partner is in the same dataset (LBTESTCD/LBTEST, PARAMCD/PARAM,
ARMCD/ARM) gets CodeListItems with the decodes taken from the data; others get
EnumeratedItems.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import jinja2
import numpy as np
import pandas as pd

from cdiscforge import __version__, ct
from cdiscforge.define.datatypes import define_data_type, significant_digits
from cdiscforge.define.oids import item_group_oid, item_oid, mdv_oid, oid_part, study_oid
from cdiscforge.define.roles import sdtm_role
from cdiscforge.define.schema import STYLESHEET_NAME, schema_errors, stylesheet_path
from cdiscforge.errors import CdiscforgeError
from cdiscforge.model import ORIGINS, Dataset, Dictionary, StudyInfo, Variable, char_max_bytes
from cdiscforge.standards import ADAMIG_VERSION, SDTMIG_VERSION, sdtmig_datasets
from cdiscforge.vectorise import first_rows, used_categories, used_codes

Standard = Literal["SDTM", "ADaM"]

# Result variables that get value-level metadata when a dataset sets `value_level_by`:
# SDTM findings by --TESTCD (suffixes after the domain prefix), BDS by PARAMCD, SUPP-- by QNAM.
VLM_SDTM_SUFFIXES = ("ORRES", "STRESC", "STRESN")
VLM_ADAM_VARIABLES = ("AVAL", "AVALC")
VLM_SUPP_VARIABLES = ("QVAL",)
# Decode partners that do not follow the xxCD -> xx naming.
_DECODE_PARTNERS = {"QNAM": "QLABEL"}
# SUPP-- QORIG spellings that are not Define-XML 2.1 origin types.
_QORIG_ALIASES = {"CRF": "Collected", "EDT": "Collected", "ASSIGNED": "Assigned"}

_CLASS_ALIASES = {
    "SPECIAL PURPOSE": "SPECIAL PURPOSE",
    "ADSL": "SUBJECT LEVEL ANALYSIS DATASET",
    "BDS": "BASIC DATA STRUCTURE",
    "OCCDS": "OCCURRENCE DATA STRUCTURE",
    "ADAM OTHER": "ADAM OTHER",
    "OTHER": "ADAM OTHER",
}
ALLOWED_CLASSES = frozenset(
    {
        "SPECIAL PURPOSE",
        "TRIAL DESIGN",
        "FINDINGS",
        "EVENTS",
        "INTERVENTIONS",
        "FINDINGS ABOUT",
        "RELATIONSHIP",
        "STUDY REFERENCE",
        "SUBJECT LEVEL ANALYSIS DATASET",
        "BASIC DATA STRUCTURE",
        "OCCURRENCE DATA STRUCTURE",
        "ADAM OTHER",
    }
)
_SUBJECT_LEVEL = {"SUBJECT LEVEL ANALYSIS DATASET"}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
ACRF_LEAF = "LF.acrf"


@dataclass
class StandardDef:
    oid: str
    name: str
    type: str
    version: str
    publishing_set: str | None = None


@dataclass
class ItemRefDef:
    item_oid: str
    order: int
    mandatory: str
    key_sequence: int | None = None
    method_oid: str | None = None
    role: str | None = None
    where_clause_oid: str | None = None


@dataclass
class ItemDefDef:
    oid: str
    name: str
    data_type: str
    label: str
    length: int | None = None
    significant_digits: int | None = None
    display_format: str | None = None
    codelist_oid: str | None = None
    origin_type: str | None = None
    origin_source: str | None = None
    origin_description: str | None = None
    crf_pages: str | None = None
    comment_oid: str | None = None
    value_list_oid: str | None = None


@dataclass
class ItemGroupDefDef:
    oid: str
    name: str
    domain: str | None
    repeating: str
    reference: str
    purpose: str
    structure: str
    klass: str
    label: str
    leaf_id: str
    href: str
    comment_oid: str | None
    refs: list[ItemRefDef]
    subclass: str | None = None


@dataclass
class CodeListItemDef:
    value: str
    decode: str | None
    nci_code: str | None
    extended: bool


@dataclass
class ExternalCodeListDef:
    dictionary: str
    version: str
    href: str | None = None
    ref: str | None = None


@dataclass
class CodeListDef:
    oid: str
    name: str
    data_type: str
    standard_oid: str | None
    nci_code: str | None
    items: list[CodeListItemDef]
    external: ExternalCodeListDef | None = None

    @property
    def enumerated(self) -> bool:
        return any(item.decode is None for item in self.items)


@dataclass
class WhereClauseDef:
    oid: str
    item_oid: str
    value: str


@dataclass
class ValueListDef:
    oid: str
    refs: list[ItemRefDef]


@dataclass
class MethodDef:
    oid: str
    name: str
    description: str
    type: str = "Computation"


@dataclass
class CommentDef:
    oid: str
    text: str


@dataclass
class LeafDef:
    """A document define.xml links to (the sponsor supplies the file at `href`)."""

    id: str
    href: str
    title: str


@dataclass
class DefineModel:
    """Everything define.xml states, already decided and ordered."""

    file_oid: str
    created: str
    originator: str
    source_system_version: str
    study_oid: str
    study: StudyInfo
    mdv_oid: str
    mdv_name: str
    mdv_description: str
    standards: list[StandardDef]
    ig_standard_oid: str
    item_groups: list[ItemGroupDefDef] = field(default_factory=list)
    item_defs: list[ItemDefDef] = field(default_factory=list)
    value_lists: list[ValueListDef] = field(default_factory=list)
    where_clauses: list[WhereClauseDef] = field(default_factory=list)
    codelists: list[CodeListDef] = field(default_factory=list)
    methods: list[MethodDef] = field(default_factory=list)
    comments: list[CommentDef] = field(default_factory=list)
    uses_acrf: bool = False
    acrf_leaf: str = ""
    acrf: list[LeafDef] = field(default_factory=list)
    supplemental: list[LeafDef] = field(default_factory=list)

    @property
    def leaves(self) -> list[LeafDef]:
        return self.acrf + self.supplemental


def _sdtmig_entry(dataset: Dataset, column: str) -> str:
    """A dataset's class or structure from the SDTMIG table: by name, then SUPPQUAL for SUPP--,
    then the parent domain of a split dataset (LBUR -> LB, QSCO -> QS)."""
    table = sdtmig_datasets()
    name = dataset.name.upper()
    candidates = [
        name,
        "SUPPQUAL" if name.startswith("SUPP") else "",
        dataset.domain or "",
        name[:2],
    ]
    for candidate in candidates:
        hit = table.loc[table["name"] == candidate, column] if candidate else table.iloc[:0, 0]
        if not hit.empty and str(hit.iloc[0]):
            return str(hit.iloc[0])
    return ""


def normalise_class(dataset: Dataset, standard: Standard) -> str:
    """def:Class Name for a dataset, from its class or (SDTM) the SDTMIG table."""
    raw = dataset.klass
    if not raw and standard == "SDTM":
        raw = _sdtmig_entry(dataset, "klass")
    if not raw and standard == "ADaM" and dataset.name == "ADSL":
        raw = "ADSL"
    key = " ".join(raw.upper().replace("-", " ").split())
    klass = _CLASS_ALIASES.get(key, key)
    if klass not in ALLOWED_CLASSES:
        raise CdiscforgeError(
            f"dataset {dataset.name}: class {dataset.klass!r} is not a Define-XML 2.1 class; "
            f"use one of {', '.join(sorted(ALLOWED_CLASSES))}"
        )
    return klass


def _structure(dataset: Dataset, standard: Standard) -> str:
    if dataset.structure:
        return dataset.structure
    if standard == "SDTM":
        found = _sdtmig_entry(dataset, "structure")
        if found:
            return found
    raise CdiscforgeError(
        f"dataset {dataset.name}: no structure (def:Structure is required by Define-XML 2.1); "
        "set `structure` in its spec, e.g. 'One record per subject'"
    )


def _is_repeating(dataset: Dataset, klass: str) -> bool:
    if klass in _SUBJECT_LEVEL or dataset.name == "DM":
        return False
    return not (dataset.keys and set(dataset.keys) <= {"STUDYID", "USUBJID"})


def _length(var: Variable, series: pd.Series, data_type: str) -> int | None:
    """Length as written to XPT: the fitted character length, 8 bytes for numerics.

    ISO 8601 date types carry no Length, as in CDISC's own Define-XML 2.1 example.
    """
    if not var.is_char:
        return var.length or 8
    if data_type == "text":
        return var.length or max(1, char_max_bytes(series))
    return None


def _decode_partner(dataset: Dataset, var: Variable) -> str | None:
    """The decode variable paired with a code variable in the same dataset, if any."""
    if var.name in _DECODE_PARTNERS and _DECODE_PARTNERS[var.name] in dataset.variable_names:
        return _DECODE_PARTNERS[var.name]
    if var.name.endswith("CD"):
        partner = var.name[:-2]
        if partner in dataset.variable_names and partner != var.name:
            return partner
    return None


def _distinct(series: pd.Series) -> pd.Series:
    """The first record of each distinct value (original dtype and values, index kept).

    Everything define.xml derives from a column's data depends on the set of its values alone
    (DataType, Length, SignificantDigits, the codelist terms used), so it is computed on the
    distinct values: a few hundred where a findings domain has 900,000 records. Floats are
    told apart by their bits, so -0.0 stays beside 0.0 (it makes a column float); columns of
    other kinds are returned whole.
    """
    if len(series) < 2:
        return series
    if pd.api.types.is_float_dtype(series.dtype):
        bits = series.to_numpy(dtype="float64", na_value=np.nan).view(np.int64)
        return series[~pd.Series(bits).duplicated().to_numpy()]
    if _text_categorical(series):
        # drop_duplicates' rows, from the categorical's own codes
        return series.iloc[first_rows(series.array.codes, len(series.dtype.categories))]
    if isinstance(series.dtype, pd.StringDtype):
        return series.drop_duplicates()
    return series


def _text_categorical(series: pd.Series) -> bool:
    """Whether a column is a categorical of text (what `cdiscforge.compact` makes)."""
    return isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
        series.dtype.categories
    )


def _value_codes(series: pd.Series) -> np.ndarray:
    """Codes of the distinct values in the sense of `_distinct` (missing a value of its own)."""
    if pd.api.types.is_float_dtype(series.dtype):
        bits = series.to_numpy(dtype="float64", na_value=np.nan).view(np.int64)
        return pd.factorize(bits)[0]
    if _text_categorical(series):  # its codes already tell the values apart (-1 one more)
        return series.array.codes
    return pd.factorize(series, use_na_sentinel=False)[0]


def _distinct_by_group(groups: np.ndarray, count: int, series: pd.Series) -> list[pd.Series]:
    """For each group code 0..count-1 (-1: no group), the group's records of `series` reduced
    to one per distinct value (see `_distinct`), in record order."""
    if (
        pd.api.types.is_float_dtype(series.dtype)
        or isinstance(series.dtype, pd.StringDtype)
        or (
            isinstance(series.dtype, pd.CategoricalDtype)
            and pd.api.types.is_string_dtype(series.cat.categories)
        )
    ):
        values = _value_codes(series).astype(np.int64) + 1  # (a categorical's -1 is 0)
        pair = groups.astype(np.int64) * (int(values.max(initial=0)) + 1) + values
        rows = np.flatnonzero((groups >= 0) & ~pd.Series(pair).duplicated().to_numpy())
    else:
        rows = np.flatnonzero(groups >= 0)
    rows = rows[np.argsort(groups[rows], kind="stable")]
    bounds = np.searchsorted(groups[rows], np.arange(count + 1))
    return [series.iloc[rows[bounds[k] : bounds[k + 1]]] for k in range(count)]


def _split_codes(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """A value-level split column's codes (-1 missing) and the text of each code's value.

    A compacted column gives its own codes, renumbered over the categories some record has
    (a code is a group of records); otherwise the column's text is factorized. Which number
    a value gets does not matter to the callers, only which records share it."""
    if _text_categorical(series):
        categories = series.dtype.categories
        used = np.append(used_codes(series.array.codes, len(categories)), False)
        renumber = np.cumsum(used) - 1
        renumber[-1] = -1  # missing stays missing
        codes = renumber[series.array.codes]
        return codes, pd.Series(categories[used[:-1]]).astype("string").tolist()
    codes, uniques = pd.factorize(series.astype("string"))
    return codes, uniques.tolist()


_MAX_PAIR_CODES = 1 << 22  # combined codes of two categoricals counted in one array


def _distinct_pairs(frame: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """`frame[[first, second]].drop_duplicates()`: the same rows; for two compacted columns
    found from their codes combined (one pass, no hashing of the records' values)."""
    a, b = frame[first], frame[second]
    if _text_categorical(a) and _text_categorical(b):
        width = len(b.dtype.categories) + 1
        count = (len(a.dtype.categories) + 1) * width
        if count <= _MAX_PAIR_CODES:
            key = (a.array.codes.astype(np.int64) + 1) * width + b.array.codes + 1
            return frame[[first, second]].iloc[first_rows(key, count)]
    return frame[[first, second]].drop_duplicates()


def _decodes(dataset: Dataset, code: str, partner: str) -> dict[str, str]:
    # the first (sorted) decode of each code depends on the distinct pairs alone
    pairs = _distinct_pairs(dataset.frame, code, partner).dropna()
    pairs = pairs[pairs[partner].astype("string") != ""]
    pairs = pairs.sort_values([code, partner], kind="stable").drop_duplicates(code)
    return dict(zip(pairs[code].astype(str), pairs[partner].astype(str), strict=True))


def _used_values(series: pd.Series) -> list[str]:
    if _text_categorical(series):  # the categories some record has make the set
        text = pd.Series(used_categories(series)).astype("string")
        return sorted(set(text[text != ""].tolist()))
    values = series.dropna()
    if values.empty:
        return []
    if pd.api.types.is_numeric_dtype(values):
        nums = values.to_numpy(dtype="float64")
        text = [str(int(v)) if float(v).is_integer() else repr(float(v)) for v in np.unique(nums)]
        return text
    text = values.drop_duplicates().astype("string")  # the distinct values make the set
    return sorted(set(text[text != ""].tolist()))


@dataclass
class _CodeListUse:
    name: str
    numeric: bool
    whole: bool = True
    values: set[str] = field(default_factory=set)
    decodes: dict[str, str] = field(default_factory=dict)
    has_partner: bool = True


class _Builder:
    def __init__(self, study: StudyInfo, standard: Standard, created: str) -> None:
        self.study = study
        # The study's one CT lookup (its CT releases and sponsor codelists).
        self.terms = ct.Terminology(
            {"sdtm": study.sdtm_ct_version, "adam": study.adam_ct_version}, study.codelists
        )
        self.standard = standard
        self.created = created
        self.codelist_uses: dict[str, _CodeListUse] = {}
        self.dictionaries_used: dict[str, tuple[Dictionary, str]] = {}
        self.model = self._skeleton()

    def _skeleton(self) -> DefineModel:
        study = self.study
        sid = oid_part(study.studyid)
        if self.standard == "SDTM":
            ig = StandardDef("STD.SDTMIG", "SDTMIG", "IG", SDTMIG_VERSION)
        else:
            ig = StandardDef("STD.ADaMIG", "ADaMIG", "IG", ADAMIG_VERSION)
        stage = "sdtm" if self.standard == "SDTM" else "adam"
        docs = [d for d in study.documents if stage in d.stages]
        acrf = [LeafDef(f"LF.{oid_part(d.key)}", d.href, d.title) for d in docs
                if d.kind == "AnnotatedCRF"]  # fmt: skip
        supplemental = [LeafDef(f"LF.{oid_part(d.key)}", d.href, d.title) for d in docs
                        if d.kind == "SupplementalDoc"]  # fmt: skip
        return DefineModel(
            acrf=acrf,
            supplemental=supplemental,
            acrf_leaf=acrf[0].id if acrf else ACRF_LEAF,
            file_oid=f"DEF.{sid}.{self.standard}",
            created=self.created,
            originator=study.sponsor or "cdiscforge",
            source_system_version=__version__,
            study_oid=study_oid(study.studyid),
            study=study,
            mdv_oid=mdv_oid(study.studyid, self.standard),
            mdv_name=f"Study {study.studyid}, {ig.name} {ig.version} Data Definitions",
            mdv_description=f"{self.standard} data definitions for study {study.studyid}",
            standards=[ig],
            ig_standard_oid=ig.oid,
        )

    # ---- datasets and variables -------------------------------------------------------
    def add_dataset(self, ds: Dataset) -> None:
        klass = normalise_class(ds, self.standard)
        name = ds.name.upper()
        comment_oid = self._comment(f"COM.{name}", ds.comment)
        refs: list[ItemRefDef] = []
        items: dict[str, ItemDefDef] = {}
        key_seq = {k: i for i, k in enumerate(ds.keys, start=1)}
        domain = (ds.domain or name) if self.standard == "SDTM" else None
        if domain and name.startswith("SUPP") and klass == "RELATIONSHIP":
            # Define-XML 2.1 (and its CDISC example): a SUPP-- dataset's Domain is its parent's.
            domain = name[4:]
        for order, var in enumerate(ds.variables, start=1):
            item = self._item_def(ds, var)
            items[var.name] = item
            method_oid = self._method(f"MT.{name}.{oid_part(var.name)}", f"{name}.{var.name}",
                                      var.method)  # fmt: skip
            role = var.role
            if self.standard == "SDTM" and not role:
                role = sdtm_role((ds.domain or name), klass, var.name)
            refs.append(
                ItemRefDef(
                    item_oid=item.oid,
                    order=order,
                    mandatory="Yes" if (var.core or "").lower().startswith("req") else "No",
                    key_sequence=key_seq.get(var.name),
                    method_oid=method_oid,
                    role=role if self.standard == "SDTM" and role else None,
                )
            )
        if ds.value_level_by:
            self._value_level(ds, refs, items)
        for var in ds.variables:
            if var.value_level:
                self._variable_value_level(ds, var, items[var.name])
        self.model.item_groups.append(
            ItemGroupDefDef(
                oid=item_group_oid(name),
                name=name,
                domain=domain,
                repeating="Yes" if _is_repeating(ds, klass) else "No",
                reference="Yes" if klass == "TRIAL DESIGN" else "No",
                purpose="Tabulation" if self.standard == "SDTM" else "Analysis",
                structure=_structure(ds, self.standard),
                klass=klass,
                label=ds.label,
                leaf_id=f"LF.{name}",
                href=f"{name.lower()}.xpt",
                comment_oid=comment_oid,
                refs=refs,
                subclass=ds.subclass,
            )
        )

    def _method(self, oid: str, target: str, text: str | None) -> str | None:
        if not text:
            return None
        self.model.methods.append(MethodDef(oid, f"Algorithm to derive {target}", text))
        return oid

    def _variable_value_level(self, ds: Dataset, var: Variable, parent: ItemDefDef) -> None:
        _variable_value_level_impl(self, ds, var, parent)

    def _comment(self, oid: str, text: str | None) -> str | None:
        if not text:
            return None
        self.model.comments.append(CommentDef(oid, text))
        return oid

    def _origin(self, item: ItemDefDef, var: Variable) -> None:
        item.origin_type = var.origin or None
        item.origin_source = var.source
        if var.origin == "Predecessor" and var.predecessor:
            item.origin_description = var.predecessor
        elif var.predecessor:
            # A predecessor named on a non-Predecessor origin still tells the reviewer where
            # the value came from.
            item.origin_description = var.predecessor
        if var.origin == "Collected" and var.crf_pages:
            item.crf_pages = " ".join(str(p) for p in var.crf_pages)
            self.model.uses_acrf = True
            if not self.model.acrf:
                self.model.acrf.append(LeafDef(ACRF_LEAF, "acrf.pdf", "Annotated CRF"))

    def _item_def(self, ds: Dataset, var: Variable) -> ItemDefDef:
        name = ds.name.upper()
        series = ds.frame[var.name]
        # The facts below depend on the set of values alone: where a test per value costs
        # (ISO 8601 patterns of --DTC, decimals of a float), it runs on the distinct values.
        values = _distinct(series) if var.is_char and var.name.endswith("DTC") else series
        data_type = define_data_type(var, values)
        item = ItemDefDef(
            oid=item_oid(name, var.name),
            name=var.name,
            data_type=data_type,
            label=var.label,
            length=_length(var, values, data_type),
            significant_digits=(
                significant_digits(var, _distinct(series)) if data_type == "float" else None
            ),
            display_format=var.format if not var.is_char and var.format else None,
            comment_oid=self._comment(f"COM.{name}.{oid_part(var.name)}", var.comment),
        )
        self._origin(item, var)
        if var.dictionary:
            item.codelist_oid = self._use_dictionary(var.dictionary, data_type)
        elif var.codelist and not any(v.codelist for v in var.value_level):
            # A variable whose codelist depends on another variable's value (DSDECOD by
            # DSCAT) states its codelists in its value-level metadata only.
            item.codelist_oid = self._use_codelist(ds, var, series)
        self.model.item_defs.append(item)
        return item

    # ---- codelists --------------------------------------------------------------------
    def _use_dictionary(self, key: str, data_type: str) -> str:
        """An external dictionary (MedDRA, ISO 3166 ...) as a CodeList with ExternalCodeList,
        declared once in the study spec."""
        found = next((d for d in self.study.dictionaries if d.key == key), None)
        if found is None:
            raise CdiscforgeError(
                f"define.xml: variable coded with dictionary {key!r}, which the study does not "
                "declare (study.yaml `dictionaries`)"
            )
        # A CodeList's DataType must be its items' (MedDRA terms are text, MedDRA codes
        # integers): one CodeList per dictionary and data type.
        oid = f"CL.{oid_part(key)}" + ("" if data_type == "text" else f".{data_type.upper()}")
        self.dictionaries_used[oid] = (found, data_type)
        return oid

    def _use_codelist(self, ds: Dataset, var: Variable, series: pd.Series) -> str:
        ref = var.codelist or ""
        found = self.terms.find(ref)
        key = found.short_name if found is not None else ref
        use = self.codelist_uses.setdefault(key, _CodeListUse(name=key, numeric=not var.is_char))
        use.numeric = use.numeric and not var.is_char
        values = _used_values(series)
        use.values.update(values)
        if use.numeric and any("." in v for v in values):
            use.whole = False
        partner = _decode_partner(ds, var)
        if partner is None:
            use.has_partner = False
        else:
            for code, decode in _decodes(ds, var.name, partner).items():
                use.decodes.setdefault(code, decode)
        return f"CL.{oid_part(key)}"

    def _ct_standard_oid(self, codelist: ct.Codelist) -> str:
        standard = codelist.standard.upper()
        publishing = (
            "ADaM" if standard.startswith("ADAM")
            else "DEFINE-XML" if standard.startswith("DEFINE")
            else "SDTM"
        )  # fmt: skip
        oid = f"STD.CT.{publishing}"
        if all(s.oid != oid for s in self.model.standards):
            version = {
                "ADaM": self.study.adam_ct_version,
                "SDTM": self.study.sdtm_ct_version,
            }.get(publishing) or codelist.standard.split()[-1]
            self.model.standards.append(StandardDef(oid, "CDISC/NCI", "CT", version, publishing))
        return oid

    def finish_codelists(self) -> None:
        for key in sorted(self.codelist_uses):
            use = self.codelist_uses[key]
            cl = self.terms.find(key)
            base = self.terms.cdisc(cl.extends) if cl is not None and cl.extends else None
            if cl is not None and cl.sponsor:
                # A sponsor codelist lists its declared terms in order (then any other value
                # the data hold, which the validation reports); an NCI alias only where it
                # extends a CDISC list (its terms new to that list: ExtendedValue="Yes").
                declared = [str(v) for v in cl.terms["value"].tolist()]
                ordered = declared + sorted(use.values - set(declared))
            elif cl is not None:
                ct_order = [str(v) for v in cl.terms["value"].tolist()]
                in_ct = [v for v in ct_order if v in use.values]
                extra = sorted(use.values - set(ct_order))
                ordered = in_ct + extra
                if not ordered:
                    # No value occurs in this build's data (e.g. no joint was NOT DONE): a
                    # CodeList needs at least one item, so it lists the whole CT codelist.
                    ordered = ct_order
            else:
                ordered = sorted(use.values)
            items = []
            declared_decodes = cl.decodes() if cl is not None else {}
            cdisc_values = base.values if base is not None else frozenset()
            for value in ordered:
                decode = use.decodes.get(value) if use.has_partner else None
                decode = declared_decodes.get(value) or decode
                code = cl.term_code(value) if cl is not None else None
                if cl is not None and cl.sponsor:
                    extended = base is not None and value not in cdisc_values
                else:
                    extended = cl is not None and code is None
                items.append(CodeListItemDef(value, decode, code, extended=extended))
            data_type = "text"
            if use.numeric:
                data_type = "integer" if use.whole else "float"
            self.model.codelists.append(
                CodeListDef(
                    oid=f"CL.{oid_part(key)}",
                    name=cl.name if cl is not None else key,
                    data_type=data_type,
                    standard_oid=self._ct_standard_oid(cl)
                    if cl is not None and (not cl.sponsor or base is not None)
                    else None,
                    nci_code=cl.code if cl is not None else None,
                    items=items,
                )
            )
        for oid in sorted(self.dictionaries_used):
            d, data_type = self.dictionaries_used[oid]
            self.model.codelists.append(
                CodeListDef(
                    oid=oid,
                    name=d.name if data_type == "text" else f"{d.name} codes",
                    data_type=data_type,
                    standard_oid=None,
                    nci_code=None,
                    items=[],
                    external=ExternalCodeListDef(d.name, d.version, d.href, d.ref),
                )
            )
        self.model.codelists.sort(key=lambda c: c.oid)

    def ensure_primary_ct(self) -> None:
        """Define-XML 2.1 expects the CT version stated even when no codelist is from it."""
        publishing = "SDTM" if self.standard == "SDTM" else "ADaM"
        version = self.study.sdtm_ct_version if publishing == "SDTM" else self.study.adam_ct_version
        oid = f"STD.CT.{publishing}"
        if version and all(s.oid != oid for s in self.model.standards):
            self.model.standards.append(StandardDef(oid, "CDISC/NCI", "CT", version, publishing))

    # ---- value-level metadata ---------------------------------------------------------
    def _vlm_targets(self, ds: Dataset) -> list[Variable]:
        by = ds.value_level_by or ""
        if by == "QNAM":
            names = list(VLM_SUPP_VARIABLES)
        elif by == "PARAMCD" or self.standard == "ADaM":
            names = list(VLM_ADAM_VARIABLES)
        else:
            prefix = by[: -len("TESTCD")] if by.endswith("TESTCD") else (ds.domain or ds.name)[:2]
            names = [prefix + suffix for suffix in VLM_SDTM_SUFFIXES]
        return [v for v in ds.variables if v.name in names]

    def _value_level(
        self, ds: Dataset, refs: list[ItemRefDef], parents: dict[str, ItemDefDef]
    ) -> None:
        by = ds.value_level_by or ""
        if by not in ds.variable_names:
            raise CdiscforgeError(
                f"dataset {ds.name}: value_level_by {by!r} is not one of its variables"
            )
        name = ds.name.upper()
        frame = ds.frame
        codes, uniques = _split_codes(frame[by])  # missing values -1, as groupby(dropna=True)
        partner = _decode_partner(ds, ds.variable(by))
        decodes = _decodes(ds, by, partner) if partner else {}
        # SUPP-- records say their own origin in QORIG: one per QNAM in define.xml.
        qorig = _decodes(ds, by, "QORIG") if by == "QNAM" and "QORIG" in ds.variable_names else {}
        by_item_oid = item_oid(name, by)
        split_values = sorted(set(uniques) - {""})
        where_oids: dict[str, str] = {}
        for value in split_values:
            oid = f"WC.{name}.{oid_part(by)}.{oid_part(value)}"
            while oid in where_oids.values():
                oid += "_"
            where_oids[value] = oid
            self.model.where_clauses.append(WhereClauseDef(oid, by_item_oid, value))
        ref_by_oid = {r.item_oid: r for r in refs}
        position = {v: i for i, v in enumerate(uniques)}
        for var in self._vlm_targets(ds):
            parent = parents[var.name]
            vl_refs: list[ItemRefDef] = []
            # each split value's records, one per distinct value of the variable: the facts
            # below depend on the set of values alone (a groupby of the whole frame copied
            # every column of a 900,000-record domain)
            groups = _distinct_by_group(codes, len(uniques), frame[var.name])
            for value in split_values:
                subset = groups[position[value]]
                present = subset.dropna()
                if var.is_char:
                    present = present[present.astype("string") != ""]
                if present.empty:
                    continue
                data_type = define_data_type(var, subset)
                item = ItemDefDef(
                    oid=f"{parent.oid}.{oid_part(value)}",
                    name=var.name,
                    data_type=data_type,
                    label=f"{var.label} ({decodes.get(value, value)})",
                    length=(
                        max(1, char_max_bytes(subset))
                        if var.is_char
                        else (8 if data_type in ("integer", "float") else None)
                    ),
                    significant_digits=(
                        significant_digits(_without_declared(var), subset)
                        if data_type == "float"
                        else None
                    ),
                    display_format=parent.display_format,
                    origin_type=parent.origin_type,
                    origin_source=parent.origin_source,
                    origin_description=parent.origin_description,
                    crf_pages=parent.crf_pages,
                )
                method_oid = ref_by_oid[parent.oid].method_oid
                if value in qorig:
                    origin = qorig[value].strip()
                    origin = _QORIG_ALIASES.get(origin.upper(), origin.title())
                    if origin in ORIGINS:
                        item.origin_type, item.origin_source = origin, None
                        item.origin_description = item.crf_pages = None
                qualifier = ds.qualifiers.get(value) if by == "QNAM" else None
                if qualifier is not None:
                    # What the parent-side variable is: its label, origin, source, method.
                    item.label = qualifier.label
                    self._origin(item, qualifier)
                    item.comment_oid = self._comment(f"COM.{name}.{oid_part(value)}",
                                                     qualifier.comment)  # fmt: skip
                    method_oid = self._method(
                        f"MT.{name}.{oid_part(value)}", f"{name}.QVAL ({value})",
                        qualifier.method,
                    ) or (None if qualifier.origin != "Derived" else method_oid)  # fmt: skip
                self.model.item_defs.append(item)
                vl_refs.append(
                    ItemRefDef(
                        item_oid=item.oid,
                        order=len(vl_refs) + 1,
                        mandatory="No",
                        method_oid=method_oid,
                        where_clause_oid=where_oids[value],
                    )
                )
            if vl_refs:
                parent.value_list_oid = f"VL.{name}.{oid_part(var.name)}"
                self.model.value_lists.append(ValueListDef(parent.value_list_oid, vl_refs))


def _variable_value_level_impl(
    builder: _Builder, ds: Dataset, var: Variable, parent: ItemDefDef
) -> None:
    """Value-level metadata a variable declares itself (`value_level`): where `by` has a
    value, the variable uses its own codelist (DSDECOD where DSCAT = PROTOCOL MILESTONE:
    PROTMLST; where DISPOSITION EVENT: NCOMPLT)."""
    name = ds.name.upper()
    refs: list[ItemRefDef] = []
    frame = ds.frame
    for vl in var.value_level:
        if vl.by not in ds.variable_names:
            raise CdiscforgeError(
                f"dataset {ds.name}: {var.name} value_level by {vl.by!r} is not one of its "
                "variables"
            )
        rows = frame[vl.by].astype("string") == vl.value
        subset = frame.loc[rows.fillna(False).astype(bool), var.name]
        wc_oid = f"WC.{name}.{oid_part(var.name)}.{oid_part(vl.by)}.{oid_part(vl.value)}"
        builder.model.where_clauses.append(WhereClauseDef(wc_oid, item_oid(name, vl.by), vl.value))
        data_type = define_data_type(var, subset)
        item = ItemDefDef(
            oid=f"{parent.oid}.{oid_part(vl.by)}.{oid_part(vl.value)}",
            name=var.name,
            data_type=data_type,
            label=vl.label or f"{var.label} where {vl.by} is {vl.value}",
            length=_length(var, subset, data_type) if var.is_char else parent.length,
            origin_type=parent.origin_type,
            origin_source=parent.origin_source,
            origin_description=parent.origin_description,
            crf_pages=parent.crf_pages,
        )
        if vl.codelist:
            used = Variable(name=var.name, label=var.label, type=var.type, codelist=vl.codelist)
            item.codelist_oid = builder._use_codelist(ds, used, subset)
        builder.model.item_defs.append(item)
        # Its own method text, else the variable's (a derived value always has a method).
        method_oid = builder._method(
            f"MT.{name}.{oid_part(var.name)}.{oid_part(vl.value)}", f"{name}.{var.name}", vl.method
        ) or (f"MT.{name}.{oid_part(var.name)}" if var.method else None)
        refs.append(
            ItemRefDef(item.oid, len(refs) + 1, "No", method_oid=method_oid,
                       where_clause_oid=wc_oid)
        )  # fmt: skip
    parent.value_list_oid = f"VL.{name}.{oid_part(var.name)}"
    builder.model.value_lists.append(ValueListDef(parent.value_list_oid, refs))


def _without_declared(var: Variable) -> Variable:
    """The variable with its declared significant digits dropped, so a test's own are measured."""
    return Variable(name=var.name, label=var.label, type=var.type, format=var.format)


def build_define_model(
    datasets: Sequence[Dataset], *, study: StudyInfo, standard: Standard, created: str
) -> DefineModel:
    """Decide everything define.xml will say about these datasets (see the module docstring)."""
    if standard not in ("SDTM", "ADaM"):
        raise CdiscforgeError(f"define.xml standard must be 'SDTM' or 'ADaM', not {standard!r}")
    if not _DATETIME.match(created or ""):
        raise CdiscforgeError(
            f"define.xml creation time {created!r} is not an ISO 8601 datetime "
            "like 2024-01-31T09:00:00 (it is fixed per build so output is reproducible)"
        )
    names = [d.name.upper() for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CdiscforgeError(f"define.xml: datasets given twice: {', '.join(dupes)}")
    builder = _Builder(study, standard, created)
    for ds in datasets:
        builder.add_dataset(ds)
    builder.ensure_primary_ct()
    builder.finish_codelists()
    return builder.model


@cache
def _environment() -> jinja2.Environment:
    """One environment per process, so define.xml.j2 is compiled once (SDTM and ADaM)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("cdiscforge.define", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render_define(model: DefineModel) -> str:
    """define.xml text for a model (autoescaped Jinja2)."""
    template = _environment().get_template("define.xml.j2")
    return template.render(m=model, stylesheet=STYLESHEET_NAME, acrf_leaf=model.acrf_leaf)


def write_define(
    datasets: Sequence[Dataset],
    out_path: Path,
    *,
    study: StudyInfo,
    standard: Standard,
    created: str,
) -> Path:
    """Write define.xml (and define2-1.xsl beside it) and check it against the 2.1 XSD.

    The file is written even when the schema check fails, and the error quotes each offending
    line, so the reviewer of a failed build sees what is wrong even after the build removed its
    staging folder; the build still fails, with `CdiscforgeError`.
    """
    out_path = Path(out_path)
    model = build_define_model(datasets, study=study, standard=standard, created=created)
    text = render_define(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8", newline="\n")
    shutil.copyfile(stylesheet_path(), out_path.parent / STYLESHEET_NAME)
    errors = schema_errors(text.encode("utf-8"), str(out_path))
    if errors:
        # Quote each offending line: a failed build's staging folder does not survive it.
        lines = text.splitlines()

        def quoted(error: str) -> str:
            found = re.search(r"line (\d+):", error)
            if not found or not 0 < int(found.group(1)) <= len(lines):
                return error
            return f"{error}\n    > {lines[int(found.group(1)) - 1].strip()[:160]}"

        shown = "\n  ".join(quoted(e) for e in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise CdiscforgeError(
            f"{out_path} fails the Define-XML 2.1 schema ({len(errors)} error(s)):\n  {shown}{more}"
        )
    return out_path


def templates_dir() -> Path:
    """Folder of the Jinja2 templates (for tools that want to show or override them)."""
    return Path(str(resources.files("cdiscforge.define") / "templates"))

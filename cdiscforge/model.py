"""The one dataset model every stage and writer shares.

A `Dataset` is a pandas frame plus the metadata a reviewer needs (what define.xml says about
it). Stages build Datasets; validation, the XPT writer, define.xml and Dataset-JSON only read
them. Nothing downstream re-derives metadata from the frame, except the writers that fit a
character length to the data when the spec leaves it open (FDA guidance), which they record
back with `fit_lengths` so define.xml states the length actually written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cdiscforge.vectorise import used_categories

VarType = Literal["Char", "Num"]
ORIGINS = ("Collected", "Derived", "Assigned", "Protocol", "Predecessor", "Not Available")


@dataclass(frozen=True)
class ValueLevel:
    """Where variable `by` equals `value`, the described variable uses `codelist` (optionally
    with its own label and method text)."""

    by: str
    value: str
    codelist: str | None = None
    label: str | None = None
    method: str | None = None


@dataclass
class Variable:
    """Metadata of one variable, in define.xml's vocabulary.

    `origin` uses Define-XML 2.1 origin types ("Collected" for CRF data); `source` is its
    def:Origin Source (Investigator, Sponsor, Subject, Vendor) where it applies.
    `length` is None until fitted to the data (character) or 8 (numeric).
    """

    name: str
    label: str
    type: VarType = "Char"
    length: int | None = None
    origin: str = "Derived"
    source: str | None = None
    codelist: str | None = None
    format: str | None = None
    significant_digits: int | None = None
    method: str | None = None
    comment: str | None = None
    predecessor: str | None = None
    role: str | None = None
    core: str | None = None
    crf_pages: tuple[str, ...] = ()
    # Plausible range the spec declares (validation checks it; either end may be None).
    value_range: tuple[float | None, float | None] | None = None
    # External dictionary (a `Dictionary.key` of the study, e.g. MEDDRA) coding the values;
    # define.xml gives the variable an ExternalCodeList instead of a CDISC CodeList.
    dictionary: str | None = None
    # Value-level definitions (define.xml ValueListDef): where another variable has a value,
    # this variable uses another codelist (DSDECOD by DSCAT: PROTMLST or NCOMPLT).
    value_level: tuple[ValueLevel, ...] = ()

    @property
    def is_char(self) -> bool:
        return self.type == "Char"


@dataclass
class Dataset:
    """A dataset ready to validate and write: frame columns are exactly `variables`, in order."""

    name: str
    label: str
    frame: pd.DataFrame
    variables: list[Variable]
    klass: str = ""
    structure: str = ""
    keys: list[str] = field(default_factory=list)
    standard: str = "SDTMIG 3.4"
    domain: str | None = None
    comment: str | None = None
    # Variable whose values split the dataset into value-level metadata in define.xml
    # (LBTESTCD for LB, PARAMCD for BDS datasets); None for none.
    value_level_by: str | None = None
    # Define-XML 2.1 def:SubClass (ADaM OCCDS: ADVERSE EVENT ...); None for none.
    subclass: str | None = None
    # SUPP-- only: what each QNAM's QVAL is (label, type, origin, source, method), for the
    # value-level metadata define.xml gives QVAL per QNAM.
    qualifiers: dict[str, Variable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"dataset {self.name}: duplicate variables {dupes}")
        missing = [n for n in names if n not in self.frame.columns]
        if missing:
            raise ValueError(f"dataset {self.name}: frame lacks variables {missing}")
        # Column order follows the metadata; columns without metadata are not allowed to
        # slip through to a writer unannounced.
        extra = [c for c in self.frame.columns if c not in names]
        if extra:
            raise ValueError(f"dataset {self.name}: frame has columns without metadata {extra}")
        if list(self.frame.columns) != names:
            self.frame = self.frame[names]

    def variable(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"{self.name}.{name}")

    @property
    def variable_names(self) -> list[str]:
        return [v.name for v in self.variables]

    def __len__(self) -> int:
        return len(self.frame)

    def fit_lengths(self) -> None:
        """Set each character variable without a fixed length to its longest value in bytes.

        FDA's Technical Conformance Guide asks for lengths fitted to the data; a variable that is
        empty everywhere gets length 1 (SAS's minimum).
        """
        for v in self.variables:
            if v.is_char:
                if v.length is None:
                    v.length = max(1, char_max_bytes(self.frame[v.name]))
            else:
                v.length = 8


def char_max_bytes(series: pd.Series) -> int:
    """Longest value in UTF-8 bytes, ignoring missing values (vectorised via pyarrow).

    A categorical is measured per category it uses (a filtered frame may keep categories
    no record has any more: they do not count), not per record."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        used = used_categories(series)
        if not len(used):
            return 0
        series = pd.Series(used)
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        array = pa.array(series.array)  # Arrow's own strings: no conversion, no copy
    else:
        array = pa.array(series.astype("string[pyarrow]"), from_pandas=True)
    longest = pc.max(pc.binary_length(array)).as_py()  # missing values (nulls) do not count
    return int(longest or 0)


@dataclass
class StudyInfo:
    """Study-level metadata shared by TS, define.xml and Dataset-JSON."""

    studyid: str
    name: str
    description: str
    protocol: str
    sponsor: str = ""
    sdtm_ct_version: str = ""
    adam_ct_version: str = ""
    creation_datetime: str = ""  # ISO 8601, fixed per build so outputs are reproducible
    # External dictionaries (MedDRA, ISO 3166 ...) and documents (aCRF, reviewer's guides)
    # the study declares once; define.xml refers to them.
    dictionaries: tuple[Dictionary, ...] = ()
    documents: tuple[Document, ...] = ()
    codelists: tuple[SponsorCodelist, ...] = ()


@dataclass(frozen=True)
class SponsorCodelist:
    """A sponsor-defined codelist (study data: study.yaml, codelists.yaml, codelists/*.csv).

    `terms` are the submission values in display order; `decodes` and `nci` (same length, or
    empty) their decodes and NCI term codes; `extends` the NCI code of the extensible CDISC
    codelist the list extends (its new terms are def:ExtendedValue="Yes" in define.xml).
    """

    key: str
    name: str
    terms: tuple[str, ...]
    decodes: tuple[str | None, ...] = ()
    nci: tuple[str | None, ...] = ()
    extends: str | None = None
    data_type: str = "text"
    file: str = ""  # where it was declared (for located errors)


@dataclass(frozen=True)
class Dictionary:
    """An external coding dictionary: define.xml ExternalCodeList (Dictionary, Version, href)."""

    key: str  # what variables name in `dictionary:` (MEDDRA)
    name: str  # Dictionary attribute (MedDRA)
    version: str
    href: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class Document:
    """A document define.xml links to (def:leaf): the annotated CRF or a supplemental document.

    The files themselves are the sponsor's (cdiscforge writes no PDF); `href` is relative to
    the define.xml folder. `stages` says which define.xml files list it (sdtm, adam).
    """

    key: str
    kind: Literal["AnnotatedCRF", "SupplementalDoc"]
    title: str
    href: str
    stages: tuple[str, ...] = ("sdtm", "adam")

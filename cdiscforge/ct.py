"""Controlled terminology: the one CT lookup.

cdiscforge ships the FULL CDISC SDTM, ADaM and Define-XML CT of each supported NCI EVS release
(cdiscforge/data/ct/<date>/<package>.tsv.gz, made by scripts/make_ct_package.py), so a spec may
name any CDISC codelist without rebuilding the package. A study chooses the release per package
(study.yaml `ct_version: {sdtm: ..., adam: ..., define: ...}`) and may add its own sponsor
codelists (specs/<study>/codelists.yaml, codelists/*.csv); `Terminology` is the lookup over both,
and the rules, define.xml and the validator all go through it (one answer to "which values may
this variable take"). A package is read the first time one of its codelists is asked for (~30
ms for SDTM CT) and each codelist's terms are sliced out of it on demand.

Mapping is vectorised: distinct raw values are matched once, then broadcast, so a
10-million-row form costs a dictionary lookup per distinct value, not per row.
"""

from __future__ import annotations

import difflib
import gzip
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cdiscforge.errors import CdiscforgeError

if TYPE_CHECKING:
    from cdiscforge.model import SponsorCodelist

DEFAULT_VERSION = "2025-03-28"
PACKAGES = ("sdtm", "adam", "define")  # also the lookup order by short name or NCI code
STANDARD_NAMES = {"sdtm": "SDTM CT", "adam": "ADaM CT", "define": "Define-XML CT"}
_COLUMNS = ["codelist", "code", "value", "synonyms", "preferred_term", "extensible", "name"]
TERM_COLUMNS = ["code", "value", "synonyms", "preferred_term"]


@dataclass(frozen=True)
class Codelist:
    """One codelist: NCI code, name, short name (submission value), terms.

    A CDISC codelist has `standard` "SDTM CT 2025-03-28" (or ADaM / Define-XML CT). A sponsor
    codelist has `sponsor` True, `code` its NCI code only when it `extends` none (else None),
    `extends` the NCI code of the extensible CDISC codelist it extends, and its terms carry the
    sponsor's decode in `preferred_term` (in the declared order).
    """

    code: str | None
    name: str
    short_name: str
    extensible: bool
    standard: str
    terms: pd.DataFrame  # columns: code, value, synonyms, preferred_term
    sponsor: bool = False
    extends: str | None = None
    data_type: str = "text"
    decoded: bool = False  # the terms' preferred_term is a declared decode (sponsor lists)

    @cached_property
    def values(self) -> frozenset[str]:
        """The submission values (worked out once: a codelist is asked for them by every
        variable and check that uses it, and UNIT or LBTESTCD hold hundreds of terms)."""
        return frozenset(self.terms["value"].tolist())

    def term_code(self, value: str) -> str | None:
        """NCI C-code of a submission value, or None (a sponsor extension)."""
        return self._term_codes.get(value)

    @cached_property
    def _term_codes(self) -> dict[Any, str]:
        """Submission value -> the C-code of its first term that has one, made once (define.xml
        asks for the code of every term a study uses; a scan of UNIT's ~1000 terms each)."""
        terms = self.terms[["value", "code"]].dropna()
        terms = terms[terms["code"] != ""].drop_duplicates("value")
        return {value: str(code) for value, code in zip(terms["value"], terms["code"], strict=True)}

    def decodes(self) -> dict[str, str]:
        """Submission value -> declared decode (sponsor lists that give decodes; else {})."""
        if not self.decoded:
            return {}
        pairs = self.terms[self.terms["preferred_term"].fillna("") != ""]
        return dict(zip(pairs["value"], pairs["preferred_term"], strict=True))

    def _match_table(self) -> dict[str, str]:
        """Normalised spelling -> submission value, from values, synonyms and preferred terms
        (a sponsor list's decodes).

        Submission values win over synonyms when two terms share a spelling.
        """
        table: dict[str, str] = {}
        for code_col in ("preferred_term", "synonyms"):
            for value, alt in zip(self.terms["value"], self.terms[code_col], strict=True):
                if alt is None or alt is pd.NA:
                    continue
                for spelling in str(alt).split(";"):
                    key = normalise_text(spelling)
                    if key:
                        table.setdefault(key, value)
        for value in self.terms["value"]:
            table[normalise_text(value)] = value
        return table

    def map_values(
        self, raw: pd.Series, synonyms: Mapping[str, object] | None = None
    ) -> tuple[pd.Series, pd.Series]:
        """Map collected values to submission values.

        Order of matching: the study's own synonyms (from the spec, exact after normalising
        case and whitespace), then the CT submission values, CDISC synonyms and NCI preferred
        terms (a sponsor list's decodes), compared case- and whitespace-insensitively. Returns
        the mapped series (missing where unmatched or missing) and a boolean mask of
        non-missing values that matched nothing, so the caller can apply its unmatched-value
        policy and log each one.
        """
        table: dict[str, object] = dict(self._match_table())
        for spelling, value in (synonyms or {}).items():
            table[normalise_text(spelling)] = value
        distinct = pd.Series(raw.dropna().unique())
        mapping = {v: table.get(normalise_text(v)) for v in distinct}
        mapped = raw.map(mapping).astype("string")
        unmatched = raw.notna() & mapped.isna()
        return mapped, unmatched


def normalise_text(value: object) -> str:
    """Upper case, trimmed, inner whitespace collapsed: how CT matching compares spellings."""
    return " ".join(str(value).upper().split())


# --- the bundled CDISC packages --------------------------------------------------------------


def _ct_root() -> Any:  # an importlib Traversable
    return resources.files("cdiscforge") / "data" / "ct"


@cache
def bundled_versions(package: str = "sdtm") -> tuple[str, ...]:
    """Release dates bundled for a package ('sdtm', 'adam', 'define'), oldest first."""
    root = _ct_root()
    return tuple(
        sorted(d.name for d in root.iterdir() if d.is_dir() and (d / f"{package}.tsv.gz").is_file())
    )


class _Package:
    """One bundled CT package (e.g. SDTM CT 2025-03-28): header rows and terms, read once."""

    def __init__(self, package: str, version: str) -> None:
        path = _ct_root() / version / f"{package}.tsv.gz"
        with path.open("rb") as fh:
            data = gzip.decompress(fh.read())
        table = pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(_COLUMNS, pa.string()), strings_can_be_null=False
            ),
        )
        self.package = package
        self.version = version
        self.standard = f"{STANDARD_NAMES[package]} {version}"
        # Kept as an Arrow table: only the header rows are read now; a codelist's terms
        # become a (small) DataFrame when it is first asked for.
        self.table = table
        is_head = pc.equal(table["codelist"], "").to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(is_head)
        ends = [*starts[1:].tolist(), table.num_rows]
        heads = table.take(pa.array(starts)).to_pydict()
        self.heads = {
            code: (int(s), int(e), name, ext == "Yes", short)
            for code, s, e, name, ext, short in zip(
                heads["code"], starts.tolist(), ends, heads["name"], heads["extensible"],
                heads["value"], strict=True,
            )
        }  # fmt: skip
        self.slices = {code: (h[0], h[1]) for code, h in self.heads.items()}  # NCI code -> rows
        self.by_short = {h[4]: code for code, h in self.heads.items()}

    def resolve(self, name_or_code: str) -> str | None:
        return name_or_code if name_or_code in self.slices else self.by_short.get(name_or_code)

    def codelist(self, code: str) -> Codelist:
        start, end, name, extensible, short = self.heads[code]
        rows = self.table.slice(start + 1, end - start - 1).select(TERM_COLUMNS)
        terms = rows.to_pandas(types_mapper=lambda _: pd.StringDtype())
        return Codelist(
            code=code,
            name=name,
            short_name=short,
            extensible=extensible,
            standard=self.standard,
            terms=terms,
        )


@cache
def package(name: str, version: str = DEFAULT_VERSION) -> _Package:
    """A bundled package, read on first use (unknown release: CdiscforgeError listing them)."""
    if name not in PACKAGES:
        raise CdiscforgeError(f"unknown CT package {name!r}; packages: {', '.join(PACKAGES)}")
    if version not in bundled_versions(name):
        raise CdiscforgeError(unknown_version_message(name, version))
    return _Package(name, version)


def unknown_version_message(name: str, version: object) -> str:
    bundled = ", ".join(bundled_versions(name)) or "none"
    return f"{STANDARD_NAMES[name]} {version!r} is not bundled (bundled {name}: {bundled})"


# --- one lookup: a study's chosen releases plus its sponsor codelists ---------------------------


def sponsor_codelist(sc: SponsorCodelist, extended: Codelist | None = None) -> Codelist:
    """A sponsor codelist as a Codelist: its terms in declared order; the NCI code of a term
    taken from the CDISC list it extends when the sponsor gave none."""
    codes = list(sc.nci) if sc.nci else [None] * len(sc.terms)
    if extended is not None:
        cdisc = dict(zip(extended.terms["value"], extended.terms["code"], strict=True))
        codes = [c or cdisc.get(t) for c, t in zip(codes, sc.terms, strict=True)]
    decodes = list(sc.decodes) if sc.decodes else [None] * len(sc.terms)
    terms = pd.DataFrame(
        {
            "code": codes,
            "value": list(sc.terms),
            "synonyms": [None] * len(sc.terms),
            "preferred_term": decodes,
        },
        dtype="string",
    )
    return Codelist(
        code=extended.code if extended is not None else None,
        name=sc.name,
        short_name=sc.key,
        extensible=False,
        standard=extended.standard if extended is not None else "sponsor",
        terms=terms,
        sponsor=True,
        extends=extended.code if extended is not None else None,
        data_type=sc.data_type,
        decoded=any(d is not None for d in decodes),
    )


class Terminology:
    """The CT one study codes against: bundled CDISC packages at the study's chosen releases
    (default DEFAULT_VERSION each) and the study's sponsor codelists (which are looked up
    first; the spec loader refuses a sponsor id that is also a CDISC short name)."""

    def __init__(
        self,
        versions: Mapping[str, str] | None = None,
        sponsor: Iterable[SponsorCodelist] = (),
    ) -> None:
        versions = dict(versions or {})
        unknown = sorted(set(versions) - set(PACKAGES))
        if unknown:
            raise CdiscforgeError(
                f"unknown CT package(s) {unknown}; ct_version names {', '.join(PACKAGES)}"
            )
        self.versions = {p: str(versions.get(p) or DEFAULT_VERSION) for p in PACKAGES}
        for name, version in self.versions.items():
            if version not in bundled_versions(name):
                raise CdiscforgeError(unknown_version_message(name, version))
        self._sponsor_defs = {s.key: s for s in sponsor}
        self._sponsor: dict[str, Codelist] = {}

    def version(self, name: str = "sdtm") -> str:
        return self.versions[name]

    @property
    def sponsor_ids(self) -> list[str]:
        return sorted(self._sponsor_defs)

    def cdisc(self, name_or_code: str) -> Codelist | None:
        """A CDISC codelist by short name ('SEX') or NCI code ('C66731'), or None."""
        for name in PACKAGES:
            pkg = package(name, self.versions[name])
            code = pkg.resolve(name_or_code)
            if code is not None:
                return _cdisc_codelist(name, self.versions[name], code)
        return None

    def find(self, name_or_code: str) -> Codelist | None:
        """A sponsor codelist by id, else a CDISC codelist, else None."""
        if name_or_code in self._sponsor_defs:
            if name_or_code not in self._sponsor:
                sc = self._sponsor_defs[name_or_code]
                base = self.cdisc(sc.extends) if sc.extends else None
                self._sponsor[name_or_code] = sponsor_codelist(sc, base)
            return self._sponsor[name_or_code]
        return self.cdisc(name_or_code)

    def has(self, name_or_code: str) -> bool:
        return self.find(name_or_code) is not None

    def codelist(self, name_or_code: str) -> Codelist:
        """A codelist by sponsor id, CDISC short name or NCI code; unknown: CdiscforgeError."""
        found = self.find(name_or_code)
        if found is None:
            raise CdiscforgeError(self.unknown_message(name_or_code))
        return found

    def unknown_message(self, name: str) -> str:
        """Why a codelist id is unknown, with the closest known ids."""
        shorts = [s for p in PACKAGES for s in package(p, self.versions[p]).by_short]
        close = difflib.get_close_matches(name, [*self._sponsor_defs, *shorts], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        cts = ", ".join(f"{STANDARD_NAMES[p]} {self.versions[p]}" for p in PACKAGES)
        return (
            f"unknown codelist {name!r}: not in the bundled {cts}, nor a sponsor codelist "
            f"(sponsor codelists: {self.sponsor_ids or 'none'}){hint}"
        )


@cache
def _cdisc_codelist(name: str, version: str, code: str) -> Codelist:
    return package(name, version).codelist(code)


@cache
def default_terminology() -> Terminology:
    """The bundled default releases, no sponsor codelists (for `cdiscforge validate` of any
    SDTM folder and for callers without a study)."""
    return Terminology()


def sdtm_ct_version() -> str:
    """Default release date of the bundled SDTM CT (e.g. '2025-03-28')."""
    return DEFAULT_VERSION


def codelist(name_or_code: str) -> Codelist:
    """A CDISC codelist of the default releases by short name ('SEX') or NCI code."""
    return default_terminology().codelist(name_or_code)


def has_codelist(name_or_code: str) -> bool:
    """Whether the default bundled CT has this codelist (short name or NCI code)."""
    return default_terminology().has(name_or_code)

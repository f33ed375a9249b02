"""Controlled terminology: the one CT lookup.

Loads the CT subset shipped with the package (see scripts/make_ct_subset.py for how it is made
and from which NCI EVS release) and maps collected values to CDISC submission values. Mapping
is vectorised: distinct raw values are matched once, then broadcast, so a 10-million-row form
costs a dictionary lookup per distinct value, not per row.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pandas as pd

from cdiscforge.errors import CdiscforgeError


@dataclass(frozen=True)
class Codelist:
    """One CDISC codelist: NCI code, name, short name (submission value), terms."""

    code: str
    name: str
    short_name: str
    extensible: bool
    standard: str
    terms: pd.DataFrame  # columns: code, value, synonyms, preferred_term

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self.terms["value"])

    def term_code(self, value: str) -> str | None:
        """NCI C-code of a submission value, or None (a sponsor extension)."""
        hit = self.terms.loc[self.terms["value"] == value, "code"]
        return None if hit.empty else str(hit.iloc[0])

    def _match_table(self) -> dict[str, str]:
        """Normalised spelling -> submission value, from values, synonyms and preferred terms.

        Submission values win over synonyms when two terms share a spelling.
        """
        table: dict[str, str] = {}
        for code_col in ("preferred_term", "synonyms"):
            for value, alt in zip(self.terms["value"], self.terms[code_col], strict=True):
                for spelling in str(alt).split(";"):
                    key = normalise_text(spelling)
                    if key:
                        table.setdefault(key, value)
        for value in self.terms["value"]:
            table[normalise_text(value)] = value
        return table

    def map_values(
        self, raw: pd.Series, synonyms: dict[str, str] | None = None
    ) -> tuple[pd.Series, pd.Series]:
        """Map collected values to submission values.

        Order of matching: the study's own synonyms (from the spec, exact after normalising
        case and whitespace), then the CT submission values, CDISC synonyms and NCI preferred
        terms, compared case- and whitespace-insensitively. Returns the mapped series (missing
        where unmatched or missing) and a boolean mask of non-missing values that matched
        nothing, so the caller can apply its unmatched-value policy and log each one.
        """
        table = self._match_table()
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


@cache
def _payload() -> dict:
    path = resources.files("cdiscforge") / "data" / "ct" / "ct.json.gz"
    with path.open("rb") as fh:
        return json.loads(gzip.decompress(fh.read()))


def sdtm_ct_version() -> str:
    """Release date of the bundled NCI EVS CT (e.g. '2025-03-28')."""
    return str(_payload()["version"])


@cache
def _short_names() -> dict[str, str]:
    return {cl["short_name"]: code for code, cl in _payload()["codelists"].items()}


@cache
def codelist(name_or_code: str) -> Codelist:
    """A codelist by submission short name ('SEX', 'LBTESTCD') or NCI code ('C66731')."""
    codelists = _payload()["codelists"]
    code = name_or_code if name_or_code in codelists else _short_names().get(name_or_code)
    if code is None:
        raise CdiscforgeError(
            f"unknown codelist {name_or_code!r}: not in the bundled CT {sdtm_ct_version()} subset "
            "(regenerate it with scripts/make_ct_subset.py if a spec needs a new codelist)"
        )
    cl = codelists[code]
    terms = pd.DataFrame(cl["terms"], columns=["code", "value", "synonyms", "preferred_term"])
    return Codelist(
        code=code,
        name=cl["name"],
        short_name=cl["short_name"],
        extensible=bool(cl["extensible"]),
        standard=cl["standard"],
        terms=terms.astype("string"),
    )


def has_codelist(name_or_code: str) -> bool:
    """Whether the bundled CT has this codelist (short name or NCI code)."""
    return name_or_code in _payload()["codelists"] or name_or_code in _short_names()

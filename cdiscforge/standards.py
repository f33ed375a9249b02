"""CDISC standards metadata (SDTMIG 3.4, ADaMIG 1.3) shipped as package data.

One home for "what the implementation guide says about a variable": label, type, role, core
status (Req/Exp/Perm) and codelist. Specs may leave labels and types out for standard
variables and get them from here; validation reads the same tables for required variables
and IG labels, so the two can never disagree.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import pandas as pd

SDTMIG_VERSION = "3.4"
ADAMIG_VERSION = "1.3"

_COLUMNS = ["dataset", "order", "name", "label", "type", "codelist_codes", "role", "core", "klass"]


def _data_file(name: str):
    return resources.files("cdiscforge") / "data" / "standards" / name


@cache
def sdtmig_variables() -> pd.DataFrame:
    """All SDTMIG 3.4 variables: dataset, order, name, label, type, codelist_codes, role, core."""
    with _data_file("SDTMIG_v3.4_Variables.csv").open("r", encoding="utf-8-sig") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    out = pd.DataFrame(
        {
            "dataset": raw["Dataset Name"],
            "order": raw["Variable Order"].astype(int),
            "name": raw["Variable Name"],
            "label": raw["Variable Label"],
            "type": raw["Type"],
            "codelist_codes": raw["CDISC CT Codelist Code(s)"],
            "role": raw["Role"],
            "core": raw["Core"],
            "klass": raw["Class"],
        }
    )
    return out[_COLUMNS]


@cache
def sdtmig_datasets() -> pd.DataFrame:
    """SDTMIG 3.4 datasets: name, label, class, structure."""
    with _data_file("SDTMIG_v3.4_Datasets.csv").open("r", encoding="utf-8-sig") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {
            "name": raw["Dataset Name"],
            "label": raw["Dataset Label"],
            "klass": raw["Class"],
            "structure": raw["Structure"],
        }
    )


@cache
def adamig_variables() -> pd.DataFrame:
    """ADaMIG 1.3 variables (ADSL and BDS structures), same columns as `sdtmig_variables`.

    `dataset` holds the structure ("ADSL" or "BDS"); order is the row order within it.
    """
    with _data_file("ADaMIG_v1.3_Variables.csv").open("r", encoding="utf-8-sig") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    structure = raw["Data Structure Name"].map(
        {"Subject-Level Analysis Dataset": "ADSL", "Basic Data Structure": "BDS"}
    )
    out = pd.DataFrame(
        {
            "dataset": structure,
            "order": raw.groupby("Data Structure Name").cumcount() + 1,
            "name": raw["Variable Name"],
            "label": raw["Variable Label"],
            "type": raw["Type"],
            "codelist_codes": raw["CDISC CT Codelist Code(s)"],
            "role": raw["Variable Set"],
            "core": raw["Core"],
            "klass": raw["Data Structure Name"],
        }
    )
    return out[_COLUMNS]


def domain_variables(domain: str) -> pd.DataFrame:
    """SDTMIG variables of one domain, indexed by variable name.

    SUPP-- datasets share the SUPPQUAL definition and split domains (e.g. LBCH) their parent's.
    """
    table = sdtmig_variables()
    key = "SUPPQUAL" if domain.startswith("SUPP") else domain
    rows = table[table["dataset"] == key]
    if rows.empty and len(domain) > 2:
        rows = table[table["dataset"] == domain[:2]]
    return rows.set_index("name", drop=False)


def adam_variables(structure: str) -> pd.DataFrame:
    """ADaMIG variables of one structure ("ADSL" or "BDS"), indexed by variable name."""
    table = adamig_variables()
    rows = table[table["dataset"] == structure].drop_duplicates("name")
    return rows.set_index("name", drop=False)


def _placeholder_pattern(name: str) -> re.Pattern[str] | None:
    """ADaMIG names with placeholders (TRTxxP, AGEGRy, ANLzzFL, APHASEw) as a regex."""
    if not any(c.islower() for c in name):
        return None
    pattern = re.sub(r"[a-z]+", lambda m: rf"\d{{1,{len(m.group())}}}", name)
    return re.compile(f"^{pattern}$")


def ig_row(table: pd.DataFrame, name: str) -> pd.Series | None:
    """The IG row describing `name`, matching ADaMIG placeholder names (AGEGR1 -> AGEGRy)."""
    if name in table.index:
        return table.loc[name]
    for ig_name in table.index:
        pattern = _placeholder_pattern(str(ig_name))
        if pattern is not None and pattern.match(name):
            row = table.loc[ig_name].copy()
            digits = "".join(
                re.findall(r"\d+", name[len(re.match(r"[A-Z]*", str(ig_name)).group()) :])
            )
            row["label"] = (
                re.sub(r"\b[xyzw]+\b", digits, str(row["label"])) if digits else row["label"]
            )
            return row
    return None


@cache
def sdtm_model_variables() -> pd.DataFrame:
    """SDTM v2.0 model variables: class, dataset (special-purpose / trial design ones), order,
    name (with the `--` domain prefix placeholder)."""
    with _data_file("SDTM_v2.0_Variables.csv").open("r", encoding="utf-8-sig") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {
            "klass": raw["Class"],
            "dataset": raw["Dataset Name"],
            "order": raw["Variable Order"].astype(int),
            "name": raw["Variable Name"],
        }
    )


def _model_sequence(domain: str, klass: str, own_list: bool = True) -> list[str]:
    """The SDTM model's variable order for a domain, `--` replaced by the domain prefix:
    the dataset's own list (special-purpose, trial design, relationship datasets), else the
    general-observation identifiers, the class's topic and qualifiers, then the timing
    variables (SDTM v2.0 section 2)."""
    model = sdtm_model_variables()
    own = model[model["dataset"] == domain] if own_list else model.iloc[:0]
    if not own.empty:
        names = own.sort_values("order")["name"].tolist()
    else:
        general = model[model["klass"] == "General Observations"].sort_values("order")
        cls = model[(model["klass"] == klass) & (model["dataset"] == "")].sort_values("order")
        ids = general[general["name"].isin(["STUDYID", "DOMAIN", "USUBJID", "POOLID",
                      "SPDEVID", "NHOID", "FETUSID", "FOCID"]) | general["name"].str.match(
                      r"^--(SEQ|GRPID|REFID|RECID|SPID|LNKID|LNKGRP|BEATNO)$")]  # fmt: skip
        timing = general[~general.index.isin(ids.index)]
        names = [*ids["name"], *cls["name"], *timing["name"]]
    return [n.replace("--", domain[:2], 1) if n.startswith("--") else n for n in names]


def sdtm_variable_order(domain: str, names: list[str]) -> list[str]:
    """`names` in SDTMIG 3.4 order for `domain` (the IG's variables table), so no spec has to
    hand-order its variables. A variable the IG does not list for the domain but the SDTM
    model allows (e.g. EPOCH in SV, VISITNUM in EX) goes right after the IG variable that
    precedes it in the model's order (the general-observation order when the dataset's own
    model list lacks it); a variable neither knows keeps its place relative to the end."""
    ig = domain_variables(domain)
    if ig.empty:
        return list(names)
    datasets = sdtmig_datasets()
    row = datasets[datasets["name"] == domain[:2]]
    klass = row["klass"].iloc[0] if not row.empty else ""
    # the dataset's model order; then the general-observation order (EPOCH in SV)
    sequences = [_model_sequence(domain, klass), _model_sequence(domain, klass, own_list=False)]
    rank: dict[str, float] = {}
    for pos, name in enumerate(names):
        if name in ig.index:
            rank[name] = float(ig.loc[name, "order"])
            continue
        rank[name] = 10_000.0 + pos  # unknown: at the end, in spec order
        for seq in sequences:
            if name not in seq:
                continue
            at = seq.index(name)
            before = [n for n in seq[:at] if n in ig.index]
            anchor = max((float(ig.loc[n, "order"]) for n in before), default=0.0)
            rank[name] = anchor + 0.001 * (1 + at / 10_000)  # model order among extras
            break
    return sorted(names, key=lambda n: rank[n])

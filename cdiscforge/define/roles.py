"""SDTM variable roles for define.xml ItemRefs when the spec and the domain's IG rows say none.

Define-XML 2.1 wants a Role on every SDTM ItemRef (CDISC CORE-001081). The SDTMIG 3.4 table
lists each domain's own variables; a variable a domain uses from the general model (EX.VISITNUM,
SV.EPOCH) is found in the SDTM v2.0 model table by its class and its generic `--` name.
"""

from __future__ import annotations

from functools import cache

import pandas as pd

from cdiscforge.standards import _data_file, domain_variables

# Define-XML / SDTMIG class names -> the SDTM v2.0 model's class column.
_MODEL_CLASS = {
    "SPECIAL PURPOSE": "Special-Purpose",
    "TRIAL DESIGN": "Trial Design",
    "RELATIONSHIP": "Relationship",
    "STUDY REFERENCE": "Study Reference",
    "INTERVENTIONS": "Interventions",
    "EVENTS": "Events",
    "FINDINGS": "Findings",
    "FINDINGS ABOUT": "Findings About",
}
_GENERAL = {"INTERVENTIONS", "EVENTS", "FINDINGS", "FINDINGS ABOUT"}


@cache
def _model() -> pd.DataFrame:
    with _data_file("SDTM_v2.0_Variables.csv").open("r", encoding="utf-8-sig") as fh:
        raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {"klass": raw["Class"], "name": raw["Variable Name"], "role": raw["Role"]}
    ).drop_duplicates(["klass", "name"])


@cache
def _roles(klass: str) -> dict[str, str]:
    model = _model()
    wanted = [_MODEL_CLASS.get(klass, klass)]
    if klass in _GENERAL:
        wanted.append("General Observations")
        if klass == "FINDINGS ABOUT":
            wanted.append("Findings")
    out: dict[str, str] = {}
    for name in reversed(wanted):  # the most specific class wins
        rows = model[model["klass"] == name]
        out.update(dict(zip(rows["name"], rows["role"], strict=True)))
    return {k: v for k, v in out.items() if v}


def sdtm_role(domain: str, klass: str, variable: str) -> str | None:
    """The role of `variable` in `domain` (class `klass`): the IG's domain row, else the SDTM
    model's row of that class under its own name or its `--` name."""
    ig = domain_variables(domain)
    if variable in ig.index and str(ig.loc[variable, "role"]):
        return str(ig.loc[variable, "role"])
    roles = _roles(klass.upper())
    if variable in roles:
        return roles[variable]
    prefix = domain[:2]
    if variable.startswith(prefix):
        generic = "--" + variable[len(prefix) :]
        if generic in roles:
            return roles[generic]
    return None

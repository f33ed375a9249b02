"""Regenerate the controlled-terminology subset that ships with cdiscforge.

The full NCI EVS SDTM CT file is 13 MB; the package needs only the codelists that SDTMIG 3.4
variables reference (so `cdiscforge validate` can check any SDTM folder, the CDISC pilot's
included), the codelists the bundled specs name, and all of ADaM CT. Definitions are dropped
(define.xml and validation need codes, submission values, synonyms and preferred terms).

Usage: python scripts/make_ct_subset.py [CT_DIR]   (default ../shared/reference/ct)
Writes cdiscforge/data/ct/ct.json.gz deterministically (gzip mtime 0, sorted keys).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
SDTM_CT = "SDTM_Terminology_{v}.txt"
ADAM_CT = "ADaM_CT_{v}.csv"
TERM_COLUMNS = ["Code", "CDISC Submission Value", "CDISC Synonym(s)", "NCI Preferred Term"]
IG_VARIABLES = "cdiscforge/data/standards/SDTMIG_v3.4_Variables.csv"


def _spec_codelists(specs: Path) -> set[str]:
    """Every `codelist:` value named anywhere in the bundled specs."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "codelist" and isinstance(value, str):
                    found.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(specs.rglob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return found


def _codelists(table: pd.DataFrame, wanted: set[str], standard: str) -> dict[str, dict]:
    headers = table[table["Codelist Code"] == ""]
    by_short = dict(zip(headers["CDISC Submission Value"], headers["Code"], strict=True))
    codes = {by_short.get(w, w) for w in wanted} & set(headers["Code"])
    out: dict[str, dict] = {}
    for code in sorted(codes):
        head = headers[headers["Code"] == code].iloc[0]
        terms = table[table["Codelist Code"] == code].sort_values("CDISC Submission Value")
        out[code] = {
            "name": head["Codelist Name"],
            "short_name": head["CDISC Submission Value"],
            "extensible": head["Codelist Extensible (Yes/No)"] == "Yes",
            "standard": standard,
            "terms": terms[TERM_COLUMNS].to_numpy().tolist(),
        }
    return out


def main(ct_dir: Path) -> Path:
    sdtm_file = sorted(ct_dir.glob(SDTM_CT.format(v="*")))[-1]
    version = re.search(r"(\d{4}-\d{2}-\d{2})", sdtm_file.name).group(1)
    sdtm = pd.read_csv(sdtm_file, sep="\t", dtype=str, keep_default_na=False)
    ig = pd.read_csv(ROOT / IG_VARIABLES, dtype=str, keep_default_na=False)
    wanted = {
        c.strip()
        for cell in ig["CDISC CT Codelist Code(s)"]
        for c in re.split(r"[;,]", cell)
        if c.strip()
    }
    wanted |= _spec_codelists(ROOT / "specs")
    codelists = _codelists(sdtm, wanted, f"SDTM CT {version}")
    adam_file = ct_dir / ADAM_CT.format(v=version)
    if adam_file.exists():
        adam = pd.read_csv(adam_file, dtype=str, keep_default_na=False)
        all_adam = set(adam.loc[adam["Codelist Code"] == "", "Code"])
        codelists.update(_codelists(adam, all_adam, f"ADaM CT {version}"))
    payload = {
        "version": version,
        "source": f"NCI EVS {sdtm_file.name} and {adam_file.name}",
        "codelists": codelists,
    }
    out = ROOT / "cdiscforge/data/ct/ct.json.gz"
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    with open(out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    n_terms = sum(len(c["terms"]) for c in codelists.values())
    print(f"{out}: {len(codelists)} codelists, {n_terms} terms")
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/reference/ct")

"""Convert the NCI EVS CDISC CT files into the compact CT package cdiscforge ships.

cdiscforge bundles the FULL SDTM, ADaM and Define-XML CT of each release it supports, so a
study may name any CDISC codelist without a package rebuild. The source files are the NCI EVS
quarterly release (SDTM_Terminology_<date>.txt tab-separated, ADaM_CT_<date>.csv and
Define-XML_CT_<date>.csv). Definitions are dropped (define.xml and validation need codes,
submission values, synonyms, preferred terms, names and extensibility), which takes the SDTM
package from 13 MB to well under 1 MB gzip'd.

Output, per release and package (sdtm, adam, define):
    cdiscforge/data/ct/<date>/<package>.tsv.gz
a gzip'd TSV with columns codelist, code, value, synonyms, preferred_term, extensible, name:
one header row per codelist (codelist empty; code = its NCI code, value = its short name,
extensible Yes/No, name) followed by its terms (codelist = the header's code), codelists by
NCI code, terms by submission value. Written deterministically (gzip mtime 0, no file name),
so a rerun on the same sources is byte-identical.

It also writes tests/fixtures/ct_counts.json: the codelist and term counts of each source file,
counted here from the sources themselves, which tests/test_ct_bundle.py compares with what
cdiscforge loads from the package (the tests never read the source files).

Usage: python scripts/make_ct_package.py [CT_DIR]   (default ../shared/reference/ct)
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "sdtm": ("SDTM_Terminology_{v}.txt", "\t"),
    "adam": ("ADaM_CT_{v}.csv", ","),
    "define": ("Define-XML_CT_{v}.csv", ","),
}
COLUMNS = ["codelist", "code", "value", "synonyms", "preferred_term", "extensible", "name"]


def _read(path: Path, sep: str) -> pd.DataFrame:
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    return frame.rename(
        columns={
            "Codelist Code": "codelist",
            "Code": "code",
            "CDISC Submission Value": "value",
            "CDISC Synonym(s)": "synonyms",
            "NCI Preferred Term": "preferred_term",
            "Codelist Extensible (Yes/No)": "extensible",
            "Codelist Name": "name",
        }
    )


def package_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The package layout: header row then terms per codelist, sorted, terms without name."""
    heads = frame[frame["codelist"] == ""].copy()
    terms = frame[frame["codelist"] != ""].copy()
    orphans = sorted(set(terms["codelist"]) - set(heads["code"]))
    if orphans:
        raise SystemExit(f"terms of codelists without a header row: {orphans[:5]}")
    terms["extensible"] = ""
    terms["name"] = ""
    heads["order"] = 0
    terms["order"] = 1
    heads["key"] = heads["code"]
    terms["key"] = terms["codelist"]
    both = pd.concat([heads, terms], ignore_index=True)
    both = both.sort_values(["key", "order", "value", "code"], kind="stable")
    return both[COLUMNS].reset_index(drop=True)


def write_gzip(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)


def main(ct_dir: Path) -> dict[str, dict[str, dict[str, int]]]:
    sdtm_files = sorted(ct_dir.glob(SOURCES["sdtm"][0].format(v="*")))
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for sdtm_file in sdtm_files:
        version = re.search(r"(\d{4}-\d{2}-\d{2})", sdtm_file.name).group(1)  # type: ignore[union-attr]
        counts[version] = {}
        for package, (pattern, sep) in SOURCES.items():
            source = ct_dir / pattern.format(v=version)
            if not source.exists():
                print(f"{source}: missing, package {package} {version} not bundled")
                continue
            frame = _read(source, sep)
            table = package_table(frame)
            buf = io.StringIO()
            table.to_csv(buf, sep="\t", index=False, lineterminator="\n")
            out = ROOT / "cdiscforge/data/ct" / version / f"{package}.tsv.gz"
            write_gzip(out, buf.getvalue().encode("utf-8"))
            n_lists = int((frame["codelist"] == "").sum())
            n_terms = int((frame["codelist"] != "").sum())
            counts[version][package] = {"codelists": n_lists, "terms": n_terms}
            print(
                f"{out.relative_to(ROOT)}: {n_lists} codelists, {n_terms} terms, "
                f"{out.stat().st_size} bytes (source {source.stat().st_size} bytes)"
            )
    fixture = ROOT / "tests/fixtures/ct_counts.json"
    fixture.write_text(
        json.dumps(
            {"source": "NCI EVS CT files counted by scripts/make_ct_package.py", **counts},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return counts


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/reference/ct")

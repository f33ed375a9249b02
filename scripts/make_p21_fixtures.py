"""Write the P21 specification workbooks under tests/fixtures/p21/ from the bundled study's YAML.

Hand-made (no third-party file copied): the sheets and columns are those of the Pinnacle 21
Community Define-XML 2.1 specification template, filled from the target metadata of a
subset of specs/nct03691909 (DM, AE, DS) as the spec loader reads it. The rows are built
here, independently of cdiscforge.p21's writer, so the reader is tested against a workbook
it did not write.

- `nct03691909_subset.xlsx`: the clean export, P21 2.1 column names.
- `pain_points.xlsx`: the same metadata with what breaks other readers (metacore #77 a
  README sheet before the spec sheets, #49 a composite where-clause, #152 value-level
  codelists, extra house columns, older column names: Label, CRF Pages, Controlled Terms,
  origin CRF, and an unknown "Change Log" sheet).
- `planted_errors.xlsx` + `planted_errors.json`: the clean workbook with one error planted per
  entry of the JSON (sheet, Excel row, column, value), which the test expects all reported.

Run from the repository root: `python scripts/make_p21_fixtures.py` (deterministic bytes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from cdiscforge import ct
from cdiscforge.spec import load_study
from cdiscforge.xlsx import write_workbook

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "p21"
DATASETS = ("DM", "AE", "DS")

COLUMNS = {
    "Study": ["Attribute", "Value"],
    "Datasets": ["Dataset", "Description", "Class", "Structure", "Purpose", "Key Variables",
                 "Standard", "Has No Data", "Repeating", "Reference Data", "Comment",
                 "Developer Notes"],
    "Variables": ["Order", "Dataset", "Variable", "Label", "Data Type", "Length",
                  "Significant Digits", "Format", "Mandatory", "Assigned Value", "Codelist",
                  "Common", "Origin", "Source", "Pages", "Method", "Predecessor", "Role",
                  "Has No Data", "Comment", "Developer Notes"],
    "ValueLevel": ["Order", "Dataset", "Variable", "Where Clause", "Description", "Data Type",
                   "Length", "Significant Digits", "Format", "Mandatory", "Assigned Value",
                   "Codelist", "Origin", "Source", "Pages", "Method", "Predecessor", "Comment",
                   "Developer Notes"],
    "WhereClauses": ["ID", "Dataset", "Variable", "Comparator", "Value", "Comment"],
    "Codelists": ["ID", "Name", "NCI Codelist Code", "Data Type", "Terminology", "Comment",
                  "Order", "Term", "NCI Term Code", "Decoded Value"],
    "Dictionaries": ["ID", "Name", "Data Type", "Dictionary", "Version"],
    "Methods": ["ID", "Name", "Type", "Description", "Expression Context", "Expression Code",
                "Document", "Pages"],
    "Comments": ["ID", "Description", "Document", "Pages"],
    "Documents": ["ID", "Title", "Href"],
}  # fmt: skip


def _data_type(meta: Any) -> str:
    if meta.type == "Num":
        return "float" if meta.significant_digits else "integer"
    return "datetime" if meta.name.endswith("DTC") else "text"


def sheets_from_study() -> dict[str, list[dict[str, Any]]]:
    """Every sheet's rows (column -> value) for the subset, from the loaded YAML."""
    study = load_study(ROOT / "specs" / "nct03691909")
    info = study.info()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in COLUMNS}
    rows["Study"] = [
        {"Attribute": "StudyName", "Value": info.name},
        {"Attribute": "StudyDescription", "Value": info.description},
        {"Attribute": "ProtocolName", "Value": info.protocol},
        {"Attribute": "StandardName", "Value": "SDTMIG"},
        {"Attribute": "StandardVersion", "Value": "3.4"},
    ]
    methods: dict[str, str] = {}
    comments: dict[str, str] = {}
    codelists: list[str] = []
    dictionaries: list[str] = []
    from cdiscforge import standards

    for name in DATASETS:
        spec = study.datasets[name]
        kept = [v.meta for v in spec.variables if v.keep]
        order = standards.sdtm_variable_order(name, [v.name for v in kept])
        kept.sort(key=lambda v: order.index(v.name))
        if spec.comment:
            comments[f"COM.{name}"] = spec.comment
        rows["Datasets"].append({
            "Dataset": name, "Description": spec.label, "Class": spec.klass,
            "Structure": spec.structure, "Purpose": "Tabulation",
            "Key Variables": ", ".join(spec.keys), "Standard": spec.standard,
            "Comment": f"COM.{name}" if spec.comment else None,
        })  # fmt: skip
        for i, v in enumerate(kept, start=1):
            if v.method:
                methods[f"MT.{name}.{v.name}"] = v.method
            if v.comment:
                comments[f"COM.{name}.{v.name}"] = v.comment
            ref = v.dictionary or v.codelist
            for cl in [ref, *(vl.codelist for vl in v.value_level)]:
                target = dictionaries if cl == v.dictionary else codelists
                if cl and cl not in target:
                    target.append(cl)
            rows["Variables"].append({
                "Order": i, "Dataset": name, "Variable": v.name, "Label": v.label,
                "Data Type": _data_type(v), "Length": v.length,
                "Significant Digits": v.significant_digits, "Format": v.format,
                "Mandatory": "Yes" if v.core == "Req" else "No", "Codelist": ref,
                "Origin": v.origin, "Source": v.source, "Pages": " ".join(v.crf_pages) or None,
                "Method": f"MT.{name}.{v.name}" if v.method else None,
                "Predecessor": v.predecessor, "Role": v.role,
                "Comment": f"COM.{name}.{v.name}" if v.comment else None,
            })  # fmt: skip
            for vl in v.value_level:
                wc = f"WC.{name}.{v.name}.{vl.by}.{vl.value.replace(' ', '_')}"
                rows["WhereClauses"].append({"ID": wc, "Dataset": name, "Variable": vl.by,
                                             "Comparator": "EQ", "Value": vl.value})  # fmt: skip
                if vl.method:
                    methods[f"MT.{name}.{v.name}.{vl.value}"] = vl.method
                rows["ValueLevel"].append({
                    "Order": len(rows["ValueLevel"]) + 1, "Dataset": name, "Variable": v.name,
                    "Where Clause": wc, "Description": vl.label, "Data Type": _data_type(v),
                    "Codelist": vl.codelist, "Origin": v.origin,
                    "Method": f"MT.{name}.{v.name}.{vl.value}" if vl.method else None,
                })  # fmt: skip
    sponsor = {c.key: c for c in info.codelists}
    for key in codelists:
        if key in sponsor:
            terms = [(t, None) for t in sponsor[key].terms]
            head = {"Name": sponsor[key].name}
        else:
            cl = ct.codelist(key)
            terms = list(zip(cl.terms["value"], cl.terms["code"], strict=True))
            head = {"Name": cl.name, "NCI Codelist Code": cl.code, "Terminology": "CDISC/NCI"}
        for j, (term, code) in enumerate(terms, start=1):
            rows["Codelists"].append({"ID": key, **head, "Data Type": "text", "Order": j,
                                      "Term": term, "NCI Term Code": code})  # fmt: skip
    for d in info.dictionaries:
        if d.key in dictionaries:
            rows["Dictionaries"].append({"ID": d.key, "Name": d.name, "Data Type": "text",
                                         "Dictionary": d.name, "Version": d.version})  # fmt: skip
    for oid, text in sorted(methods.items()):
        rows["Methods"].append({"ID": oid, "Name": f"Algorithm for {oid[3:]}",
                                "Type": "Computation", "Description": text})  # fmt: skip
    for oid, text in sorted(comments.items()):
        rows["Comments"].append({"ID": oid, "Description": text})
    for doc in info.documents:
        if "sdtm" in doc.stages:
            rows["Documents"].append({"ID": doc.key, "Title": doc.title, "Href": doc.href})
    return rows


def write(
    path: Path,
    rows: dict[str, list[dict[str, Any]]],
    columns: dict[str, list[str]],
    *,
    readme: bool = False,
    rename: dict[str, str] | None = None,
) -> None:
    wb = Workbook()
    wb.remove(wb.active)
    if readme:
        ws = wb.create_sheet("README")
        ws.append(["How to use this specification"])
        ws.append(["Datasets and Variables sheets hold the dataset and variable metadata."])
        ws.append(["Variable", "Dataset", "Label"])  # looks like a header; it is not a spec
    for sheet, cols in columns.items():
        ws = wb.create_sheet(sheet)
        ws.append([(rename or {}).get(f"{sheet}.{c}", c) for c in cols])
        for rec in rows[sheet]:
            ws.append([rec.get(c) for c in cols])
    if readme:
        wb.create_sheet("Change Log").append(["Date", "Change"])
    write_workbook(wb, path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = sheets_from_study()
    write(OUT / "nct03691909_subset.xlsx", rows, COLUMNS)

    # Pain points: README first, older column names, extra columns, origin CRF, and a
    # composite where-clause with its own value-level row (AND of two conditions).
    pain = {k: [dict(r) for r in v] for k, v in rows.items()}
    for rec in pain["Variables"]:
        if rec["Origin"] == "Collected" and rec["Source"] == "Investigator":
            rec["Origin"] = "CRF"  # Define 2.0 templates; read as Collected
        rec["Programmer"] = "jdoe"
        if (rec["Dataset"], rec["Variable"]) == ("DM", "SEX"):
            rec["Pages"] = "3, 4"  # under the older name CRF Pages (the YAML states none)
    pain["WhereClauses"] += [
        {"ID": "WC.DS.DSTERM.DISP_SCRN", "Dataset": "DS", "Variable": "DSCAT",
         "Comparator": "EQ", "Value": "DISPOSITION EVENT"},
        {"ID": "WC.DS.DSTERM.DISP_SCRN", "Dataset": "DS", "Variable": "DSDECOD",
         "Comparator": "IN", "Value": "SCREEN FAILURE, WITHDRAWAL OF CONSENT"},
    ]  # fmt: skip
    pain["ValueLevel"].append({
        "Order": len(pain["ValueLevel"]) + 1, "Dataset": "DS", "Variable": "DSTERM",
        "Where Clause": "WC.DS.DSTERM.DISP_SCRN", "Description": "Reason not completed",
        "Data Type": "text", "Origin": "Collected",
    })  # fmt: skip
    columns = {k: list(v) for k, v in COLUMNS.items()}
    columns["Variables"].append("Programmer")
    columns["Datasets"].append("QC Status")
    write(
        OUT / "pain_points.xlsx", pain, columns, readme=True,
        rename={"Datasets.Description": "Label", "Variables.Pages": "CRF Pages",
                "Variables.Codelist": "Controlled Terms", "Variables.Significant Digits":
                "SignificantDigits"},
    )  # fmt: skip

    # Planted errors: one per entry, each at a known sheet, Excel row and column.
    bad = {k: [dict(r) for r in v] for k, v in rows.items()}
    planted: list[dict[str, Any]] = []

    def plant(sheet: str, index: int, column: str, value: Any) -> None:
        bad[sheet][index][column] = value
        planted.append({"sheet": sheet, "row": index + 2, "column": column, "value": value})

    def index_of(sheet: str, **match: Any) -> int:
        hits = [i for i, r in enumerate(bad[sheet]) if all(r.get(k) == v for k, v in match.items())]
        return hits[0]

    plant("Datasets", index_of("Datasets", Dataset="AE"), "Description",
          "Adverse Events reported during the trial and after")  # fmt: skip
    plant("Datasets", index_of("Datasets", Dataset="DM"), "Key Variables", "STUDYID, SUBJIDX")
    plant("Variables", index_of("Variables", Dataset="DM", Variable="AGE"), "Length", "eight")
    plant("Variables", index_of("Variables", Dataset="DM", Variable="SEX"), "Data Type", "strng")
    plant("Variables", index_of("Variables", Dataset="DM", Variable="RACE"), "Origin", "Collectd")
    plant("Variables", index_of("Variables", Dataset="AE", Variable="AESEV"), "Codelist", "NOSUCH")
    plant("Variables", index_of("Variables", Dataset="AE", Variable="AESEQ"), "Method",
          "MT.AE.MISSING")  # fmt: skip
    plant("Variables", index_of("Variables", Dataset="AE", Variable="AESER"), "Source", "Nurse")
    plant("Variables", index_of("Variables", Dataset="DS", Variable="DSTERM"), "Label", None)
    plant("Variables", index_of("Variables", Dataset="DS", Variable="DSSTDY"), "Dataset", "XX")
    plant("WhereClauses", 0, "Comparator", "EQUALS")
    plant("ValueLevel", 1, "Where Clause", "WC.NONE")
    plant("Codelists", 0, "Term", None)
    plant("Comments", 0, "Description", None)
    write(OUT / "planted_errors.xlsx", bad, COLUMNS)
    (OUT / "planted_errors.json").write_text(json.dumps(planted, indent=1) + "\n")


if __name__ == "__main__":
    main()

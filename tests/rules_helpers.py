"""A small consistent study for the rule-family tests, and helpers to plant one fault in it.

`rich_study()` is test_validation's three-subject study plus the datasets and variables the
newer rules read (TS with every FDA-required parameter, TE, DS, IE for the screen failure,
SUPPAE.AETRTEM, DM.RFPENDTC and TV.VISITDY, baseline flags and units in LB,
CHG/PCHG/ANL01FL in ADLB, ASTDTF in ADAE), so each rule has a clean case here and a
planted fault in the tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pandas as pd
from test_validation import STUDY, SUBJECTS, _dataset, good_study

from cdiscforge.model import Dataset, Variable
from cdiscforge.validation import validate_datasets
from cdiscforge.validation.catalogue import params
from cdiscforge.validation.rules import Study, run_rules
from cdiscforge.validation.suites import batch_frame, ig_table

S1, S2, S3 = SUBJECTS


def add_column(study: dict, name: str, column: str, values: list, vtype: str = "Char") -> None:
    """Append a variable (frame column and metadata) to a dataset of the study."""
    ds = study[name]
    frame = ds.frame.copy()
    frame[column] = values
    ig = ig_table(ds)
    label = ig.loc[column, "label"] if column in ig.index else column.title()
    variables = [*ds.variables, Variable(column, label, vtype)]
    study[name] = Dataset(
        ds.name,
        ds.label,
        frame,
        variables,
        keys=ds.keys,
        standard=ds.standard,
        structure=ds.structure,
    )


def reorder(study: dict, name: str, order: list[str]) -> None:
    ds = study[name]
    by_name = {v.name: v for v in ds.variables}
    study[name] = Dataset(
        ds.name,
        ds.label,
        ds.frame[order],
        [by_name[n] for n in order],
        keys=ds.keys,
        standard=ds.standard,
        structure=ds.structure,
    )


def ig_order(study: dict, name: str) -> None:
    """Put a dataset's IG variables in the IG's order (others after them)."""
    ds = study[name]
    order = ig_table(ds)["order"].astype(int).to_dict()
    names = sorted(ds.variable_names, key=lambda n: order.get(n, 10_000))
    reorder(study, name, names)


def set_value(study: dict, name: str, column: str, row: int, value) -> None:
    study[name].frame.loc[row, column] = value


def drop_rows(study: dict, name: str, rows: list[int]) -> None:
    study[name].frame = study[name].frame.drop(index=rows).reset_index(drop=True)


def duplicate_row(study: dict, name: str, row: int) -> None:
    f = study[name].frame
    study[name].frame = pd.concat([f, f.iloc[[row]]], ignore_index=True)


def drop_dataset(study: dict, name: str) -> None:
    del study[name]


def rich_study() -> dict[str, Dataset]:
    study = good_study()
    required = params("CF-SD-0026")["required"]
    values = {"SSTDTC": "2019-01-01", "SENDTC": "2019-12-31", "AGEMIN": "P18Y"}
    n = len(required)
    study["TS"] = _dataset(
        "TS",
        {
            "STUDYID": [STUDY] * n,
            "DOMAIN": ["TS"] * n,
            "TSSEQ": [1.0] * n,
            "TSPARMCD": required,
            "TSPARM": ["Parameter"] * n,
            "TSVAL": [values.get(c, "X") for c in required],
            "TSVALNF": [None] * n,
        },
    )
    study["TE"] = _dataset(
        "TE",
        {
            "STUDYID": [STUDY] * 2,
            "DOMAIN": ["TE"] * 2,
            "ETCD": ["SCRN", "MSC"],
            "ELEMENT": ["Screening", "MSC infusion"],
            "TESTRL": ["Informed consent", "Infusion"],
        },
    )
    study["DS"] = _dataset(
        "DS",
        {
            "STUDYID": [STUDY] * 3,
            "DOMAIN": ["DS"] * 3,
            "USUBJID": SUBJECTS,
            "DSSEQ": [1.0, 1.0, 1.0],
            "DSTERM": ["COMPLETED", "COMPLETED", "SCREEN FAILURE"],
            "DSDECOD": ["COMPLETED", "COMPLETED", "SCREEN FAILURE"],
            "DSCAT": ["DISPOSITION EVENT"] * 3,
            "DSSTDTC": ["2019-03-01", "2019-03-20", "2019-01-05"],
        },
    )
    study["IE"] = _dataset(
        "IE",
        {
            "STUDYID": [STUDY],
            "DOMAIN": ["IE"],
            "USUBJID": [S3],
            "IESEQ": [1.0],
            "IETESTCD": ["IN01"],
            "IETEST": ["Age 18 to 75 years"],
            "IECAT": ["INCLUSION"],
            "IEORRES": ["N"],
            "IESTRESC": ["N"],
            "IEDTC": ["2019-01-05"],
        },
    )
    supp = study["SUPPAE"].frame
    trtem = pd.DataFrame(
        {
            "STUDYID": [STUDY] * 3,
            "RDOMAIN": ["AE"] * 3,
            "USUBJID": [S1, S1, S2],
            "IDVAR": ["AESEQ"] * 3,
            "IDVARVAL": ["1", "2", "1"],
            "QNAM": ["AETRTEM"] * 3,
            "QLABEL": ["Treatment Emergent Flag"] * 3,
            "QVAL": ["Y", "Y", "N"],
            "QORIG": ["Derived"] * 3,
        }
    )
    study["SUPPAE"].frame = pd.concat([supp.iloc[0:0], trtem], ignore_index=True)
    add_column(study, "AE", "AEENRTPT", [None, "ONGOING", None])
    add_column(study, "AE", "AEENTPT", [None, "END OF STUDY", None])
    add_column(study, "LB", "LBORRESU", ["U/L"] * 4)
    add_column(study, "LB", "LBSTRESU", ["U/L"] * 4)
    add_column(study, "LB", "LBBLFL", ["Y", None, "Y", None])
    add_column(study, "SV", "SVPRESP", ["Y"] * 4)
    add_column(study, "SV", "SVOCCUR", ["Y"] * 4)
    add_column(study, "DM", "RFPENDTC", ["2019-01-17", "2019-02-08", "2019-01-05"])
    add_column(study, "TV", "VISITDY", [1.0, 8.0], "Num")
    add_column(study, "ADLB", "CHG", [None, 14.0, None, -15.5], "Num")
    add_column(study, "ADLB", "PCHG", [None, 100 * 14 / 21, None, 100 * -15.5 / 18], "Num")
    add_column(study, "ADLB", "ANL01FL", ["Y"] * 4)
    add_column(study, "ADAE", "ASTDTF", [None, None, None])
    for ds in list(study.values()):
        if not ds.standard.startswith("ADaM"):
            ig_order(study, ds.name)
    return study


def findings(study: dict, *, full: bool = False) -> dict[tuple, int]:
    """Findings of the registered rules (or, with `full`, of the whole validation incl. GX).

    The rule families are plain functions over the frames, so their tests run them directly
    (milliseconds); tests/test_rules_cli_build.py runs the same faults through the CLI.
    """
    if full:
        found = validate_datasets(list(study.values())).findings
    else:
        frames = {name: batch_frame(ds) for name, ds in study.items()}
        found, _ = run_rules(Study(dict(study), frames))
    return {(f.rule_id, f.dataset, f.variables): f.count for f in found}


def planted(edit: Callable[[dict], None], base: dict[tuple, int]) -> dict[tuple, int]:
    """Findings that are new or changed after planting `edit` into a fresh rich study."""
    study = copy.deepcopy(rich_study())
    edit(study)
    return {k: v for k, v in findings(study).items() if base.get(k) != v}


def assert_fault_found(
    edit: Callable[[dict], None], expected: dict[tuple, int], base: dict[tuple, int]
) -> None:
    """A planted fault gives exactly the expected counts for rules clean on the rich study."""
    new = planted(edit, base)
    for key, count in expected.items():
        assert key[0] not in {k[0] for k in base}, f"{key[0]} not clean on the consistent study"
        assert new.get(key) == count, (key, count, new)

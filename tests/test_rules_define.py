"""define.xml against the data: a define.xml written from the datasets is clean; each planted
metadata fault is found."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from rules_helpers import rich_study

from cdiscforge.validation.rules_define import check_define

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.1"


def define_xml(
    datasets,
    *,
    skip_dataset=None,
    skip_item=None,
    extra_item=None,
    dtype=None,
    length=None,
    no_meddra=False,
    no_origin=None,
    no_method=None,
    vlm=None,
    codelists=None,
) -> str:
    """A minimal Define-XML 2.1 document describing `datasets`, with one fault planted.

    `vlm` maps (dataset, variable) to (key variable, values): a ValueListDef on the variable
    with one WhereClauseDef per value; `codelists` maps (dataset, variable) to (CodeList OID,
    coded values, or None for a CodeListRef to no CodeList).
    """
    vlm, codelists = vlm or {}, codelists or {}
    groups, items, extra = [], [], []
    for (dsname, var), (key, values) in vlm.items():
        refs = "".join(
            f'<ItemRef ItemOID="IT.{dsname}.{var}.{v}" OrderNumber="{i}" Mandatory="No">'
            f'<def:WhereClauseRef WhereClauseOID="WC.{dsname}.{var}.{v}"/></ItemRef>'
            for i, v in enumerate(values, 1)
        )
        extra.append(f'<def:ValueListDef OID="VL.{dsname}.{var}">{refs}</def:ValueListDef>')
        extra += [
            f'<def:WhereClauseDef OID="WC.{dsname}.{var}.{v}"><RangeCheck Comparator="EQ" '
            f'SoftHard="Soft" def:ItemOID="IT.{dsname}.{key}"><CheckValue>{v}</CheckValue>'
            "</RangeCheck></def:WhereClauseDef>"
            for v in values
        ]
    for oid, values in {o: v for o, v in codelists.values() if v is not None}.items():
        extra.append(
            f'<CodeList OID="{oid}" Name="{oid}" DataType="text">'
            + "".join(f'<EnumeratedItem CodedValue="{v}"/>' for v in values)
            + "</CodeList>"
        )
    for ds in datasets:
        if ds.name == skip_dataset:
            continue
        refs = []
        names = [v.name for v in ds.variables] + (
            [extra_item] if extra_item and ds.name == "AE" else []
        )
        for i, name in enumerate(names, 1):
            if name == skip_item:
                continue
            var = next((v for v in ds.variables if v.name == name), None)
            char = var is None or var.is_char
            oid = f"IT.{ds.name}.{name}"
            derived = name.endswith("SEQ")
            method = "" if name == no_method else (' MethodOID="MT.SEQ"' if derived else "")
            refs.append(f'<ItemRef ItemOID="{oid}" OrderNumber="{i}" Mandatory="No"{method}/>')
            data_type = dtype[1] if dtype and dtype[0] == name else ("text" if char else "integer")
            size = ds.frame[name].astype("string").str.len().max() if var is not None else 8
            size = 1 if pd.isna(size) else max(int(size), 1)  # as the XPT writer fits it
            size = length[1] if length and length[0] == name else (size if char else 8)
            origin = (
                ""
                if name == no_origin
                else (f'<def:Origin Type="{"Derived" if derived else "Collected"}"/>')
            )
            codelist = (
                '<CodeListRef CodeListOID="CL.MEDDRA"/>'
                if name == "AEDECOD" and not no_meddra
                else ""
            )
            if (ds.name, name) in codelists:
                codelist = f'<CodeListRef CodeListOID="{codelists[ds.name, name][0]}"/>'
            if (ds.name, name) in vlm:
                origin += f'<def:ValueListRef ValueListOID="VL.{ds.name}.{name}"/>'
            items.append(
                f'<ItemDef OID="{oid}" Name="{name}" DataType="{data_type}" Length="{size}">'
                f"{codelist}{origin}</ItemDef>"
            )
        groups.append(
            f'<ItemGroupDef OID="IG.{ds.name}" Name="{ds.name}" Repeating="Yes">'
            + "".join(refs)
            + "</ItemGroupDef>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ODM xmlns="{ODM}" xmlns:def="{DEF}">'
        '<Study OID="S"><MetaDataVersion OID="MDV" Name="MDV">'
        + "".join(extra)
        + "".join(groups)
        + "".join(items)
        + '<CodeList OID="CL.MEDDRA" Name="MedDRA" DataType="text">'
        '<ExternalCodeList Dictionary="MedDRA" Version="26.0"/></CodeList>'
        '<MethodDef OID="MT.SEQ" Name="Sequence" Type="Computation"/>'
        "</MetaDataVersion></Study></ODM>"
    )


@pytest.fixture(scope="module")
def datasets():
    study = rich_study()
    return [study["AE"], study["DM"]]


def _found(tmp_path: Path, datasets, **fault) -> dict[tuple, int]:
    path = tmp_path / "define.xml"
    path.write_text(define_xml(datasets, **fault), encoding="utf-8")
    findings, _ = check_define(path, datasets)
    return {(f.rule_id, f.dataset, f.variables): f.count for f in findings}


def test_define_written_from_the_data_is_clean(tmp_path, datasets):
    assert _found(tmp_path, datasets) == {}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"skip_dataset": "DM"}, ("CF-DF-0001", "DM", ())),
        ({"skip_item": "AETERM"}, ("CF-DF-0002", "AE", ("AETERM",))),
        ({"extra_item": "AEFOO"}, ("CF-DF-0003", "AE", ("AEFOO",))),
        ({"dtype": ("AETERM", "integer")}, ("CF-DF-0004", "AE", ("AETERM",))),
        ({"no_meddra": True}, ("CF-DF-0006", "AE", ("AEDECOD",))),
        ({"no_origin": "AETERM"}, ("CF-DF-0007", "AE", ("AETERM",))),
        ({"no_method": "AESEQ"}, ("CF-DF-0008", "AE", ("AESEQ",))),
    ],
)
def test_planted_define_fault_is_found(tmp_path, datasets, fault, expected):
    assert _found(tmp_path, datasets, **fault) == {expected: 1}


def test_length_mismatch_is_a_notice(tmp_path, datasets):
    ae = datasets[0]
    ae.variable("AETERM").length = 8
    try:
        path = tmp_path / "define.xml"
        path.write_text(define_xml(datasets, length=("AETERM", 200)), encoding="utf-8")
        findings, _ = check_define(path, datasets)
    finally:
        ae.variable("AETERM").length = None
    (finding,) = findings
    assert finding.rule_id == "CF-DF-0005" and finding.severity == "notice"


# Value-level metadata and codelists: SUPPAE QVAL by QNAM, LB results by LBTESTCD, and a
# define codelist for LBORRESU, all matching the rich study's data.
CLEAN_VLM = {
    ("SUPPAE", "QVAL"): ("QNAM", ["AETRTEM"]),
    ("LB", "LBORRES"): ("LBTESTCD", ["ALT"]),
    ("LB", "LBSTRESC"): ("LBTESTCD", ["ALT"]),
}
CLEAN_CODELISTS = {("LB", "LBORRESU"): ("CL.UNIT", ["U/L"])}


@pytest.fixture()
def more():
    study = rich_study()
    return [study[n] for n in ("AE", "DM", "SUPPAE", "LB")]


def test_value_level_metadata_and_codelists_matching_the_data_are_clean(tmp_path, more):
    assert _found(tmp_path, more, vlm=CLEAN_VLM, codelists=CLEAN_CODELISTS) == {}


def test_supp_qnam_without_value_level_metadata(tmp_path, more):
    more[2].frame.loc[0, "QNAM"] = "AESPFL"  # a qualifier define.xml does not describe
    found = _found(tmp_path, more, vlm=CLEAN_VLM, codelists=CLEAN_CODELISTS)
    assert found == {("CF-DF-0009", "SUPPAE", ("QVAL", "QNAM")): 1}


def test_supp_without_any_qval_value_list(tmp_path, more):
    vlm = {k: v for k, v in CLEAN_VLM.items() if k[0] != "SUPPAE"}
    found = _found(tmp_path, more, vlm=vlm, codelists=CLEAN_CODELISTS)
    assert found == {("CF-DF-0009", "SUPPAE", ("QVAL", "QNAM")): 3}


def test_testcd_missing_from_a_declared_value_list(tmp_path, more):
    more[3].frame.loc[1, "LBTESTCD"] = "AST"
    found = _found(tmp_path, more, vlm=CLEAN_VLM, codelists=CLEAN_CODELISTS)
    assert found == {
        ("CF-DF-0010", "LB", ("LBORRES", "LBTESTCD")): 1,
        ("CF-DF-0010", "LB", ("LBSTRESC", "LBTESTCD")): 1,
    }


def test_findings_without_value_lists_are_not_held_to_them(tmp_path, more):
    """Value-level metadata by --TESTCD is checked only where define.xml declares it."""
    vlm = {k: v for k, v in CLEAN_VLM.items() if k[0] != "LB"}
    assert _found(tmp_path, more, vlm=vlm, codelists=CLEAN_CODELISTS) == {}


def test_codelist_ref_to_a_missing_codelist(tmp_path, more):
    codelists = {**CLEAN_CODELISTS, ("LB", "LBSTRESU"): ("CL.GONE", None)}
    found = _found(tmp_path, more, vlm=CLEAN_VLM, codelists=codelists)
    assert found == {("CF-DF-0011", "LB", ("LBSTRESU",)): 1}


def test_data_value_not_in_its_define_codelist(tmp_path, more):
    more[3].frame.loc[2, "LBORRESU"] = "mg/dL"
    found = _found(tmp_path, more, vlm=CLEAN_VLM, codelists=CLEAN_CODELISTS)
    assert found == {("CF-DF-0012", "LB", ("LBORRESU",)): 1}


def test_numbers_compare_as_define_spells_them(tmp_path, more):
    """9.299999999999999 read from XPT is the CodedValue 9.3; 1.0 is 1."""
    lb = more[3]
    lb.frame["VISITNUM"] = [1.0, 9.299999999999999, 1.0, 9.299999999999999]
    codelists = {**CLEAN_CODELISTS, ("LB", "VISITNUM"): ("CL.VISITNUM", ["1", "9.3"])}
    assert _found(tmp_path, more, vlm=CLEAN_VLM, codelists=codelists) == {}


@pytest.mark.parametrize("categorical", [False, True])
def test_counts_and_values_on_a_large_dataset_match_the_records(tmp_path, more, categorical):
    """Above the size where values are tested once per distinct value (categorical or text
    columns), the findings count the records a per-record test counts and name the values."""
    lb = more[3]
    frame = pd.concat([lb.frame] * 400, ignore_index=True)  # 1,600 records
    frame.loc[frame.index % 7 == 1, "LBTESTCD"] = "AST"
    frame.loc[frame.index % 11 == 2, "LBTESTCD"] = "GGT"
    frame.loc[frame.index % 13 == 3, "LBORRESU"] = "mg/dL"
    frame.loc[frame.index % 17 == 4, "LBORRESU"] = None
    frame.loc[frame.index % 5 == 0, "LBORRES"] = ""  # not populated: not held to a value list
    if categorical:
        for name in ("LBTESTCD", "LBORRESU", "LBORRES", "LBSTRESC"):
            frame[name] = frame[name].astype("category")
    lb.frame = frame
    path = tmp_path / "define.xml"
    path.write_text(define_xml(more, vlm=CLEAN_VLM, codelists=CLEAN_CODELISTS), encoding="utf-8")
    findings, _ = check_define(path, more)
    got = {(f.rule_id, f.variables): (f.count, f.message) for f in findings}
    testcd = frame["LBTESTCD"].astype("string")
    undescribed = testcd.notna() & (testcd != "ALT")
    populated = frame["LBORRES"].astype("string").str.strip().fillna("") != ""
    units = frame["LBORRESU"].astype("string")
    unlisted = units.notna() & (units != "U/L")
    assert got[("CF-DF-0010", ("LBORRES", "LBTESTCD"))][0] == int((undescribed & populated).sum())
    assert got[("CF-DF-0010", ("LBSTRESC", "LBTESTCD"))][0] == int(undescribed.sum())
    count, message = got[("CF-DF-0012", ("LBORRESU",))]
    assert count == int(unlisted.sum())
    assert "'mg/dL'" in message
    assert "AST, GGT without" in got[("CF-DF-0010", ("LBORRES", "LBTESTCD"))][1]
    assert set(got) == {
        ("CF-DF-0010", ("LBORRES", "LBTESTCD")),
        ("CF-DF-0010", ("LBSTRESC", "LBTESTCD")),
        ("CF-DF-0012", ("LBORRESU",)),
    }

"""define.xml as a reviewer receives it, from a default build through the CLI: external
dictionaries, origins with sources, readable methods, value-level metadata for SUPP--,
roles, SUPP-- domains, ADaM class/subclass, codelists and document links (issue 12)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from lxml import etree

from cdiscforge.cli import main
from cdiscforge.rules import RULES
from cdiscforge.rules.words import Words, describe_rule
from cdiscforge.spec import load_study

NS = {
    "odm": "http://www.cdisc.org/ns/odm/v1.3",
    "def": "http://www.cdisc.org/ns/def/v2.1",
    "xlink": "http://www.w3.org/1999/xlink",
}
SPEC = Path(__file__).resolve().parents[1] / "specs" / "nct03691909"
# Variables MedDRA codes (SDTMIG 3.4 AE/MH, and their ADaM copies).
MEDDRA = {
    "AELLT", "AELLTCD", "AEDECOD", "AEPTCD", "AEHLT", "AEHLTCD", "AEHLGT", "AEHLGTCD",
    "AEBODSYS", "AEBDSYCD", "AESOC", "AESOCCD", "MHDECOD", "MHBODSYS", "MHLLT", "MHLLTCD",
    "MHPTCD", "MHSOC", "MHSOCCD",
}  # fmt: skip
# What Python shows when a repr or a call leaks into text: `seq(`, `['A'`, `{'col'`, `=[`.
_REPR = re.compile(r"\w\(|\[|\{|\}|\]|=\[|\bNone\b|\bTrue\b|\bFalse\b|\.yaml\b|`")
_HELPER = re.compile(r"(?<![A-Za-z0-9])_[A-Z][A-Z0-9]*")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package") / "out"
    result = CliRunner().invoke(main, ["build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _mdv(path: Path) -> etree._Element:
    doc = etree.parse(str(path))
    mdv = doc.find(".//odm:MetaDataVersion", NS)
    assert mdv is not None
    return mdv


@pytest.fixture(scope="module", params=["sdtm", "adam"])
def mdv(request: pytest.FixtureRequest, build: Path) -> etree._Element:
    return _mdv(build / request.param / "define.xml")


def _items(mdv: etree._Element) -> dict[str, etree._Element]:
    return {el.get("OID"): el for el in mdv.findall("odm:ItemDef", NS)}


def _group_items(mdv: etree._Element) -> list[tuple[etree._Element, etree._Element]]:
    items = _items(mdv)
    return [
        (ig, items[ref.get("ItemOID")])
        for ig in mdv.findall("odm:ItemGroupDef", NS)
        for ref in ig.findall("odm:ItemRef", NS)
    ]


def test_every_meddra_coded_item_has_an_external_codelist_with_a_version(
    mdv: etree._Element,
) -> None:
    codelists = {cl.get("OID"): cl for cl in mdv.findall("odm:CodeList", NS)}
    coded = [(ig, item) for ig, item in _group_items(mdv) if item.get("Name") in MEDDRA]
    assert coded, "no MedDRA-coded variable in this define.xml"
    for ig, item in coded:
        ref = item.find("odm:CodeListRef", NS)
        where = f"{ig.get('Name')}.{item.get('Name')}"
        assert ref is not None, f"{where} has no CodeListRef"
        ext = codelists[ref.get("CodeListOID")].find("odm:ExternalCodeList", NS)
        assert ext is not None, f"{where}: its CodeList is not an ExternalCodeList"
        assert ext.get("Dictionary") == "MedDRA" and ext.get("Version"), where
        # A CodeList's DataType is its items': MedDRA codes (integers) have their own.
        assert codelists[ref.get("CodeListOID")].get("DataType") == item.get("DataType")


def test_country_is_coded_by_iso_3166(build: Path) -> None:
    mdv = _mdv(build / "sdtm" / "define.xml")
    item = _items(mdv)["IT.DM.COUNTRY"]
    oid = item.find("odm:CodeListRef", NS).get("CodeListOID")
    cl = next(c for c in mdv.findall("odm:CodeList", NS) if c.get("OID") == oid)
    ext = cl.find("odm:ExternalCodeList", NS)
    assert ext.get("Dictionary").startswith("ISO 3166") and ext.get("Version")


def test_every_collected_origin_has_a_source(mdv: etree._Element) -> None:
    collected = [o for o in mdv.iter(f"{{{NS['def']}}}Origin") if o.get("Type") == "Collected"]
    missing = [o.getparent().get("OID") for o in collected if not o.get("Source")]
    assert not missing
    if mdv.get("Name", "").find("SDTMIG") >= 0:
        assert collected, "the SDTM define.xml has Collected items"
        assert {o.get("Source") for o in collected} <= {
            "Investigator", "Sponsor", "Subject", "Vendor",
        }  # fmt: skip
        # The lab transfer is the vendor's, the EDC forms the investigator's.
        items = _items(mdv)
        assert items["IT.LB.LBORRES"].find("def:Origin", NS).get("Source") == "Vendor"
        assert items["IT.AE.AETERM"].find("def:Origin", NS).get("Source") == "Investigator"


def test_methods_read_as_sentences(mdv: etree._Element) -> None:
    methods = mdv.findall("odm:MethodDef", NS)
    assert methods
    bad = []
    for mt in methods:
        text = mt.findtext("odm:Description/odm:TranslatedText", default="", namespaces=NS)
        assert text.strip(), mt.get("OID")
        if _HELPER.search(text) or _REPR.search(text) or "Rule " in text:
            bad.append(f"{mt.get('OID')}: {text}")
    assert not bad, "\n".join(bad)


def test_generated_method_names_the_variables(build: Path) -> None:
    mdv = _mdv(build / "sdtm" / "define.xml")
    text = {
        mt.get("OID"): mt.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
        for mt in mdv.findall("odm:MethodDef", NS)
    }
    assert text["MT.AE.AESEQ"].startswith(
        "AESEQ: sequential number of the record within USUBJID, ordered by AESTDTC and "
    )
    # The helper `_AESPID` reads as what it holds.
    assert "AESPID as collected" in text["MT.AE.AESEQ"]
    assert "DM.RFSTDTC" in text["MT.AE.AESTDY"]


def test_every_supp_qnam_has_value_level_metadata(build: Path) -> None:
    mdv = _mdv(build / "sdtm" / "define.xml")
    items = _items(mdv)
    where = {w.get("OID"): w for w in mdv.findall("def:WhereClauseDef", NS)}
    vls = {v.get("OID"): v for v in mdv.findall("def:ValueListDef", NS)}
    supps = sorted((build / "sdtm").glob("supp*.xpt"))
    assert supps
    for path in supps:
        name = path.stem.upper()
        frame = pd.read_sas(path, format="xport", encoding="ascii")
        qval = items[f"IT.{name}.QVAL"]
        vl_ref = qval.find("def:ValueListRef", NS)
        assert vl_ref is not None, f"{name}.QVAL has no value-level metadata"
        by_qnam: dict[str, etree._Element] = {}
        for ref in vls[vl_ref.get("ValueListOID")].findall("odm:ItemRef", NS):
            wc = where[ref.find("def:WhereClauseRef", NS).get("WhereClauseOID")]
            check = wc.find("odm:RangeCheck", NS)
            assert check.get(f"{{{NS['def']}}}ItemOID") == f"IT.{name}.QNAM"
            by_qnam[check.findtext("odm:CheckValue", namespaces=NS)] = items[ref.get("ItemOID")]
        assert set(by_qnam) == set(frame["QNAM"]), name
        for qnam, item in by_qnam.items():
            rows = frame[frame["QNAM"] == qnam]
            label = item.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
            assert label == rows["QLABEL"].iloc[0], (name, qnam)
            assert item.get("DataType") and item.get("Length")
            origin = item.find("def:Origin", NS)
            # QORIG in the data is the origin define.xml states for that QNAM.
            assert set(rows["QORIG"]) == {origin.get("Type")}, (name, qnam)
            if origin.get("Type") == "Collected":
                assert origin.get("Source"), (name, qnam)


def test_role_on_every_sdtm_item_ref(build: Path) -> None:
    mdv = _mdv(build / "sdtm" / "define.xml")
    missing = [
        f"{ig.get('Name')}.{ref.get('ItemOID')}"
        for ig in mdv.findall("odm:ItemGroupDef", NS)
        for ref in ig.findall("odm:ItemRef", NS)
        if not ref.get("Role")
    ]
    assert not missing
    roles = {
        (ig.get("Name"), ref.get("ItemOID")): ref.get("Role")
        for ig in mdv.findall("odm:ItemGroupDef", NS)
        for ref in ig.findall("odm:ItemRef", NS)
    }
    assert roles[("EX", "IT.EX.VISITNUM")] == "Timing"
    assert roles[("SV", "IT.SV.EPOCH")] == "Timing"


def test_supp_item_groups_carry_the_parent_domain(build: Path) -> None:
    mdv = _mdv(build / "sdtm" / "define.xml")
    supps = [ig for ig in mdv.findall("odm:ItemGroupDef", NS) if ig.get("Name").startswith("SUPP")]
    assert supps
    for ig in supps:
        assert ig.get("Domain") == ig.get("Name")[4:]


def test_adam_class_and_subclass(build: Path) -> None:
    mdv = _mdv(build / "adam" / "define.xml")
    classes = {}
    for ig in mdv.findall("odm:ItemGroupDef", NS):
        cls = ig.find("def:Class", NS)
        sub = cls.find("def:SubClass", NS)
        classes[ig.get("Name")] = (cls.get("Name"), sub.get("Name") if sub is not None else None)
    assert classes["ADSL"] == ("SUBJECT LEVEL ANALYSIS DATASET", None)
    assert classes["ADAE"] == ("OCCURRENCE DATA STRUCTURE", "ADVERSE EVENT")
    assert classes["ADLB"][0] == classes["ADEFF"][0] == "BASIC DATA STRUCTURE"


def test_origin_types(build: Path) -> None:
    sdtm = _items(_mdv(build / "sdtm" / "define.xml"))
    adam = _items(_mdv(build / "adam" / "define.xml"))

    def origin(items: dict, oid: str) -> etree._Element:
        return items[oid].find("def:Origin", NS)

    # Converted values are derived (with a method), not collected.
    for oid in ("IT.LB.LBSTNRLO", "IT.LB.LBSTNRHI", "IT.LB.LBSTRESN", "IT.LB.LBSTRESC"):
        assert origin(sdtm, oid).get("Type") == "Derived", oid
    # Trial-design content is the protocol's.
    for oid in ("IT.TA.ARMCD", "IT.TA.EPOCH", "IT.TE.ETCD", "IT.TV.VISIT", "IT.TS.TSVAL"):
        assert origin(sdtm, oid).get("Type") == "Protocol", oid
    # A predecessor names its source variable.
    pred = origin(adam, "IT.ADAE.AEDECOD")
    assert pred.get("Type") == "Predecessor"
    assert pred.findtext("odm:Description/odm:TranslatedText", namespaces=NS) == "AE.AEDECOD"


def test_dsdecod_codelist_by_dscat(build: Path) -> None:
    """The consent milestone is a PROTMLST term, not an extension of the completion list."""
    mdv = _mdv(build / "sdtm" / "define.xml")
    items = _items(mdv)
    codelists = {cl.get("OID"): cl for cl in mdv.findall("odm:CodeList", NS)}
    ncomplt = next(c for c in codelists.values() if c.get("Name").startswith("Completion"))
    values = {i.get("CodedValue"): i for i in ncomplt}
    assert "INFORMED CONSENT OBTAINED" not in values
    parent = items["IT.DS.DSDECOD"]
    assert parent.find("odm:CodeListRef", NS) is None
    vl_oid = parent.find("def:ValueListRef", NS).get("ValueListOID")
    vl = next(v for v in mdv.findall("def:ValueListDef", NS) if v.get("OID") == vl_oid)
    lists = {items[r.get("ItemOID")].find("odm:CodeListRef", NS).get("CodeListOID") for r in vl}
    names = {codelists[oid].get("Name") for oid in lists}
    assert names == {"Protocol Milestone", "Completion/Reason for Non-Completion"}
    milestone = next(
        codelists[o] for o in lists if codelists[o].get("Name") == "Protocol Milestone"
    )
    consent = [i for i in milestone if i.get("CodedValue") == "INFORMED CONSENT OBTAINED"]
    assert consent and consent[0].get(f"{{{NS['def']}}}ExtendedValue") is None


def test_sponsor_codelist_for_aerel(build: Path) -> None:
    for stage, oid in (("sdtm", "IT.AE.AEREL"), ("adam", "IT.ADAE.AEREL")):
        mdv = _mdv(build / stage / "define.xml")
        ref = _items(mdv)[oid].find("odm:CodeListRef", NS).get("CodeListOID")
        cl = next(c for c in mdv.findall("odm:CodeList", NS) if c.get("OID") == ref)
        assert cl.find("odm:Alias", NS) is None and cl.get(f"{{{NS['def']}}}StandardOID") is None
        terms = [i.get("CodedValue") for i in cl if i.get("CodedValue")]
        assert terms[:2] == ["NOT RELATED", "UNLIKELY RELATED"]
        assert all(i.find("odm:Alias", NS) is None for i in cl)


def test_documents_are_linked_and_reported_missing(build: Path) -> None:
    sdtm = _mdv(build / "sdtm" / "define.xml")
    acrf = sdtm.find("def:AnnotatedCRF/def:DocumentRef", NS).get("leafID")
    supp = [d.get("leafID") for d in sdtm.findall("def:SupplementalDoc/def:DocumentRef", NS)]
    leaves = {
        leaf.get("ID"): leaf.get(f"{{{NS['xlink']}}}href") for leaf in sdtm.findall("def:leaf", NS)
    }
    assert leaves[acrf] == "acrf.pdf" and [leaves[s] for s in supp] == ["csdrg.pdf"]
    adam = _mdv(build / "adam" / "define.xml")
    assert adam.find("def:AnnotatedCRF", NS) is None
    adrg = adam.find("def:SupplementalDoc/def:DocumentRef", NS).get("leafID")
    assert {x.get("ID"): x.get(f"{{{NS['xlink']}}}href") for x in adam.findall("def:leaf", NS)}[
        adrg
    ] == "adrg.pdf"
    # No PDF is fabricated; the build log says which documents the sponsor must add.
    assert not (build / "sdtm" / "acrf.pdf").exists()
    log = (build / "build.log").read_text(encoding="utf-8")
    assert "acrf.pdf, not present" in log and "adrg.pdf, not present" in log


def test_every_rule_describes_itself_without_code() -> None:
    """Each rule of the vocabulary renders a sentence from example parameters."""
    study = load_study(SPEC)
    seen: dict[str, str] = {}
    for spec in study.datasets.values():
        for var in spec.variables:
            if var.rule is not None and var.params is not None:
                seen.setdefault(var.rule.name, describe_rule(var.rule, var.params, Words()))
    assert all(r.describe is not None for r in RULES.values()), [
        n for n, r in RULES.items() if r.describe is None
    ]
    for name, text in seen.items():
        assert text and not _REPR.search(text), (name, text)


def test_every_derived_item_ref_has_a_method_value_level_included(mdv: etree._Element) -> None:
    items = _items(mdv)
    missing = []
    groups = mdv.findall("odm:ItemGroupDef", NS) + mdv.findall("def:ValueListDef", NS)
    for ig in groups:
        for ref in ig.findall("odm:ItemRef", NS):
            origin = items[ref.get("ItemOID")].find("def:Origin", NS)
            if origin is not None and origin.get("Type") == "Derived" and not ref.get("MethodOID"):
                missing.append(ref.get("ItemOID"))
    assert not missing


def test_spec_comments_become_comment_defs(build: Path) -> None:
    mdv = _mdv(build / "sdtm" / "define.xml")
    ds = next(ig for ig in mdv.findall("odm:ItemGroupDef", NS) if ig.get("Name") == "DS")
    oid = ds.get(f"{{{NS['def']}}}CommentOID")
    comment = next(c for c in mdv.findall("def:CommentDef", NS) if c.get("OID") == oid)
    text = comment.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
    assert "protocol milestone" in text and "PROTMLST" in text


def _spec_copy(tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "spec"
    shutil.copytree(SPEC, folder)
    return folder


def test_unknown_form_source_is_a_located_spec_error(tmp_path: Path) -> None:
    import yaml

    from cdiscforge.errors import SpecError

    folder = _spec_copy(tmp_path)
    path = folder / "raw_forms.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["forms"]["lab"]["source"] = "Nurse"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_study(folder)
    assert err.value.file.endswith("raw_forms.yaml")
    assert err.value.key_path == "forms.lab.source" and "Investigator" in err.value.problem


def test_unknown_dictionary_is_a_located_spec_error(tmp_path: Path) -> None:
    import yaml

    from cdiscforge.errors import SpecError

    folder = _spec_copy(tmp_path)
    path = folder / "sdtm" / "ae.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    term = next(v for v in data["variables"] if v["name"] == "AETERM")
    term["dictionary"] = "WHODRUG"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_study(folder)
    assert err.value.file.endswith("ae.yaml")
    assert err.value.key_path.endswith("(AETERM).dictionary") and "WHODRUG" in err.value.problem


def test_coded_terms_are_assigned_by_the_sponsor(build: Path) -> None:
    """MedDRA terms are the coder's (the study spec's dictionary says so); the verbatim is
    the investigator's."""
    items = _items(_mdv(build / "sdtm" / "define.xml"))
    for oid in ("IT.AE.AEDECOD", "IT.AE.AEPTCD", "IT.AE.AEBODSYS", "IT.MH.MHDECOD"):
        origin = items[oid].find("def:Origin", NS)
        assert (origin.get("Type"), origin.get("Source")) == ("Assigned", "Sponsor"), oid
    verbatim = items["IT.AE.AETERM"].find("def:Origin", NS)
    assert (verbatim.get("Type"), verbatim.get("Source")) == ("Collected", "Investigator")


def test_crf_pages_named_per_form_link_collected_items_to_the_acrf(tmp_path: Path) -> None:
    import yaml

    from cdiscforge.define import build_define_model, render_define
    from cdiscforge.model import Dataset, Variable

    folder = _spec_copy(tmp_path)
    path = folder / "raw_forms.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["forms"]["adverse_events"]["crf_pages"] = [12, 13]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    study = load_study(folder)
    term = next(v.meta for v in study.datasets["AE"].variables if v.name == "AETERM")
    assert term.crf_pages == ("12", "13")
    frame = pd.DataFrame({"AETERM": pd.Series(["Headache"], dtype="string")})
    ds = Dataset("AE", "Adverse Events", frame, [Variable(**term.__dict__)], klass="EVENTS",
                 structure="One record per adverse event per subject", domain="AE")  # fmt: skip
    info = study.info("2025-03-28", "2025-03-28")
    xml = render_define(
        build_define_model([ds], study=info, standard="SDTM", created="2020-09-30T00:00:00")
    )
    doc = etree.fromstring(xml.encode("utf-8"))
    ref = doc.find(".//odm:ItemDef/def:Origin/def:DocumentRef", NS)
    acrf = doc.find(".//def:AnnotatedCRF/def:DocumentRef", NS).get("leafID")
    assert ref.get("leafID") == acrf
    assert ref.find("def:PDFPageRef", NS).get("PageRefs") == "12 13"


def test_unknown_codelist_is_a_located_spec_error(tmp_path: Path) -> None:
    import yaml

    from cdiscforge.errors import SpecError

    folder = _spec_copy(tmp_path)
    path = folder / "sdtm" / "ae.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rel = next(v for v in data["variables"] if v["name"] == "AEREL")
    rel["codelist"] = "AERELX"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_study(folder)
    assert err.value.key_path.endswith("(AEREL).codelist") and "AERELX" in err.value.problem

"""The bundled CDISC CT packages, per-study CT releases and sponsor codelists as study data.

The counts of codelists and terms per package come from tests/fixtures/ct_counts.json, which
scripts/make_ct_package.py counted in the NCI EVS source files when it made the package (the
source files themselves are not read here). The builds go through the real CLI.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from lxml import etree

from cdiscforge import ct
from cdiscforge.cli import main
from cdiscforge.define.schema import schema_errors
from cdiscforge.errors import CdiscforgeError, SpecError
from cdiscforge.spec import load_study
from cdiscforge.xpt import read_xpt

FIXTURES = Path(__file__).parent / "fixtures"
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}
DEF_EXT = "{http://www.cdisc.org/ns/def/v2.1}ExtendedValue"
# A CDISC codelist the bundled study does not use (and the old CT subset did not hold):
# Y/N/NOT REPORTED/UNKNOWN, so AESER's Y/N values are in it.
NEW_CDISC = ("ISXDXRS", "C209288")


# --- the packages ----------------------------------------------------------------------------


def test_full_packages_are_bundled_with_the_source_counts() -> None:
    counts = json.loads((FIXTURES / "ct_counts.json").read_text())
    versions = {k: v for k, v in counts.items() if k != "source"}
    assert ct.DEFAULT_VERSION in versions
    for version, packages in versions.items():
        assert set(packages) == set(ct.PACKAGES)
        for name, want in packages.items():
            assert version in ct.bundled_versions(name)
            pkg = ct.package(name, version)
            terms = sum(e - s - 1 for s, e in pkg.slices.values())
            assert (len(pkg.slices), terms) == (want["codelists"], want["terms"]), name
    # the SDTM package is the full one (the old subset held 178 codelists)
    assert versions[ct.DEFAULT_VERSION]["sdtm"]["codelists"] > 1000


def test_any_cdisc_codelist_by_short_name_or_code() -> None:
    short, code = NEW_CDISC
    cl = ct.codelist(short)
    assert (cl.code, cl.extensible, cl.standard) == (code, False, "SDTM CT 2025-03-28")
    assert ct.codelist(code) is cl
    assert cl.values == {"N", "Y", "NOT REPORTED", "UNKNOWN"}
    assert ct.codelist("DTYPE").standard == "ADaM CT 2025-03-28"
    assert ct.codelist("BDSSC").standard == "Define-XML CT 2025-03-28"
    sex = ct.codelist("SEX")
    mapped, unmatched = sex.map_values(pd.Series(["female", "Male", "x", None], dtype="string"))
    assert mapped.tolist()[:2] == ["F", "M"]
    assert unmatched.tolist() == [False, False, True, False]
    with pytest.raises(CdiscforgeError, match="did you mean SEX"):
        ct.codelist("SEXX")


@pytest.fixture
def second_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A CT folder with the bundled release and a made-up later one whose SEX has one term."""
    root = tmp_path / "ct"
    shutil.copytree(Path(ct.__file__).parent / "data" / "ct", root)
    later = root / "2099-01-01"
    later.mkdir()
    rows = [
        "\t".join(
            ["codelist", "code", "value", "synonyms", "preferred_term", "extensible", "name"]
        ),
        "\t".join(["", "C66731", "SEX", "Sex", "CDISC SDTM Sex Terminology", "No", "Sex"]),
        "\t".join(["C66731", "C17998", "U", "Unknown", "Unknown", "", ""]),
    ]
    with gzip.open(later / "sdtm.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    monkeypatch.setattr(ct, "_ct_root", lambda: root)
    for cached in (ct.bundled_versions, ct.package, ct._cdisc_codelist):
        cached.cache_clear()
    yield root
    for cached in (ct.bundled_versions, ct.package, ct._cdisc_codelist):
        cached.cache_clear()


def test_version_is_selected_per_package(second_release: Path) -> None:
    assert ct.bundled_versions("sdtm") == ("2025-03-28", "2099-01-01")
    assert ct.bundled_versions("adam") == ("2025-03-28",)
    later = ct.Terminology({"sdtm": "2099-01-01"})
    assert later.codelist("SEX").values == {"U"}
    assert later.codelist("SEX").standard == "SDTM CT 2099-01-01"
    assert later.version("adam") == "2025-03-28"
    assert ct.Terminology().codelist("SEX").values == {"F", "M", "U", "INTERSEX"}
    with pytest.raises(CdiscforgeError, match=r"bundled adam: 2025-03-28"):
        ct.Terminology({"adam": "2099-01-01"})


# --- a study with sponsor codelists, an extension and a newly used CDISC codelist --------------

CODELISTS_YAML = {
    "codelists": [
        {
            "id": "AEREL_SP",
            "name": "Relationship to Study Treatment (sponsor)",
            "terms": [
                {"code": "RELATED", "decode": "Related", "order": 5},
                {"code": "PROBABLY RELATED", "decode": "Probably related", "order": 4},
                {"code": "POSSIBLY RELATED", "decode": "Possibly related", "order": 3},
                {"code": "UNLIKELY RELATED", "decode": "Unlikely related", "order": 2},
                {"code": "NOT RELATED", "decode": "Not related", "order": 1},
            ],
        }
    ]
}
ROUTE_CSV = (
    "# name: Route of Administration (sponsor); extends: C66729\n"
    "code,decode,order,nci\n"
    "INTRAVENOUS,,1,\n"
    "INTRA-ADIPOSE TISSUE,,2,\n"
)


def _edit(path: Path, name: str, drop: tuple[str, ...] = (), **changes: object) -> None:
    """Change one variable of a dataset spec (drop some keys, set others)."""
    data = yaml.safe_load(path.read_text())
    var = next(v for v in data["variables"] if v["name"] == name)
    for key in drop:
        var.pop(key, None)
    var.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _sponsor_spec(folder: Path, seed_spec: Path) -> Path:
    spec = folder / "spec"
    shutil.copytree(seed_spec, spec)
    (spec / "codelists.yaml").write_text(yaml.safe_dump(CODELISTS_YAML, sort_keys=False))
    (spec / "codelists").mkdir()
    (spec / "codelists" / "ROUTE_SP.csv").write_text(ROUTE_CSV)
    ae = spec / "sdtm" / "ae.yaml"
    # AEREL: `map` with the sponsor codelist alone (its decodes are what the form collects)
    _edit(ae, "AEREL", rule="map", codelist="AEREL_SP", drop=("values", "method"))
    _edit(ae, "AESER", codelist=NEW_CDISC[0])
    _edit(spec / "sdtm" / "ex.yaml", "EXROUTE", codelist="ROUTE_SP")
    study = yaml.safe_load((spec / "study.yaml").read_text())
    study["ct_version"] = {"sdtm": "2025-03-28", "adam": "2025-03-28", "define": "2025-03-28"}
    (spec / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return spec


@pytest.fixture(scope="module")
def sponsor_build(tmp_path_factory: pytest.TempPathFactory, seed_spec: Path, default_raw: Path):
    folder = tmp_path_factory.mktemp("ct_sponsor")
    spec = _sponsor_spec(folder, seed_spec)
    out = folder / "out"
    result = CliRunner().invoke(
        main, ["build", "--spec", str(spec), "--raw", str(default_raw), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out, etree.parse(str(out / "sdtm" / "define.xml"))


def _codelist(tree: etree._ElementTree, oid: str) -> etree._Element:
    found = tree.find(f".//odm:CodeList[@OID='{oid}']", NS)
    assert found is not None, oid
    return found


def _items(cl: etree._Element) -> list[etree._Element]:
    return cl.findall("odm:CodeListItem", NS) + cl.findall("odm:EnumeratedItem", NS)


def test_sponsor_codelists_load_from_yaml_csv_and_study_yaml(
    seed_spec: Path, tmp_path: Path
) -> None:
    study = load_study(_sponsor_spec(tmp_path, seed_spec))
    lists = {c.key: c for c in study.sponsor_codelists}
    assert set(lists) == {"AEREL", "AEREL_SP", "ROUTE_SP"}  # study.yaml, YAML, CSV
    assert lists["AEREL_SP"].terms[0] == "NOT RELATED"  # sorted by `order`
    assert lists["AEREL_SP"].decodes[0] == "Not related"
    route = study.terminology.codelist("ROUTE_SP")
    assert (route.extends, route.name) == ("C66729", "Route of Administration (sponsor)")
    # a CDISC term keeps its NCI code, the sponsor's new term has none
    assert route.term_code("INTRAVENOUS") == ct.codelist("ROUTE").term_code("INTRAVENOUS")
    assert route.term_code("INTRA-ADIPOSE TISSUE") is None


def test_map_with_sponsor_codelist_maps_decodes_and_gets_its_codelist(sponsor_build) -> None:
    out, tree = sponsor_build
    ae = read_xpt(out / "sdtm" / "ae.xpt")
    assert set(ae.frame["AEREL"].dropna()) <= {
        t["code"] for t in CODELISTS_YAML["codelists"][0]["terms"]
    }
    assert ae.frame["AEREL"].notna().all()
    ref = tree.find(".//odm:ItemDef[@OID='IT.AE.AEREL']/odm:CodeListRef", NS)
    assert ref is not None and ref.get("CodeListOID") == "CL.AEREL_SP"
    cl = _codelist(tree, "CL.AEREL_SP")
    items = cl.findall("odm:CodeListItem", NS)
    assert [i.get("CodedValue") for i in items][:2] == ["NOT RELATED", "UNLIKELY RELATED"]
    assert items[0].findtext("odm:Decode/odm:TranslatedText", namespaces=NS) == "Not related"
    assert cl.find("odm:Alias", NS) is None  # extends nothing: no NCI alias


def test_extension_of_a_cdisc_codelist_has_extended_values(sponsor_build) -> None:
    _, tree = sponsor_build
    ref = tree.find(".//odm:ItemDef[@OID='IT.EX.EXROUTE']/odm:CodeListRef", NS)
    assert ref is not None and ref.get("CodeListOID") == "CL.ROUTE_SP"
    cl = _codelist(tree, "CL.ROUTE_SP")
    assert cl.find("odm:Alias", NS).get("Name") == "C66729"
    items = {i.get("CodedValue"): i for i in _items(cl)}
    assert items["INTRA-ADIPOSE TISSUE"].get(DEF_EXT) == "Yes"
    assert items["INTRA-ADIPOSE TISSUE"].find("odm:Alias", NS) is None
    assert items["INTRAVENOUS"].get(DEF_EXT) is None
    assert items["INTRAVENOUS"].find("odm:Alias", NS).get("Name") == "C38276"


def test_new_cdisc_codelist_in_define_and_validation(sponsor_build) -> None:
    out, tree = sponsor_build
    short, code = NEW_CDISC
    cl = _codelist(tree, f"CL.{short}")
    assert cl.find("odm:Alias", NS).get("Name") == code
    results = json.loads((out / "validation" / "results.json").read_text())
    checks = [c for c in results["checked"] if f"codelist {short} ({code})" in c["description"]]
    assert checks and {c["status"] for c in checks} == {"pass"}, checks
    sponsor = [c for c in results["checked"] if "ROUTE_SP (C66729)" in c["description"]]
    assert sponsor and {c["status"] for c in sponsor} == {"pass"}


def test_define_with_sponsor_codelists_is_schema_valid(sponsor_build) -> None:
    out, _ = sponsor_build
    for stage in ("sdtm", "adam"):
        path = out / stage / "define.xml"
        assert schema_errors(path.read_bytes(), str(path)) == []


# --- located spec errors ----------------------------------------------------------------------


def _build_fails(spec: Path, raw: Path, out: Path) -> str:
    result = CliRunner().invoke(
        main, ["build", "--spec", str(spec), "--raw", str(raw), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    return result.output


def test_unknown_codelist_and_version_are_located_spec_errors(
    seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    _edit(spec / "sdtm" / "ae.yaml", "AESEV", codelist="AESEVV")
    _edit(spec / "sdtm" / "ex.yaml", "EXROUTE", codelist="ROUTE_XX")
    study = yaml.safe_load((spec / "study.yaml").read_text())
    study["ct_version"] = {"sdtm": "2024-09-27"}
    (spec / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    text = " ".join(_build_fails(spec, default_raw, tmp_path / "out").split())
    # every problem of the folder in one run: file, dataset, variable, value
    assert "ae.yaml: variables[" in text and "(AESEV).codelist" in text
    assert "dataset AE: unknown codelist 'AESEVV'" in text and "did you mean AESEV" in text
    assert "ex.yaml" in text and "(EXROUTE).codelist" in text and "'ROUTE_XX'" in text
    assert "study.yaml: ct_version.sdtm" in text and "'2024-09-27' is not bundled" in text
    assert "bundled sdtm: 2025-03-28" in text
    assert "unknown codelist 'AEREL'" not in text  # the sponsor list still counts


@pytest.mark.parametrize(
    ("where", "content", "expected"),
    [
        (
            "codelists.yaml",
            {"codelists": [{"id": "NY2", "name": "x", "extends": "C66742", "terms": ["Y"]}]},
            "codelists[0](NY2).extends: C66742 (NY) is not extensible",
        ),
        (
            "codelists.yaml",
            {"codelists": [{"id": "SEX", "name": "x", "terms": ["F"]}]},
            "'SEX' is a CDISC codelist",
        ),
        (
            "codelists.yaml",
            {"codelists": [{"id": "X1", "name": "x", "terms": ["A", "A"], "colour": 1}]},
            "codelists[0].colour: unknown key",
        ),
        ("codelists/BAD.csv", "code,order\nA,first\n", "BAD.csv: line 2, column order"),
        ("codelists/BAD.csv", "code,label\nA,x\n", "unknown column(s) ['label']"),
    ],
)
def test_broken_sponsor_codelists_are_located_spec_errors(
    seed_spec: Path, tmp_path: Path, where: str, content: object, expected: str
) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(seed_spec, spec)
    target = spec / where
    target.parent.mkdir(exist_ok=True)
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    target.write_text(text)
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert expected in " ".join(str(err.value).split())


def test_block_level_map_with_codelist_gives_the_variable_its_codelist(
    seed_spec: Path, tmp_path: Path
) -> None:
    spec = _sponsor_spec(tmp_path, seed_spec)
    ae = spec / "sdtm" / "ae.yaml"
    data = yaml.safe_load(ae.read_text())
    var = next(v for v in data["variables"] if v["name"] == "AEREL")
    for key in ("rule", "from", "codelist"):
        var.pop(key, None)
    data["records"][0]["variables"] = {
        "AEREL": {"rule": "map", "from": "AEREL", "codelist": "AEREL_SP"}
    }
    ae.write_text(yaml.safe_dump(data, sort_keys=False))
    study = load_study(spec)
    aerel = next(v for v in study.datasets["AE"].variables if v.name == "AEREL")
    assert aerel.meta.codelist == "AEREL_SP"


def test_a_broken_sponsor_list_is_reported_once(seed_spec: Path, tmp_path: Path) -> None:
    spec = _sponsor_spec(tmp_path, seed_spec)
    (spec / "codelists" / "ROUTE_SP.csv").write_text("code,order\nINTRAVENOUS,one\n")
    with pytest.raises(SpecError) as err:
        load_study(spec)
    text = " ".join(str(err.value).split())
    assert "ROUTE_SP.csv: line 2, column order: not a whole number: 'one'" in text
    assert "unknown codelist" not in text  # EXROUTE's reference is not reported again

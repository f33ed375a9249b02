"""OIDs shared by define.xml and Dataset-JSON.

Dataset-JSON's itemGroupOID, itemOID, studyOID and metaDataVersionOID are foreign keys into
define.xml, so both writers take them from here and a reviewer's tool can join the two.
"""

from __future__ import annotations

import re

_OID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def oid_part(text: str) -> str:
    """A value made safe to sit inside an OID (letters, digits, '.', '_', '-')."""
    return _OID_UNSAFE.sub("_", str(text)) or "_"


def study_oid(studyid: str) -> str:
    return f"STDY.{oid_part(studyid)}"


def ig_name_version(standard: str) -> tuple[str, str]:
    """("SDTMIG", "3.4") or ("ADaMIG", "1.3") for 'SDTM'/'ADaM' or a Dataset.standard text."""
    from cdiscforge.standards import ADAMIG_VERSION, SDTMIG_VERSION

    if standard.upper().startswith("ADAM"):
        return "ADaMIG", ADAMIG_VERSION
    return "SDTMIG", SDTMIG_VERSION


def mdv_oid(studyid: str, standard: str) -> str:
    name, version = ig_name_version(standard)
    return f"MDV.{oid_part(studyid)}.{name}.{version}"


def item_group_oid(dataset_name: str) -> str:
    return f"IG.{oid_part(dataset_name.upper())}"


def item_oid(dataset_name: str, variable_name: str) -> str:
    return f"IT.{oid_part(dataset_name.upper())}.{oid_part(variable_name)}"

"""Define-XML 2.1 schema check (lxml + the XSD set shipped in cdiscforge/data/schemas).

A failed check must tell a programmer what to fix without opening an XML editor: each message
names the file, the line, the element/attribute and the problem, with namespaces written as
the usual prefixes (def:Standard, not {http://www.cdisc.org/ns/def/v2.1}Standard).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

STYLESHEET_NAME = "define2-1.xsl"
_PREFIXES = {
    "{http://www.cdisc.org/ns/odm/v1.3}": "",
    "{http://www.cdisc.org/ns/def/v2.1}": "def:",
    "{http://www.w3.org/1999/xlink}": "xlink:",
    "{http://www.cdisc.org/ns/arm/v1.0}": "arm:",
    "{http://www.w3.org/XML/1998/namespace}": "xml:",
}


def schemas_dir() -> Path:
    """The packaged schema folder (Define-XML 2.1 XSD set, stylesheet, Dataset-JSON schema)."""
    return Path(str(resources.files("cdiscforge") / "data" / "schemas"))


def stylesheet_path() -> Path:
    """define2-1.xsl, copied beside every define.xml so it opens in a browser."""
    return schemas_dir() / "define-xml-2.1" / "stylesheets" / STYLESHEET_NAME


@cache
def _schema() -> etree.XMLSchema:
    xsd = schemas_dir() / "define-xml-2.1" / "cdisc-define-2.1" / "define2-1-0.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def _readable(message: str) -> str:
    for uri, prefix in _PREFIXES.items():
        message = message.replace(uri, prefix)
    return message


def schema_errors(xml: bytes, source: str) -> list[str]:
    """Schema errors of define.xml content, as 'source line N: problem' messages."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        doc = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else "?"
        return [f"{source} line {line}: not well-formed XML: {exc.msg}"]
    schema = _schema()
    if schema.validate(doc):
        return []
    return [f"{source} line {err.line}: {_readable(err.message)}" for err in schema.error_log]


def validate_define(path: Path) -> list[str]:
    """XSD errors of a define.xml file against Define-XML 2.1; empty when it is valid."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    return schema_errors(path.read_bytes(), str(path))

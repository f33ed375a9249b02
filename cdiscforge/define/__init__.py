"""define.xml 2.1: build from the dataset model, render with Jinja2, check, cross-check.

`write_define` renders and validates (a define.xml that fails its schema fails the build),
`validate_define` runs the XSD check alone, `crosscheck` compares define.xml with the XPT and
Dataset-JSON files written beside it.
"""

from cdiscforge.define.crosscheck import crosscheck
from cdiscforge.define.render import build_define_model, render_define, write_define
from cdiscforge.define.schema import validate_define

__all__ = ["build_define_model", "crosscheck", "render_define", "validate_define", "write_define"]

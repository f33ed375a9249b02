"""Excel workbooks with fixed bytes: the same content always gives the same .xlsx file.

openpyxl stamps the wall clock twice: into docProps/core.xml (created / modified) and into
every zip member's timestamp. Outputs must be byte-identical across reruns (the manifest's
sha256 and the rerun test compare them), so every workbook cdiscforge writes (the validation
report, the P21 specification) goes through `workbook_bytes`, which pins both.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

FIXED_TIME = datetime(1980, 1, 1)
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def workbook_bytes(wb: Any) -> bytes:
    """The .xlsx bytes of an openpyxl Workbook, with fixed document and member timestamps."""
    from openpyxl.writer.excel import ExcelWriter

    wb.properties.creator = "cdiscforge"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).write_data()  # not wb.save(): it stamps "modified" with now
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(member, src.read(info.filename))
    return out.getvalue()


def write_workbook(wb: Any, path: Path) -> Path:
    """Write `wb` to `path` with fixed bytes (see `workbook_bytes`)."""
    path.write_bytes(workbook_bytes(wb))
    return path

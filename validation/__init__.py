"""validation stage of cdiscforge: GX suites generated from metadata, cross-dataset rules, report.

Entry points: `validate_datasets` (the build, before publishing), `validate_directory`
(`cdiscforge validate DIR`) and `write_report` (report.html + results.json).
"""

from cdiscforge.validation.api import read_directory, validate_datasets, validate_directory
from cdiscforge.validation.catalogue import RULES, Rule
from cdiscforge.validation.findings import Check, Finding, ValidationOptions, ValidationResult
from cdiscforge.validation.report import write_report

__all__ = [
    "RULES",
    "Check",
    "Finding",
    "Rule",
    "ValidationOptions",
    "ValidationResult",
    "read_directory",
    "validate_datasets",
    "validate_directory",
    "write_report",
]

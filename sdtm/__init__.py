"""SDTM stage: raw exports to SDTM datasets through the study's SDTM specs.

Importing the package registers the SDTM timing rules (visits, epochs, elements, --LOBXFL)
into the rule vocabulary.
"""

from cdiscforge.sdtm import rules as _rules  # noqa: F401

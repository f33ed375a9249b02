"""ADaM stage: analysis datasets from SDTM through the study's ADaM specs.

Importing the package registers the ADaM derivations (dates and imputation, windows, baseline,
change, analysis flags, treatment-emergence, first occurrence, ADSL merge) into the rule
vocabulary, and the `count_records` parameter generator.
"""

from cdiscforge.adam import bds as _bds  # noqa: F401
from cdiscforge.adam import dates as _dates  # noqa: F401
from cdiscforge.adam import occds as _occds  # noqa: F401
from cdiscforge.adam import params as _params  # noqa: F401

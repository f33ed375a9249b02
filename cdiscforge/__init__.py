"""cdiscforge: raw EDC exports to SDTM and ADaM, as XPT v5, define.xml and Dataset-JSON."""

__version__ = "0.1.0"

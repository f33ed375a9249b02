"""cdiscforge: raw EDC exports -> SDTM -> ADaM, validated, as XPT v5, define.xml and Dataset-JSON."""

__version__ = "0.1.0"

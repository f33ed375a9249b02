"""sdtm stage of cdiscforge."""

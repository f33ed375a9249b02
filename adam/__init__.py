"""adam stage of cdiscforge."""

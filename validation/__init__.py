"""validation stage of cdiscforge."""

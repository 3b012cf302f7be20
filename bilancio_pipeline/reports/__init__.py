"""Reports built from stored results (pure functions: rows in, HTML out)."""

"""Stage audit: label errors, near duplicates, train/test leakage, outliers, exact duplicates, from features."""

"""Floor 3, the audit stage: label errors, near duplicates, train/test leakage, outliers and exact duplicates,
found from cached features, with contact sheets and a map. Imports floors 0-2, no other stage."""

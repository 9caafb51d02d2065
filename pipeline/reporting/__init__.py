"""Floor 1, what a person reads: one dvclive writer for metrics, learning-curve callbacks and PNGs, contact
sheets, progress bars. Imports core only.
"""

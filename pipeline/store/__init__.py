"""Floor 1, the feature store: the manifest (which image is which row), content-addressed HDF5 chunks, the
store's index and reader, pooled rows, verification, the audit's drop list, neighbours. Imports core and libraries.
"""

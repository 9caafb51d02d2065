"""Floor 0, the base everything stands on: the error classes, the params schema and its table, atomic file
writes, where weights come from and what the CPU can do. Imports the standard library and pydantic/yaml only.
"""

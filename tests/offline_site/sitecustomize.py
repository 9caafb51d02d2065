"""Installed in a test's Python subprocess through PYTHONPATH: the network guard of tests/network_guard.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    import network_guard
finally:
    del sys.path[0]

network_guard.install()

"""The parts of ``make bench`` (see tools/bench.py)."""

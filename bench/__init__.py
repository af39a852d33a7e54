"""Benchmarks: `python -m bench <scenario> [--quick]` writes bench/results/<scenario>.json."""

"""Helpers of the APDB benchmark (``loadtests/apdb_bench.py``)."""

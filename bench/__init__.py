"""Benchmarks: what zakaz-schema costs next to the same DDL applied by hand, and how it scales.

Run ``make bench`` (``python -m bench``); see bench/__main__.py.  Not part of
the test suite: timings on a shared two-core machine are not pass/fail.
"""

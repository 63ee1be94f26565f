"""Benchmarks for fhir-safety (issue 11). Run ``python -m bench.run [--quick]``."""

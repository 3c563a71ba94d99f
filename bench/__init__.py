"""Benchmarks: each prints figures and their ratio to the limit its issue names."""

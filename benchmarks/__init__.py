"""Benchmarks: each compares neon-search against a peer measured in the same run."""

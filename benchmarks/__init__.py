"""Benchmarks that print figures and record them, with their command, in docs/benchmarks.md."""

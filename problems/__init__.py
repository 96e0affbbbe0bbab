"""Benchmark problems for odebench, each with a trusted reference."""

"""Benchmarks of vibewatch against the naive approaches; ``python bench/run.py --help``."""

"""Benchmarks that write their numbers to files (results/), run by `make bench-extract` and `make bench`."""

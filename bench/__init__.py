"""Benchmarks that measure alternatives side by side in one run and print their ratios."""

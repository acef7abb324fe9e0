"""Model outputs -> what a person reads: labels ranked and decided."""

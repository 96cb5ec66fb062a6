"""Online detectors for the benchmarks: each scores a series using only its past."""

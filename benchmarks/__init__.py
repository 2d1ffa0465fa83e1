"""medinfer's comparative latency suite (not installed): ``python -m benchmarks --help``."""

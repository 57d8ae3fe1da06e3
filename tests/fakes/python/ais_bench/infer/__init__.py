"""The fake ais_bench inference package: ``interface.InferSession``."""

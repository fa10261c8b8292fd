"""Tiny random models in the official file formats (tests, `make serve` without weights).
Imports only `engine.nets`."""

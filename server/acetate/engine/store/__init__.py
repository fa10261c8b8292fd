"""The model store: discovery, identification by header, families, per-mode requirements,
loading and the download catalog. Imports `engine.nets` and `engine.tiny`, never pipelines."""

"""Bonsai: a model-compression workbench. The engine (load, ops, tasks, metrics, compare, store)
is usable on its own, from a notebook; `lsp` and `cli` are thin layers over it."""

__version__ = "0.1.0"

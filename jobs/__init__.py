"""The pass reconciler: every paid class pass gets its Sanity subscription, exactly once."""

__version__ = "0.1.0"

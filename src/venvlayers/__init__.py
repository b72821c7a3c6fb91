"""venvlayers: layered Python environment stacks, locked, built and published per layer."""

__version__ = "0.1.0"

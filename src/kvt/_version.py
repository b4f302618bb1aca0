"""kvt's version, in a module of its own: the modules that record it (saving, runs) sit
below the package's `__init__`, whose functions import them."""

__version__ = "0.1.0"  # as pyproject.toml's

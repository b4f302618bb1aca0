"""kvt: train, evaluate, compare and benchmark small Keras CNNs on any backend.

Importing `kvt` imports no framework; pick the backend with `kvt.backends.select()`
before importing `kvt.train`, `kvt.layers` or `kvt.models`' classes.
"""

__version__ = "0.1.0"

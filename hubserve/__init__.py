"""hubserve core: config schema, errors and the model store (no torch, no Ray Serve)."""

__version__ = "0.1.0"

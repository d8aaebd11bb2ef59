"""hubserve core: config schema, errors and the model store (no torch)."""

__version__ = "0.1.0"
#: The Ray release whose private APIs hubserve uses (hubserve/ray_adapter.py);
#: another release fails at start-up, where they are first used.
RAY_VERSION = "2.60.0"

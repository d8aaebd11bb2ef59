"""hubserve core: config schema, errors and the model store (no torch, no Ray Serve)."""

__version__ = "0.1.0"
#: The Ray release whose private APIs hubserve uses (deployments/serve_internals.py, hubserve/cli/serve_run.py);
#: another release fails at start-up, in those two places.
RAY_VERSION = "2.60.0"

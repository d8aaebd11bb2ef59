"""The HTTP ingress of hubserve."""

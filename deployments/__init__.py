"""The replica side: the façade the ingress goes through (``facade``), load state and cold starts
(``gate``), the task registry (``tasks``), the backends and the task model servers."""

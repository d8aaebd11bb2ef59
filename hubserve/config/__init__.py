"""The validated configuration of a hubserve application (``app.AppConfig``) and its sections:
``limits`` (every bound), ``deployments``, ``sections`` (cache, cold start, auth, hub), the shared
``base`` and the ``secrets_dir`` format."""

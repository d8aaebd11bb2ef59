"""The ``hubserve`` command line (``main``), the local server it runs (``serve``, ``server``,
``serve_run``, ``haproxy``, ``process``), its token and model commands (``tokens``, ``models``)
and the local Ray cluster (``cluster``)."""

"""Tokens and access: who a token stands for (``principal``), the token store (``auth``), the
server's checks and the admin token (``access``), and which processes get secrets (``secret_env``)."""

"""The Hub's protocol in the ingress: its HTTP routes (``routes``), the read side (``api``,
``extras``), the model admin behind both (``management``) and the write side (``writes``,
``repo_bodies``)."""

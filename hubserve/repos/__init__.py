"""The model store and the Hub's repo operations: model ids and folders (``refs``, ``folders``,
``store``), the files a model may hold (``model_files``, ``model_json``, ``repo_paths``), uploads,
commits and LFS objects (``uploads``, ``commits``, ``lfs``), and pulls from an upstream Hub
(``upstream``, ``pull_cache``, ``hub``)."""

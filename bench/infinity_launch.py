"""Start infinity-emb's CLI with two compatibility fixes, run by the Python of infinity's own venv.

infinity-emb 0.0.78 was written against optimum 1.x; with optimum 2.x (the release that supports
this torch) its ONNX engine fails twice:
- it hands optimum the ONNX file as an absolute path, and optimum 2.x only accepts a file name
  relative to the model folder (the model then fails to load);
- its graph optimization passes ``optimize_with_onnxruntime_only``, a keyword optimum 2.x renamed
  to ``enable_transformers_specific_optimizations`` (inverted); infinity then logs a warning and
  serves the unoptimized graph.
This fixes both, so infinity runs as its authors intended, then runs ``infinity_emb`` with the
given arguments, unchanged otherwise.

    /path/to/infinity-venv/bin/python bench/infinity_launch.py v2 --model-id FOLDER ...
"""

import sys
from pathlib import Path

from infinity_emb.cli import cli
from infinity_emb.transformer import utils_optimum
from infinity_emb.transformer.embedder import optimum as embedder


def _relative_file_name(load):
    def wrapped(*, model_name_or_path, file_name, **kwargs):
        path = Path(file_name)
        if path.is_absolute() and path.is_relative_to(model_name_or_path):
            file_name = path.relative_to(model_name_or_path).as_posix()
        return load(model_name_or_path=model_name_or_path, file_name=file_name, **kwargs)
    return wrapped


def _renamed_keyword(config_class):
    def make(*, optimize_with_onnxruntime_only=False, **kwargs):
        return config_class(enable_transformers_specific_optimizations=not optimize_with_onnxruntime_only, **kwargs)
    return make


embedder.optimize_model = _relative_file_name(embedder.optimize_model)
utils_optimum.OptimizationConfig = _renamed_keyword(utils_optimum.OptimizationConfig)

if __name__ == "__main__":
    sys.argv[0] = "infinity_emb"
    sys.exit(cli())

"""What every part of the config shares: the strict base model, the backend and device names,
the environment variables that override settings, and the YAML loader."""

from __future__ import annotations

import os
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
Device = Literal["cpu", "cuda"]
Dtype = Literal["float32", "float16"]

#: The environment variables that override ``model_store``, ``data_dir``, ``auth.db`` and the Redis
#: URL of the cache and the rate limits (a Kubernetes Secret's values arrive this way).
STORE_ENV = "HUBSERVE_MODEL_STORE"
DATA_ENV = "HUBSERVE_DATA_DIR"
AUTH_DB_ENV = "HUBSERVE_AUTH_DB"
REDIS_ENV = "HUBSERVE_REDIS_URL"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (e.g. a model id twice)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | os.PathLike) -> dict:
    """Parses a YAML file safely, refusing duplicate keys."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_UniqueKeyLoader) or {}

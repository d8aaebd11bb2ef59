"""The task registry.

Each module in this package registers one ``Task`` with ``@register_task``; this
package imports them all, so adding a task touches one file. Nothing else lists
task names.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from typing import Callable, Optional, TypeVar

from hubserve.errors import InvalidInput, RouteNotFound
from hubserve.repos.refs import ModelRef

from .base import Task

_REGISTRY: dict[str, Task] = {}
T = TypeVar("T", bound=type)


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: registers a ``Task`` subclass under ``name``."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return wrap


def get_task(name: str) -> Task:
    """The registered task called ``name``.

    Raises:
        RouteNotFound: for a task this server does not serve.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RouteNotFound(
            f"The task `{name}` is not recognized by hubserve; served tasks: {', '.join(sorted(_REGISTRY))}"
        ) from None


def task_names() -> list[str]:
    """All registered task names, sorted."""
    return sorted(_REGISTRY)


def _arch_match(ref: ModelRef, suffixes) -> bool:
    return any(a.endswith(s) for a in ref.architectures for s in suffixes)


def infer_task(ref: ModelRef) -> str:
    """The task of a model: config entry, then ``pipeline_tag``, then architectures.

    Raises:
        InvalidInput: when nothing settles it, naming what is missing.
    """
    if ref.config_task:
        return ref.config_task
    if ref.pipeline_tag:
        if ref.pipeline_tag in _REGISTRY:
            return ref.pipeline_tag
        raise InvalidInput(
            f"Model {ref.model_id} has pipeline_tag `{ref.pipeline_tag}` in its README.md, "
            f"a task this server does not serve (served tasks: {', '.join(task_names())})"
        )
    claims = [t for t in _REGISTRY.values() if t.claims(ref)]
    if claims:
        return min(claims, key=lambda t: t.infer_priority).name
    archs = list(ref.architectures) or "none"
    raise InvalidInput(
        f"Cannot tell the task of model {ref.model_id}: it has no task in the config, no "
        f"pipeline_tag in a README.md, and its config.json architectures ({archs}) match no served task"
    )


def task_or_none(ref: ModelRef) -> Optional[str]:
    """``infer_task`` for listings: None when the task cannot be told."""
    try:
        return infer_task(ref)
    except InvalidInput:
        return None


#: The files of each preprocessor (``Task.preprocessors``): a folder has it if it has one of them.
PREPROCESSOR_FILES = {
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                  "sentencepiece.bpe.model", "tokenizer.model"),
    "image_processor": ("preprocessor_config.json",),
    "feature_extractor": ("preprocessor_config.json",),
    "processor": ("processor_config.json", "preprocessor_config.json"),
}


@functools.lru_cache(maxsize=4096)
def _missing_preprocessors(folder: str, sha: str, needed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in needed if not any(os.path.isfile(os.path.join(folder, f)) for f in PREPROCESSOR_FILES[p]))


def check_can_run(task: Task, ref: ModelRef) -> None:
    """Refuses a task the model cannot run: weights of another kind (unless the config or the
    model card names the task), or no tokenizer (image processor...) where the task needs one."""
    runs = (task.loads_architectures is None or _arch_match(ref, task.loads_architectures)
            or ref.config_task == task.name or ref.pipeline_tag == task.name)
    if not runs:
        raise InvalidInput(
            f"Task not found for this model: {ref.model_id} (architectures {list(ref.architectures)}) "
            f"cannot run `{task.name}`"
        )
    missing = _missing_preprocessors(str(ref.path), ref.sha, task.preprocessors)
    if missing:
        raise InvalidInput(f"{ref.model_id} cannot run `{task.name}`: it has no {' and no '.join(missing)} "
                           f"(its folder has none of {', '.join(PREPROCESSOR_FILES[missing[0]])})")


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()

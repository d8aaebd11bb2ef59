"""The JSON files of a model folder, read in full whatever their size or name.

A loader may read any JSON file of a model (a tokenizer's or processor's config, a
generation config, a safetensors index, sentence-transformers modules, diffusers
components...), and it reads the whole file, so every ``*.json`` is parsed to its end, as a
stream (a 35 MB ``tokenizer.json`` is never held as a tree). Refused:

- a file larger than ``limits.max_model_json_bytes``, a file that is not strict UTF-8 JSON
  (a loader could read it another way), and one nested deeper than Python's ``json`` reads;
- ``auto_map`` or ``custom_pipelines`` at any depth (they name remote code classes);
- a Hub kernel (transformers 5 downloads and runs one named as an attention or experts
  implementation, ``org/repo``, or for ``use_kernels`` and a ``kernel_config``) at any depth;
- a path that does not stay inside the model folder (nor names something outside it relative to
  the working directory, which some loaders resolve it against): every string, at any depth, under a
  key ending in ``_file``, ``_files``, ``_path``, ``_paths``, ``_dir``, ``_dirs`` or
  ``_directory``, a key named ``path``, ``file``, ``dir``... (sentence-transformers
  ``modules.json``) or ``weight_map`` (a safetensors index). The top-level ``_name_or_path``
  and ``name_or_path`` are identity strings (``save_pretrained`` writes the saver's own path
  there; transformers replaces them with the folder it loads from) and are not checked; nested
  ones are (a composite config loads a sub-model from its sub-config's ``_name_or_path``).
  Strings that are keys, or values under other keys (a vocabulary's tokens), are not paths;
- in a diffusers ``model_index.json``: a custom pipeline, a component from a module other than
  diffusers or transformers, or a component folder that is not a plain name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Optional

import ijson

#: Reads integers of any size, which ``ijson``'s fast backend (yajl) refuses; tokenizer configs
#: hold some (``model_max_length`` 1e30 written as an integer).
PURE_PARSER = ijson.get_backend("python")

CODE_KEYS = frozenset({"auto_map", "custom_pipelines", "kernel_config"})
#: Keys whose string values name an implementation: a local one is a plain word (``sdpa``), a Hub kernel an ``org/repo``.
IMPLEMENTATION_KEYS = frozenset({"attn_implementation", "_attn_implementation", "experts_implementation",
                                 "_experts_implementation"})
PATH_KEYS = frozenset({"path", "paths", "file", "files", "filename", "dir", "directory", "weight_map"})
PATH_SUFFIXES = ("_file", "_files", "_path", "_paths", "_dir", "_dirs", "_directory")
IDENTITY_KEYS = frozenset({"_name_or_path", "name_or_path"})
#: The libraries a diffusers pipeline's components may come from.
PIPELINE_LIBRARIES = frozenset({"diffusers", "transformers"})
PIPELINE_INDEX = "model_index.json"
_CONTAINER = object()  # a component entry that is an object or a list, not a name


def escapes(value: Any) -> bool:
    """Whether a path field's value could leave its folder (absolute, ``..``, ``~``, backslash, NUL
    or another unprintable character)."""
    if not isinstance(value, str):
        return False
    if not value or "\\" in value or value.startswith("~") or not value.isprintable():
        return bool(value)
    path = PurePosixPath(value)
    return path.is_absolute() or ".." in path.parts


class Folder:
    """Where a model folder's path fields must lead.

    Args:
        root: the model folder.
        links_within: its files may be links to regular files inside this folder (an HF
            cache repo's ``blobs/``); None: every path must resolve inside ``root`` itself.
    """

    def __init__(self, root: Path, links_within: Optional[Path] = None) -> None:
        self.root = Path(root)
        self.real = Path(os.path.realpath(root))
        self.links_within = Path(os.path.realpath(links_within)) if links_within is not None else None

    def leaves(self, value: str) -> bool:
        """Whether ``value``, a path relative to the folder, could lead outside it: lexically
        (see ``escapes``), once resolved on disk (through a link other than a cache file's), or
        resolved against the working directory, as some loaders do (transformers opens a
        tokenizer config's ``vocab_file`` as it is written), to something that exists there."""
        if escapes(value):
            return True
        if os.path.lexists(value) and not Path(os.path.realpath(value)).is_relative_to(self.real):
            return True
        target = self.root / value
        resolved = Path(os.path.realpath(target))
        if resolved.is_relative_to(self.real):
            return False
        return not (self.links_within is not None and resolved.is_relative_to(self.links_within)
                    and resolved.is_file()
                    and Path(os.path.realpath(target.parent)).is_relative_to(self.real))


def is_path_key(key: str, depth: int) -> bool:
    """Whether the strings under ``key`` (of an object ``depth`` levels down, 1 the top) are paths."""
    if depth == 1 and key in IDENTITY_KEYS:
        return False
    return key in PATH_KEYS or key.endswith(PATH_SUFFIXES)


def json_problem(path: Path, rel: str, folder: Folder, max_bytes: int) -> Optional[str]:
    """The first reason to refuse one JSON file of a model folder, or None.

    Args:
        path: the file.
        rel: its path inside the model folder (named in the reason).
        folder: the model folder its path fields must stay in.
        max_bytes: ``limits.max_model_json_bytes``.
    """
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            return (f"{rel} is {size} bytes, larger than the {max_bytes} bytes this server reads of a model's "
                    "JSON file (limits.max_model_json_bytes)")
        with open(path, "rb") as fh:
            try:
                return _first_problem(ijson, fh, rel, folder)
            except ijson.JSONError as exc:
                if "integer overflow" not in str(exc):
                    raise
            fh.seek(0)
            return _first_problem(PURE_PARSER, fh, rel, folder)
    except OSError as exc:
        return f"{rel} cannot be read: {exc.strerror or type(exc).__name__}"
    except (ijson.JSONError, ValueError) as exc:
        return f"{rel} is not valid JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _first_problem(parser: Any, fh: Any, rel: str, folder: Folder) -> Optional[str]:
    events = parser.basic_parse(fh, use_float=True)
    return next(_scan(events, rel, folder, PurePosixPath(rel).name == PIPELINE_INDEX), None)


def _scan(events: Iterator[tuple[str, Any]], rel: str, folder: Folder, pipeline_index: bool) -> Iterator[str]:
    """Walks the parse events of one file; yields its problems.

    ``stack`` holds one ``[is_object, path_key, key]`` per open object or array: the path key
    whose strings it holds (None: not paths), and an object's current key.
    """
    stack: list[list] = []
    deepest = sys.getrecursionlimit()
    component: list = []  # model_index.json: the first two items of the top-level array being read
    class_name: Any = None
    for event, value in events:
        if event == "map_key":
            stack[-1][2] = value
            if value in CODE_KEYS:
                yield f"{rel} has `{value}`, which names code to import"
            continue
        if event == "end_map" or event == "end_array":
            frame = stack.pop()
            if pipeline_index and len(stack) == 1 and not frame[0]:
                yield from _component_problems(rel, stack[0][2], component)
            continue
        container = event == "start_map" or event == "start_array"
        if pipeline_index:
            if len(stack) == 1 and stack[0][0]:
                if stack[0][2] == "_class_name":
                    class_name = _CONTAINER if container else value
                component = []
            elif len(stack) == 2 and stack[0][0] and not stack[1][0] and len(component) < 2:
                component.append(_CONTAINER if container else value)
        if not stack:
            if pipeline_index and event != "start_map":
                yield f"{rel} is not a JSON object"
            if container:
                stack.append([event == "start_map", None, None])
            continue
        parent = stack[-1]
        path_key = parent[1]
        if path_key is None and parent[0] and is_path_key(parent[2], len(stack)):
            path_key = parent[2]
        if container:
            if len(stack) >= deepest:
                yield f"{rel} nests deeper than {deepest} levels, which a JSON loader cannot read"
                return
            stack.append([event == "start_map", path_key, None])
        elif event == "string" and path_key is not None and folder.leaves(value):
            yield f"{rel}: `{path_key}` points outside the model folder ({value!r})"
        elif parent[0] and parent[2] in IMPLEMENTATION_KEYS and event == "string" and not value.replace("_", "").isalnum():
            yield f"{rel}: `{parent[2]}` {value[:100]!r} names a Hub kernel, which is code to download and run"
        elif parent[0] and parent[2] == "use_kernels" and value is True:
            yield f"{rel}: `use_kernels` asks for Hub kernels, which are code to download and run"
    if pipeline_index and (not isinstance(class_name, str) or not class_name.isidentifier()):
        shown = "an object or a list" if class_name is _CONTAINER else repr(class_name)
        yield f"{rel}: `_class_name` {shown} is not a diffusers pipeline class (a custom pipeline is code)"


def _component_problems(rel: str, key: Any, entry: list) -> Iterator[str]:
    """A diffusers component ``"<folder>": [library, class]`` (keys starting with ``_`` are settings)."""
    if not isinstance(key, str) or key.startswith("_"):
        return
    if not key.isidentifier():
        yield f"{rel}: component folder {key!r} is not a plain name inside the model folder"
    library, cls = (entry + [None, None])[:2]
    if library is None and cls is None:
        return
    if library not in PIPELINE_LIBRARIES or not isinstance(cls, str) or not cls.isidentifier():
        shown = "an object or a list" if library is _CONTAINER else repr(library)
        yield f"{rel}: component `{key}` comes from {shown}, not diffusers or transformers"

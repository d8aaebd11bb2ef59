"""ONNX exports of model revisions, made once and kept on disk.

An export lives at ``<cache>/<sha>/<head>-<variant>-<versions>/``: the model's
revision (a digest of its files, so two ids holding the same files share one
export), the head it was exported with, ``fp32`` or ``int8``, and a digest of the
library versions that made it, so an upgrade never reuses a stale export. A file lock keeps replicas
from exporting the same entry at once; an entry is built in a temporary folder,
described by a manifest of its files and sizes, and renamed into place, so a
crashed export leaves nothing that looks complete. A broken entry (missing
manifest, missing or resized file) is removed and rebuilt.

This module imports no framework: ``export_model`` imports optimum (and torch) when
it runs, and a torch-free replica runs it in a child process:

    python -m deployments.backends.onnx_export MODEL_FOLDER ENTRY_FOLDER ORT_CLASS EXPORT_TASK [--int8]

which exits with ``EXPORT_UNSUPPORTED`` when optimum cannot export the architecture.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .base import Head

logger = logging.getLogger(__name__)

MANIFEST = "hubserve-export.json"
#: Bumped when the layout of an export changes.
FORMAT = 2
_LIBRARIES = ("optimum", "optimum-onnx", "onnxruntime", "onnx", "transformers", "torch")
#: The int8 export's file name.
QUANTIZED_FILE = "model_quantized.onnx"
#: The exit status of the export command for an architecture optimum cannot export.
EXPORT_UNSUPPORTED = 3

def versions_digest() -> str:
    """A short digest of the versions of every library that shapes an export."""
    parts = [f"format={FORMAT}"]
    for name in _LIBRARIES:
        try:
            parts.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:12]


def entry_dir(cache_root: Path, revision: str, head: Head, quantize: bool) -> Path:
    """Where the export of one model revision, head and variant lives."""
    return cache_root / revision / f"{head.name}-{'int8' if quantize else 'fp32'}-{versions_digest()}"


def export_revision(spec) -> str:
    """The revision that keys a ``LoadSpec``'s export (its sha, else its folder's name)."""
    return spec.revision or f"local-{spec.path.name}"


def is_complete(entry: Path) -> bool:
    """Whether ``entry`` holds every file its manifest lists, at the listed sizes."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all(
        (entry / name).is_file() and (entry / name).stat().st_size == size for name, size in files.items()
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_export(entry: Path, build: Callable[[Path], None]) -> Path:
    """The complete export at ``entry``, building it with ``build(tmp_folder)`` if needed.

    Args:
        entry: the cache entry folder.
        build: writes the export's files into the folder it is given.

    Returns:
        ``entry``, complete.
    """
    if is_complete(entry):
        return entry
    with _locked(entry.with_name(entry.name + ".lock")):
        if is_complete(entry):  # another replica finished it while we waited
            return entry
        if entry.exists():
            logger.warning("rebuilding broken ONNX export %s", entry)
            shutil.rmtree(entry)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            build(tmp)
            files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps({"files": files, "versions": versions_digest()}))
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry



def supports(model_type: str, head: Head) -> bool:
    """Whether optimum's ONNX exporter handles this architecture for this head (imports optimum)."""
    return head.export_task is not None and exports(model_type, head.export_task)


def exports(model_type: str, export_task: str) -> bool:
    """Whether optimum's ONNX exporter handles ``model_type`` models for ``export_task``."""
    import optimum.exporters.onnx.model_configs  # noqa: F401 - registers the ONNX configs
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(model_type, exporter="onnx",
                                                                library_name="transformers")
    except (KeyError, ValueError):
        return False
    return export_task in tasks


def ort_class(name: str):
    """optimum's ONNX Runtime model class called ``name`` (imports optimum)."""
    import optimum.onnxruntime as ort_models

    if not name.startswith("ORTModel") or not hasattr(ort_models, name):
        raise ValueError(f"optimum has no ONNX Runtime model class {name!r}")
    return getattr(ort_models, name)


def export_model(source: Path, folder: Path, ort_class_name: str, quantize: bool) -> None:
    """Exports the model in ``source`` as optimum's ``ort_class_name`` into ``folder`` (int8:
    only the quantized file is kept). Imports optimum and torch."""
    exported = ort_class(ort_class_name).from_pretrained(source, export=True, local_files_only=True,
                                                         trust_remote_code=False)
    exported.save_pretrained(folder)
    if quantize:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True,
                                                    operators_to_quantize=["MatMul"])
        ORTQuantizer.from_pretrained(folder).quantize(save_dir=folder, quantization_config=config)
        (folder / "model.onnx").unlink()


def export_command(spec, entry: Path, quantize: bool) -> list[str]:
    """The export command line of ``spec``'s model into ``entry`` (run with this Python)."""
    head = spec.head
    return [sys.executable, "-m", "deployments.backends.onnx_export", str(spec.path), str(entry),
            head.ort_class, head.export_task, *(["--int8"] if quantize else [])]


def main(argv=None) -> int:
    """The export command: builds ``ENTRY`` from ``MODEL_FOLDER`` unless it is complete."""
    args = list(sys.argv[1:] if argv is None else argv)
    quantize = "--int8" in args
    args = [a for a in args if a != "--int8"]
    if len(args) != 4:
        print("usage: python -m deployments.backends.onnx_export MODEL ENTRY ORT_CLASS EXPORT_TASK [--int8]",
              file=sys.stderr)
        return 2
    source, entry, class_name, export_task = Path(args[0]), Path(args[1]), args[2], args[3]
    logging.basicConfig(level=logging.WARNING)
    config = {}
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not exports(model_type, export_task):
        print(f"optimum has no ONNX export of `{model_type}` models for {export_task}", file=sys.stderr)
        return EXPORT_UNSUPPORTED
    try:
        ensure_export(entry, lambda folder: export_model(source, folder, class_name, quantize))
    except Exception as exc:  # noqa: BLE001 - the parent reports the last line
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

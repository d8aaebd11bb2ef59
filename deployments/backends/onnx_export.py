"""ONNX exports of model revisions, made once and kept on disk, and what they may serve.

An export lives at ``<cache>/<sha>/<head>-<versions>/``: the model's revision (a digest of
its files, so two ids holding the same files share one export), the head it was exported
with, and a digest of the library versions that made it, so an upgrade never reuses a stale
export. It holds the float32 graphs of the head's family (``onnx_families``), their int8
copies, and a manifest: its files and sizes, and for each variant the fidelity gate's figures
(``fidelity``), whether it passed, and its latency; ``choice`` is the fastest variant that
passed (what ``backend: auto`` serves), None when none did (the model then serves on torch,
and the reason is kept, so a refused export is not retried until the libraries change).

A file lock keeps replicas from exporting the same entry at once; an entry is built in a
temporary folder and renamed into place, so a crashed export leaves nothing that looks
complete. A broken entry (missing manifest, missing or resized file) is removed and rebuilt.

This module imports no framework. The export itself (torch) runs in a child process,
``python -m deployments.backends.onnx_build`` (``run_export``), with no secrets in its
environment, the replica's confinement, and ``limits.export_timeout_s`` and
``limits.export_memory_bytes``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from hubserve.config.limits import LimitsConfig
from hubserve.errors import ExportUnsupported, ModelLoadError
from hubserve.tokens.secret_env import scrubbed

from .base import Head

logger = logging.getLogger(__name__)

MANIFEST = "hubserve-export.json"
#: Bumped when the layout of an export, or the project's exporter, changes.
FORMAT = 3
_LIBRARIES = ("onnxruntime", "onnx", "onnxscript", "transformers", "torch")
#: The graph modules of each family (``Head.onnx``), in ``deployments.backends``.
FAMILIES = {"encoder": "onnx_encoder", "causal-lm": "onnx_decoder", "seq2seq-lm": "onnx_encdec",
            "speech-seq2seq": "onnx_encdec", "vision2seq": "onnx_encdec"}
VARIANTS = ("fp32", "int8")


#: The digest ending an entry's name (``versions_digest``).
_DIGEST = re.compile(r"[0-9a-f]{12}")


@functools.lru_cache(maxsize=None)
def versions_digest(family: Optional[str] = None) -> str:
    """A short digest of what shapes an export: the versions of the libraries that make and
    run it, and the project's exporter (this package's export modules and the family's own)."""
    parts = [f"format={FORMAT}"]
    for name in _LIBRARIES:
        try:
            parts.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    here = Path(__file__).resolve().parent
    modules = ["onnx_export", "onnx_build", "onnx_graphs", "fidelity"]
    modules += [FAMILIES[family]] if family in FAMILIES else []
    for module in modules:
        try:
            parts.append(hashlib.sha1((here / f"{module}.py").read_bytes()).hexdigest())
        except OSError:
            parts.append(f"{module}=none")
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:12]


def entry_dir(cache_root: Path, revision: str, head: Head) -> Path:
    """Where the export of one model revision and head lives."""
    return cache_root / revision / f"{head.name}-{versions_digest(head.onnx)}"


def graph_file(name: str, variant: str) -> str:
    """The file of graph ``name`` (``decoder.onnx``) in a variant (``decoder.int8.onnx``)."""
    return name if variant == "fp32" else name.replace(".onnx", f".{variant}.onnx")


def export_revision(spec) -> str:
    """The revision that keys a ``LoadSpec``'s export (its sha, else its folder's name)."""
    return spec.revision or f"local-{spec.path.name}"


def read_manifest(entry: Path) -> Optional[dict]:
    """The manifest of a complete entry (every file it lists there at its size), else None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = manifest["files"]
        complete = all((entry / name).is_file() and (entry / name).stat().st_size == size
                       for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest if complete and isinstance(manifest.get("variants"), dict) else None


def is_complete(entry: Path) -> bool:
    """Whether ``entry`` holds every file its manifest lists, at the listed sizes."""
    return read_manifest(entry) is not None


def served_variant(manifest: dict, backend: str) -> str:
    """The variant a backend serves from an export: ``onnx`` the float32 graphs, ``onnx-int8``
    the int8 ones, ``auto`` the fastest that passed the gate.

    Raises:
        ExportUnsupported: that variant did not pass (the model serves on torch).
    """
    variants = manifest.get("variants") or {}
    if backend == "auto":
        choice = manifest.get("choice")
        if choice in VARIANTS:
            return choice
        raise ExportUnsupported(manifest.get("reason") or "no ONNX export passed the fidelity gate")
    variant = "int8" if backend == "onnx-int8" else "fp32"
    figures = variants.get(variant) or {}
    if figures.get("passed") is True:
        return variant
    reason = figures.get("reason") or manifest.get("reason") or "it was not made"
    raise ExportUnsupported(f"the {variant} ONNX export did not pass the fidelity gate: {reason}")


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
            files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST}
            manifest = {"variants": {}, "choice": None}
            if (tmp / MANIFEST).is_file():
                manifest = json.loads((tmp / MANIFEST).read_text())
            manifest.update(files=files, versions=versions_digest())
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _drop_superseded(entry)
    return entry


def _drop_superseded(entry: Path) -> None:
    """Removes the exports of the same revision and head made by other library or exporter
    versions: this install never serves them again (an upgrade would otherwise leave them on disk)."""
    head = entry.name.rsplit("-", 1)[0]
    for old in entry.parent.glob(f"{head}-*"):
        stem = old.name.removesuffix(".lock")
        if stem != entry.name and stem.rsplit("-", 1)[0] == head and _DIGEST.fullmatch(stem.rsplit("-", 1)[1]):
            with _locked(old.parent / f"{stem}.lock"):  # never under a replica that is building it
                shutil.rmtree(old.parent / stem, ignore_errors=True)
            (old.parent / f"{stem}.lock").unlink(missing_ok=True)


def session_options(threads: Optional[int]):
    """ONNX Runtime options of a replica's sessions: its thread count, and idle workers that
    sleep (by default they spin, taking the cores from the event loop)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_sessions(entry: Path, graphs, variant: str, threads: Optional[int]) -> dict:
    """One CPU session per graph of an export variant, keyed by the graph's float32 name."""
    import onnxruntime as ort

    options = session_options(threads)
    return {name: ort.InferenceSession(str(entry / graph_file(name, variant)), options,
                                       providers=["CPUExecutionProvider"]) for name in graphs}


def export_command(spec, entry: Path) -> list[str]:
    """The export command line of ``spec``'s model into ``entry`` (run with this Python)."""
    head = spec.head
    return [sys.executable, "-X", "faulthandler", "-m", "deployments.backends.onnx_build", str(spec.path), str(entry),
            head.auto_class, head.onnx, head.name, str(spec.threads or 1)]


def _bounded(memory_bytes: int) -> Callable[[], None]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    return limit


def run_export(spec) -> dict:
    """The manifest of ``spec``'s export, made in a child process if missing.

    Raises:
        ExportUnsupported: the head has no ONNX family; the export failed or timed out (the
            failure is kept in the cache, so the next load does not retry it) or its process died
            of a signal (not kept).
        ModelLoadError: no cache folder.
    """
    if spec.head.onnx not in FAMILIES:
        raise ExportUnsupported(f"the {spec.head.name} head has no ONNX export")
    if spec.cache_dir is None:
        raise ModelLoadError("the onnx backends need a cache folder for their exports")
    entry = entry_dir(spec.cache_dir, export_revision(spec), spec.head)
    manifest = read_manifest(entry)
    if manifest is not None:
        return manifest
    limits = spec.limits or LimitsConfig()
    root = Path(__file__).resolve().parents[2]
    env = {**scrubbed(), "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": str(spec.threads or 1)}
    logger.info("exporting %s to ONNX (a child process; once per revision)", spec.model_id or spec.path)
    try:
        done = subprocess.run(export_command(spec, entry), env=env, capture_output=True, text=True,
                              timeout=limits.export_timeout_s, preexec_fn=_bounded(limits.export_memory_bytes))
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        failed, crashed = done.returncode != 0, done.returncode < 0
        if crashed:  # a signal says nothing about the model: not kept, the next load tries again
            reason = f"the export process died of signal {-done.returncode}"
            logger.warning("the ONNX export of %s died of signal %d; its last output:\n%s",
                           spec.model_id or spec.path.name, -done.returncode, "\n".join(lines[-20:]))
    except subprocess.TimeoutExpired:
        reason = f"the export took more than {limits.export_timeout_s:g}s (limits.export_timeout_s)"
        failed, crashed = True, False
    if failed and not crashed:
        logger.warning("the ONNX export of %s failed: %s", spec.model_id or spec.path.name, reason)
        record_failure(entry, reason)
    manifest = read_manifest(entry)
    if manifest is None:
        raise ExportUnsupported(f"the ONNX export of {spec.model_id or spec.path.name} failed: {reason}")
    return manifest


def record_failure(entry: Path, reason: str) -> None:
    """Keeps a failed export in the cache as an entry with no variant, and why."""
    def build(folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps({"variants": {}, "choice": None, "reason": reason[:2000]}))

    try:
        ensure_export(entry, build)
    except OSError:
        logger.exception("cannot record the failed export at %s", entry)

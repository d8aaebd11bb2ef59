"""The threads that read model files may read nothing else: Landlock, where the kernel has it.

A model's files name the files its loaders open (vocabularies, weights, templates). The model
file rules (``hubserve.repos.model_files``) refuse a path outside the model's folder; this is the
second wall. A model server runs every load and every inference in its own pool of threads, each
confined by Landlock when it starts (``model_threads``): it may read the Python installation and
the project's packages, the system's libraries, the model folders of the config (the store, the
HF cache, pulled models, the ONNX exports, the configured paths), ``/sys``, a few devices, some
of its own ``/proc/self`` (never ``environ``), and its own temp folder; nothing else. Everything such a thread starts
(torch's and ONNX Runtime's workers, the generation thread, the ONNX export and ffmpeg
children) inherits the confinement. Writing is not confined (exports, locks and temp files are
written where they always were); reading is what leaks a secret.

What it does not cover: threads of the process that never run model work (Ray's own, the
event loop) are not confined; native code running on a confined thread is (Landlock is the
kernel's), so tokenizers, safetensors and ONNX Runtime opening files themselves are covered.
Without Landlock (another OS, a kernel before 5.13, or a sandbox without it) the threads run
unconfined, and the server says so once in the log.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import logging
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import hubserve
from hubserve.cli.process import alive
from hubserve.repos.folders import hf_cache_dir

logger = logging.getLogger(__name__)

#: What every model thread may read besides the model folders: system libraries (the dynamic
#: loader of a child such as ffmpeg), CPU and memory facts, devices, and a few /etc files that
#: libc reads; never all of /etc (a Kubernetes Secret may be mounted there) nor other processes.
SYSTEM_READS = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/sys", "/dev/null", "/dev/zero",
                "/dev/urandom", "/dev/random", "/dev/shm", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
                "/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                "/etc/hosts")
#: Of its own ``/proc/self``, what runtimes read (CPU quotas, memory maps, open descriptors); not
#: ``environ``, which holds whatever the process was started with.
SELF_READS = ("status", "stat", "statm", "cgroup", "mountinfo", "maps", "limits", "auxv", "cmdline", "fd")


def model_reads(config, private_tmp: Path) -> list[Path]:
    """The folders and files a model thread may read under ``config`` (an ``AppConfig``)."""
    data_dir = Path(config.data_dir).resolve()
    places: list[Path] = [Path(p) for p in SYSTEM_READS] + [Path("/proc/self", name) for name in SELF_READS]
    places += [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)]
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        # NOTE(hubserve): a source checkout holds the server's own data folder (tokens, uploads in
        # progress); its packages are allowed one by one instead.
        if path.is_dir() and not data_dir.is_relative_to(path):
            places.append(path)
    places += [Path(__file__).resolve().parent, Path(hubserve.__file__).resolve().parent]
    # NOTE(hubserve): a rule needs its folder to exist: the store, the exports and the pulled
    # models are made now if they are not yet (a first pull or export comes later).
    for folder in (config.model_store, config.onnx_cache, config.hub.cache_dir):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            places.append(Path(folder))
    places.append(private_tmp)
    cache = hf_cache_dir(config.hf_cache, os.environ)
    if cache is not None:
        places.append(cache)
    places += [Path(entry.path) for entry in config.models.values() if entry.path and not entry.path.startswith("pkg://")]
    return [p for p in dict.fromkeys(places) if p.exists()]


def _ruleset(paths: Iterable[Path]):
    """A Landlock ruleset that lets a thread read ``paths`` only; None where Landlock is missing."""
    try:
        import landlock
        from landlock.plumbing import FSAccess

        read = FSAccess.READ_FILE | FSAccess.READ_DIR
        ruleset = landlock.Ruleset(restrict_rules=read)
        for path in paths:
            ruleset.allow(str(path), rules=read if path.is_dir() else FSAccess.READ_FILE)
        return ruleset
    except (ImportError, OSError) as exc:
        logger.warning("model threads run unconfined: Landlock is not available here (%s)", exc)
        return None


@functools.lru_cache(maxsize=1)
def private_tmp(data_dir: str) -> Path:
    """This process's own temp folder, ``<data_dir>/tmp/model-<pid>-*`` (those of processes gone
    are removed), made its temp folder for Python and for the children it starts: temp files
    (audio for ffmpeg, views without pickles) go where model threads may read, not to /tmp at
    large, which holds other servers' private folders."""
    parent = Path(data_dir, "tmp")
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob("model-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"model-{os.getpid()}-", dir=parent))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    tempfile.tempdir = str(folder)
    os.environ["TMPDIR"] = str(folder)
    return folder


def _confine(ruleset) -> None:
    try:
        ruleset.apply()
    except OSError as exc:
        logger.warning("a model thread runs unconfined: Landlock refused it (%s)", exc)


def model_threads(config, name: str, workers: Optional[int] = None) -> ThreadPoolExecutor:
    """A pool whose threads read only what ``model_reads`` allows (with ``config.confine_models``,
    where the kernel has Landlock)."""
    workers = workers or min(32, (os.cpu_count() or 1) + 4)
    ruleset = _ruleset(model_reads(config, private_tmp(config.data_dir))) if config.confine_models else None
    if ruleset is None:
        return ThreadPoolExecutor(workers, thread_name_prefix=name)
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=_confine, initargs=(ruleset,))


async def run_in(pool: ThreadPoolExecutor, fn: Callable, *args: Any) -> Any:
    """``asyncio.to_thread`` on ``pool``: ``fn(*args)`` with the caller's context variables."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(context.run, fn, *args))

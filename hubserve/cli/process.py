"""The processes a ``hubserve serve`` or ``hubserve cluster up`` starts, and their stop by PID.

Both become a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): a process they started
stays in their process tree when its parent exits (Ray's workers, in sessions of their own,
become theirs when their raylet exits), so that ``stop_all`` finds everything by walking the
tree, a process started with an environment of its own included. Every process started also
carries ``SERVE_ID_ENV`` in its environment, which finds what is not in the tree. A child of
ours that could outlive us (``run_child``) dies with us (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

#: Set, to a value of its own, in the environment of every process a server starts.
SERVE_ID_ENV = "HUBSERVE_SERVE_ID"

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def become_subreaper() -> None:
    """Orphans among this process's descendants become its children, not init's."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _stat(pid: int) -> Optional[tuple[str, int]]:
    """``(state, parent pid)`` of ``pid``; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def reap() -> None:
    """Collects exited children (the orphans this process adopted included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").glob("[0-9]*")]


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs (other than this one) whose environment holds ``name=value`` (Linux /proc)."""
    needle = f"{name}={value}".encode()
    found = []
    for pid in _pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def descendants(root: Optional[int] = None) -> list[int]:
    """Living processes under ``root`` (this process) in the process tree."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _living(pids: list[int]) -> list[int]:
    reap()
    return [pid for pid in pids if alive(pid)]


def stop_processes(first: list[int], rest: list[int], grace_s: float) -> None:
    """SIGTERM to ``first`` (Ray's raylets, so that one exits before the processes it talks
    to, as Ray stops a node), then to ``rest``; SIGKILL to what is left after each grace."""
    for pids in (first, rest):
        _send(_living(pids), signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _living(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        _send(_living(pids), signal.SIGKILL)


def _is_raylet(pid: int) -> bool:
    try:
        return b"raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def started(tag: str) -> list[int]:
    """Every process this one started (its descendants) and every one tagged ``SERVE_ID_ENV=tag``."""
    return sorted(set(descendants()) | set(processes_with_env(SERVE_ID_ENV, tag)))


def stop_all(tag: str, grace_s: float) -> list[int]:
    """Stops what this process started (``started``): the raylets first, then the rest, by
    SIGTERM and after ``grace_s`` SIGKILL; then SIGKILL to anything started meanwhile, until
    none is left or ``grace_s`` more passed. Returns what still runs (nothing, unless the kernel
    holds a process in an uninterruptible wait)."""
    pids = started(tag)
    raylets = [pid for pid in pids if _is_raylet(pid)]
    stop_processes(raylets, [pid for pid in pids if pid not in raylets], grace_s)
    deadline = time.monotonic() + grace_s
    while True:
        left = _living(started(tag))
        if not left or time.monotonic() > deadline:
            return left
        _send(left, signal.SIGKILL)
        time.sleep(0.1)


def say(message: str) -> None:
    """``hubserve: message`` on stderr, if it is still open (a closed terminal or pipe must not
    interrupt a stop)."""
    try:
        print(f"hubserve: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class Stop:
    """Set by SIGINT, SIGTERM or SIGHUP (the terminal closed)."""

    def __init__(self) -> None:
        self.asked = False
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self)

    def __call__(self, signum, _frame) -> None:
        if not self.asked:
            say(f"stopping on {signal.Signals(signum).name}")
        self.asked = True


def _dies_with(parent: int):
    def setup() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return setup


def run_child(argv: list[str], env: dict, stop: Optional[Stop], timeout_s: Optional[float] = None) -> Optional[int]:
    """Runs a ``python -m hubserve.cli.serve_run`` child, killed if this process dies; its exit
    code, or None when ``stop`` was asked (or ``timeout_s`` passed) first, after killing it."""
    proc = subprocess.Popen([sys.executable, "-m", "hubserve.cli.serve_run", *argv], env=env,
                            start_new_session=True, preexec_fn=_dies_with(os.getpid()))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if (stop is not None and stop.asked) or (deadline is not None and time.monotonic() > deadline):
                return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""CPU time and memory of a server's whole process tree, read from Linux ``/proc`` (a server
here is a tree: Ray's raylet and workers, uvicorn's, infinity's)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _tree(root: int) -> list[int]:
    children, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """User and system CPU seconds spent so far by ``root`` and its descendants."""
    total = 0
    for pid in _tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def tree_bytes(root: int, file: str = "status", field: str = "VmRSS:") -> int:
    """A memory figure summed over a process tree: RSS by default, PSS with
    ``file="smaps_rollup", field="Pss:"`` (shared pages counted once in all)."""
    total = 0
    for pid in _tree(root):
        try:
            for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def rss_bytes(root: int) -> int:
    """The resident memory of ``root`` and its descendants."""
    return tree_bytes(root)

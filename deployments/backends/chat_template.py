"""Chat templates rendered under bounds that really stop the work.

A model's chat template is code its author wrote. It renders in a process of its own
(``template_worker.py``, standard library and jinja2 only, no secret in its environment)
whose address space is capped at ``limits.max_template_memory_bytes``; a render past
``limits.max_template_seconds`` (or the request's deadline, when sooner) ends that process,
and one past ``limits.max_template_chars`` characters stops as the text grows. Each is the
request's 400, naming the bound; the replica and its other models' requests go on. One idle
process is kept for the next render; concurrent renders start their own.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from hubserve.errors import InvalidInput

WORKER = Path(__file__).with_name("template_worker.py")
#: How long past its time bound a render process may take to answer before it is killed. The
#: process ends itself at the bound (counted from when it reads the request); this covers its
#: start and the reply's transfer on a busy machine.
GRACE_S = 10.0

_idle: list["_Worker"] = []
_idle_lock = threading.Lock()


class _Worker:
    """One render process."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        env = {"TZ": os.environ["TZ"]} if "TZ" in os.environ else {}
        self.proc = subprocess.Popen([sys.executable, "-I", str(WORKER), str(memory_bytes)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)

    def send(self, line: bytes) -> bool:
        """Hands a request over; False when the process is gone."""
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
            return True
        except OSError:
            return False

    def reply(self, wait_s: float) -> Optional[dict]:
        """The reply to the request sent, or None when the process ended or overran ``wait_s``."""
        deadline = time.monotonic() + wait_s
        fd, data = self.proc.stdout.fileno(), bytearray()
        readable = select.poll()
        readable.register(fd, select.POLLIN)
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not readable.poll(left * 1000):
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            data += chunk
        return json.loads(data)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


def _take(memory_bytes: int) -> _Worker:
    with _idle_lock:
        for worker in _idle:
            if worker.memory_bytes == memory_bytes and worker.proc.poll() is None:
                _idle.remove(worker)
                return worker
    return _Worker(memory_bytes)


def _give_back(worker: _Worker) -> None:
    with _idle_lock:
        spare = _idle.pop() if _idle else None
        _idle.append(worker)
    if spare is not None:
        spare.stop()


def render_chat_template(template: str, context: dict, limits: Any, deadline: Optional[float] = None) -> str:
    """The text ``template`` renders for ``context`` (JSON values), under ``limits``.

    Args:
        template: the jinja2 source.
        context: the template's variables (``messages``, ``add_generation_prompt``, the
            special tokens...).
        limits: the config's ``LimitsConfig``.
        deadline: the request's deadline (epoch seconds), when it has one.

    Raises:
        InvalidInput: when the template raises, or passes one of its bounds.
    """
    seconds = limits.max_template_seconds
    if deadline is not None:
        seconds = min(seconds, max(deadline - time.time(), 0.001))
    line = json.dumps({"template": template, "context": context, "max_chars": limits.max_template_chars,
                       "seconds": seconds}).encode("ascii") + b"\n"
    worker = _take(limits.max_template_memory_bytes)
    if not worker.send(line):  # an idle process that ended meanwhile: a fresh one takes the request
        worker.stop()
        worker = _Worker(limits.max_template_memory_bytes)
        worker.send(line)
    reply = worker.reply(seconds + GRACE_S)
    if reply is None:
        ended = worker.proc.poll()
        worker.stop()
        if ended is None or ended == -signal.SIGALRM:  # overran: killed here, or ended itself at its bound
            raise InvalidInput(f"The model's chat template took more than {seconds:g}s to render "
                               "(limits.max_template_seconds)")
        raise InvalidInput("The model's chat template stopped before it rendered: it needs more than "
                           f"{limits.max_template_memory_bytes} bytes of memory (limits.max_template_memory_bytes)")
    _give_back(worker)
    if reply.get("bound") == "chars":
        raise InvalidInput(f"The model's chat template renders more than {limits.max_template_chars} characters "
                           "for these messages (limits.max_template_chars)")
    if reply.get("bound") == "memory":
        raise InvalidInput("The model's chat template needs more than "
                           f"{limits.max_template_memory_bytes} bytes of memory (limits.max_template_memory_bytes)")
    if "error" in reply:
        raise InvalidInput(f"The model's chat template refused these messages: {reply['error']}")
    return reply["text"]


def tokenizer_chat_prompt(tokenizer: Any, messages: list[dict], limits: Any, deadline: Optional[float] = None) -> str:
    """What ``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``
    renders (the same template and variables), rendered under ``limits``.

    Raises:
        InvalidInput: when the tokenizer has no chat template, or as ``render_chat_template``.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidInput("This model has no chat template; use its text-generation route or /v1/completions instead")
    try:
        template = tokenizer.get_chat_template()
    except ValueError as exc:  # several named templates and none of them the default
        raise InvalidInput(f"The model's chat template refused these messages: {exc}") from None
    context = {**tokenizer.special_tokens_map, "messages": messages, "tools": None, "documents": None,
               "add_generation_prompt": True}
    return render_chat_template(template, context, limits, deadline)

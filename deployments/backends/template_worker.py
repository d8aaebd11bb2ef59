"""The process that renders chat templates (``chat_template.py`` starts and stops it).

Run as a script, ``python -I template_worker.py MEMORY_BYTES``: it imports only the
standard library and jinja2, caps its own address space at ``MEMORY_BYTES``, then reads
one JSON request a line on stdin (``template``, ``context``, ``max_chars``, ``seconds``)
and answers each with one JSON line on stdout: ``{"text": ...}``, or ``{"error": ...}``
with ``"bound": "chars"`` or ``"memory"`` when a bound stopped the render. A render
that outlives ``seconds`` ends the process (SIGALRM, whose default action cannot be
caught by the template's work, even inside one long C call); so does the end of stdin.

The environment is the one transformers renders chat templates in: jinja2's immutable
sandbox with ``trim_blocks`` and ``lstrip_blocks``, loop controls, the ``{% generation %}``
tag, a ``tojson`` filter that leaves non-ASCII text as it is, and the ``raise_exception``
and ``strftime_now`` globals.
"""

from __future__ import annotations

import functools
import json
import resource
import signal
import sys
from datetime import datetime
from typing import Any


class TooLong(Exception):
    """The rendered text passed ``max_chars``."""


def _tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:  # noqa: A002 - the name templates call it with
    return datetime.now().strftime(format)


def environment() -> Any:
    """The sandboxed jinja2 environment chat templates are compiled in."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def _raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    class Generation(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` marks the assistant's text for training
        masks; a prompt keeps the text as it is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    return environment().from_string(template)


def render(template: str, context: dict, max_chars: int) -> str:
    """The text ``template`` renders for ``context``, refused past ``max_chars`` characters
    (counted as it is produced, so a runaway output stops early)."""
    parts, size = [], 0
    for part in _compiled(template).generate(**context):
        size += len(part)
        if size > max_chars:
            raise TooLong()
        parts.append(part)
    return "".join(parts)


def answer(request: dict) -> dict:
    """The reply to one request (its time bound is armed by the caller)."""
    try:
        return {"text": render(request["template"], request["context"], request["max_chars"])}
    except TooLong:
        return {"error": "too long", "bound": "chars"}
    except MemoryError:
        return {"error": "out of memory", "bound": "memory"}
    except Exception as exc:  # noqa: BLE001 - the template's own error, told to the caller
        return {"error": str(exc) or type(exc).__name__}


def main(memory_bytes: int) -> None:
    import jinja2.sandbox  # noqa: F401 - imported before any request's time bound runs

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        signal.setitimer(signal.ITIMER_REAL, request["seconds"])
        reply = answer(request)
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout.buffer.write(json.dumps(reply).encode("ascii") + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]))

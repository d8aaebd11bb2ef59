"""The ``huggingface_hub`` clients the Hub-route tests drive, each in a venv of its own through a
subprocess: 0.36 (``requests``, ``private``, LFS uploads that offer Xet) and the newest one
(``httpx``, ``visibility``, Xet uploads whenever ``hf_xet`` is installed). ``make install``
makes both venvs (``.venv-client-036`` and ``.venv-client``); a test makes a missing one.

``HubClient.api("create_repo", "org/name", private=True)`` runs one ``HfApi`` method in the
client's venv and answers its result as plain JSON values (dataclasses as dicts, a ``RepoUrl``
as its string), or raises ``ClientError`` carrying the client's exception class and status.

The tests' own process imports the pinned client (``.venv``'s); ``uploads_without_xet`` makes
its uploads plain LFS ones, as ``HF_HUB_DISABLE_XET=1`` does for the newest client's, until
this server speaks Xet (0.36 runs as users run it: it offers Xet and takes the LFS answer).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Client name -> its venv (a Makefile target), oldest first.
CLIENT_VENVS = {"hf-0.36": ".venv-client-036", "hf-newest": ".venv-client"}
#: The clients that ask before uploading with Xet (0.x offers it to the LFS batch API, which answers
#: "basic" here): they run as users run them. The others upload with Xet whenever hf_xet is
#: installed, and run with HF_HUB_DISABLE_XET=1 until this server speaks Xet.
ASKS_BEFORE_XET = {"hf-0.36"}

# The script a client venv runs: one HfApi call, its answer (or error) as JSON on stdout.
_CALL = r"""
import dataclasses, datetime, json, sys
from huggingface_hub import HfApi

def plain(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x if type(x) in (bool, int, float, str) or x is None else str(x)
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (datetime.datetime, datetime.date)):
        return x.isoformat()
    if hasattr(x, "__iter__"):
        return [plain(i) for i in x]
    return {k: plain(v) for k, v in vars(x).items() if not k.startswith("_")}

call = json.loads(sys.argv[1])
try:
    answer = {"ok": plain(getattr(HfApi(), call["method"])(*call["args"], **call["kwargs"]))}
except Exception as exc:
    response = getattr(exc, "response", None)
    answer = {"error": type(exc).__name__, "bases": [c.__name__ for c in type(exc).__mro__],
              "status": getattr(response, "status_code", None), "message": str(exc)[-2000:]}
print("\n" + json.dumps(answer))
"""


class ClientError(Exception):
    """What a client raised: its class (and base classes) and the HTTP status it saw."""

    def __init__(self, answer: dict) -> None:
        super().__init__(f"{answer['error']} ({answer['status']}): {answer['message']}")
        self.name, self.bases, self.status = answer["error"], answer["bases"], answer["status"]

    def is_a(self, name: str) -> bool:
        return name in self.bases


@dataclass
class HubClient:
    """One client venv, pointed at ``endpoint`` with ``token``."""

    name: str
    venv: Path
    endpoint: str = ""
    token: Optional[str] = None
    home: Optional[Path] = None

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def at(self, endpoint: str, token: Optional[str], home: Path) -> "HubClient":
        return HubClient(self.name, self.venv, endpoint, token, home)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VIRTUAL_ENV", "PYTHON"))}
        # NOTE(hubserve): telemetry stays on, as users run it (2.x then asks the endpoint for its
        # agent registry).
        env.update(HF_ENDPOINT=self.endpoint, HF_HOME=str(self.home))
        if self.name not in ASKS_BEFORE_XET:
            env["HF_HUB_DISABLE_XET"] = "1"
        if self.token:
            env["HF_TOKEN"] = self.token
        return env

    @property
    def version(self) -> tuple[int, ...]:
        out = self.python("import huggingface_hub; print(huggingface_hub.__version__)").strip()
        return tuple(int(p) for p in out.split(".")[:2])

    def python(self, script: str, *args: str) -> str:
        out = subprocess.run([str(self.bin / "python"), "-c", script, *args], env=self.env(), capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, f"{self.name}: {out.stderr[-3000:]}"
        return out.stdout

    def api(self, method: str, *args, **kwargs):
        """``HfApi().<method>(*args, **kwargs)`` in the client's venv; raises ``ClientError``."""
        call = json.dumps({"method": method, "args": [str(a) if isinstance(a, Path) else a for a in args],
                           "kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}})
        answer = json.loads(self.python(_CALL, call).rstrip().rsplit("\n", 1)[-1])
        if "error" in answer:
            raise ClientError(answer)
        return answer["ok"]

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """The client's ``hf`` CLI."""
        return subprocess.run([str(self.bin / "hf"), *args], env=self.env(), capture_output=True, text=True,
                              timeout=300)


def client_venv(name: str) -> HubClient:
    """The client ``name``, its venv made by ``make`` when missing."""
    venv = ROOT / CLIENT_VENVS[name]
    if not (venv / ".installed").exists():
        subprocess.run(["make", "-s", f"{CLIENT_VENVS[name]}/.installed"], cwd=ROOT, check=True, timeout=900)
    return HubClient(name, venv)


@pytest.fixture(scope="module", params=sorted(CLIENT_VENVS))
def hub_client(request) -> HubClient:
    """Each client venv in turn (not yet pointed at a server: ``.at(url, token, home)``)."""
    return client_venv(request.param)


@pytest.fixture(scope="module", autouse=True)
def uploads_without_xet():
    """The tests' own client (``.venv``'s) uploads through LFS, not Xet, in a module that imports
    this fixture (it is autouse there)."""
    from huggingface_hub import constants

    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_DISABLE_XET", "1")
    patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    yield
    patch.undo()

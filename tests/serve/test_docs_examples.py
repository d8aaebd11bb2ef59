"""Runs the runnable blocks of README.md and docs/*.md against the test server (docs/testing.md).

A fenced block whose info string ends in ``runnable`` (```` ```python runnable ````,
```` ```bash runnable ````) runs in a child process, offline, with the server's URL and tiny
stand-ins for the real models of ``make serve`` substituted; it passes when it exits 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_docs import PAGES, ROOT, runnable_blocks

BLOCKS = [(page, line, language, code) for page in PAGES
          for line, language, code in runnable_blocks(page.read_text(encoding="utf-8"))]
#: The real models of configs/default.yaml and the task of the tiny model that stands in for each
#: (sentence-transformers/all-MiniLM-L6-v2 is served for real by the test graph).
STAND_INS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": "text-generation",
    "hubserve/efficientnet-lite0": "image-classification",
    "openai/whisper-tiny.en": "automatic-speech-recognition",
}
#: A bash prelude: curl fails on an HTTP error status (and still prints the error body).
CURL_FAILS = 'curl() { command curl --fail-with-body "$@"; }\n'


def rewrite(code: str, url: str, tiny_models: dict[str, str]) -> str:
    """``code`` aimed at the test server and its models."""
    for host in ("http://127.0.0.1:8000", "http://localhost:8000"):
        code = code.replace(host, url)
    for real, task in STAND_INS.items():
        code = code.replace(real, tiny_models[task])
    return code


def client_env(workdir: Path, token: str) -> dict[str, str]:
    """The environment of a block: ``HF_TOKEN`` is a token of the test server (the OpenAI examples
    send it; nobody's own token leaks in), and never HF_HUB_OFFLINE (with it, InferenceClient
    refuses even local URLs)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OPENAI_API_KEY")}
    env["HF_TOKEN"] = token
    env["HF_HOME"] = str(workdir / "hf-home")    # no stored login token
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    return env


@pytest.mark.parametrize("page, line, language, code", BLOCKS,
                         ids=[f"{page.relative_to(ROOT)}:{line}" for page, line, _, _ in BLOCKS])
def test_runnable_block(server, tiny_models, tmp_path, page, line, language, code):
    shutil.copy(ROOT / "tests" / "data" / "cat.jpg", tmp_path / "cat.jpg")
    code = rewrite(code, server.url, tiny_models)
    if language == "python":
        command, stdin = [sys.executable, "-"], code
    else:
        command, stdin = ["bash", "-e", "-o", "pipefail", "-s"], CURL_FAILS + code
    done = subprocess.run(command, input=stdin, cwd=tmp_path, env=client_env(tmp_path, server.admin_token),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"{page.relative_to(ROOT)}:{line} ({language}) exited {done.returncode}\n"
        f"--- code ---\n{code}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")

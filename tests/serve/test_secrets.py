"""No process of a `hubserve serve` holds a secret in its environment (a model file that names
`/proc/self/environ`, or another process's, finds none): the admin token, the upstream token and
credentials stay with `hubserve serve`; the ingress reads what it needs (the admin token's hash)
from a private folder, which is gone after the stop. The admin token still works."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from hubserve.cli.process import processes_with_env
from tests.conftest import free_port

ADMIN = "hf_" + "Z" * 40
SECRETS = {"HUBSERVE_ADMIN_TOKEN": ADMIN, "HF_TOKEN": "hf_upstream_" + "Q" * 30,
           "PGPASSWORD": "pg-" + "W" * 30, "ACME_API_KEY": "key-" + "V" * 30}


def environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


@pytest.mark.timeout(300)
def test_no_process_of_the_server_holds_a_secret(tiny_store, tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text(
        "http_options: {host: 127.0.0.1, port: 8000}\n"
        "applications:\n- name: hubserve\n  route_prefix: /\n  import_path: serve_app.app:build_app\n  args:\n"
        f"    model_store: {tiny_store}\n    data_dir: {tmp_path / 'data'}\n    hf_cache: null\n"
        "    serve_tasks: [text-classification]\n"
        "    deployment_defaults: {num_cpus: 0, threads: 1, autoscaling: {min_replicas: 1, max_replicas: 1}}\n")
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="hssec-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(SECRETS, RAY_TMPDIR=ray_tmp)
    log = tmp_path / "serve.log"
    state = tmp_path / "state"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hubserve.cli.main", "serve", str(config), "--port", str(port),
                                 "--state-dir", str(state)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 200
        while "hubserve: serving on" not in log.read_text():
            assert time.time() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        answer = httpx.post(f"{url}/models/tiny/bert-sentiment", json={"inputs": "fine"}, timeout=120)
        assert answer.status_code == 200, answer.text
        whoami = httpx.get(f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
        assert whoami.status_code == 200 and whoami.json()["name"] == "admin", whoami.text

        # NOTE(hubserve): all but `hubserve serve` itself, where the secrets were given.
        pids = [p for p in processes_with_env("RAY_TMPDIR", ray_tmp) if p != proc.pid]
        kinds = " ".join(open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace") for p in pids)
        assert "ServeReplica:hubserve:text-classification" in kinds and "ServeReplica:hubserve:ingress" in kinds
        for pid in pids:
            held = [name for name, value in SECRETS.items() if value.encode() in environ(pid)]
            assert not held, (pid, held)
        rendered = yaml.safe_load((state / str(port) / "serve.yaml").read_text())
        folder = Path(rendered["applications"][0]["args"]["secrets_dir"])
        held = b"".join(p.read_bytes() for p in folder.iterdir())
        assert SECRETS["HF_TOKEN"].encode() in held and ADMIN.encode() not in held, "the hash, not the token"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        for leftover in processes_with_env("RAY_TMPDIR", ray_tmp):
            os.kill(leftover, signal.SIGKILL)
    assert not folder.exists(), "the secrets folder outlived the server"

"""Deploys a Serve config onto Ray and returns once its applications run; shuts Serve down.

``hubserve serve`` runs this module as a short-lived child, so that no Ray driver stays up
next to the server (a driver is about 150 MB of memory, doing nothing):

    python -m hubserve.cli.serve_run deploy CONFIG STATE_FILE [--dashboard]
    python -m hubserve.cli.serve_run shutdown ADDRESS [APPLICATION...]

``deploy`` starts a Ray head node of its own (unless ``RAY_ADDRESS`` names a cluster, which
it then joins as is; it never joins a Ray that happens to run on the machine), without what a
single local server has no use for: the dashboard (unless ``--dashboard``), the cluster
autoscaler's monitor, the log monitor (it streams worker output to drivers, and there is
none) and the Ray Client server. It deploys the config's applications like ``serve run``,
writes ``{"address", "pids" (by process kind), "logs", "applications"}`` to STATE_FILE, and exits 0
once every application is RUNNING, or 1 with Serve's message when one fails. The node outlives
it: its processes are stopped by ``shutdown`` and then by PID (see ``hubserve.cli.server``). On a
cluster it joined, ``shutdown`` deletes only the config's applications: the cluster, its Serve
(and its proxy settings: HAProxy is the cluster's choice there) and its other applications stay.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

def _wait_running(names: list[str]) -> Optional[str]:
    """None once every application in ``names`` runs; the failure message if one fails."""
    from ray import serve

    while True:
        apps = serve.status().applications
        states = {name: apps.get(name) for name in names}
        for name, app in states.items():
            if app is not None and app.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                # NOTE(hubserve): the application's message names the deployments; theirs holds
                # the replica's traceback, whose last line is the error.
                causes = [f"{dep}: {info.message.strip().splitlines()[-1]}"
                          for dep, info in app.deployments.items() if info.message.strip()]
                return "; ".join([f"application {name!r} failed to deploy: {app.message}", *causes])
        if all(app is not None and app.status == "RUNNING" for app in states.values()):
            return None
        time.sleep(0.5)


def deploy(config: str, state_file: str, dashboard: bool) -> int:
    import ray
    from ray.serve.scripts import cli

    from hubserve import ray_adapter

    address = os.environ.get("RAY_ADDRESS", "")
    pids, logs = {}, None
    if address in ("", "local"):
        node = ray_adapter.start_head(dashboard)
        address = node.address
        pids = {kind: [info.process.pid for info in infos] for kind, infos in node.all_processes.items()}
        logs = str(Path(node.get_logs_dir_path()) / "serve")
    ray.init(address=address, namespace=ray_adapter.SERVE_NAMESPACE, log_to_driver=False)
    names = [app["name"] for app in yaml.safe_load(Path(config).read_text(encoding="utf-8"))["applications"]]
    Path(state_file).write_text(json.dumps({"address": address, "pids": pids, "logs": logs,
                                            "applications": names if not pids else None}), encoding="utf-8")
    cli.main(["run", config, "--non-blocking"], prog_name="serve", standalone_mode=False)
    failure = _wait_running(names)
    if failure:
        print(f"hubserve: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def shutdown(address: str, applications: Sequence[str] = ()) -> int:
    """Stops Serve on the head this command started, or, on a cluster it joined, deletes only
    ``applications`` (the cluster and its other applications keep running)."""
    import ray
    from ray import serve

    from hubserve.ray_adapter import SERVE_NAMESPACE

    ray.init(address=address, namespace=SERVE_NAMESPACE, log_to_driver=False)
    if applications:
        for name in applications:
            serve.delete(name)
    else:
        serve.shutdown()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubserve.cli.serve_run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("deploy")
    run.add_argument("config")
    run.add_argument("state_file")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (port 8265)")
    stop = sub.add_parser("shutdown")
    stop.add_argument("address")
    stop.add_argument("applications", nargs="*", help="delete only these (on a cluster hubserve joined)")
    args = parser.parse_args(argv)
    if args.action == "deploy":
        return deploy(args.config, args.state_file, args.dashboard)
    return shutdown(args.address, args.applications)


if __name__ == "__main__":
    sys.exit(main())

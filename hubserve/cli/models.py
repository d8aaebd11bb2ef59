"""``hubserve models ...``: ``upload``, ``list`` and ``delete`` talk to a running server (``--url``,
``--token`` or ``$HF_TOKEN``); ``local`` lists what the configured store can serve and ``pull``
fetches a model from the upstream Hub ahead of time (both without a server).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from hubserve.cli.serve import app_config
from hubserve.config.app import AppConfig
from hubserve.repos.store import config_file, open_store

DEFAULT_URL = "http://127.0.0.1:8000"


def _models_local(args: argparse.Namespace) -> int:
    """Every model the configured store serves: id, source, sha, weights size, folder; then the
    models pulled from the upstream Hub with their size on disk and last use."""
    config = app_config(args.config)
    store = open_store(config)
    for model_id in store.model_ids():
        ref = store.resolve(model_id)
        print(f"{model_id}\t{ref.source}\t{ref.sha[:12]}\t{_size(ref.size_bytes)}\t{ref.path}")
    pulled = _puller(config).local()
    if pulled:
        print(f"\npulled from the upstream Hub ({config.hub.cache_dir}):")
        for model in pulled:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(model["last_used"]))
            print(f"{model['model_id']}\t{model['sha'][:12]}\t{_size(model['bytes'])}\tlast used {used}\t"
                  f"{model['endpoint']}")
        print(f"total\t{_size(sum(m['bytes'] for m in pulled))}"
              + (f" of {_size(config.hub.max_disk_bytes)} (hub.max_disk_bytes)" if config.hub.max_disk_bytes else ""))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _puller(config: AppConfig):
    from hubserve.repos.hub import puller_for

    return puller_for(config)


def _models_pull(args: argparse.Namespace) -> int:
    """Fetches a model from the upstream Hub into the pull cache (what a first request would do)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="hubserve: %(message)s")
    config = app_config(args.config)
    puller = _puller(config)
    if not config.hub.download:
        print("hubserve: hub.download is false in this config", file=sys.stderr)
        return 2
    from hubserve.repos.upstream import offline

    if offline():
        print("hubserve: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: nothing is downloaded", file=sys.stderr)
        return 2
    started = time.monotonic()
    remote = puller.remote(args.model_id, args.revision)
    evicted = puller.pull(args.model_id, remote, progress_bars=sys.stderr.isatty())
    for model_id, _ in evicted:
        print(f"hubserve: evicted {model_id} (hub.max_disk_bytes)", file=sys.stderr)
    print(f"{args.model_id}\t{remote.sha}\t{_size(remote.total_bytes)}\t{time.monotonic() - started:.1f}s")
    return 0


# -- client commands: they talk to a running server ------------------------------------

def _client(args: argparse.Namespace):
    import httpx

    token = args.token or os.environ.get("HF_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=httpx.Timeout(30, read=None))


def _answer(response) -> int:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code >= 400:
        print(f"hubserve: {response.status_code}: {body.get('error', body) if isinstance(body, dict) else body}",
              file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


def _pack(folder: Path, out) -> None:
    """A gzipped tar of the model folder's files (links and special files left out)."""
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)


def _models_upload(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if config_file(folder) is None:
        print(f"hubserve: {folder} has no config.json (or model_index.json)", file=sys.stderr)
        return 2
    with tempfile.TemporaryFile() as archive, _client(args) as client:
        _pack(folder, archive)
        archive.seek(0)
        params = {"private": "true" if args.private else "false"}
        response = client.post(f"/api/models/{args.model_id}", params=params, content=archive,
                               headers={"content-type": "application/x-tar"})
    return _answer(response)


def _models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _answer(client.get("/api/models"))


def _models_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _answer(client.delete(f"/api/models/{args.model_id}"))


def add_parser(sub) -> None:
    """Adds ``models upload|list|delete|local|pull`` to the command line.

    Args:
        sub: the subparsers of the ``hubserve`` parser.
    """
    models = sub.add_parser("models", help="upload, list and delete models on a running server")
    models_sub = models.add_subparsers(dest="action", required=True)
    upload = models_sub.add_parser("upload", help="upload a model folder as ORG/NAME")
    upload.add_argument("folder")
    upload.add_argument("model_id")
    upload.add_argument("--private", action="store_true")
    upload.set_defaults(func=_models_upload)
    models_sub.add_parser("list", help="the models this token may see").set_defaults(func=_models_list)
    delete = models_sub.add_parser("delete", help="delete ORG/NAME from the server's store")
    delete.add_argument("model_id")
    delete.set_defaults(func=_models_delete)
    for parser_ in models_sub.choices.values():
        parser_.add_argument("--url", default=DEFAULT_URL)
        parser_.add_argument("--token", help="default: $HF_TOKEN")
    local = models_sub.add_parser("local", help="list what the configured store can serve, and what was "
                                                "pulled (no server)")
    local.add_argument("--config", default="configs/default.yaml")
    local.set_defaults(func=_models_local)
    pull = models_sub.add_parser("pull", help="fetch ORG/NAME from the upstream Hub ahead of time (no server)")
    pull.add_argument("model_id")
    pull.add_argument("--revision", help="a branch, tag or commit of the upstream repo (default: main)")
    pull.add_argument("--config", default="configs/default.yaml")
    pull.set_defaults(func=_models_pull)

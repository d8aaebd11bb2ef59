"""The ``hubserve`` command line.

``hubserve config check FILE`` validates a Serve config's hubserve args;
``hubserve config render FILE --host H --port P`` writes a copy with another
listen address (``make serve HOST=... PORT=...`` uses it); ``hubserve models``
lists what the configured store can serve.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import yaml

from hubserve.config import AppConfig, check_serve_config, hubserve_args, load_yaml
from hubserve.store import open_store


def _check(args: argparse.Namespace) -> int:
    config = check_serve_config(load_yaml(args.config))
    print(f"ok: model store {config.model_store}, {len(config.models)} pinned model(s), "
          f"endpoints: {', '.join(config.endpoints) or 'none'}")
    return 0


def _render(args: argparse.Namespace) -> int:
    data = load_yaml(args.config)
    check_serve_config(data)
    http = dict(data.get("http_options") or {})
    if args.host:
        http["host"] = args.host
    if args.port:
        http["port"] = args.port
    data["http_options"] = http
    text = yaml.safe_dump(data, sort_keys=False)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


def _models(args: argparse.Namespace) -> int:
    store = open_store(AppConfig.from_args(hubserve_args(load_yaml(args.config))))
    for model_id in store.model_ids():
        ref = store.resolve(model_id)
        print(f"{model_id}\t{ref.source}\t{ref.sha[:12]}\t{ref.path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``hubserve`` console script."""
    parser = argparse.ArgumentParser(prog="hubserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="check or render a Serve config").add_subparsers(
        dest="action", required=True)
    check = config.add_parser("check", help="validate the hubserve args of a Serve config")
    check.add_argument("config")
    check.set_defaults(func=_check)
    render = config.add_parser("render", help="copy a Serve config with another host/port")
    render.add_argument("config")
    render.add_argument("--host")
    render.add_argument("--port", type=int)
    render.add_argument("--output", "-o")
    render.set_defaults(func=_render)
    models = sub.add_parser("models", help="list the models the configured store can serve")
    models.add_argument("--config", default="configs/default.yaml")
    models.set_defaults(func=_models)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"hubserve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

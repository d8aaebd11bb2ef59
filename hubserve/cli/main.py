"""The ``hubserve`` command line.

``hubserve serve FILE`` runs a Serve config (``make serve`` uses it);
``hubserve config check FILE`` validates a Serve config's hubserve args;
``hubserve config render FILE --host H --port P`` writes a
copy with another listen address.

``hubserve token create|list|revoke`` act on the configured token store directly
(local admin commands); ``hubserve models upload|list|delete`` talk to a running
server (``--url``, ``--token`` or ``$HF_TOKEN``); ``hubserve models local`` lists
what the configured store can serve, and ``hubserve models pull ID`` fetches a model from
the upstream Hub ahead of time (``hub:`` in the config, ``HF_ENDPOINT``, ``HF_TOKEN``).
``hubserve cluster up|down`` runs a Ray cluster of several nodes on this machine
(``hubserve.cli.cluster``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from hubserve.cli import cluster, models, serve, tokens
from hubserve.errors import ApiError


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``hubserve`` console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="hubserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parsers(sub)
    tokens.add_parser(sub)
    models.add_parser(sub)
    cluster.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ApiError as exc:
        print(f"hubserve: {exc.message}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"hubserve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


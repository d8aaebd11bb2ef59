"""``serve run CONFIG`` on a local Ray that this process starts, with the dashboard optional.

``serve run`` starts a local Ray with the dashboard, whose module processes take about 1 GB of
memory on a single machine. ``hubserve serve`` runs this module instead: it starts Ray itself
(without the dashboard unless ``--dashboard``), then hands over to Ray's own ``serve run``, which
keeps a Ray it finds initialized. With ``RAY_ADDRESS`` set (other than ``local``), it joins that
cluster as is; otherwise it never joins a Ray that happens to run on the machine.

    python -m hubserve.serve_run CONFIG [--dashboard]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubserve.serve_run", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (port 8265)")
    args = parser.parse_args(argv)

    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.scripts import cli

    address = os.environ.get("RAY_ADDRESS", "")
    local = {} if address not in ("", "local") else {"address": "local", "include_dashboard": args.dashboard}
    ray.init(namespace=SERVE_NAMESPACE, **local)
    return cli.main(["run", args.config], prog_name="serve", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())

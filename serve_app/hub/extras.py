"""The Hub routes that ``huggingface_hub`` 2.x calls besides the model API.

``GET /api/agent-harnesses``: the registry of AI coding agents that the client fetches from its
endpoint (once a day) to build its user agent; this server lists none (the Hub's own shape, so
that the client caches it and stops asking).

``GET /api/models/{id}/xet-write-token/{rev}`` (and ``xet-read-token``): called before every
upload whenever ``hf_xet`` is installed (0.x asked the LFS batch API first, and takes its
``basic`` answer). This server stores files without Xet: the route is answered as the other Hub
routes are for a caller who may not see or change the repo (the same answer as for a missing
one), and otherwise with a 400 that says how to upload: ``HF_HUB_DISABLE_XET=1`` makes the
client upload through LFS, which this server serves. Downloads never need a Xet token here: no
file is answered with Xet headers (``X-Xet-Hash``), so clients fetch every file over HTTP.
"""

from __future__ import annotations

import re
from typing import Optional

from starlette.requests import Request

from hubserve.errors import InvalidInput, RevisionNotFound

from ..security import resolve_visible
from .api import check_revision
from .management import ModelAdmin

#: ``{id}/xet-{kind}-token/{rev}`` after ``/api/models/``: an id is one or two segments, and the
#: client always sends the revision of a model repo ("None" for a pull request's).
_ROUTE = re.compile(r"(?P<id>[^/]+(?:/[^/]+)?)/xet-(?P<kind>read|write)-token/(?P<rev>.+)")
NO_XET = ("This server stores files without Xet (no Xet token is issued): upload with HF_HUB_DISABLE_XET=1 set, "
          "and huggingface_hub uploads through Git LFS")


#: The Hub's agent registry with no agent in it.
NO_AGENTS = {"standardEnvVars": [], "harnesses": {}}


async def agent_harnesses(admin: ModelAdmin, request: Request) -> dict:
    """``GET /api/agent-harnesses``: no agent harness is known here (admitted as every route is)."""
    await admin.guard.admit(request)
    return NO_AGENTS


def split_xet_route(path: str) -> Optional[tuple[str, str, str]]:
    """``(model id, kind, revision)`` of ``{id}/xet-{kind}-token/{rev}``, or None for another path."""
    found = _ROUTE.fullmatch(path)
    return (found["id"], found["kind"], found["rev"]) if found else None


async def xet_token(admin: ModelAdmin, request: Request, model_id: str, kind: str, revision: str) -> dict:
    """Refuses the token: a write one after the write checks of an upload, a read one after the
    repo's visibility, so that a private repo still answers as a missing one."""
    if kind == "write":
        ref = await admin.store_repo(request, model_id)
    else:
        ref = await resolve_visible(admin.store, admin.access, await admin.guard.admit(request), model_id, repo=True)
    if kind == "write" and revision != "main":
        raise RevisionNotFound(f"Invalid rev id: {revision} (this server's repos have one branch, main)")
    check_revision(ref, revision)
    raise InvalidInput(NO_XET)

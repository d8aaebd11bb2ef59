"""The JSON bodies of the Hub's repo routes (create, delete, settings, and the model card that
validate-yaml checks), as ``huggingface_hub`` sends them, from 0.x (``private``) to 1.x and later (``visibility``).

Every field is either honoured or refused with a 400 that names it: a field is never dropped
silently, since a dropped ``visibility`` makes a repo meant to be private public. A field a
client sends as ``null`` is one it did not set.
"""

from __future__ import annotations

from typing import Optional

import yaml

from hubserve.errors import InvalidInput

#: Fields of the Hub's routes that this server does not serve, and why.
_SPACE = "is a Space setting; this server holds model repos only"
UNSERVED = {
    **{key: _SPACE for key in ("sdk", "template", "hardware", "storageTier", "sleepTimeSeconds", "secrets",
                               "variables", "volumes", "devModeEnabled")},
    "resourceGroupId": "names a resource group; this server has none (tokens and organisations decide access)",
    "region": "names a storage region; this server stores every repo in its one model store",
    "lfsmultipartthresh": "sets multipart LFS uploads; this server takes each object in one request",
    "discussionsDisabled": "changes discussions; this server has none",
}
_REPO = ("name", "organization", "type")


def _refuse_unknown(body: dict, honoured: tuple[str, ...]) -> None:
    for key, value in body.items():
        if key in honoured or (key in UNSERVED and value is None):
            continue
        if key in UNSERVED:
            raise InvalidInput(f"`{key}` {UNSERVED[key]}")
        raise InvalidInput(f"Unknown field `{key}`: this route takes {', '.join(f'`{k}`' for k in honoured)}")


def _private(body: dict) -> Optional[bool]:
    """True (private), False (public) or None (not said) from ``visibility`` and ``private``."""
    private, visibility = body.get("private"), body.get("visibility")
    if private is not None and not isinstance(private, bool):
        raise InvalidInput("`private` is true or false")
    if visibility is None:
        return private
    if visibility == "protected":
        raise InvalidInput('`visibility: "protected"` is for Spaces; a model repo is "public" or "private"')
    if visibility not in ("public", "private"):
        raise InvalidInput('`visibility` is "public" or "private"')
    if private is not None and private != (visibility == "private"):
        raise InvalidInput(f"`private: {str(private).lower()}` contradicts `visibility: {visibility}`: send one")
    return visibility == "private"


def _repo(body: dict) -> tuple[str, Optional[str]]:
    if body.get("type") not in (None, "model"):
        raise InvalidInput("This server holds model repos only (type: model)")
    name, organization = body.get("name"), body.get("organization")
    if not isinstance(name, str) or (organization is not None and not isinstance(organization, str)):
        raise InvalidInput("`name` (and `organization`) are strings")
    return name, organization


def create_body(body: dict) -> tuple[str, Optional[str], bool]:
    """``POST /api/repos/create``: the repo's name, organisation and whether it is private."""
    _refuse_unknown(body, (*_REPO, "private", "visibility"))
    private = _private(body)
    return (*_repo(body), bool(private))


def delete_body(body: dict) -> tuple[str, Optional[str]]:
    """``DELETE /api/repos/delete``: the repo's name and organisation."""
    _refuse_unknown(body, _REPO)
    return _repo(body)


def settings_body(body: dict) -> Optional[bool]:
    """``PUT /api/models/{id}/settings``: the visibility to set (None: unchanged). ``gated`` and
    ``xetEnabled`` are honoured as this server's repos are: never gated, never Xet."""
    _refuse_unknown(body, ("private", "visibility", "gated", "xetEnabled"))
    if body.get("gated") not in (None, False):
        raise InvalidInput("`gated` repos are not served here: a repo is public or private (gated: false)")
    if body.get("xetEnabled") not in (None, False):
        raise InvalidInput("`xetEnabled`: this server stores files without Xet (xetEnabled: false)")
    return _private(body)


def card_problem(content: str) -> Optional[str]:
    """What is wrong with a model card's YAML front matter, or None."""
    if not content.startswith("---"):
        return None
    end = content.find("\n---", 3)
    if end < 0:
        return "the front matter has no closing ---"
    try:
        data = yaml.safe_load(content[3:end])
    except yaml.YAMLError as exc:
        return f"the front matter is not YAML ({exc})"
    if data is not None and not isinstance(data, dict):
        return "the front matter is not a mapping"
    if isinstance(data, dict) and not isinstance(data.get("pipeline_tag", ""), str):
        return "pipeline_tag is not a string"
    return None

"""How a task turns a request body into its pydantic request: one ``InvalidInput`` naming every
bad field, each bound exceeded and (in transformers' own words) each unknown parameter."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from hubserve.errors import InvalidInput


def unused_kwargs_message(names: list[str]) -> str:
    """The exact 400 text (transformers' own) that huggingface_hub's client retries on."""
    return (
        f"The following `model_kwargs` are not used by the model: {list(names)} "
        "(note: typos in the generate arguments will also show up in this list)"
    )


def unknown_parameters(params: Any, prefix: str = "") -> list[str]:
    """The undeclared keys of a ``parameters`` model and of the models nested in it."""
    if not isinstance(params, BaseModel):
        return []
    names = [prefix + k for k in sorted(params.model_extra or {})]
    for key in type(params).model_fields:
        names += unknown_parameters(getattr(params, key), f"{prefix}{key}.")
    return names


def validate(model: type[BaseModel], data: dict, limits: Any = None) -> Any:
    """Builds ``model`` from ``data`` under ``limits`` (see ``_params.Limit``); pydantic
    errors become one ``InvalidInput``."""
    try:
        return model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_type_tag(part: Any) -> bool:
    """Whether a pydantic ``loc`` part names a union branch rather than a field."""
    return isinstance(part, str) and (
        part in _TYPE_TAGS or "[" in part or part[:1].isupper() or part.startswith("function-")
    )


def invalid_from_pydantic(exc: ValidationError) -> InvalidInput:
    """One readable message naming each bad field, plus the list of problems.

    Union branches are folded into one problem per field, and each problem reads
    like api-inference-community's: ``<why>: received `<field>` in `parameters```.
    """
    grouped: dict[tuple, list[dict]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err.get("loc", ()) if not _is_type_tag(p))
        grouped.setdefault(loc, []).append(err)
    problems = []
    for loc, errs in grouped.items():
        first = errs[0]
        if first.get("type") == "missing":
            msg = "field required"
        elif first.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif len(errs) > 1 and all(e.get("type", "").endswith("_type") for e in errs):
            msg = f"wrong type ({type_name(first.get('input'))})"
        else:
            msg = first.get("msg", "invalid value")
        if len(loc) >= 2 and loc[0] in ("parameters", "options"):
            problems.append(f"{msg}: received `{'.'.join(loc[1:])}` in `{loc[0]}`")
        elif loc:
            problems.append(f"{msg}: received `{'.'.join(loc)}`")
        else:
            problems.append(msg)
    return InvalidInput("; ".join(problems), errors=problems)


def type_name(value: Any) -> str:
    """A JSON-ish name of a value's type for error messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)

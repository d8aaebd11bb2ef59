"""The one error hierarchy of hubserve.

Every failure a client can see is an ``ApiError`` subclass raised where its cause
is known. The ingress renders it as ``{"error": message, "error_type": type}`` with
the class's status code. Errors are raised inside Ray replicas and travel back
through a ``DeploymentHandle``, so each one pickles: ``__init__`` takes the
message positionally and calls ``super().__init__(message)``.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base of every error that maps to an HTTP answer.

    Args:
        message: the human-readable text sent as ``error``.
        extra: more top-level keys for the JSON body (e.g. ``estimated_time``).
        headers: HTTP headers to add to the answer.
    """

    status_code: int = 500
    error_type: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.extra, self.headers))

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": self.message, "error_type": self.error_type, **self.extra}


def _rebuild(cls, message, extra, headers):
    return cls(message, extra=extra, headers=headers)


class InvalidInput(ApiError):
    """The request is malformed or a field is out of range (400).

    Args:
        message: one readable sentence naming each bad field and why.
        errors: the individual problems, sent as a list under ``errors``.
    """

    status_code = 400
    error_type = "validation"

    def __init__(self, message: str, *, errors: list[str] | None = None, extra=None, headers=None):
        extra = dict(extra or {})
        if errors:
            extra["errors"] = list(errors)
        super().__init__(message, extra=extra, headers=headers)


class InputUnsupported(InvalidInput):
    """The model cannot take this input or option, in its transformers pipeline's own words
    (400): a segmentation subtask its image processor lacks, a table with more columns than
    TAPAS numbers, generation options its config refuses."""


class Unauthorized(ApiError):
    """The Authorization header carries an unknown or revoked token (401)."""

    status_code = 401
    error_type = "unauthorized"


class Forbidden(ApiError):
    """The caller is known but may not do this (403)."""

    status_code = 403
    error_type = "forbidden"


class ModelTooLarge(ApiError):
    """The model does not fit the memory a replica may use for models (403)."""

    status_code = 403
    error_type = "too_large"


class ModelNotFound(ApiError):
    """No such model (or one the caller may not see) (404)."""

    status_code = 404
    error_type = "not_found"

    @classmethod
    def for_id(cls, model_id: str) -> "ModelNotFound":
        return cls(f"Model {model_id} does not exist")


class RevisionNotFound(ApiError):
    """A revision a model does not have (404)."""

    status_code = 404
    error_type = "not_found"


class EntryNotFound(ApiError):
    """A file or folder a model does not have (404)."""

    status_code = 404
    error_type = "not_found"


class RouteNotFound(ApiError):
    """The URL names no route or no known task (404)."""

    status_code = 404
    error_type = "not_found"


class Conflict(ApiError):
    """The thing to create exists already (409)."""

    status_code = 409
    error_type = "conflict"


class PreconditionFailed(ApiError):
    """A commit's ``parentCommit`` is not the repo's revision any more (412)."""

    status_code = 412
    error_type = "conflict"


class PayloadTooLarge(ApiError):
    """The request body is larger than the configured limit (413)."""

    status_code = 413
    error_type = "payload_too_large"


class RateLimited(ApiError):
    """The caller's request rate is over its limit (429), with the IETF ``ratelimit`` headers."""

    status_code = 429
    error_type = "rate_limit"


class BackendFailure(ApiError):
    """A real fault while running a model (500)."""

    status_code = 500
    error_type = "backend"


class ModelLoadError(ApiError):
    """A model could not be loaded; the message names the cause (500)."""

    status_code = 500
    error_type = "load"


class NeedsTorch(ModelLoadError):
    """A model server that runs without torch (inside the ingress) was asked for a model
    that needs it; the caller sends the request to the task's own deployment."""


class ExportUnsupported(ModelLoadError):
    """The model has no export that passed the fidelity gate (its architecture cannot be
    exported, the exporter raised, or the graphs answer differently from torch): it serves
    on torch."""


class ModelRefused(ModelLoadError):
    """A model's own files are refused (code, links, paths that leave its folder...): the
    folder is at fault, not the server (403)."""

    status_code = 403


class ModelUnsupported(ModelLoadError):
    """The model's folder cannot be loaded by this server's transformers (an architecture it
    does not know, a config or weights it cannot read): the model is at fault (400)."""

    status_code = 400


class ModelLoading(ApiError):
    """The model is cold and the caller asked not to wait (503)."""

    status_code = 503
    error_type = "loading"

    @classmethod
    def for_id(cls, model_id: str, estimated_time: float) -> "ModelLoading":
        seconds = max(1, int(estimated_time + 0.999))
        return cls(
            f"Model {model_id} is currently loading",
            extra={"estimated_time": round(float(estimated_time), 3)},
            headers={"Retry-After": str(seconds)},
        )


class ServiceUnavailable(ApiError):
    """The serving graph cannot take the request now (503)."""

    status_code = 503
    error_type = "unavailable"

"""The error hierarchy survives pickling and Ray's task errors (no Ray cluster)."""

import pickle

import pytest
from ray.exceptions import RayTaskError

from hubserve.errors import ApiError, InvalidInput, ModelLoading, ModelNotFound
from serve_app.responses import error_response, unwrap


@pytest.mark.parametrize("error", [
    InvalidInput("bad top_k", errors=["a", "b"]),
    ModelNotFound.for_id("org/x"),
    ModelLoading.for_id("org/x", 2.5),
])
def test_errors_pickle_with_their_fields(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.message, copy.extra, copy.headers, copy.status_code) == (
        error.message, error.extra, error.headers, error.status_code)


def test_loading_error_carries_estimate_and_retry_after():
    err = ModelLoading.for_id("org/x", 2.2)
    assert err.body()["estimated_time"] == 2.2 and err.headers["Retry-After"] == "3"
    assert err.status_code == 503 and err.body()["error"] == "Model org/x is currently loading"


def test_ray_task_error_unwraps_to_the_api_error():
    cause = InvalidInput("parameters.top_k: must be >= 1")
    dual = RayTaskError("fn", "traceback text", cause).as_instanceof_cause()
    assert isinstance(dual, InvalidInput)
    resp = error_response(dual, "rid")
    assert resp.status_code == 400 and b"parameters.top_k: must be >= 1" in resp.body
    assert b"traceback" not in resp.body
    assert unwrap(RayTaskError("fn", "tb", KeyError("x"))).__class__ is KeyError


def test_unexpected_errors_are_a_generic_500():
    resp = error_response(KeyError("secret detail"), "rid")
    assert resp.status_code == 500
    assert resp.body == b'{"error":"unknown error","error_type":"internal"}'
    assert resp.media_type == "application/json"


def test_validation_error_has_string_and_list():
    body = InvalidInput("a; b", errors=["a", "b"]).body()
    assert body["error"] == "a; b" and body["errors"] == ["a", "b"]
    assert isinstance(ApiError("x").body()["error"], str)

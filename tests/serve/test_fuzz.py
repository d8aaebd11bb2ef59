"""A property test: malformed bodies, wrong types, huge and unicode inputs, any parameter
generate() accepts and random headers, at every route, never give a 500 or kill a replica."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROUTES = [
    ("POST", "/models/{m}"), ("POST", "/models/{m}/pipeline/feature-extraction"),
    ("POST", "/pipeline/feature-extraction/{m}"), ("POST", "/pipeline/text-classification/{m}"),
    ("POST", "/models/{m}/v1/completions"), ("POST", "/models/{m}/v1/chat/completions"),
    ("POST", "/v1/chat/completions"), ("GET", "/status/{m}"), ("GET", "/models/{m}/info"),
    ("GET", "/api/models/{m}"), ("POST", "/api/models/{m}"), ("PATCH", "/api/models/{m}"),
    ("DELETE", "/api/models/{m}"), ("GET", "/api/models"), ("GET", "/models"),
    ("POST", "/legacy/models/{m}"),
]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def generate_kwarg_names() -> list[str]:
    """Every name transformers' generate() accepts: its own arguments and GenerationConfig's."""
    import inspect

    from transformers import GenerationConfig
    from transformers.generation.utils import GenerationMixin

    names = set(inspect.signature(GenerationMixin.generate).parameters) | set(GenerationConfig().to_dict())
    return sorted((names | {"trust_remote_code"}) - {"self", "kwargs", "inputs"})


GENERATE_NAMES = generate_kwarg_names()
hostile_values = st.sampled_from(["/tmp", ".", "transformers-community/contrastive-search", True, 10**9, -1, [],
                                  {"a": 1}]) | json_values
params = st.dictionaries(
    st.sampled_from(["top_k", "max_new_tokens", "temperature", "candidate_labels", "truncate", "normalize",
                     "return_full_text", "do_sample", "seed", "num_return_sequences", "wait_for_model",
                     "use_cache", "stream", "max_tokens", "messages", "prompt", "src_lang",
                     "generate_parameters", *GENERATE_NAMES]),
    hostile_values, max_size=4)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"inputs": json_values}, optional={"parameters": params, "options": params})
    .map(lambda v: json.dumps(v).encode()),
    st.builds(lambda v, m: json.dumps({"model": m, "messages": v}).encode(), json_values, st.text(max_size=30)),
    st.integers(3, 6).map(lambda k: json.dumps({"inputs": "ü" * 10**k}).encode()),
    st.integers(1, 400).map(lambda n: json.dumps({"inputs": ["x"] * n}).encode()),
)
# printable ASCII without surrounding blanks: the client library refuses anything else
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
headers = st.dictionaries(
    st.sampled_from(["content-type", "authorization", "x-use-cache", "x-wait-for-model", "x-load-model",
                     "user-agent", "accept", "origin", "content-encoding", "x-request-id"]),
    header_values, max_size=4)


@pytest.fixture(scope="module")
def fuzz_client(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.mark.timeout(900)
def test_no_input_gives_a_500_or_kills_a_replica(fuzz_client, tiny_models, server):
    assert {"custom_generate", "trust_remote_code", "penalty_alpha", "num_beams"} <= set(GENERATE_NAMES)
    model_ids = sorted(set(tiny_models.values())) + ["nobody/none", "a" * 200, "x/y/z", "bad id", "acme/nosuch"]
    seen = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    @given(route=st.sampled_from(ROUTES), model=st.sampled_from(model_ids), body=bodies, head=headers)
    def check(route, model, body, head):
        method, path = route
        resp = fuzz_client.request(method, path.format(m=model), content=body, headers=head)
        seen.append(resp.status_code)
        assert resp.status_code < 500 or resp.status_code == 503, (method, path, model, body[:200], head, resp.text)
        if resp.status_code >= 400:
            assert isinstance(resp.json()["error"], str), resp.text

    check()
    assert len(seen) == 150 and any(400 <= status < 500 for status in seen)
    # every replica still answers
    assert fuzz_client.get("/health").status_code == 200
    for task in ("text-classification", "fill-mask", "text-generation"):
        ok = fuzz_client.post(f"/models/{tiny_models[task]}", json={"inputs": "Paris is the [MASK] of France."})
        assert ok.status_code == 200, ok.text
    direct = fuzz_client.post(f"/pipeline/feature-extraction/{tiny_models['feature-extraction']}", json={"inputs": "x"})
    assert direct.status_code == 200


@pytest.mark.timeout(600)
def test_no_generate_kwarg_reaches_the_model_unchecked(fuzz_client, tiny_models):
    from deployments.tasks import get_task

    tasks = ["text-generation", "text2text-generation", "summarization"]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    @given(task=st.sampled_from(tasks), chosen=st.dictionaries(st.sampled_from(GENERATE_NAMES), hostile_values,
                                                                min_size=1, max_size=3))
    def check(task, chosen):
        resp = fuzz_client.post(f"/models/{tiny_models[task]}", json={"inputs": "x", "parameters": chosen})
        assert resp.status_code in (200, 400), (task, chosen, resp.text)
        declared = set(get_task(task).request_model.model_fields["parameters"].annotation.model_fields)
        unknown = sorted(set(chosen) - declared)
        if unknown:  # refused, for the unknown names or for a bad value of a known one
            assert resp.status_code == 400, resp.text
        if "not used by the model" in resp.text:
            assert f"not used by the model: {unknown}" in resp.json()["error"], resp.text

    check()

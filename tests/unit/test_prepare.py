"""`make setup` readies the pinned models: their ONNX exports land where replicas look for them."""

import asyncio

from deployments.backends.onnx_export import entry_dir, is_complete
from deployments.prepare import prepare
from deployments.tasks import get_task
from hubserve.config.app import AppConfig
from hubserve.repos.store import open_store


def test_prepare_exports_each_pinned_model_where_its_replica_loads_it(tiny_store, tmp_path, capsys):
    config = AppConfig.from_args({
        "model_store": str(tmp_path / "store"), "onnx_cache": str(tmp_path / "onnx"), "hf_cache": None,
        "deployment_defaults": {"backend": "auto"},
        "models": {"acme/vit": {"path": str(tiny_store / "tiny" / "vit")},
                   "acme/missing": {"path": str(tmp_path / "nowhere")}},
    }, env={})
    assert asyncio.run(prepare(config)) == 1  # the missing one
    out = capsys.readouterr()
    assert "acme/vit (image-classification): ready on cpu+optimized" in out.out and "acme/missing" in out.err
    ref = open_store(config).resolve("acme/vit")
    entry = entry_dir(tmp_path / "onnx", ref.sha, get_task("image-classification").head)
    assert is_complete(entry)

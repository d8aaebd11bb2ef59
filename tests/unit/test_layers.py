"""The import rules of the architecture, checked on the source (every import, lazy ones too)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# NOTE(hubserve): transformers, optimum and sentence_transformers pull torch in when imported.
TORCH = {"torch", "transformers", "optimum", "sentence_transformers"}
RULES = {
    "hubserve": {"serve_app", "deployments"} | TORCH,
    "serve_app": TORCH,  # it binds deployments, whose modules load torch only inside a replica
    "deployments": {"serve_app"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_follow_the_layers(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    broken = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & RULES[package]) for f in files}
    assert {f: names for f, names in broken.items() if names} == {}


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from torch.nn import Linear\n    import serve_app.app\n")
    assert imported_packages(module) == {"os", "torch", "serve_app"}


#: The replica side's modules the ingress may import: the façade, and the task registry.
FACADE = {"deployments.facade", "deployments.tasks"}


def imported_modules(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == package}


def test_the_ingress_reaches_the_replica_side_only_through_the_facade():
    files = sorted((ROOT / "serve_app").rglob("*.py"))
    reached = {str(f.relative_to(ROOT)): imported_modules(f, "deployments") for f in files}
    assert set().union(*reached.values()) >= {"deployments.facade"}
    assert {f: sorted(names - FACADE) for f, names in reached.items() if names - FACADE} == {}


def test_the_facade_checker_sees_submodules(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from deployments.facade import prepare\nimport deployments.gate\n"
                      "from deployments.tasks.base import Task\n")
    assert imported_modules(module, "deployments") - FACADE == {"deployments.gate", "deployments.tasks.base"}


#: What the ingress never loads at import: torch, and ONNX Runtime (its inline embedding tasks
#: load it when the config asks for them).
INGRESS_FORBIDDEN = TORCH | {"onnxruntime", "onnx"}


@pytest.mark.parametrize("package, forbidden", [("serve_app", INGRESS_FORBIDDEN), ("hubserve", RULES["hubserve"])])
def test_importing_every_module_loads_no_forbidden_package(package, forbidden):
    script = (f"import importlib, pkgutil, sys, {package}\n"
              f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'): importlib.import_module(m.name)\n"
              "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))")
    loaded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert package in loaded.stdout.split()
    assert set(loaded.stdout.split()) & forbidden == set()


def test_ray_private_api_is_reached_only_through_the_adapter():
    """Every import of Ray's private modules sits in hubserve/ray_adapter.py (version-checked)."""
    reaching = set()
    for package in ("hubserve", "serve_app", "deployments"):
        for path in (ROOT / package).rglob("*.py"):
            names = imported_modules(path, "ray")
            if any("._private" in name or name.startswith("ray._") for name in names):
                reaching.add(str(path.relative_to(ROOT)))
    assert reaching == {"hubserve/ray_adapter.py"}

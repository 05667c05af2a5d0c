"""The project's shape, checked: where a cloud lives, what imports Pulumi, where type tokens are written."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

import pytest

from gpu_inference import clouds
from gpu_inference.constants import PROJECT_DIR

CORE = PROJECT_DIR / "gpu_inference"
COMPONENTS = PROJECT_DIR / "components"
# The one module of the core that may import Pulumi: it runs the real program under mocks.
PULUMI_IN_CORE = {CORE / "preview_runner.py"}
# Pulumi resource type tokens: package:module:Type (the package of a cloud SDK).
TOKEN = re.compile(r"""["'](?:digitalocean|aws|kubernetes):[A-Za-z0-9/]+:[A-Za-z]+["']""")


def production_python() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=PROJECT_DIR, capture_output=True, text=True,
                             check=True).stdout.split()
    return [PROJECT_DIR / p for p in tracked if not p.startswith(("tests/", "bench/", "scripts/"))]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_pulumi_except_the_preview_runner() -> None:
    offenders = [
        str(path.relative_to(PROJECT_DIR)) for path in sorted(CORE.rglob("*.py"))
        if path not in PULUMI_IN_CORE
        and any(name == "pulumi" or name.startswith(("pulumi.", "pulumi_")) for name in imported_modules(path))
    ]
    assert offenders == [], f"the pure core imports Pulumi in {offenders}"


def test_every_resource_type_token_is_written_in_exactly_one_production_file() -> None:
    where: dict[str, set[str]] = {}
    for path in production_python():
        for token in TOKEN.findall(path.read_text(encoding="utf-8")):
            where.setdefault(token.strip("\"'"), set()).add(str(path.relative_to(PROJECT_DIR)))
    assert where, "found no type tokens at all: the pattern is wrong"
    twice = {token: sorted(files) for token, files in where.items() if len(files) > 1}
    assert twice == {}
    # ... and that file is the cloud's own pure module.
    assert all(files <= {f"gpu_inference/clouds/{c}.py" for c in clouds.CLOUDS} for files in where.values()), where


def test_digitalocean_is_named_in_at_most_five_code_files() -> None:
    # Hand-written code only: components/args.py is generated from the registry (its Provider enum lists every
    # cloud), and a drift test keeps it so.
    files = sorted(str(p.relative_to(PROJECT_DIR)) for p in production_python()
                   if "digitalocean" in p.read_text(encoding="utf-8").lower() and p != COMPONENTS / "args.py")
    assert len(files) <= 5, files


def test_the_program_names_no_provider_and_branches_on_none() -> None:
    tree = ast.parse((PROJECT_DIR / "__main__.py").read_text(encoding="utf-8"))
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node is not tree.body[0].value:  # type: ignore[attr-defined]
            words.add(node.value)
        elif isinstance(node, ast.alias):
            words.update(node.name.split("."))
    lowered = {w.lower() for w in words}
    assert not lowered & {*clouds.CLOUDS, "provider", "providers", "pulumi_aws", "pulumi_digitalocean", "pulumi_kubernetes"}


def test_the_kubernetes_pool_is_a_component_beside_the_load_balanced_pool() -> None:
    assert not (COMPONENTS / "providers").exists()
    assert (COMPONENTS / "kubernetes_gpu_pool.py").is_file() and (COMPONENTS / "load_balanced_pool.py").is_file()


def test_component_modules_keep_their_annotations_as_objects() -> None:
    # Pulumi's schema inference reads the args' and outputs' annotations with inspect.get_annotations: a
    # `from __future__ import annotations` would turn them into strings it cannot follow.
    offenders = [str(p.relative_to(PROJECT_DIR)) for p in sorted(COMPONENTS.rglob("*.py"))
                 if "__future__" in imported_modules(p)]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(clouds.CLOUDS))
def test_every_registered_cloud_has_its_pulumi_module_and_catalog_rows(name: str) -> None:
    from gpu_inference.catalog import load_catalog

    cloud = clouds.cloud_for(name)
    module = importlib.import_module(cloud.pulumi_module)
    if cloud.layout == "machines":
        assert hasattr(module, "MACHINE_CLOUD")
    assert load_catalog().offerings_for(cloud.catalog_cloud)


def test_the_component_args_are_generated_from_the_config_models() -> None:
    from gpu_inference.config import StackConfig
    from gpu_inference.config_docs import component_args_source

    assert (COMPONENTS / "args.py").read_text(encoding="utf-8") == component_args_source(), (
        "components/args.py drifted from gpu_inference/config.py: run .venv/bin/python scripts/update_component_args.py")
    from components.args import StackArgs

    assert set(StackArgs.__annotations__) == set(StackConfig.model_fields)

"""The package's layers (README "Layout"): each module imports only its own or lower layers' modules, a stage
never imports another stage, and errors.py imports nothing heavy. Read from the code with ast, every import
statement counted, function-level ones too (a deferred import does not hide an edge here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LEAF, LIBRARY, BACKEND, STAGE, CLI = range(5)
LAYERS = {
    LEAF: ["errors", "config", "atomic"],
    LIBRARY: [
        "manifest",
        "images",
        "image_input",
        "chunks",
        "store",
        "metrics",
        "curves",
        "conv_base",
        "contact_sheet",
        "backbones",
        "heads",
        "methods.common",
        "methods.convnet",
        "methods.idx",
        "methods.augmented_store",
        "similarity",
        "pooled",
        "drop_list",
        "augmentation",
    ],
    BACKEND: ["compute", "local_backend", "ray_backend"],
    STAGE: [
        "extract",
        "split",
        "weights",
        "featurize",
        "train",
        "evaluate",
        "predict",
        "verify",
        "visualize",
        "methods",
        "audit",
        "neighbors",
    ],
    CLI: [
        "__init__",
        "__main__",
        "cli",
        "api",
        "bench",
        "train_bench",
        "methods.cli",
        "visualize.cli",
        "audit.cli",
        "audit.bench",
    ],
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT / "pipeline").with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[int, str]:
    """(layer, unit): the longest listed prefix decides; a unit is what 'another stage' means."""
    best = max(
        ((layer, prefix) for layer, prefixes in LAYERS.items() for prefix in prefixes if is_within(module, prefix)),
        key=lambda item: len(item[1]),
        default=None,
    )
    if best is None:
        raise AssertionError(f"pipeline.{module} is in no layer: add it to LAYERS here and to the README's Layout.")
    layer, prefix = best
    return layer, (module if prefix == "methods" else prefix)  # visualize/ is one stage, each method another


def is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def project_imports(path: Path) -> set[str]:
    """Every pipeline.* module this file imports, anywhere in it (without the 'pipeline.' prefix)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            for alias in node.names:  # `from pipeline.methods import scratch` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if module_exists(candidate) else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pipeline"))
    return {name.removeprefix("pipeline").removeprefix(".") or "__init__" for name in found}


def module_exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(ROOT.glob("pipeline/**/*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_follow_the_layers(path: Path) -> None:
    source = module_name(path)
    layer, unit = layer_of(source)
    for target in project_imports(path):
        if target == "__init__" or is_within(source, target) or is_within(target, source):
            continue  # a package and its own modules
        target_layer, target_unit = layer_of(target)
        assert target_layer <= layer, f"pipeline.{source} (layer {layer}) imports pipeline.{target} ({target_layer})"
        if layer == STAGE and target_layer == STAGE:
            assert target_unit == unit, f"stage pipeline.{source} imports another stage, pipeline.{target}"


def test_errors_is_a_leaf() -> None:
    tree = ast.parse((ROOT / "pipeline" / "errors.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "os", "sys", "traceback", "collections.abc"}

"""The package's layers are its folders (CONTRIBUTING.md, "Layout"): a module's folder decides what it may import.

Each module imports only modules of its own or a lower floor, a stage never imports another stage, and the core
imports nothing heavy. Read from the code with ast, every import statement counted, function-level ones too (a
deferred import does not hide an edge here). Moving a module to another folder is the only way to change its
rights: nothing here names a single module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "pipeline"
CORE, LIBRARY, COMPUTE, STAGE, INTERFACE = range(5)
FOLDERS = {
    "core": CORE,
    "store": LIBRARY,
    "images": LIBRARY,
    "backbones": LIBRARY,
    "heads": LIBRARY,
    "reporting": LIBRARY,
    "training": LIBRARY,
    "compute": COMPUTE,
    "stages": STAGE,
    "methods": STAGE,
    "audit": STAGE,
    "visualize": STAGE,
    "deploy": STAGE,
    "report": STAGE,
    "cli": INTERFACE,
    "tools": INTERFACE,
}
TOP_LEVEL = {"__init__": INTERFACE, "__main__": INTERFACE, "api": INTERFACE}
# In these folders each module is a stage of its own; audit/, visualize/ and deploy/ are one stage each.
ONE_STAGE_PER_MODULE = {"stages", "methods"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[int, str]:
    """(floor, unit): the floor of the module's folder; a unit is what 'another stage' means."""
    folder, _, rest = module.partition(".")
    if folder in FOLDERS:
        unit = module if folder in ONE_STAGE_PER_MODULE and rest else folder
        return FOLDERS[folder], unit
    if module in TOP_LEVEL:
        return TOP_LEVEL[module], module
    raise AssertionError(f"pipeline.{module} is in no layer: put it in one of the folders {sorted(FOLDERS)}.")


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


MODULES = sorted(PACKAGE.glob("**/*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_follow_the_layers(path: Path) -> None:
    source = module_name(path)
    layer, unit = layer_of(source)
    for target in project_imports(path):
        if target == "__init__" or target == source:
            continue
        target_layer, target_unit = layer_of(target)
        assert target_layer <= layer, f"pipeline.{source} (floor {layer}) imports pipeline.{target} ({target_layer})"
        if layer == STAGE and target_layer == STAGE:
            assert target_unit == unit, f"stage pipeline.{source} imports another stage, pipeline.{target}"


def test_every_folder_has_a_floor_and_says_what_it_holds() -> None:
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders == set(FOLDERS), "a folder of pipeline/ without a floor here (or one listed that is gone)"
    for folder in folders:
        assert ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text())), f"{folder}/__init__.py"
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(TOP_LEVEL), "top-level modules are the interface only"


def test_nothing_nests_below_a_folder() -> None:
    """Two levels (pipeline/<folder>/<module>.py): the tree stays readable from `ls pipeline/*/`."""
    assert [p.relative_to(PACKAGE) for p in MODULES if len(p.relative_to(PACKAGE).parts) > 2] == []


def test_core_imports_nothing_heavy() -> None:
    """The core is the standard library, pydantic and yaml: doctor and params never pay for TensorFlow or h5py."""
    allowed = set(sys.stdlib_module_names) | {"yaml", "pydantic", "pipeline"}
    for path in (PACKAGE / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        heavy = {name for name in imported if name.split(".")[0] not in allowed}
        assert heavy == set(), f"pipeline/core/{path.name} imports {sorted(heavy)}"

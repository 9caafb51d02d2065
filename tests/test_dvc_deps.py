"""Every dvc.yaml stage lists, as deps, exactly the project code its command imports (transitively).

The closure is computed from the code, not from a hand list: the stage's `cmd` (`python -m pipeline ...`) is
followed through the CLI's real dispatch (the typer app's registered commands and sub-apps) to the command's
function; its module's top-level imports and the function's own imports start the walk, and from there every
import statement of every module counts (function-level ones too), plus modules named in strings (the heads'
registry imports its builders by name) and the packages' __init__ files that importing a module runs.
A listed folder covers the modules under it; a listed code path no module of the closure is in is an error too,
so `pipeline/` cannot stand for everything, and so is a dep listed twice or inside a listed folder: every listed
dep is then needed. One test per stage checks the instances params.yaml makes (one representative instance for
an opt-in stage whose `methods.run` or `deploy` list is empty) and names every problem in one failure.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from pipeline.cli import app
from pipeline.core.config import BACKBONES, HEADS, Config
from tests.conftest import ROOT

PACKAGE = ROOT / "pipeline"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
TEMPLATE = re.compile(r"\$\{([^}]+)\}")
MODULE_STRING = re.compile(r"^(pipeline(?:\.\w+)+)(?::\w+)?$")


def module_path(dotted: str) -> Path | None:
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def dotted_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(tree: ast.AST, package: str) -> set[str]:
    """Project modules an AST imports (relative imports resolved against `package`), or names in strings."""
    found: set[str] = set()
    for node in ast.walk(without_type_checking(tree)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] != "pipeline":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if module_path(f"{base}.{a.name}")}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = MODULE_STRING.match(node.value)
            if match and module_path(match[1]):
                found.add(match[1])
    return {name for name in found if module_path(name)}


def without_type_checking(tree: ast.AST) -> ast.AST:
    """The tree without `if TYPE_CHECKING:` blocks: imports for type hints only never run."""

    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | None:
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                return None
            return self.generic_visit(node)

    return Strip().visit(ast.parse(ast.unparse(tree)))


@cache
def module_imports(dotted: str) -> frozenset[str]:
    path = module_path(dotted)
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    return frozenset(imports_in(ast.parse(path.read_text()), package))


def with_parents(dotted: str) -> set[str]:
    """Importing pipeline.a.b runs pipeline/__init__.py and pipeline/a/__init__.py first."""
    parts = dotted.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def command_modules(typer_app: typer.Typer) -> set[str]:
    """Modules that define CLI commands: importing them runs their top level only, not every command's imports."""
    found = {c.callback.__module__ for c in typer_app.registered_commands}
    for group in typer_app.registered_groups:
        found |= command_modules(group.typer_instance)
    return found | {"pipeline.__main__"}


CLI_MODULES = command_modules(app)


def closure(start: set[str]) -> set[Path]:
    seen: set[str] = set()
    todo = [name for s in start for name in with_parents(s)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        targets = top_level_imports(name) if name in CLI_MODULES else module_imports(name)
        todo += [parent for target in targets for parent in with_parents(target)]
    return {module_path(name) for name in seen}


def top_level_imports(module: str) -> set[str]:
    """The imports a module runs when imported: its top-level statements, not those inside functions."""
    path = module_path(module)
    tree = ast.parse(path.read_text())
    top = ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))], type_ignores=[])
    return imports_in(top, module.rpartition(".")[0]) | {module}


def dispatch(argv: list[str]) -> tuple[Any, list[str]]:
    """The function `python -m pipeline <argv>` runs, found through the typer app's own registrations."""
    current: typer.Typer = app
    cli_modules = ["pipeline.__main__", "pipeline.cli"]
    for position, word in enumerate(argv):
        for group in current.registered_groups:
            if group.name == word:
                current = group.typer_instance
                break
        else:
            for command in current.registered_commands:
                name = command.name or command.callback.__name__.replace("_", "-")
                if name == word:
                    cli_modules.append(command.callback.__module__)
                    return command.callback, cli_modules
            raise AssertionError(f"`python -m pipeline {' '.join(argv[: position + 1])}` is no command")
    raise AssertionError(f"`python -m pipeline {' '.join(argv)}` names a group, not a command")


@cache
def command_closure(cmd: str) -> frozenset[Path]:
    argv = cmd.split()
    assert argv[:3] == ["python", "-m", "pipeline"], cmd
    function, cli_modules = dispatch(argv[3:])
    start = set().union(*(top_level_imports(m) for m in cli_modules))
    body = ast.parse(textwrap.dedent(inspect.getsource(function)))
    start |= imports_in(body, function.__module__.rpartition(".")[0])
    return frozenset(closure(start))


def resolve(text: str, item: Any) -> str:
    """dvc.yaml's ${...} templating, with `item` for foreach/matrix and params.yaml for the rest."""

    def value(match: re.Match) -> str:
        key = match[1].strip()
        if key == "item" or key.startswith("item."):
            return str(item if key == "item" else item[key.removeprefix("item.")])
        node: Any = PARAMS
        for part in key.split("."):
            node = node[part]
        return str(node)

    return TEMPLATE.sub(value, text)


def items_of(expression: str) -> list[Any]:
    """The values of a foreach list as params.yaml sets them; an empty (opt-in) list gives one representative
    value it may take (the first backbone or head, or a seed), so the template's deps are checked without pretending
    that every backbone runs."""
    key = TEMPLATE.fullmatch(expression.strip())[1]
    node: Any = PARAMS
    for part in key.split("."):
        node = node[part]
    if node:
        return list(node)
    allowed = str(schema_annotation(key))
    return [BACKBONES[0]] if BACKBONES[0] in allowed else [HEADS[0]] if HEADS[0] in allowed else [0]


def schema_annotation(key: str) -> Any:
    """The type the params schema gives a dotted key, e.g. deploy.heads -> tuple[HeadName, ...]."""
    annotation: Any = Config
    for part in key.split("."):
        annotation = annotation.__pydantic_fields__[part].annotation
    return annotation


def stage_instances() -> list[tuple[str, str, list[str]]]:
    """(stage@item, cmd, deps) for every stage instance params.yaml makes, and one per opt-in stage."""
    found = []
    for name, stage in DVC["stages"].items():
        if "foreach" in stage:
            body, items = stage["do"], items_of(stage["foreach"])
        elif "matrix" in stage:
            body = stage
            keys = list(stage["matrix"])
            items = [
                dict(zip(keys, combo, strict=True)) for combo in product(*(items_of(stage["matrix"][k]) for k in keys))
            ]
        else:
            body, items = stage, [None]
        for item in items:
            label = (
                name
                if item is None
                else f"{name}@{'-'.join(map(str, item.values())) if isinstance(item, dict) else item}"
            )
            deps = [
                resolve(str(dep if isinstance(dep, str) else next(iter(dep))), item) for dep in body.get("deps", [])
            ]
            found.append((label, resolve(body["cmd"], item), deps))
    return found


STAGES = stage_instances()
STAGE_NAMES = list(dict.fromkeys(label.split("@")[0] for label, _, _ in STAGES))


def code_deps(deps: list[str]) -> list[str]:
    return [dep.rstrip("/") for dep in deps if dep.rstrip("/") == "pipeline" or dep.startswith("pipeline/")]


def problems(cmd: str, deps: list[str]) -> list[str]:
    """What dvc.yaml gets wrong for one stage: imported modules no dep covers, code deps nothing imports, a code
    dep listed twice, a code dep inside another listed folder (removing it would change nothing)."""
    modules = command_closure(cmd)
    names = code_deps(deps)
    listed = [ROOT / dep for dep in names]
    missing = [m for m in modules if not any(m == d or d in m.parents for d in listed)]
    unused = [d for d in listed if not any(m == d or d in m.parents for m in modules)]
    duplicated = sorted({dep for dep in names if names.count(dep) > 1})
    nested = [(d, outer) for d in listed for outer in listed if outer in d.parents]
    return (
        [f"missing dep {m.relative_to(ROOT)}" for m in sorted(missing)]
        + [f"dep {d.relative_to(ROOT)} is code the command does not import" for d in unused]
        + [f"dep {dep} is listed twice" for dep in duplicated]
        + [f"dep {d.relative_to(ROOT)} is inside dep {outer.relative_to(ROOT)}" for d, outer in nested]
    )


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_deps_are_its_import_closure(name: str) -> None:
    """Every instance of the stage: missing, unused, duplicated and nested code deps, all named in one failure."""
    found = {label: problems(cmd, deps) for label, cmd, deps in STAGES if label.split("@")[0] == name}
    assert {label: listed for label, listed in found.items() if listed} == {}, f"{name}: fix its deps in dvc.yaml"


def test_the_closure_follows_deferred_and_named_imports() -> None:
    """evaluate imports the heads by name through the registry: their modules are in its closure."""
    modules = {p.relative_to(ROOT).as_posix() for p in command_closure("python -m pipeline evaluate vgg16 logreg")}
    assert {
        "pipeline/heads/logreg.py",
        "pipeline/heads/dense.py",
        "pipeline/reporting/metrics.py",
        "pipeline/store/index.py",
    } <= modules
    assert "pipeline/stages/featurize.py" not in modules and "pipeline/stages/train.py" not in modules


def test_each_kind_of_wrong_dep_is_named() -> None:
    """The check itself: a dropped, an extra, a doubled and a nested dep of featurize are each reported."""
    label, cmd, deps = next(s for s in STAGES if s[0].startswith("featurize@"))
    assert problems(cmd, deps) == []
    code = code_deps(deps)
    dropped = next(dep for dep in code if dep.endswith(".py"))
    folder = next(dep for dep in code if not dep.endswith(".py"))
    inside = sorted((ROOT / folder).glob("*.py"))[0].relative_to(ROOT).as_posix()
    wrong = [d for d in deps if d.rstrip("/") != dropped] + ["pipeline/stages/train.py", folder, inside]
    assert problems(cmd, wrong) == [
        f"missing dep {dropped}",
        "dep pipeline/stages/train.py is code the command does not import",
        f"dep {folder} is listed twice",
        f"dep {inside} is inside dep {folder}",
        f"dep {inside} is inside dep {folder}",
    ], label

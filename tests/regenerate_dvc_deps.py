"""Rewrite dvc.yaml's code deps as each stage's import closure (the one tests/test_dvc_deps.py checks).

Run after moving or adding modules: `python -m tests.regenerate_dvc_deps`. Each stage's `pipeline/...` deps are
replaced in place (comments, data deps and order of the rest kept), sorted; a folder whose every module is in
the closure is listed as the folder (`pipeline/cli`), so dvc.yaml stays readable.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest imports its neighbours as pytest lets it

from tests.conftest import ROOT  # noqa: E402
from tests.test_dvc_deps import STAGES, command_closure  # noqa: E402

DVC_YAML = ROOT / "dvc.yaml"
STAGE_LINE = re.compile(r"^  (\w[\w-]*):\s*$")
CODE_DEP = re.compile(r"^(\s+)- pipeline/\S+\s*$")


def closures() -> dict[str, list[str]]:
    """stage name -> its code deps; every instance of a foreach/matrix stage must agree."""
    found: dict[str, list[str]] = {}
    for label, cmd, _ in STAGES:
        name = label.split("@")[0]
        deps = collapsed({p.relative_to(ROOT).as_posix() for p in command_closure(cmd)})
        if found.setdefault(name, deps) != deps:
            raise SystemExit(f"{label}: its import closure differs from another instance of {name}")
    return found


def collapsed(modules: set[str]) -> list[str]:
    """The modules, with each folder of pipeline/ whose modules are all there named once as the folder."""
    deps = set(modules)
    for folder in sorted((ROOT / "pipeline").glob("*/")):
        inside = {p.relative_to(ROOT).as_posix() for p in folder.glob("*.py")}
        if inside and inside <= deps:
            deps = (deps - inside) | {folder.relative_to(ROOT).as_posix()}
    return sorted(deps)


def rewrite(text: str, deps_of: dict[str, list[str]]) -> str:
    out: list[str] = []
    stage = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := STAGE_LINE.match(line):
            stage = match[1]
        if (match := CODE_DEP.match(line)) and stage in deps_of:
            indent = match[1]
            while i < len(lines) and CODE_DEP.match(lines[i]):
                i += 1
            out += [f"{indent}- {dep}" for dep in deps_of[stage]]
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    DVC_YAML.write_text(rewrite(DVC_YAML.read_text(), closures()))
    print(f"rewrote the code deps of {DVC_YAML}")

"""The params reference table (docs/params.md), generated from the schema in `config`, so it never goes stale."""

from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.config import BackboneConfig, Config, default_backbones


def schema_rows(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every leaf param, in schema order."""
    rows = []
    defaults = cls()
    for name, info in cls.__pydantic_fields__.items():
        if cls is Config and name == "raw":
            continue
        value = getattr(defaults, name)
        if is_dataclass(value):
            rows += schema_rows(type(value), f"{prefix}{name}.")
        elif name == "backbones" and cls is Config:
            rows += backbone_rows()
        else:
            rows.append((prefix + name, value, info.description or ""))
    return rows


def backbone_rows() -> list[tuple[str, Any, str]]:
    """One row per backbones.<name> param; a default that differs between backbones is shown per backbone."""
    backbones = default_backbones()
    rows = []
    for key, _, text in schema_rows(BackboneConfig):
        defaults = {name: getattr(config, key) for name, config in backbones.items()}
        distinct = set(defaults.values())
        rows.append((f"backbones.<name>.{key}", distinct.pop() if len(distinct) == 1 else defaults, text))
    return rows


def yaml_text(value: Any) -> str:
    """A default as params.yaml writes it."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def markdown_table() -> str:
    """The params table of docs/params.md, generated from this schema (tests/test_config.py keeps the page in sync)."""
    lines = ["| param | default | meaning |", "| --- | --- | --- |"]
    for key, default, description in schema_rows():
        lines.append(f"| `{key}` | `{yaml_text(default)}` | {description.replace('|', '/')} |")
    return "\n".join(lines)

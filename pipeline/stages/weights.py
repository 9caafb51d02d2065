"""Stage weights: resolve a backbone's weights and record what they are (identifier, sha256) for DVC to compare."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.backbones import ResolvedWeights, get_backbone
from pipeline.core.config import BackboneConfig


def record_weights(backbone: str, backbone_config: BackboneConfig, out_path: Path) -> ResolvedWeights:
    """Resolve a backbone's weights and write what they are (identifier, sha256) for DVC to compare."""
    weights = get_backbone(backbone).resolve_weights(backbone_config.weights)
    record = {"backbone": backbone, "weights": weights.identifier, "sha256": weights.sha256}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=2) + "\n")
    return weights

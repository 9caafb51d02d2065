"""The compute-backend contract: how featurize hands the images no chunk holds to whatever runs the conv base.

A backend (pipeline/compute/local.py: tf.data in this process; pipeline/compute/ray_data.py: Ray Data actors)
receives a ComputeJob, writes every key's row into the job's chunk pool (`chunk_rows` rows per chunk, in the
keys' order), and returns the feature shape. featurize then writes the index, whoever wrote the chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.store.chunks import ChunkPool

if TYPE_CHECKING:  # typing only: this contract imports no TensorFlow
    from pipeline.backbones import BackboneSpec, ResolvedWeights


@dataclass(frozen=True)
class ComputeJob:
    """The images to run through one conv base, and where their rows go."""

    spec: BackboneSpec
    weights: ResolvedWeights
    recipe: dict[str, Any]  # the feature recipe (featurize.feature_recipe): its precision is the one to run in
    backbone_config: BackboneConfig
    config: FeaturizeConfig
    paths: list[str]  # image files, one per key
    keys: list[str]  # the images' sha256, the rows' keys in the pool
    pool: ChunkPool


@runtime_checkable
class ComputeBackend(Protocol):
    """Computes a job's rows into its pool; returns the feature shape (h, w, c)."""

    name: str

    def compute(self, job: ComputeJob) -> tuple[int, ...]: ...

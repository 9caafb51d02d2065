"""params.yaml, loaded once into typed config objects that the stages receive."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

SPLITS = ("train", "validation", "test")
DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is missing, malformed or holds a value out of range."""


@dataclass(frozen=True)
class Paths:
    raw: Path = Path("data/raw/dogs-vs-cats.zip")
    images: Path = Path("data/images")
    split: Path = Path("data/split")
    weights: Path = Path("weights")
    features: Path = Path("features")
    models: Path = Path("models")
    metrics: Path = Path("metrics")
    curves: Path = Path("dvclive")
    plots: Path = Path("plots")

    @property
    def manifest(self) -> Path:
        return self.split / "manifest.csv"

    @property
    def split_metrics(self) -> Path:
        return self.metrics / "split.json"

    def store(self, backbone: str) -> Path:
        return self.features / f"{backbone}.h5"

    def weights_record(self, backbone: str) -> Path:
        return self.features / f"{backbone}.weights.json"

    def head_dir(self, backbone: str, head: str) -> Path:
        return self.models / backbone / head

    def curves_dir(self, backbone: str, head: str) -> Path:
        return self.curves / backbone / head

    def metrics_dir(self, backbone: str, head: str) -> Path:
        return self.metrics / backbone / head


@dataclass(frozen=True)
class ExtractConfig:
    """extract: limits that stop decompression bombs, checked from the zip's headers and again while streaming."""

    max_entry_mb: float = 100  # an image entry (or raw-folder file) unpacking to more is refused
    max_total_mb: float = 20_000  # all entries together (and a nested train.zip)
    max_ratio: float = 100  # uncompressed / compressed, for entries over 1 MiB


@dataclass(frozen=True)
class SplitConfig:
    train: int | float = 1000  # images per class (a whole number), or a fraction of each class's valid images
    validation: int | float = 500
    test: int | float = 500
    shuffle: bool = False
    seed: int = 42
    max_pixels: int = 50_000_000  # larger images are rejected from the header, before decoding
    layout: str = "auto"  # paths.raw's layout: auto | kaggle (<class>.<n>.<ext>) | folders (<class>/<file>)

    def sizes(self) -> dict[str, int | float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True)
class RayConfig:
    """featurize.ray: where the `ray` backend runs and how many conv-base actors it starts."""

    address: str = "local"  # local or "": start Ray here | auto: the running cluster | ray://host:10001
    num_cpus: int = 0  # CPUs of a Ray started here; 0: all
    actors: int = 2  # conv-base actors, each builds the model once
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 0  # images per conv-base call inside an actor; 0: featurize.batch_size


@dataclass(frozen=True)
class FeaturizeConfig:
    backbones: tuple[str, ...] = ("vgg16",)
    batch_size: int = 32
    resize: str = "bilinear"
    storage_dtype: str = "float32"
    precision: str = "auto"
    chunk_rows: int = 512
    backend: str = "local"  # local: tf.data in this process | ray: Ray Data actors (pipeline/ray_backend.py)
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass(frozen=True)
class BackboneConfig:
    weights: str = "imagenet"
    input_size: int = 150


@dataclass(frozen=True)
class TrainConfig:
    heads: tuple[str, ...] = ("dense", "logreg")
    seed: int = 42


@dataclass(frozen=True)
class MethodsRun:
    """What `dvc repro` runs of the seed's other methods: seeds (scratch, augment, mnist) or backbones."""

    scratch: tuple[int, ...] = ()
    augment: tuple[int, ...] = ()
    end_to_end: tuple[str, ...] = ()
    finetune: tuple[str, ...] = ()
    augmented_features: tuple[str, ...] = ()
    mnist: tuple[int, ...] = ()


@dataclass(frozen=True)
class AugmentationConfig:
    """The seed's ImageDataGenerator settings."""

    rotation: float = 40.0  # degrees
    width_shift: float = 0.2
    height_shift: float = 0.2
    shear: float = 0.2
    zoom: float = 0.2
    horizontal_flip: bool = True
    fill_mode: str = "nearest"


@dataclass(frozen=True)
class ScratchConfig:
    input_size: int = 150
    epochs: int = 30
    batch_size: int = 20
    steps_per_epoch: int = 0  # 0: one pass over the training images
    learning_rate: float = 1e-4
    dropout: float = 0.0


@dataclass(frozen=True)
class AugmentConfig(ScratchConfig):
    epochs: int = 100
    batch_size: int = 32
    dropout: float = 0.5


@dataclass(frozen=True)
class EndToEndConfig:
    units: int = 256
    epochs: int = 30
    batch_size: int = 20
    steps_per_epoch: int = 0
    learning_rate: float = 2e-5


@dataclass(frozen=True)
class FinetuneConfig:
    from_layer: str = "auto"  # auto: the backbone's finetune_from
    epochs: int = 100
    batch_size: int = 20
    steps_per_epoch: int = 0
    learning_rate: float = 1e-5


@dataclass(frozen=True)
class AugmentedFeaturesConfig:
    passes: int = 2
    batch_size: int = 32
    heads: tuple[str, ...] = ("logreg", "dense")


@dataclass(frozen=True)
class MnistConfig:
    source: str = "keras"  # keras | a folder of IDX files
    holdout: int = 2000
    train_limit: int = 0  # 0: every training digit
    epochs: int = 5
    batch_size: int = 64


@dataclass(frozen=True)
class MethodsConfig:
    run: MethodsRun = field(default_factory=MethodsRun)
    seed: int = 42
    resize: str = "bilinear"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    scratch: ScratchConfig = field(default_factory=ScratchConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    end_to_end: EndToEndConfig = field(default_factory=EndToEndConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    augmented_features: AugmentedFeaturesConfig = field(default_factory=AugmentedFeaturesConfig)
    mnist: MnistConfig = field(default_factory=MnistConfig)


def _build_methods(section: dict[str, Any] | None) -> MethodsConfig:
    """The `methods` section: each sub-section built (and its unknown keys refused) like a top-level one."""
    section = dict(section or {})
    nested = {
        f.name: _build(type(f.default_factory()), section.pop(f.name, None), f"methods.{f.name}")
        for f in fields(MethodsConfig)
        if f.default_factory is not MISSING
    }
    return replace(_build(MethodsConfig, section, "methods"), **nested)


@dataclass(frozen=True)
class VisualizeConfig:
    """What the visualize stage pictures: activations, filter patterns, Grad-CAM (defaults: see params.yaml)."""

    head: str = "dense"
    images: int = 1
    ids: tuple[str, ...] = ()
    layers: int = 8
    per_row: int = 16
    filters: int = 32
    filter_size: int = 64
    filter_layers: dict[str, str] = field(
        default_factory=lambda: {"vgg16": "block3_conv1", "efficientnet_lite0": "block5_expand_conv"}
    )
    steps: int = 40
    step_size: float = 1.0
    alpha: float = 0.4

    def filter_layer(self, backbone: str) -> str:
        if backbone not in self.filter_layers:
            raise ConfigError(f"params.yaml has no 'visualize.filter_layers.{backbone}': name the layer to show.")
        return self.filter_layers[backbone]


@dataclass(frozen=True)
class Config:
    paths: Paths = field(default_factory=Paths)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    backbones: dict[str, BackboneConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    visualize: VisualizeConfig = field(default_factory=VisualizeConfig)
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    raw: dict[str, Any] = field(default_factory=dict)

    def backbone(self, name: str) -> BackboneConfig:
        """The params of one backbone; defaults when params.yaml has no entry for it."""
        return self.backbones.get(name, BackboneConfig())

    def head(self, name: str) -> dict[str, Any]:
        if name not in self.heads:
            raise ConfigError(f"params.yaml has no 'heads.{name}' section. Known heads: {sorted(self.heads)}")
        return dict(self.heads[name])


def _build(cls: type, section: dict[str, Any] | None, where: str) -> Any:
    """Instantiate a config dataclass from a params section, refusing unknown keys."""
    section = section or {}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"Unknown key(s) {unknown} in params section '{where}'. Known: {sorted(known)}")
    values = {}
    for key, value in section.items():
        default = getattr(cls(), key) if key in known else None
        if isinstance(default, Path):
            value = Path(value)
        elif is_dataclass(default):  # a nested section, e.g. featurize.ray
            value = _build(type(default), value, f"{where}.{key}")
        elif isinstance(default, tuple):
            value = tuple(value)
        values[key] = value
    return cls(**values)


def load_config(path: Path | str = DEFAULT_PARAMS) -> Config:
    """Read params.yaml into a Config; errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Params file not found: {path}. Run from the project root or pass --params.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level.")
    try:
        backbones = {
            name: _build(BackboneConfig, section, f"backbones.{name}")
            for name, section in (raw.get("backbones") or {}).items()
        }
        return Config(
            paths=_build(Paths, raw.get("paths"), "paths"),
            extract=_build(ExtractConfig, raw.get("extract"), "extract"),
            split=_build(SplitConfig, raw.get("split"), "split"),
            featurize=_build(FeaturizeConfig, raw.get("featurize"), "featurize"),
            backbones=backbones,
            train=_build(TrainConfig, raw.get("train"), "train"),
            heads=dict(raw.get("heads") or {}),
            visualize=_build(VisualizeConfig, raw.get("visualize"), "visualize"),
            methods=_build_methods(raw.get("methods")),
            raw=raw,
        )
    except TypeError as err:
        raise ConfigError(f"{path}: {err}") from err

"""The params schema: every key of params.yaml with its type, range, allowed values and default.

This module is the single source of defaults (equal to params.yaml's values; tests/test_config.py checks both
and docs/params.md's table). `load_config` validates the whole file before any stage does work: an unknown
key, a value of the wrong type, out of range or not among the allowed ones is a ConfigError that names the
key (dotted path), the value received and what is allowed. The sections are frozen pydantic dataclasses, so
stages (and tests) build and `dataclasses.replace` them like plain dataclasses, validated the same way.
"""

from __future__ import annotations

from dataclasses import asdict, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass

from pipeline.core.errors import ConfigError

SPLITS = ("train", "validation", "test")
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C parser when PyYAML has it: 10x faster
DEFAULT_PARAMS = Path("params.yaml")

# Allowed values. The backbone and head names are the registries' (pipeline/backbones, pipeline/heads; a test
# checks they agree), spelled out here so validating params never imports TensorFlow.
BackboneName = Literal["vgg16", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
HeadName = Literal["dense", "logreg"]
KerasHeadName = Literal["dense"]  # the heads that save a Keras model (visualize stacks it on the conv base)
ResizeMethod = Literal["bilinear", "nearest", "bicubic", "area"]
StorageDtype = Literal["float32", "float16"]
Precision = Literal["auto", "float32", "bfloat16", "float16"]
TrainingPrecision = Literal["float32", "bfloat16"]
Backend = Literal["local", "ray"]
Pooling = Literal["auto", "flatten", "avg", "max"]
FillMode = Literal["nearest", "constant", "reflect", "wrap"]
Interpolation = Literal["bilinear", "nearest"]
Layout = Literal["auto", "kaggle", "folders"]
ImageCheck = Literal["low_information", "light", "dark", "blurry", "odd_aspect_ratio", "odd_size", "grayscale"]
IssueType = Literal[
    "label_issue",
    "outlier",
    "off_class",
    "near_duplicate",
    "leakage",
    "exact_duplicate",
    "low_information",
    "light",
    "dark",
    "blurry",
    "odd_aspect_ratio",
    "odd_size",
    "grayscale",
]
LabelFilter = Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]
AuditMap = Literal["pca", "tsne"]
ExportFormat = Literal["tflite", "onnx"]

BACKBONES: tuple[str, ...] = get_args(BackboneName)
HEADS: tuple[str, ...] = get_args(HeadName)
KERAS_HEADS: tuple[str, ...] = get_args(KerasHeadName)
RESIZE_METHODS: tuple[str, ...] = get_args(ResizeMethod)
STORAGE_DTYPES: tuple[str, ...] = get_args(StorageDtype)
PRECISIONS: tuple[str, ...] = get_args(Precision)
BACKENDS: tuple[str, ...] = get_args(Backend)
POOLINGS: tuple[str, ...] = get_args(Pooling)
FILL_MODES: tuple[str, ...] = get_args(FillMode)

# Numbers: ints and bools strictly (a YAML `true` is not 1, `2.5` is not 2); floats accept ints.
Int = Annotated[int, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]
Seed = Annotated[int, Field(strict=True, ge=0)]


def refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("allowed: a number, not a boolean")
    return value


Float = Annotated[float, BeforeValidator(refuse_bool)]


def count_or_fraction(least: int) -> BeforeValidator:
    """Images per class (a whole number >= least) or a fraction of each class's images (>= 0 and < 1)."""

    def check(value: Any) -> Any:
        allowed = f"allowed: a whole number of images >= {least} or a fraction between 0 and 1"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(allowed)
        if (isinstance(value, int) and value < least) or (isinstance(value, float) and not 0 <= value < 1):
            raise ValueError(allowed)
        return value

    return BeforeValidator(check)


Size = Annotated[int | float, count_or_fraction(0)]
TrainSize = Annotated[int | float, count_or_fraction(1)]

SCHEMA = ConfigDict(extra="forbid", frozen=True)


def Count(default: int, minimum: int = 1, description: str = "") -> Any:  # noqa: N802  (reads as a type)
    """An integer parameter with a lower bound."""
    return Field(default, strict=True, ge=minimum, description=description)


def Real(default: float, description: str = "", **bounds: float) -> Any:  # noqa: N802
    """A float parameter (ints accepted, booleans refused) with bounds (gt, ge, lt, le)."""
    return Field(default, description=description, **bounds)


@dataclass(config=SCHEMA)
class Paths:
    raw: Path = Field(Path("data/raw/dogs-vs-cats.zip"), description="Kaggle zip, train.zip or folder")
    images: Path = Field(Path("data/images"), description="extract's output: every training image, flat")
    split: Path = Field(Path("data/split"), description="split's output: the split folders and manifest.csv")
    weights: Path = Field(Path("weights"), description="your own weights files")
    features: Path = Field(Path("features"), description="featurize's output: <backbone>.h5 and its chunks")
    models: Path = Field(Path("models"), description="train's output: <backbone>/<head>/")
    metrics: Path = Field(Path("metrics"), description="evaluate's output: <backbone>/<head>/metrics.json")
    curves: Path = Field(Path("dvclive"), description="training curves: <backbone>/<head>/plots/metrics/")
    plots: Path = Field(Path("plots"), description="visualize's pictures")
    audit: Path = Field(Path("audit"), description="the audit's output: <backbone>/issues.csv, counts.json, plots/")
    report: Path = Field(Path("report"), description="report's output: index.html and images/, one offline page")
    exports: Path = Field(Path("exports"), description="export's output: <backbone>/<head>/model.keras, model.json")

    @property
    def manifest(self) -> Path:
        return self.split / "manifest.csv"

    @property
    def split_metrics(self) -> Path:
        return self.metrics / "split.json"

    @property
    def split_counts(self) -> Path:
        """Every count of the split stage (by reason too); split_metrics holds the headline ones."""
        return self.split / "counts.json"

    def store(self, backbone: str) -> Path:
        return self.features / f"{backbone}.h5"

    def weights_record(self, backbone: str) -> Path:
        return self.features / f"{backbone}.weights.json"

    def store_summary(self, backbone: str) -> Path:
        """The store's provenance and rows per split as JSON (featurize writes it; the report reads it)."""
        return self.metrics / backbone / "store.json"

    def head_dir(self, backbone: str, head: str) -> Path:
        return self.models / backbone / head

    def curves_dir(self, backbone: str, head: str) -> Path:
        """Head first: one top-level plot in dvc.yaml per head draws every backbone's curves on its x axis."""
        return self.curves / head / backbone

    def metrics_dir(self, backbone: str, head: str) -> Path:
        return self.metrics / backbone / head

    def export_dir(self, backbone: str, head: str) -> Path:
        return self.exports / backbone / head

    def export_metrics(self, backbone: str, head: str) -> Path:
        """The export stage's parity, size and latency per format (`dvc metrics show`)."""
        return self.metrics / backbone / head / "export.json"

    def audit_dir(self, backbone: str) -> Path:
        return self.audit / backbone

    def drop_list(self, backbone: str) -> Path:
        """The audit's training rows to leave out of the heads (header only unless audit.drop asks)."""
        return self.audit / backbone / "drop.csv"


@dataclass(config=SCHEMA)
class ExtractConfig:
    """extract: limits that stop decompression bombs, checked from the zip's headers and again while streaming."""

    max_entry_mb: Float = Real(100, "an image entry (or raw-folder file) unpacking to more is refused", gt=0)
    max_total_mb: Float = Real(20_000, "all entries together (and a nested train.zip)", gt=0)
    max_ratio: Float = Real(100, "uncompressed / compressed size allowed for entries over 1 MiB", gt=0)


@dataclass(config=SCHEMA)
class SplitConfig:
    train: TrainSize = Field(
        1000, description="training images per class, or a fraction of each class's valid images (book: 1000)"
    )
    validation: Size = Field(500, description="validation images per class, or a fraction (book: 500)")
    test: Size = Field(
        500, description="test images per class, or a fraction (book: 500); counts and fractions are not mixed"
    )
    shuffle: Bool = Field(False, description="shuffle each class (seeded) before splitting (book: false)")
    seed: Seed = Count(42, 0, "the shuffle's seed")
    max_pixels: Int = Count(50_000_000, 1, "images with more pixels are rejected unread (decompression bombs)")
    layout: Layout = Field(
        "auto", description="paths.raw's layout: auto, kaggle (<class>.<n>.<ext>) or folders (<class>/<file>)"
    )

    @model_validator(mode="after")
    def counts_or_fractions(self) -> SplitConfig:
        """All counts (train >= 1) or all fractions (adding up to 1 at most); zeros go with either."""
        sizes = self.sizes()
        kinds = {isinstance(v, float) for v in sizes.values() if v}
        if len(kinds) > 1:
            raise ValueError(
                "split.train/validation/test must be all counts (e.g. 1000/500/500) or all fractions "
                f"(e.g. 0.7/0.15/0.15). Received: {sizes}"
            )
        if not self.train:
            raise ValueError(f"split.train must be at least 1 image per class (or a fraction > 0). Received: {sizes}")
        if kinds == {True} and sum(sizes.values()) > 1 + 1e-9:
            raise ValueError(f"split fractions add up to more than 1: {sizes}")
        return self

    def sizes(self) -> dict[str, int | float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(config=SCHEMA)
class RayConfig:
    """featurize.ray: where the `ray` backend runs and how many conv-base actors it starts."""

    address: str = Field("local", description='local (or ""): start Ray here | auto | ray://host:10001')
    num_cpus: Int = Count(0, 0, "CPUs of a Ray started here; 0: all")
    actors: Int = Count(2, 1, "conv-base actors; each builds the model once")
    cpus_per_actor: Float = Real(1.0, "CPUs Ray reserves per actor", ge=0)
    gpus_per_actor: Float = Real(0.0, "GPUs per actor", ge=0)
    batch_size: Int = Count(0, 0, "images per conv-base call inside an actor; 0: featurize.batch_size")


@dataclass(config=SCHEMA)
class FeaturizeConfig:
    backbones: tuple[BackboneName, ...] = Field(
        ("vgg16", "efficientnet_lite0"), description="conv bases to cache (book: [vgg16])"
    )
    batch_size: Int = Count(32, 1, "images per conv-base batch (book: 20)")
    resize: ResizeMethod = Field("bilinear", description="resize method to the input size (book: nearest)")
    storage_dtype: StorageDtype = Field("float32", description="dtype of stored features; heads read float32")
    precision: Precision = Field("auto", description="conv-base compute; auto: bfloat16 where fast (book: float32)")
    mirror: Bool = Field(False, description="true: each row averages the image's and its left-right mirror's features")
    chunk_rows: Int = Count(512, 1, "rows per chunk file: the unit of resume, update and DVC push")
    backend: Backend = Field("local", description="local: tf.data here | ray: Ray Data actors")
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass(config=SCHEMA)
class BackboneConfig:
    weights: str = Field("imagenet", description="imagenet, none (random, seeded) or a file path")
    input_size: Int = Count(150, 32, "square input side in pixels (book: 150, VGG16; the Lites: their native size)")


@dataclass(config=SCHEMA)
class TrainConfig:
    heads: tuple[HeadName, ...] = Field(("dense", "logreg"), description="heads trained on every backbone")
    seed: Seed = Count(42, 0, "seeds every head")


@dataclass(config=SCHEMA)
class DenseHeadConfig:
    """heads.dense: the book's classifier."""

    pooling: Pooling = Field(
        "auto", description="auto (the backbone's default) | flatten (streamed) | avg | max (book: flatten)"
    )
    units: Int = Count(256, 1, "hidden units (book: 256)")
    dropout: Float = Real(0.5, "dropout rate (book: 0.5)", ge=0, lt=1)
    learning_rate: Float = Real(2e-5, "RMSprop learning rate (book: 2e-5)", gt=0)
    epochs: Int = Count(30, 1, "epochs (book: 30)")
    batch_size: Int = Count(20, 1, "batch size (book: 20)")


@dataclass(config=SCHEMA)
class LogRegHeadConfig:
    """heads.logreg: a logistic regression (scikit-learn's objective, fitted by L-BFGS-B) on pooled or flat maps."""

    pooling: Pooling = Field("auto", description="auto | flatten | avg | max")
    C: float | str = Field("auto", description="auto: the best of 0.001..10 on validation; or a number > 0")
    max_iter: Int = Count(1000, 1, "solver iterations")
    standardize: Bool = Field(True, description="zero mean, unit variance per feature (train statistics)")

    @field_validator("C", mode="before")
    @classmethod
    def auto_or_positive(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
            return value
        raise ValueError("allowed: 'auto' or a number > 0")


@dataclass(config=SCHEMA)
class HeadsConfig:
    dense: DenseHeadConfig = field(default_factory=DenseHeadConfig)
    logreg: LogRegHeadConfig = field(default_factory=LogRegHeadConfig)


@dataclass(config=SCHEMA)
class MethodsRun:
    """What `dvc repro` runs of the book's other methods: seeds (scratch, augment, mnist) or backbones."""

    scratch: tuple[Seed, ...] = Field((), description="seeds, e.g. [42] -> stage scratch@42")
    augment: tuple[Seed, ...] = Field((), description="seeds")
    end_to_end: tuple[BackboneName, ...] = Field((), description="backbones")
    finetune: tuple[BackboneName, ...] = Field((), description="backbones (after end_to_end)")
    augmented_features: tuple[BackboneName, ...] = Field((), description="backbones")
    mnist: tuple[Seed, ...] = Field((), description="seeds")


@dataclass(config=SCHEMA)
class AugmentationConfig:
    """The book's ImageDataGenerator settings."""

    rotation: Float = Real(40.0, "degrees (book: 40)", ge=0, le=180)
    width_shift: Float = Real(0.2, "fraction of the width (book: 0.2)", ge=0, lt=1)
    height_shift: Float = Real(0.2, "fraction of the height (book: 0.2)", ge=0, lt=1)
    shear: Float = Real(0.2, "radians, about the center (book: 0.2)", ge=0, lt=1.5)
    zoom: Float = Real(0.2, "height and width independently in [1-z, 1+z] (book: 0.2)", ge=0, lt=1)
    horizontal_flip: Bool = Field(True, description="book: true")
    fill_mode: FillMode = Field("nearest", description="book: nearest")
    interpolation: Interpolation = Field(
        "bilinear", description="resampling of the warp (book: nearest: Keras 2.0 used scipy's order 0)"
    )


@dataclass(config=SCHEMA)
class ScratchConfig:
    input_size: Int = Count(150, 32, "input side in pixels (book: 150)")
    epochs: Int = Count(5, 1, "book: 30")
    batch_size: Int = Count(20, 1, "book: 20")
    steps_per_epoch: Int = Count(0, 0, "0: one pass over the training images (book: 100)")
    learning_rate: Float = Real(1e-4, "RMSprop (book: 1e-4)", gt=0)
    dropout: Float = Real(0.0, "book: none", ge=0, lt=1)
    precision: TrainingPrecision = Field(
        "float32", description="float32 | bfloat16: mixed precision, bf16 compute, float32 weights (book: float32)"
    )


@dataclass(config=SCHEMA)
class AugmentConfig(ScratchConfig):
    epochs: Int = Count(10, 1, "book: 100")
    batch_size: Int = Count(32, 1, "book: 32")
    dropout: Float = Real(0.5, "book: 0.5", ge=0, lt=1)


@dataclass(config=SCHEMA)
class EndToEndConfig:
    units: Int = Count(256, 1, "book: 256")
    epochs: Int = Count(3, 1, "book: 30")
    batch_size: Int = Count(20, 1, "book: 20")
    steps_per_epoch: Int = Count(0, 0, "0: one pass (book: 100)")
    learning_rate: Float = Real(2e-5, "book: 2e-5", gt=0)


@dataclass(config=SCHEMA)
class FinetuneConfig:
    from_layer: str = Field("auto", description="auto: the backbone's finetune_from (VGG16: block5_conv1)")
    epochs: Int = Count(3, 1, "book: 100")
    batch_size: Int = Count(20, 1, "book: 20")
    steps_per_epoch: Int = Count(0, 0, "0: one pass (book: 100)")
    learning_rate: Float = Real(1e-5, "book: 1e-5", gt=0)


@dataclass(config=SCHEMA)
class AugmentedFeaturesConfig:
    passes: Int = Count(2, 1, "augmented passes of the training images")
    batch_size: Int = Count(32, 1, "images per conv-base batch")
    heads: tuple[HeadName, ...] = Field(("logreg", "dense"), description="heads trained on plain + augmented")


@dataclass(config=SCHEMA)
class MnistConfig:
    source: str = Field("keras", description="keras (a download) | a folder of MNIST IDX files")
    holdout: Int = Count(2000, 1, "with t10k files only: the last N digits are the test set")
    train_limit: Int = Count(0, 0, "0: every training digit")
    epochs: Int = Count(5, 1, "book: 5")
    batch_size: Int = Count(64, 1, "book: 64")


@dataclass(config=SCHEMA)
class MethodsConfig:
    run: MethodsRun = field(default_factory=MethodsRun)
    seed: Seed = Count(42, 0, "seeds the methods")
    resize: ResizeMethod = Field("bilinear", description="resize method of the methods' image input")
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    scratch: ScratchConfig = field(default_factory=ScratchConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    end_to_end: EndToEndConfig = field(default_factory=EndToEndConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    augmented_features: AugmentedFeaturesConfig = field(default_factory=AugmentedFeaturesConfig)
    mnist: MnistConfig = field(default_factory=MnistConfig)


def default_filter_layers() -> dict[str, str]:
    return {
        "vgg16": "block3_conv1",
        "efficientnet_lite0": "block5_expand_conv",
        "efficientnet_lite1": "block7_expand_conv",  # the first block of the 80-filter stage, as block5 in Lite0
        "efficientnet_lite2": "block7_expand_conv",
    }


@dataclass(config=SCHEMA)
class VisualizeConfig:
    """What the visualize stage pictures: activations, filter patterns, Grad-CAM."""

    heads: tuple[KerasHeadName, ...] = Field(
        ("dense",), description="Keras heads of train.heads to picture (one visualize stage each); [] none"
    )
    images: Int = Count(1, 0, "first N test images per class")
    ids: tuple[str, ...] = Field((), description="or these manifest ids instead")
    layers: Int = Count(8, 1, "activation grids of the first N conv/pool layers (book: 8)")
    per_row: Int = Count(16, 1, "channels per grid row (book: 16)")
    filters: Int = Count(32, 0, "first N filters of the layer; 0: no filter patterns (book: 64)")
    filter_size: Int = Count(64, 8, "pixels per side of each pattern (book: 64)")
    filter_layers: dict[BackboneName, str] = Field(
        default_factory=default_filter_layers, description="the layer whose filters are shown, per backbone"
    )
    steps: Int = Count(40, 1, "gradient-ascent steps (book: 40)")
    step_size: Float = Real(1.0, "pixel units; the gradient is divided by its RMS (book: 1.0)", gt=0)
    alpha: Float = Real(0.4, "heatmap opacity (book: 0.4)", ge=0, le=1)

    def filter_layer(self, backbone: str) -> str:
        if backbone not in self.filter_layers:
            raise ConfigError(f"params.yaml has no 'visualize.filter_layers.{backbone}': name the layer to show.")
        return self.filter_layers[backbone]


@dataclass(config=SCHEMA)
class AuditDropConfig:
    """audit.drop: flagged training rows the heads leave out (opt-in; features are not recomputed)."""

    types: tuple[IssueType, ...] = Field((), description="e.g. [label_issue, outlier, leakage]; [] drops nothing")
    min_score: Float = Real(0.0, "only rows whose issue score (0..1, higher is surer) is at least this", ge=0, le=1)


@dataclass(config=SCHEMA)
class AuditConfig:
    """The audit stage: label issues, outliers, off-class rows, near duplicates, leakage, exact duplicates from the
    features; image-property checks from the pixels."""

    pooling: Literal["avg", "flatten"] = Field("avg", description="how feature maps become the compared vectors")
    folds: Int = Count(5, 2, "folds of the out-of-fold logistic regression behind the label issues")
    C: Float = Real(0.1, "that regression's inverse regularization (features standardized)", gt=0)
    label_filter: LabelFilter = Field("prune_by_noise_rate", description="cleanlab find_label_issues filter_by")
    neighbors: Int = Count(10, 1, "k of the nearest-neighbor graph (outlier scores, near-duplicate pairs)")
    near_duplicate: Float = Real(
        0.25, "pair cutoff, a fraction of the median nearest-neighbor distance (cleanlab: 0.13)", ge=0, le=1
    )
    outlier: Float = Real(0.37037, "mean k-NN distance above Q3 + (1/outlier - 1) IQR (cleanlab Datalab's)", gt=0, le=1)
    off_class: Float = Real(
        0.37037, "cosine distance to the own class's mean above Q3 + (1/off_class - 1) IQR of the class's", gt=0, le=1
    )
    image_checks: tuple[ImageCheck, ...] = Field(
        ("low_information", "light", "dark", "blurry", "odd_aspect_ratio", "odd_size", "grayscale"),
        description="CleanVision's image-property checks to run; [] decodes no image",
    )
    image_workers: Int = Count(0, 0, "processes that decode images for the checks; 0: one per CPU")
    low_information: Float = Real(
        0.5, "entropy / 10 below this is low_information (CleanVision's default: 0.3)", gt=0, le=1
    )
    map: AuditMap = Field("pca", description="the 2-D map: pca (seconds) or tsne (about 30 s at 4,000 rows)")
    sheet_images: Int = Count(48, 1, "thumbnails per contact sheet, most certain first")
    seed: Seed = Count(42, 0, "seeds the folds and the map")
    drop: AuditDropConfig = field(default_factory=AuditDropConfig)


@dataclass(config=SCHEMA)
class DeployConfig:
    """The opt-in export@<backbone>-<head> stages: one portable model per backbone x head listed (none by default)."""

    backbones: tuple[BackboneName, ...] = Field((), description="backbones exported (each in featurize.backbones)")
    heads: tuple[HeadName, ...] = Field((), description="heads exported on each of them (each in train.heads)")
    formats: tuple[ExportFormat, ...] = Field(
        (), description="besides model.keras: tflite (float32 + dynamic range), onnx (the onnx extra)"
    )
    check_split: Literal["train", "validation", "test"] = Field("test", description="the split the parity check reads")
    check_limit: Int = Count(0, 0, "the check classifies the split's first N images; 0: all")


def check_exports(config: Config, source: str) -> None:
    """deploy.backbones/heads name stores and heads the pipeline builds; an export of anything else has no input."""
    deploy = config.deploy
    if bool(deploy.backbones) != bool(deploy.heads):
        raise ConfigError(
            f"{source}: deploy.backbones and deploy.heads: set both (or neither); one empty list exports nothing."
            f" Received: backbones={list(deploy.backbones)}, heads={list(deploy.heads)}"
        )
    for key, names, built, where in (
        ("backbones", deploy.backbones, config.featurize.backbones, "featurize.backbones"),
        ("heads", deploy.heads, config.train.heads, "train.heads"),
    ):
        for index, name in enumerate(names):
            if name not in built:
                raise ConfigError(
                    f"{source}: deploy.{key}[{index}]: received {name!r}; it must be one of {where} ({list(built)}):"
                    " the export reads what the pipeline built for it"
                )


# Each backbone's default input size: the registry's default_input_size (a test checks they agree), the native
# size of the EfficientNet-Lites and the book's 150 px for VGG16.
DEFAULT_INPUT_SIZES = {"vgg16": 150, "efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def default_backbones() -> dict[str, BackboneConfig]:
    return {name: BackboneConfig(input_size=DEFAULT_INPUT_SIZES[name]) for name in BACKBONES}


@dataclass(config=SCHEMA)
class Config:
    paths: Paths = field(default_factory=Paths)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    backbones: dict[BackboneName, BackboneConfig] = field(default_factory=default_backbones)
    train: TrainConfig = field(default_factory=TrainConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    visualize: VisualizeConfig = field(default_factory=VisualizeConfig)
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    raw: dict[str, Any] = field(default_factory=dict)  # params.yaml as read

    def backbone(self, name: str) -> BackboneConfig:
        """The params of one backbone; defaults when params.yaml has no entry for it."""
        return self.backbones.get(name) or default_backbones().get(name, BackboneConfig())

    def head(self, name: str) -> dict[str, Any]:
        """One head's params as a dict (every key, defaults filled in)."""
        if name not in HEADS:
            raise ConfigError(f"Unknown head. Received: head={name!r}. Allowed: {list(HEADS)}")
        return asdict(getattr(self.heads, name))


CONFIG_ADAPTER = TypeAdapter(Config)


def load_config(path: Path | str = DEFAULT_PARAMS) -> Config:
    """Read and validate params.yaml; every problem is named (key, value received, what is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Params file not found: {path}. Run from the project root or pass --params.")
    try:
        raw = yaml.load(path.read_text(), Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level.")
    return validate(raw, str(path))


def validate(raw: dict[str, Any], source: str = "params") -> Config:
    """A Config from a params mapping, or a ConfigError listing each problem on its own line."""
    if "raw" in raw:
        raise ConfigError(f"{source}: 'raw' is not a params section. Allowed sections: {allowed_keys(Config, ())}")
    try:
        config = CONFIG_ADAPTER.validate_python(raw)
    except ValidationError as err:
        problems = [describe_error(error) for error in err.errors()]
        raise ConfigError(f"{source}: " + "\n  ".join(problems if len(problems) == 1 else ["", *problems])) from None
    check_exports(config, source)
    check_visualized_heads_are_trained(config, source)
    return replace(config, raw=raw)


def check_visualized_heads_are_trained(config: Config, source: str) -> None:
    """visualize.heads pictures trained heads: each entry must be in train.heads too."""
    untrained = [head for head in config.visualize.heads if head not in config.train.heads]
    if untrained:
        raise ConfigError(
            f"{source}: visualize.heads: received {list(config.visualize.heads)}; {', '.join(untrained)} "
            f"is not in train.heads {list(config.train.heads)}: add it there or remove it from visualize.heads"
        )


def describe_error(error: dict[str, Any], root: type = Config) -> str:
    """One pydantic error as `key.path: received <value>; allowed: ...`."""
    loc = [f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"]]
    if loc and loc[-1] == "[key]":  # a mapping key that is not allowed (e.g. an unknown backbone)
        loc.pop()
        return f"{'.'.join(loc)}: unknown key. {error['msg'].replace('Input should be', 'Allowed:')}"
    key = ".".join(loc).replace(".[", "[")
    if error["type"] == "unexpected_keyword_argument":
        return f"{key}: unknown key. Allowed here: {allowed_keys(root, tuple(loc[:-1]))}"
    if error["type"] == "missing_argument":
        return f"{key}: missing"
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "allowed:")
    return f"{key}: received {error.get('input')!r}; {message}"


def allowed_keys(cls: type, loc: tuple[str, ...]) -> list[str]:
    """The keys of the schema section at `loc` (list indices and mapping keys skipped)."""
    for part in loc:
        if not is_dataclass(cls):
            break
        known = {f.name: f for f in fields(cls)}
        if part in known:
            cls = section_type(cls, part)
    return [f.name for f in fields(cls) if f.name != "raw"] if is_dataclass(cls) else []


def section_type(cls: type, name: str) -> type:
    """The dataclass type of a field, looking through dict[...] values."""
    annotation = cls.__pydantic_fields__[name].annotation
    if is_dataclass(annotation):
        return annotation
    args = get_args(annotation)
    return args[-1] if args and is_dataclass(args[-1]) else cls


def validate_section(cls: type, values: dict[str, Any], where: str) -> Any:
    """One section (e.g. a head's params handed over in code) validated like params.yaml, errors named `where.key`."""
    try:
        return TypeAdapter(cls).validate_python(values)
    except ValidationError as err:
        problems = [f"{where}.{describe_error(error, cls)}" for error in err.errors()]
        raise ConfigError("\n  ".join(problems if len(problems) == 1 else ["invalid params:", *problems])) from None

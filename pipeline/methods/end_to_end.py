"""Method end_to_end: a frozen pretrained conv base + Flatten -> Dense(256, relu) -> classifier, trained end to
end on augmented images (the book: VGG16, 96% test accuracy). Slower than the feature store (every epoch runs
the base over new augmented images), which is what augmentation needs."""

from __future__ import annotations

import keras

from pipeline.backbones import get_backbone
from pipeline.core.config import Config
from pipeline.images.augmentation import augmenter
from pipeline.training.common import (
    ImageInput,
    MethodReport,
    check_positive,
    classifier,
    compile_model,
    read_splits,
    run_image_method,
)


def build_end_to_end(base: keras.Model, n_classes: int = 2, units: int = 256) -> keras.Model:
    """The book's model: the conv base, Flatten, Dense(units, relu), classifier. VGG16 at 150 px: 16,812,353
    parameters, of which 2,097,665 trainable while the base is frozen. Keras 3 hands fit's training=True to the
    nested base despite `training=False` here: a base's Dropout layers (EfficientNet's) are active in training;
    its batch norms run in inference mode because they stay frozen (finetune.unfreeze_from keeps them so)."""
    check_positive("methods.end_to_end", units=units)
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = base(inputs, training=False)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(units, activation="relu", name="dense")(x)
    return keras.Model(inputs, classifier(n_classes)(x), name=f"{base.name}_end_to_end")


def run(config: Config, backbone: str) -> MethodReport:
    spec = get_backbone(backbone)
    backbone_config = config.backbone(backbone)
    params = config.methods.end_to_end
    weights = spec.resolve_weights(backbone_config.weights)
    base = spec.conv_base(backbone_config.input_size, weights)
    keras.utils.set_random_seed(config.methods.seed)
    splits = read_splits(config.paths.split)
    n_classes = len(splits["train"].classes)
    model = build_end_to_end(base, n_classes, params.units)
    compile_model(model, params.learning_rate, n_classes)
    return run_image_method(
        model,
        "end_to_end",
        backbone,
        config.paths,
        splits,
        ImageInput(backbone_config.input_size, config.methods.resize, backbone),
        params,
        config.methods.seed,
        augment=augmenter(config.methods.augmentation, config.methods.seed),
        info={"backbone": backbone, "weights": weights.identifier, "weights_sha256": weights.sha256},
    )

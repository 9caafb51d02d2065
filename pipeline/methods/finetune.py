"""Method finetune: continue the end_to_end model with the top of the conv base unfrozen (from the backbone's
`finetune_from` layer: block5_conv1 for VGG16), at a low learning rate, on augmented images (the book: 97%)."""

from __future__ import annotations

import keras

from pipeline.backbones import get_backbone
from pipeline.core.config import Config
from pipeline.core.errors import InputError
from pipeline.images.augmentation import augmenter
from pipeline.training.common import (
    ImageInput,
    MethodReport,
    compile_model,
    load_model,
    method_dirs,
    read_splits,
    run_image_method,
)


def conv_base_of(model: keras.Model) -> keras.Model:
    """The nested conv base of an end_to_end model."""
    bases = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(bases) != 1:
        raise InputError(f"Model '{model.name}' should hold exactly one nested conv base; it holds {len(bases)}.")
    return bases[0]


def unfreeze_from(model: keras.Model, layer_name: str) -> keras.Model:
    """Make the base's layers from `layer_name` on trainable, those before it frozen; the head stays trainable.
    BatchNormalization layers stay frozen, so they keep normalizing with their ImageNet statistics: Keras 3 passes
    fit's training=True into the nested base despite `base(x, training=False)`, and a trainable batch norm would
    then normalize with the statistics of each batch of 20 and drift its moving averages (EfficientNet-Lite0 lost
    1-5 points of accuracy in the first epoch that way)."""
    base = conv_base_of(model)
    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise InputError(
            f"Conv base '{base.name}' has no layer {layer_name!r} to fine-tune from. Received: from_layer="
            f"{layer_name!r}; its last layers: {names[-6:]}"
        )
    start = names.index(layer_name)
    base.trainable = True
    for layer in base.layers[:start]:
        layer.trainable = False
    for layer in base.layers[start:]:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def run(config: Config, backbone: str) -> MethodReport:
    params = config.methods.finetune
    source = method_dirs(config.paths, "end_to_end", backbone).model
    model, info = load_model(source, f"`dvc repro end_to_end@{backbone}` (list it in methods.run.end_to_end)")
    if info.get("backbone") != backbone:
        raise InputError(f"{source} holds a model of backbone {info.get('backbone')!r}, not {backbone!r}.")
    splits = read_splits(config.paths.split)
    if splits["train"].classes != info["classes"]:
        raise InputError(
            f"{source} was trained on classes {info['classes']}, the split now has {splits['train'].classes}. "
            f"Re-run end_to_end@{backbone}."
        )
    from_layer = get_backbone(backbone).finetune_from if params.from_layer == "auto" else params.from_layer
    unfreeze_from(model, from_layer)
    keras.utils.set_random_seed(config.methods.seed)
    compile_model(model, params.learning_rate, len(info["classes"]))
    return run_image_method(
        model,
        "finetune",
        backbone,
        config.paths,
        splits,
        ImageInput(info["input_size"], info["resize"], backbone),
        params,
        config.methods.seed,
        augment=augmenter(config.methods.augmentation, config.methods.seed),
        info={key: info[key] for key in ("backbone", "weights", "weights_sha256")} | {"from_layer": from_layer},
    )

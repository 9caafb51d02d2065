"""Method augment: the scratch convnet with Dropout(0.5) before the dense layers, trained on images augmented
as the book's ImageDataGenerator does (about 82% test accuracy in the book). Augmentation runs in tf.data, not
in the saved model, so the model loads without custom objects."""

from __future__ import annotations

from pipeline.core.config import Config
from pipeline.training.common import MethodReport
from pipeline.training.convnet import train_convnet


def run(config: Config, seed: int) -> MethodReport:
    return train_convnet(config, "augment", config.methods.augment, seed, augment=True)

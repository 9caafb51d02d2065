"""Method scratch: the book's small convnet trained from scratch on the split images (about 71% test accuracy
on the book's 2,000 training images); `augment` trains the same convnet with dropout and augmented images."""

from __future__ import annotations

from pipeline.core.config import Config
from pipeline.training.common import MethodReport
from pipeline.training.convnet import train_convnet


def run(config: Config, seed: int) -> MethodReport:
    return train_convnet(config, "scratch", config.methods.scratch, seed, augment=False)

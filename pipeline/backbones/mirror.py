"""Mirror-averaged features: the conv base's map of an image and of its left-right mirror, averaged.

The mirror's map is flipped back before averaging, so each spatial cell still describes the same part of
the image (a flatten head sees aligned maps; a pooled head sees the average of the two pooled vectors).
The store holds the averaged rows, computed once; `featurize.mirror` is part of the feature recipe.
"""

from __future__ import annotations

import keras
from keras import layers


class MirrorAverage(layers.Layer):
    """(base(x) + flip_w(base(flip_w(x)))) / 2 for NHWC images and maps."""

    def __init__(self, base: keras.Model, **kwargs) -> None:
        super().__init__(**kwargs)
        self.base = base

    def call(self, inputs):
        mirrored = self.base(keras.ops.flip(inputs, axis=2))
        return (self.base(inputs) + keras.ops.flip(mirrored, axis=2)) / 2


def mirror_averaged(base: keras.Model) -> keras.Model:
    """A frozen model with `base`'s input and output shapes whose output is the mirror average."""
    inputs = keras.Input(base.input.shape[1:], name="image")
    model = keras.Model(inputs, MirrorAverage(base, name="mirror_average")(inputs), name=f"{base.name}_mirrored")
    model.trainable = False
    return model

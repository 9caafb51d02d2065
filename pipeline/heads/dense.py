"""The book's dense head: Flatten (or global average) -> Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid).

The saved model takes the conv base's feature map (so it stacks on the base for Grad-CAM). With average
pooling it trains and predicts on rows already pooled (the store's pooled view) through the same layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline.heads.base import TrainingData, head_params
from pipeline.heads.pooling import resolve_pooling
from pipeline.reporting.curves import LiveCurves
from pipeline.reporting.progress import Progress


def build_dense_head(
    feature_shape: tuple[int, ...], n_classes: int, pooling: str, units: int, dropout: float
) -> keras.Model:
    """The classifier alone; its input is the conv base's feature map, so it stacks on the base as is."""
    inputs = keras.Input(shape=feature_shape, name="features")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs) if pooling == "avg" else inputs
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if n_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    else:
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="dense_head")


def to_two_columns(probabilities: np.ndarray) -> np.ndarray:
    """A sigmoid's (N, 1) output as (N, 2) class probabilities; softmax outputs pass through."""
    if probabilities.shape[1] == 1:
        return np.hstack([1.0 - probabilities, probabilities])
    return probabilities


AFTER_POOL = ("flatten", "dense", "dropout", "predictions")  # the layers that read a pooled row


def vector_model(model: keras.Model, width: int) -> keras.Model:
    """The layers after the pooling of `model`, as a model over (N, width) pooled rows; weights are shared."""
    inputs = keras.Input(shape=(width,), name="pooled")
    x = inputs
    for name in AFTER_POOL:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name="dense_head_pooled")


def pools(model: keras.Model) -> bool:
    return any(layer.name == "pool" for layer in model.layers)


class DenseHead:
    file_suffix = ".keras"

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.pooling = "avg" if pools(model) else "flatten"

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Maps as the model takes them, or (N, c) rows already average-pooled."""
        model = self.model
        if features.ndim == 2 and self.pooling == "avg" and len(model.input.shape) > 2:
            model = vector_model(model, features.shape[1])
        return to_two_columns(model.predict(features, batch_size=256, verbose=0))

    def save(self, path: Path) -> None:
        self.model.save(path)


class DenseHeadBuilder:
    file_suffix = ".keras"
    curve_x = "epoch"

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> DenseHead:
        p = head_params("dense", params)
        keras.utils.set_random_seed(seed)
        n_classes = len(data.classes)
        pooling = resolve_pooling(p["pooling"], data.default_pooling)
        model = build_dense_head(data.map_shape, n_classes, pooling, p["units"], p["dropout"])
        pooled_rows = data.x_train.ndim == 2 and len(data.map_shape) == 3 and pooling == "avg"
        trained = vector_model(model, data.x_train.shape[1]) if pooled_rows else model
        loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
        trained.compile(optimizer=keras.optimizers.RMSprop(p["learning_rate"]), loss=loss, metrics=["accuracy"])
        callbacks = [EpochProgress(p["epochs"])] + ([LiveCurves(live)] if live is not None else [])
        trained.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        return DenseHead(model)

    def load(self, path: Path) -> DenseHead:
        return DenseHead(keras.saving.load_model(path, safe_mode=True))


class EpochProgress(keras.callbacks.Callback):
    """Signs of life while the head trains: a bar on a terminal, a line every few epochs in a log."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.progress = Progress(epochs, "train dense", "epochs")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        shown = ("loss", "accuracy", "val_loss", "val_accuracy")
        self.progress.update(1, ", ".join(f"{k} {logs[k]:.4f}" for k in shown if k in (logs or {})))

    def on_train_end(self, logs: dict | None = None) -> None:
        self.progress.close()

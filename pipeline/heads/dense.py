"""The book's dense head: Flatten (or global average or max) -> Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid).

The saved model takes the conv base's feature map (so it stacks on the base for Grad-CAM). With average or max
pooling it trains and predicts on rows already pooled (the store's pooled view) through the same layers. With
flatten it trains on the maps as a stream (a tf.data pipeline over the store's chunks: pieces of chunks in an order
shuffled per epoch by the seed, then a shuffle buffer of SHUFFLE_BYTES), so memory does not grow with the rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.heads.base import RowStream, TrainingData, head_params, is_stream
from pipeline.heads.pooling import resolve_pooling
from pipeline.reporting.curves import LiveCurves
from pipeline.reporting.progress import Progress

GLOBAL_POOLS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
SHUFFLE_BYTES = 256 << 20  # the streamed maps' shuffle buffer (rows of a few chunks)


def build_dense_head(
    feature_shape: tuple[int, ...], n_classes: int, pooling: str, units: int, dropout: float
) -> keras.Model:
    """The classifier alone; its input is the conv base's feature map, so it stacks on the base as is."""
    inputs = keras.Input(shape=feature_shape, name="features")
    x = GLOBAL_POOLS[pooling](name="pool")(inputs) if pooling in GLOBAL_POOLS else inputs
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


def model_pooling(model: keras.Model) -> str:
    """avg or max (the model's `pool` layer), else flatten."""
    for pooling, layer in GLOBAL_POOLS.items():
        if any(isinstance(found, layer) and found.name == "pool" for found in model.layers):
            return pooling
    return "flatten"


def stream_dataset(
    stream: RowStream, batch_size: int, seed: int | None = None, failures: list[Exception] | None = None
) -> tf.data.Dataset:
    """Batches of (maps, labels) read from `stream` a block at a time. With a seed (training) each epoch reads
    pieces of the chunks in another random order (seed + epoch) and shuffles rows through a buffer of
    SHUFFLE_BYTES: a full shuffle when the split fits in it, as Keras' shuffle of arrays. A read's error (a
    damaged chunk) is appended to `failures`, since TensorFlow reports it as its own InvalidArgumentError (see
    raising_failures)."""
    epochs = itertools.count()

    def blocks():
        try:
            for block in stream.blocks(None if seed is None else seed + next(epochs)):
                yield block.features, block.labels
        except Exception as err:
            if failures is not None:
                failures.append(err)
            raise

    signature = (
        tf.TensorSpec((None, *stream.row_shape), tf.float32),
        tf.TensorSpec((None,), tf.int64),
    )
    dataset = tf.data.Dataset.from_generator(blocks, output_signature=signature).unbatch()
    if seed is not None:
        row_bytes = 4 * int(np.prod(stream.row_shape))
        buffer = max(batch_size, min(len(stream), SHUFFLE_BYTES // row_bytes))
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    batches = -(-len(stream) // batch_size)
    return dataset.batch(batch_size).apply(tf.data.experimental.assert_cardinality(batches)).prefetch(1)


@contextmanager
def raising_failures(failures: list[Exception]) -> Iterator[None]:
    """Re-raise the store's own error (a StoreError naming the chunk) where tf.data reports its failure."""
    try:
        yield
    except tf.errors.OpError:
        if failures:
            raise failures[0] from None
        raise


class DenseHead:
    file_suffix = ".keras"

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.pooling = model_pooling(model)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Maps as the model takes them, or (N, c) rows already pooled (avg or max, as the model pools)."""
        model = self.model
        if features.ndim == 2 and self.pooling in GLOBAL_POOLS and len(model.input.shape) > 2:
            model = vector_model(model, features.shape[1])
        return to_two_columns(model.predict(features, batch_size=256, verbose=0))

    def save(self, path: Path) -> None:
        self.model.save(path)


class DenseHeadBuilder:
    file_suffix = ".keras"
    curve_x = "epoch"
    streams = True

    def fit(self, data: TrainingData, params: dict[str, Any], seed: int, live: Any) -> DenseHead:
        p = head_params("dense", params)
        keras.utils.set_random_seed(seed)
        n_classes = len(data.classes)
        pooling = resolve_pooling(p["pooling"], data.default_pooling)
        model = build_dense_head(data.map_shape, n_classes, pooling, p["units"], p["dropout"])
        pooled_rows = not is_stream(data.x_train) and data.x_train.ndim == 2 and len(data.map_shape) == 3
        trained = vector_model(model, data.x_train.shape[1]) if pooled_rows and pooling in GLOBAL_POOLS else model
        loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
        trained.compile(optimizer=keras.optimizers.RMSprop(p["learning_rate"]), loss=loss, metrics=["accuracy"])
        callbacks = [EpochProgress(p["epochs"])] + ([LiveCurves(live)] if live is not None else [])
        fit = {"epochs": p["epochs"], "verbose": 0, "callbacks": callbacks}
        if is_stream(data.x_train):
            failures: list[Exception] = []
            train = stream_dataset(data.x_train, p["batch_size"], seed, failures)
            if is_stream(data.x_val):
                validation = stream_dataset(data.x_val, p["batch_size"], None, failures)
            else:
                validation = (data.x_val, data.y_val)
            with raising_failures(failures):
                trained.fit(train, validation_data=validation, shuffle=False, **fit)
        else:
            trained.fit(
                data.x_train,
                data.y_train,
                validation_data=(data.x_val, data.y_val),
                batch_size=p["batch_size"],
                shuffle=True,
                **fit,
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

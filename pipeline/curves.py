"""The Keras callback that logs the seed's training curves through pipeline.metrics, one step per epoch."""

from __future__ import annotations

from typing import Any

import keras

from pipeline.metrics import log_epoch


class LiveCurves(keras.callbacks.Callback):
    """Train/validation accuracy and loss to dvclive after each epoch (the keys `log_epoch` writes)."""

    def __init__(self, live: Any) -> None:
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        log_epoch(self.live, logs or {})

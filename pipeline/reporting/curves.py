"""The Keras callback that logs the book's training curves through pipeline.reporting.metrics, one step per epoch."""

from __future__ import annotations

from typing import Any

import keras

from pipeline.reporting.metrics import log_epoch


class LiveCurves(keras.callbacks.Callback):
    """Train/validation accuracy and loss after each epoch (the keys `log_epoch` writes) to each logger: dvclive's
    Live, or anything with its `log_metric`/`next_step` (pipeline.reporting.curve_plots.CurveRecorder, for the PNGs)."""

    def __init__(self, *loggers: Any) -> None:
        super().__init__()
        self.loggers = loggers

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for logger in self.loggers:
            log_epoch(logger, logs or {})

"""The exported model's files (Keras, TFLite float32 and dynamic-range quantized, ONNX) and one runner per
format: each takes a batch of uint8 RGB images of one size, (N, H, W, 3), and returns class probabilities."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.errors import InputError

FILES = {
    "keras": "model.keras",
    "tflite": "model.tflite",
    "tflite-dynamic-range": "model.dynamic-range.tflite",
    "onnx": "model.onnx",
}
ONNX_OPSET = 17
IMAGE_SPEC = tf.TensorSpec((None, None, None, 3), tf.uint8, name="image")
Runner = Callable[[np.ndarray], np.ndarray]


@contextlib.contextmanager
def converter_output_captured() -> Iterator[None]:
    """What the converters print (Keras' "Saved artifact at ..." and TensorSpec lines, tf2onnx's log, MLIR's
    notices from C++) goes to a temporary file instead of stdout/stderr, at the file-descriptor level and through
    Python's streams; it is written to stderr only when a conversion fails, to explain the failure."""
    with tempfile.TemporaryFile(mode="w+", errors="backslashreplace") as sink:
        streams = sys.stdout, sys.stderr
        for stream in streams:
            stream.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            sys.stdout = sys.stderr = sink
            yield
        except BaseException:
            failed = True
            raise
        else:
            failed = False
        finally:
            sink.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read())


def serving_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """One traced graph for every batch size and image size."""
    return tf.function(lambda image: model(image, training=False), input_signature=[IMAGE_SPEC])


def inference_saved_model(model: keras.Model, folder: Path) -> Path:
    """The model's inference call (training=False) as a SavedModel, all weights in it: the graph TFLite converts
    (what `TFLiteConverter.from_keras_model` writes for a Keras 3 model), written once for both TFLite files."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [tf.TensorSpec(x.shape, x.dtype, name=x.name) for x in model.inputs]
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False), signature)
    archive.write_out(str(folder))
    return folder


def to_tflite(saved_model: Path, quantize: bool) -> tuple[bytes, bool]:
    """TFLite flatbuffer of `inference_saved_model`'s folder (dynamic-range quantized weights with `quantize`);
    True when it needs TF select ops (a resize method TFLite has no builtin for), which a mobile runtime must link."""
    for select_ops in (False, True):
        # A SavedModel has every weight frozen in; a concrete function's conversion left some as uninitialized
        # TFLite variables (NaN output) for a logreg head.
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
        if select_ops:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        try:
            return converter.convert(), select_ops
        except Exception:  # noqa: BLE001 - the converter raises several types for an op it lacks
            if select_ops:
                raise
    raise AssertionError("unreachable")


def to_onnx(model: keras.Model) -> bytes:
    """ONNX (tf2onnx, opset ONNX_OPSET); needs the `onnx` extra."""
    try:
        import tf2onnx
    except ImportError as err:
        raise InputError("ONNX export needs tf2onnx: pip install -e '.[onnx]'") from err
    proto, _ = tf2onnx.convert.from_function(serving_function(model), input_signature=[IMAGE_SPEC], opset=ONNX_OPSET)
    return proto.SerializeToString()


def keras_runner(path: Path) -> Runner:
    model = keras.saving.load_model(path, safe_mode=True)
    function = serving_function(model)
    return lambda images: function(tf.constant(images, tf.uint8)).numpy()


def tflite_runner(path: Path) -> Runner:
    """One interpreter, its input resized to each batch's shape (not thread-safe)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that LiteRT (ai-edge-litert) succeeds it
        interpreter = tf.lite.Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    shape: list[tuple[int, ...]] = [()]

    def run(images: np.ndarray) -> np.ndarray:
        if images.shape != shape[0]:
            interpreter.resize_tensor_input(source, images.shape)
            interpreter.allocate_tensors()
            shape[0] = images.shape
        interpreter.set_tensor(source, images)
        interpreter.invoke()
        return interpreter.get_tensor(target).copy()

    return run


def onnx_runner(path: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


RUNNERS: dict[str, Callable[[Path], Runner]] = {
    "keras": keras_runner,
    "tflite": tflite_runner,
    "tflite-dynamic-range": tflite_runner,
    "onnx": onnx_runner,
}


def decode(data: bytes) -> np.ndarray:
    """Image bytes (what the image gate passed) -> uint8 RGB (H, W, 3), decoded as featurize decodes files."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()

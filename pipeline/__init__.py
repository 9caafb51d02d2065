"""Precomputed feature store for small-data image classification with pretrained convnets."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) drowns the CLI's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

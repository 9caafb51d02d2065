"""Floor 3, one unit: a trained backbone x head as one portable model (Keras, TFLite, ONNX) with its
preprocessing inside, checked against `predict`; imports floors 0-2. `pipeline serve` (tools/) serves it."""

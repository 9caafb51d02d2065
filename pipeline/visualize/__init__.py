"""Seeing what a convnet learned: intermediate activations, filter patterns and Grad-CAM heatmaps."""

"""Floor 3, the visualize stage: what a convnet learned, as intermediate activations, filter patterns and
Grad-CAM heatmaps. Imports floors 0-2, no other stage."""

"""The seed's other methods as pipeline stages: convnets from scratch (plain and augmented), a frozen conv base
trained end to end on augmented images, fine-tuning, an augmented feature store, and the MNIST intro model.

One module per method; `common` holds the image datasets, training with dvclive curves, and scoring.
Importing this package is cheap: modules import Keras when they are used.
"""

METHODS = ("scratch", "augment", "end_to_end", "finetune", "augmented_features", "mnist")

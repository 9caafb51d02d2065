"""Floor 3, the book's other methods as stages, one module each: convnets from scratch (plain and augmented), a
frozen conv base trained end to end, fine-tuning, augmented features, the MNIST intro model. Imports floors 0-2
(their shared code is `pipeline.training`); a method never imports another. Importing this package is cheap."""

METHODS = ("scratch", "augment", "end_to_end", "finetune", "augmented_features", "mnist")

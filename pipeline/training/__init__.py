"""Floor 1, what the book's methods share: image datasets from the split, training with curves, scoring, the
scratch convnet, MNIST's IDX reader, the augmented-feature file. Imports core and the other libraries.
"""

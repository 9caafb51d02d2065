"""Floor 3, one module per DVC stage (extract, split, weights, featurize, train, evaluate, predict, neighbors):
a pure function does the work. Imports floors 0-2; a stage never imports another stage.
"""

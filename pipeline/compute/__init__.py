"""Floor 2, the conv-base pass: one ComputeBackend Protocol, the local tf.data backend, the Ray Data backend,
and a store's conv base rebuilt from its recipe. Imports core and libraries, never a stage.
"""

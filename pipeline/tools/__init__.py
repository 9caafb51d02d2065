"""Floor 4, the tools around the pipeline: doctor (can a run succeed here?) and the benches. Interface level:
may import every layer.
"""

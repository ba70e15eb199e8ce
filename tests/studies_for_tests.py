"""A tiny study file for tests, written as a user would write one: 12 runs of a few steps."""

TINY = """\
title = "tiny sweep"
families = ["transformer"]
modes = ["sp", "mup"]
widths = [16, 32]
steps = 6
batch_size = 2
seq_len = 16
eval_batches = 1
data = "synthetic"

[options]
layers = 1

[lr]
log2_min = -9
log2_max = -3
log2_step = 3
"""

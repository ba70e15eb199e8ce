"""Tensors sharded across processes (FSDP2's DTensor parameters and optimizer state) seen
whole: a statistic of a sharded matrix is the statistic of the matrix, not of one shard."""

import torch

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch built without distributed support has no sharded tensors
    DTensor = ()


def whole(t: torch.Tensor) -> torch.Tensor:
    """The full tensor, gathered from every rank on demand (a collective: every rank calls
    it at the same recorded step); a plain tensor as it is."""
    return t.full_tensor() if isinstance(t, DTensor) else t

"""Deterministic synthetic data, generated in-process so nothing is ever downloaded.

Every batch is a pure function of (data seed, batch index): the same across widths and
run seeds, so widths differ only in the model."""

import torch

VOCAB = 256
MLP_IN = 32
MLP_CLASSES = 10
DATA_SEED = 1234
PROBE_INDEX = -1


def _generator(index: int) -> torch.Generator:
    return torch.Generator().manual_seed(DATA_SEED * 1_000_003 + index)


# A sparse Markov chain: each token has 4 likely successors (and a little uniform noise),
# so there is structure to learn and the loss really falls.
_SUCCESSORS = torch.randint(0, VOCAB, (VOCAB, 4), generator=_generator(-1000))
_CUMULATIVE = torch.tensor([0.5, 0.75, 0.9, 0.98])


def token_batch(index: int, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(index)
    choice = torch.searchsorted(_CUMULATIVE, torch.rand(batch_size, seq_len, generator=g))
    noise = torch.randint(0, VOCAB, (batch_size, seq_len + 1), generator=g)
    tokens = noise.clone()
    for t in range(seq_len):
        successor = _SUCCESSORS[tokens[:, t], choice[:, t].clamp_max(3)]
        tokens[:, t + 1] = torch.where(choice[:, t] < 4, successor, noise[:, t + 1])
    return tokens[:, :-1], tokens[:, 1:]


_TEACHER = torch.randn(MLP_IN, MLP_CLASSES, generator=_generator(-2000))


def mlp_batch(index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch_size, MLP_IN, generator=_generator(index))
    return x, (x @ _TEACHER).argmax(1)

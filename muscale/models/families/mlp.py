"""A classifier MLP: the smallest model on which μP's coordinate check is textbook.

`norm = "layernorm"` puts a LayerNorm without gain or bias after every hidden matrix
(before the ReLU). Such a matrix is scale-invariant: the output does not change when W
alone is multiplied by a constant, so only gradient noise and weight decay set its norm
(the noise–weight-decay equilibrium study). The head has no norm after it and is not."""

from torch import nn

from .. import data

WIDTH_RULES = (
    "every hidden layer has d units; input and class dims are fixed; "
    "norm = layernorm: a gainless LayerNorm(d) after each hidden matrix"
)
NORMS = ("none", "layernorm")


class MLP(nn.Module):
    def __init__(self, width: int, hooks, depth: int = 2, norm: str = "none"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
        self.input = nn.Linear(data.MLP_IN, width, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth - 1))
        self.norms = (
            nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(depth))
            if norm == "layernorm"
            else None
        )
        self.act = nn.ReLU()
        self.head = hooks.readout(width, data.MLP_CLASSES)

    def forward(self, x):
        for i, layer in enumerate([self.input, *self.hidden]):
            x = layer(x)
            x = self.act(x if self.norms is None else self.norms[i](x))
        return self.head(x)


def build(width: int, hooks, depth: int | str = 2, norm: str = "none") -> MLP:
    return MLP(width, hooks, int(depth), norm)

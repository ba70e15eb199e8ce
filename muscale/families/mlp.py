"""A classifier MLP: the smallest model on which μP's coordinate check is textbook."""

from torch import nn

from .. import data

WIDTH_RULES = "every hidden layer has d units; input and class dims are fixed"


class MLP(nn.Module):
    def __init__(self, width: int, hooks, depth: int = 2):
        super().__init__()
        self.input = nn.Linear(data.MLP_IN, width, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth - 1))
        self.act = nn.ReLU()
        self.head = hooks.readout(width, data.MLP_CLASSES)

    def forward(self, x):
        x = self.act(self.input(x))
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.head(x)


def build(width: int, hooks, depth: int | str = 2) -> MLP:
    return MLP(width, hooks, int(depth))

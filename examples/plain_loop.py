"""A width sweep in a plain PyTorch loop of one's own, recorded with muscale.Recorder.

    python examples/plain_loop.py --out runs/mlp       # SP and μP, widths 64…1024
    muscale fit runs/mlp                               # exponents.csv and report.html

An MLP with two hidden layers trained by Adam for a few steps on one fixed batch, as in
mup's coordinate check; under μP (the mup package: MuReadout, set_base_shapes, MuAdam) the
hidden layers' activation change stays flat with width, under SP it grows."""

import argparse

import mup
import torch
from torch import nn

import muscale


class MLP(nn.Module):
    def __init__(self, width: int, mup_readout: bool, d_in: int = 32, classes: int = 10):
        super().__init__()
        self.input = nn.Linear(d_in, width)
        self.hidden = nn.Linear(width, width)
        self.head = mup.MuReadout(width, classes) if mup_readout else nn.Linear(width, classes)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(torch.relu(self.input(x)))))


def model(width: int, parametrization: str) -> nn.Module:
    if parametrization == "sp":
        return MLP(width, mup_readout=False)
    net = MLP(width, mup_readout=True)
    mup.set_base_shapes(net, MLP(64, True), delta=MLP(128, True))
    for name, p in net.named_parameters():  # μP's init: variance by fan-in, through mup's infshape
        if name.endswith("weight") and "head" not in name:
            mup.init.kaiming_normal_(p, a=5**0.5)
    return net


def train(width: int, parametrization: str, seed: int, out: str, steps: int, lr: float, label: str | None = None):
    torch.manual_seed(seed)
    net = model(width, parametrization)
    opt = (mup.MuAdam if parametrization == "mup" else torch.optim.Adam)(net.parameters(), lr=lr)
    data = torch.Generator().manual_seed(1234)
    x, y = torch.randn(32, 32, generator=data), torch.randint(0, 10, (32,), generator=data)
    rec = muscale.Recorder(
        net,
        f"{out}/{parametrization}-w{width}-s{seed}",
        width=width,
        seed=seed,
        mode=label or parametrization,
        optimizer=opt,
        probe=x,
        every=1,
        family="plain-mlp",
    )
    for step in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(step, loss=loss)
    rec.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/mlp")
    parser.add_argument("--widths", default="64,128,256,512,1024")
    parser.add_argument("--modes", default="sp,mup")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-2)
    args = parser.parse_args()
    for parametrization in args.modes.split(","):
        for width in map(int, args.widths.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                train(width, parametrization, seed, args.out, args.steps, args.lr)


if __name__ == "__main__":
    main()

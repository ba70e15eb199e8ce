"""User families for tests, imported as `families_for_tests:NAME` (tests/ is on sys.path)."""

import torch
from mup import MuReadout
from torch import nn


class GainMLP(nn.Module):
    """A μP-style MLP whose hidden output carries a width-dependent gain: a broken model
    that a coordinate check must catch."""

    def __init__(self, width: int, gain: float):
        super().__init__()
        self.input = nn.Linear(32, width, bias=False)
        self.hidden = nn.ModuleList([nn.Linear(width, width, bias=False)])
        self.head = MuReadout(width, 10, bias=False)
        self.gain = gain

    def forward(self, x):
        x = torch.relu(self.input(x))
        x = torch.relu(self.hidden[0](x * self.gain))
        return self.head(x)


def gain_mlp(width: int) -> nn.Module:
    return GainMLP(width, (width / 64) ** 0.5)


def not_a_module(width: int):
    return [width]


def mlp_batch():
    from muscale.models import data

    return data.mlp_batch(data.PROBE_INDEX, 8)


class CrashesWhenWide(nn.Module):
    """A tiny token LM whose forward raises from width 32 on: a run that crashes."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(256, width)
        self.head = MuReadout(width, 256, bias=False)

    def forward(self, tokens):
        if self.width >= 32:
            raise RuntimeError(f"width {self.width} is too wide for this test model")
        return self.head(self.embed(tokens))


def crashes_when_wide(width: int) -> nn.Module:
    return CrashesWhenWide(width)


def sequential(width: int) -> nn.Module:
    """The most common shape of user model: nn.Sequential, whose modules are named 0, 2, 4."""
    return nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def sequential_width_gain(width: int) -> nn.Module:
    """`sequential` with its hidden layer's init scaled by width: a width dependence the gate must catch."""
    model = sequential(width)
    with torch.no_grad():
        model[2].weight.mul_(width / 64)
    return model


def classifier_batch(step: int, batch_size: int):
    """A streamed classification batch: a different one at every step, -1 the fixed probe batch."""
    from muscale.models import data

    return data.mlp_batch(step, batch_size)


def regression_batch():
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    return x, x @ torch.randn(32, 4, generator=torch.Generator().manual_seed(1))


def regressor(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, 4))


def deep_mlp(width: int, depth: int = 1, activation: str = "relu") -> nn.Module:
    """A user family with options: `--option depth=3 --option activation=tanh`."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    layers = [nn.Linear(32, width), act()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


class NanoGPTStyle(nn.Module):
    """nanoGPT's interface: forward(idx, targets=None) returns (logits, loss)."""

    def __init__(self, width: int):
        super().__init__()
        self.wte = nn.Embedding(256, width)
        self.ln_f = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.lm_head = nn.Linear(width, 256, bias=False)

    def forward(self, idx, targets=None):
        x = self.wte(idx)
        logits = self.lm_head(self.ln_f(x + self.mlp(x)))
        loss = None if targets is None else nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def nanogpt_style(width: int) -> nn.Module:
    return NanoGPTStyle(width)


def dict_output(width: int) -> nn.Module:
    """A forward returning {"logits": …}, as some libraries do."""

    class DictOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(256, width), nn.Linear(width, 256)

        def forward(self, tokens):
            return {"logits": self.head(self.embed(tokens))}

    return DictOutput()


def three_classes(width: int) -> nn.Module:
    """An output of 3 classes where the data has 256."""
    return nn.Sequential(nn.Embedding(256, width), nn.Linear(width, 3))


class NanWhenWide(nn.Module):
    """A token LM whose output turns NaN from its fourth forward on, at widths ≥ 64."""

    def __init__(self, width: int):
        super().__init__()
        self.width, self.calls = width, 0
        self.embed = nn.Embedding(256, width)
        self.hidden = nn.Linear(width, width)
        self.head = nn.Linear(width, 256)

    def forward(self, tokens):
        self.calls += 1
        x = self.hidden(self.embed(tokens))
        if self.width >= 64 and self.calls > 3:
            x = x * float("nan")
        return self.head(x)


def nan_when_wide(width: int) -> nn.Module:
    return NanWhenWide(width)


def killed_once(width: int) -> nn.Module:
    """At width 32, the worker building it is killed outright (SIGKILL) while the file named by
    MUSCALE_TEST_KILL exists; the file is removed first, so the next attempt runs."""
    import os
    import signal
    from pathlib import Path

    marker = Path(os.environ.get("MUSCALE_TEST_KILL", "/nonexistent"))
    if width == 32 and marker.exists():
        marker.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return nn.Sequential(nn.Embedding(256, width), nn.Linear(width, 256))


def doubled_mse(output, target):
    """A user loss: (output, target) → a scalar tensor."""
    return 2 * nn.functional.mse_loss(output, target)


def input_error_when_wide(width: int) -> nn.Module:
    """A user error that only a worker meets: raised building width 32, not the narrowest width."""
    from muscale.errors import InputError

    if width >= 32:
        raise InputError("--option", f"width {width} needs a wider table", "give the family a wider table")
    return nn.Sequential(nn.Embedding(256, width), nn.Linear(width, 256))


class HeadLM(nn.Module):
    """The simplest layer whose scale the loss sees (DESIGN.md, fact 5): a byte LM that is an
    embedding, a gainless RMSNorm and a head. The norm leaves the head nothing to trade its
    scale with, so a head multiplier is identifiable."""

    def __init__(self, width: int, vocab: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.RMSNorm(width, elementwise_affine=False)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens):
        return self.head(self.norm(self.embed(tokens)))


def head_lm(width: int) -> nn.Module:
    return HeadLM(width)


class ResidualBlock(nn.Module):
    """A pre-norm MLP block whose projection back to the stream is named `proj`, a name no
    role knows: a branch muscale can scale only through a muscale.Residual seam."""

    def __init__(self, width: int, scale: float, seam: bool):
        super().__init__()
        import muscale

        self.norm = nn.RMSNorm(width)
        self.up = nn.Linear(width, 2 * width, bias=False)
        self.proj = nn.Linear(2 * width, width, bias=False)
        self.scale = scale
        self.residual = muscale.Residual() if seam else None

    def forward(self, x):
        branch = self.scale * self.proj(torch.nn.functional.gelu(self.up(self.norm(x))))
        return x + branch if self.residual is None else self.residual(x, branch)


class ResidualLM(nn.Module):
    def __init__(self, width: int, depth: int, scale: float, seam: bool, init_scale: float):
        super().__init__()
        self.embed = nn.Embedding(256, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, scale, seam) for _ in range(depth))
        for block in self.blocks:
            block.proj.weight.data.mul_(init_scale)
        self.final_norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, 256, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))


def residual_lm(width: int, depth: int = 2, own_alpha: float = 0.0, depth_init: int = 0, seam: int = 1) -> nn.Module:
    """`own_alpha`: the model multiplies its branches by (2/depth)^own_alpha itself;
    `depth_init`: its projections start at a std scaled by (2/depth)^½, as GPT-2's
    1/sqrt(2L) does; `seam` 0: residual adds without muscale.Residual."""
    return ResidualLM(width, depth, (2 / depth) ** own_alpha, bool(seam), (2 / depth) ** 0.5 if depth_init else 1.0)


def no_depth_lm(width: int) -> nn.Module:
    return ResidualLM(width, 2, 1.0, True, 1.0)
